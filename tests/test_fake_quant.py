"""refcomp.quant.fake_quant and refcomp.quant.choose against real torch 2.13 CPU, in bits.

The FMA rules assume an AVX2/AVX-512 torch build (``torch.backends.cpu.get_cpu_capability()``);
under ``ATEN_CPU_CAPABILITY=default`` the tests pass ``fma=False``.
"""

import os
import warnings

import numpy as np
import pytest

from refcomp.quant.choose import choose_qparams_fbgemm
from refcomp.quant.fake_quant import (
    fake_quantize_per_channel_backward, fake_quantize_per_channel_forward,
    fake_quantize_per_tensor_backward, fake_quantize_per_tensor_forward)
from refcomp.quant.fq_modules import FakeQuantize, FusedMovingAvgObsFakeQuantize
from refcomp.quant.lsq import (
    fake_quantize_learnable_per_channel_backward, fake_quantize_learnable_per_channel_forward,
    fake_quantize_learnable_per_tensor_backward, fake_quantize_learnable_per_tensor_forward)
from refcomp.quant.torchsum import torch_sum_f32

torch = pytest.importorskip("torch")
from quant_torch import one_thread  # noqa: E402
F32 = np.float32
FMA = torch.backends.cpu.get_cpu_capability() != "DEFAULT" and \
    os.environ.get("ATEN_CPU_CAPABILITY", "").lower() != "default"
WIDTH = 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8
RANGES = [(0, 255), (-128, 127), (0, 127), (-8, 7), (0, 15)]


one_thread = pytest.fixture(autouse=True)(one_thread)


