"""Integer requantization (refcomp.ops.requant) against exact big-integer oracles.

Every expected value comes from the oracles below, written from the definitions with
Python integers and fractions.Fraction, never from refcomp.  The rounding rules they encode
were read from gemmlowp ``fixedpoint/fixedpoint.h``, TFLite ``kernels/internal/common.cc``
and ``quantization_util.cc`` (see the module docstring of refcomp.ops.requant); where the
C source states a rule in another form (gemmlowp's nudge and truncating division), a test
checks that form against the mathematical one too.  Each behavioural test runs with the
Numba kernels and with the NumPy twins.
"""

import math
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refcomp import _jit
from refcomp._jit import use_jit
from refcomp.ops import requant as rq

MIN, MAX = -2 ** 31, 2 ** 31 - 1
I32 = st.integers(MIN, MAX)


# ---------------------------------------------------------------- oracles (exact) --
def floor_half_up(q: Fraction) -> int:
    """Nearest integer, ties toward +infinity."""
    return math.floor(q + Fraction(1, 2))


def half_away(q: Fraction) -> int:
    """Nearest integer, ties away from zero."""
    return floor_half_up(q) if q >= 0 else -floor_half_up(-q)


def c_div(n: int, d: int) -> int:
    """C++ integer division (truncation toward zero)."""
    q = abs(n) // abs(d)
    return q if (n >= 0) == (d > 0) else -q


def srdhm_c(a, b):
    """gemmlowp's SRDHM exactly as its source writes it (nudge, truncating division)."""
    if a == b == MIN:
        return MAX
    ab = a * b
    return c_div(ab + (2 ** 30 if ab >= 0 else 1 - 2 ** 30), 2 ** 31)


def srdhm(a, b):
    """a*b/2**31 to nearest, ties toward +inf; MIN*MIN saturates to MAX."""
    return MAX if a == b == MIN else floor_half_up(Fraction(a * b, 2 ** 31))


def rdbpot(x, e):
    """x/2**e to nearest, ties away from zero."""
    return half_away(Fraction(x, 2 ** e))


def mbqm(x, m, s, rounding):
    """TFLite MultiplyByQuantizedMultiplier (int32 x); None where refcomp must raise."""
    if not (MIN <= x <= MAX and 0 <= m <= MAX and -31 <= s <= 30):
        return None
    if rounding == "double":
        xs = x * 2 ** max(s, 0)
        return rdbpot(srdhm(xs, m), max(-s, 0)) if MIN <= xs <= MAX else None
    r = floor_half_up(Fraction(x * m, 2 ** (31 - s)))
    return r if MIN <= r <= MAX else None


def mbqm_wide(x, m, s):
    """TFLite's int64_t-x overload; None where refcomp must raise."""
    if not (-2 ** 47 <= x < 2 ** 47 and 0 <= m <= MAX and -31 <= s <= 7):
        return None
    rm = floor_half_up(Fraction(m, 2 ** 16)) if m < 0x7FFF0000 else 0x7FFF
    r = floor_half_up(Fraction(x * rm, 2 ** (15 - s)))
    return r if MIN <= r <= MAX else None


def quantize(d: float, rounding="double"):
    """TFLite QuantizeMultiplier from the exact value of d."""
    f = Fraction(d)
    if f == 0:
        return 0, 0
    e = f.numerator.bit_length() - f.denominator.bit_length()   # 2**(e-1) <= f < 2**(e+1)
    while f >= Fraction(2) ** e:
        e += 1
    while f < Fraction(2) ** (e - 1):
        e -= 1                                                  # now 2**(e-1) <= f < 2**e
    q = half_away(f * Fraction(2) ** (31 - e))
    if q == 2 ** 31:
        q, e = 2 ** 30, e + 1
    if e < -31:
        q, e = 0, 0
    if rounding == "single" and e > 30:
        q, e = MAX, 30
    return q, e


# ------------------------------------------------------------------------ helpers --
@pytest.fixture(params=[True, False], ids=["jit", "numpy"])
def jit(request):
    with use_jit(request.param):
        yield request.param


