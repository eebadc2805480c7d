"""Dynamic quantized Linear (refcomp.quant.dynamic) bit for bit against torch 2.13's
torch.ao.nn.quantized.dynamic.Linear (fbgemm, x86 engine) on this CPU."""

import warnings

import numpy as np
import pytest

from refcomp import nn
from refcomp.ops import quantize_affine
from refcomp.ops.arith import mul, add
from refcomp.quant.dynamic import (DynamicQuantizedLinear, dynamic_linear_forward,
                                   quantize_dynamic, quantize_weight_dynamic)
from refcomp.quant.fuse import LinearReLU, fuse_modules

torch = pytest.importorskip("torch")
from torch.ao.quantization.qconfig import per_channel_dynamic_qconfig  # noqa: E402

F32 = np.float32


@pytest.fixture(autouse=True, params=["x86", "fbgemm"])
def engine(request):
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = request.param
    torch.set_num_threads(1)
    yield request.param
    torch.backends.quantized.engine = old


def torch_dynamic(model, spec=None):
    """torch.ao.quantization.quantize_dynamic, its deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def torch_linear(W, b):
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.asarray(W, F32)))
        if b is not None:
            lin.bias.copy_(torch.from_numpy(np.asarray(b, F32)))
    return lin


def torch_qlinear(W, b, per_channel=False):
    spec = {torch.nn.Linear: per_channel_dynamic_qconfig} if per_channel else {torch.nn.Linear}
    return torch_dynamic(torch.nn.Sequential(torch_linear(W, b)), spec)[0]


def run_torch(qmod, x):
    with torch.no_grad():
        return qmod(torch.from_numpy(np.asarray(x, F32))).numpy()


def mismatches(y, ref):
    """Number of elements whose float32 bit patterns differ."""
    return int((np.asarray(y, np.float64).astype(F32).view(np.uint32)
                != np.asarray(ref, F32).view(np.uint32)).sum())


def random_case(rng, t):
    K, N = int(rng.integers(1, 90)), int(rng.integers(1, 40))
    lead = [(int(rng.integers(1, 9)),), (int(rng.integers(1, 4)), int(rng.integers(1, 4)))][t % 2]
    W = (rng.standard_normal((N, K)) * rng.uniform(0.01, 5)).astype(F32)
    b = (rng.standard_normal(N) * rng.uniform(0.01, 10)).astype(F32) if t % 4 else None
    x = (rng.standard_normal(lead + (K,)) * rng.uniform(0.01, 100)
         + rng.uniform(-3, 3)).astype(F32)
    kind = t % 5
    if kind == 1:
        x = np.abs(x)                                   # all positive: zp 0
    elif kind == 2:
        x = -np.abs(x)                                  # all negative: zp 127
    elif kind == 3:
        x[rng.random(x.shape) < 0.4] = 0                # many zeros
    return W, b, x


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_random_shapes_bit_exact(per_channel):
    rng = np.random.default_rng(17 + per_channel)
    total = 0
    for t in range(30):
        W, b, x = random_case(rng, t)
        q = torch_qlinear(W, b, per_channel)
        m = DynamicQuantizedLinear(W, b, per_channel=per_channel)
        w = q.weight()
        assert np.array_equal(m.wq, w.int_repr().numpy()), t
        scales = w.q_per_channel_scales().numpy() if per_channel else np.array([w.q_scale()])
        assert np.array_equal(m.w_scale.astype(np.float64), scales.astype(np.float64)), t
        ref = run_torch(q, x)
        y, cache = m.forward(x)
        assert y.shape == ref.shape
        assert mismatches(y, ref) == 0, (t, W.shape, x.shape)
        total += ref.size
    assert total > 1000


def test_large_k_accumulators_past_2_24():
    """K = 4096, large same-sign codes: |raw| far above 2**24, so f32(raw) rounds."""
    rng = np.random.default_rng(5)
    K, N = 4096, 12
    W = rng.uniform(0.5, 1.0, (N, K)).astype(F32)
    W[N // 2:] *= -1
    b = rng.standard_normal(N).astype(F32)
    x = rng.uniform(50, 100, (3, K)).astype(F32)
    x[1] = -x[1]                                       # a row of the other sign
    x[2, ::7] = 0
    q = torch_qlinear(W, b)
    y, cache = DynamicQuantizedLinear(W, b).forward(x)
    assert np.abs(cache.raw).max() > 2 ** 24
    assert mismatches(y, run_torch(q, x)) == 0
    xp = np.abs(x)                                     # all positive with zeros
    y, cache = DynamicQuantizedLinear(W, None, per_channel=True).forward(xp)
    assert np.abs(cache.raw).max() > 2 ** 24
    assert mismatches(y, run_torch(torch_qlinear(W, None, True), xp)) == 0


EDGES = {
    "zeros": np.zeros((2, 6)),
    "constant_pos": np.full((2, 6), 3.25),
    "constant_neg": np.full((2, 6), -0.75),
    "tiny_range": 1e-3 + np.arange(12).reshape(2, 6) * 1e-7,
    "tiny_both_signs": (np.arange(12).reshape(2, 6) - 4) * 1e-8,
    "huge": np.array([[1e6, -3e5, 7.5, 0, 2e6, -1e6]] * 2),
    "subnormal": np.array([[1e-40, -2e-41, 0, 3e-39, 1e-45, 0]] * 2),
    "one_element": np.array([[2.5, 0, 0, 0, 0, 0]]),
}


@pytest.mark.parametrize("name", EDGES)
def test_edge_inputs(name):
    rng = np.random.default_rng(9)
    W = rng.standard_normal((5, 6)).astype(F32)
    b = rng.standard_normal(5).astype(F32)
    x = EDGES[name].astype(F32)
    for pc in (False, True):
        y, _ = DynamicQuantizedLinear(W, b, per_channel=pc).forward(x)
        assert mismatches(y, run_torch(torch_qlinear(W, b, pc), x)) == 0, pc


def test_empty_batch():
    W = np.ones((3, 4), F32)
    y, cache = DynamicQuantizedLinear(W, np.zeros(3)).forward(np.zeros((0, 4)))
    ref = run_torch(torch_qlinear(W, np.zeros(3)), np.zeros((0, 4)))
    assert y.shape == ref.shape == (0, 3)
    assert float(cache.x_scale) == F32(0.1) and cache.x_zero_point == 0


def test_weight_edge_cases():
    """All-zero weights (scale = eps = 2**-23) and a -128 code (w_min = -w_max / ...)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4)).astype(F32)
    for W in (np.zeros((2, 4), F32), np.array([[-1.0, 0.5, 1.0 - 2 ** -20, 0],
                                               [0.25, -0.25, 0, 1e-3]], F32)):
        for pc in (False, True):
            q = torch_qlinear(W, None, pc)
            m = DynamicQuantizedLinear(W, None, per_channel=pc)
            assert np.array_equal(m.wq, q.weight().int_repr().numpy())
            assert mismatches(m.forward(x)[0], run_torch(q, x)) == 0


