"""Integer and fixed-point formats: encode/decode, rounding into them, fixed-point arithmetic.

Oracles: Python integers and Fractions (floor, the mode's decision from tests/oracle.py,
the overflow rule written from its definition), exhaustive enumeration for small widths,
and ml_dtypes 0.6 int4/uint4 casts.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refcomp as rc
from oracle import _decide_up
from refcomp.formats import FixedFormat, IntFormat, int_format
from test_stochastic import splitmix

F = FixedFormat
DET = [m for m in rc.Rounding if m.value != "stochastic"]
FORMATS = [int_format(n) for n in ("int2", "int4", "uint4", "int8", "int8_narrow", "uint8",
                                   "int16", "int32", "uint32", "int64", "uint64")] + \
    [IntFormat(3), IntFormat(5, False), IntFormat(63), IntFormat(12, narrow=True)]


def ref_round(v: Fraction, mode: str, words=None) -> int:
    """round(v) to an integer in `mode` (oracle: floor plus the mode's decision)."""
    a = abs(v)
    lo = math.floor(a)
    up = _decide_up(a - lo, mode, v < 0, lo, words)
    n = lo + (1 if up else 0)
    return -n if v < 0 else n


def ref_overflow(n: int, fmt: IntFormat, overflow: str) -> int:
    if overflow == "saturate":
        return min(max(n, fmt.min), fmt.max)
    n %= 1 << fmt.bits
    return n - (1 << fmt.bits) if fmt.signed and n >= 1 << (fmt.bits - 1) else n


def sr_words(seed, i):
    """Words of element i: SplitMix64 output i+1 of the call's key, then the generator."""
    g = np.random.default_rng(seed)
    key = int(g.bit_generator.random_raw())
    yield splitmix(key, i)
    while True:                       # only reached on exact 64-bit ties (not generated here)
        yield int(g.bit_generator.random_raw())


# --- formats ---------------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(1, 13))
@pytest.mark.parametrize("signed", [True, False])
def test_encode_decode_exhaustive(bits, signed):
    if signed and bits == 1:
        with pytest.raises(ValueError, match="bits=1"):
            IntFormat(1)
        return
    fmt = IntFormat(bits, signed)
    codes = np.arange(1 << bits, dtype=np.uint64)
    vals = fmt.decode(codes)
    expect = [c - (1 << bits) if signed and c >= 1 << (bits - 1) else c for c in range(1 << bits)]
    assert vals.tolist() == expect
    assert fmt.min == min(expect) and fmt.max == max(expect)
    assert fmt.encode(vals).astype(np.uint64).tolist() == codes.tolist()
    assert fmt.encode(vals).dtype == fmt.storage_dtype


def test_wide_formats_and_names():
    for fmt in (int_format("int64"), int_format("uint64")):
        v = np.array([fmt.min, fmt.max, 0], dtype=fmt.value_dtype)
        assert fmt.decode(fmt.encode(v)).tolist() == v.tolist()
    assert int_format("int8_narrow") == IntFormat(8, narrow=True)
    assert IntFormat(8, narrow=True).min == -127
    assert F(16, 15).name == "Q0.15" and F(16, 14).int_bits == 1 and F(8, 8, False).name == "UQ0.8"


def test_format_errors_name_the_value():
    with pytest.raises(ValueError, match="bits=65"):
        IntFormat(65)
    with pytest.raises(ValueError, match="narrow"):
        IntFormat(8, signed=False, narrow=True)
    with pytest.raises(ValueError, match="unknown integer format 'int'"):
        int_format("int")
    with pytest.raises(ValueError, match=r"value 8 at index 1 is outside int4"):
        int_format("int4").encode([1, 8])
    with pytest.raises(ValueError, match=r"0x10 at index 0 has bits beyond"):
        int_format("int4").decode(np.array([16], np.uint8))
    with pytest.raises(ValueError, match="narrow range"):
        IntFormat(8, narrow=True).decode(np.array([0x80], np.uint8))
    with pytest.raises(TypeError, match="integers"):
        int_format("int8").encode([1.5])


# --- rounding into integers -------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), st.integers(-70, 70))
def test_quantize_int_matches_oracle(xs, scale_exp):
    x = np.array(xs, dtype=np.float64)
    for fmt in FORMATS:
        for mode in DET:
            for ovf in ("saturate", "wrap"):
                if ovf == "wrap" and fmt.narrow:
                    continue
                got = rc.ops.quantize_int(x, fmt, mode, overflow=ovf, scale_exp=scale_exp)
                want = [ref_overflow(ref_round(Fraction(v) / Fraction(2) ** scale_exp,
                                               mode.value), fmt, ovf) for v in xs]
                assert got.tolist() == want, (fmt.name, mode.value, ovf)


EDGES = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 126.5, 127.5, -128.5, -127.5, 255.5, 2.0 ** 31,
         -2.0 ** 31 - 0.5, 2.0 ** 63, -2.0 ** 63, 2.0 ** 64, 2.0 ** 59 - 0.5, 2.0 ** 59 + 2,
         1e300, -1e300, 5e-324, -5e-324, 2.0 ** 62 * 3, 9.223372036854775e18]


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_quantize_int_edges(fmt):
    x = np.array(EDGES)
    for mode in DET:
        for ovf in ("saturate",) + (() if fmt.narrow else ("wrap",)):
            got = rc.ops.quantize_int(x, fmt, mode, overflow=ovf)
            want = [ref_overflow(ref_round(Fraction(v), mode.value), fmt, ovf) for v in EDGES]
            assert got.tolist() == want, (mode.value, ovf)
    inf = rc.ops.quantize_int([np.inf, -np.inf], fmt)
    assert inf.tolist() == [fmt.max, fmt.min]


