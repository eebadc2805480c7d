"""Block formats bit for bit against the real backend: torchao 0.18 on CPU.

``to_mx`` for every element type (FP8 E4M3/E5M2, FP6 E2M3/E3M2, FP4 E2M1) and every scale
rule (FLOOR, CEIL, EVEN, RCEIL), ``nvfp4_quantize`` with and without the per-tensor
scale, and the float32 ``log2`` behaviour the RCEIL model relies on.  Scales and elements
are compared as bits; torchao's packed FP4 bytes are unpacked here (element 2i in the low
nibble, 2i+1 in the high one: ``kernels.py`` ``pack_uint4``), FP6 comes one per byte.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from refcomp._jit import use_jit
from refcomp.formats.block import BlockFormat
from refcomp.ops.block import _ceil_log2f, dequantize_block, quantize_block

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.kernels import unpack_uint4
    from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx
    from torchao.prototype.mx_formats.nvfp4_tensor import (nvfp4_quantize,
                                                           per_tensor_amax_to_scale)

torch.set_num_threads(1)

ELEMS = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2,
         "float6_e2m3fn": "fp6_e2m3", "float6_e3m2fn": "fp6_e3m2",
         "float4_e2m1fn": torch.float4_e2m1fn_x2}
RULES = ["floor", "ceil", "even", "rceil"]
MAXES = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0, "float6_e2m3fn": 7.5,
         "float6_e3m2fn": 28.0, "float4_e2m1fn": 6.0}


def unpack_fp4(packed: np.ndarray) -> np.ndarray:
    """Independent unpacking of torchao's fp4x2 bytes: low nibble first."""
    p = packed.view(np.uint8)
    out = np.empty(p.shape[:-1] + (2 * p.shape[-1],), dtype=np.uint8)
    out[..., 0::2] = p & 0xF
    out[..., 1::2] = p >> 4
    return out


def torchao_mx(x: np.ndarray, name: str, rule: str, bs: int = 32):
    s, d = to_mx(torch.from_numpy(np.ascontiguousarray(x)), ELEMS[name], bs,
                 ScaleCalculationMode(rule))
    s = s.view(torch.uint8).numpy()
    if name == "float4_e2m1fn":
        e = unpack_fp4(d.numpy())
        np.testing.assert_array_equal(e, unpack_uint4(d).numpy())      # same order
    else:
        e = d.view(torch.uint8).numpy()
    return s, e


def mx_data(name: str, seed: int = 0, n: int = 64) -> np.ndarray:
    """float32 rows: magnitudes, zeros, subnormals, values near max, amax at and just
    below powers of two, RCEIL descales just above powers of two, NaN and inf blocks."""
    with np.errstate(over="ignore", invalid="ignore"):          # float32 overflow -> inf
        return _mx_data(name, seed, n)


def _mx_data(name, seed, n):
    rng = np.random.default_rng(seed)
    mx = np.float32(MAXES[name])
    rows = [rng.standard_normal(n) * s for s in (1.0, 1e-3, 1e3, 1e-30, 1e30, 2.0 ** -130)]
    rows += [np.zeros(n), np.where(rng.random(n) < 0.5, 0.0, rng.standard_normal(n))]
    for e in (-127, -126, -125, -119, -100, -1, 0, 1, 9, 60, 120, 126, 127):
        p = np.float32(2.0 ** e)
        for v in (p, np.nextafter(p, np.float32(0)), p * np.float32(1.875),
                  mx * np.float32(2.0 ** (e - 8)), np.float32(3.4028235e38)):
            r = rng.standard_normal(n) * float(p) / 3
            r[3], r[40] = v, -v
            rows.append(r)
    for k in (-120, -20, -3, 1, 2, 5, 17, 60, 100):                 # RCEIL near 2**k
        for j in (1, 2, 3, 5, 11, 12, 22, 23, 44, 45):
            r = rng.standard_normal(n) * 2.0 ** k
            r[7] = float(mx) * 2.0 ** k * (1 + j * 2.0 ** -23)
            rows.append(r)
    x = np.array(rows, dtype=np.float32)
    x[np.isinf(x)] = np.float32(3.4028235e38)
    specials = np.ones((6, n), dtype=np.float32)
    specials[0, 3] = np.nan
    specials[1, 3], specials[1, 40] = -np.nan, np.inf
    specials[2, 33] = np.inf
    specials[3, 33], specials[3, 5] = -np.inf, np.nan
    specials[4, :32] = -np.inf
    specials[5, ::3] = np.nan
    return np.vstack([x, specials])


