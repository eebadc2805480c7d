"""Quantization references built on :mod:`refcomp.ops` and :mod:`refcomp.nn`, each module
mirroring torch 2.13 (``torch.ao.quantization``, CPU x86 / fbgemm engine) bit for bit as
its docstring names:

- :mod:`~refcomp.quant.qparams`, :mod:`~refcomp.quant.observers`,
  :mod:`~refcomp.quant.histogram`: observers and their qparams rule;
- :mod:`~refcomp.quant.choose`: ATen's / fbgemm's ``ChooseQuantizationParams``;
- :mod:`~refcomp.quant.fake_quant`, :mod:`~refcomp.quant.lsq`,
  :mod:`~refcomp.quant.fq_modules`, :mod:`~refcomp.quant.torchsum`: straight-through and
  learnable fake quantization, the ``FakeQuantize`` and fused QAT modules, torch's float32
  sum;
- :mod:`~refcomp.quant.fuse`: conv / linear + batch-norm (+ relu) fusion;
- :mod:`~refcomp.quant.dynamic`: dynamic quantization of Linear;
- :mod:`~refcomp.quant.static`: integer-only quantized Linear and Conv2d (fbgemm);
- :mod:`~refcomp.quant.tflite`: int8 fully-connected / convolution with TFLite's
  fixed-point requantization (the gemmlowp profile);
- :mod:`~refcomp.quant.ptq`, :mod:`~refcomp.quant.qmodules`: static post-training
  quantization of an engine model (prepare, calibrate, convert to integer-only modules);
- :mod:`~refcomp.quant.qat`: quantization-aware training on the engine (prepare_qat with
  fake-quantized weights and activations, ConvBn folding, train, convert);
- :mod:`~refcomp.quant.torchao`, :mod:`~refcomp.quant.torchao_float8`: torchao 0.18's
  int8 dynamic-activation / int8-weight Linear, int4 weight-only (tinygemm), float8
  per-tensor / per-row scaling.
"""

from .choose import QParams, choose_qparams_fbgemm
from .dynamic import DynamicQuantizedLinear, dynamic_linear_forward, quantize_dynamic
from .fake_quant import (fake_quantize_per_channel_backward, fake_quantize_per_channel_forward,
                         fake_quantize_per_tensor_backward, fake_quantize_per_tensor_forward)
from .fq_modules import FakeQuantize, FusedMovingAvgObsFakeQuantize
from .fuse import fuse_conv_bn_weights, fuse_linear_bn_weights, fuse_modules, fuse_modules_qat
from .histogram import HistogramObserver
from .lsq import (fake_quantize_learnable_per_channel_backward,
                  fake_quantize_learnable_per_channel_forward,
                  fake_quantize_learnable_per_tensor_backward,
                  fake_quantize_learnable_per_tensor_forward)
from .observers import (MinMaxObserver, MovingAverageMinMaxObserver,
                        MovingAveragePerChannelMinMaxObserver, PerChannelMinMaxObserver)
from .ptq import QConfig, calibrate, convert, get_default_qconfig, prepare
from .qat import QATModel, get_default_qat_qconfig, prepare_qat
from .qmodules import QuantizedModel
from .qparams import QDtype, QScheme, calculate_qparams, qparams_spec
from .static import quantized_conv2d, quantized_linear
from .torchsum import torch_sum_f32
from . import qat, tflite

__all__ = ["QParams", "choose_qparams_fbgemm", "DynamicQuantizedLinear",
           "dynamic_linear_forward", "quantize_dynamic", "fake_quantize_per_tensor_forward",
           "fake_quantize_per_tensor_backward", "fake_quantize_per_channel_forward",
           "fake_quantize_per_channel_backward", "FakeQuantize",
           "FusedMovingAvgObsFakeQuantize", "fuse_conv_bn_weights", "fuse_linear_bn_weights",
           "fuse_modules", "fuse_modules_qat", "HistogramObserver", "fake_quantize_learnable_per_tensor_forward",
           "fake_quantize_learnable_per_tensor_backward",
           "fake_quantize_learnable_per_channel_forward",
           "fake_quantize_learnable_per_channel_backward", "MinMaxObserver",
           "MovingAverageMinMaxObserver", "PerChannelMinMaxObserver",
           "MovingAveragePerChannelMinMaxObserver", "QDtype", "QScheme", "calculate_qparams",
           "qparams_spec", "quantized_linear", "quantized_conv2d", "torch_sum_f32", "QConfig",
           "get_default_qconfig", "prepare", "calibrate", "convert", "QuantizedModel",
           "tflite", "QATModel", "get_default_qat_qconfig", "prepare_qat", "qat"]