def test_float32_and_float16_inputs_are_exact():
    x = np.array([0.1, 2.5, -3.75, 1e-3], dtype=np.float32)
    for mode in DET:
        got = rc.ops.quantize_int(x, "int16", mode, scale_exp=-10)
        want = [ref_round(Fraction(float(v)) * 1024, mode.value) for v in x]
        assert got.tolist() == want
    h = np.array([0.333, -65504.0], dtype=np.float16)
    assert rc.ops.quantize_int(h, "int32", "toward_zero", scale_exp=-3).tolist() == \
        [math.trunc(Fraction(float(v)) * 8) for v in h]


def test_integer_inputs_exact_at_64_bits():
    x = np.array([-(1 << 63), (1 << 63) - 1, 12345, -7], dtype=np.int64)
    for mode in DET:
        got = rc.ops.quantize_int(x, "int32", mode, scale_exp=3)
        want = [ref_overflow(ref_round(Fraction(int(v), 8), mode.value), int_format("int32"),
                             "saturate") for v in x.tolist()]
        assert got.tolist() == want
    u = np.array([(1 << 64) - 1], dtype=np.uint64)
    assert rc.ops.quantize_int(u, "uint64").tolist() == [(1 << 64) - 1]
    assert rc.ops.quantize_int(u, "int64", overflow="wrap").tolist() == [-1]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_stochastic_matches_oracle(seed):
    rng = np.random.default_rng(100 + seed)
    x = rng.normal(size=300) * 40
    for fmt in (int_format("int8"), IntFormat(63)):
        got = rc.ops.quantize_int(x, fmt, "stochastic", rng=np.random.default_rng(seed),
                                  scale_exp=-2)
        want = [ref_overflow(ref_round(Fraction(v) * 4, "stochastic", sr_words(seed, i)), fmt,
                             "saturate") for i, v in enumerate(x.tolist())]
        assert got.tolist() == want


def test_stochastic_random_bits_and_frequency():
    x = np.full(20000, 0.3)
    q = rc.ops.quantize_int(x, "int8", "stochastic", rng=np.random.default_rng(5))
    assert set(q.tolist()) == {0, 1}
    assert abs(q.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / x.size)
    q4 = rc.ops.quantize_int(np.full(4, 0.5), "int8", "stochastic", rng=np.random.default_rng(5),
                             random_bits=4)
    key = int(np.random.default_rng(5).bit_generator.random_raw())
    assert q4.tolist() == [int(8 + (splitmix(key, i) >> 60) >= 16) for i in range(4)]