@pytest.mark.parametrize("name", list(ELEMS))
@pytest.mark.parametrize("rule", RULES)
def test_to_mx_bit_exact(name, rule):
    x = mx_data(name, seed=len(name) + len(rule))
    s, e = torchao_mx(x, name, rule)
    for jit in (True, False):
        with use_jit(jit):
            q = quantize_block(x, BlockFormat(name, 32, scale_rule=rule),
                               convention="torchao-0.18")
        np.testing.assert_array_equal(q.scales, s)
        np.testing.assert_array_equal(q.elements, e)


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float4_e2m1fn", "float6_e3m2fn"])
def test_to_mx_block_sizes_axes_and_ranks(name):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 5, 48)) * 50).astype(np.float32)
    for bs in (16, 8):
        s, e = torchao_mx(x, name, "floor", bs)
        q = quantize_block(x, BlockFormat(name, bs), convention="torchao-0.18")
        np.testing.assert_array_equal(q.scales, s)
        np.testing.assert_array_equal(q.elements, e)
    # blocks along axis 0: torchao quantizes the moved, contiguous copy
    y = (rng.standard_normal((64, 6)) * 3).astype(np.float32)
    s, e = torchao_mx(np.moveaxis(y, 0, -1), name, "rceil")
    q = quantize_block(y, BlockFormat(name, 32, scale_rule="rceil"), axis=0,
                       convention="torchao-0.18")
    np.testing.assert_array_equal(np.moveaxis(q.scales, 0, -1), s)
    np.testing.assert_array_equal(np.moveaxis(q.elements, 0, -1), e)


@pytest.mark.parametrize("name", list(ELEMS))
def test_default_convention_equals_torchao_on_ordinary_data(name):
    """Away from torchao's quirks (tiny blocks, NaN/inf, RCEIL near powers of two) the
    spec's rules and torchao agree."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((64, 128)) * np.logspace(-8, 8, 64)[:, None]).astype(np.float32)
    for rule in RULES:
        s, e = torchao_mx(x, name, rule)
        q = quantize_block(x, BlockFormat(name, 32, scale_rule=rule))
        np.testing.assert_array_equal(q.scales, s)
        np.testing.assert_array_equal(q.elements, e)


def test_torchao_quirks_versus_spec():
    """The differences, shown on the real backend: a scale-code-0 block divides by
    2**-126 (so torchao's own dequantization halves it); an infinity gets a finite scale;
    RCEIL's float32 log2 picks 2**k for a descale just above 2**k."""
    x = np.zeros((3, 32), dtype=np.float32)
    x[0, :2] = [2.0 ** -125, 2.0 ** -126]                 # FLOOR scale code 0
    x[1, :2] = [np.inf, 1.0]
    x[2, :2] = [448.0 * 2.0 ** 10 * (1 + 2.0 ** -23), 1.0]
    for conv, want in (("torchao-0.18", None), ("ocp-mx-1.0", "differs")):
        q = quantize_block(x, "mxfp8_e4m3", convention=conv)
        s, e = torchao_mx(x, "float8_e4m3fn", "floor")
        same = np.array_equal(q.scales, s) and np.array_equal(q.elements, e)
        assert same == (want is None)
    s, e = torchao_mx(x[:1], "float8_e4m3fn", "floor")
    d = to_dtype(torch.from_numpy(e).view(torch.float8_e4m3fn),
                 torch.from_numpy(s).view(torch.float8_e8m0fnu),
                 torch.float8_e4m3fn, 32, torch.float32).numpy()
    assert d[0, 0] == 2.0 ** -126                          # x / 2 after the round trip
    q = quantize_block(x[:1], "mxfp8_e4m3", convention="torchao-0.18")
    np.testing.assert_array_equal(dequantize_block(q), d)
    assert dequantize_block(quantize_block(x[:1], "mxfp8_e4m3"))[0, 0] == 2.0 ** -125
    r = BlockFormat("float8_e4m3fn", 32, scale_rule="rceil")
    qt = quantize_block(x[2:], r, convention="torchao-0.18")
    qo = quantize_block(x[2:], r)
    assert qt.scales[0, 0] == 127 + 10 and qo.scales[0, 0] == 127 + 11
    assert qt.elements[0, 0] == 0x7E                       # saturates to 448
    np.testing.assert_array_equal(torchao_mx(x[2:], "float8_e4m3fn", "rceil")[0], qt.scales)


def test_dequantize_matches_torchao_to_dtype():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((16, 64)) * np.logspace(-5, 5, 16)[:, None]).astype(np.float32)
    for name in ELEMS:
        for rule in RULES:
            s, e = torchao_mx(x, name, rule)
            q = quantize_block(x, BlockFormat(name, 32, scale_rule=rule),
                               convention="torchao-0.18")
            d = dequantize_block(q)
            data = torch.from_numpy(e)
            if name == "float4_e2m1fn":
                data = to_mx(torch.from_numpy(x), ELEMS[name], 32,
                             ScaleCalculationMode(rule))[1]
            elif isinstance(ELEMS[name], torch.dtype):
                data = data.view(ELEMS[name])
            t = to_dtype(data, torch.from_numpy(s).view(torch.float8_e8m0fnu), ELEMS[name],
                         32, torch.float32).numpy()
            np.testing.assert_array_equal(d, t.astype(np.float64))


