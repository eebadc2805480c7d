"""Automatic mixed precision on the NN engine (issue 9): dynamic loss scaling as torch's
GradScaler (:mod:`refcomp.amp.scaler`) and named extensions (:mod:`refcomp.amp.scaler_ext`),
torch 2.13's autocast op lists as data and an autocast-like per-layer policy for engine
models (:mod:`refcomp.amp.autocast`).

>>> from refcomp import amp
>>> amp.GradScaler().scale
65536.0
"""

__all__ = []

from .scaler import GradScaler  # noqa: E402
from .scaler_ext import ExtendedGradScaler, skip_groups  # noqa: E402
__all__ += ["ExtendedGradScaler", "GradScaler", "skip_groups"]

from .autocast import (CLASSES, DEVICES, Autocast, AutocastCache, autocast_policies,  # noqa: E402
                       cast_policy, layer_op, op_class, op_lists)
__all__ += ["CLASSES", "DEVICES", "Autocast", "AutocastCache", "autocast_policies",
            "cast_policy", "layer_op", "op_class", "op_lists"]

from .fp8 import (DelayedScaling, Fp8Linear, Fp8LinearCache, TensorMeta, current_scale,  # noqa: E402
                  fp8_model, quantize, update_amax_and_scale)
__all__ += ["DelayedScaling", "Fp8Linear", "Fp8LinearCache", "TensorMeta", "current_scale",
            "fp8_model", "quantize", "update_amax_and_scale"]
