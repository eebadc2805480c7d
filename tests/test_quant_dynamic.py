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


# --------------------------------------------------------------------------- fast paths
# The module's float32 element steps run in float64 with a midpoint check
# (refcomp.quant.dynamic._round_sum_f32); they are checked here against exact rational
# arithmetic and against the correctly rounded refcomp.ops operations they replace, on
# inputs built to hit float32 midpoints, ties, signed zeros, subnormals and overflow.
from fractions import Fraction  # noqa: E402

from refcomp import _jit  # noqa: E402
from refcomp.ops.arith import div, fma  # noqa: E402
from refcomp.quant import dynamic as dyn  # noqa: E402


def rn32(fr, negative_zero=False):
    """Round a Fraction to float32, nearest even, from exact comparisons (the oracle); an
    exact zero is -0 only for (-0) + (-0) (IEEE 754 6.3), which the caller says."""
    if fr == 0:
        return F32(-0.0) if negative_zero else F32(0)
    c = F32(float(fr))                     # within one float32 step of the answer
    best = None
    for v in (np.nextafter(c, F32(-np.inf)), c, np.nextafter(c, F32(np.inf))):
        if not np.isfinite(v):
            continue
        d = abs(Fraction(float(v)) - fr)
        key = (d, int(np.asarray(v).view(np.uint32)) & 1)      # ties: even significand
        if best is None or key < best[0]:
            best = (key, v)
    return best[1]


def bits32(v):
    return np.asarray(v, F32).view(np.uint32)


def midpoint_cases(rng, n=400):
    """(p, c) float64 pairs whose exact sums sit on, or next to, float32 midpoints."""
    y = (rng.standard_normal(n) * 2.0 ** rng.integers(-100, 100, n)).astype(F32)
    y[y == 0] = F32(1)
    half = np.spacing(np.abs(y)).astype(np.float64) / 2
    m = y.astype(np.float64) + half                    # exact float32 midpoints
    tiny = np.abs(m) * 2.0 ** -60 * rng.choice([-1.0, 0.0, 1.0], n)
    P = [m, m, m + tiny, m - 3 * half, m]              # p on the midpoint, c tiny / 0 / ...
    C = [tiny, np.zeros(n), -tiny, 3 * half, -tiny]
    # a sum that float64 rounds onto the midpoint while the exact sum is off it
    P.append(m + np.abs(m) * 2.0 ** -52 * 0.25)
    C.append(np.abs(m) * 2.0 ** -60 * rng.choice([-1.0, 1.0], n))
    return np.concatenate(P), np.concatenate(C)


def test_round_sum_f32_against_exact_rationals():
    rng = np.random.default_rng(101)
    p, c = midpoint_cases(rng)
    rp = rng.standard_normal(2000) * 2.0 ** rng.integers(-60, 60, 2000)
    rc = rng.standard_normal(2000) * 2.0 ** rng.integers(-60, 60, 2000)
    p, c = np.concatenate([p, rp, [0.0, -0.0, 0.0, 1.0]]), np.concatenate([c, rc, [0.0, -0.0,
                                                                                  -0.0, -1.0]])
    t = p + c
    assert ((t.view(np.uint64) & dyn._LOW29) == dyn._MID29).sum() > 1000   # midpoints hit
    r32, rest = dyn._round_sum_f32(t, c, lambda m: p[m])
    assert not rest.any()
    ref = np.array([rn32(Fraction(float(a)) + Fraction(float(b)),
                         bool(np.signbit(a) and np.signbit(b))) for a, b in zip(p, c)], F32)
    assert np.array_equal(bits32(r32), bits32(ref))
    # the plain double rounding would be wrong on many of these inputs
    assert (bits32(t.astype(F32)) != bits32(ref)).sum() > 300


