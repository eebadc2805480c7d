"""refcomp.quant.torchao / torchao_float8 against real torchao 0.18.0 and torch 2.13.0+cpu.

Everything is compared in bits (float32 bit patterns of the outputs, which hold bfloat16 /
float16 values exactly).  The int4 kernel and the fp8 GEMM order were measured on x86-64 AVX2
(the CPU these expectations are tied to); the int4 test is skipped on other ISAs.
"""

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from quant_torch import one_thread  # noqa: E402
torchao = pytest.importorskip("torchao")

from refcomp.quant import torchao as rta  # noqa: E402
from refcomp.quant import torchao_float8 as rf8  # noqa: E402

F32 = np.float32
DT = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


_one_thread = pytest.fixture(autouse=True)(one_thread)


def bits(a):
    """float32 bit patterns (torch tensor or float64 array of narrower values)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().float().numpy()
    return np.asarray(a, F32).view(np.uint32)


def assert_bits(got, want, what=""):
    g, w = bits(got), bits(want)
    assert g.shape == w.shape, (what, g.shape, w.shape)
    bad = np.flatnonzero(g.ravel() != w.ravel())
    first = bad[0] if bad.size else 0
    assert bad.size == 0, f"{what}: {bad.size}/{g.size} differ, first at {first}: " \
        f"{np.asarray(got).ravel()[first]} vs {np.asarray(want).ravel()[first]}"


def make_linear(dt, N, K, seed, wscale=1.0, bias=True, zero_rows=()):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(K, N, bias=bias).to(dt)
    with torch.no_grad():
        w = (torch.randn(N, K, generator=g) * wscale).to(dt)
        for r in zero_rows:
            w[r] = 0
        lin.weight.copy_(w)
        if bias:
            lin.bias.copy_(torch.randn(N, generator=g).to(dt))
    w0 = lin.weight.detach().float().numpy().copy()
    b0 = lin.bias.detach().float().numpy().copy() if bias else None
    return lin, w0, b0, g


def quantize_(module, config):
    from torchao.quantization import quantize_ as q
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        q(module, config)


# ------------------------------------------------------------------------------ int8
INT8_CASES = [  # (N, K, x batch shape, seed)
    (24, 64, (8,), 0), (24, 64, (2, 5), 1), (16, 2048, (4,), 2), (40, 96, (3, 1, 7), 3),
    (8, 3, (6,), 4), (33, 130, (1,), 5)]


@pytest.mark.parametrize("fmt", ["float32", "bfloat16"])
@pytest.mark.parametrize("mapping", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("gran", ["per_row", "per_tensor"])
@pytest.mark.parametrize("case", INT8_CASES, ids=lambda c: f"{c[0]}x{c[1]}-{c[2]}")
def test_int8_dynamic_linear(fmt, mapping, gran, case):
    from torchao.quantization import (Int8DynamicActivationInt8WeightConfig, MappingType,
                                      PerRow, PerTensor)
    N, K, xb, seed = case
    dt = DT[fmt]
    lin, w0, b0, g = make_linear(dt, N, K, seed, zero_rows=(1,) if N > 2 else ())
    x = (torch.randn(*xb, K, generator=g) * 3).to(dt)
    if x.shape[0] > 1:
        x[0] = 0                                # an all-zero token (scale = 2**-23)
        x[-1] = x[-1].abs()                     # an all-positive token (asymmetric zp -128)
    if K >= 2048:                               # |acc| beyond 2**24: int32 -> f32 rounds
        sign = torch.randn(K, generator=g).sign()
        with torch.no_grad():
            lin.weight[2] = (sign * (5 + torch.rand(K, generator=g) / 2)).to(dt)
        x[1] = (sign * (20 + torch.rand(K, generator=g))).to(dt)
        w0 = lin.weight.detach().float().numpy().copy()
    granularity = PerRow() if gran == "per_row" else PerTensor()
    cfg = Int8DynamicActivationInt8WeightConfig(
        act_mapping_type=MappingType[mapping.upper()], granularity=granularity)
    quantize_(lin, cfg)
    with torch.no_grad():
        y = lin(x)
    W = lin.weight
    wq = rta.int8_quantize(w0, fmt, "symmetric", gran)
    np.testing.assert_array_equal(wq.qdata, W.qdata.numpy())
    assert_bits(wq.scale, W.scale.numpy(), "weight scale")
    np.testing.assert_array_equal(wq.zero_point, W.zero_point.numpy())
    yr, cache = rta.int8_dynamic_linear(x.float().numpy(), wq, b0, fmt, mapping, gran)
    assert y.dtype == dt and yr.shape == tuple(y.shape)
    assert_bits(yr, y, "output")
    if K >= 2048:
        assert np.abs(cache.acc).max() > 2 ** 24


def test_int8_activation_primitives_vs_from_hp():
    from torchao.quantization import MappingType, PerRow
    from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor
    g = torch.Generator().manual_seed(7)
    for dt, fmt in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16")):
        x = (torch.randn(3, 5, 48, generator=g) * 2 + 0.5).to(dt)
        x[1, 2] = 0
        for mapping in ("symmetric", "asymmetric"):
            for rr in (False, True):
                t = Int8Tensor.from_hp(x, PerRow(), mapping_type=MappingType[mapping.upper()],
                                       reduce_range=rr)
                r = rta.int8_quantize(x.float().numpy(), fmt, mapping, "per_row", rr)
                np.testing.assert_array_equal(r.qdata, t.qdata.numpy())
                assert_bits(r.scale, t.scale.numpy(), "scale")
                np.testing.assert_array_equal(r.zero_point, t.zero_point.numpy())


def test_int8_errors():
    wq = rta.int8_quantize(np.ones((4, 8)), "float32")
    with pytest.raises(ValueError, match="float16"):
        rta.int8_quantize(np.ones((4, 8)), "float16")
    with pytest.raises(ValueError, match="'sym'"):
        rta.int8_quantize(np.ones((4, 8)), "float32", mapping="sym")
    with pytest.raises(ValueError, match=r"\(\.\.\., 8\)"):
        rta.int8_dynamic_linear(np.ones((2, 7)), wq, None, "float32")
    with pytest.raises(ValueError, match=r"x\[0, 1\] = nan"):
        rta.int8_dynamic_linear([[1.0, np.nan] + [0.0] * 6], wq, None, "float32")
    with pytest.raises(TypeError, match="Int8Quantized"):
        rta.int8_dynamic_linear(np.ones((2, 8)), np.ones((4, 8)), None, "float32")


# ------------------------------------------------------------------------------ int4
def _int4_cpu_ok():
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


def _tinygemm_torch(w, gs, dt):
    from torchao.quantization.quant_primitives import (MappingType,
                                                       _choose_qparams_affine_tinygemm,
                                                       _dequantize_affine_tinygemm,
                                                       _quantize_affine_tinygemm)
    s, z = _choose_qparams_affine_tinygemm(w, MappingType.ASYMMETRIC, [1, gs], torch.int32, 0,
                                           15, 1e-6, None, dt)
    q = _quantize_affine_tinygemm(w, [1, gs], s, z, torch.int32, 0, 15)
    d = _dequantize_affine_tinygemm(q, [1, gs], s, z, torch.int32, 0, 15, output_dtype=dt)
    d32 = _dequantize_affine_tinygemm(q, [1, gs], s, z, torch.int32, 0, 15,
                                      output_dtype=torch.float32)
    return s, z, q, d, d32


@pytest.mark.parametrize("fmt", ["bfloat16", "float32", "float16"])
@pytest.mark.parametrize("gs", [32, 64, 128])
def test_tinygemm_primitives(fmt, gs):
    dt = DT[fmt]
    g = torch.Generator().manual_seed(gs)
    w = (torch.randn(32, 256, generator=g) * 0.7 + 0.2).to(dt)
    w[0, :gs] = 0.3                             # constant group: scale = eps
    w[1, gs:2 * gs] = 0                         # all-zero group
    w[2, :gs] = w[2, :gs].abs() + 1             # zero outside the range
    s, z, q, d, d32 = _tinygemm_torch(w, gs, dt)
    wn = w.float().numpy()
    rs, rz = rta.tinygemm_choose_qparams(wn, gs, fmt)
    assert_bits(rs, s, "scale")
    assert_bits(rz, z, "zero")
    rq = rta.tinygemm_quantize(wn, rs, rz, gs, fmt)
    assert rq.dtype == np.int32
    np.testing.assert_array_equal(rq, q.numpy())
    assert_bits(rta.tinygemm_dequantize(rq, rs, rz, gs, fmt), d, "dequant")
    assert_bits(rta.tinygemm_dequantize(rq, rs, rz, gs, fmt, "float32"), d32, "dequant f32")


def _unpack_avx2(packed, N, K):
    """Codes of ``_convert_weight_to_int4pack_for_cpu`` on AVX2 (ATen int4mm_kernel.cpp):
    blocks of 32 rows with byte[k*16+d] = q[n0+d+16, k] << 4 | q[n0+d, k]; a trailing block
    of 16 rows with byte[k*8+n/2] = q[n+1, k] << 4 | q[n, k]."""
    flat = packed.reshape(-1).astype(np.int32)
    out = np.zeros((N, K), np.int32)
    for n0 in range(0, N, 32):
        nb = min(32, N - n0)
        blk = flat[n0 * K // 2:(n0 + nb) * K // 2]
        if nb == 32:
            blk = blk.reshape(K, 16)
            out[n0:n0 + 16], out[n0 + 16:n0 + 32] = (blk & 15).T, (blk >> 4).T
        else:
            blk = blk.reshape(K, nb // 2)
            out[n0:n0 + nb:2], out[n0 + 1:n0 + nb:2] = (blk & 15).T, (blk >> 4).T
    return out


INT4_CASES = [  # (N, K, group size, x batch shape, bias, seed)
    (48, 256, 64, (5,), True, 0), (32, 128, 32, (2, 3), False, 1), (16, 384, 128, (4,), True, 2),
    (64, 96, 32, (1,), True, 3)]


@pytest.mark.skipif("not _int4_cpu_ok()", reason="expectations tied to the AVX2 int4 kernel")
@pytest.mark.parametrize("fmt", ["bfloat16", "float32", "float16"])
@pytest.mark.parametrize("case", INT4_CASES, ids=lambda c: f"{c[0]}x{c[1]}g{c[2]}-{c[3]}")
def test_int4_weight_only_linear(fmt, case):
    from torchao.prototype.quantization.int4.inference_workflow import \
        PrototypeInt4WeightOnlyConfig
    N, K, gs, xb, bias, seed = case
    dt = DT[fmt]
    lin, w0, b0, g = make_linear(dt, N, K, seed, bias=bias)
    x = torch.randn(*xb, K, generator=g).to(dt)
    quantize_(lin, PrototypeInt4WeightOnlyConfig(group_size=gs))
    with torch.no_grad():
        y = lin(x)
    W = lin.weight
    wq = rta.int4_quantize_weight(w0, gs, fmt)
    np.testing.assert_array_equal(wq.qdata, _unpack_avx2(W.qdata.numpy(), N, K))
    sz = W.scale_and_zero                       # (K / gs, N, 2)
    assert_bits(wq.scale, sz[..., 0].T, "scale")
    assert_bits(wq.zero, sz[..., 1].T, "zero")
    yr = rta.int4_weight_only_linear(x.float().numpy(), wq, b0)
    assert y.dtype == dt
    assert_bits(yr, y, "output")


@pytest.mark.skipif("not _int4_cpu_ok()", reason="expectations tied to the AVX2 int4 kernel")
@pytest.mark.parametrize("fmt", ["bfloat16", "float32"])
def test_int4_accumulation_order(fmt):
    """Cancelling large terms: the sequential FMA order is visible (an exact dot differs)."""
    from torchao.prototype.quantization.int4.inference_workflow import \
        PrototypeInt4WeightOnlyConfig
    dt = DT[fmt]
    lin, w0, _, g = make_linear(dt, 32, 64, 3, bias=False)
    with torch.no_grad():
        lin.weight[:, 31] = lin.weight[:, 0]
        lin.weight[:, 40] = lin.weight[:, 5]
    w0 = lin.weight.detach().float().numpy().copy()
    x = torch.randn(4, 64, generator=g).to(dt)
    big = 1.75 * 2.0 ** 20
    x[:, 0], x[:, 31], x[:, 5], x[:, 40] = big, -big, 1.25 * big, -1.25 * big
    quantize_(lin, PrototypeInt4WeightOnlyConfig(group_size=32))
    with torch.no_grad():
        y = lin(x)
    wq = rta.int4_quantize_weight(w0, 32, fmt)
    assert_bits(rta.int4_weight_only_linear(x.float().numpy(), wq), y, "output")


def test_int4_errors():
    w = np.ones((16, 64))
    with pytest.raises(ValueError, match="group_size must be one of"):
        rta.int4_quantize_weight(w, 16, "bfloat16")
    with pytest.raises(ValueError, match="N = 8"):
        rta.int4_quantize_weight(np.ones((8, 64)), 32, "bfloat16")
    with pytest.raises(ValueError, match="not a multiple of group_size 48"):
        rta.tinygemm_choose_qparams(w, 48, "bfloat16")
    wq = rta.int4_quantize_weight(w, 32, "float32")
    with pytest.raises(ValueError, match=r"\(\.\.\., 64\)"):
        rta.int4_weight_only_linear(np.ones((2, 32)), wq)
    with pytest.raises(TypeError, match="integers"):
        rta.tinygemm_dequantize(np.ones((16, 64)), wq.scale, wq.zero, 32, "float32")


# ------------------------------------------------------------------------------ float8

def fp8_codes(q):
    """uint8 bit patterns of float8_e4m3fn codes (torch tensor or refcomp float64 values)."""
    if isinstance(q, torch.Tensor):
        return q.view(torch.uint8).numpy()
    return torch.from_numpy(np.asarray(q, F32)).to(torch.float8_e4m3fn).view(torch.uint8).numpy()


def _gran(g):
    from torchao.quantization import PerRow, PerTensor
    return PerRow() if g == "per_row" else PerTensor()


@pytest.mark.parametrize("fmt", ["float32", "bfloat16"])
@pytest.mark.parametrize("gran", ["per_tensor", "per_row"])
def test_float8_inference_primitives(fmt, gran):
    from torchao.quantization.quant_primitives import (_choose_scale_float8,
                                                       _dequantize_affine_float8,
                                                       _quantize_affine_float8)
    g = torch.Generator().manual_seed(11)
    for seed in range(3):
        x = (torch.randn(6, 40, generator=g) * 10 ** (seed - 1)).to(DT[fmt])
        x[2, 3] = 300.0
        bs = [1, 40] if gran == "per_row" else [6, 40]
        s = _choose_scale_float8(x, bs, torch.float8_e4m3fn)
        q = _quantize_affine_float8(x, s, torch.float8_e4m3fn)
        rs = rf8.float8_choose_scale(x.float().numpy(), fmt, gran)
        assert rs.dtype == np.float32
        assert_bits(rs, s.reshape(rs.shape), "scale")
        rq = rf8.float8_quantize(x.float().numpy(), rs, fmt)
        np.testing.assert_array_equal(fp8_codes(rq), fp8_codes(q))
        d = _dequantize_affine_float8(q, s, DT[fmt])
        assert_bits(rf8.float8_dequantize(rq, rs, fmt), d, "dequant")


def test_float8_inference_zero_row_gives_nan():
    from torchao.quantization.quant_primitives import _choose_scale_float8, _quantize_affine_float8
    x = torch.zeros(2, 8)
    x[1] = torch.arange(8.0)
    s = _choose_scale_float8(x, [1, 8], torch.float8_e4m3fn)
    q = _quantize_affine_float8(x, s, torch.float8_e4m3fn)
    rs = rf8.float8_choose_scale(x.numpy(), "float32", "per_row")
    rq = rf8.float8_quantize(x.numpy(), rs, "float32")
    assert rs[0, 0] == 0 and np.isnan(rq[0]).all() and not np.isnan(rq[1]).any()
    np.testing.assert_array_equal(fp8_codes(rq), fp8_codes(q))     # NaN code 0x7f / 0xff
    # lb avoids it (hp_value_lb)
    s2 = _choose_scale_float8(x, [1, 8], torch.float8_e4m3fn, hp_value_lb=1e-3)
    assert_bits(rf8.float8_choose_scale(x.numpy(), "float32", "per_row", lb=1e-3),
                s2.reshape(2, 1), "scale with lb")


FP8_INF_CASES = [((16,), 64, 32, 0), ((2, 8), 64, 32, 1), ((4,), 96, 16, 2), ((16,), 32, 32, 3)]


@pytest.mark.parametrize("fmt", ["float32", "bfloat16"])
@pytest.mark.parametrize("gran", ["per_tensor", "per_row"])
@pytest.mark.parametrize("case", FP8_INF_CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}")
def test_float8_inference_linear_small_k(fmt, gran, case):
    """Float8Tensor built directly (quantize_ asserts CUDA / XPU), torch kernel, CPU
    _scaled_mm: bit-exact with a sequential-FMA float32 GEMM at these K <= 96."""
    from torchao.float8.inference import Float8MMConfig
    from torchao.quantization.quantize_.workflows.float8.float8_tensor import (
        Float8Tensor, QuantizeTensorToFloat8Kwargs)
    xb, K, N, seed = case
    dt = DT[fmt]
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g).to(dt)
    b = torch.randn(N, generator=g).to(dt)
    x = (torch.randn(*xb, K, generator=g) * 5).to(dt)
    kw = QuantizeTensorToFloat8Kwargs(torch.float8_e4m3fn, _gran(gran))
    wq = Float8Tensor.from_hp(w, torch.float8_e4m3fn, _gran(gran), Float8MMConfig(True),
                              act_quant_kwargs=kw)
    y = torch.nn.functional.linear(x, wq, b)
    wn = w.float().numpy()
    sw = rf8.float8_choose_scale(wn, fmt, gran)
    rq = rf8.Float8Quantized(rf8.float8_quantize(wn, sw, fmt), sw)
    assert_bits(sw.reshape(-1), wq.scale.numpy().reshape(-1), "weight scale")
    np.testing.assert_array_equal(fp8_codes(rq.qdata), fp8_codes(wq.qdata))
    yr = rf8.float8_inference_linear(x.float().numpy(), rq, b.float().numpy(), fmt, gran)
    assert y.dtype == dt
    assert_bits(yr, y, "output")


@pytest.mark.parametrize("fmt", ["float32", "bfloat16"])
def test_float8_inference_linear_large_k_bounded(fmt):
    """K = 1024: MKL's order is not sequential; |torch - exact| <= the any-order bound of
    refcomp.bounds.deterministic (model fp32-blas), plus half an ulp of the output format
    (u_out * (|exact| + E)) for the final rounding to bfloat16."""
    from refcomp import bounds
    from torchao.float8.inference import Float8MMConfig
    from torchao.quantization.quantize_.workflows.float8.float8_tensor import (
        Float8Tensor, QuantizeTensorToFloat8Kwargs)
    dt = DT[fmt]
    M, K, N = 8, 1024, 64
    g = torch.Generator().manual_seed(5)
    w = torch.randn(N, K, generator=g).to(dt)
    x = (torch.randn(M, K, generator=g) * 5).to(dt)
    kw = QuantizeTensorToFloat8Kwargs(torch.float8_e4m3fn, _gran("per_row"))
    wq = Float8Tensor.from_hp(w, torch.float8_e4m3fn, _gran("per_row"), Float8MMConfig(True),
                              act_quant_kwargs=kw)
    y = torch.nn.functional.linear(x, wq).float().numpy().astype(np.float64)
    xn, wn = x.float().numpy(), w.float().numpy()
    sx = rf8.float8_choose_scale(xn, fmt, "per_row")
    sw = rf8.float8_choose_scale(wn, fmt, "per_row")
    qx, qw = rf8.float8_quantize(xn, sx, fmt), rf8.float8_quantize(wn, sw, fmt)
    import refcomp as rc
    A = rc.ops.mul(qx, sx.astype(np.float64), "float32")
    B = rc.ops.mul(qw, sw.astype(np.float64), "float32").T
    exact = A @ B                       # float64: near-exact reference (error << the bound)
    E = bounds.deterministic(A, B, "fp32-blas")             # (M, N)
    u = 2.0 ** -24 if fmt == "float32" else 2.0 ** -8
    tol = E + u * (np.abs(exact) + E) if fmt == "bfloat16" else E
    assert np.all(np.abs(y - exact) <= tol)
    yb = rf8.float8_inference_linear(xn, rf8.Float8Quantized(qw, sw), None, fmt, "per_row",
                                     model="fp32-blas")
    assert np.all(np.abs(yb - exact) <= tol)


@pytest.mark.parametrize("fmt", ["float32", "bfloat16"])
@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
@pytest.mark.parametrize("xb", [(16,), (2, 6)], ids=str)
def test_float8_training_linear_small_k(fmt, recipe, xb):
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    dt = DT[fmt]
    K, N = 64, 32
    for seed in range(2):
        lin, w0, b0, g = make_linear(dt, N, K, seed, wscale=0.1)
        x = (torch.randn(*xb, K, generator=g) * 2).to(dt)
        m = convert_to_float8_training(torch.nn.Sequential(copy.deepcopy(lin)),
                                       config=Float8LinearConfig.from_recipe_name(recipe))
        with torch.no_grad():
            y = m(x)
        yr = rf8.float8_training_linear(x.float().numpy(), w0, b0, fmt, recipe)
        assert y.dtype == dt
        assert_bits(yr, y, f"output seed {seed}")


def test_float8_training_scales_and_codes():
    from torchao.float8.float8_utils import amax_to_scale, to_fp8_saturated
    g = torch.Generator().manual_seed(9)
    amax = torch.cat([torch.rand(2000, generator=g) * 10 ** torch.randint(-6, 6, (2000,),
                                                                           generator=g),
                      torch.tensor([0.0, 1e-13, 448.0, 3.5, 1.0])])
    # scales just below / at powers of two: the float32 log2 rounding decides the floor
    p = torch.tensor([2.0 ** k for k in range(-20, 21)], dtype=torch.float64)
    amax = torch.cat([amax, (448.0 / p).float(), (448.0 / (p * (1 - 2.0 ** -24))).float()])
    for pow2 in (False, True):
        s = amax_to_scale(amax, torch.float8_e4m3fn, round_scales_to_power_of_2=pow2)
        assert_bits(rf8.amax_to_scale(amax.numpy(), pow2), s, f"scale pow2={pow2}")
    x = torch.randn(64, 48, generator=g) * 30
    s = amax_to_scale(x.abs().amax(dim=1, keepdim=True) / 4, torch.float8_e4m3fn)
    q = to_fp8_saturated(x * s, torch.float8_e4m3fn)             # saturates: amax / 4
    rq = rf8.float8_quantize(x.numpy(), s.numpy(), "float32", "training")
    np.testing.assert_array_equal(fp8_codes(rq), fp8_codes(q))


def test_float8_errors():
    with pytest.raises(ValueError, match="'per_col'"):
        rf8.float8_choose_scale(np.ones((2, 4)), "float32", "per_col")
    with pytest.raises(ValueError, match="does not broadcast"):
        rf8.float8_quantize(np.ones((2, 4)), np.ones((3, 1), np.float32), "float32")
    with pytest.raises(ValueError, match=r"need qa \(M, K\)"):
        rf8.scaled_mm_cpu(np.ones((2, 4)), np.ones((3, 2)), 1.0, 1.0)
    with pytest.raises(ValueError, match="'adamw'"):
        rf8.float8_training_linear(np.ones((2, 4)), np.ones((2, 4)), None, "float32", "adamw")