def bits_equal(a, b):
    """Same float32 bits, any NaN equal to any NaN (torch's NaN payloads are not specified)."""
    a = np.asarray(a, F32)
    b = np.asarray(b, F32)
    assert a.shape == b.shape, (a.shape, b.shape)
    same = (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
    bad = np.flatnonzero(~same.reshape(-1))
    assert bad.size == 0, f"{bad.size} mismatches, first at {bad[0]}: {a.reshape(-1)[bad[0]]!r} " \
                          f"vs {b.reshape(-1)[bad[0]]!r}"


def inputs(rng, shape, scale, qmin, qmax, zp):
    """Random values with exact ties (x*inv == k + .5 in float32), far outliers and specials."""
    x = (rng.standard_normal(shape) * float(np.max(scale)) * (qmax - qmin) * 0.6).astype(F32)
    flat = x.reshape(-1)
    n = flat.size
    k = rng.integers(qmin - 4, qmax + 4, n // 3) + 0.5 - np.mean(zp)
    inv = F32(1) / F32(np.max(scale))
    ties = (k / np.float64(inv)).astype(F32)          # candidates; keep the exact ties
    ok = (ties * inv).astype(F32) == (k.astype(F32))
    flat[:n // 3] = np.where(ok, ties, flat[:n // 3])
    flat[-6:] = [np.nan, np.inf, -np.inf, 1e38, -0.0, 3e-41][:min(6, n)] if n >= 6 else flat[-6:]
    return x


# ------------------------------------------------------------------ choose_qparams_fbgemm
def _fused_qparams(mn, mx, qmin, qmax, sym):
    sc, zp = torch.tensor([1.0]), torch.tensor([0], dtype=torch.int32)
    torch.fused_moving_avg_obs_fake_quant(
        torch.zeros(2), torch.tensor([0]), torch.tensor([1]),
        torch.tensor([mn], dtype=torch.float32), torch.tensor([mx], dtype=torch.float32), sc, zp,
        0.01, qmin, qmax, 0, False, sym)
    return sc.numpy(), int(zp.item())


def test_choose_fbgemm_matches_fused_op():
    rng = np.random.default_rng(1)
    specials = [(0.0, 0.0), (np.inf, -np.inf), (np.nan, 1.0), (2.0, 1.0), (-np.inf, np.inf),
                (0.0, 1e-4), (-1e-30, 1e-30), (-3.4e38, 3.4e38), (1e-45, 1e-45), (-0.0, 0.0),
                (0.5, 1.0), (-1.0, 1.0), (-2.5, 252.5)]
    cases = specials + [(float(F32(-abs(a) * 10 ** e)), float(F32(abs(b) * 10 ** e)))
                        for a, b, e in zip(rng.standard_normal(250), rng.standard_normal(250),
                                           rng.uniform(-12, 4, 250))]
    for i, (mn, mx) in enumerate(cases):
        if i % 5 == 1:
            mn = abs(mn)
        for qmin, qmax in RANGES + [(-127, 127), (-2 ** 31, 2 ** 31 - 1), (3, 3), (0, 1)]:
            for sym in (False, True):
                s, z = _fused_qparams(mn, mx, qmin, qmax, sym)
                got = choose_qparams_fbgemm(mn, mx, qmin, qmax, preserve_sparsity=sym)
                bits_equal(got.scale, s[0])
                assert got.zero_point == z, (mn, mx, qmin, qmax, sym)


def test_choose_aten_matches_choose_qparams_per_tensor():
    rng = np.random.default_rng(2)
    for t in range(400):
        x = torch.tensor((rng.standard_normal(5) + rng.uniform(-1, 1)) * 10 ** rng.uniform(-12, 4),
                         dtype=torch.float32)
        if t % 4 == 0:
            x = x.abs()
        if t % 7 == 0:
            x = torch.zeros(3)
        for rr in (False, True):
            s, z = torch._choose_qparams_per_tensor(x, rr)
            got = choose_qparams_fbgemm(x.min().item(), x.max().item(), 0, 255, reduce_range=rr,
                                        source="aten", double=True)
            assert (float(got.scale), got.zero_point) == (s, z)
            assert got.scale.dtype == np.float64


def test_choose_edge_values_and_errors():
    assert choose_qparams_fbgemm(0.0, 1e-4, 0, 255) == (F32(6.1e-5), 0)      # the floor
    assert choose_qparams_fbgemm(-2.5, 252.5, 0, 255).zero_point == 2        # half to even
    assert choose_qparams_fbgemm(0.5, 1.0, -128, 127, preserve_sparsity=True).zero_point == -128
    s, z = choose_qparams_fbgemm(np.float32([-1, 0]), np.float32([1, 0]), -128, 127)
    # [0, 0] -> scale 0.1 and, with equal error terms 128 vs 127 -> from_max, zp = qmax = 127
    assert s.dtype == F32 and z.tolist() == [0, 127] and s[1] == F32(0.1)
    # 4/255 -> 1 / 2**floor(log2(63.75)) = 1/32 (rounded up); 400/255 -> 2**ceil(log2) = 2
    assert choose_qparams_fbgemm(-1.0, 3.0, 0, 255, force_scale_power_of_two=True).scale == \
        F32(1 / 32)
    assert choose_qparams_fbgemm(-100.0, 300.0, 0, 255, force_scale_power_of_two=True).scale == 2
    with pytest.raises(ValueError, match="qmin=5 is above qmax=4"):
        choose_qparams_fbgemm(0.0, 1.0, 5, 4)
    with pytest.raises(ValueError, match="min=2.0, max=1.0"):
        choose_qparams_fbgemm(2.0, 1.0, 0, 255, source="aten")
    with pytest.raises(ValueError, match="qmin=0, qmax=0"):
        choose_qparams_fbgemm(0.0, 1.0, 0, 1, reduce_range=True, source="aten")
    with pytest.raises(ValueError, match="'tflite'"):
        choose_qparams_fbgemm(0.0, 1.0, 0, 255, source="tflite")
    with pytest.raises(TypeError, match="qmin must be an integer, got 0.5"):
        choose_qparams_fbgemm(0.0, 1.0, 0.5, 255)
    with pytest.raises(ValueError, match="same shape"):
        choose_qparams_fbgemm([0.0, 1.0], [1.0], 0, 255)


# ------------------------------------------------------------------ straight-through
def test_per_tensor_forward_backward_bits():
    rng = np.random.default_rng(3)
    for t in range(60):
        qmin, qmax = RANGES[t % len(RANGES)]
        s = float(F32(np.exp(rng.uniform(np.log(1e-4), np.log(3)))))
        zp = int(rng.integers(qmin, qmax + 1))
        x = inputs(rng, (37, 11), s, qmin, qmax, zp)
        dy = rng.standard_normal(x.shape).astype(F32)
        dy.reshape(-1)[-5] = np.nan                       # on x = inf: mask 0, NaN kept
        X = torch.tensor(x, requires_grad=True)
        Y = torch.fake_quantize_per_tensor_affine(X, s, zp, qmin, qmax)
        Y.backward(torch.from_numpy(dy))
        y, cache = fake_quantize_per_tensor_forward(x, s, zp, qmin, qmax)
        _, tmask = torch.ops.aten.fake_quantize_per_tensor_affine_cachemask(
            torch.from_numpy(x), s, zp, qmin, qmax)
        bits_equal(y, Y.detach().numpy())
        assert np.array_equal(cache.mask, tmask.numpy())
        bits_equal(fake_quantize_per_tensor_backward(dy, cache), X.grad.numpy())
    assert np.isnan(fake_quantize_per_tensor_backward(F32([np.nan]), cache._replace(
        mask=np.array([False])))[0])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_per_channel_int_and_float_zero_point_bits(axis):
    rng = np.random.default_rng(4 + axis)
    for t in range(20):
        qmin, qmax = RANGES[t % len(RANGES)]
        shape = [5, 6, 7]
        c = shape[axis]
        s = np.exp(rng.uniform(np.log(1e-4), np.log(3), c)).astype(F32)
        zi = rng.integers(qmin, qmax + 1, c).astype(np.int32)
        x = inputs(rng, shape, s, qmin, qmax, zi)
        x *= np.reshape(s / s.max(), [-1 if i == axis else 1 for i in range(3)])
        x.reshape(-1)[:4] = [np.nan, np.inf, 1e38, -1e38]
        dy = rng.standard_normal(shape).astype(F32)
        for zp in (zi, rng.uniform(qmin, qmax, c).astype(F32)):
            X = torch.tensor(x, requires_grad=True)
            Y = torch.fake_quantize_per_channel_affine(X, torch.from_numpy(s),
                                                       torch.from_numpy(zp), axis, qmin, qmax)
            Y.backward(torch.from_numpy(dy))
            y, cache = fake_quantize_per_channel_forward(x, s, zp, axis, qmin, qmax, fma=FMA)
            bits_equal(y, Y.detach().numpy())
            bits_equal(fake_quantize_per_channel_backward(dy, cache), X.grad.numpy())


def test_per_channel_float_zp_fma_matters():
    """Float zero points: fma=False (DEFAULT capability) differs from the AVX2 result."""
    rng = np.random.default_rng(5)
    s = np.exp(rng.uniform(-8, 1, 64)).astype(F32)
    zp = rng.uniform(0, 255, 64).astype(F32)
    k = rng.integers(-20, 280, (64, 500)) + 0.5 - zp[:, None]       # zp + x/s near k + .5
    x = (k * s[:, None].astype(np.float64)).astype(F32)
    y1, _ = fake_quantize_per_channel_forward(x, s, zp, 0, 0, 255, fma=True)
    y0, _ = fake_quantize_per_channel_forward(x, s, zp, 0, 0, 255, fma=False)
    assert np.count_nonzero(y1 != y0) > 0
    ref = torch.fake_quantize_per_channel_affine(torch.from_numpy(x), torch.from_numpy(s),
                                                 torch.from_numpy(zp), 0, 0, 255).numpy()
    bits_equal(y1 if FMA else y0, ref)


def test_fake_quant_errors_name_bad_values():
    x = np.zeros((2, 3), F32)
    with pytest.raises(ValueError, match=r"scale\[0\] = 0.0"):
        fake_quantize_per_tensor_forward(x, 0.0, 0, 0, 255)
    with pytest.raises(ValueError, match=r"scale\[1\] = -1.0"):
        fake_quantize_per_channel_forward(x, [1.0, -1.0], [0, 0], 0, 0, 255)
    with pytest.raises(ValueError, match="qmin=9 is above qmax=3"):
        fake_quantize_per_tensor_forward(x, 1.0, 0, 9, 3)
    with pytest.raises(ValueError, match=r"zero_point\[0\] = 300"):
        fake_quantize_per_tensor_forward(x, 1.0, 300, 0, 255)
    with pytest.raises(ValueError, match=r"scale must be 1-D with 2 .* got shape \(3,\)"):
        fake_quantize_per_channel_forward(x, [1.0] * 3, [0] * 3, 0, 0, 255)
    with pytest.raises(ValueError, match="axis=2"):
        fake_quantize_per_channel_forward(x, [1.0] * 2, [0] * 2, 2, 0, 255)
    with pytest.raises(ValueError, match=r"dy has shape \(3,\)"):
        fake_quantize_per_tensor_backward(np.zeros(3, F32), fake_quantize_per_tensor_forward(
            x, 1.0, 0, 0, 255)[1])
    with pytest.raises(ValueError, match=r"quant range \[1, 7\] must include 0"):
        fake_quantize_learnable_per_tensor_forward(x, 1.0, 0.0, 1, 7)
    y, c = fake_quantize_learnable_per_channel_forward(np.zeros(3, F32), [1.0] * 3, [0.0] * 3, 0,
                                                       0, 255)
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        fake_quantize_learnable_per_channel_backward(np.ones(3, F32), c)


# ------------------------------------------------------------------ torch.sum and LSQ
def test_torch_sum_f32_bits():
    rng = np.random.default_rng(6)
    for n in list(range(0, 70)) + list(rng.integers(70, 32768, 40)):
        v = (rng.standard_normal(n) * 10 ** rng.uniform(-3, 3, n)).astype(F32)
        bits_equal(torch_sum_f32(v, WIDTH), torch.from_numpy(v).sum().numpy())


def test_learnable_per_tensor_bits():
    rng = np.random.default_rng(7)
    for t in range(80):
        qmin, qmax = [(0, 255), (-128, 127), (-8, 7), (0, 15)][t % 4]
        n = [1, 7, 100, 3000, 40000][t % 5]
        s = F32(np.exp(rng.uniform(np.log(1e-4), np.log(2))))
        zp = F32(rng.uniform(qmin, qmax))
        if t % 3 == 0:
            zp = F32(np.floor(zp) + 0.5)                   # forward/backward rounding differ
        x = inputs(rng, (n,), s, qmin, qmax, zp) if n >= 6 else \
            (rng.standard_normal(n) * s * 100).astype(F32)
        x = x[np.isfinite(x)] if n >= 6 else x
        dy = rng.standard_normal(x.shape).astype(F32)
        gf = [1.0, 0.01, 1 / np.sqrt(x.size * qmax)][t % 3]
        X = torch.tensor(x, requires_grad=True)
        S = torch.tensor([s], requires_grad=True)
        Z = torch.tensor([zp], requires_grad=True)
        Y = torch._fake_quantize_learnable_per_tensor_affine(X, S, Z, qmin, qmax, gf)
        Y.backward(torch.from_numpy(dy))
        y, cache = fake_quantize_learnable_per_tensor_forward(x, s, zp, qmin, qmax, gf, fma=FMA,
                                                              sum_width=WIDTH)
        dx, ds, dz = fake_quantize_learnable_per_tensor_backward(dy, cache)
        bits_equal(y, Y.detach().numpy())
        bits_equal(dx, X.grad.numpy())
        bits_equal(ds, S.grad.numpy())
        bits_equal(dz, Z.grad.numpy())


@pytest.mark.parametrize("shape", [(40, 1), (16, 50), (6, 5, 7)])
def test_learnable_per_channel_axis0_bits(shape):
    rng = np.random.default_rng(8)
    c = shape[0]
    for t in range(12):
        qmin, qmax = [(0, 255), (-128, 127), (-8, 7), (0, 15)][t % 4]
        s = np.exp(rng.uniform(np.log(1e-4), np.log(2), c)).astype(F32)
        zp = rng.uniform(qmin, qmax, c).astype(F32)
        zp[::3] = np.floor(zp[::3]) + F32(0.5)
        x = inputs(rng, shape, s, qmin, qmax, np.rint(zp))
        x = np.where(np.isfinite(x), x, F32(0.5))
        x *= np.reshape(s / s.max(), (-1,) + (1,) * (len(shape) - 1))
        dy = rng.standard_normal(shape).astype(F32)
        gf = [1.0, 0.37, 1 / np.sqrt(x.size * qmax)][t % 3]
        X = torch.tensor(x, requires_grad=True)
        S = torch.tensor(s, requires_grad=True)
        Z = torch.tensor(zp, requires_grad=True)
        Y = torch._fake_quantize_learnable_per_channel_affine(X, S, Z, 0, qmin, qmax, gf)
        Y.backward(torch.from_numpy(dy))
        y, cache = fake_quantize_learnable_per_channel_forward(x, s, zp, 0, qmin, qmax, gf,
                                                               fma=FMA, sum_width=WIDTH)
        dx, ds, dz = fake_quantize_learnable_per_channel_backward(dy, cache)
        bits_equal(y, Y.detach().numpy())
        bits_equal(dx, X.grad.numpy())
        bits_equal(ds, S.grad.numpy())
        bits_equal(dz, Z.grad.numpy())


# ------------------------------------------------------------------ modules
class _MinMaxStub:
    """Tiny NumPy MinMaxObserver (per tensor affine / per channel symmetric), torch's formulas
    (observer.py ``_calculate_qparams``); an independent test double, not refcomp code."""

    def __init__(self, qmin, qmax, per_channel=False):
        self.quant_min, self.quant_max, self.pc = qmin, qmax, per_channel
        self.mn = self.mx = None

    def forward(self, x):
        r = x.reshape(x.shape[0], -1) if self.pc else x.reshape(1, -1)
        mn, mx = r.min(1), r.max(1)
        self.mn = mn if self.mn is None else np.minimum(self.mn, mn)
        self.mx = mx if self.mx is None else np.maximum(self.mx, mx)
        return x

    def calculate_qparams(self):
        eps = np.finfo(F32).eps
        lo, hi = np.minimum(self.mn, F32(0)), np.maximum(self.mx, F32(0))
        if self.pc:
            s = np.maximum(np.maximum(-lo, hi) / F32((self.quant_max - self.quant_min) / 2), eps)
            return s.astype(F32), np.zeros(len(s), np.int64)
        s = np.maximum((hi - lo) / F32(self.quant_max - self.quant_min), eps).astype(F32)
        z = self.quant_min - np.rint((lo / s).astype(F32)).astype(np.int32)
        return s, np.clip(z, self.quant_min, self.quant_max).astype(np.int32)


@pytest.mark.parametrize("pc", [False, True])
def test_fake_quantize_module_bits(pc):
    from torch.ao.quantization import FakeQuantize as TFQ, MinMaxObserver, PerChannelMinMaxObserver
    rng = np.random.default_rng(9)
    if pc:
        tm = TFQ(observer=PerChannelMinMaxObserver, quant_min=-128, quant_max=127,
                 dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)
        m = FakeQuantize(_MinMaxStub(-128, 127, True), per_channel=True, ch_axis=0)
    else:
        tm = TFQ(observer=MinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8)
        m = FakeQuantize(_MinMaxStub(0, 255))
    for step in range(6):
        if step == 3:
            tm.disable_observer()
            m.disable_observer()
        if step == 5:
            tm.disable_fake_quant()
            m.disable_fake_quant()
        x = (rng.standard_normal((8, 13)) * 10 ** rng.uniform(-3, 1) + 0.1 * step).astype(F32)
        dy = rng.standard_normal(x.shape).astype(F32)
        X = torch.tensor(x, requires_grad=True)
        Y = tm(X)
        Y.backward(torch.from_numpy(dy))
        y, cache = m.forward(x)
        bits_equal(m.scale, tm.scale.numpy())
        assert np.array_equal(m.zero_point, tm.zero_point.numpy())
        bits_equal(y, Y.detach().numpy())
        bits_equal(m.backward(dy, cache), X.grad.numpy())


CFGS = [  # (torch factory name, quant_min, quant_max, per_channel, symmetric)
    ("default_fused_act_fake_quant", 0, 255, False, False),     # no reduce_range in 2.13
    ("default_fused_wt_fake_quant", -128, 127, False, True),
    ("default_fused_per_channel_wt_fake_quant", -128, 127, True, True),
    ("fused_wt_fake_quant_range_neg_127_to_127", -127, 127, False, True),
    ("fused_per_channel_wt_fake_quant_range_neg_127_to_127", -127, 127, True, True),
]


@pytest.mark.parametrize("cfg", CFGS, ids=[c[0] for c in CFGS])
def test_fused_moving_avg_sequence_bits(cfg):
    from torch.ao.quantization import fake_quantize as tfq
    name, qmin, qmax, pc, sym = cfg
    rng = np.random.default_rng(CFGS.index(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = getattr(tfq, name)()
    obs = tm.activation_post_process
    assert (obs.quant_min, obs.quant_max) == (qmin, qmax)
    m = FusedMovingAvgObsFakeQuantize(qmin, qmax, averaging_constant=obs.averaging_constant,
                                      per_channel=pc, symmetric=sym)
    for step in range(30):
        if step == 20:
            tm.disable_observer()
            m.disable_observer()
        if step == 25:
            tm.disable_fake_quant()
            m.disable_fake_quant()
        shape = (6, 5, 3) if pc else (7, 11)
        x = (rng.standard_normal(shape) * 10 ** rng.uniform(-5, 1)
             + rng.uniform(-.5, .5) * (step % 3 == 0)).astype(F32)
        if step % 7 == 4:
            x = np.abs(x)
        dy = rng.standard_normal(shape).astype(F32)
        X = torch.tensor(x, requires_grad=True)
        Y = tm(X)
        Y.backward(torch.from_numpy(dy))
        y, cache = m.forward(x)
        bits_equal(m.running_min, obs.min_val.numpy())
        bits_equal(m.running_max, obs.max_val.numpy())
        bits_equal(m.scale, tm.scale.numpy())
        assert np.array_equal(m.zero_point, tm.zero_point.numpy())
        bits_equal(y, Y.detach().numpy())
        bits_equal(m.backward(dy, cache), X.grad.numpy())


def test_fused_rejects_other_axes():
    with pytest.raises(ValueError, match="ch_axis=1"):
        FusedMovingAvgObsFakeQuantize(-128, 127, per_channel=True, ch_axis=1)


def test_learnable_per_channel_other_axes_within_sum_bound():
    """axis != 0: dx is exact; torch's outer reduction adds dscale/dzp in another order, so
    they are compared within the rigorous reordering bound 2 * (n - 1) * 2**-24 * sum|terms|
    (two float32 recursive sums of the same n terms; Higham, Accuracy and Stability, 4.2)."""
    rng = np.random.default_rng(10)
    for shape, axis in [((50, 16), 1), ((4, 6, 30), 1), ((30, 4, 5), 2)]:
        c = shape[axis]
        s = np.exp(rng.uniform(-5, 0, c)).astype(F32)
        zp = rng.uniform(0, 255, c).astype(F32)
        x = (rng.standard_normal(shape) * 60 * s.max()).astype(F32)
        dy = rng.standard_normal(shape).astype(F32)
        X, S, Z = (torch.tensor(v, requires_grad=True) for v in (x, s, zp))
        torch._fake_quantize_learnable_per_channel_affine(X, S, Z, axis, 0, 255, 1.0).backward(
            torch.from_numpy(dy))
        y, cache = fake_quantize_learnable_per_channel_forward(x, s, zp, axis, 0, 255, fma=FMA,
                                                               sum_width=WIDTH)
        dx, ds, dz = fake_quantize_learnable_per_channel_backward(dy, cache)
        bits_equal(y, torch._fake_quantize_learnable_per_channel_affine(
            X.detach(), S.detach(), Z.detach(), axis, 0, 255, 1.0).numpy())
        bits_equal(dx, X.grad.numpy())
        n = x.size // c
        inv = 1 / s.astype(np.float64)
        terms = np.abs(dy.astype(np.float64)) * (np.abs(x) * np.reshape(
            inv, [-1 if i == axis else 1 for i in range(x.ndim)]) + 256)      # >= |element grads|
        red = tuple(i for i in range(x.ndim) if i != axis)
        bound = 2 * (n - 1) * 2.0 ** -24 * terms.sum(axis=red) * np.maximum(s, 1) * 2
        assert np.all(np.abs(ds.astype(np.float64) - S.grad.numpy()) <= bound)
        assert np.all(np.abs(dz.astype(np.float64) - Z.grad.numpy()) <= bound)


def test_fused_empty_input_and_disabled_fake_quant():
    m = FusedMovingAvgObsFakeQuantize(0, 255)
    y, c = m.forward(np.zeros((0, 3), F32))
    assert y.shape == (0, 3) and m.running_min == np.inf
    m.disable_fake_quant()
    y, c = m.forward(F32([1.5, -2.0]))
    assert y.tolist() == [1.5, -2.0] and c.mask.all() and m.scale.tolist() == [1.0]
    assert (m.running_min, m.running_max) == (F32(-2.0), F32(1.5))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("per_channel", [False, True])
def test_fake_quantize_with_refcomp_observers_matches_torch_module(per_channel):
    """FakeQuantize around refcomp's moving-average observers against torch's FakeQuantize
    module with the same observer class: outputs and scales bit-exact over 10 steps."""
    from refcomp.quant.observers import (MovingAverageMinMaxObserver,
                                         MovingAveragePerChannelMinMaxObserver)
    from torch.ao.quantization import FakeQuantize as TorchFQ
    from torch.ao.quantization import observer as tobs
    rng = np.random.default_rng(61 + per_channel)
    if per_channel:
        ours = FakeQuantize(MovingAveragePerChannelMinMaxObserver(
            dtype="qint8", qscheme="per_channel_symmetric", quant_min=-128, quant_max=127),
            per_channel=True, ch_axis=0)
        theirs = TorchFQ(observer=tobs.MovingAveragePerChannelMinMaxObserver, quant_min=-128,
                         quant_max=127, dtype=torch.qint8, ch_axis=0,
                         qscheme=torch.per_channel_symmetric)
    else:
        ours = FakeQuantize(MovingAverageMinMaxObserver(
            dtype="quint8", qscheme="per_tensor_affine", quant_min=0, quant_max=127))
        theirs = TorchFQ(observer=tobs.MovingAverageMinMaxObserver, quant_min=0, quant_max=127,
                         dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    for i in range(10):
        x = (rng.standard_normal((6, 8)) * (i + 1) + i % 3).astype(F32)
        y, _ = ours.forward(x)
        want = theirs(torch.tensor(x)).detach().numpy()
        assert np.array_equal(y.view(np.uint32), want.view(np.uint32)), i
        assert ours.scale.tobytes() == theirs.scale.numpy().tobytes(), i
