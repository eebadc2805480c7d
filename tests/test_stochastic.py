"""Stochastic rounding: every decision checked against the documented rule, exactly.

The rule (refcomp.cast docstring): one 64-bit key is drawn from the generator; element i
uses w_i = SplitMix64 output i+1 of that key; the result rounds away from zero iff
F + U >= 1, F the exact discarded fraction of an ulp and U = 0.w_i w' w'' ..., the further
words drawn from the generator in element order only when the first one cannot decide.
Re-implemented here with Python integers and Fractions.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refcomp as rc
from conftest import CATALOG, CUSTOM
from oracle import Fmt, exact, floor_log2

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def splitmix(key, i):
    z = (key + (i + 1) * GAMMA) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def oracle_sr(values, fmt, seed, rbits=0):
    """Expected results (Fractions or 'inf'/'nan' markers) of stochastic casts."""
    g = np.random.default_rng(seed)
    key = int(g.bit_generator.random_raw())
    o = Fmt(fmt)
    out = []
    for i, v in enumerate(values):
        a = abs(v)
        if a == 0:
            out.append(v)
            continue
        e = floor_log2(a)
        if not fmt.has_zero and e < o.emin:
            out.append(Fraction(2) ** o.emin)
            continue
        qe = e - o.m if e >= o.emin else (o.emin - o.m if o.subnormals else o.emin)
        t = a / Fraction(2) ** qe
        n = math.floor(t)
        frac = t - n
        w = splitmix(key, i)
        if frac == 0:
            up = False
        elif rbits:
            up = math.floor(frac * 2 ** rbits) + (w >> (64 - rbits)) >= 2 ** rbits
        else:
            lo, width = Fraction(w, 1 << 64), Fraction(1, 1 << 64)
            while True:
                if frac + lo >= 1:
                    up = True
                    break
                if frac + lo + width <= 1:
                    up = False
                    break
                width /= 1 << 64
                lo += int(g.bit_generator.random_raw()) * width
        r = (n + up) * Fraction(2) ** qe
        if r > o.max:
            out.append("inf" if o.has_inf else ("nan" if o.has_nan else o.max * (1 if v > 0 else -1)))
            continue
        out.append(r if v > 0 else -r)
    return out


def _check(values, fmt, seed, rbits=None):
    got = rc.cast(np.array([float(v) for v in values]), fmt, "stochastic",
                  rng=np.random.default_rng(seed), random_bits=rbits)
    want = oracle_sr(values, fmt, seed, rbits or 0)
    for v, g, w in zip(values, got.tolist(), want):
        if w == "inf":
            assert math.isinf(g), (fmt.name, v, g)
        elif w == "nan":
            assert math.isnan(g), (fmt.name, v, g)
        else:
            assert exact(g) == w, (fmt.name, float(v), g, float(w))


FORMATS = [f for f in CATALOG + CUSTOM if f.signed]
finite = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True)


@given(st.lists(finite, min_size=1, max_size=40), st.sampled_from(FORMATS),
       st.integers(0, 2 ** 32), st.sampled_from([None, 1, 7, 23, 64]))
def test_every_decision_follows_the_rule(xs, fmt, seed, rbits):
    _check([Fraction(x) for x in xs], fmt, seed, rbits)


@pytest.mark.parametrize("fmt", [rc.formats.float8_e4m3fn, rc.formats.bfloat16,
                                 rc.formats.float16], ids=lambda f: f.name)
def test_tiny_values_need_more_than_64_bits(fmt):
    """Values far below the quantum have fractions longer than 64 bits: the first word
    alone cannot always decide, so further words come from the generator."""
    rng = np.random.default_rng(11)
    x = fmt.min_subnormal * 2.0 ** -rng.integers(60, 200, 3000) * (1 + rng.random(3000))
    _check([Fraction(float(v)) for v in x], fmt, seed=5)


def test_probability_is_the_fraction():
    # 1 + 0.3 ulp of bfloat16 (ulp 2**-7): P(round up) = 0.3 exactly; 5-sigma binomial band
    n = 1 << 20
    x = np.full(n, 1.0 + 0.3 * 2.0 ** -7)
    y = rc.cast(x, "bfloat16", "stochastic", rng=np.random.default_rng(0))
    ups = np.count_nonzero(y > 1.0)
    p = 0.3
    assert abs(ups - n * p) < 5 * math.sqrt(n * p * (1 - p))
    assert set(np.unique(y).tolist()) == {1.0, 1.0 + 2.0 ** -7}


def test_unbiased_on_average():
    rng = np.random.default_rng(1)
    x = rng.random(1 << 16) * 4
    reps = [rc.cast(x, "float8_e4m3fn", "stochastic", rng=rng) for _ in range(64)]
    mean = np.mean(reps, axis=0)
    ulp = rc.ops.ulp(x, "float8_e4m3fn")
    # each element: |mean - x| within 6 standard errors of a two-point distribution
    assert np.all(np.abs(mean - x) <= 6 * ulp * 0.5 / math.sqrt(64) + 1e-12)


def test_same_seed_same_result_different_seed_differs():
    x = np.random.default_rng(2).standard_normal(10000)
    a = rc.cast_bits(x, "float16", "stochastic", rng=np.random.default_rng(42))
    b = rc.cast_bits(x, "float16", "stochastic", rng=np.random.default_rng(42))
    c = rc.cast_bits(x, "float16", "stochastic", rng=np.random.default_rng(43))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # one call draws one key (plus words for undecided elements): streams advance
    g = np.random.default_rng(7)
    d1 = rc.cast_bits(x, "float16", "stochastic", rng=g)
    d2 = rc.cast_bits(x, "float16", "stochastic", rng=g)
    assert not np.array_equal(d1, d2)


def test_values_of_the_format_are_kept():
    f = rc.formats.float8_e5m2
    v = f.decode(np.arange(256, dtype=np.uint8))
    v = v[np.isfinite(v)]
    assert np.array_equal(rc.cast(v, f, "stochastic", rng=np.random.default_rng(0)), v)


OPS = [("add", 2, lambda a, b: a + b), ("mul", 2, lambda a, b: a * b),
       ("div", 2, lambda a, b: a / b), ("fma", 3, lambda a, b, c: a * b + c)]


@pytest.mark.parametrize("name,arity,exact_fn", OPS, ids=[o[0] for o in OPS])
@pytest.mark.parametrize("fmt", [rc.formats.bfloat16, rc.formats.float32,
                                 rc.formats.float64], ids=lambda f: f.name)
def test_ops_round_the_exact_result(name, arity, exact_fn, fmt):
    """SR of an operation rounds its exact result: for float64 targets the exact result
    has far more than 64 bits, so the slow path is exercised often."""
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(2000) * np.exp2(rng.integers(-20, 20, 2000))
            for _ in range(arity)]
    got = getattr(rc.ops, name)(*args, fmt, "stochastic", rng=np.random.default_rng(9))
    exact_vals = [exact_fn(*(Fraction(float(a[i])) for a in args)) for i in range(2000)]
    want = oracle_sr(exact_vals, fmt, 9)
    for g, w in zip(got.tolist(), want):
        assert exact(g) == w
