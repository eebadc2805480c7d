"""Vectorised oracle by enumeration, for formats of at most 16 bits.

Independent of refcomp's rounding core: the values of a format are enumerated from the
field formula (checked against Fractions in test_codec), sorted into a table, and an exact
value is rounded by locating its two neighbours in the table (np.searchsorted) and
choosing by the mode.  Exact values are rationals num/den of float64s whose products with
table values are exact in float64 (true for sums, products and quotients of values of
narrow formats), so every comparison is exact.  Tininess after rounding uses a second
table with the format's precision and an unbounded exponent range; overflow uses its
upward extension.
"""

from __future__ import annotations

import numpy as np

INEXACT, UNDERFLOW, OVERFLOW, INVALID = 1, 2, 4, 16


def field_values(fmt):
    """Values of every code, from the field formula (NaN for NaN codes)."""
    n = 1 << fmt.width
    codes = np.arange(n, dtype=np.int64)
    neg = (codes >> (fmt.width - 1)) & 1 if fmt.signed else np.zeros(n, dtype=np.int64)
    mag = codes & ((1 << (fmt.exp_bits + fmt.man_bits)) - 1)
    E, M = mag >> fmt.man_bits, mag & ((1 << fmt.man_bits) - 1)
    if fmt.has_zero:
        sig = np.where(E == 0, M if fmt.subnormals else 0, M + (1 << fmt.man_bits))
        exp = np.where(E == 0, 1 - fmt.bias, E - fmt.bias) - fmt.man_bits
    else:
        sig, exp = M + (1 << fmt.man_bits), E - fmt.bias - fmt.man_bits
    v = np.ldexp(sig.astype(np.float64), exp.astype(np.int32)) * np.where(neg == 1, -1.0, 1.0)
    all_ones = (1 << (fmt.exp_bits + fmt.man_bits)) - 1
    top = E == (1 << fmt.exp_bits) - 1
    nan = {"ieee": top & (M != 0), "fn": mag == all_ones,
           "fnuz": codes == (1 << (fmt.width - 1)), "finite": np.zeros(n, bool)}
    if fmt.specials.value == "ieee":
        v = np.where(top & (M == 0), np.where(neg == 1, -np.inf, np.inf), v)
    return np.where(nan[fmt.specials.value], np.nan, v)


