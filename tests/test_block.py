"""Block formats (OCP MX, NVFP4, BFP): exact Fraction oracles written from the definitions,
exhaustive small cases, the Numba/NumPy twin check, QPyTorch's bit trick re-implemented
as an oracle, and the error paths.  The torchao cross-check is tests/test_block_torchao.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oracle import floor_log2
from refcomp._jit import use_jit
from refcomp.formats.block import (BLOCK_FORMATS, BlockFormat, ScaleRule, bfp, get_block_format,
                                   mxfp4, mxfp8_e4m3, mxint8)
from refcomp.formats.intformat import FixedFormat
from refcomp.ops.block import BlockQuantized, Convention, dequantize_block, quantize_block

# --------------------------------------------------------------------------- oracles
#: element formats by their definitions (OCP OFP8 rev 1.0 section 5.1, MX v1.0 section 5.3):
#: name -> (exponent bits, mantissa bits, bias, special-value rule, emax_elem)
ELEMS = {
    "float8_e4m3fn": (4, 3, 7, "fn", 8),
    "float8_e5m2": (5, 2, 15, "ieee", 15),
    "float6_e2m3fn": (2, 3, 1, "finite", 2),
    "float6_e3m2fn": (3, 2, 3, "finite", 4),
    "float4_e2m1fn": (2, 1, 1, "finite", 2),
}


def float_table(name):
    """Sorted [(magnitude Fraction, code)] of the nonnegative finite values, enumerated."""
    e, m, bias, rule, _ = ELEMS[name]
    out = []
    for field in range(1 << e):
        for man in range(1 << m):
            if rule == "ieee" and field == (1 << e) - 1:
                continue
            if rule == "fn" and field == (1 << e) - 1 and man == (1 << m) - 1:
                continue
            if field == 0:
                v = Fraction(man, 1 << m) * Fraction(2) ** (1 - bias)
            else:
                v = (1 + Fraction(man, 1 << m)) * Fraction(2) ** (field - bias)
            out.append((v, (field << m) | man))
    return sorted(out), 1 << (e + m)


def int_table(bits, frac):
    """Sorted [(magnitude, magnitude integer)] of a symmetric (narrow) integer element."""
    return [(Fraction(k, 1 << frac), k) for k in range((1 << (bits - 1)))]


def round_mag(mag: Fraction, neg: bool, table, mode: str, even_of):
    """Index into `table` of |v| rounded (saturating at the largest entry)."""
    vals = [t[0] for t in table]
    if mag >= vals[-1]:
        return len(vals) - 1
    hi = next(i for i, v in enumerate(vals) if v >= mag)
    if vals[hi] == mag:
        return hi
    lo = hi - 1
    if mode == "toward_zero":
        return lo
    if mode == "toward_positive":
        return lo if neg else hi
    if mode == "toward_negative":
        return hi if neg else lo
    if mode == "odd":
        return lo if even_of(table[lo]) is False else hi
    d_lo, d_hi = mag - vals[lo], vals[hi] - mag
    if d_lo != d_hi:
        return lo if d_lo < d_hi else hi
    if mode == "nearest_away":
        return hi
    return lo if even_of(table[lo]) else hi


def scale_exp(amax: Fraction, rule: str, emax: int, max_elem: Fraction, m: int):
    """The spec/torchao scale rules from their definitions (exact); None: NaN scale."""
    if amax == 0:
        return -127
    E = floor_log2(amax)
    if rule == "floor":
        k = E - emax
    elif rule == "ceil":
        k = E - emax + (amax != Fraction(2) ** E)
    elif rule == "even":
        q = amax / Fraction(2) ** (E - m)          # round to m mantissa bits, ties away
        n = int(q) + (1 if q - int(q) >= Fraction(1, 2) else 0)
        k = floor_log2(n * Fraction(2) ** (E - m)) - emax
    else:
        k = E - emax - 2
        while max_elem * Fraction(2) ** k < amax:
            k += 1
    k = max(k, -127)
    return None if k > 127 else k


def mx_oracle(x2, name, rule="floor", mode="nearest_even", bs=32):
    """(scale codes, element codes) of rows of float values, from the definitions."""
    table, sign_bit = float_table(name)
    e, m, bias, _, emax = ELEMS[name]
    R, n = x2.shape
    nb = -(-n // bs)
    sc = np.zeros((R, nb), dtype=np.int64)
    el = np.zeros((R, n), dtype=np.int64)
    for r in range(R):
        for b in range(nb):
            seg = [float(v) for v in x2[r, b * bs:(b + 1) * bs]]
            if any(np.isnan(v) or np.isinf(v) for v in seg):
                sc[r, b] = 0xFF
                continue
            amax = max(abs(Fraction(v)) for v in seg)
            k = scale_exp(amax, rule, emax, table[-1][0], m)
            if k is None:
                sc[r, b] = 0xFF
                continue
            sc[r, b] = k + 127
            for i, v in enumerate(seg):
                f = Fraction(v) / Fraction(2) ** k
                j = round_mag(abs(f), f < 0 or (f == 0 and np.signbit(v)), table, mode,
                              lambda t: t[1] % 2 == 0)
                el[r, b * bs + i] = table[j][1] | (sign_bit if (f < 0 or np.signbit(v)) else 0)
    return sc, el


def int_oracle(x2, bits, frac, mode="nearest_even", bs=32, emax=0):
    table = int_table(bits, frac)
    R, n = x2.shape
    nb = -(-n // bs)
    sc = np.zeros((R, nb), dtype=np.int64)
    el = np.zeros((R, n), dtype=np.int64)
    for r in range(R):
        for b in range(nb):
            seg = [float(v) for v in x2[r, b * bs:(b + 1) * bs]]
            amax = max(abs(Fraction(v)) for v in seg)
            k = -127 if amax == 0 else max(floor_log2(amax) - emax, -127)
            sc[r, b] = k + 127
            for i, v in enumerate(seg):
                f = Fraction(v) / Fraction(2) ** k
                j = round_mag(abs(f), f < 0, table, mode, lambda t: t[1] % 2 == 0)
                el[r, b * bs + i] = (-table[j][1] if f < 0 else table[j][1]) & ((1 << bits) - 1)
    return sc, el


# ----------------------------------------------------------------------------- data
def cases(seed=0, n=96, f32=True):
    """Rows of test values: magnitudes, zeros, tiny, near max, powers of two (and just
    below), exact element ties."""
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal(n) * s for s in (1.0, 1e-3, 1e3, 2.0 ** -120, 2.0 ** 100)]
    rows.append(np.zeros(n))
    r = rng.standard_normal(n)
    r[rng.random(n) < 0.5] = 0.0
    rows.append(r)
    rows.append(rng.standard_normal(n) * 2.0 ** -140)              # float32 subnormals
    for e in (-127, -120, -3, 0, 1, 7, 60, 126):
        p = 2.0 ** e
        for v in (p, np.nextafter(np.float32(p), np.float32(0)), 1.875 * p, 1.75 * p,
                  1.9375 * p):
            r = rng.standard_normal(n) * p / 4
            r[::7] = v * rng.integers(1, 8, r[::7].size) / 8           # element ties
            r[5], r[40] = v, -v
            rows.append(r)
    out = np.array(rows)
    return out.astype(np.float32) if f32 else out


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", list(ELEMS))
@pytest.mark.parametrize("rule", ["floor", "ceil", "even", "rceil"])
def test_mx_oracle_rules(name, rule):
    x = cases(seed=len(name) * 7 + len(rule))
    fmt = BlockFormat(name, 32, scale_rule=rule)
    q = quantize_block(x, fmt)
    sc, el = mx_oracle(x, name, rule)
    np.testing.assert_array_equal(q.scales, sc)
    np.testing.assert_array_equal(q.elements, el)
    assert q.scales.dtype == np.uint8 and q.elements.dtype == np.uint8


@pytest.mark.parametrize("mode", ["nearest_away", "toward_zero", "toward_positive",
                                  "toward_negative", "odd"])
@pytest.mark.parametrize("name", ["float8_e4m3fn", "float4_e2m1fn", "float6_e3m2fn"])
def test_mx_oracle_directed(name, mode):
    x = cases(seed=3, n=64)
    q = quantize_block(x, BlockFormat(name, 32), rounding=mode)
    sc, el = mx_oracle(x, name, "floor", mode)
    np.testing.assert_array_equal(q.scales, sc)
    np.testing.assert_array_equal(q.elements, el)


@pytest.mark.parametrize("mode", ["nearest_even", "toward_positive", "toward_negative"])
def test_mxint8_and_bfp_oracle(mode):
    x = cases(seed=4, n=80, f32=False)
    q = quantize_block(x, mxint8, rounding=mode)
    sc, el = int_oracle(x, 8, 6, mode)
    np.testing.assert_array_equal(q.scales, sc)
    np.testing.assert_array_equal(q.elements, el)
    for bits in (3, 5, 12):
        q = quantize_block(x, bfp(bits, 16), rounding=mode)
        sc, el = int_oracle(x, bits, bits - 2, mode, bs=16)
        np.testing.assert_array_equal(q.scales, sc)
        np.testing.assert_array_equal(q.elements, el)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1,
                max_size=40), st.sampled_from([1, 2, 7, 32]),
       st.sampled_from(["floor", "ceil", "even", "rceil"]),
       st.sampled_from(["float8_e4m3fn", "float8_e5m2", "float4_e2m1fn"]))
def test_hypothesis_against_oracle(vals, bs, rule, name):
    """Any finite float64 block (subnormals, huge values, float64-only exponents)."""
    x = np.array([vals])
    q = quantize_block(x, BlockFormat(name, bs, scale_rule=rule))
    sc, el = mx_oracle(x, name, rule, bs=bs)
    np.testing.assert_array_equal(q.scales, sc)
    np.testing.assert_array_equal(q.elements, el)


def test_exhaustive_pairs_mxfp4_mxfp6():
    """Blocks of two elements over every pair from a set holding each element value at
    three scales and every midpoint between neighbours."""
    for name, scales in (("float4_e2m1fn", (Fraction(1, 2), 1, 4)), ("float6_e2m3fn", (1,))):
        mags = [v for v, _ in float_table(name)[0]]
        mids = [(a + b) / 2 for a, b in zip(mags, mags[1:])]
        base = sorted({float(v * s) for v in mags + mids for s in scales})
        vals = np.array(base + [-v for v in base if v])
        a, b = np.meshgrid(vals, vals)
        x = np.stack([a.ravel(), b.ravel()], axis=1)
        q = quantize_block(x, BlockFormat(name, 2))
        sc, el = mx_oracle(x, name, bs=2)
        np.testing.assert_array_equal(q.scales, sc)
        np.testing.assert_array_equal(q.elements, el)


def test_exhaustive_float16_singletons_e4m3():
    """Every finite float16 as a one-element block: exponent extraction in every binade."""
    h = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    h = h[np.isfinite(h)].astype(np.float64)[:, None]
    q = quantize_block(h, BlockFormat("float8_e4m3fn", 1))
    sc, el = mx_oracle(h, "float8_e4m3fn", bs=1)
    np.testing.assert_array_equal(q.scales, sc)
    np.testing.assert_array_equal(q.elements, el)


def test_dequantize_is_exact():
    x = cases(seed=5, n=70)
    for fmt in ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "mxint8"):
        f = get_block_format(fmt)
        q = quantize_block(x, f)
        d = dequantize_block(q)
        if f.is_fixed:
            ev = [Fraction(int(c) - (256 if c >= 128 else 0), 64) for c in q.elements.ravel()]
        else:
            tab, sb = float_table(f.element.name)
            look = {c: v for v, c in tab}
            ev = [(-1 if c & sb else 1) * look[int(c) & (sb - 1)] for c in q.elements.ravel()]
        sc = np.repeat(q.scales, 32, axis=1)[:, :x.shape[1]].ravel()
        want = [float(v * Fraction(2) ** (int(s) - 127)) for v, s in zip(ev, sc)]
        np.testing.assert_array_equal(d.ravel(), np.array(want))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_axes_and_partial_blocks(axis):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5, 37, 11)) * 10).astype(np.float32)
    q = quantize_block(x, mxfp8_e4m3, axis=axis)
    ax = axis % 3
    assert q.elements.shape == x.shape and q.axis == ax
    assert q.scales.shape[ax] == -(-x.shape[ax] // 32)
    m = np.moveaxis(x, ax, -1).reshape(-1, x.shape[ax])
    sc, el = mx_oracle(m, "float8_e4m3fn")
    np.testing.assert_array_equal(np.moveaxis(q.scales, ax, -1).reshape(sc.shape), sc)
    np.testing.assert_array_equal(np.moveaxis(q.elements, ax, -1).reshape(el.shape), el)
    # zero padding: the partial block quantizes as the padded one
    pad = np.concatenate([m, np.zeros((m.shape[0], -m.shape[1] % 32), np.float32)], axis=1)
    qp = quantize_block(pad, mxfp8_e4m3)
    np.testing.assert_array_equal(qp.elements[:, :m.shape[1]], el)


def test_special_values_ocp():
    x = np.ones((3, 64), dtype=np.float32)
    x[0, 3] = np.nan
    x[1, 40] = -np.inf
    x[2, :32] = 0.0
    for fmt in ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp4", "mxint8"):
        q = quantize_block(x, fmt)
        one = 127 - get_block_format(fmt).emax_elem            # scale code of amax = 1
        assert q.scales.tolist() == [[255, one], [one, 255], [0, one]]
        assert not q.elements[0, :32].any() and not q.elements[1, 32:].any()
        d = dequantize_block(q)
        assert np.isnan(d[0, :32]).all() and np.isnan(d[1, 32:]).all()
        np.testing.assert_array_equal(d[0, 32:], 1.0)
        np.testing.assert_array_equal(d[2], np.r_[np.zeros(32), np.ones(32)])


def test_scale_overflow_and_underflow_float64():
    """Scale exponents beyond E8M0 give a NaN block (microxcaling's rule); below it the
    scale clamps to 2**-127 and the elements still round exactly (shifted-format path)."""
    x = np.array([[1e300, 1.0], [2.0 ** -140, 2.0 ** -160], [2.0 ** 130, 2.0 ** -1074]])
    q = quantize_block(x, BlockFormat("float8_e4m3fn", 2))
    sc, el = mx_oracle(x, "float8_e4m3fn", bs=2)
    np.testing.assert_array_equal(q.scales, sc)
    np.testing.assert_array_equal(q.elements, el)
    assert q.scales[0, 0] == 255
    # a huge scale and an element far below float64's normal range, rounded up
    y = np.array([[2.0 ** 127 * 448, 2.0 ** -1074, -2.0 ** -1074, 0.0]])
    for mode, want in (("toward_positive", [0x7E, 0x01, 0x80, 0]),
                       ("toward_negative", [0x7E, 0x00, 0x81, 0]),
                       ("nearest_even", [0x7E, 0x00, 0x80, 0]), ("odd", [0x7E, 1, 0x81, 0])):
        for jit in (True, False):
            with use_jit(jit):
                q = quantize_block(y, BlockFormat("float8_e4m3fn", 4), rounding=mode)
            assert q.scales.tolist() == [[127 + 127]]
            assert q.elements.tolist() == [want], (mode, jit)


@pytest.mark.parametrize("name", list(ELEMS))
@pytest.mark.parametrize("rule", ["floor", "ceil", "even", "rceil"])
@pytest.mark.parametrize("conv", ["ocp-mx-1.0", "torchao-0.18"])
def test_jit_twin(name, rule, conv):
    """The fused Numba kernel and its NumPy twin agree bit for bit."""
    x = cases(seed=11, n=75)
    modes = ["nearest_even"] if conv == "torchao-0.18" else \
        ["nearest_even", "toward_zero", "toward_positive", "odd"]
    data = [x, np.vstack([x.astype(np.float64), x.astype(np.float64)[:8] * 2.0 ** 900,
                          x.astype(np.float64)[:8] * 2.0 ** -960])]
    x2 = x.copy()
    x2[3, 4], x2[9, 70] = np.nan, -np.inf
    data.append(x2)
    if conv == "torchao-0.18":
        with np.errstate(over="ignore"):
            data = [x, x2, x.astype(np.float16)]
    for mode in modes:
        for d in data:
            with use_jit(False):
                a = quantize_block(d, BlockFormat(name, 32, scale_rule=rule), rounding=mode,
                                   convention=conv)
            with use_jit(True):
                b = quantize_block(d, BlockFormat(name, 32, scale_rule=rule), rounding=mode,
                                   convention=conv)
            np.testing.assert_array_equal(a.scales, b.scales)
            np.testing.assert_array_equal(a.elements, b.elements)


def test_disable_jit_env_runs_the_twin():
    code = ("import sys, numpy as np; from refcomp import _jit; from refcomp.ops.block import "
            "quantize_block; assert not _jit.enabled();"
            "q = quantize_block(np.array([[1.0, -0.3, 6.5, 0.0]]), 'mxfp4');"
            "assert q.elements.tolist() == [[2, 9, 7, 0]], q;"
            "assert 'refcomp._jit.block_kernels' not in sys.modules")
    env = dict(os.environ, REFCOMP_DISABLE_JIT="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_stochastic_rounding():
    x = np.full((1, 4096), 0.7, dtype=np.float32)
    x[0, ::32] = 5.0                                    # X = 1: 0.7 lies between 0.5 and 1
    q1 = quantize_block(x, mxfp4, rounding="stochastic", rng=np.random.default_rng(1))
    q2 = quantize_block(x, mxfp4, rounding="stochastic", rng=np.random.default_rng(1))
    np.testing.assert_array_equal(q1.elements, q2.elements)
    d = dequantize_block(q1)[x != 5.0]
    assert set(np.unique(d)) <= {0.5, 1.0}
    assert abs(d.mean() - 0.7) < 0.02                   # P(up) = 0.4: unbiased
    with pytest.raises(ValueError, match="explicit generator"):
        quantize_block(x, mxfp4, rounding="stochastic")
    y = np.full((1, 2048), 0.3)
    y[0, 0] = 1.0                                       # bfp4: quantum 2**(0 - 2)
    qi = quantize_block(y, bfp(4, None), rounding="stochastic", rng=np.random.default_rng(2))
    di = dequantize_block(qi)[0, 1:]
    assert set(np.unique(di)) <= {0.25, 0.5} and abs(di.mean() - 0.3) < 0.01


# ----------------------------------------------------------------------- QPyTorch
def qpytorch_nearest(x32, wl):
    """QPyTorch 0.2.0 quant_cpu.cpp block_quantize_helper (nearest), one block, in float32
    bit arithmetic exactly as the C++ does it (the test's independent oracle)."""
    x32 = x32.astype(np.float32)
    amax = np.max(np.abs(x32))
    max_exp = np.array(amax, np.float32).view(np.uint32) << np.uint32(1) >> np.uint32(24) \
        << np.uint32(23)
    base = np.float32(max_exp.view(np.float32) * np.float32(6))
    t = (x32 + base).view(np.uint32)                    # float32 add (RNE)
    mask = np.uint32((1 << (23 - wl)) - 1)
    qb = (t + np.uint32(1 << (23 - wl - 1))) & ~mask
    qv = qb.view(np.float32) - base                     # exact
    bits = qv.view(np.uint32)
    qexp = bits << np.uint32(1) >> np.uint32(24) << np.uint32(23)
    max_man = np.uint32(0xFFFFFFFF) << np.uint32(9) >> np.uint32(9) >> np.uint32(
        23 - (wl - 2)) << np.uint32(23 - (wl - 2))
    clip = (bits >> np.uint32(31) << np.uint32(31)) | max_exp | max_man
    return np.where(qexp > max_exp, clip, bits).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("wl", [2, 3, 4, 8, 12, 22])
def test_qpytorch_nearest(wl):
    rng = np.random.default_rng(wl)
    rows = [rng.standard_normal(64) * s for s in (1, 3e-30, 7e20)]
    r = rng.standard_normal(64)
    r[::5] = np.round(r[::5] * 2 ** (wl - 2)) / 2 ** (wl - 2) + 2.0 ** -(wl - 1)   # ties
    rows += [r, -r, np.zeros(64)]
    r = rng.standard_normal(64).astype(np.float32) * 1.999
    r[0] = 1.9999999
    rows.append(r)
    x = np.array(rows, dtype=np.float32)
    q = quantize_block(x, bfp(wl), convention="qpytorch-0.2", rounding="nearest")
    want = np.array([qpytorch_nearest(row, wl) for row in x])
    np.testing.assert_array_equal(dequantize_block(q), want)
    # rows as blocks = QPyTorch dim=0 on a 2-D tensor
    qa = quantize_block(x.T, bfp(wl), axis=0, convention="qpytorch-0.2", rounding="nearest")
    np.testing.assert_array_equal(dequantize_block(qa), want.T)


def test_qpytorch_ties_toward_plus_inf_and_double_rounding():
    # wl=4: quantum 2**(E-2); block max 1.0 -> E=0, quantum 1/4
    x = np.array([[1.0, 0.125, -0.125, 0.375, -0.375]], dtype=np.float32)
    q = quantize_block(x, bfp(4), convention="qpytorch-0.2", rounding="nearest")
    assert dequantize_block(q).tolist() == [[1.0, 0.25, 0.0, 0.5, -0.25]]
    qe = quantize_block(x, bfp(4))                       # refcomp's default: ties to even
    assert dequantize_block(qe).tolist() == [[1.0, 0.0, -0.0, 0.5, -0.5]]
    # the float32 step: 0.125 - 2**-23 first rounds to 0.125 (2**-21 grid), then ties up
    y = np.array([[1.0, 0.125 - 2.0 ** -23]], dtype=np.float32)
    qy = quantize_block(y, bfp(4), convention="qpytorch-0.2", rounding="nearest")
    assert dequantize_block(qy).tolist() == [[1.0, 0.25]]


def test_qpytorch_stochastic():
    x = np.full((1, 4000), 0.3, dtype=np.float32)
    x[0, 0] = 1.0
    q = quantize_block(x, bfp(4, None), convention="qpytorch-0.2", rounding="stochastic",
                       rng=np.random.default_rng(0))
    d = dequantize_block(q)[0, 1:]
    assert set(np.unique(d)) <= {0.25, 0.5} and abs(d.mean() - 0.3) < 0.01


# ------------------------------------------------------------------------- NVFP4
def test_nvfp4_against_float32_oracle():
    """NVFP4 with numpy float32 arithmetic and ml_dtypes casts as the oracle (finite data)."""
    ml = pytest.importorskip("ml_dtypes")
    x = cases(seed=9, n=64)
    for ts in (None, "amax", 0.03125):
        q = quantize_block(x, "nvfp4", tensor_scale=ts)
        with np.errstate(over="ignore", under="ignore"):      # IEEE float32 semantics
            p = None if ts is None else (np.float32(np.abs(x).max()) / np.float32(2688)
                                         if ts == "amax" else np.float32(ts))
            a = np.abs(x).reshape(x.shape[0], -1, 16).max(axis=2)
            t = a / np.float32(6) if p is None else (a / np.float32(6)) / p
            s8 = np.clip(t, np.float32(2 ** -6), np.float32(448)).astype(ml.float8_e4m3fn)
            s = s8.astype(np.float32)
            r = np.float32(1) / s if p is None else (np.float32(1) / p) / s
            y = np.clip(x * np.repeat(r, 16, axis=1), np.float32(-6), np.float32(6))
            e = y.astype(ml.float4_e2m1fn)
        np.testing.assert_array_equal(q.scales, s8.view(np.uint8))
        np.testing.assert_array_equal(q.elements, e.view(np.uint8) & 0xF)
        want = e.astype(np.float64) * np.repeat(s.astype(np.float64), 16, axis=1) * (
            1.0 if p is None else np.float64(p))
        np.testing.assert_array_equal(dequantize_block(q), want)
        if p is not None:
            assert q.tensor_scale.dtype == np.float32 and q.tensor_scale == p


# --------------------------------------------------------------------------- API
def test_presets_and_constructor():
    assert set(BLOCK_FORMATS) == {"mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2",
                                  "mxfp4", "mxint8", "nvfp4"}
    for f in BLOCK_FORMATS.values():
        e = ELEMS.get(f.element.name)
        if e and f.scale_rule is ScaleRule.FLOOR:
            assert f.emax_elem == e[4] and f.block_size == 32
    assert mxint8.emax_elem == 0 and mxint8.max_elem == 127 / 64
    assert bfp(8, 32).element == mxint8.element
    assert get_block_format("bfp5").element == FixedFormat(5, 3, narrow=True)
    q = quantize_block(np.ones((2, 3)), "mxfp4")
    assert isinstance(q, BlockQuantized) and q.convention is Convention.OCP
    assert quantize_block(np.ones((2, 32)), "nvfp4").convention is Convention.TORCHAO
    e = quantize_block(np.zeros((0, 5)), "mxfp4")
    assert e.elements.shape == (0, 5) and e.scales.shape == (0, 1)


@pytest.mark.parametrize("make, match", [
    (lambda: BlockFormat("float4_e2m1fn", 0), "block_size=0 is not positive"),
    (lambda: BlockFormat("float4_e2m1fn", -3), "block_size=-3"),
    (lambda: BlockFormat("float4_e2m1fn", 2.5), "block_size must be"),
    (lambda: BlockFormat("float4_e2m1fn", 32, "float8_e4m3fn"), "mantissa bits"),
    (lambda: BlockFormat("float4_e2m1fn", 32, scale_rule="round"), "unknown scale rule"),
    (lambda: BlockFormat(FixedFormat(8, 6), 32, scale_rule="even"), "float element"),
    (lambda: bfp(1), "bits=1"),
    (lambda: get_block_format("mxfp9"), "unknown block format"),
    (lambda: quantize_block(np.ones((2, 4)), "mxfp4", axis=2), "axis=2 is out of range"),
    (lambda: quantize_block(np.float32(1.0), "mxfp4"), "scalar"),
    (lambda: quantize_block(np.ones(4), "mxfp4", rounding="up"), "unknown rounding"),
    (lambda: quantize_block(np.ones(4), "mxfp4", convention="gpu"), "unknown convention"),
    (lambda: quantize_block(np.ones(4), "nvfp4", convention="ocp-mx-1.0"), "torchao-0.18"),
    (lambda: quantize_block(np.ones(4), "mxint8", convention="torchao-0.18"), "to_mx"),
    (lambda: quantize_block(np.ones(4), "mxfp4", convention="torchao-0.18",
                            rounding="toward_zero"), "nearest-even only"),
    (lambda: quantize_block(np.ones(4), "mxfp4", convention="qpytorch-0.2"), "integer"),
    (lambda: quantize_block(np.ones(4), bfp(8), convention="qpytorch-0.2"), "'nearest'"),
    (lambda: quantize_block(np.array([1.0, np.nan]), bfp(8), convention="qpytorch-0.2",
                            rounding="nearest"), "amax=nan"),
    (lambda: quantize_block(np.array([2.0 ** 127]), bfp(8), convention="qpytorch-0.2",
                            rounding="nearest"), "2\\*\\*126"),
    (lambda: quantize_block(np.array([0.1]), "mxfp4", convention="torchao-0.18"),
     "float32 inputs"),
    (lambda: quantize_block(np.ones(4), "mxfp4", tensor_scale=0.5), "per-tensor scale"),
    (lambda: quantize_block(np.ones(4), "nvfp4", tensor_scale="max"), "tensor_scale"),
])
def test_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_dequantize_shape_mismatch():
    q = quantize_block(np.ones((2, 64)), "mxfp4")
    bad = q._replace(scales=q.scales[:, :1])
    with pytest.raises(ValueError, match="do not match"):
        dequantize_block(bad)