EDGE = [MIN, MIN + 1, -2 ** 30 - 1, -2 ** 30, -2 ** 30 + 1, -65536, -3, -2, -1, 0, 1, 2, 3,
        65535, 2 ** 30 - 1, 2 ** 30, 2 ** 30 + 1, MAX - 1, MAX]
MULTS = [0, 1, 2, 3, 0x7FFF, 2 ** 30 - 1, 2 ** 30, 2 ** 30 + 1, 1288490189, 0x7FFEFFFF,
         0x7FFF0000, 0x7FFF7FFF, 0x7FFF8000, MAX - 1, MAX]


def _ties(s):
    """x whose product with 2**30 lies exactly halfway at shift s (both signs)."""
    if s >= 0:
        return [1, -1, 3, -3]
    k = -s
    out = [MIN] if k >= 31 else []
    for odd in (1, 3, 5, 2 ** (31 - k) - 1):
        v = odd * 2 ** k
        if v <= MAX:
            out += [v, -v]
    return out


def _rng_x(rng, n):
    return np.concatenate([rng.integers(MIN, MAX + 1, n), rng.integers(-300, 300, n),
                           rng.integers(-2 ** 20, 2 ** 20, n)])


def _check_grid(xs, ms, ss, rounding):
    """Valid (x, m, s) combinations through refcomp as arrays against the oracle."""
    rows = [(x, m, s, mbqm(x, m, s, rounding)) for x in xs for m in ms for s in ss]
    rows = [r for r in rows if r[3] is not None]
    x, m, s, want = (np.array(c, np.int64) for c in zip(*rows))
    got = rq.multiply_by_quantized_multiplier(x.astype(np.int32), m.astype(np.int32),
                                              s.astype(np.int32), rounding)
    assert got.dtype == np.int32
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(x[i], m[i], s[i], got[i], want[i]) for i in bad[:5]]
    return len(rows)


# -------------------------------------------------------------- oracle self-checks --
@given(I32, I32)
def test_gemmlowp_srdhm_form_is_round_half_up(a, b):
    assert srdhm_c(a, b) == srdhm(a, b)


def test_gemmlowp_srdhm_ties_go_up_not_away():
    assert [srdhm_c(-1, 2 ** 30), srdhm_c(1, 2 ** 30), srdhm_c(-3, 2 ** 30)] == [0, 1, -1]


# ------------------------------------------------------------------------- SRDHM --
def test_srdhm_edges(jit):
    a = np.array(EDGE + MULTS, np.int64)
    got = rq.saturating_rounding_doubling_high_mul(a[:, None].astype(np.int32), a)
    want = [[srdhm(int(p), int(q)) for q in a] for p in a]
    assert got.dtype == np.int32 and got.shape == (a.size, a.size)
    assert got.tolist() == want


def test_srdhm_random_and_ties():
    rng = np.random.default_rng(11)
    a = _rng_x(rng, 4000)
    b = np.concatenate([rng.integers(MIN, MAX + 1, 4000), np.full(4000, 2 ** 30),
                        rng.integers(-4, 4, 4000) * 2 ** 29])           # many exact ties
    got = rq.saturating_rounding_doubling_high_mul(a, b)
    assert got.tolist() == [srdhm(int(p), int(q)) for p, q in zip(a, b)]


@given(I32, I32)
def test_srdhm_hypothesis(a, b):
    r = rq.saturating_rounding_doubling_high_mul(np.int32(a), np.int32(b))
    assert isinstance(r, np.int32) and int(r) == srdhm(a, b)


