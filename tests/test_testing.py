"""refcomp.testing: ULP distances against an enumeration oracle, strategies, assertions,
and the pytest fixture."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refcomp as rc
from refcomp.formats.catalog import CATALOG
from refcomp.testing import (assert_bits_equal, assert_ulp_within, bit_patterns, near_ties,
                             ulp_distance, value_arrays, values)

EIGHT = [f for f in CATALOG.values() if f.width <= 8]
SOME = [rc.formats.get(n) for n in ("float16", "bfloat16", "float32", "float64",
                                    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e8m0fnu",
                                    "float4_e2m1fn")]
REPO_GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _finite_codes(fmt):
    return [c for c in range(1 << fmt.width) if np.isfinite(fmt.decode(np.uint64(c)))]


def _ranks(fmt):
    """code -> rank of its value among all distinct values (enumeration oracle)."""
    vals = {c: fmt.code_value(c) for c in _finite_codes(fmt)}
    distinct = sorted(set(vals.values()))
    rank = {c: distinct.index(v) for c, v in vals.items()}
    for c in range(1 << fmt.width):
        v = fmt.decode(np.uint64(c))
        if np.isinf(v):
            rank[c] = len(distinct) if v > 0 else -1
    return rank


@pytest.mark.parametrize("fmt", EIGHT, ids=lambda f: f.name)
def test_ulp_distance_every_pair(fmt):
    rank = _ranks(fmt)
    codes = np.array(sorted(rank), dtype=np.uint64)
    a, b = (m.ravel() for m in np.meshgrid(codes, codes))
    want = np.abs(np.array([rank[int(x)] - rank[int(y)] for x, y in zip(a, b)], float))
    assert np.array_equal(ulp_distance(a.astype(fmt.storage_dtype),
                                       b.astype(fmt.storage_dtype), fmt), want)


def test_ulp_distance_nan_and_values():
    f = rc.formats.float16
    assert ulp_distance(np.float64([np.nan, np.nan, 1.0]), np.float64([np.nan, 1.0, 1.0]),
                        f).tolist() == [0.0, np.inf, 0.0]
    with pytest.raises(ValueError, match="0x10000"):
        ulp_distance(np.uint32([0x10000]), np.uint32([0]), f)
    with pytest.raises(ValueError):
        ulp_distance(np.float64([0.1]), np.float64([0.0]), f)     # not a float16 value


def test_assertion_messages_show_bits_and_values():
    f = rc.formats.bfloat16
    with pytest.raises(AssertionError, match=r"0x3f81 \(1.0078125\).*0x3f80 \(1.0\).*1 ulp"):
        assert_bits_equal(np.uint16([0x3f81]), np.uint16([0x3f80]), f)
    assert_bits_equal(np.uint16([0x7fc1]), np.uint16([0x7fc0]), f, nan_bits=False)
    with pytest.raises(AssertionError):
        assert_bits_equal(np.uint16([0x7fc1]), np.uint16([0x7fc0]), f)
    assert_ulp_within(np.uint16([0x3f82]), np.uint16([0x3f80]), f, 2)
    with pytest.raises(AssertionError, match="more than 1 ulp"):
        assert_ulp_within(np.uint16([0x3f82]), np.uint16([0x3f80]), f, 1)
    with pytest.raises(ValueError, match="max_ulp"):
        assert_ulp_within(np.uint16([0]), np.uint16([0]), f, -1)


@pytest.mark.parametrize("fmt", SOME, ids=lambda f: f.name)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_values_strategy(fmt, data):
    v = data.draw(values(fmt))
    assert np.isnan(v) or fmt.decode(fmt.encode(v)) == v
    lo, hi = sorted(data.draw(values(fmt, allow_nan=False, allow_infinity=False))
                    for _ in range(2))
    w = data.draw(values(fmt, min_value=lo, max_value=hi, allow_nan=False,
                         allow_infinity=False))
    assert lo <= w <= hi and fmt.decode(fmt.encode(w)) == w
    n = data.draw(values(fmt, allow_subnormal=False, allow_nan=False))
    assert n == 0 or abs(n) >= fmt.min_normal


@pytest.mark.parametrize("fmt", SOME, ids=lambda f: f.name)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_bit_patterns_and_arrays(fmt, data):
    code = data.draw(bit_patterns(fmt))
    assert 0 <= code < 1 << fmt.width
    arr = data.draw(value_arrays(fmt, (3,), allow_nan=False))
    assert arr.dtype == np.float64 and np.array_equal(fmt.decode(fmt.encode(arr)), arr)


def test_values_strategy_reaches_every_value_of_a_small_format():
    """Every value of float4_e2m1fn (15 distinct, both zeros) is drawn."""
    f = rc.formats.float4_e2m1fn
    seen = set()

    @settings(max_examples=600, deadline=None)
    @given(values(f))
    def collect(v):
        seen.add((v, np.signbit(v)))
    collect()
    assert len(seen) == 16


@pytest.mark.parametrize("fmt", EIGHT, ids=lambda f: f.name)
@pytest.mark.parametrize("mode", ["nearest_even", "toward_zero"])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_near_ties_are_decision_points(fmt, mode, data):
    """Oracle: midpoints (nearest) or values (directed) from the enumerated value set,
    and their float64 neighbours."""
    finite = sorted({fmt.code_value(c) for c in _finite_codes(fmt)})
    pts = finite
    if mode.startswith("nearest"):
        step = finite[-1] - finite[-2]
        pts = [(a + b) / 2 for a, b in zip(finite, finite[1:])] + [finite[-1] + step / 2,
                                                                  finite[0] - step / 2 if
                                                                  finite[0] < 0 else None]
    allowed = set()
    for p in pts:
        if p is None:
            continue
        for q in (p, -p):
            fq = float(q)
            allowed |= {Fraction(fq), Fraction(float(np.nextafter(fq, np.inf))),
                        Fraction(float(np.nextafter(fq, -np.inf)))}
    x = data.draw(near_ties(fmt, mode))
    assert Fraction(x) in allowed


def _add(case):
    a, b = (case.inputs[k].values() for k in "ab")
    fmt = rc.formats.get(case.params["fmt"])
    with np.errstate(all="ignore"):
        s = a + b                               # float64 RNE add: wrong for other modes
    return {"y": rc.cast_bits(s, fmt)}


def test_fixture_passes_a_correct_function(refcomp_golden):
    def ok(case):
        a, b = (case.inputs[k].values() for k in "ab")
        y, fl = rc.ops.add(a, b, "bfloat16", case.params["rounding"], flags=True)
        return {"y": rc.formats.bfloat16.encode(y), "flags": fl}
    cc = refcomp_golden(ok, "arith", op="add", fmt="bfloat16")
    assert cc.counts()["exact"] == 6


def test_fixture_catches_double_rounding(refcomp_golden):
    """float64 a+b (always nearest-even) is wrong under toward_zero."""
    with pytest.raises(AssertionError, match="differ"):
        refcomp_golden(_add, "arith", op="add", fmt="float64", rounding="toward_zero")


def test_check_against_golden_needs_a_match():
    with pytest.raises(AssertionError, match="no case"):
        rc.testing.check_against_golden(_add, "arith", op="add", fmt="nope",
                                        golden_dir=REPO_GOLDEN)
