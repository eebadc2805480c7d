"""Rounding to integral values and conversion to integers (NumPy).

Both round once with THE rounding core (:func:`refcomp.rounding.core.round_at`, quantum
``2**0``) and follow Berkeley SoftFloat 3e's 8086-SSE specialisation for flags and invalid
results (``f64_roundToInt.c``, ``s_roundToI64.c``, ``s_roundToUI64.c``, ``specialize.h``):
an invalid conversion (NaN, infinity, out of range) gives the most negative integer for
signed results and all ones for unsigned ones and raises only invalid; a negative value
that rounds to zero converts to 0 (inexact) but any other negative value is invalid for an
unsigned result; ``exact=False`` suppresses the inexact flag.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .._bits import U0, U1, bit_length, shl
from .._inputs import check_bool
from ..formats import codec
from ..formats.codec import widen
from ..rounding import core, stochastic
from ..rounding.cast import as_input, cast_unpacked, make_plan, value_dtype
from ..rounding.modes import Flag, as_generator, as_random_bits, as_rounding
from ..rounding.params import P
from ..rounding.unpack import FINITE, ZERO, Unpacked
from .exact import operand

__all__ = ["round_to_integral", "to_int"]


def _flat(a):
    arr = as_input(a, "a", allow_int=False)[0]
    return widen(arr).reshape(-1), arr.shape


def _shape(out, fl, shape, flags):
    out = out.reshape(shape)
    out = out[()] if len(shape) == 0 else out
    if not flags:
        return out
    fl = fl.reshape(shape)
    return out, (fl[()] if len(shape) == 0 else fl)


def _round_integer(u: Unpacked, qe, mode, rng, rbits, x):
    """Round finite |x| to a multiple of 2**qe; stochastic decisions settled exactly."""
    sr = mode == core.MODE.SR
    key = int(rng.bit_generator.random_raw()) if sr else None
    w = stochastic.words(key, 0, u.cls.size) if sr else None
    n, inexact, amb = core.round_at(u.s, u.sig, u.lsb, u.sticky, qe, mode, w, rbits)
    fin = u.cls == FINITE
    idx = np.flatnonzero(amb & fin)
    if idx.size:
        mags = [abs(Fraction(float(x[i]))) for i in idx]
        up = stochastic.decide(mags, qe[idx].tolist(), w[idx].tolist(), rng)
        force = np.full(u.cls.size, -1, dtype=np.int8)
        force[idx] = up
        n, inexact, _ = core.round_at(u.s, u.sig, u.lsb, u.sticky, qe, mode, w, rbits, force)
    return n, inexact


def _rint_fast(x, plan):
    """``numpy.rint`` where it is this operation, else None: nearest-even rounding of
    finite float32 / float64 values of the format (no subnormals read as zero).  C99
    ``rint`` in the default rounding mode is IEEE roundToIntegralTiesToEven, exact on its
    own format, and an integral float32 value is a float32 value, so the result is the
    rounding core's (tests/test_convert.py compares the two)."""
    p = plan.p
    name = plan.fmt.name
    if int(p[P.MODE]) != core.MODE.NE or p[P.DAZ] or name not in ("float32", "float64") \
            or x.dtype != np.float64 or not np.all(np.isfinite(x)):
        return None
    if name == "float32":
        with np.errstate(over="ignore"):
            if not np.array_equal(x.astype(np.float32), x):
                return None
    return np.rint(x)