def f32_ops_cases(rng):
    """float32 (a, b, c) built to make RN32(a * b + c) hard (module comment)."""
    A, B, Cc = [], [], []
    i = rng.integers(0, 400, 300) * 2 + 1              # (2**12 + i)(2**12 + j): 25-bit odd
    j = rng.integers(0, 400, 300) * 2 + 1
    sc = 2.0 ** rng.integers(-40, 40, 300)
    a = ((2 ** 12 + i) * sc).astype(F32)
    b = ((2 ** 12 + j) * rng.choice([-1.0, 1.0], 300)).astype(F32)
    ab = a.astype(np.float64) * b
    for cv in (np.zeros(300), np.abs(ab) * 2.0 ** -60, -np.abs(ab) * 2.0 ** -60,
               np.abs(ab) * 2.0 ** -30 * rng.standard_normal(300), -ab, -ab * (1 - 2.0 ** -20)):
        A.append(a), B.append(b), Cc.append(cv.astype(F32))
    # p + c landing on a midpoint y + u/2 exactly: c = y - k u, a b = (k + 1/2) u
    y = (rng.uniform(1, 2, 300) * 2.0 ** rng.integers(-60, 60, 300)).astype(F32)
    u = np.spacing(y).astype(np.float64)
    k = rng.integers(0, 50, 300)
    sh = 2.0 ** rng.integers(-5, 5, 300)
    A.append(sh.astype(F32)), B.append(((k + 0.5) * u / sh).astype(F32))
    Cc.append((y - k * u).astype(F32))
    # signed zeros, subnormals, the overflow threshold (2**25 - 1) 2**103, inf / nan
    z = np.array([0.0, -0.0, 0.0, -0.0, 1e-45, -1e-45, 3e-39, 2.0 ** -75, 1.0, 18631.0,
                  18631.0, 18631.0, 3e38, np.inf, np.nan, 1.5], F32)
    w = np.array([0.0, 2.0, -3.0, -0.0, 0.5, 0.75, 0.5, 2.0 ** -75, -1e-45, 1801 * 2.0 ** 103,
                  1801 * 2.0 ** 103, 1801 * 2.0 ** 103, 10.0, 0.0, 1.0, 2.0], F32)
    v = np.array([-0.0, -0.0, 0.0, 0.0, 1e-45, -3e-45, -3e-39, 2.0 ** -149, 0.0, 0.0,
                  1e30, -1e30, -1.0, 1.0, 0.0, np.inf], F32)
    A.append(z), B.append(w), Cc.append(v)
    return (np.concatenate(A).astype(np.float64), np.concatenate(B).astype(np.float64),
            np.concatenate(Cc).astype(np.float64))


def same_f32(x, y):
    x, y = np.asarray(x, F32), np.asarray(y, F32)
    return np.array_equal(bits32(x), bits32(y)) or bool(
        np.all((bits32(x) == bits32(y)) | (np.isnan(x) & np.isnan(y))))


def test_fma_f32_fast_path_equals_refcomp_ops():
    rng = np.random.default_rng(202)
    a, b, c = f32_ops_cases(rng)
    with np.errstate(all="ignore"):
        got = dyn._fma_f32(a, b, c)
        ref = fma(a, b, c, "float32")
        assert same_f32(got, ref)
        t = a * b + c
        assert (bits32(t.astype(F32)) != bits32(ref)).sum() > 100    # double rounding fails
        assert same_f32(dyn._fma_f32(a, b, None), mul(a, b, "float32"))
        # broadcasting as the module uses it: (M, 1) x (1, N) + (1, N)
        rf = rng.integers(-2 ** 26, 2 ** 26, (40, 1)).astype(F32).astype(np.float64)
        mult = rng.uniform(1e-6, 1e-3, (1, 30)).astype(F32).astype(np.float64)
        bias = rng.standard_normal((1, 30)).astype(F32).astype(np.float64)
        assert same_f32(dyn._fma_f32(rf, mult, bias), fma(rf, mult, bias, "float32"))
        assert same_f32(dyn._fma_f32(rf, mult, None), mul(rf, mult, "float32"))


def test_recip_f32_equals_refcomp_div():
    rng = np.random.default_rng(303)
    s = np.concatenate([rng.uniform(1, 2, 3000) * 2.0 ** rng.integers(-120, 120, 3000),
                        2.0 ** np.arange(-126, 127), [3.0, 5.0, 7.0, 2.0 ** -127, 1e-40,
                                                       np.finfo(F32).max]]).astype(F32)
    got = np.array([dyn._recip_f32(v) for v in s]).astype(F32)
    assert same_f32(got, div(1.0, s.astype(np.float64), "float32"))