def test_ceil_log2f_model_against_torch():
    """torch.log2 (float32, CPU) near every integer: the window of 64 codes on either side
    of each power of two in every binade, plus random values."""
    base = (np.arange(-126, 128, dtype=np.int64) + 127) << 23
    off = np.arange(-64, 65, dtype=np.int64)
    bits = (base[:, None] + off[None, :]).ravel()
    sub = ((1 << np.arange(23, dtype=np.int64))[:, None] + off[None, :]).ravel()
    bits = np.concatenate([bits, sub])
    bits = bits[(bits > 0) & (bits < 0x7F800000)].astype(np.uint32)
    rnd = np.random.default_rng(4).integers(1, 0x7F800000, 200000, dtype=np.uint32)
    d = np.concatenate([bits, rnd]).view(np.float32)
    want = torch.ceil(torch.log2(torch.from_numpy(d))).numpy().astype(np.int64)
    np.testing.assert_array_equal(_ceil_log2f(d), want)


def nv_data(seed=0):
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal(64) * s for s in (1, 1e-3, 1e4, 2.0 ** -130, 1e-40, 1e35)]
    rows.append(np.zeros(64))
    for v in (6.0, 5.999, 448 * 6.0, 2.0 ** -9, 3.4e38):
        r = rng.standard_normal(64)
        r[9], r[17] = v, -v
        rows.append(r)
    return np.array(rows, dtype=np.float32)


def torchao_nvfp4(x, pts):
    s, d = nvfp4_quantize(torch.from_numpy(np.ascontiguousarray(x)), 16, pts)
    return s.view(torch.uint8).numpy(), unpack_fp4(d.numpy())


@pytest.mark.parametrize("level", ["single", "amax", "given"])
def test_nvfp4_bit_exact(level):
    finite = nv_data()
    specials = np.ones((4, 32), dtype=np.float32)
    specials[0, 3] = np.nan
    specials[1, 20] = -np.inf
    specials[2, 4], specials[2, 9] = np.inf, -np.nan
    specials[3, 17] = -np.nan
    cases = [finite, finite.reshape(2, -1, 64), finite[:, :32], specials, specials[1:2],
             np.vstack([finite[:, :32], specials[1:3]])]
    for x in cases:
        xt = torch.from_numpy(x)
        if level == "single":
            pts, ts = None, None
        elif level == "amax":
            pts, ts = per_tensor_amax_to_scale(torch.max(torch.abs(xt))), "amax"
        else:
            pts = torch.tensor(0.0625 * 3, dtype=torch.float32)
            ts = 0.1875
        s, e = torchao_nvfp4(x, pts)
        q = quantize_block(x, "nvfp4", tensor_scale=ts)
        np.testing.assert_array_equal(q.scales.reshape(s.shape), s)
        np.testing.assert_array_equal(q.elements, e)
        if pts is not None:
            assert q.tensor_scale.view(np.uint32) == pts.numpy().view(np.uint32)
