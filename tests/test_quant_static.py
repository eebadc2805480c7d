"""Integer-only quantized Linear / Conv2d (refcomp.quant.static) against torch 2.13's fbgemm
kernels: output codes bit-exact (torch.ao.nn.quantized.Linear / Conv2d / ConvReLU2d on the
fbgemm engine), and the int16 pair saturation of the AVX2 kernel."""

from fractions import Fraction

import numpy as np
import pytest

from refcomp.quant.static import quantized_conv2d, quantized_linear

torch = pytest.importorskip("torch")
from quant_torch import avx2_without_vnni, use_fbgemm  # noqa: E402
# torch 2.13 deprecates its quantized tensors (the kernels are still the reference)
pytestmark = [pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
nnq = torch.ao.nn.quantized
nniq = torch.ao.nn.intrinsic.quantized
_fbgemm = pytest.fixture(autouse=True)(use_fbgemm)




def _weights(rng, shape, per_channel):
    w = torch.tensor(rng.standard_normal(shape) * 0.3, dtype=torch.float32)
    if per_channel:
        s = torch.tensor(rng.uniform(0.002, 0.01, shape[0]), dtype=torch.float64)
        z = torch.tensor(rng.integers(-3, 4, shape[0]))
        return torch.quantize_per_channel(w, s, z, 0, torch.qint8)
    return torch.quantize_per_tensor(w, float(rng.uniform(0.002, 0.01)),
                                     int(rng.integers(-3, 4)), torch.qint8)


def _wq(qw):
    if qw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return (qw.int_repr().numpy(), qw.q_per_channel_scales().numpy(),
                qw.q_per_channel_zero_points().numpy())
    return qw.int_repr().numpy(), qw.q_scale(), qw.q_zero_point()


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_quantized_linear_matches_torch(per_channel, relu):
    """Random shapes, qparams (full-range input zero points, so that the pair saturation
    of the AVX2 kernel matters) and biases: output codes bit-exact."""
    rng = np.random.default_rng(31 + 2 * per_channel + relu)
    for trial in range(12):
        M, K, N = int(rng.integers(1, 9)), int(rng.integers(1, 70)), int(rng.integers(1, 40))
        qw = _weights(rng, (N, K), per_channel)
        bias = None if trial % 4 == 0 else \
            torch.tensor(rng.standard_normal(N), dtype=torch.float32)
        mod = (nniq.LinearReLU if relu else nnq.Linear)(K, N)
        mod.set_weight_bias(qw, bias)
        mod.scale, mod.zero_point = float(rng.uniform(0.01, 0.2)), int(rng.integers(0, 256))
        xs, xz = float(rng.uniform(0.005, 0.05)), int(rng.integers(0, 256))
        x = torch.tensor(rng.uniform(-5, 5, (M, K)), dtype=torch.float32)
        qx = torch.quantize_per_tensor(x, xs, xz, torch.quint8)
        want = mod(qx).int_repr().numpy()
        wq, ws, wz = _wq(qw)
        got = quantized_linear(qx.int_repr().numpy(), xs, xz, wq, ws, wz,
                               None if bias is None else bias.numpy(), mod.scale,
                               mod.zero_point, relu=relu, int16_pairs=avx2_without_vnni())
        assert np.array_equal(got, want), (trial, np.argwhere(got != want)[:3])


@pytest.mark.parametrize("geom", [dict(k=3, stride=1, padding=1, groups=1),
                                  dict(k=3, stride=2, padding=0, groups=1),
                                  dict(k=3, stride=1, padding=2, groups=1, dilation=2),
                                  dict(k=1, stride=1, padding=0, groups=1),
                                  dict(k=3, stride=1, padding=1, groups=8),
                                  dict(k=3, stride=1, padding=1, groups=2)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_quantized_conv2d_matches_torch(geom, per_channel):
    """im2col, pointwise, depthwise and grouped convolutions, with and without ReLU."""
    rng = np.random.default_rng(41 + per_channel)
    C = O = 8
    k, g = geom["k"], geom["groups"]
    for trial, relu in enumerate((False, True)):
        qw = _weights(rng, (O, C // g, k, k), per_channel)
        bias = torch.tensor(rng.standard_normal(O), dtype=torch.float32)
        cls = nniq.ConvReLU2d if relu else nnq.Conv2d
        mod = cls(C, O, k, stride=geom["stride"], padding=geom["padding"],
                  dilation=geom.get("dilation", 1), groups=g)
        mod.set_weight_bias(qw, bias)
        mod.scale, mod.zero_point = float(rng.uniform(0.02, 0.2)), int(rng.integers(0, 256))
        xs, xz = float(rng.uniform(0.01, 0.05)), int(rng.integers(0, 256))
        x = torch.tensor(rng.uniform(-4, 4, (2, C, 7, 6)), dtype=torch.float32)
        qx = torch.quantize_per_tensor(x, xs, xz, torch.quint8)
        want = mod(qx).int_repr().numpy()
        wq, ws, wz = _wq(qw)
        got = quantized_conv2d(qx.int_repr().numpy(), xs, xz, wq, ws, wz, bias.numpy(),
                               mod.scale, mod.zero_point, stride=geom["stride"],
                               padding=geom["padding"], dilation=geom.get("dilation", 1),
                               groups=g, relu=relu, int16_pairs=avx2_without_vnni())
        assert np.array_equal(got, want), (trial, np.argwhere(got != want)[:3])


def test_pair_saturation_changes_results_and_matches_the_kernel():
    """Activations near 255 against weights of -128: every pair of products saturates in
    int16 on AVX2; the exact-product model disagrees with it, and torch agrees with the
    model of its own CPU."""
    K, N = 16, 3
    xq = np.full((2, K), 255)
    wq = np.full((N, K), -128)
    pairs = quantized_linear(xq, 0.01, 0, wq, 0.01, 0, None, 2.0, 128, int16_pairs=True)
    exact = quantized_linear(xq, 0.01, 0, wq, 0.01, 0, None, 2.0, 128, int16_pairs=False)
    # pairs: 8 * -32768 = -262144 ; exact: 16 * -32640 = -522240 ; both scaled by 1e-4 / 2
    assert pairs[0, 0] == max(0, int(np.rint(np.float32(-262144) * np.float32(
        np.float32(np.float32(0.01) * np.float32(0.01)) / np.float32(2.0)))) + 128)
    assert not np.array_equal(pairs, exact)
    mod = nnq.Linear(K, N)
    mod.set_weight_bias(torch.quantize_per_tensor(torch.full((N, K), -1.28), 0.01, 0,
                                                  torch.qint8), None)
    mod.scale, mod.zero_point = 2.0, 128
    qx = torch.quantize_per_tensor(torch.full((2, K), 2.55), 0.01, 0, torch.quint8)
    want = mod(qx).int_repr().numpy()
    assert np.array_equal(pairs if avx2_without_vnni() else exact, want)


def test_bad_input_names_the_value():
    with pytest.raises(ValueError, match="256"):
        quantized_linear([[256]], 0.1, 0, [[1]], 0.1, 0, None, 0.1, 0)
    with pytest.raises(ValueError, match="x_scale"):
        quantized_linear([[1]], 0.0, 0, [[1]], 0.1, 0, None, 0.1, 0)
    with pytest.raises(ValueError, match="out_zero_point"):
        quantized_linear([[1]], 0.1, 0, [[1]], 0.1, 0, None, 0.1, 300)
    with pytest.raises(ValueError, match="do not match"):
        quantized_linear([[1, 2]], 0.1, 0, [[1]], 0.1, 0, None, 0.1, 0)
    with pytest.raises(ValueError, match="groups=3"):
        quantized_conv2d(np.zeros((1, 4, 3, 3), int), 0.1, 0, np.zeros((4, 2, 1, 1), int),
                         0.1, 0, None, 0.1, 0, groups=3)
    with pytest.raises(TypeError, match="integer codes"):
        quantized_linear([[0.5]], 0.1, 0, [[1]], 0.1, 0, None, 0.1, 0)


def test_per_tensor_bias_is_one_fused_multiply_add():
    """Per-tensor weights: the bias enters as fma(bias, 1/atw, raw), one rounding.  A bias
    is built (exact rationals) whose product P = bias * rcp lies just below a midpoint of
    the float32 grid above 2**21, so that for one raw value the two-rounding alternative
    f32(raw + f32(P)) ties up to the output boundary 129.5 (-> 130) while the fused sum
    stays below it (-> 129).  torch agrees with the fused form on all 65536 inputs."""
    f = np.float32
    xs, ws = f(0.01), f(0.003)
    atw = xs * ws
    os_ = atw * f(16384)                                 # mult = atw / os_ = 2**-14
    rcp = f(1) / atw
    b = f((2.0**21 - 5000) / float(rcp))
    while not (Fraction(13, 16) < (Fraction(float(b)) * Fraction(float(rcp))) % 1
               < Fraction(7, 8)):
        b = np.nextafter(b, f(np.inf))
    a0, a1 = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    xq = np.stack([a0.reshape(-1), a1.reshape(-1)], 1)   # raw = a0 + 127 a1: 0 .. 32640
    wq = np.array([[1, 127]])
    got = quantized_linear(xq, float(xs), 0, wq, float(ws), 0, np.array([b]), float(os_), 0,
                           int16_pairs=False)
    raw = (xq @ wq.T).astype(np.float32)
    alt = np.clip(np.rint((raw + b * rcp) * (atw / os_)), 0, 255)
    assert (alt != got).sum() > 0
    mod = nnq.Linear(2, 1)
    mod.set_weight_bias(torch.quantize_per_tensor(torch.tensor(wq * ws, dtype=torch.float32),
                                                  float(ws), 0, torch.qint8),
                        torch.tensor([b]))
    mod.scale, mod.zero_point = float(os_), 0
    qx = torch.quantize_per_tensor(torch.tensor(xq * xs, dtype=torch.float32), float(xs), 0,
                                   torch.quint8)
    assert np.array_equal(qx.int_repr().numpy(), xq)
    assert np.array_equal(mod(qx).int_repr().numpy(), got)