def test_matches_ml_dtypes_int4_uint4():
    """ml_dtypes 0.6 converts float to int4/uint4 by truncation then wrap (C++ cast)."""
    ml = pytest.importorskip("ml_dtypes")
    x = np.random.default_rng(3).normal(size=5000) * 30
    x = np.concatenate([x, np.arange(-40, 40, 0.5)])
    for name, dt in (("int4", ml.int4), ("uint4", ml.uint4)):
        fmt = int_format(name)
        ours = fmt.encode(rc.ops.quantize_int(x, fmt, "toward_zero", overflow="wrap"))
        theirs = x.astype(dt).view(np.uint8)
        assert (ours == theirs).all(), name


def test_quantize_errors_name_the_value():
    with pytest.raises(ValueError, match=r"x\[1\] is NaN"):
        rc.ops.quantize_int([1.0, np.nan], "int8")
    with pytest.raises(ValueError, match=r"x\[0\] is infinite"):
        rc.ops.quantize_int([np.inf], "int8", overflow="wrap")
    with pytest.raises(ValueError, match="narrow range"):
        rc.ops.quantize_int([1.0], "int8_narrow", overflow="wrap")
    with pytest.raises(ValueError, match="integer overflow rule"):
        rc.ops.quantize_int([1.0], "int8", overflow="clip")
    with pytest.raises(ValueError, match="explicit generator"):
        rc.ops.quantize_int([1.0], "int8", "stochastic")
    with pytest.raises(TypeError, match="scale_exp"):
        rc.ops.quantize_int([1.0], "int8", scale_exp=1.5)


# --- fixed point -----------------------------------------------------------------------

SMALL = [F(4, 1), F(4, 3, False), F(5, -1), F(3, 4), F(4, 2, narrow=True)]


def codes(fmt):
    return list(range(fmt.integer.min, fmt.integer.max + 1))


def val(q, fmt):
    return Fraction(q) / Fraction(2) ** fmt.frac_bits


@pytest.mark.parametrize("op,fn", [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b),
                                   ("mul", lambda a, b: a * b), ("div", lambda a, b: a / b)])
def test_fixed_arithmetic_exhaustive(op, fn):
    """Every pair of codes of small formats, into several outputs, every mode."""
    for fa, fb, out in ((SMALL[0], SMALL[1], SMALL[3]), (SMALL[2], SMALL[0], SMALL[4]),
                        (SMALL[3], SMALL[3], F(6, 2, False)), (SMALL[1], SMALL[2], F(8, 5))):
        pairs = [(a, b) for a in codes(fa) for b in codes(fb) if not (op == "div" and b == 0)]
        a = np.array([p[0] for p in pairs])
        b = np.array([p[1] for p in pairs])
        for mode in DET:
            for ovf in ("saturate",) + (() if out.narrow else ("wrap",)):
                got = getattr(rc.ops, f"fixed_{op}")(a, b, fa, fb, out, mode, overflow=ovf)
                want = [ref_overflow(ref_round(fn(val(x, fa), val(y, fb))
                                               * Fraction(2) ** out.frac_bits, mode.value),
                                     out.integer, ovf) for x, y in pairs]
                assert got.tolist() == want, (op, fa.name, fb.name, out.name, mode.value, ovf)


def test_fixed_convert_exhaustive_and_wide():
    for src in SMALL:
        for dst in SMALL + [F(64, 40), F(64, -3, False)]:
            q = np.array(codes(src))
            for mode in DET:
                got = rc.ops.fixed_convert(q, src, dst, mode)
                want = [ref_overflow(ref_round(val(x, src) * Fraction(2) ** dst.frac_bits,
                                               mode.value), dst.integer, "saturate")
                        for x in codes(src)]
                assert got.tolist() == want
    q63 = F(64, 63)
    big = np.array([-(1 << 63), (1 << 63) - 1, 3], dtype=np.int64)
    got = rc.ops.fixed_mul(big, big, q63, q63, q63, "nearest_even")
    want = [ref_overflow(ref_round(val(x, q63) ** 2 * Fraction(2) ** 63, "nearest_even"),
                         q63.integer, "saturate") for x in big.tolist()]
    assert got.tolist() == want