def test_legacy_fused_input_quantization_ties():
    """Exact ties x/s + zp = k + 0.5 with an odd zero point: torch 2.13's legacy fbgemm
    rounds zp + x/s once (fused), not round(x/s) + zp; identity weights expose the codes."""
    K = 16
    x = np.zeros((1, K), F32)
    x[0, 0], x[0, 1] = -2.0625, 5.875                  # scale 1/16, zp 33
    x[0, 2:] = (np.arange(K - 2) / 16 + 1 / 32).astype(F32)
    W = np.eye(K, dtype=F32)
    y, cache = DynamicQuantizedLinear(W, None).forward(x)
    assert float(cache.x_scale) == 1 / 16 and cache.x_zero_point == 33
    assert mismatches(y, run_torch(torch_qlinear(W, None), x)) == 0
    after = quantize_affine(x, 1 / 16, 33, 0, 255, "torch-2.13-fake_quantize")
    assert (after != cache.xq).sum() >= 4              # the other rule is distinguishable


def test_output_fma_is_required():
    """The same integers with an unfused multiply-then-add disagree with torch: the test
    data discriminates the contracted FMA of requantizeForFloatAvx2."""
    rng = np.random.default_rng(23)
    W = rng.standard_normal((64, 48)).astype(F32)
    b = rng.standard_normal(64).astype(F32)
    x = (rng.standard_normal((16, 48)) * 3).astype(F32)
    m = DynamicQuantizedLinear(W, b)
    y, cache = m.forward(x)
    ref = run_torch(torch_qlinear(W, b), x)
    assert mismatches(y, ref) == 0
    mult = mul(float(cache.x_scale), m.w_scale.astype(np.float64), "float32")
    unfused = add(mul(cache.raw.astype(np.float64), mult, "float32"), b, "float32")
    assert mismatches(unfused, ref) > 20


