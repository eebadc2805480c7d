"""Rounding into integer and fixed-point formats, and exact fixed-point arithmetic.

Every result is rounded once by THE rounding core (:func:`refcomp.rounding.core.round_at`,
any mode, stochastic decisions settled exactly), then the overflow rule
(:class:`refcomp.rounding.IntOverflow`, ``saturate`` or ``wrap``) is applied to the rounded
integer.  Two paths feed the core:

* float inputs (float16/32/64) are unpacked exactly into ``sig * 2**lsb`` (vectorised);
* exact rationals -- integer codes of fixed-point operands, their sums, products and
  quotients -- are formed with Python integers, so nothing is lost at any width (this path
  runs at Python speed, roughly 10 microseconds per element).

Exact rationals are reduced first: ``v = 2K + r`` with integral K and ``0 <= r < 2``, and
``round(±v) = ±(2K + round(±r))`` in every mode, because rounding commutes with adding an
even integer (ties, parity and the direction of the directed modes are unchanged;
stochastic rounding sees the same fraction).  The core then rounds ``r`` known to 60
fraction bits plus a sticky bit (exact decisions for stochastic rounding with up to 60
random bits; an undecided exact-probability case is settled with the exact fraction), and
`wrap` gets the exact rounded integer.  Float inputs of 2**59 units or more are integers
already (float64 has 53 bits) and skip the rounding.

Conventions are refcomp's own (no backend mirrored): NaN inputs are an error; infinities
saturate, and are an error under ``wrap``; the narrow (symmetric) range saturates to
``±(2**(b-1) - 1)``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .._bits import U0, U1
from ..formats.codec import widen
from ..formats.intformat import FixedFormat, IntFormat, _as_int_array, int_format
from ..rounding import core, stochastic
from ..rounding.cast import as_input
from ..rounding.modes import (IntOverflow, Rounding, as_generator, as_int_overflow,
                              as_random_bits, as_rounding)
from ..rounding.unpack import FINITE, INF, NAN
from .exact import operand

__all__ = ["quantize_int", "quantize_fixed", "fixed_convert", "fixed_add", "fixed_sub",
           "fixed_mul", "fixed_div", "fixed_value", "round_rationals"]

_BIG = 59                        # float inputs of >= 2**_BIG units are exact integers
_GUARD = 60                      # fraction bits of the reduced rationals (module docstring)
_MAX_SCALE_EXP = 4096            # |scale_exp| beyond this only gives 0 or the range ends


class _Opts:
    """Checked rounding options of one call."""

    def __init__(self, rounding, overflow, rng, random_bits):
        self.rnd = as_rounding(rounding)
        self.ovf = as_int_overflow(overflow)
        self.rng = as_generator(rng, self.rnd)
        self.rbits = as_random_bits(random_bits, self.rnd)
        self.sr = self.rnd is Rounding.STOCHASTIC

    def words(self, n):
        if not self.sr:
            return None
        key = int(self.rng.bit_generator.random_raw())
        return stochastic.words(key, 0, n)


def _as_fmt(fmt) -> IntFormat:
    if isinstance(fmt, FixedFormat):
        return fmt.integer
    if isinstance(fmt, IntFormat):
        return fmt
    if isinstance(fmt, str):
        return int_format(fmt)
    raise TypeError(f"fmt must be an IntFormat, FixedFormat or a name like 'int8', got "
                    f"{fmt!r}")


def _check_wrap(fmt: IntFormat, opt: _Opts):
    if opt.ovf is IntOverflow.WRAP and fmt.narrow:
        raise ValueError(f"overflow='wrap' is not defined for the narrow range of {fmt.name}")


def _finish(neg, n, big, fmt: IntFormat, opt: _Opts):
    """Signed results from magnitudes n (uint64, < 2**63 + 2) plus the `big` elements,
    given as a dict index -> exact Python int (signed), under the overflow rule."""
    lo, hi = fmt.min, fmt.max
    out = np.empty(n.shape, dtype=fmt.value_dtype)
    if opt.ovf is IntOverflow.SATURATE:
        lim_neg = np.uint64(-lo)
        lim_pos = np.uint64(hi)
        sat_neg = neg & (n > lim_neg)
        sat_pos = ~neg & (n > lim_pos)
        if fmt.value_dtype == np.uint64:
            out[:] = np.where(neg | sat_neg, U0, np.where(sat_pos, lim_pos, n))
        else:
            mag = np.minimum(n, np.where(neg, lim_neg, lim_pos))
            val = np.where(neg, (~mag + U1), mag).view(np.int64)
            out[:] = val
    else:
        raw = np.where(neg, ~n + U1, n)                     # two's complement modulo 2**64
        low = raw if fmt.bits == 64 else raw & np.uint64((1 << fmt.bits) - 1)
        out[:] = fmt.decode(low)                            # the low bits, read back
    for i, v in big.items():
        out[i] = _one(v, fmt, opt)
    return out


def _one(v: int, fmt: IntFormat, opt: _Opts) -> int:
    """Overflow rule on one exact Python integer."""
    if opt.ovf is IntOverflow.SATURATE:
        return min(max(v, fmt.min), fmt.max)
    v &= (1 << fmt.bits) - 1
    if fmt.signed and v >= 1 << (fmt.bits - 1):
        v -= 1 << fmt.bits
    return v


def round_rationals(neg, mags, opt: _Opts):
    """Round exact magnitudes (Fractions, in units of the target quantum) to integers.

    Returns the signed rounded integers (Python ints) and the inexact mask.
    """
    n = len(mags)
    base = [0] * n
    sig = np.zeros(n, dtype=np.uint64)
    sticky = np.zeros(n, dtype=bool)
    if opt.rbits > _GUARD:
        raise ValueError(f"random_bits={opt.rbits}: integer and fixed-point operands are "
                         f"rounded with {_GUARD} fraction bits; use random_bits <= {_GUARD}")
    for i, m in enumerate(mags):
        k = m.numerator // (m.denominator << 1)
        r = m - 2 * k                                       # in [0, 2)
        base[i] = 2 * k
        q, rem = divmod(r.numerator << _GUARD, r.denominator)
        sig[i] = q
        sticky[i] = rem != 0
    s = np.asarray(neg, dtype=np.uint64)
    lsb = np.full(n, -_GUARD, dtype=np.int64)
    qe = np.zeros(n, dtype=np.int64)
    w = opt.words(n)
    mode = opt.rnd.code
    rn, inexact, amb = core.round_at(s, sig, lsb, sticky, qe, mode, w, opt.rbits)
    if amb.any():
        idx = np.flatnonzero(amb)
        reduced = [mags[i] - base[i] for i in idx]
        up = stochastic.decide(reduced, [0] * idx.size, w[idx].tolist(), opt.rng)
        force = np.full(n, -1, dtype=np.int8)
        force[idx] = up
        rn, inexact, _ = core.round_at(s, sig, lsb, sticky, qe, mode, w, opt.rbits, force)
    out = [(-1 if ng else 1) * (b + int(r)) for ng, b, r in zip(neg, base, rn.tolist())]
    return out, inexact


def quantize_int(x, fmt, rounding="nearest_even", *, overflow="saturate", rng=None,
                 random_bits=None, scale_exp=0):
    """Round values to integers of an integer format: ``q = round(x * 2**-scale_exp)``.

    Parameters
    ----------
    x : array_like
        float16/32/64 values (exact), or integers (exact at any width).
    fmt : IntFormat or str
        ``"int8"``, ``"uint4"``, ``"int8_narrow"``, ``IntFormat(12)``, ... (for a
        FixedFormat use :func:`quantize_fixed`)
    rounding : str or Rounding
        Any of the seven modes (``stochastic`` needs `rng`).
    overflow : {"saturate", "wrap"}
    rng : numpy.random.Generator, optional
    random_bits : int, optional
        Stochastic rounding with r random bits (see :func:`refcomp.cast`).
    scale_exp : int
        Quantum exponent, -4096..4096: the result counts units of ``2**scale_exp`` (0 for
        integers, ``-frac_bits`` for fixed point).

    Returns
    -------
    numpy.ndarray of int64 (uint64 for uint64), the stored integers (``fmt.encode`` gives
    the bit patterns).

    Raises
    ------
    ValueError
        NaN input (index named), infinity with ``wrap``, ``wrap`` with a narrow range.

    Examples
    --------
    >>> import refcomp as rc
    >>> rc.ops.quantize_int([2.5, 3.5, -2.5, 300.0, -1e9], "int8").tolist()
    [2, 4, -2, 127, -128]
    >>> rc.ops.quantize_int([300.0, -129.0], "int8", overflow="wrap").tolist()
    [44, 127]
    >>> rc.ops.quantize_int([-200.0, 0.49], "int8_narrow", rounding="nearest_away").tolist()
    [-127, 0]
    """
    if isinstance(fmt, FixedFormat):
        raise TypeError(f"quantize_int takes an integer format; for {fmt.name} use "
                        f"quantize_fixed (it sets scale_exp = -frac_bits)")
    fmt = _as_fmt(fmt)
    opt = _Opts(rounding, overflow, rng, random_bits)
    _check_wrap(fmt, opt)
    if isinstance(scale_exp, (bool, np.bool_)) or not isinstance(scale_exp, (int, np.integer)):
        raise TypeError(f"scale_exp must be an integer, got {scale_exp!r}")
    if abs(int(scale_exp)) > _MAX_SCALE_EXP:
        raise ValueError(f"scale_exp={int(scale_exp)} is out of range: it must be in "
                         f"[-{_MAX_SCALE_EXP}, {_MAX_SCALE_EXP}]")
    qe = int(scale_exp)
    arr, layout = as_input(x, "x")
    shape = arr.shape
    if layout is None:
        flat = arr.reshape(-1)
        neg = (flat < 0) if flat.dtype.kind == "i" else np.zeros(flat.size, bool)
        mags = [Fraction(abs(int(v))) / Fraction(2) ** qe for v in flat.tolist()]
        vals, _ = round_rationals(neg.tolist(), mags, opt)
        return _from_ints(vals, fmt, opt).reshape(shape)
    flat = widen(arr).reshape(-1)
    u = operand(flat)
    bad = np.flatnonzero(u.cls == NAN)
    if bad.size:
        raise ValueError(f"x[{int(bad[0])}] is NaN: it has no integer value")
    inf = u.cls == INF
    if opt.ovf is IntOverflow.WRAP and inf.any():
        raise ValueError(f"x[{int(np.flatnonzero(inf)[0])}] is infinite: overflow='wrap' "
                         f"has no value for it")
    fin = u.cls == FINITE
    big_m = fin & (u.e - qe >= _BIG)
    small = fin & ~big_m
    neg = u.s == U1
    qes = np.full(flat.size, qe, dtype=np.int64)
    w = opt.words(flat.size)
    n, _, amb = core.round_at(u.s, u.sig, u.lsb, u.sticky, qes, opt.rnd.code, w, opt.rbits)
    if (amb & small).any():
        idx = np.flatnonzero(amb & small)
        mags = [abs(Fraction(float(flat[i]))) for i in idx]
        up = stochastic.decide(mags, [qe] * idx.size, w[idx].tolist(), opt.rng)
        force = np.full(flat.size, -1, dtype=np.int8)
        force[idx] = up
        n, _, _ = core.round_at(u.s, u.sig, u.lsb, u.sticky, qes, opt.rnd.code, w,
                                opt.rbits, force)
    n = np.where(small, n, U0)
    big = {i: (-1 if neg[i] else 1) << 70 for i in np.flatnonzero(inf).tolist()}  # saturates
    idx = np.flatnonzero(big_m)
    if idx.size:
        # at least 2**_BIG units: an exact integer multiple (float64 has 53 bits)
        for i in idx.tolist():
            big[i] = int(Fraction(float(flat[i])) / Fraction(2) ** qe)
    return _finish(neg, n, big, fmt, opt).reshape(shape)


def _from_ints(vals, fmt: IntFormat, opt: _Opts) -> np.ndarray:
    return np.array([_one(v, fmt, opt) for v in vals], dtype=fmt.value_dtype)


def quantize_fixed(x, fmt: FixedFormat, rounding="nearest_even", *, overflow="saturate",
                   rng=None, random_bits=None):
    """Round values into a fixed-point format; returns the stored integers.

    ``quantize_fixed(x, FixedFormat(16, 14))`` is ``round(x * 2**14)`` into int16 under the
    overflow rule; ``fmt.integer.encode`` gives the bit patterns and :func:`fixed_value`
    (``fmt.decode(fmt.encode(q))``) the values.

    >>> import refcomp as rc
    >>> q15 = rc.formats.FixedFormat(16, 15)
    >>> rc.ops.quantize_fixed([0.5, -1.0, 1.0, 1 / 3], q15).tolist()
    [16384, -32768, 32767, 10923]
    """
    if not isinstance(fmt, FixedFormat):
        raise TypeError(f"fmt must be a FixedFormat, got {fmt!r}")
    return quantize_int(x, fmt.integer, rounding, overflow=overflow, rng=rng,
                        random_bits=random_bits, scale_exp=-fmt.frac_bits)


def _codes(q, fmt: FixedFormat, what: str) -> list:
    if not isinstance(fmt, FixedFormat):
        raise TypeError(f"format of {what} must be a FixedFormat, got {fmt!r}")
    v = _as_int_array(q, what)
    from ..formats.intformat import _check_range
    _check_range(v, fmt.integer.min, fmt.integer.max, f"{what} ({fmt.name})")
    return v


def _rational_result(values, dst: FixedFormat, opt: _Opts, shape):
    """Round exact Fractions (real values) into `dst`."""
    scale = Fraction(2) ** dst.frac_bits
    neg = [v < 0 for v in values]
    mags = [abs(v) * scale for v in values]
    ints, _ = round_rationals(neg, mags, opt)
    return _from_ints(ints, dst.integer, opt).reshape(shape)


def _binary(a, b, fa, fb, out, rounding, overflow, rng, random_bits, fn):
    opt = _Opts(rounding, overflow, rng, random_bits)
    if not isinstance(out, FixedFormat):
        raise TypeError(f"out must be a FixedFormat, got {out!r}")
    _check_wrap(out.integer, opt)
    qa, qb = np.broadcast_arrays(_codes(a, fa, "a"), _codes(b, fb, "b"))
    sa, sb = Fraction(2) ** -fa.frac_bits, Fraction(2) ** -fb.frac_bits
    vals = [fn(int(x) * sa, int(y) * sb) for x, y in zip(qa.reshape(-1).tolist(),
                                                         qb.reshape(-1).tolist())]
    return _rational_result(vals, out, opt, qa.shape)


def fixed_convert(q, src: FixedFormat, dst: FixedFormat, rounding="nearest_even", *,
                  overflow="saturate", rng=None, random_bits=None):
    """Convert stored integers of `src` into `dst` with one rounding.

    >>> import refcomp as rc
    >>> F = rc.formats.FixedFormat
    >>> rc.ops.fixed_convert([3, -3, 5], F(8, 2), F(8, 1)).tolist()   # 0.75, -0.75, 1.25
    [2, -2, 2]
    """
    opt = _Opts(rounding, overflow, rng, random_bits)
    if not isinstance(dst, FixedFormat):
        raise TypeError(f"dst must be a FixedFormat, got {dst!r}")
    _check_wrap(dst.integer, opt)
    v = _codes(q, src, "q")
    step = Fraction(2) ** -src.frac_bits
    vals = [int(x) * step for x in v.reshape(-1).tolist()]
    return _rational_result(vals, dst, opt, v.shape)


def fixed_add(a, b, fa, fb, out, rounding="nearest_even", *, overflow="saturate", rng=None,
              random_bits=None):
    """``a + b`` of stored integers in formats `fa`, `fb`, exact, rounded once into `out`.

    >>> import refcomp as rc
    >>> F = rc.formats.FixedFormat
    >>> rc.ops.fixed_add([100, 127], [50, 1], F(8, 4), F(8, 4), F(8, 4)).tolist()
    [127, 127]
    """
    return _binary(a, b, fa, fb, out, rounding, overflow, rng, random_bits,
                   lambda x, y: x + y)


def fixed_sub(a, b, fa, fb, out, rounding="nearest_even", *, overflow="saturate", rng=None,
              random_bits=None):
    """``a - b``, exact, rounded once into `out` (see :func:`fixed_add`)."""
    return _binary(a, b, fa, fb, out, rounding, overflow, rng, random_bits,
                   lambda x, y: x - y)


def fixed_mul(a, b, fa, fb, out, rounding="nearest_even", *, overflow="saturate", rng=None,
              random_bits=None):
    """``a * b``, exact, rounded once into `out`.

    >>> import refcomp as rc
    >>> q15 = rc.formats.FixedFormat(16, 15)
    >>> rc.ops.fixed_mul([16384, -32768], [16384, -32768], q15, q15, q15).tolist()
    [8192, 32767]
    """
    return _binary(a, b, fa, fb, out, rounding, overflow, rng, random_bits,
                   lambda x, y: x * y)


def fixed_div(a, b, fa, fb, out, rounding="nearest_even", *, overflow="saturate", rng=None,
              random_bits=None):
    """``a / b``, exact quotient rounded once into `out`; division by zero is a ValueError
    (index named).

    >>> import refcomp as rc
    >>> F = rc.formats.FixedFormat
    >>> rc.ops.fixed_div([1, 2], [3, 3], F(8, 0), F(8, 0), F(8, 6)).tolist()
    [21, 43]
    """
    qb = _as_int_array(b, "b")
    zero = np.flatnonzero(np.broadcast_to(qb, np.broadcast_shapes(
        np.shape(a), qb.shape)).reshape(-1) == 0)
    if zero.size:
        raise ValueError(f"b is zero at index {int(zero[0])}: fixed-point division by zero")
    return _binary(a, qb, fa, fb, out, rounding, overflow, rng, random_bits,
                   lambda x, y: x / y)


def fixed_value(q, fmt: FixedFormat) -> np.ndarray:
    """Exact float64 values of stored integers (ValueError where float64 cannot hold one)."""
    return fmt.decode(fmt.encode(q))

