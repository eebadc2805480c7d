"""refcomp.cast against the independent oracles (tests/oracle.py, tests/table_oracle.py)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refcomp as rc
from conftest import CATALOG, CUSTOM, DETERMINISTIC, SMALL, fmt_id
from oracle import Fmt, cast_oracle, exact
from table_oracle import field_values, first_mismatch


def edge_inputs(fmt):
    """Every finite value of a small format, its float64 neighbours, the midpoints between
    values and their neighbours, and values beyond the range (all as float64)."""
    v = field_values(fmt)
    vals = np.unique(v[np.isfinite(v)])
    mids = (vals[:-1] + vals[1:]) / 2
    big = np.array([fmt.max_finite * 1.0625, fmt.max_finite * 2, fmt.max_finite * 1e6,
                    fmt.min_subnormal / 2, fmt.min_subnormal / 3, fmt.min_subnormal * 0.75])
    pts = np.concatenate([vals, mids, big, -big])
    return np.unique(np.concatenate([pts, np.nextafter(pts, np.inf), np.nextafter(pts, -np.inf)]))


def _check_against_table(fmt, x, mode, overflow, tininess):
    x = x[(x != 0) & np.isfinite(x)]
    got, gfl = rc.cast(x, fmt, mode, overflow=overflow, tininess=tininess, flags=True)
    i, (kind, r, fl) = first_mismatch(fmt, x, np.ones_like(x), mode, got, gfl, overflow,
                                      tininess)
    assert i is None, (f"{fmt.name} {mode} {overflow} {tininess}: x={x[i]!r} got {got[i]!r} "
                       f"flags {gfl[i]}, oracle {r[i]!r} flags {fl[i]}")


@pytest.mark.parametrize("fmt", SMALL + [c for c in CUSTOM if c.width <= 16], ids=fmt_id)
@pytest.mark.parametrize("overflow", ["ieee", "saturate"])
def test_small_formats_exhaustive_edges(fmt, mode, overflow):
    x = edge_inputs(fmt)
    for tininess in ("after", "before"):
        _check_against_table(fmt, x, mode, overflow, tininess)


def _check_against_fractions(fmt, xs, mode, **kw):
    o = Fmt(fmt)
    got, gfl = rc.cast(np.array(xs, dtype=np.float64), fmt, mode, flags=True, **kw)
    for x, g, f in zip(xs, got.tolist(), gfl.tolist()):
        kind, val, neg, ofl = cast_oracle(x, o, mode, overflow=kw.get("overflow", "ieee"),
                                          tininess=kw.get("tininess", "after"),
                                          flush=kw.get("subnormals") == "flush")
        assert f == ofl, (fmt.name, mode, kw, x, g, f, ofl)
        if kind == "nan":
            assert math.isnan(g), (fmt.name, mode, x, g)
        elif kind == "inf":
            assert math.isinf(g) and (g < 0) == neg, (fmt.name, mode, x, g)
        else:
            assert not math.isnan(g) and exact(g) == (-val if neg else val), \
                (fmt.name, mode, kw, x, g, val, neg)
            assert math.copysign(1.0, g) < 0 if neg else math.copysign(1.0, g) > 0, (x, g)


ALL_FORMATS = CATALOG + CUSTOM
floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=64)


@given(st.lists(floats, min_size=1, max_size=40), st.sampled_from(ALL_FORMATS),
       st.sampled_from(DETERMINISTIC), st.sampled_from(["ieee", "saturate"]),
       st.sampled_from(["after", "before"]), st.sampled_from(["keep", "flush"]))
def test_any_float64_any_format(xs, fmt, mode, overflow, tininess, subnormals):
    _check_against_fractions(fmt, xs, mode, overflow=overflow, tininess=tininess,
                             subnormals=subnormals)


@given(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), min_size=1, max_size=30),
       st.sampled_from(ALL_FORMATS), st.sampled_from(DETERMINISTIC))
def test_int64_inputs_exact(ints, fmt, mode):
    o = Fmt(fmt)
    got, gfl = rc.cast(np.array(ints, dtype=np.int64), fmt, mode, flags=True)
    for i, g, f in zip(ints, got.tolist(), gfl.tolist()):
        kind, val, neg, ofl = cast_oracle(i, o, mode)
        assert f == ofl, (fmt.name, mode, i)
        if kind == "finite":
            assert exact(g) == (-val if neg else val), (fmt.name, mode, i, g)
        else:
            assert (math.isinf(g) if kind == "inf" else math.isnan(g)), (fmt.name, mode, i, g)


def test_uint64_beyond_2_53():
    x = np.array([2 ** 64 - 1, 2 ** 53 + 1, 2 ** 63 + 2 ** 11 + 1], dtype=np.uint64)
    for mode in DETERMINISTIC:
        _int = [int(v) for v in x]
        got = rc.cast(x, "float64", mode)
        o = Fmt(rc.formats.float64)
        for i, g in zip(_int, got.tolist()):
            kind, val, neg, _ = cast_oracle(i, o, mode)
            assert (math.isinf(g) if kind == "inf" else exact(g) == val), (mode, i, g)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_narrow_input_dtypes_equal_float64_inputs(catalog_fmt, dtype):
    rng = np.random.default_rng(5)
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(20000) * np.exp2(rng.integers(-30, 30, 20000))).astype(dtype)
    x = np.concatenate([x, np.array([0, -0.0, np.inf, -np.inf, np.nan], dtype=dtype)])
    for mode in ("nearest_even", "toward_positive", "odd"):
        a = rc.cast_bits(x, catalog_fmt, mode)
        b = rc.cast_bits(x.astype(np.float64), catalog_fmt, mode)
        assert np.array_equal(a, b)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=30),
       st.sampled_from(ALL_FORMATS), st.sampled_from(DETERMINISTIC))
def test_properties_idempotent_monotone_bracketing(xs, fmt, mode):
    x = np.sort(np.array(xs))
    y = rc.cast(x, fmt, mode)
    fin = np.isfinite(y)
    # idempotent: a value of the format casts to itself
    assert np.array_equal(rc.cast(y[fin], fmt, mode), y[fin])
    # monotone
    yn = y[~np.isnan(y)]
    assert np.all(yn[1:] >= yn[:-1])
    # toward_negative <= x <= toward_positive (inside the range; beyond it a format
    # without infinity saturates)
    dn = rc.cast(x, fmt, "toward_negative")
    up = rc.cast(x, fmt, "toward_positive")
    ok = ~np.isnan(dn) & ~np.isnan(up) & (np.abs(x) <= fmt.max_finite)
    if not fmt.signed:
        ok &= x >= 0                      # negatives are invalid in an unsigned format
    if not fmt.has_zero:                  # E8M0: below its smallest value it gives that one
        ok &= np.abs(x) >= fmt.min_normal
    assert np.all(dn[ok] <= x[ok]) and np.all(x[ok] <= up[ok])


def test_scalar_in_scalar_out_and_shapes():
    v = rc.cast(0.1, "bfloat16")
    assert isinstance(v, np.float64)
    out = rc.cast(np.zeros((2, 3, 4)), "float16")
    assert out.shape == (2, 3, 4)
    b, fl = rc.cast_bits(np.ones((5, 1)), "float8_e4m3fn", flags=True)
    assert b.shape == fl.shape == (5, 1) and b.dtype == np.uint8 and fl.dtype == np.uint8
    assert rc.cast(np.zeros(0), "float16").shape == (0,)


def test_double_rounding_is_avoided():
    # 1 + 2**-11 + 2**-40 lies above the float16 midpoint 1 + 2**-11: one rounding goes up
    # (going through float32 first would land on the midpoint and round to even, 1.0)
    assert rc.cast(1 + 2.0 ** -11 + 2.0 ** -40, "float16") == 1 + 2.0 ** -10
    # the known ml_dtypes/torch case: -431.99999999999994 is below the e4m3fn midpoint 432
    assert rc.cast(-431.99999999999994, "float8_e4m3fn") == -416.0


@pytest.mark.parametrize("fmt", [f for f in CATALOG if f.width <= 16], ids=fmt_id)
def test_specials_each_mode(fmt):
    xs = [0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan,
          float.fromhex("0x1.0000000000001p+1024") if False else 1e308, -1e308,
          np.uint64(0x7FF0000000000001).view(np.float64).item(),
          np.uint64(0xFFF4000000000000).view(np.float64).item()]
    for mode in DETERMINISTIC:
        for overflow in ("ieee", "saturate"):
            _check_against_fractions(fmt, xs, mode, overflow=overflow)