def test_int16_pairs_never_saturate_with_reduce_range():
    """reduce_range keeps the codes <= 128 (|pair| <= 32768): the AVX2 pair saturation
    cannot trigger on the dynamic path, so the VNNI model gives the same bits."""
    rng = np.random.default_rng(4)
    W = np.where(rng.random((8, 256)) < 0.5, F32(-6.4059205), F32(6.4059205)).astype(F32)
    x = rng.uniform(-0.01, 100, (4, 256)).astype(F32)
    wq, s, z = quantize_weight_dynamic(W)
    assert wq.min() == -128                            # fl(-m * fl(1 / s)) = -127.5 -> -128
    y1, c = dynamic_linear_forward(x, wq, s, z, int16_pairs=True)
    y2, _ = dynamic_linear_forward(x, wq, s, z, int16_pairs=False)
    assert c.xq.max() <= 128
    assert np.array_equal(y1, y2)
    assert mismatches(y1, run_torch(torch_qlinear(W, None), x)) == 0


# --------------------------------------------------------------------------- models
def models(rng):
    tm = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(),
                             torch.nn.Linear(32, 16), torch.nn.Tanh(),
                             torch.nn.Linear(16, 5, bias=False))
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.from_numpy((rng.standard_normal(p.shape) * 0.5).astype(F32)))
    r = np.random.default_rng(0)
    rm = nn.Sequential(nn.Linear(20, 32, rng=r), nn.ReLU(), nn.Linear(32, 16, rng=r),
                       nn.Tanh(), nn.Linear(16, 5, bias=False, rng=r))
    rm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    return tm, rm


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_quantize_dynamic_model(per_channel):
    """A whole Sequential: the Linear layers only are replaced (ReLU exact; between the
    quantized layers the values stay float32, so the chain is bit-exact only up to the
    float layers -- here ReLU, exact in any order -- and is checked layer by layer)."""
    rng = np.random.default_rng(31)
    tm, rm = models(rng)
    spec = {torch.nn.Linear: per_channel_dynamic_qconfig} if per_channel else None
    tq = torch_dynamic(tm, spec)
    rq = quantize_dynamic(rm, per_channel=per_channel)
    assert [type(m).__name__ for m in rq.layers] == ["DynamicQuantizedLinear", "ReLU",
                                                     "DynamicQuantizedLinear", "Tanh",
                                                     "DynamicQuantizedLinear"]
    assert rq.named_parameters() == {}                  # like torch: no parameters
    assert type(rm.layers[0]) is nn.Linear              # inplace=False keeps the original
    x = (rng.standard_normal((7, 20)) * 2).astype(F32)
    for i in (0, 2, 4):                                 # each quantized layer, torch's input
        xi = tq[:i](torch.from_numpy(x)).detach().numpy() if i else x
        y, _ = rq.layers[i].forward(xi)
        assert mismatches(y, run_torch(tq[i], xi)) == 0, i
    y01, _ = nn.Sequential(*rq.layers[:2]).forward(x, "fp32", train=False)
    assert mismatches(y01, run_torch(tq[:2], x)) == 0   # Linear -> ReLU through Sequential


def test_linear_relu_fused_and_default_spec():
    rng = np.random.default_rng(8)
    W = rng.standard_normal((10, 12)).astype(F32)
    b = rng.standard_normal(10).astype(F32)
    tm = torch.ao.quantization.fuse_modules(
        torch.nn.Sequential(torch_linear(W, b), torch.nn.ReLU()).eval(), ["0", "1"])
    r = np.random.default_rng(0)
    rm = fuse_modules(nn.Sequential(nn.Linear(12, 10, rng=r), nn.ReLU()), ["0", "1"])
    rm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    # default spec: torch leaves LinearReLU float, and so does refcomp
    assert type(torch_dynamic(tm)[0]).__name__ == "LinearReLU"
    assert isinstance(quantize_dynamic(rm).layers[0], LinearReLU)
    tq = torch_dynamic(tm, {torch.nn.Linear, torch.ao.nn.intrinsic.LinearReLU})
    rq = quantize_dynamic(rm, linear_relu=True)
    assert rq.layers[0].relu
    x = (rng.standard_normal((6, 12)) * 4).astype(F32)
    y, _ = rq.forward(x, "fp32", train=False)
    ref = run_torch(tq, x)
    assert (ref == 0).any() and mismatches(y, ref) == 0


