"""refcomp.amp.fp8 against independent oracles: a plain-Python transcription of Transformer
Engine's delayed-scaling update kernel (``delayed_scaling.cu``, ``kernel_bulk``) and of
``compute_scale_from_amax`` (``recipe_common.cuh``), ml_dtypes as the fp8 rounding oracle
(its ``astype`` is round-to-nearest-even without saturation, so the oracle clamps first),
and ``math.fsum`` for exact sums."""

from __future__ import annotations

import copy
import math
import struct

import ml_dtypes
import numpy as np
import pytest

from refcomp import nn
from refcomp.amp.fp8 import (DelayedScaling, Fp8Linear, current_scale, fp8_model, quantize,
                             update_amax_and_scale)

MAXES = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}      # OCP FP8 spec, typed in
ML = {"float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2}
FLT_MAX = 3.4028234663852886e38


# ---------------------------------------------------------------- plain-Python oracles
def f32(x: float) -> float:
    """Round a Python float to float32 (struct: IEEE round to nearest even)."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def fmaxf(a, b):
    """C fmaxf: a NaN operand is ignored."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


def ref_update(hist, scale, algo, fp8_max, margin):
    """kernel_bulk of delayed_scaling.cu, transcribed line by line (one tensor)."""
    L = len(hist)
    last = hist[0]
    amax = 0.0
    new = list(hist)
    if last != 0.0:
        for i in range(L):
            a = hist[i + 1] if i < L - 1 else last
            amax = fmaxf(amax, a)
            new[i] = a if i > 0 else 0.0
    if algo == "most_recent":
        amax = last
    scaled_max = f32(fp8_max * f32(2.0 ** -margin))
    if math.isfinite(amax) and amax > 0:
        s = f32(scaled_max / amax)
    else:
        s = scale
    if math.isinf(s):
        s = FLT_MAX
    return new, s, f32(1.0 / s)


def ref_current(amax, fp8_max, pow2):
    """compute_scale_from_amax (epsilon 0, value_for_inf FLT_MAX), transcribed."""
    if math.isinf(amax) or amax == 0.0 or math.isnan(amax):
        return 1.0
    s = f32(fp8_max / amax)
    if math.isinf(s):
        s = FLT_MAX
    if pow2:
        bits = struct.unpack("<I", struct.pack("<f", s))[0] & 0xFF800000
        s = struct.unpack("<f", struct.pack("<I", bits))[0]
    return s


def ml_quant(x, scale, fmt):
    """fp8 values of sat(rnd_f32(x * scale)) by ml_dtypes."""
    v = np.asarray(x, np.float32) * np.float32(scale)
    m = MAXES[fmt]
    v = np.where(np.isnan(v), v, np.clip(v, -m, m))
    return v.astype(ML[fmt]).astype(np.float64)


def fsum_mm(A, B):
    """Exact (correctly rounded) A @ B by math.fsum."""
    return np.array([[math.fsum(A[i] * B[:, j]) for j in range(B.shape[1])]
                     for i in range(A.shape[0])])


def bits32(a):
    return np.asarray(a, np.float32).view(np.uint32)


# ---------------------------------------------------------------- the update rule
SPECIAL = [0.0, math.inf, math.nan, 1e-45, 3.0, 1e30]


def _histories(rng, L, n):
    for _ in range(n):
        h = [f32(float(v)) for v in rng.lognormal(0.0, 8.0, L)]
        for i in range(L):
            r = rng.random()
            if r < 0.25:
                h[i] = SPECIAL[rng.integers(len(SPECIAL))]
        yield h


@pytest.mark.parametrize("algo", ["max", "most_recent"])
@pytest.mark.parametrize("fmt", ["HYBRID", "E4M3"])
@pytest.mark.parametrize("role", ["forward", "backward"])
@pytest.mark.parametrize("L", [1, 2, 5])
@pytest.mark.parametrize("margin", [0, 1, 3])
def test_update_matches_transcription(algo, fmt, role, L, margin):
    rng = np.random.default_rng([L, margin, len(algo), len(fmt), len(role)])
    r = DelayedScaling(fp8_format=fmt, margin=margin, amax_history_len=L,
                       amax_compute_algo=algo)
    fmax = MAXES["float8_e5m2" if (fmt, role) == ("HYBRID", "backward") else "float8_e4m3fn"]
    for h in _histories(rng, L, 60):
        scale = f32(float(rng.choice([1.0, 0.37, 1e-3, 5e4])))
        got_h, got_s, got_si = update_amax_and_scale(np.array(h, np.float32), scale, r, role)
        want_h, want_s, want_si = ref_update(h, scale, algo, fmax, margin)
        np.testing.assert_array_equal(bits32(got_h), bits32(want_h), err_msg=str(h))
        assert (got_s, got_si) == (want_s, want_si), (h, scale)


def test_update_rules_spelled_out():
    r = DelayedScaling(amax_history_len=4)
    # rolled by -1, slot 0 cleared, old[1] dropped; max over the whole old history
    h, s, _ = update_amax_and_scale(np.float32([2, 7, 1, 4]), 1.0, r, "forward")
    assert h.tolist() == [0, 1, 4, 2] and s == 64.0
    # most_recent: only this step's amax
    r1 = DelayedScaling(amax_history_len=4, amax_compute_algo="most_recent")
    assert update_amax_and_scale(np.float32([2, 7, 1, 4]), 1.0, r1, "forward")[1] == 224.0
    # margin halves the target per unit: (448 / 2) / 2**2
    r2 = DelayedScaling(amax_history_len=1, margin=2)
    assert update_amax_and_scale(np.float32([2]), 1.0, r2, "forward")[1] == 56.0
    # backward (HYBRID) uses e5m2's max
    assert update_amax_and_scale(np.float32([2]), 1.0, DelayedScaling(amax_history_len=1),
                                 "backward")[1] == 28672.0
    # zero amax: nothing rolled, previous scale kept
    h, s, si = update_amax_and_scale(np.float32([0, 7, 1, 4]), 0.5, r, "forward")
    assert h.tolist() == [0, 7, 1, 4] and (s, si) == (0.5, 2.0)
    # inf amax: rolled, scale kept while the inf is in the window (max) ...
    h, s, _ = update_amax_and_scale(np.float32([np.inf, 0, 0, 0]), 0.5, r, "forward")
    assert h.tolist() == [0, 0, 0, np.inf] and s == 0.5
    # ... and a tiny amax gives FLT_MAX, not inf
    r3 = DelayedScaling(amax_history_len=1)
    assert update_amax_and_scale(np.float32([1e-45]), 1.0, r3, "forward")[1] == FLT_MAX


def test_update_does_not_modify_input_and_checks_length():
    h = np.float32([3, 1])
    update_amax_and_scale(h, 1.0, DelayedScaling(amax_history_len=2), "forward")
    assert h.tolist() == [3, 1]
    with pytest.raises(ValueError, match="3 entries"):
        update_amax_and_scale(np.zeros(3), 1.0, DelayedScaling(amax_history_len=2),
                              "forward")


@pytest.mark.parametrize("pow2", [False, True])
def test_current_scale_matches_transcription(pow2):
    rng = np.random.default_rng(7)
    vals = [f32(float(v)) for v in rng.lognormal(0.0, 20.0, 300)] + \
        [0.0, math.inf, math.nan, 1e-45, FLT_MAX, 448.0, 3.0]
    for a in vals:
        for m in MAXES.values():
            assert current_scale(a, m, pow2) == ref_current(a, m, pow2), (a, m)


# ---------------------------------------------------------------- casting
@pytest.mark.parametrize("fmt", list(MAXES))
def test_quantize_against_ml_dtypes(fmt):
    codes = np.arange(256, dtype=np.uint8).view(ML[fmt]).astype(np.float64)
    fin = np.sort(codes[np.isfinite(codes)])
    mids = (fin[1:] + fin[:-1]) / 2                         # ties: nearest-even matters
    x = np.concatenate([fin, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                        [1e6, -1e6, np.inf, -np.inf, np.nan]])
    for s in [1.0, 0.75, 3.3, 1e-3]:
        got = quantize(x, s, fmt)
        want = ml_quant(x, s, fmt)
        np.testing.assert_array_equal(got, want)
    # saturation, as TE's __NV_SATFINITE casts (inf too), NaN kept
    m = MAXES[fmt]
    assert quantize([1e30, -np.inf, np.inf], 1.0, fmt).tolist() == [m, -m, m]
    assert np.isnan(quantize([np.nan], 1.0, fmt)[0])


# ---------------------------------------------------------------- Fp8Linear vs oracle
def _layer(rng, din=16, dout=5):
    lin = nn.Linear(din, dout, rng=rng)
    lin.params["weight"] = lin.params["weight"].astype(np.float32)
    lin.params["bias"] = lin.params["bias"].astype(np.float32)
    return lin


class _Oracle:
    """Fp8Linear recomputed from the transcribed rules, ml_dtypes and fsum."""

    def __init__(self, recipe, mode, pow2):
        self.r, self.mode, self.pow2 = recipe, mode, pow2
        self.fwd = "float8_e4m3fn"
        self.bwd = "float8_e5m2" if recipe.fp8_format == "HYBRID" else "float8_e4m3fn"
        L = recipe.amax_history_len
        self.st = {k: ([0.0] * L, 1.0, 1.0) for k in ("input", "weight", "grad_output")}

    def cast(self, key, x, fmt):
        a = float(np.max(np.abs(np.asarray(x, np.float32))))
        if self.mode == "current":
            s = ref_current(a, MAXES[fmt], self.pow2)
            si = f32(1.0 / s)
        else:
            h, s, si = self.st[key]
            h = list(h)
            h[0] = fmaxf(h[0], f32(a))
            self.st[key] = ref_update(h, s, self.r.amax_compute_algo, MAXES[fmt],
                                      self.r.margin)
        return ml_quant(x, s, fmt), si

    def step(self, x, W, b, dy):
        xq, sx = self.cast("input", x, self.fwd)
        wq, sw = self.cast("weight", W, self.fwd)
        y = (fsum_mm(xq, wq.T) * (sx * sw) + np.asarray(b, np.float64)).astype(np.float32)
        dq, sd = self.cast("grad_output", dy, self.bwd)
        dx = (fsum_mm(dq, wq) * (sd * sw)).astype(np.float32)
        dW = (fsum_mm(dq.T, xq) * (sd * sx)).astype(np.float32)
        db = np.float32([math.fsum(c) for c in np.asarray(dy, np.float64).T])
        return y, dx, dW, db, (xq, sx)


@pytest.mark.parametrize("fmt", ["HYBRID", "E4M3"])
@pytest.mark.parametrize("mode,pow2,algo", [("delayed", False, "max"),
                                            ("delayed", False, "most_recent"),
                                            ("current", False, "max"),
                                            ("current", True, "max")])
def test_fp8_linear_against_oracle(fmt, mode, pow2, algo):
    # the amax algorithm is a delayed-scaling setting: current scaling runs with "max" only
    rng = np.random.default_rng([len(fmt), len(mode), pow2, len(algo)])
    lin = _layer(rng)
    r = DelayedScaling(fp8_format=fmt, amax_history_len=3, amax_compute_algo=algo,
                       margin=1)
    f = Fp8Linear(lin, r, mode=mode, power_2_scales=pow2)
    oracle = _Oracle(r, mode, pow2)
    for step in range(5):
        mag = [1.0, 30.0, 0.01, 2.0, 1e-4][step]            # amax moves: delayed lags
        # a wide dynamic range per tensor, so that float32 sums would not be exact
        x = (rng.standard_normal((8, 16)) * mag *
             np.exp2(rng.integers(-14, 1, (8, 16)))).astype(np.float32)
        dy = (rng.standard_normal((8, 5)) * 1e-3 * mag *
              np.exp2(rng.integers(-20, 1, (8, 5)))).astype(np.float32)
        W = lin.params["weight"]
        want = oracle.step(x, W, lin.params["bias"], dy)
        y, cache = f.forward(x, "fp32")
        dx, grads = f.backward(dy, cache)
        np.testing.assert_array_equal(bits32(y), bits32(want[0]), err_msg=f"y step {step}")
        np.testing.assert_array_equal(bits32(dx), bits32(want[1]), err_msg=f"dx {step}")
        np.testing.assert_array_equal(bits32(grads["weight"]), bits32(want[2]))
        np.testing.assert_array_equal(bits32(grads["bias"]), bits32(want[3]))
        np.testing.assert_array_equal(cache.xq, want[4][0])
        assert cache.sinv_x == want[4][1]
        lin.params["weight"] = (W - 0.1 * grads["weight"]).astype(np.float32)
    if mode == "delayed":
        for k in ("input", "weight", "grad_output"):
            h, s, si = oracle.st[k]
            assert f.meta[k].history.tolist() == h and (f.meta[k].scale, f.meta[k].scale_inv
                                                        ) == (s, si)


def test_delayed_first_step_uses_scale_one_then_previous_amax():
    rng = np.random.default_rng(3)
    f = Fp8Linear(_layer(rng, 4, 2), DelayedScaling(amax_history_len=8))
    x1 = np.float32([[0.3, -0.7, 0.11, 0.05]])
    _, c1 = f.forward(x1, "fp32")
    assert c1.sinv_x == 1.0
    np.testing.assert_array_equal(c1.xq, ml_quant(x1, 1.0, "float8_e4m3fn"))
    x2 = x1 * np.float32(100.0)                 # overflows 448 / 0.7: saturates
    _, c2 = f.forward(x2, "fp32")
    s = f32(448.0 / f32(0.7))
    assert c2.sinv_x == f32(1.0 / s)
    np.testing.assert_array_equal(c2.xq, ml_quant(x2, s, "float8_e4m3fn"))
    assert np.max(np.abs(c2.xq)) == 448.0
    assert f.amaxes["input"] == f32(70.0)
    # eval forward: current scales, nothing recorded
    before = f.meta["input"].history.copy()
    f.forward(x1, "fp32", train=False)
    np.testing.assert_array_equal(f.meta["input"].history, before)


def test_leading_dims_and_no_bias():
    rng = np.random.default_rng(5)
    lin = nn.Linear(4, 3, bias=False, rng=rng)
    f = Fp8Linear(lin, DelayedScaling(), mode="current")
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y, c = f.forward(x, "fp32")
    dx, g = f.backward(np.ones((2, 3, 3), np.float32), c)
    assert y.shape == (2, 3, 3) and dx.shape == x.shape and set(g) == {"weight"}


# ---------------------------------------------------------------- model wrapping, training
def _mlp(rng):
    return nn.Sequential(nn.Linear(64, 64, rng=rng), nn.ReLU(), nn.Linear(64, 10, rng=rng))


def test_fp8_model_swaps_and_copies():
    rng = np.random.default_rng(0)
    m = nn.Sequential(nn.Sequential(nn.Linear(4, 4, rng=rng)),
                      nn.Residual(nn.Linear(4, 4, rng=rng)), nn.ReLU())
    before = copy.deepcopy(m.state_dict())
    f = fp8_model(m, DelayedScaling(), mode="current")
    assert isinstance(f.layers[0].layers[0], Fp8Linear)
    assert isinstance(f.layers[1].block, Fp8Linear)
    assert sorted(f.named_parameters()) == sorted(m.named_parameters())
    f.layers[0].layers[0].params["weight"][:] = 0
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("mode", ["delayed", "current"])
def test_digits_training(mode):
    data = nn.data.load_digits(flat=True)
    model = fp8_model(_mlp(np.random.default_rng(0)), DelayedScaling(amax_history_len=16),
                      mode=mode)
    opt = nn.make_optimizer("sgd", "fp32", lr=0.1, momentum=0.9)
    hist = nn.fit(model, data, "fp32", opt, epochs=3, batch_size=32,
                  rng=np.random.default_rng(1))
    assert hist.test_accuracy[-1] > 0.9, hist.test_accuracy
    assert hist.train_loss[-1] < hist.train_loss[0] / 4
    for layer in (model.layers[0], model.layers[2]):
        assert layer.params["weight"].dtype == np.float32          # fp32 master
        assert set(layer.amaxes) == {"input", "weight", "grad_output"}
        if mode == "delayed":
            assert layer.meta["grad_output"].scale != 1.0           # histories moved


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw,match", [
    (dict(fp8_format="E5M2"), "E5M2"),
    (dict(fp8_format="E3M4"), "E3M4"),
    (dict(amax_compute_algo="mean"), "mean"),
    (dict(margin=-1), "-1"),
    (dict(margin=0.5), "0.5"),
    (dict(amax_history_len=0), "amax_history_len=0"),
])
def test_bad_recipe(kw, match):
    with pytest.raises(ValueError, match=match):
        DelayedScaling(**kw)


def test_bad_wrappers():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="'lazy'"):
        Fp8Linear(nn.Linear(2, 2, rng=rng), DelayedScaling(), mode="lazy")
    with pytest.raises(TypeError, match="ReLU"):
        Fp8Linear(nn.ReLU(), DelayedScaling())
    with pytest.raises(TypeError, match="dict"):
        fp8_model(_mlp(rng), {"margin": 0})
    f = Fp8Linear(nn.Linear(2, 2, rng=rng), DelayedScaling())
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        f.forward(np.ones((1, 3)), "fp32")
    with pytest.raises(ValueError, match="'sideways'"):
        DelayedScaling().format("sideways")
    assert DelayedScaling(fp8_format="hybrid").fp8_format == "HYBRID"
