"""Backend conventions of block quantization that are not the OCP rule: torchao 0.18's NaN
handling in ``to_mx``, torchao's NVFP4 (``nvfp4_quantize``) and QPyTorch 0.2's
``block_quantize``.  :func:`refcomp.ops.quantize_block` calls these for
``convention="torchao-0.18"`` / ``"qpytorch-0.2"``; the rules and their sources are in
:mod:`refcomp.ops.block`'s docstring and each function's.
"""

from __future__ import annotations

import numpy as np

from ..formats.block import BlockFormat, ScaleRule
from ..formats.catalog import get as get_format
from ..formats.floatformat import FloatFormat
from ..rounding.cast import cast_bits
from ..rounding.unpack import bits_view
from .arith import div, mul

__all__ = ["torchao_nan_blocks", "nvfp4", "qpytorch", "div32"]

_F32 = get_format("float32")
_E4M3 = get_format("float8_e4m3fn")
_TORCH = "torch-2.13-cpu"


def _helpers():
    from . import block                # block imports this module: bind its helpers late
    return block


# ----------------------------------------------------------------------- torchao NaNs
def _fx_nan_code(bits32, el: FloatFormat):
    """Code torchao 0.18 ``custom_fp_utils._f32_to_floatx_unpacked`` gives a NaN: its
    normal-path integer arithmetic applied to the NaN's float32 bits (NaNs compare false
    with both branch limits), low 8 bits, with the sign bit."""
    b = np.asarray(bits32, dtype=np.uint32).astype(np.int64)
    a = b & 0x7FFFFFFF
    sh = 23 - el.man_bits
    add = ((el.bias - 127) << 23) + (1 << (sh - 1)) - 1 + ((a >> sh) & 1)
    code = ((a + add) >> sh) & 0xFF
    code = code | ((b >> 31) << (el.exp_bits + el.man_bits))
    assert np.all(code < 1 << el.width)
    return code.astype(el.storage_dtype)


def _nan_elements(bits32, el: FloatFormat):
    """Element codes torchao writes for float32 NaNs (bits): FP8 via c10, FP6/FP4 above."""
    if el.width == 8:
        return cast_bits(np.asarray(bits32, np.uint32).view(np.float32), el, profile=_TORCH)
    return _fx_nan_code(bits32, el)


def _quiet(bits32):
    return np.asarray(bits32, dtype=np.uint32) | np.uint32(0x400000)


def _block_nan_bits(x32, bs, rows, blocks):
    """quiet(|first NaN|) of the listed blocks: torch.amax's NaN (if a block's NaNs agree)."""
    segs = [x32[r, b * bs:(b + 1) * bs] for r, b in zip(rows.tolist(), blocks.tolist())]
    first = np.array([s[np.isnan(s)][0] for s in segs], dtype=np.float32)
    return _quiet(bits_view(first) & np.uint32(0x7FFFFFFF))


def torchao_nan_blocks(x32, codes, nanb, bs, fmt: BlockFormat):
    """Patch the elements of NaN blocks as torchao 0.18 computes them (module docstring)."""
    el = fmt.element
    rows, blocks = np.nonzero(nanb)
    n = x32.shape[1]
    if fmt.scale_rule is ScaleRule.RCEIL:                 # x * NaN: torch's mul keeps the
        nb = _block_nan_bits(x32, bs, rows, blocks)        # second operand's NaN
        for (r, b), v in zip(zip(rows.tolist(), blocks.tolist()), _nan_elements(nb, el)):
            codes[r, b * bs:min(n, (b + 1) * bs)] = v
        return codes
    for r, b in zip(rows.tolist(), blocks.tolist()):      # x / inf
        sl = slice(b * bs, min(n, (b + 1) * bs))
        seg = x32[r, sl]
        sb = bits_view(np.ascontiguousarray(seg))
        y = np.where(np.isinf(seg), np.uint32(0xFFC00000),
                     np.where(np.isnan(seg), _quiet(sb), sb & np.uint32(0x80000000)))
        c = cast_bits(y.view(np.float32), el, overflow="saturate")
        codes[r, sl] = np.where(np.isnan(y.view(np.float32)), _nan_elements(y, el), c)
    return codes


# --------------------------------------------------------------------------- NVFP4
def div32(a, b):
    """float32 a / b, correctly rounded (x86 SSE NaN rules: torch CPU's, measured)."""
    with np.errstate(invalid="ignore"):      # refcomp.ops' NumPy twin warns on NaN inputs
        return np.asarray(div(a, b, _F32, dtype=np.float32))


def _t_mul(a, b):
    """float32 a * b as torch 2.13 CPU: correctly rounded; of two NaNs it keeps the second
    (measured; x86 SSE keeps the first)."""
    with np.errstate(invalid="ignore"):
        y = mul(a, b, _F32, dtype=np.float32)
    return np.where(np.isnan(a) & np.isnan(b), np.broadcast_to(b, y.shape), y)


