"""Numba kernels of TFLite's MultiplyByQuantizedMultiplier (speed twins of refcomp.ops.requant).

The specification is the NumPy code of :mod:`refcomp.ops.requant` (``_np_double``,
``_np_single``, ``_np_wide``); tests/test_requant.py runs both on the same inputs and
compares every bit.  Each kernel fuses the input checks into its loop: it computes every
element with its operands clamped into their valid ranges (so that an invalid element
cannot reach an undefined LLVM shift or a signed overflow), ORs the validity conditions
into one flag, and returns that flag.  When it is set, the caller runs the NumPy twin,
which locates the first bad element and raises the error; a kernel never reports a result
for invalid input.  The loops are branch-free
(selects only) so that LLVM can if-convert and vectorise them.

Operands are 1-D arrays of the output's length or plain integers (broadcast scalars); the
overloaded :func:`_at` reads either, so Numba compiles one specialisation per combination.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import CACHE

__all__ = ["mbqm_double", "mbqm_single", "mbqm_wide"]

I64 = np.int64
MIN32 = I64(-(1 << 31))
MAX32 = I64((1 << 31) - 1)
NUDGE = I64(1 << 30)
WIDE_X = I64(1 << 47)             # the int64 overload's |x| bound (x in [-2**47, 2**47))
REDUCE_LIMIT = I64(0x7FFF0000)
REDUCED_MAX = I64(0x7FFF)


def _at(a, i):
    """Element i of a 1-D operand, or the operand itself when it is a broadcast scalar."""
    raise NotImplementedError          # only the Numba overload below is ever called


@overload(_at, inline="always")
def _at_impl(a, i):
    if isinstance(a, types.Array):
        return lambda a, i: I64(a[i])
    return lambda a, i: I64(a)


@njit(inline="always")
def _clamp(v, lo, hi):
    return min(max(v, lo), hi)


@njit(inline="always")
def _rdbpot(v, e):
    """gemmlowp RoundingDivideByPOT of v by 2**e (0 <= e <= 31): ties away from zero."""
    mask = (I64(1) << e) - I64(1)
    threshold = (mask >> I64(1)) + I64(v < 0)
    return (v >> e) + I64((v & mask) > threshold)


@njit(cache=CACHE)
def mbqm_double(x, m, s, out):
    """Double rounding: RoundingDivideByPOT(SRDHM(x * 2**max(s, 0), m), max(-s, 0)).

    Returns True when some element is invalid (x or the shifted x outside int32, m outside
    [0, 2**31 - 1], s outside [-31, 30]); ``out`` is then meaningless.
    """
    bad = False
    for i in range(out.size):
        xi = _at(x, i)
        mi = _at(m, i)
        si = _at(s, i)
        mc = _clamp(mi, I64(0), MAX32)
        left = _clamp(si, I64(0), I64(30))
        right = _clamp(-si, I64(0), I64(31))
        xs = _clamp(xi, MIN32, MAX32) << left
        xc = _clamp(xs, MIN32, MAX32)
        # SRDHM as floor((a*b + 2**30) / 2**31), equal to gemmlowp's truncating form (see
        # refcomp.ops.requant); it cannot saturate here because mc >= 0
        out[i] = _rdbpot((xc * mc + NUDGE) >> I64(31), right)
        bad |= ((xi < MIN32) | (xi > MAX32) | (mi < 0) | (mi > MAX32) | (si < -31)
                | (si > 30) | (xs < MIN32) | (xs > MAX32))
    return bad


@njit(cache=CACHE)
def mbqm_single(x, m, s, out):
    """Single rounding (TFLITE_SINGLE_ROUNDING): (x*m + 2**(30 - s)) >> (31 - s).

    Returns True when some element is invalid (x outside int32, m outside [0, 2**31 - 1],
    s outside [-31, 30], or a result outside int32).
    """
    bad = False
    for i in range(out.size):
        xi = _at(x, i)
        mi = _at(m, i)
        si = _at(s, i)
        mc = _clamp(mi, I64(0), MAX32)
        total = I64(31) - _clamp(si, I64(-31), I64(30))
        r = (_clamp(xi, MIN32, MAX32) * mc + (I64(1) << (total - I64(1)))) >> total
        out[i] = r
        bad |= ((xi < MIN32) | (xi > MAX32) | (mi < 0) | (mi > MAX32) | (si < -31)
                | (si > 30) | (r < MIN32) | (r > MAX32))
    return bad


@njit(cache=CACHE)
def mbqm_wide(x, m, s, out):
    """TFLite's int64_t-x overload: 16-bit reduced multiplier, (x*rm + 2**(14-s)) >> (15-s).

    Returns True when some element is invalid (x outside [-2**47, 2**47), m outside
    [0, 2**31 - 1], s outside [-31, 7], or a result outside int32).
    """
    bad = False
    for i in range(out.size):
        xi = _at(x, i)
        mi = _at(m, i)
        si = _at(s, i)
        mc = _clamp(mi, I64(0), MAX32)
        rm = (mc + I64(1 << 15)) >> I64(16) if mc < REDUCE_LIMIT else REDUCED_MAX
        total = I64(15) - _clamp(si, I64(-31), I64(7))
        xc = _clamp(xi, -WIDE_X, WIDE_X - I64(1))
        r = (xc * rm + (I64(1) << (total - I64(1)))) >> total
        out[i] = r
        bad |= ((xi < -WIDE_X) | (xi >= WIDE_X) | (mi < 0) | (mi > MAX32) | (si < -31)
                | (si > 7) | (r < MIN32) | (r > MAX32))
    return bad
