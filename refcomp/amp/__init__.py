"""Automatic mixed precision on the NN engine (issue 9): dynamic loss scaling as torch's
GradScaler (:mod:`refcomp.amp.scaler`) and named extensions (:mod:`refcomp.amp.scaler_ext`),
torch 2.13's autocast op lists as data and an autocast-like per-layer policy for engine
models (:mod:`refcomp.amp.autocast`), FP8 delayed and current scaling of Linear layers
(:mod:`refcomp.amp.fp8`).

>>> from refcomp import amp
>>> amp.GradScaler().scale
65536.0
"""

from .autocast import (CLASSES, DEVICES, Autocast, AutocastCache, autocast_policies,
                       cast_policy, layer_op, op_class, op_lists)
from .fp8 import (DelayedScaling, Fp8Linear, Fp8LinearCache, TensorMeta, current_scale,
                  fp8_model, quantize, update_amax_and_scale)
from .scaler import GradScaler
from .scaler_ext import ExtendedGradScaler, skip_groups

__all__ = ["GradScaler", "ExtendedGradScaler", "skip_groups", "CLASSES", "DEVICES",
           "Autocast", "AutocastCache", "autocast_policies", "cast_policy", "layer_op",
           "op_class", "op_lists", "DelayedScaling", "Fp8Linear", "Fp8LinearCache",
           "TensorMeta", "current_scale", "fp8_model", "quantize", "update_amax_and_scale"]