def test_residual_and_bare_linear():
    r = np.random.default_rng(0)
    res = nn.Residual(nn.Sequential(nn.Linear(4, 4, rng=r), nn.ReLU()), nn.Linear(4, 4, rng=r))
    q = quantize_dynamic(res)
    assert isinstance(q.block.layers[0], DynamicQuantizedLinear)
    assert isinstance(q.shortcut, DynamicQuantizedLinear)
    assert isinstance(quantize_dynamic(nn.Linear(3, 2, rng=r)), DynamicQuantizedLinear)


# --------------------------------------------------------------------------- errors
def test_errors():
    W = np.ones((3, 4), F32)
    m = DynamicQuantizedLinear(W, np.zeros(3))
    with pytest.raises(ValueError, match="larger than or equal to 2"):
        m.forward(np.ones(4))
    with pytest.raises(RuntimeError, match="larger than or equal to 2"):
        run_torch(torch_qlinear(W, np.zeros(3)), np.ones(4))      # torch refuses too
    with pytest.raises(ValueError, match="input has 5 features, the weight expects 4"):
        m.forward(np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"x\[1, 2\] = nan is not finite"):
        m.forward(np.array([[0, 0, 0, 0], [0, 0, np.nan, 0]]))
    with pytest.raises(ValueError, match=r"x\[0, 0\] = inf"):
        m.forward(np.array([[np.inf, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r"weight\[0, 1\] = -inf"):
        DynamicQuantizedLinear(np.array([[0, -np.inf]]))
    with pytest.raises(ValueError, match=r"weight must be \(D_out, D_in\)"):
        DynamicQuantizedLinear(np.ones(3))
    with pytest.raises(ValueError, match=r"bias has shape \(2,\), expected \(3,\)"):
        DynamicQuantizedLinear(W, np.zeros(2))
    with pytest.raises(TypeError, match="must be numeric"):
        DynamicQuantizedLinear(np.array([["a"]]))
    with pytest.raises(ValueError, match=r"weight codes must be a 2-D integer array"):
        dynamic_linear_forward(np.ones((1, 2)), np.array([[200, 0]]), [1.0], [0])
    with pytest.raises(ValueError, match=r"w_scale \(2,\) and w_zero_point \(1,\)"):
        dynamic_linear_forward(np.ones((1, 2)), np.array([[1, 0]]), [1.0, 1.0], [0])
    with pytest.raises(TypeError, match="needs a refcomp.nn Linear or LinearReLU, got ReLU"):
        DynamicQuantizedLinear.from_float(nn.ReLU())
    with pytest.raises(TypeError, match="refcomp.nn Module, got list"):
        quantize_dynamic([1])
    with pytest.raises(NotImplementedError, match="no backward"):
        m.backward(np.ones((1, 3)), None)


@pytest.mark.parametrize("K", [64, 1100])
def test_packed_blas_gemm_equals_the_integer_model(K):
    """The module's prepacked path (exact integer GEMM through float32 / float64 BLAS for
    7-bit activations) gives the same integers and outputs as the integer accumulation
    model of refcomp.ops (u8s8-int32-avx2), below and above K * 127 * 128 = 2**24."""
    rng = np.random.default_rng(71 + K)
    w = (rng.standard_normal((24, K)) * 0.1).astype(np.float32)
    x = rng.standard_normal((5, K)).astype(np.float32) * 3
    mod = DynamicQuantizedLinear(w, rng.standard_normal(24).astype(np.float32))
    y1, c1 = mod.forward(x)
    y2, c2 = dynamic_linear_forward(x, mod.wq, mod.w_scale, mod.w_zero_point, mod.bias)
    assert np.array_equal(c1.raw, c2.raw)
    assert np.array_equal(np.asarray(y1).view(np.uint64), np.asarray(y2).view(np.uint64))
