"""TFLite's int8 fully-connected / convolution kernels with fixed-point requantization
(refcomp.quant.tflite) against oracles written from the kernels' definitions: Python
integer loops for the accumulation, exact rationals for MultiplyByQuantizedMultiplier's
two roundings (nearest with ties up, then nearest with ties away from zero), math.frexp
for QuantizeMultiplier and IEEE float32 steps for the bias quantization."""

import math
from fractions import Fraction

import numpy as np
import pytest

from refcomp.quant import tflite

F32 = np.float32


def _away(f: Fraction) -> int:
    """Round half away from zero."""
    n = math.floor(abs(f) + Fraction(1, 2))
    return n if f >= 0 else -n


def _mbqm(acc: int, m: int, shift: int) -> int:
    a = acc * 2 ** max(shift, 0)
    assert -2**31 <= a < 2**31
    high = (a * m + 2**30) >> 31                   # SRDHM: nearest, ties toward +inf
    return _away(Fraction(high, 2 ** max(-shift, 0)))


def _qmult(d: float):
    if d == 0:
        return 0, 0
    q, e = math.frexp(d)
    m = _away(Fraction(q) * 2**31)
    if m == 2**31:
        m, e = m // 2, e + 1
    return (0, 0) if e < -31 else (m, e)


def test_multiplier_and_bias_rules():
    rng = np.random.default_rng(91)
    i, o = 0.0123, 0.0871
    w = rng.uniform(0.001, 0.02, 8)
    m, s = tflite.multipliers(i, w, o)
    for c in range(8):
        eff = float(F32(i)) * float(F32(w[c])) / float(F32(o))        # double products
        assert (int(m[c]), int(s[c])) == _qmult(eff)
    m1, s1 = tflite.multipliers(i, w[0], o, per_channel=False)
    assert (int(m1[0]), int(s1[0])) == _qmult(float(F32(F32(i) * F32(w[0]))) / float(F32(o)))
    b = rng.standard_normal(8) * 0.3
    got = tflite.quantize_bias(b, i, w)
    for c in range(8):
        sf = F32(F32(i) * F32(w[c]))
        inv = F32(1.0 / float(sf))
        assert got[c] == _away(Fraction(float(F32(F32(b[c]) * inv))))
    # half away from zero, not to even: b * inv = 2.5 exactly
    assert tflite.quantize_bias([2.5, -2.5], 1.0, 1.0).tolist() == [3, -3]


@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
def test_fully_connected_matches_the_definition(act):
    rng = np.random.default_rng(92)
    for trial in range(6):
        N, K, C = int(rng.integers(1, 5)), int(rng.integers(1, 40)), int(rng.integers(1, 9))
        xq = rng.integers(-128, 128, (N, K))
        wq = rng.integers(-127, 128, (C, K))
        in_zp, out_zp = int(rng.integers(-128, 128)), int(rng.integers(-20, 20))
        in_s, out_s = float(rng.uniform(0.01, 0.1)), float(rng.uniform(0.05, 0.5))
        w_s = rng.uniform(0.001, 0.01, C)
        bias_q = tflite.quantize_bias(rng.standard_normal(C), in_s, w_s)
        M, shift = tflite.multipliers(in_s, w_s, out_s)
        lo, hi = tflite.activation_range(act, out_s, out_zp)
        got = tflite.fully_connected(xq, in_zp, wq, bias_q, M, shift, out_zp, lo, hi)
        for n in range(N):
            for c in range(C):
                acc = sum((int(wq[c, k])) * (int(xq[n, k]) - in_zp) for k in range(K))
                acc += int(bias_q[c])
                want = min(max(_mbqm(acc, int(M[c]), int(shift[c])) + out_zp, lo), hi)
                assert got[n, c] == want, (trial, n, c)


@pytest.mark.parametrize("geom", [dict(stride=1, padding=1, dilation=1),
                                  dict(stride=2, padding=0, dilation=1),
                                  dict(stride=1, padding=2, dilation=2)])
def test_conv2d_skips_taps_outside_the_input(geom):
    rng = np.random.default_rng(93)
    N, C, H, W, O, R = 2, 3, 6, 5, 4, 3
    xq = rng.integers(-128, 128, (N, C, H, W))
    wq = rng.integers(-127, 128, (O, C, R, R))
    in_zp, out_zp = 17, -3
    M, shift = tflite.multipliers(0.05, rng.uniform(0.002, 0.01, O), 0.4)
    bias_q = rng.integers(-5000, 5000, O)
    got = tflite.conv2d(xq, in_zp, wq, bias_q, M, shift, out_zp, **geom)
    st, pd, dl = geom["stride"], geom["padding"], geom["dilation"]
    Ho, Wo = got.shape[2:]
    assert Ho == (H + 2 * pd - dl * (R - 1) - 1) // st + 1
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    acc = int(bias_q[o])
                    for c in range(C):
                        for r in range(R):
                            for s in range(R):
                                h, w = i * st - pd + r * dl, j * st - pd + s * dl
                                if 0 <= h < H and 0 <= w < W:
                                    acc += int(wq[o, c, r, s]) * (int(xq[n, c, h, w]) - in_zp)
                    want = min(max(_mbqm(acc, int(M[o]), int(shift[o])) + out_zp, -128), 127)
                    assert got[n, o, i, j] == want


def test_bad_input():
    with pytest.raises(ValueError, match="int8 codes"):
        tflite.fully_connected([[200]], 0, [[1]], None, 2**30, 0, 0)
    with pytest.raises(ValueError, match="overflow"):
        tflite.fully_connected([[-128] * 4], 127, [[-127] * 4], [2**31 - 1], 2**30, 0, 0)
    with pytest.raises(ValueError, match="in_scale"):
        tflite.quantize_bias([1.0], 0.0, 1.0)
    with pytest.raises(ValueError, match="relu7"):
        tflite.activation_range("relu7", 0.1, 0)


@pytest.mark.parametrize("shift", [-1, -2, -4, 1])
def test_double_rounding_ties(shift):
    """Multipliers 0.5 and 0.75 make exact ties frequent: every accumulator of the int8
    range goes through both roundings as the oracle says, and the single-rounding build
    (TFLITE_SINGLE_ROUNDING) disagrees somewhere, so the test tells the two apart."""
    from refcomp.ops import multiply_by_quantized_multiplier
    a = np.arange(-128, 128)[:, None]
    for m in (2**30, 3 * 2**29):
        got = tflite.fully_connected(a, 0, [[1]], None, m, shift, 0, -2**31, 2**31 - 1)
        want = [_mbqm(int(v), m, shift) for v in a[:, 0]]
        assert got[:, 0].tolist() == want
    single = multiply_by_quantized_multiplier(a[:, 0], 2**30, -1, "single")
    assert single.tolist() != [_mbqm(int(v), 2**30, -1) for v in a[:, 0]]
