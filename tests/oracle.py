"""Independent exact oracle: rounding of rationals with Python's Fraction.

Written from IEEE 754-2019 sections 4.3, 7.4, 7.5 and the conventions documented in
refcomp.cast, without using any refcomp code: values are Fractions, the binade is found by
integer comparisons, and the rounding decision compares the exact remainder with 1/2.
Results are (kind, value, negative, flags) with kind in {"finite", "inf", "nan"}.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

INEXACT, UNDERFLOW, OVERFLOW, DIVZERO, INVALID = 1, 2, 4, 8, 16
MODES = ("nearest_even", "nearest_away", "toward_zero", "toward_positive", "toward_negative",
         "odd", "stochastic")


def f64_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def exact(x) -> Fraction:
    """Exact rational value of a finite float or int."""
    if isinstance(x, int):
        return Fraction(x)
    return Fraction(float(x))


def floor_log2(a: Fraction) -> int:
    """floor(log2 a) for a > 0, by integer comparisons only."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    return e


class Fmt:
    """The handful of facts the oracle needs, computed here from the fields directly."""

    def __init__(self, f):
        self.m = f.man_bits
        self.bias = f.bias
        self.has_zero = f.has_zero
        self.subnormals = f.subnormals
        self.signed = f.signed
        self.specials = f.specials.value
        e_all = (1 << f.exp_bits) - 1
        # largest finite value, from the encoding rules
        if self.specials == "ieee":
            top_field, top_frac = e_all - 1, (1 << self.m) - 1
        elif self.specials == "fn":
            top_field, top_frac = (e_all, (1 << self.m) - 2) if self.m >= 1 else (e_all - 1, 0)
        else:
            top_field, top_frac = e_all, (1 << self.m) - 1
        self.emax = top_field - self.bias
        self.max = Fraction((1 << self.m) + top_frac, 1 << self.m) * Fraction(2) ** self.emax
        self.emin = (1 if self.has_zero else 0) - self.bias
        self.has_inf = self.specials == "ieee"
        self.has_nan = self.specials != "finite"
        self.neg_zero = self.signed and self.has_zero and self.specials != "fnuz"


def _decide_up(frac: Fraction, mode: str, neg: bool, lo: int, words) -> bool:
    if frac == 0:
        return False
    if mode == "nearest_even":
        return frac > Fraction(1, 2) or (frac == Fraction(1, 2) and lo % 2 == 1)
    if mode == "nearest_away":
        return frac >= Fraction(1, 2)
    if mode == "toward_zero":
        return False
    if mode == "toward_positive":
        return not neg
    if mode == "toward_negative":
        return neg
    if mode == "odd":
        return lo % 2 == 0
    if mode == "stochastic":
        # U = 0.w1 w2 ... ; up iff frac + U >= 1 (words: iterator of 64-bit ints)
        lo_u, width = Fraction(0), Fraction(1)
        while True:
            width /= 1 << 64
            lo_u += next(words) * width
            if frac + lo_u >= 1:
                return True
            if frac + lo_u + width <= 1:
                return False
    raise ValueError(mode)