def test_quantize_fused_equals_quantize_affine():
    """Step 2's fast path against ops.quantize_affine ("torch-2.13-quantize_per_tensor")
    on exact ties k + 1/2, float32 midpoints of x * inv + z, their neighbours, zeros,
    subnormals and out-of-range values."""
    rng = np.random.default_rng(404)
    conv = "torch-2.13-quantize_per_tensor"
    for s in (F32(1 / 16), F32(0.0123), F32(2.0 ** -20), F32(0.3), F32(7.5), F32(1e-30)):
        for z in (0, 1, 33, 127):
            inv = float(div(1.0, float(s), "float32"))
            k = np.arange(-3, 260) + 0.5
            base = [(k - z) / inv, (rng.uniform(-3, 260, 300) - z) / inv]
            # midpoints of the float32 grid of x * inv + z, just above the integers
            t = np.arange(1, 256, dtype=np.float64)
            mids = t + np.spacing(t.astype(F32)).astype(np.float64) / 2
            base.append((mids - z) / inv)
            x = np.concatenate(base).astype(F32)
            x = np.concatenate([x, np.nextafter(x, F32(np.inf)), np.nextafter(x, F32(-np.inf)),
                                np.array([0.0, -0.0, 1e-45, -1e-45, 1e-38, 3e38, -3e38],
                                         F32)])
            with np.errstate(all="ignore"):
                q, xq = dyn._quantize_fused(x, s, z)
            ref = quantize_affine(x.astype(np.float64), float(s), z, 0, 255, conv)
            assert np.array_equal(xq, ref), (s, z)
            assert np.array_equal(q.astype(np.int64), ref)


@pytest.mark.parametrize("M, K", [(1, 64), (3, 1100), (1, 4099), (6, 2100), (2, 0)])
def test_gemm_kernel_and_blocked_blas_equal_the_integer_model(M, K):
    """Both GEMM paths (the int8 kernel for small batches, float32 BLAS over K blocks of at
    most 1032) against the integer accumulation model of refcomp.ops, beyond 2**24."""
    rng = np.random.default_rng(500 + M + K)
    wq = rng.integers(-128, 128, (37, K))
    wq[:, : K // 2] = -128                             # large same-sign partial sums
    xq = rng.integers(0, 128, (M, K))
    xq[:, : K // 2] = 127
    ref = matmul_int(xq, wq)
    packed = dyn.pack_weight(wq)
    assert np.array_equal(dyn._gemm_u7s8(xq.astype(F32), packed), ref)
    assert np.array_equal(dyn._gemm_u7s8(xq.astype(F32), packed, blas=True), ref)
    with _jit.use_jit(False):
        assert np.array_equal(dyn._gemm_u7s8(xq.astype(F32), packed), ref)
    if K * M:
        assert np.abs(ref).max() > (2 ** 24 if K > 1100 else 0)


def matmul_int(xq, wq):
    from refcomp.ops.accum import matmul
    return matmul(xq, wq.T, "u8s8-int32-avx2")


def test_input_fast_path_equals_rounding_core():
    """float64 inputs that are not float32 values, lists and integers take the rounding core;
    float32 data the fast path: the outputs agree with the input rounded first."""
    rng = np.random.default_rng(606)
    W = rng.standard_normal((9, 7)).astype(F32)
    b = rng.standard_normal(9)                        # float64, not float32 values
    m = DynamicQuantizedLinear(W, b)
    x = rng.standard_normal((4, 7)) * 3
    y1, c1 = m.forward(x)
    y2, c2 = m.forward(x.astype(F32))
    assert np.array_equal(y1.view(np.uint64), y2.view(np.uint64))
    assert np.array_equal(c1.xq, c2.xq) and np.array_equal(c1.raw, c2.raw)
    y3, _ = m.forward(x.astype(F32).tolist())
    assert np.array_equal(y1.view(np.uint64), y3.view(np.uint64))
    y4, _ = m.forward(np.arange(28).reshape(4, 7))
    y5, _ = m.forward(np.arange(28, dtype=F32).reshape(4, 7))
    assert np.array_equal(y4.view(np.uint64), y5.view(np.uint64))
    assert mismatches(y1, run_torch(torch_qlinear(W, b.astype(F32)), x.astype(F32))) == 0
    with pytest.raises(ValueError, match=r"x\[0, 1\] = nan"):
        m.forward(np.array([[0, np.nan, 0, 0, 0, 0, 0]], F32))
