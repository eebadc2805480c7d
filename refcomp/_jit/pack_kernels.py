"""Numba kernels of sub-byte integer packing (speed twins of refcomp.ops.packing).

The specification is :func:`refcomp.ops.packing.pack_int` / ``unpack_int`` with the JIT off
(``IntFormat.encode`` then :func:`~refcomp.ops.packing.pack`, and the reverse); the tests
compare both bit for bit.  ``pack_nibbles`` packs rows of an (m, n) integer array, n even,
two elements per byte (element 2k in bits 0-3), and returns the flat index of the first
element outside [lo, hi] (-1 if none) so the caller can raise the twin's error.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import CACHE

__all__ = ["pack_nibbles", "unpack_nibbles"]


@njit(cache=CACHE)
def pack_nibbles(v, lo, hi, out):
    bad = -1
    n = v.size
    for k in range(n // 2):
        a = np.int64(v[2 * k])
        b = np.int64(v[2 * k + 1])
        if bad < 0 and (a < lo or a > hi or b < lo or b > hi):
            bad = 2 * k if (a < lo or a > hi) else 2 * k + 1
        out[k] = np.uint8((a & 15) | ((b & 15) << 4))
    return bad


@njit(cache=CACHE)
def unpack_nibbles(p, signed, out):
    for k in range(p.size):
        byte = np.int64(p[k])
        a = byte & 15
        b = byte >> 4
        if signed:
            a = a - 16 if a >= 8 else a
            b = b - 16 if b >= 8 else b
        out[2 * k] = a
        out[2 * k + 1] = b