def round_value(a: Fraction, neg: bool, fmt: Fmt, mode: str, *, overflow="ieee",
                flush=False, tininess="after", words=None):
    """Round the exact nonzero magnitude a (sign `neg`) into fmt."""
    assert a > 0
    flags = 0
    e = floor_log2(a)
    if not fmt.has_zero and e < fmt.emin:
        return _sign_check("finite", Fraction(2) ** fmt.emin, neg, fmt, INEXACT | UNDERFLOW)
    if e >= fmt.emin:
        qexp = e - fmt.m
    else:
        qexp = fmt.emin - fmt.m if fmt.subnormals else fmt.emin
    t = a / Fraction(2) ** qexp
    lo = math.floor(t)
    frac = t - lo
    up = _decide_up(frac, mode, neg, lo, words)
    n = lo + 1 if up else lo
    r = n * Fraction(2) ** qexp
    inexact = frac != 0
    if inexact:
        flags |= INEXACT
    # tininess
    if e < fmt.emin:
        if tininess == "before" or mode == "stochastic":
            tiny = True
        else:
            q2 = e - fmt.m
            t2 = a / Fraction(2) ** q2
            lo2 = math.floor(t2)
            n2 = lo2 + 1 if _decide_up(t2 - lo2, mode, neg, lo2, None) else lo2
            tiny = n2 * Fraction(2) ** q2 < Fraction(2) ** fmt.emin
    else:
        tiny = False
    # overflow
    if r > fmt.max:
        flags |= OVERFLOW | INEXACT
        if overflow == "saturate":
            return _sign_check("finite", fmt.max, neg, fmt, flags)
        to_inf = mode in ("nearest_even", "nearest_away", "stochastic") or \
            (mode == "toward_positive" and not neg) or (mode == "toward_negative" and neg)
        if not to_inf:
            return _sign_check("finite", fmt.max, neg, fmt, flags)
        if fmt.has_inf:
            return _sign_check("inf", None, neg, fmt, flags)
        if fmt.has_nan:
            return _sign_check("nan", None, neg, fmt, flags)
        return _sign_check("finite", fmt.max, neg, fmt, flags)
    if flush and tiny:
        return _sign_check("finite", Fraction(0), neg, fmt, flags | UNDERFLOW | INEXACT)
    if tiny and inexact:
        flags |= UNDERFLOW
    return _sign_check("finite", r, neg, fmt, flags)


def _sign_check(kind, value, neg, fmt: Fmt, flags):
    if neg and not fmt.signed and not (kind == "finite" and value == 0 and fmt.has_zero):
        # invalid: NaN, or +0 in a format without NaN
        return ("nan", None, False, INVALID) if fmt.has_nan else \
            ("finite", Fraction(0), False, INVALID)
    if kind == "finite" and value == 0 and not fmt.neg_zero:
        neg = False
    return (kind, value, neg, flags)


def cast_oracle(x, fmt: Fmt, mode: str, **kw):
    """Oracle for refcomp.cast of a float64 (or Python int) input, specials included."""
    if isinstance(x, float) and math.isnan(x):
        quiet = bool(f64_bits(x) & (1 << 51))
        neg = bool(f64_bits(x) >> 63)
        if not fmt.has_nan:
            return ("finite", Fraction(0), neg and fmt.neg_zero, INVALID)
        return ("nan", None, neg, 0 if quiet else INVALID)
    if isinstance(x, float) and math.isinf(x):
        neg = x < 0
        if neg and not fmt.signed:
            return _sign_check("nan", None, True, fmt, INVALID)
        if fmt.has_inf:
            return ("inf", None, neg, 0)
        if kw.get("overflow") == "saturate" or not fmt.has_nan:
            return ("finite", fmt.max, neg, INVALID)
        return ("nan", None, neg, INVALID)
    a = exact(x)
    if a == 0:
        neg = isinstance(x, float) and math.copysign(1.0, x) < 0
        if not fmt.has_zero:
            return ("nan", None, False, INVALID)
        return ("finite", Fraction(0), neg and fmt.neg_zero, 0)
    return round_value(abs(a), a < 0, fmt, mode, **kw)


def round_sqrt(q: Fraction, fmt: Fmt, mode: str, **kw):
    """Round sqrt(q) (q > 0) into fmt.  A rational root is rounded exactly; an irrational
    one by a dyadic point strictly inside a 2**-K interval that holds the root and no
    rounding boundary (boundaries are dyadic with exponents far above -K)."""
    n, d = q.numerator, q.denominator
    rn, rd = math.isqrt(n), math.isqrt(d)
    if rn * rn == n and rd * rd == d:
        return round_value(Fraction(rn, rd), False, fmt, mode, **kw)
    K = 1400
    S = math.isqrt((n << (2 * K)) // d)          # floor(sqrt(q) * 2**K)
    return round_value(Fraction(2 * S + 1, 1 << (K + 1)), False, fmt, mode, **kw)