class Table:
    def __init__(self, fmt):
        self.fmt = fmt
        v = field_values(fmt)
        finite = np.unique(v[np.isfinite(v)])               # sorted, one zero
        if not fmt.signed:
            # negative inputs of unsigned formats round as their mirror image first
            finite = np.unique(np.concatenate([-finite, finite]))
        self.max = finite.max()
        # sentinels beyond +-max: values just above max then have an upper neighbour (the
        # overflow decision itself is taken on the unbounded table)
        big = 2.0 ** (fmt.emax + 2)
        self.values = np.concatenate([[-big], finite, [big]])
        self.min_normal = 2.0 ** fmt.emin
        m = fmt.man_bits
        # unbounded-exponent table with the format's precision (for tininess / overflow)
        sig = np.arange(1 << m, 1 << (m + 1), dtype=np.float64)
        exps = np.arange(max(fmt.emin - 64, -1074 + m), fmt.emax + 3)   # exact in float64
        pos = np.concatenate([np.ldexp(sig, int(e) - m) for e in exps])
        self.unbounded = np.unique(np.concatenate([-pos, [0.0], pos]))

    @staticmethod
    def _neighbours(table, num, den):
        """Indices (lo, hi) of the table values just below/above num/den, and exactness."""
        approx = num / den
        i = np.clip(np.searchsorted(table, approx), 1, len(table) - 1)
        for _ in range(3):                        # approx is off by at most one place
            below = table[i - 1] * den > num
            i = np.where(below & (i > 1), i - 1, i)
            above = table[np.minimum(i, len(table) - 1)] * den < num
            i = np.where(above & (i < len(table) - 1), i + 1, i)
        lo_v, hi_v = table[i - 1], table[i]
        exact_lo = lo_v * den == num
        exact_hi = hi_v * den == num
        return lo_v, hi_v, exact_lo, exact_hi

    def _pick(self, table, num, den, mode, unbounded=False):
        lo, hi, elo, ehi = self._neighbours(table, num, den)
        exact = elo | ehi
        ex_val = np.where(ehi, hi, lo)
        mid2 = (lo + hi) * den                    # compare 2*num with (lo+hi)*den
        c = np.sign(2 * num - mid2)
        neg_x = num < 0
        # between 0 and the smallest normal of a format without subnormals the spacing is
        # the whole gap: 0 counts as even and +-min normal as odd (CPFloat's convention)
        gap = (not unbounded) and self.fmt.has_zero and not self.fmt.subnormals
        in_gap = ((lo == 0) | (hi == 0)) if gap else np.zeros(num.shape, bool)
        if mode == "nearest_even":
            even_lo = np.where(in_gap, lo == 0, self._even(lo, unbounded))
            r = np.where(c < 0, lo, np.where(c > 0, hi, np.where(even_lo, lo, hi)))
        elif mode == "nearest_away":
            r = np.where(c < 0, lo, np.where(c > 0, hi, np.where(neg_x, lo, hi)))
        elif mode == "toward_zero":
            r = np.where(neg_x, hi, lo)
        elif mode == "toward_positive":
            r = hi
        elif mode == "toward_negative":
            r = lo
        elif mode == "odd":
            r = np.where(np.where(in_gap, lo == 0, self._even(lo, unbounded)), hi, lo)
        else:
            raise ValueError(mode)
        return np.where(exact, ex_val, r), ~exact

    def _even(self, v, unbounded):
        """Whether the integral significand of each value is even (0 counts as even)."""
        m = self.fmt.man_bits
        av = np.abs(v)
        e = np.floor(np.log2(np.where(av > 0, av, 1.0)))
        # correct float log2 at binade edges
        e = np.where(np.ldexp(1.0, e.astype(np.int32)) > av, e - 1, e)
        e = np.where(np.ldexp(1.0, (e + 1).astype(np.int32)) <= av, e + 1, e)
        if unbounded:
            q = e - m
        elif self.fmt.subnormals or not self.fmt.has_zero:
            q = np.maximum(e, self.fmt.emin) - m
        else:
            q = np.where(e < self.fmt.emin, self.fmt.emin, e - m)
        n = np.round(av / np.ldexp(1.0, q.astype(np.int32)))
        return (av == 0) | (np.mod(n, 2) == 0)

    def round(self, num, den, mode, overflow="ieee", tininess="after"):
        """Round num/den (den > 0, num nonzero finite) into the format.

        Returns (kind, value, flags): kind 0 finite, 1 inf, 2 nan.
        """
        num = np.asarray(num, dtype=np.float64)
        den = np.asarray(den, dtype=np.float64)
        fmt = self.fmt
        flags = np.zeros(num.shape, dtype=np.int64)
        r, inexact = self._pick(self.values, num, den, mode)
        ru, _ = self._pick(self.unbounded, num, den, mode, unbounded=True)
        kind = np.zeros(num.shape, dtype=np.int64)
        over = np.abs(ru) > self.max
        neg = num < 0
        if overflow == "saturate":
            to_inf = np.zeros(num.shape, bool)
        else:
            to_inf = {"nearest_even": True, "nearest_away": True, "toward_zero": False,
                      "odd": False}.get(mode)
            if to_inf is None:
                to_inf = ~neg if mode == "toward_positive" else neg
            to_inf = np.broadcast_to(to_inf, num.shape)
        ov_kind = 1 if fmt.has_inf else (2 if fmt.has_nan else 0)
        kind = np.where(over & to_inf, ov_kind, 0)
        r = np.where(over, np.where(neg, -self.max, self.max), r)
        flags |= np.where(over, OVERFLOW | INEXACT, 0)
        if fmt.has_zero:
            tiny_before = (np.abs(num) < self.min_normal * den)
            tiny = tiny_before if tininess == "before" else np.abs(ru) < self.min_normal
            flags |= np.where(tiny & inexact & ~over, UNDERFLOW, 0)
        else:
            below = np.abs(num) < self.min_normal * den
            r = np.where(below, self.min_normal, r)
            flags |= np.where(below, UNDERFLOW, 0)
            inexact = inexact | below
        flags |= np.where(inexact, INEXACT, 0)
        negzero = fmt.has_negative_zero
        r = np.where((r == 0) & neg & negzero, -0.0, np.where(r == 0, 0.0, r))
        if not fmt.signed:
            # invalid: NaN, or +0 in a format without NaN
            bad = neg & ((r != 0) | (not fmt.has_zero))
            kind = np.where(bad, 2 if fmt.has_nan else 0, kind)
            r = np.where(bad, 0.0, r)
            flags = np.where(bad, INVALID, flags)
        return kind, r, flags


def first_mismatch(fmt, num, den, mode, got, got_flags, overflow="ieee", tininess="after"):
    """Index of the first result (value or flags) that differs from the oracle, else None,
    with the oracle's (kind, value, flags) arrays."""
    kind, r, fl = Table(fmt).round(num, den, mode, overflow, tininess)
    ok = got_flags == fl
    ok &= np.where(kind == 0, (got == r) & (np.signbit(got) == np.signbit(r)), True)
    ok &= np.where(kind == 1, np.isinf(got) & (np.signbit(got) == (num < 0)), True)
    ok &= np.where(kind == 2, np.isnan(got), True)
    bad = np.flatnonzero(~ok)
    return (int(bad[0]) if bad.size else None), (kind, r, fl)
