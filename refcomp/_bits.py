"""Vectorised uint64 bit helpers shared by every layer (NumPy; shifts of 64+ are defined).

NumPy's shifts by 64 or more bits are undefined (x86 masks the count), so every variable
shift in refcomp goes through these helpers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["U0", "U1", "ALL_ONES", "shl", "shr", "low_mask", "bit_length", "mul64", "bit_length128",
           "shl128", "shr128_sticky", "add128", "sub128", "lt128"]

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


# --- 128-bit unsigned integers as (hi, lo) pairs of uint64 arrays -----------------------

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def mul64(a, b):
    """Full 128-bit product of uint64 arrays a * b, as (hi, lo)."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    a0, a1 = a & _M32, a >> _S32
    b0, b1 = b & _M32, b >> _S32
    ll = a0 * b0
    lh = a0 * b1
    hl = a1 * b0
    hh = a1 * b1
    mid = (ll >> _S32) + (lh & _M32) + (hl & _M32)          # < 3 * 2**32
    lo = (ll & _M32) | (mid << _S32)
    hi = hh + (lh >> _S32) + (hl >> _S32) + (mid >> _S32)
    return hi, lo


def bit_length128(hi, lo):
    """Bit length of 128-bit values."""
    return np.where(hi != U0, bit_length(hi) + 64, bit_length(lo))


def shl128(hi, lo, k):
    """(hi, lo) << k for 0 <= k < 128 (bits shifted past 128 are lost)."""
    k = np.asarray(k, dtype=np.int64)
    big = k >= 64
    h_small = shl(hi, k) | np.where(k == 0, U0, shr(lo, 64 - k))
    return (np.where(big, shl(lo, k - 64), h_small), np.where(big, U0, shl(lo, k)))


def shr128_sticky(hi, lo, k):
    """(hi, lo) >> k for k >= 0, and whether nonzero bits were shifted out."""
    k = np.asarray(k, dtype=np.int64)
    big = k >= 64
    lo_small = shr(lo, k) | np.where(k == 0, U0, shl(hi, 64 - k))
    new_hi = np.where(big, U0, shr(hi, k))
    new_lo = np.where(big, shr(hi, k - 64), lo_small)
    lost = np.where(big, (lo != U0) | ((hi & low_mask(k - 64)) != U0),
                    (lo & low_mask(k)) != U0)
    return new_hi, new_lo, lost


def add128(ah, al, bh, bl):
    lo = al + bl
    return ah + bh + (lo < al).astype(np.uint64), lo


def sub128(ah, al, bh, bl):
    """(a - b) mod 2**128."""
    lo = al - bl
    return ah - bh - (al < bl).astype(np.uint64), lo


def lt128(ah, al, bh, bl):
    return (ah < bh) | ((ah == bh) & (al < bl))