def _clamp(v, lo, hi):                                    # torch.clamp: NaN bits pass
    return np.where(v < lo, np.float32(lo), np.where(v > hi, np.float32(hi), v))


def nvfp4(x32, bs, tensor_scale):
    """torchao 0.18 ``nvfp4_quantize`` (CPU): every step in float32, each rounded to
    nearest-even as IEEE float32 arithmetic does (via :mod:`refcomp.ops`):

    ``a = amax(|x|)`` per block; per-tensor scale ``p = fl(max|x| / 2688)``
    (``per_tensor_amax_to_scale``: 2688 = 448 * 6; torch's full max reduction returns the
    NaN 0xFFFFFFFF when x holds a NaN, measured) or a given float32, or none;
    ``t = fl(a / 6)`` [``/ p``]; ``s8 = e4m3(clamp(t, 2**-6, 448))`` (nearest-even, c10);
    ``s = float32(s8)`` (NaN code -> 0x7FF00000 | sign, c10); ``r = fl(1 / s)`` or
    ``fl(fl(1 / p) / s)``; elements ``e2m1(clamp(fl(x * r), -6, 6))`` (nearest-even,
    saturating; NaN -> :func:`_fx_nan_code`).
    """
    h = _helpers()
    el, n = get_format("float4_e2m1fn"), x32.shape[1]
    a = h._to32(h.block_amax(x32, bs))
    nanb = np.isnan(a)
    if nanb.any():
        rows, blocks = np.nonzero(nanb)
        a[rows, blocks] = _block_nan_bits(x32, bs, rows, blocks).view(np.float32)
    if isinstance(tensor_scale, str):
        t_amax = np.float32(np.max(np.abs(x32))) if x32.size else np.float32(0)
        if np.isnan(t_amax):
            t_amax = np.array(0xFFFFFFFF, dtype=np.uint32).view(np.float32)
        pts = div32(t_amax, np.float32(2688.0))
    elif tensor_scale is None:
        pts = None
    else:
        pts = np.asarray(h._float32_values(np.asarray([tensor_scale], dtype=np.float64),
                                           "tensor_scale")[0], dtype=np.float32)
    t = div32(a, np.float32(6.0))
    if pts is not None:
        t = div32(t, pts)
    s8 = cast_bits(_clamp(t, 2.0 ** -6, 448.0), _E4M3, profile=_TORCH)
    isn = (s8 & 0x7F) == 0x7F
    s32 = np.where(isn, (np.uint32(0x7FF00000) | ((s8 >> 7).astype(np.uint32) << 31))
                   .view(np.float32), h._to32(np.where(isn, 0.0, _E4M3.decode(s8))))
    one = np.float32(1.0)
    r = div32(one, s32) if pts is None else div32(div32(one, pts), s32)
    rx = np.repeat(r, bs, axis=1)[:, :n]
    y = _clamp(_t_mul(x32, rx), -6.0, 6.0)
    nan = np.isnan(y)
    codes = cast_bits(np.where(nan, 0, y), el, overflow="saturate")
    if nan.any():
        codes[nan] = _fx_nan_code(bits_view(np.ascontiguousarray(y))[nan], el)
    return codes, s8, (None if pts is None else np.asarray(pts, dtype=np.float32))


# ------------------------------------------------------------------------- QPyTorch
def qpytorch(x32, bs, fmt: BlockFormat, rounding, rng):
    """QPyTorch 0.2.0 block_quantize (module docstring); returns (codes, k)."""
    h = _helpers()
    wl = fmt.element.total_bits
    if not 2 <= wl <= 22:
        raise ValueError(f"QPyTorch's bit trick needs 2 <= wl <= 22, got wl={wl}")
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"convention 'qpytorch-0.2' rounds with QPyTorch's 'nearest' (ties "
                         f"toward +inf after a float32 step) or 'stochastic', not {rounding!r}")
    amax = h.block_amax(x32, bs)
    bad = ~((amax == 0) | ((amax >= 2.0 ** -126) & (amax < 2.0 ** 126)))
    if np.any(bad):
        r, b = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"block {b} of row {r} has amax={float(amax[r, b])!r}: QPyTorch's "
                         "float32 trick needs amax = 0 or 2**-126 <= amax < 2**126, finite")
    E = np.where(amax > 0, h._exp_frac(np.where(amax > 0, amax, 1.0))[0], fmt.scale_kmin)
    Ex = np.repeat(E, bs, axis=1)[:, :x32.shape[1]].reshape(-1)
    xd = x32.astype(np.float64).reshape(-1)
    v1 = np.ldexp(h.round_fixed(xd, Ex - 21, "nearest_even", None).astype(np.float64),
                  Ex - 21)
    qe = Ex + 2 - wl
    if rounding == "nearest":
        q = h.round_fixed(v1 + np.ldexp(1.0, qe - 1), qe, "toward_negative", None)
    else:
        q = h.round_fixed(v1, qe, "stochastic", rng, random_bits=23 - wl)
    return h._fixed_codes(q.reshape(x32.shape), fmt), E
