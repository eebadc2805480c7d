"""Integer helpers for the Numba kernels."""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros

U64 = np.uint64
I64 = np.int64


@njit(inline="always")
def bitlen(x):
    """Number of significant bits of a uint64 (0 for 0), via LLVM's ctlz."""
    return I64(64) - I64(leading_zeros(U64(x)))
