"""Autograd-free neural-network engine: functional forward / backward pairs, thin modules,
numeric policies for every tensor role, optimizers, schedules and a training step.

>>> import numpy as np
>>> from refcomp import nn
>>> rng = np.random.default_rng(0)
>>> model = nn.Sequential(nn.Linear(4, 8, rng=rng), nn.ReLU(), nn.Linear(8, 3, rng=rng))
>>> y, cache = model.forward(np.ones((2, 4)), "bf16-mixed")
>>> y.shape
(2, 3)
"""

from .activation import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .modules import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .policy import POLICIES, Policy, Scaling, TensorSpec, Update, get_policy, round_to
from .pool import *  # noqa: F401,F403
from .train import History, StaticScaler, StepResult, fit, predict, prepare, train_step
from . import activation, data, linear, loss, modules, norm, policy, pool, train

__all__ = ["Policy", "TensorSpec", "Update", "Scaling", "POLICIES", "get_policy", "round_to",
           "StaticScaler", "StepResult", "History", "prepare", "train_step", "predict", "fit",
           "activation", "data", "linear", "loss", "modules", "norm", "policy", "pool", "train"]
__all__ += activation.__all__ + linear.__all__ + loss.__all__ + modules.__all__ + \
    norm.__all__ + pool.__all__
