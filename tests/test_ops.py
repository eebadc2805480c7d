"""Correctly rounded arithmetic against the independent oracles."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refcomp as rc
from conftest import CATALOG, CUSTOM, DETERMINISTIC, fmt_id
from oracle import INVALID, Fmt, exact, round_sqrt, round_value
from table_oracle import field_values, first_mismatch

BINARY = {"add": lambda a, b: (a + b, np.ones_like(a)),
          "sub": lambda a, b: (a - b, np.ones_like(a)),
          "mul": lambda a, b: (a * b, np.ones_like(a)),
          "div": lambda a, b: (a * np.sign(b), np.abs(b))}
EIGHT_BIT = [f for f in CATALOG if f.width <= 8 and f.has_zero] + \
    [c for c in CUSTOM if c.width <= 8]
# the table oracle needs sums of two values to be exact in float64
TABLE_OK = [f for f in EIGHT_BIT if f.emax - (f.emin - f.man_bits) + 2 <= 53]
WIDE_SPAN = [f for f in EIGHT_BIT if f not in TABLE_OK]


def _finite_values(fmt):
    v = field_values(fmt)
    return v[np.isfinite(v)]


def _assert_table(fmt, op, a, b, mode, tininess, overflow="ieee"):
    num, den = BINARY[op](a, b)
    keep = (num != 0) & (den != 0)
    a, b, num, den = a[keep], b[keep], num[keep], den[keep]
    got, gfl = getattr(rc.ops, op)(a, b, fmt, mode, flags=True, tininess=tininess,
                                   overflow=overflow)
    i, (kind, r, fl) = first_mismatch(fmt, num, den, mode, got, gfl, overflow, tininess)
    assert i is None, (f"{fmt.name} {op} {mode} {tininess}: {a[i]!r}, {b[i]!r} -> {got[i]!r} "
                       f"flags {gfl[i]}; oracle {r[i]!r} flags {fl[i]}")


@pytest.mark.parametrize("fmt", TABLE_OK, ids=fmt_id)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_every_pair_of_8bit_operands(fmt, op, mode):
    """Exhaustive: every pair of finite values, every mode, both tininess rules."""
    v = _finite_values(fmt)
    a, b = (m.ravel() for m in np.meshgrid(v, v))
    for tininess in ("after", "before"):
        _assert_table(fmt, op, a, b, mode, tininess)
    _assert_table(fmt, op, a, b, mode, "after", overflow="saturate")


def _assert_fractions(fmt, op, args, mode, exact_fn, **kw):
    o = Fmt(fmt)
    got, gfl = getattr(rc.ops, op)(*[np.asarray(x, dtype=np.float64) for x in args], fmt,
                                   mode, flags=True, **kw)
    for i, (g, f) in enumerate(zip(np.atleast_1d(got).tolist(), np.atleast_1d(gfl).tolist())):
        vals = [float(x[i]) for x in args]
        q = exact_fn(*[Fraction(v) for v in vals])
        if q is None:
            continue
        if isinstance(q, tuple):                                  # sqrt
            kind, val, neg, ofl = q
        elif q == 0:
            continue
        else:
            kind, val, neg, ofl = round_value(abs(q), q < 0, o, mode,
                                              tininess=kw.get("tininess", "after"))
        assert f == ofl, (fmt.name, op, mode, vals, g, f, ofl)
        if kind == "nan":
            assert math.isnan(g), (fmt.name, op, mode, vals, g)
        elif kind == "inf":
            assert math.isinf(g) and (g < 0) == neg, (fmt.name, op, mode, vals, g)
        else:
            assert exact(g) == (-val if neg else val), (fmt.name, op, mode, vals, g, val)


@pytest.mark.parametrize("fmt", [rc.formats.float8_e8m0fnu] + WIDE_SPAN, ids=fmt_id)
def test_wide_span_8bit_formats_every_pair(fmt):
    """Formats whose exact sums exceed float64 (E8M0 spans 2**-127..2**127): Fractions,
    every pair of values for three modes."""
    v = _finite_values(fmt)
    a, b = (m.ravel() for m in np.meshgrid(v, v))
    fns = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y,
           "div": lambda x, y: x / y if y != 0 else None, "sub": lambda x, y: x - y}
    for op, fn in fns.items():
        for mode in ("nearest_even", "toward_zero", "toward_positive"):
            _assert_fractions(fmt, op, [a, b], mode, fn)


def _sqrt_oracle(fmt, mode):
    o = Fmt(fmt)

    def fn(q):
        if q < 0:
            return ("nan", None, False, INVALID) if o.has_nan else None
        if q == 0:
            return None
        return round_sqrt(q, o, mode)
    return fn


@pytest.mark.parametrize("fmt", [f for f in CATALOG if f.width <= 16 and f.signed]
                         + [c for c in CUSTOM if c.width <= 16 and c.signed], ids=fmt_id)
def test_sqrt_of_every_value(fmt, mode):
    """Exhaustive: every finite value of every format of 16 bits or fewer."""
    v = _finite_values(fmt)
    _assert_fractions(fmt, "sqrt", [v], mode, _sqrt_oracle(fmt, mode))


WIDE = [rc.formats.float32, rc.formats.float64, rc.formats.tfloat32, rc.formats.float16,
        rc.formats.bfloat16] + CUSTOM
finite = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True)


@given(st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=25),
       st.sampled_from(WIDE + CATALOG), st.sampled_from(DETERMINISTIC),
       st.sampled_from(["after", "before"]))
def test_any_float64_operands(triples, fmt, mode, tininess):
    a, b, c = (np.array(t) for t in zip(*triples))
    kw = {"tininess": tininess}
    _assert_fractions(fmt, "add", [a, b], mode, lambda x, y: x + y, **kw)
    _assert_fractions(fmt, "sub", [a, b], mode, lambda x, y: x - y, **kw)
    _assert_fractions(fmt, "mul", [a, b], mode, lambda x, y: x * y, **kw)
    _assert_fractions(fmt, "div", [a, b], mode, lambda x, y: x / y if y != 0 else None, **kw)
    _assert_fractions(fmt, "fma", [a, b, c], mode, lambda x, y, z: x * y + z, **kw)
    if fmt.signed:
        _assert_fractions(fmt, "sqrt", [np.abs(a)], mode, _sqrt_oracle(fmt, mode), **kw)


@pytest.mark.parametrize("fmt", [rc.formats.float16, rc.formats.bfloat16,
                                 rc.formats.float8_e4m3fn], ids=fmt_id)
def test_fma_random_triples_of_format_values(fmt, mode):
    rng = np.random.default_rng(4)
    v = _finite_values(fmt)
    a, b, c = (rng.choice(v, 3000) for _ in range(3))
    _assert_fractions(fmt, "fma", [a, b, c], mode, lambda x, y, z: x * y + z)


# --- special values: x86 SSE / SoftFloat 8086-SSE rules, bit for bit in float32 ----------

def _bits32(v):
    return int(rc.formats.float32.encode(np.array([v]))[0])


QA, QB = 0x7FC01234, 0xFFC05678          # quiet NaNs with payloads
SA = 0x7F801234                          # signalling NaN
DEFAULT = 0xFFC00000


def _f(bits):
    return rc.formats.float32.decode(np.array([bits], dtype=np.uint32))[0]


@pytest.mark.parametrize("op,a,b,want,flags", [
    ("add", QA, QB, QA, 0), ("add", QB, QA, QB, 0), ("add", 1.0, QB, QB, 0),
    ("add", SA, QB, SA | 0x400000, 16), ("add", QB, SA, QB, 16),
    ("sub", 1.0, QB, QB, 0),                      # b's NaN keeps its sign
    ("add", "inf", "-inf", DEFAULT, 16), ("mul", 0.0, "inf", DEFAULT, 16),
    ("div", 0.0, 0.0, DEFAULT, 16), ("div", "inf", "inf", DEFAULT, 16),
    ("div", 1.0, 0.0, 0x7F800000, 8), ("div", -1.0, 0.0, 0xFF800000, 8),
    ("mul", SA, 2.0, SA | 0x400000, 16),
])
def test_nan_and_invalid_rules(op, a, b, want, flags):
    def val(x):
        if isinstance(x, str):
            return float(x)
        return _f(x) if isinstance(x, int) else x
    got, fl = getattr(rc.ops, op)(val(a), val(b), "float32", flags=True)
    assert _bits32(got) == want and int(fl) == flags


def test_fma_special_rules():
    inf = math.inf
    cases = [((0.0, inf, _f(QA)), DEFAULT, 16),          # 0*inf + qNaN: invalid, default
             ((_f(QA), 1.0, _f(QB)), QA, 0),             # a's NaN first
             ((1.0, 1.0, _f(QB)), QB, 0),                # c's NaN
             ((1.0, 1.0, _f(SA)), SA | 0x400000, 16),
             ((inf, 1.0, -inf), DEFAULT, 16),
             ((_f(QA), 1.0, _f(SA)), QA, 16)]            # a wins, c signalling: invalid
    for (a, b, c), want, flags in cases:
        got, fl = rc.ops.fma(a, b, c, "float32", flags=True)
        assert (_bits32(got), int(fl)) == (want, flags), (a, b, c)


def test_sqrt_special_rules():
    got, fl = rc.ops.sqrt([-0.0, -1.0, math.inf, -math.inf, _f(SA)], "float32", flags=True)
    assert [_bits32(g) for g in got] == [0x80000000, DEFAULT, 0x7F800000, DEFAULT,
                                         SA | 0x400000]
    assert fl.tolist() == [0, 16, 0, 16, 16]


@pytest.mark.parametrize("mode", DETERMINISTIC)
def test_signed_zero_results(mode):
    neg = mode == "toward_negative"
    assert math.copysign(1, rc.ops.add(1.0, -1.0, "float16", mode)) == (-1 if neg else 1)
    assert math.copysign(1, rc.ops.sub(-0.0, 0.0, "float16", mode)) == -1
    assert math.copysign(1, rc.ops.add(-0.0, 0.0, "float16", mode)) == (-1 if neg else 1)
    assert math.copysign(1, rc.ops.fma(1.0, -0.0, 0.0, "float16", mode)) == (-1 if neg else 1)
    assert math.copysign(1, rc.ops.mul(-0.0, 5.0, "float16", mode)) == -1


def test_inputs_need_not_be_in_the_format():
    # 1 + 2**-20 is not a bfloat16 value; the exact sum is rounded once
    x = 1 + 2.0 ** -20
    assert rc.ops.add(x, 2.0 ** -8, "bfloat16") == 1 + 2.0 ** -7
    assert rc.ops.mul(x, x, "float16", "toward_positive") == 1 + 2.0 ** -10


def test_broadcasting_and_input_dtypes():
    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    out = rc.ops.mul(a, np.float32(2.0), "float16")
    assert out.shape == (2, 3) and np.array_equal(out, a.astype(np.float64) * 2)
    assert rc.ops.add(np.float16(1), 1.0, "float16") == 2.0


def test_daz_reads_tiny_operands_as_zero():
    tiny = 2.0 ** -20                      # a float16 subnormal
    assert rc.ops.add(tiny, 0.0, "float16") == tiny
    assert rc.ops.add(tiny, 0.0, "float16", subnormals="daz") == 0.0
    v, fl = rc.ops.mul(2.0 ** -10, 2.0 ** -10, "float16", subnormals="flush", flags=True)
    assert v == 0.0 and fl == 3


@pytest.mark.parametrize("dtype,snan,fmt", [(np.float32, 0x7F800001, "float32"),
                                            (np.float16, 0x7C01, "float16")])
def test_signalling_nans_in_narrow_input_dtypes(dtype, snan, fmt):
    """float16/32 operands are widened exactly: a signalling NaN stays signalling (NumPy's
    astype would quiet it), so every operation raises invalid for it."""
    uint = np.uint32 if dtype == np.float32 else np.uint16
    x = np.array([snan], dtype=uint).view(dtype)
    one = np.ones(1, dtype=dtype)
    for fn in (lambda: rc.ops.add(x, one, fmt, flags=True),
               lambda: rc.ops.mul(one, x, fmt, flags=True),
               lambda: rc.ops.sqrt(x, fmt, flags=True),
               lambda: rc.ops.fma(one, one, x, fmt, flags=True),
               lambda: rc.ops.round_to_integral(x, fmt, flags=True),
               lambda: rc.ops.eq(x, one, flags=True),
               lambda: rc.ops.next_up(x, fmt, flags=True),
               lambda: rc.cast(x, fmt, flags=True)):
        v, fl = fn()
        assert fl[0] == rc.Flag.INVALID
    assert rc.formats.get(fmt).encode(x)[0] == snan