def test_fixed_stochastic_matches_oracle():
    fa = F(16, 12)
    rng = np.random.default_rng(0)
    a = rng.integers(-30000, 30000, 200)
    b = rng.integers(-30000, 30000, 200)
    got = rc.ops.fixed_mul(a, b, fa, fa, F(16, 8), "stochastic", rng=np.random.default_rng(9))
    want = [ref_overflow(ref_round(val(x, fa) * val(y, fa) * 256, "stochastic", sr_words(9, i)),
                         F(16, 8).integer, "saturate")
            for i, (x, y) in enumerate(zip(a.tolist(), b.tolist()))]
    assert got.tolist() == want


def test_quantize_fixed_and_values():
    q15 = F(16, 15)
    x = np.random.default_rng(1).uniform(-1.2, 1.2, 500)
    for mode in DET:
        got = rc.ops.quantize_fixed(x, q15, mode)
        want = [ref_overflow(ref_round(Fraction(v) * 2 ** 15, mode.value), q15.integer,
                             "saturate") for v in x]
        assert got.tolist() == want
        assert rc.ops.fixed_value(got, q15).tolist() == [float(Fraction(w, 1 << 15))
                                                          for w in want]


def test_fixed_errors():
    with pytest.raises(ValueError, match="division by zero"):
        rc.ops.fixed_div([1, 2], [1, 0], F(8, 0), F(8, 0), F(8, 0))
    with pytest.raises(ValueError, match=r"value 200 at index 0 is outside a \(Q3.4\)"):
        rc.ops.fixed_add([200], [1], F(8, 4), F(8, 4), F(8, 4))
    with pytest.raises(TypeError, match="FixedFormat"):
        rc.ops.fixed_add([1], [1], "int8", F(8, 4), F(8, 4))
    with pytest.raises(ValueError, match="frac_bits=2000"):
        F(8, 2000)
    with pytest.raises(ValueError, match="outside float64"):
        F(64, -1020).decode(np.array([1 << 62], dtype=np.uint64))


@pytest.mark.parametrize("r", [1, 8, 16, 60])
def test_random_bits_on_exact_rational_paths(r):
    """SR with r random bits (carry of floor(frac * 2**r) + top r bits of the word) on the
    integer-input and fixed-point paths, element by element."""
    key = int(np.random.default_rng(11).bit_generator.random_raw())
    q = np.array([3, -3, 5, 1, -7, 13] * 200)
    got = rc.ops.fixed_convert(q, F(8, 4), F(8, 0), "stochastic",
                               rng=np.random.default_rng(11), random_bits=r)
    want = []
    for i, v in enumerate(q.tolist()):
        a = Fraction(abs(v), 16)
        lo = math.floor(a)
        up = math.floor((a - lo) * 2 ** r) + (splitmix(key, i) >> (64 - r)) >= 2 ** r
        want.append((lo + up) * (1 if v >= 0 else -1))
    assert got.tolist() == want
    ints = rc.ops.quantize_int(np.array([1] * 4000), "int8", "stochastic",
                               rng=np.random.default_rng(3), random_bits=r, scale_exp=3)
    # 1/8 needs 3 random bits: with fewer the truncated fraction is 0 and nothing rounds up
    expect = 0.125 if r >= 3 else 0.0
    assert ints.max() <= 1 and abs(ints.mean() - expect) < 0.05


def test_random_bits_above_guard_is_refused_on_rational_paths():
    with pytest.raises(ValueError, match="random_bits=61"):
        rc.ops.fixed_convert([3], F(8, 4), F(8, 0), "stochastic",
                             rng=np.random.default_rng(0), random_bits=61)


def test_scale_exp_bounds_and_fixed_format_guard():
    with pytest.raises(ValueError, match="scale_exp=-1099511627776"):
        rc.ops.quantize_int([1.0], "int8", scale_exp=-(2 ** 40))
    with pytest.raises(TypeError, match="quantize_fixed"):
        rc.ops.quantize_int([0.5], F(16, 15))
    assert rc.ops.quantize_int([1.0], "int8", scale_exp=-4096).tolist() == [127]
    assert rc.ops.fixed_add([], [], F(8, 4), F(8, 4), F(8, 4)).tolist() == []
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        IntFormat(4).encode([2 ** 70])
