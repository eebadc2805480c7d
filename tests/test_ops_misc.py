"""round_to_integral, to_int, comparisons, next_up / next_down and ulp against oracles."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refcomp as rc
from conftest import CATALOG, CUSTOM, DETERMINISTIC, SMALL, fmt_id
from table_oracle import field_values

INEXACT, INVALID, OVERFLOW = 1, 16, 4


def _round_int(x: Fraction, mode: str) -> int:
    """x rounded to an integer in a given mode (Python integers)."""
    fl = math.floor(x)
    frac = x - fl
    if frac == 0:
        return fl
    if mode == "nearest_even":
        return fl + (frac > Fraction(1, 2) or (frac == Fraction(1, 2) and fl % 2 == 1))
    if mode == "nearest_away":
        return fl + (frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x > 0))
    if mode == "toward_zero":
        return fl + (x < 0)
    if mode == "toward_positive":
        return fl + 1
    if mode == "toward_negative":
        return fl
    if mode == "odd":
        return fl if fl % 2 else fl + 1
    raise ValueError(mode)


# ------------------------------------------------------------------ round_to_integral

@pytest.mark.parametrize("fmt", [f for f in SMALL if f.signed] + [c for c in CUSTOM
                                                                  if c.width <= 16],
                         ids=fmt_id)
def test_round_to_integral_of_every_value(fmt, mode):
    """IEEE roundToIntegral of values of the format: the integer the mode gives."""
    v = field_values(fmt)
    v = v[np.isfinite(v)]
    for exact in (True, False):
        got, fl = rc.ops.round_to_integral(v, fmt, mode, exact=exact, flags=True)
        for x, g, f in zip(v.tolist(), got.tolist(), fl.tolist()):
            n = _round_int(Fraction(x), mode)
            # an integer the format cannot hold (beyond its range) overflows
            if abs(n) > fmt.max_finite:
                assert f & OVERFLOW, (fmt.name, mode, x, g)
                continue
            assert Fraction(g) == n, (fmt.name, mode, x, g, n)
            if n == 0:
                assert math.copysign(1, g) == math.copysign(1, x) or not fmt.has_negative_zero
            assert f == (INEXACT if exact and n != x else 0), (fmt.name, mode, x, f)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
       st.sampled_from([rc.formats.float16, rc.formats.bfloat16, rc.formats.float8_e4m3fn]),
       st.sampled_from(DETERMINISTIC))
def test_round_to_integral_of_other_values(x, fmt, mode):
    """For a value not in the format the result is the format's integral value that the
    mode picks among the two around x (ties: the one that is even in units of the spacing
    of integral values there) -- one rounding, never a double one."""
    v = field_values(fmt)
    ints = np.unique(v[np.isfinite(v) & (v == np.floor(v))])
    got = rc.ops.round_to_integral(x, fmt, mode)
    if abs(x) > fmt.max_finite:
        return
    lo, hi = ints[ints <= x].max(), ints[ints >= x].min()
    if lo == hi:
        assert got == x
        return
    X = Fraction(x)
    gap = Fraction(hi - lo)
    pick = {"toward_zero": hi if x < 0 else lo, "toward_positive": hi, "toward_negative": lo}
    if mode in pick:
        want = pick[mode]
    elif mode == "odd":
        want = lo if (Fraction(lo) / gap) % 2 == 1 else hi
    else:
        d_lo, d_hi = X - Fraction(lo), Fraction(hi) - X
        if d_lo != d_hi:
            want = lo if d_lo < d_hi else hi
        elif mode == "nearest_away":
            want = hi if x > 0 else lo
        else:
            want = lo if (Fraction(lo) / gap) % 2 == 0 else hi
    assert got == want, (fmt.name, mode, x, got, want)


def test_round_to_integral_specials():
    v, fl = rc.ops.round_to_integral([np.inf, -np.inf, np.nan, -0.0, 0.3, -0.3], "float32",
                                     "nearest_even", flags=True)
    assert np.isinf(v[0]) and np.isinf(v[1]) and v[1] < 0 and np.isnan(v[2])
    assert [math.copysign(1, x) for x in v[3:]] == [-1, 1, -1]
    assert fl.tolist() == [0, 0, 0, 0, 1, 1]


# ------------------------------------------------------------------ to_int

def _to_int_oracle(x, bits, signed, mode, exact):
    bad = -(1 << (bits - 1)) if signed else (1 << bits) - 1
    if math.isnan(x) or math.isinf(x):
        return bad, INVALID
    X = Fraction(x)
    n = _round_int(X, mode)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= n <= hi:
        return bad, INVALID
    return n, (INEXACT if exact and n != X else 0)


@given(st.lists(st.floats(allow_subnormal=True), min_size=1, max_size=30),
       st.sampled_from([8, 16, 32, 53, 63, 64]), st.booleans(), st.sampled_from(DETERMINISTIC),
       st.booleans())
def test_to_int_against_integers(xs, bits, signed, mode, exact):
    got, fl = rc.ops.to_int(np.array(xs), bits=bits, signed=signed, rounding=mode,
                            exact=exact, flags=True)
    for x, g, f in zip(xs, got.tolist(), fl.tolist()):
        assert (int(g), int(f)) == _to_int_oracle(x, bits, signed, mode, exact), (
            x, bits, signed, mode)


def test_to_int_edges():
    xs = [2.0 ** 31 - 0.5, -2.0 ** 31 - 0.5, 2.0 ** 63, -2.0 ** 63, 2.0 ** 64 - 2048, -0.5,
          -1.0, 0.5, 1.5, -0.0]
    for mode in DETERMINISTIC:
        for bits in (32, 64):
            for signed in (True, False):
                got, fl = rc.ops.to_int(xs, bits=bits, signed=signed, rounding=mode,
                                        flags=True)
                want = [_to_int_oracle(x, bits, signed, mode, True) for x in xs]
                assert [(int(g), int(f)) for g, f in zip(got.tolist(), fl.tolist())] == want


@pytest.mark.parametrize("fmt", [rc.formats.float16, rc.formats.bfloat16,
                                 rc.formats.float8_e4m3fn], ids=fmt_id)
def test_to_int_of_every_value(fmt, mode):
    """Exhaustive: every value (NaN and infinities included) of 16-bit-or-narrower formats."""
    v = fmt.decode(np.arange(1 << fmt.width, dtype=np.uint64))
    for bits, signed in ((32, True), (8, False), (16, True)):
        got, fl = rc.ops.to_int(v, bits=bits, signed=signed, rounding=mode, flags=True)
        want = [_to_int_oracle(x, bits, signed, mode, True) for x in v.tolist()]
        assert [(int(g), int(f)) for g, f in zip(got.tolist(), fl.tolist())] == want


@pytest.mark.parametrize("fmt", [f for f in CATALOG if f.width <= 8], ids=fmt_id)
def test_comparisons_of_every_pair_of_8bit_values(fmt):
    v = fmt.decode(np.arange(1 << fmt.width, dtype=np.uint64))
    a, b = (m.ravel() for m in np.meshgrid(v, v))
    with np.errstate(invalid="ignore"):
        for name in PY:
            got, fl = getattr(rc.ops, name)(a, b, flags=True)
            want = np.array([PY[name](x, y) for x, y in zip(a.tolist(), b.tolist())])
            assert np.array_equal(got, want), (fmt.name, name)
            quiet = lambda x: (x.view(np.uint64) >> np.uint64(51)) & np.uint64(1) == 1  # noqa
            snan = (np.isnan(a) & ~quiet(a)) | (np.isnan(b) & ~quiet(b))
            nan = np.isnan(a) | np.isnan(b)
            want_fl = np.where(snan | (nan & SIGNALING_DEFAULT[name]), INVALID, 0)
            assert np.array_equal(fl, want_fl), (fmt.name, name)


def test_to_int_dtypes():
    assert rc.ops.to_int([1.0], bits=64, signed=True).dtype == np.int64
    assert rc.ops.to_int([1.0], bits=64, signed=False).dtype == np.uint64


# ------------------------------------------------------------------ comparisons

QNAN = float("nan")
SNAN = np.uint64(0x7FF0000000000001).view(np.float64).item()
VALUES = [-np.inf, -1.0, -0.0, 0.0, 5e-324, 1.0, np.inf, QNAN, SNAN]
PY = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
      "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
      "unordered": lambda a, b: math.isnan(a) or math.isnan(b)}
SIGNALING_DEFAULT = {"eq": False, "ne": False, "unordered": False, "lt": True, "le": True,
                     "gt": True, "ge": True}


@pytest.mark.parametrize("name", sorted(PY))
@pytest.mark.parametrize("signaling", [None, True, False])
def test_comparisons(name, signaling):
    a, b = (np.array(m).ravel() for m in np.meshgrid(VALUES, VALUES))
    fn = getattr(rc.ops, name)
    kw = {} if signaling is None else {"signaling": signaling}
    got, fl = fn(a, b, flags=True, **kw)
    sig = SIGNALING_DEFAULT[name] if signaling is None else signaling
    for x, y, g, f in zip(a.tolist(), b.tolist(), got.tolist(), fl.tolist()):
        assert g == PY[name](x, y), (name, x, y)
        snan = any(math.isnan(v) and not (np.float64(v).view(np.uint64) >> 51) & 1
                   for v in (x, y))
        nan = math.isnan(x) or math.isnan(y)
        assert f == (INVALID if (snan or (sig and nan)) else 0), (name, x, y, sig)


# ------------------------------------------------------------------ neighbours, ulp

@pytest.mark.parametrize("fmt", SMALL + [c for c in CUSTOM if c.width <= 16], ids=fmt_id)
def test_next_up_down_by_enumeration(fmt):
    v = field_values(fmt)
    vals = np.unique(v[np.isfinite(v)])
    up, down = rc.ops.next_up(vals, fmt), rc.ops.next_down(vals, fmt)
    assert np.array_equal(up[:-1], vals[1:]) and np.array_equal(down[1:], vals[:-1])
    top = np.inf if fmt.has_inf else (np.nan if fmt.has_nan else vals[-1])
    assert np.array_equal(up[-1:], [top], equal_nan=True)
    mids = (vals[:-1] + vals[1:]) / 2                       # not values of the format
    assert np.array_equal(rc.ops.next_up(mids, fmt), vals[1:])
    assert np.array_equal(rc.ops.next_down(mids, fmt), vals[:-1])
    if fmt.has_inf:
        assert rc.ops.next_up(-np.inf, fmt) == -fmt.max_finite
        assert rc.ops.next_down(np.inf, fmt) == fmt.max_finite


def test_next_up_of_zeros_and_nans():
    f = rc.formats.float16
    assert rc.ops.next_up(-0.0, f) == f.min_subnormal == rc.ops.next_up(0.0, f)
    assert rc.ops.next_down(f.min_subnormal, f) == 0.0
    v, fl = rc.ops.next_up(SNAN, f, flags=True)
    assert np.isnan(v) and fl == INVALID


@pytest.mark.parametrize("fmt", [f for f in CATALOG if f.width <= 16], ids=fmt_id)
def test_ulp_is_the_spacing_in_the_binade(fmt):
    v = field_values(fmt)
    vals = np.unique(np.abs(v[np.isfinite(v)]))
    vals = vals[vals > 0]
    u = rc.ops.ulp(vals, fmt)
    nxt = rc.ops.next_up(vals[:-1], fmt)
    # within a binade the spacing to the next value is the ulp (the last step of a binade
    # too, since the next binade starts exactly one ulp above)
    assert np.array_equal(nxt - vals[:-1], u[:-1])
    assert rc.ops.ulp(0.0, fmt) == (fmt.min_subnormal if fmt.subnormals else fmt.min_normal)
    assert np.isinf(rc.ops.ulp(np.inf, fmt)) and np.isnan(rc.ops.ulp(np.nan, fmt))


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_round_to_integral_nearest_even_fast_path(fmt):
    """Without flags, nearest-even rounding of finite values of float32 / float64 takes
    numpy.rint: equal to the exact half-to-even rounding (Fraction), with the sign of
    zero kept, and bit for bit to the rounding core (the flags=True path)."""
    rng = np.random.default_rng(81)
    x = np.concatenate([rng.integers(-40, 40, 300) / 2.0, rng.standard_normal(300) * 1e3,
                        [0.0, -0.0, -0.4, 0.5, -0.5, 1.5, 2.5, 2.0**23 + 1, -2.0**52 - 1,
                         3e38, 1e-40]])
    x = np.asarray(rc.cast(x, fmt), np.float64)
    got = rc.ops.round_to_integral(x, fmt, "nearest_even")
    core, _ = rc.ops.round_to_integral(x, fmt, "nearest_even", flags=True)
    assert np.array_equal(got.view(np.uint64), np.asarray(core, np.float64).view(np.uint64))
    for v, g in zip(x.tolist(), got.tolist()):
        f = Fraction(v)
        n = math.floor(f)
        if f - n > Fraction(1, 2) or (f - n == Fraction(1, 2) and n % 2):
            n += 1
        assert g == n and math.copysign(1.0, g) == math.copysign(1.0, v), v
