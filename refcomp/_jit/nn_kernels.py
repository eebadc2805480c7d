"""Numba kernels of the NN engine: float64 erf (the NumPy twin is
:func:`refcomp.nn.activation._erf_spec`, ``math.erf`` per element)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import CACHE


@njit(cache=CACHE)
def erf_flat(x):
    """math.erf of every element of a contiguous float64 vector."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = math.erf(x[i])
    return out
