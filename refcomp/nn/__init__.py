"""Autograd-free neural-network engine: functional forward / backward pairs, thin modules,
numeric policies for every tensor role, optimizers (:mod:`refcomp.nn.optim`), schedules
(:mod:`refcomp.nn.schedule`), torch's default initialisations (:mod:`refcomp.nn.init`), a
training step and the real digits data (:mod:`refcomp.nn.data`).

>>> import numpy as np
>>> from refcomp import nn
>>> rng = np.random.default_rng(0)
>>> model = nn.Sequential(nn.Linear(4, 8, rng=rng), nn.ReLU(), nn.Linear(8, 3, rng=rng))
>>> y, cache = model.forward(np.ones((2, 4)), "bf16-mixed")
>>> y.shape
(2, 3)
"""

from .activation import (ActCache, relu_forward, relu_backward, leaky_relu_forward,
                         leaky_relu_backward, gelu_forward, gelu_backward, sigmoid_forward,
                         sigmoid_backward, tanh_forward, tanh_backward, softmax_forward,
                         softmax_backward, log_softmax_forward, log_softmax_backward,
                         dropout_forward, dropout_backward, add_forward, add_backward, erf)
from .linear import (LinearCache, linear_forward, linear_backward, Conv2dCache,
                     conv2d_forward, conv2d_backward, conv_output_size)
from .loss import (LossCache, cross_entropy_forward, cross_entropy_backward, mse_forward,
                   mse_backward, kl_div_forward, kl_div_backward)
from .modules import (Module, Linear, Conv2d, BatchNorm1d, BatchNorm2d, LayerNorm, ReLU,
                      LeakyReLU, GELU, Sigmoid, Tanh, Softmax, LogSoftmax, Dropout,
                      MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Sequential,
                      Residual)
from .norm import (NormCache, batchnorm_forward, batchnorm_backward, layernorm_forward,
                   layernorm_backward)
from .pool import (PoolCache, max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward,
                   avg_pool2d_backward, adaptive_avg_pool2d_forward,
                   adaptive_avg_pool2d_backward, flatten_forward, flatten_backward)
from .policy import POLICIES, Policy, Scaling, TensorSpec, Update, get_policy, round_to
from .train import (History, StaticScaler, StepResult, fit, make_optimizer, predict, prepare,
                    train_step)
from . import (activation, data, init, linear, loss, modules, norm, optim, policy, pool,
               schedule, train)

__all__ = ["Policy", "TensorSpec", "Update", "Scaling", "POLICIES", "get_policy",
           "round_to", "StaticScaler", "StepResult", "History", "prepare",
           "make_optimizer", "train_step", "predict", "fit", "activation", "data",
           "init", "optim", "schedule", "linear", "loss", "modules", "norm", "policy", "pool",
           "train", "ActCache",
           "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
           "gelu_forward", "gelu_backward", "sigmoid_forward", "sigmoid_backward",
           "tanh_forward", "tanh_backward", "softmax_forward", "softmax_backward",
           "log_softmax_forward", "log_softmax_backward", "dropout_forward",
           "dropout_backward", "add_forward", "add_backward", "erf", "LinearCache",
           "linear_forward", "linear_backward", "Conv2dCache", "conv2d_forward",
           "conv2d_backward", "conv_output_size", "LossCache", "cross_entropy_forward",
           "cross_entropy_backward", "mse_forward", "mse_backward", "kl_div_forward",
           "kl_div_backward", "Module", "Linear", "Conv2d", "BatchNorm1d",
           "BatchNorm2d", "LayerNorm", "ReLU", "LeakyReLU", "GELU", "Sigmoid", "Tanh",
           "Softmax", "LogSoftmax", "Dropout", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "Flatten", "Sequential", "Residual", "NormCache",
           "batchnorm_forward", "batchnorm_backward", "layernorm_forward",
           "layernorm_backward", "PoolCache", "max_pool2d_forward",
           "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
           "flatten_forward", "flatten_backward"]