def round_to_integral(a, fmt, rounding="nearest_even", *, exact=True, flags=False,
                      tininess="after", overflow=None, subnormals=None, rng=None,
                      random_bits=None, profile=None, dtype=None):
    """Round to an integral value of the format (IEEE 754-2019 roundToIntegral).

    The result is the integral value of `fmt` nearest to `a` in the given direction,
    rounded once: for `a` in the format this is IEEE's roundToIntegral (exact), for other
    float64 values the candidates are the format's integral values, so the result never
    goes through an intermediate rounding.

    Parameters
    ----------
    a : array_like of float
    fmt : FloatFormat or str
    rounding : str or Rounding
        Any mode; ``odd`` gives the odd neighbour (SoftFloat: magnitudes below 1 give 1).
    exact : bool
        Raise inexact when the result differs from `a` (roundToIntegralExact); with
        ``exact=False`` inexact is never raised.
    flags, tininess, overflow, subnormals, rng, random_bits, profile, dtype
        As in :func:`refcomp.ops.add`.

    Returns
    -------
    values (float64 unless `dtype`), and flags with ``flags=True``.

    Examples
    --------
    >>> import refcomp as rc
    >>> rc.ops.round_to_integral([2.5, -2.5, 0.3], "float16", "nearest_even").tolist()
    [2.0, -2.0, 0.0]
    >>> rc.ops.round_to_integral([2.5, 0.3], "float16", "odd").tolist()
    [3.0, 1.0]
    """
    plan = make_plan(fmt, rounding, overflow, subnormals, rng, tininess, profile, random_bits)
    exact, flags = check_bool(exact, "exact"), check_bool(flags, "flags")
    vdt = value_dtype(plan.fmt, dtype)[0]
    p = plan.p
    x, shape = _flat(a)
    if not flags:
        fast = _rint_fast(x, plan)
        if fast is not None:
            return _shape(fast.astype(vdt), None, shape, False)
    u = operand(x, int(p[P.EMIN]) if p[P.DAZ] else None)
    m, emin = int(p[P.M]), int(p[P.EMIN])
    fq = np.maximum(u.e, emin) - m
    if not p[P.SUBN]:
        fq = np.where(u.e < emin, emin, fq)
    qe = np.maximum(fq, 0)
    n, inexact = _round_integer(u, qe, int(p[P.MODE]), plan.rng, int(p[P.RBITS]), x)
    fin = u.cls == FINITE
    cls = np.where(fin & (n == U0), ZERO, u.cls).astype(np.uint8)
    n_safe = np.where(n == U0, U1, n)
    res = Unpacked(cls, u.s, qe + bit_length(n_safe) - 1, n, qe, np.zeros(x.size, bool),
                   u.payload)
    codes, fl, _ = cast_unpacked(res, p)
    fl = fl | np.where(fin & inexact, np.uint8(Flag.INEXACT), np.uint8(0))
    if not exact:
        fl &= np.uint8(~Flag.INEXACT & 0xFF)
    out = codec.decode(codes, plan.fmt).astype(vdt)
    return _shape(out, fl, shape, flags)


def to_int(a, bits=32, signed=True, rounding="nearest_even", exact=True, flags=False, *,
           rng=None, random_bits=None):
    """Convert to an integer of `bits` bits with one rounding (IEEE 754-2019 5.8).

    Parameters
    ----------
    a : array_like of float
    bits : int
        Integer width, 1..64.
    signed : bool
    rounding : str or Rounding
        Any mode (``stochastic`` needs `rng`).
    exact : bool
        Raise inexact when the conversion rounds (SoftFloat's ``exact`` argument).
    flags : bool
        Also return the flags (invalid, inexact).

    Returns
    -------
    int64 (signed) or uint64 (unsigned) array, and flags with ``flags=True``.  Invalid
    conversions give ``-2**(bits-1)`` (signed) or ``2**bits - 1`` (unsigned), as x86 SSE.

    Examples
    --------
    >>> import refcomp as rc
    >>> rc.ops.to_int([2.5, -2.5, 1e10, float("nan")], bits=32).tolist()
    [2, -2, -2147483648, -2147483648]
    >>> rc.ops.to_int(-0.3, bits=32, signed=False, rounding="toward_zero", flags=True)
    (np.uint64(0), np.uint8(1))
    """
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be an integer, got {bits!r}")
    if not 1 <= int(bits) <= 64:
        raise ValueError(f"bits={int(bits)} is out of range: it must be in [1, 64]")
    bits = int(bits)
    signed, exact = check_bool(signed, "signed"), check_bool(exact, "exact")
    flags = check_bool(flags, "flags")
    rnd = as_rounding(rounding)
    rng = as_generator(rng, rnd)
    rbits = as_random_bits(random_bits, rnd)
    x, shape = _flat(a)
    u = operand(x)
    qe = np.zeros(x.size, dtype=np.int64)
    n, inexact = _round_integer(u, qe, rnd.code, rng, rbits, x)
    fin = u.cls == FINITE
    big = fin & (u.e >= 64)                          # beyond every integer width
    neg = u.s == U1
    if signed:
        limit = np.where(neg, U1 << np.uint64(bits - 1), (U1 << np.uint64(bits - 1)) - U1)
    else:
        limit = np.where(neg, U0, shl(U1, bits) - U1)
    ok = ((u.cls == ZERO) | (fin & ~big & (n <= limit)))
    invalid = ~ok
    if signed:
        val = np.where(neg, (~n + U1), n).view(np.int64)
        bad = -(1 << (bits - 1))
        out = np.where(invalid, np.int64(bad), np.where(u.cls == ZERO, 0, val))
    else:
        out = np.where(invalid, shl(U1, bits) - U1, np.where(u.cls == ZERO, U0, n))
    fl = np.where(invalid, np.uint8(Flag.INVALID),
                  np.where(fin & inexact & bool(exact), np.uint8(Flag.INEXACT), np.uint8(0)))
    return _shape(out, fl.astype(np.uint8), shape, flags)
