"""Vectorised uint64 bit helpers shared by every layer (NumPy; shifts of 64+ are defined).

NumPy's shifts by 64 or more bits are undefined (x86 masks the count), so every variable
shift in refcomp goes through these helpers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["U0", "U1", "ALL_ONES", "shl", "shr", "low_mask", "bit_length"]

U0 = np.uint64(0)
U1 = np.uint64(1)
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def shl(x, k):
    """``x << k`` for uint64 x and int64 k >= 0, giving 0 for k >= 64."""
    k = np.asarray(k, dtype=np.int64)
    return np.where(k >= 64, U0, np.left_shift(np.asarray(x, dtype=np.uint64),
                                                np.minimum(k, 63).astype(np.uint64)))


def shr(x, k):
    """``x >> k`` for uint64 x and int64 k >= 0, giving 0 for k >= 64."""
    k = np.asarray(k, dtype=np.int64)
    return np.where(k >= 64, U0, np.right_shift(np.asarray(x, dtype=np.uint64),
                                                 np.minimum(k, 63).astype(np.uint64)))


def low_mask(k):
    """``2**k - 1`` as uint64 (all ones for k >= 64)."""
    k = np.asarray(k, dtype=np.int64)
    return np.where(k >= 64, ALL_ONES, shl(U1, k) - U1)


def bit_length(x):
    """Number of significant bits of each uint64 (0 for 0), exactly."""
    x = np.asarray(x, dtype=np.uint64)
    hi = (x >> np.uint64(32)).astype(np.float64)
    lo = (x & np.uint64(0xFFFFFFFF)).astype(np.float64)
    # each 32-bit half converts exactly; frexp's exponent is the bit length of an integer
    return np.where(hi > 0, np.frexp(hi)[1].astype(np.int64) + 32,
                    np.frexp(lo)[1].astype(np.int64))
