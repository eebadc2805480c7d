"""Numba kernels of the NN engine: float64 erf (NumPy twin:
:func:`refcomp.nn.activation._erf_spec`, ``math.erf`` per element) and the float32 fused
multiply-add of the optimizers' native path (twin: :func:`refcomp.ops.fma` in float32)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import CACHE
from .fast_ops import fma_native


@njit(cache=CACHE)
def erf_flat(x):
    """math.erf of every element of a contiguous float64 vector."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = math.erf(x[i])
    return out


@njit(cache=CACHE)
def fma32_flat(a, b, c):
    """fma(a[i], b[i], c[i]) rounded once to float32, contiguous float32 vectors (the FMA
    instruction through llvm.fma.f32)."""
    out = np.empty_like(c)
    for i in range(c.size):
        out[i] = fma_native(a[i], b[i], c[i])
    return out
