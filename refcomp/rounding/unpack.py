"""Exact unpacking of inputs into the rounding core's form (NumPy specification).

An input element becomes a class (zero, finite, infinity, NaN), a sign, and for finite
values the exact magnitude ``sig * 2**lsb`` (``e = floor(log2)``, ``sticky`` for values
wider than 62 bits).  NaNs keep their payload in float64 layout (52-bit mantissa field,
quiet bit 51), so that a payload survives every conversion as x86 SSE converts it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._bits import U0, U1, bit_length, low_mask, shr

__all__ = ["Unpacked", "ZERO", "FINITE", "INF", "NAN", "FLOAT_LAYOUT", "unpack_float_bits",
           "unpack_int", "bits_view"]

ZERO, FINITE, INF, NAN = 0, 1, 2, 3

#: (exponent bits, mantissa bits) of the IEEE binary dtypes NumPy has
FLOAT_LAYOUT = {np.dtype(np.float16): (5, 10), np.dtype(np.float32): (8, 23),
                np.dtype(np.float64): (11, 52)}
_UINT_OF = {2: np.uint16, 4: np.uint32, 8: np.uint64}


class Unpacked(NamedTuple):
    cls: np.ndarray      # uint8: ZERO, FINITE, INF, NAN
    s: np.ndarray        # uint64 sign (1 = negative)
    e: np.ndarray        # int64 floor(log2 |x|) of finite values
    sig: np.ndarray      # uint64 < 2**62
    lsb: np.ndarray      # int64
    sticky: np.ndarray   # bool
    payload: np.ndarray  # uint64 NaN payload in float64 layout


def bits_view(x: np.ndarray) -> np.ndarray:
    """The bit patterns of a float16/32/64 array, as a same-size unsigned view."""
    return x.view(_UINT_OF[x.dtype.itemsize])


def unpack_float_bits(u, exp_bits: int, man_bits: int, daz: bool = False) -> Unpacked:
    """Unpack IEEE binary bit patterns (exponent/mantissa widths given).

    With ``daz`` subnormal inputs read as zeros of the same sign (x86 MXCSR.DAZ).
    """
    u = np.asarray(u).astype(np.uint64)
    width = 1 + exp_bits + man_bits
    bias = (1 << (exp_bits - 1)) - 1
    emask = (1 << exp_bits) - 1
    s = u >> np.uint64(width - 1)
    E = ((u >> np.uint64(man_bits)) & np.uint64(emask)).astype(np.int64)
    M = u & np.uint64((1 << man_bits) - 1)
    sub = E == 0
    cls = np.where(E == emask, np.where(M == U0, INF, NAN),
                   np.where(sub & ((M == U0) | daz), ZERO, FINITE)).astype(np.uint8)
    sig = np.where(sub, M, M | np.uint64(1 << man_bits))
    lsb = np.where(sub, 1, E) - bias - man_bits
    e = lsb + bit_length(sig) - 1
    payload = M << np.uint64(52 - man_bits)
    return Unpacked(cls, s, e, sig, lsb, np.zeros(u.shape, dtype=bool), payload)


def unpack_int(x) -> Unpacked:
    """Unpack a signed or unsigned integer array of up to 64 bits, exactly."""
    x = np.asarray(x)
    if x.dtype.kind == "i":
        x64 = x.astype(np.int64)
        neg = x64 < 0
        raw = x64.view(np.uint64) if x64.flags.c_contiguous else x64.astype(np.uint64)
        mag = np.where(neg, (~raw) + U1, raw)        # two's complement; INT64_MIN -> 2**63
    else:
        mag = x.astype(np.uint64)
        neg = np.zeros(mag.shape, dtype=bool)
    length = bit_length(mag)
    k = np.maximum(length - 62, 0)
    sig = shr(mag, k)
    sticky = (mag & low_mask(k)) != U0
    cls = np.where(mag == U0, ZERO, FINITE).astype(np.uint8)
    return Unpacked(cls, neg.astype(np.uint64), length - 1, sig, k.astype(np.int64), sticky,
                    np.zeros(mag.shape, dtype=np.uint64))