# ---------------------------------------------------------------- RoundingDivideByPOT --
def test_rdbpot_every_exponent_edges_and_ties():
    xs, es = [], []
    for e in range(32):
        cands = EDGE + [v for k in (1, 3, 2 ** max(31 - e, 1) - 1) for v in
                        (k * 2 ** e // 2, -(k * 2 ** e // 2), k * 2 ** e // 2 + 1,
                         -(k * 2 ** e // 2) - 1) if MIN <= v <= MAX]
        xs += cands
        es += [e] * len(cands)
    got = rq.rounding_divide_by_pot(np.array(xs, np.int32), np.array(es, np.int32))
    assert got.tolist() == [rdbpot(x, e) for x, e in zip(xs, es)]


def test_rdbpot_broadcast_and_scalar():
    x = np.array(EDGE, np.int64)
    got = rq.rounding_divide_by_pot(x[:, None], np.arange(32))
    assert got.shape == (len(EDGE), 32)
    assert got.tolist() == [[rdbpot(v, e) for e in range(32)] for v in EDGE]
    r = rq.rounding_divide_by_pot(-5, 1)
    assert isinstance(r, np.int32) and r == -3


@given(I32, st.integers(0, 31))
def test_rdbpot_hypothesis(x, e):
    assert int(rq.rounding_divide_by_pot(x, e)) == rdbpot(x, e)


# ------------------------------------------------------ MultiplyByQuantizedMultiplier --
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mbqm_all_shifts_edges(jit, rounding):
    n = _check_grid(EDGE, MULTS, range(-31, 31), rounding)
    assert n > 3000


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mbqm_exact_ties_every_shift(jit, rounding):
    total = 0
    for s in range(-31, 31):
        total += _check_grid(_ties(s), [2 ** 30, 2 ** 30 + 1, 3 * 2 ** 29], [s], rounding)
    assert total > 200


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mbqm_random_per_element_and_fixed(jit, rounding):
    rng = np.random.default_rng(5)
    x = _rng_x(rng, 3000)
    m = rng.integers(2 ** 30, 2 ** 31, x.size)
    s = rng.integers(-31, 1, x.size)
    want = [mbqm(int(a), int(b), int(c), rounding) for a, b, c in zip(x, m, s)]
    got = rq.multiply_by_quantized_multiplier(x.astype(np.int32), m, s, rounding)
    assert got.tolist() == want
    fixed = rq.multiply_by_quantized_multiplier(x, 1288490189, -7, rounding)
    assert fixed.tolist() == [mbqm(int(a), 1288490189, -7, rounding) for a in x]


def test_mbqm_per_channel_broadcast(jit):
    rng = np.random.default_rng(8)
    acc = rng.integers(-2 ** 20, 2 ** 20, (50, 6)).astype(np.int32)       # (N, C)
    m = rng.integers(2 ** 30, 2 ** 31, 6).astype(np.int32)                 # (C,)
    s = np.array([-1, -5, -9, -13, 0, 3], np.int32)                        # (C,)
    for rounding in ("double", "single"):
        got = rq.multiply_by_quantized_multiplier(acc, m, s, rounding)
        assert got.shape == (50, 6) and got.dtype == np.int32
        assert got.tolist() == [[mbqm(int(acc[i, c]), int(m[c]), int(s[c]), rounding)
                                 for c in range(6)] for i in range(50)]
    t = rq.multiply_by_quantized_multiplier(acc.T.copy()[:, :, None], m[:, None, None], -3)
    assert t.shape == (6, 50, 1)


@given(I32, st.integers(0, MAX), st.integers(-31, 30), st.sampled_from(["double", "single"]))
def test_mbqm_hypothesis(x, m, s, rounding):
    want = mbqm(x, m, s, rounding)
    for flag in (True, False):
        with use_jit(flag):
            if want is None:
                with pytest.raises(ValueError):
                    rq.multiply_by_quantized_multiplier(x, m, s, rounding)
            else:
                r = rq.multiply_by_quantized_multiplier(x, m, s, rounding)
                assert isinstance(r, np.int32) and int(r) == want


def test_mbqm_variants_differ_on_ties():
    assert rq.multiply_by_quantized_multiplier(-2, 2 ** 30, -1, "double") == -1   # away
    assert rq.multiply_by_quantized_multiplier(-2, 2 ** 30, -1, "single") == 0    # up


def test_mbqm_wide(jit):
    xs = [-2 ** 47, -2 ** 47 + 1, -2 ** 40 - 1, -98304, -32768, -3, -1, 0, 1, 3, 32768, 98304,
          2 ** 40 + 1, 2 ** 47 - 1] + list(np.random.default_rng(2).integers(-2 ** 47, 2 ** 47,
                                                                              300))
    rows = [(x, m, s, mbqm_wide(int(x), m, s)) for x in xs for m in MULTS for s in range(-31, 8)]
    ok = [r for r in rows if r[3] is not None]
    assert len(ok) > 5000
    x, m, s, want = (np.array(c, np.int64) for c in zip(*ok))
    for rounding in ("double", "single"):                  # the same rule in both builds
        got = rq.multiply_by_quantized_multiplier(x, m, s, rounding, x_bits=64)
        assert got.dtype == np.int32 and np.array_equal(got, want)
    bad = [r for r in rows if r[3] is None][:20]
    for x, m, s, _ in bad:
        with pytest.raises(ValueError, match="outside int32"):
            rq.multiply_by_quantized_multiplier(x, m, s, x_bits=64)


def test_mbqm_twins_agree_bit_for_bit():
    """STYLE rule 9: the Numba kernels against their NumPy specification."""
    rng = np.random.default_rng(21)
    n = 20000
    x32 = rng.integers(MIN, MAX + 1, n).astype(np.int32)
    m = rng.integers(0, 2 ** 31, n).astype(np.int32)
    cases = [("double", x32 >> 8, m, rng.integers(-31, 8, n)),
             ("double", x32, m, rng.integers(-31, 1, n)),
             ("double", x32, 1 << 30, -31), ("single", x32, m, rng.integers(-31, 1, n)),
             ("single", x32 >> 12, np.int64(MAX), 11), ("wide", rng.integers(-2 ** 47, 2 ** 47, n),
                                                        m, rng.integers(-31, -16, n))]
    for variant, x, mm, s in cases:
        kw = {"x_bits": 64} if variant == "wide" else {"rounding": variant}
        outs = []
        for flag in (True, False):
            with use_jit(flag):
                outs.append(rq.multiply_by_quantized_multiplier(x, mm, s, **kw))
        assert outs[0].dtype == outs[1].dtype == np.int32
        assert np.array_equal(outs[0], outs[1]), variant


def test_scalars_shapes_and_dtypes(jit):
    r = rq.multiply_by_quantized_multiplier(np.int32(100), np.int32(2 ** 30), np.int32(-1))
    assert isinstance(r, np.int32) and r == 25
    assert rq.multiply_by_quantized_multiplier(np.zeros((0, 3), np.int32), 2 ** 30, 0).shape \
        == (0, 3)
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.uint32, np.int64, np.uint64):
        got = rq.multiply_by_quantized_multiplier(np.array([7, 100], dt), 2 ** 30, -1)
        assert got.tolist() == [2, 25]
    col = rq.multiply_by_quantized_multiplier(np.arange(10, dtype=np.int32)[::2], 2 ** 30, 0)
    assert col.tolist() == [0, 1, 2, 3, 4]          # non-contiguous input


def test_disable_jit_env_runs_the_twins():
    code = ("import sys, numpy as np; from refcomp import _jit; from refcomp.ops import requant;"
            "assert not _jit.enabled();"
            "r = requant.multiply_by_quantized_multiplier(np.arange(9), 2**30, -1);"
            "assert r.tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2], r;"
            "assert 'refcomp._jit.requant_kernels' not in sys.modules")
    env = dict(os.environ, REFCOMP_DISABLE_JIT="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    # x / 4 with double rounding: 1/4 -> SRDHM 1/2 -> 1 -> RDBPOT 1/2 -> 1
    assert [mbqm(x, 2 ** 30, -1, "double") for x in range(9)] == [0, 1, 1, 1, 1, 2, 2, 2, 2]


# ---------------------------------------------------------------- QuantizeMultiplier --
def _edge_doubles():
    out = [0.0, -0.0, 5e-324, 2.0 ** -1022, np.nextafter(2.0 ** -1022, 0.0), 1e-300, 1e-10,
           0.3, 0.5, 1.0, 3.0, 1e10, 2.0 ** 30, 2.0 ** 31, 1e300, 1.7976931348623157e308]
    for k in range(-1074, 1024, 7):
        out += [2.0 ** k, float(np.nextafter(2.0 ** k, 0.0)), float(np.nextafter(2.0 ** k, 1e309))]
    for k in range(-40, 40):
        p = 2.0 ** k
        out += [p * (1 - 2.0 ** -32), p * (1 - 2.0 ** -32 - 2.0 ** -53),   # rounds to 2**31
                p * (1 - 2.0 ** -33), p * (0.5 + 2.0 ** -32),               # tie, rounds away
                p * (0.5 + 2.0 ** -32 - 2.0 ** -53), p * (0.5 + 3 * 2.0 ** -33)]
    return [d for d in out if d >= 0]


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_quantize_multiplier_edges(rounding):
    d = np.array(_edge_doubles())
    m, s = rq.quantize_multiplier(d, rounding)
    assert m.dtype == np.int32 and s.dtype == np.int32 and m.shape == d.shape
    want = [quantize(float(v), rounding) for v in d]
    assert list(zip(m.tolist(), s.tolist())) == want


def test_quantize_multiplier_known_cases():
    assert quantize(2.0 ** -32) == (2 ** 30, -31)                      # kept
    assert quantize(2.0 ** -33 * (2 - 2.0 ** -52)) == (2 ** 30, -31)   # renormalised, kept
    assert quantize(2.0 ** -33) == (0, 0)                              # flushed
    m, s = rq.quantize_multiplier(np.array([2.0 ** -32, 2.0 ** -33 * (2 - 2.0 ** -52),
                                            2.0 ** -33, 0.5 + 2.0 ** -32]))
    assert m.tolist() == [2 ** 30, 2 ** 30, 0, 2 ** 30 + 1] and s.tolist() == [-31, -31, 0, 0]
    r = rq.quantize_multiplier(np.float32(0.25))
    assert r == (2 ** 30, -1) and isinstance(r[0], np.int32) and isinstance(r[1], np.int32)
    assert rq.quantize_multiplier(2.0 ** 40) == (2 ** 30, 41)
    assert rq.quantize_multiplier(2.0 ** 40, "single") == (MAX, 30)
    assert rq.quantize_multiplier(3) == (3 * 2 ** 29, 2)


@given(st.floats(min_value=0.0, allow_nan=False, allow_infinity=False, allow_subnormal=True))
def test_quantize_multiplier_hypothesis(d):
    for rounding in ("double", "single"):
        m, s = rq.quantize_multiplier(d, rounding)
        assert (int(m), int(s)) == quantize(d, rounding)


def test_quantize_multiplier_random_roundtrip(jit):
    rng = np.random.default_rng(3)
    d = rng.random(3000) * np.exp2(rng.integers(-40, 20, 3000))
    m, s = rq.quantize_multiplier(d)
    assert list(zip(m.tolist(), s.tolist())) == [quantize(float(v)) for v in d]
    x = rng.integers(-2 ** 15, 2 ** 15, 3000).astype(np.int32)
    want = [mbqm(int(a), int(b), int(c), "double") for a, b, c in zip(x, m, s)]
    ok = np.array([w is not None for w in want])
    assert 1000 < ok.sum() < 3000
    got = rq.multiply_by_quantized_multiplier(x[ok], m[ok], s[ok])
    assert got.tolist() == [w for w in want if w is not None]


# ------------------------------------------------------------------------- errors --
MBQM_ERRORS = [
    ((5, 2 ** 30, 31), {}, "shift = 31 is outside \\[-31, 30\\]"),
    ((5, 2 ** 30, -32), {"rounding": "single"}, "shift = -32 is outside \\[-31, 30\\]"),
    ((5, 2 ** 30, 8), {"x_bits": 64}, "shift = 8 is outside \\[-31, 7\\]"),
    ((5, -1, 0), {}, "multiplier = -1 is outside \\[0, 2147483647\\]"),
    ((5, 2 ** 31, 0), {"rounding": "single"}, "multiplier = 2147483648 is outside"),
    ((np.int64(2 ** 31), 2 ** 30, 0), {}, "x = 2147483648 is outside"),
    ((2 ** 47, 2 ** 30, 0), {"x_bits": 64}, "x = 140737488355328 is outside"),
    ((3, 2 ** 30, 30), {}, "x \\* 2\\*\\*shift = 3 \\* 2\\*\\*30 overflows int32"),
    ((MAX, MAX, 30), {"rounding": "single"}, "result of x = 2147483647.* outside int32"),
    ((2 ** 46, MAX, 7), {"x_bits": 64}, "result of x = 70368744177664.* outside int32"),
]


@pytest.mark.parametrize("args,kw,match", MBQM_ERRORS)
def test_mbqm_errors_name_the_value(jit, args, kw, match):
    with pytest.raises(ValueError, match=match):
        rq.multiply_by_quantized_multiplier(*args, **kw)


def test_errors_name_the_first_bad_element(jit):
    x = np.array([1, 2, 3, 4, 5], np.int32)
    s = np.array([0, -1, 31, -32, 0])
    with pytest.raises(ValueError, match=r"shift = 31 is outside .*\(element 2\)"):
        rq.multiply_by_quantized_multiplier(x, 2 ** 30, s)
    with pytest.raises(ValueError, match=r"overflows int32 .*\(element \(1, 1\)\)"):
        rq.multiply_by_quantized_multiplier(np.array([[1], [2 ** 29]]), 2 ** 30, [1, 2])


def test_type_and_option_errors():
    f = rq.multiply_by_quantized_multiplier
    with pytest.raises(TypeError, match="x must be integers, got dtype float64 \\(e.g. 1.5\\)"):
        f([1.5], 2 ** 30, 0)
    with pytest.raises(TypeError, match="bool"):
        f(True, 2 ** 30, 0)
    with pytest.raises(TypeError, match="shift must be integers, got dtype bool"):
        f(1, 2 ** 30, np.array([True]))
    with pytest.raises(ValueError, match="2361183241434822606848 does not fit 64 bits"):
        f(2 ** 71, 2 ** 30, 0)
    with pytest.raises(ValueError, match="x = 18446744073709551615 is outside int64"):
        f(np.array([2 ** 64 - 1], np.uint64), 2 ** 30, 0)
    with pytest.raises(ValueError, match="unknown requantization rounding 'triple'"):
        f(1, 2 ** 30, 0, "triple")
    with pytest.raises(ValueError, match="x_bits must be 32 or 64, got 16"):
        f(1, 2 ** 30, 0, x_bits=16)
    with pytest.raises(ValueError, match="exponent = 32 is outside \\[0, 31\\]"):
        rq.rounding_divide_by_pot(1, 32)
    with pytest.raises(ValueError, match="exponent = -1 is outside"):
        rq.rounding_divide_by_pot([1, 2], [0, -1])
    with pytest.raises(ValueError, match="x = -2147483649 is outside"):
        rq.rounding_divide_by_pot(MIN - 1, 3)
    with pytest.raises(ValueError, match="b = 2147483648 is outside"):
        rq.saturating_rounding_doubling_high_mul(1, 2 ** 31)


@pytest.mark.parametrize("d,match", [(-0.5, "d = -0.5 must be"), (float("nan"), "d = nan"),
                                     (float("inf"), "d = inf"),
                                     ([1.0, -1e-300], r"d = -1e-300 \(element 1\)"),
                                     (2 ** 60, "d = 1152921504606846976 .* above 2\\*\\*53")])
def test_quantize_multiplier_errors(d, match):
    with pytest.raises(ValueError, match=match):
        rq.quantize_multiplier(d)


def test_quantize_multiplier_type_errors():
    with pytest.raises(TypeError, match="strings"):
        rq.quantize_multiplier("0.5")
    with pytest.raises(TypeError, match="d must be real numbers, got dtype complex128"):
        rq.quantize_multiplier(np.array([0.5 + 1j]))
    with pytest.raises(ValueError, match="unknown requantization rounding"):
        rq.quantize_multiplier(0.5, "doubled")


def test_jit_state_is_restored():
    assert _jit.enabled() == (os.environ.get("REFCOMP_DISABLE_JIT", "").strip() in ("", "0"))
