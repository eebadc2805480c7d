"""torchao 0.18 integer weight quantization of Linear, bit for bit as it runs on CPU.

Two workflows of ``torchao.quantization.quantize_`` (torchao 0.18.0 with torch 2.13.0+cpu;
source paths relative to the ``torchao`` package):

int8 dynamic activation, int8 weight (``Int8DynamicActivationInt8WeightConfig``)
    ``quantization/quant_api.py`` and ``quantization/quantize_/workflows/int8/
    int8_tensor.py`` (``Int8Tensor.from_hp``, the ``aten.linear`` override).  The weight is
    quantized once (symmetric, per row or per tensor), the activation on every call
    (symmetric or asymmetric, per token or per tensor), both by
    ``choose_qparams_affine(scale_dtype=float32, zero_point_dtype=int8,
    eps=finfo(float32).eps)`` -- :func:`refcomp.ops.choose_qparams_affine` computed in the
    input format ``D`` with ``eps = 2**-23`` -- and ``quantize_affine``
    (:func:`refcomp.ops.quantize_affine`, convention ``"torchao-0.18"``, in float32 since
    the scale is float32, even for bfloat16 inputs).  :func:`int8_dynamic_linear` is the
    forward.
int4 weight only, tinygemm convention (``PrototypeInt4WeightOnlyConfig``)
    The stable ``Int4WeightOnlyConfig`` has no CPU kernel in 0.18 (its formats need mslk,
    CUDA or XPU); the prototype ``Int4OpaqueTensor``
    (``prototype/quantization/int4/int4_opaque_tensor.py``) runs on CPU with
    ``aten._weight_int4pack_mm_for_cpu``.  The qparams follow
    ``_choose_qparams_affine_tinygemm`` / ``_quantize_affine_tinygemm`` /
    ``_dequantize_affine_tinygemm`` (``quantization/quant_primitives.py``): a FLOAT zero
    (the value of the middle code 8), ``dequant = (q - 8) * scale + zero``.

Every floating-point step is one correctly rounded refcomp operation (torch computes a
bfloat16 / float16 op in float32 and rounds once, which is the same value for + - * /).
Arrays returned hold values of the stated format as float64 (refcomp's carrier), integer
codes as int8 / int32 arrays, scales as float32 arrays (torch's storage).

Measured bit-exact against torchao 0.18.0 / torch 2.13.0+cpu on x86-64 AVX2 without
AVX-512 (tests/test_quant_torchao.py).  The int4 kernel's order and fusion are those of the
AVX2 build of ATen ``native/cpu/int4mm_kernel.cpp``; an AVX-512 build computes the bfloat16
dequantized weight as ``fma(q - 8, s, z)`` instead and is not modelled here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..ops.accum import matmul
from ..ops.affine import choose_qparams_affine, quantize_affine
from ..ops.arith import add, div, fma, mul, sub
from ..ops.convert import round_to_integral
from ..rounding import cast

from ._checks import finite_values

__all__ = ["Int8Quantized", "Int8LinearCache", "int8_quantize", "int8_dynamic_linear",
           "tinygemm_choose_qparams", "tinygemm_quantize", "tinygemm_dequantize",
           "Int4Weight", "int4_quantize_weight", "int4_weight_only_linear"]

F32 = "float32"
#: ``torch.finfo(torch.float32).eps``, the eps Int8Tensor.from_hp passes for every dtype
INT8_EPS = 2.0 ** -23
#: group sizes Int4OpaqueTensor.from_hp accepts
INT4_GROUP_SIZES = (32, 64, 128)


def _fmt_name(fmt, allowed, name):
    f = getattr(fmt, "name", fmt)
    if f not in allowed:
        raise ValueError(f"{name}: fmt must be one of {', '.join(allowed)}, got {fmt!r}")
    return f


def _values(x, fmt, what, name):
    return finite_values(x, fmt, what, name)


def _choice(value, allowed, what, name):
    if value not in allowed:
        raise ValueError(f"{name}: {what} must be one of {', '.join(map(repr, allowed))}, "
                         f"got {value!r}")
    return value


# --------------------------------------------------------------------------- int8
class Int8Quantized(NamedTuple):
    """An ``Int8Tensor``'s data: codes, float32 scales and int8 zero points (keepdim)."""

    qdata: np.ndarray        # (..., K) int8 codes
    scale: np.ndarray        # (..., 1) per row or (1, ..., 1) per tensor, float32
    zero_point: np.ndarray   # same shape as scale, int8


class Int8LinearCache(NamedTuple):
    """Intermediates of one :func:`int8_dynamic_linear` call (for inspection)."""

    act: Int8Quantized       # the quantized activation, shape of x
    acc: np.ndarray          # (M, N) int64 carrier of the exact int32 ``_int_mm`` result


def int8_quantize(x, fmt, mapping="symmetric", granularity="per_row", reduce_range=False):
    """``Int8Tensor.from_hp``: int8 codes, float32 scales and int8 zero points.

    Parameters
    ----------
    x : array_like (..., K), values rounded to `fmt`
    fmt : {"float32", "bfloat16"}
        The tensor's dtype ``D``; the scale is computed in it, then stored as float32.
    mapping : {"symmetric", "asymmetric"}
        The weight is always symmetric (``quantize_`` passes no mapping for it); the
        activation uses the config's ``act_mapping_type``.
    granularity : {"per_row", "per_tensor"}
        ``PerRow()`` blocks are ``(1, ..., 1, K)`` (per output channel for a weight, per
        token for an activation); ``PerTensor()`` one block over every dimension.
    reduce_range : bool
        Codes in [-64, 63] instead of [-128, 127].

    Returns
    -------
    Int8Quantized

    Notes
    -----
    torchao 0.18 ``int8_tensor.py:177-248``.  Symmetric: ``s = max(rnd_D(max(-min(amin,
    0), max(amax, 0)) / 127.5), 2**-23)`` (divisor ``(qmax - qmin) / 2``), zero point 0;
    asymmetric: ``s = max(rnd_D(rnd_D(max_pos - min_neg) / 255), 2**-23)``, ``z =
    clamp(-128 - round(rnd_D(min_neg / s)), -128, 127)``.  An all-zero row gets ``s =
    2**-23``.  Codes: ``clamp(round(f32(x * f32(1 / s))) + z, qmin, qmax)``; ``+amax``
    lands on 127.5, rounds to 128 and is clamped to 127.

    Examples
    --------
    >>> r = int8_quantize([[1.0, -0.5, 0.25]], "float32")
    >>> r.qdata.tolist(), r.scale.tolist(), r.zero_point.tolist()
    ([[127, -64, 32]], [[0.007843137718737125]], [[0]])
    """
    name = "int8_quantize"
    fmt = _fmt_name(fmt, ("float32", "bfloat16"), name)
    _choice(mapping, ("symmetric", "asymmetric"), "mapping", name)
    _choice(granularity, ("per_row", "per_tensor"), "granularity", name)
    xv = _values(x, fmt, "x", name)
    if xv.ndim < 1 or xv.shape[-1] == 0 or xv.size == 0:
        raise ValueError(f"{name}: x must have shape (..., K) with K >= 1 and no empty "
                         f"dimension, got {xv.shape}")
    qmin, qmax = (-64, 63) if reduce_range else (-128, 127)
    block = xv.shape if granularity == "per_tensor" else (1,) * (xv.ndim - 1) + xv.shape[-1:]
    s, z = choose_qparams_affine(xv, mapping, block, qmin, qmax, eps=INT8_EPS, fmt=fmt)
    q = quantize_affine(xv, s, z, qmin, qmax, "torchao-0.18", fmt=F32)
    return Int8Quantized(q.astype(np.int8), s.astype(np.float32), z.astype(np.int8))


def int8_dynamic_linear(x, weight, bias, fmt, act_mapping="symmetric",
                        act_granularity="per_row", reduce_range=False):
    """Forward of a Linear quantized by ``Int8DynamicActivationInt8WeightConfig``.

    Parameters
    ----------
    x : array_like (..., K), values rounded to `fmt`
    weight : Int8Quantized
        ``int8_quantize(W, fmt, "symmetric", weight_granularity, reduce_range)`` of the
        (N, K) weight.
    bias : array_like (N,) or None, values rounded to `fmt`
    fmt : {"float32", "bfloat16"}
        The model's dtype (input, bias and output).
    act_mapping, act_granularity, reduce_range
        The config's ``act_mapping_type``, activation granularity and ``reduce_range``.

    Returns
    -------
    y : (..., N) float64 values of `fmt`
    cache : Int8LinearCache

    Notes
    -----
    torchao 0.18 ``int8_tensor.py:266-335`` and ``kernel/intmm.py:113``
    (``_int_scaled_matmul_cpu``), with ``c`` the exact int32 ``torch._int_mm`` of the
    codes (wrapping; model ``int8-int32-wrap``; the u8s8 variant taken on VNNI CPUs gives
    the same integers) and ``s_x`` the per-token (M, 1) or per-tensor activation scale:

    1. ``y = rnd_D(f32(f32(c) * s_x))`` -- ``f32(c)`` rounds to nearest even above 2**24,
       and the ``.to(output_dtype)`` is a separate rounding for bfloat16;
    2. asymmetric only: ``y = rnd_D(y - rnd_D(f32(f32(z_x) * s_x) * f32(rowsum(W_q))))``;
    3. ``y = f32(y * s_w)``, ``y = f32(y + bias)`` (float32 since ``s_w`` is float32),
       ``y = rnd_D(y)``.

    Examples
    --------
    >>> w = int8_quantize([[1.0, 2.0], [-1.0, 0.5]], "float32")
    >>> y, _ = int8_dynamic_linear([[1.0, 1.0]], w, [0.5, 0.0], "float32")
    >>> y.tolist()
    [[3.4843294620513916, -0.4921799898147583]]
    """
    name = "int8_dynamic_linear"
    fmt = _fmt_name(fmt, ("float32", "bfloat16"), name)
    if not isinstance(weight, Int8Quantized):
        raise TypeError(f"{name}: weight must be an Int8Quantized (from int8_quantize), got "
                        f"{type(weight).__name__}")
    wq = np.asarray(weight.qdata)
    if wq.ndim != 2:
        raise ValueError(f"{name}: weight codes must be (N, K), got shape {wq.shape}")
    N, K = wq.shape
    xv = _values(x, fmt, "x", name)
    if xv.ndim < 1 or xv.shape[-1] != K:
        raise ValueError(f"{name}: x must have shape (..., {K}) for a weight of shape "
                         f"{wq.shape}, got {xv.shape}")
    act = int8_quantize(xv, fmt, act_mapping, act_granularity, reduce_range)
    a = act.qdata.reshape(-1, K)                                          # (M, K)
    c = matmul(a, wq.T, "int8-int32-wrap")                                # (M, N) int32
    sx = act.scale.reshape(-1, 1).astype(np.float64)                      # (M, 1) / (1, 1)
    y = cast(mul(cast(c, F32), sx, F32), fmt)                             # (M, N) in D
    if act_mapping == "asymmetric":
        zx = act.zero_point.reshape(-1, 1).astype(np.float64)             # exact in f32
        rowsum = cast(wq.astype(np.int64).sum(axis=1), F32)               # (N,)
        corr = mul(mul(zx, sx, F32), rowsum, F32)                         # (M, N)
        y = sub(y, cast(corr, fmt), fmt)
    sw = np.asarray(weight.scale, np.float64).reshape(-1)                 # (N,) or (1,)
    y = mul(y, sw, F32)
    if bias is not None:
        b = _values(bias, fmt, "bias", name)
        if b.shape != (N,):
            raise ValueError(f"{name}: bias must have shape ({N},), got {b.shape}")
        y = add(y, b, F32)
    y = np.asarray(cast(y, fmt), np.float64).reshape(xv.shape[:-1] + (N,))
    return y, Int8LinearCache(act, c)


# --------------------------------------------------------------------------- int4 (tinygemm)
def _groups(w, group_size, name):
    if isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer)) \
            or group_size < 1:
        raise ValueError(f"{name}: group_size must be a positive integer, got {group_size!r}")
    if w.ndim < 1 or w.shape[-1] % group_size:
        raise ValueError(f"{name}: the last dimension of shape {w.shape} is not a multiple of "
                         f"group_size {group_size}")
    return w.reshape(w.shape[:-1] + (w.shape[-1] // group_size, group_size))


def tinygemm_choose_qparams(w, group_size, fmt, eps=1e-6):
    """``_choose_qparams_affine_tinygemm`` (uint4, asymmetric, FLOAT zero) per group.

    Parameters
    ----------
    w : array_like (..., K), values rounded to `fmt`; groups of `group_size` along K
    group_size : int
    fmt : {"bfloat16", "float32", "float16"}   the weight's dtype, also the qparams' dtype
    eps : float
        1e-6 in ``Int4OpaqueTensor``; torchao passes it to ``clamp``, so it acts as
        ``rnd_fmt(eps)``.

    Returns
    -------
    scale, zero : (..., K / group_size) float64 values of `fmt`

    Notes
    -----
    torchao 0.18 ``quant_primitives.py:1278-1346``: ``mn, mx = amin, amax`` of the group
    (zero is NOT forced into the range), ``s = max(rnd(rnd(mx - mn) / 15), rnd(eps))``,
    ``zero = rnd(mn + rnd(s * 8))`` (the value of the middle code), all in `fmt`.

    Examples
    --------
    >>> s, z = tinygemm_choose_qparams([[0.0, 1.0, 2.0, 3.0]], 4, "bfloat16")
    >>> s.tolist(), z.tolist()
    ([[0.2001953125]], [[1.6015625]])
    """
    name = "tinygemm_choose_qparams"
    fmt = _fmt_name(fmt, ("bfloat16", "float32", "float16"), name)
    g = _groups(_values(w, fmt, "w", name), group_size, name)
    mn, mx = g.min(axis=-1), g.max(axis=-1)
    s = div(sub(mx, mn, fmt), 15.0, fmt)
    e = float(cast(float(eps), fmt))
    s = np.where(s < e, e, s)
    z = add(mn, mul(s, 8.0, fmt), fmt)
    return np.asarray(s, np.float64), np.asarray(z, np.float64)


def _qparams(scale, zero, shape, fmt, name):
    s = _values(scale, fmt, "scale", name)
    z = _values(zero, fmt, "zero", name)
    if s.shape != shape or z.shape != shape:
        raise ValueError(f"{name}: scale and zero must have shape {shape}, got {s.shape} and "
                         f"{z.shape}")
    return s[..., None], z[..., None]


def tinygemm_quantize(w, scale, zero, group_size, fmt):
    """``_quantize_affine_tinygemm``: uint4 codes 0..15 as int32, same shape as `w`.

    Notes
    -----
    torchao 0.18 ``quant_primitives.py:548-610``: the group minimum is RECOMPUTED from the
    rounded zero, ``min_val = rnd(zero - rnd(s * 8))`` (it may differ from the true
    minimum), then ``q = clamp(round(rnd(rnd(w - min_val) / s)), 0, 15)`` -- a true
    division, not a reciprocal; all in `fmt`, ``round`` half to even.

    Examples
    --------
    >>> tinygemm_quantize([[0.0, 1.0, 2.0, 3.0]], [[0.2001953125]], [[1.6015625]], 4,
    ...                   "bfloat16").tolist()
    [[0, 5, 10, 15]]
    """
    name = "tinygemm_quantize"
    fmt = _fmt_name(fmt, ("bfloat16", "float32", "float16"), name)
    g = _groups(_values(w, fmt, "w", name), group_size, name)
    s, z = _qparams(scale, zero, g.shape[:-1], fmt, name)
    min_val = sub(z, mul(s, 8.0, fmt), fmt)
    t = div(sub(g, min_val, fmt), np.broadcast_to(s, g.shape), fmt)
    q = np.clip(round_to_integral(t, fmt, "nearest_even"), 0, 15)
    return q.astype(np.int32).reshape(g.shape[:-2] + (-1,))


def _promote(a, b):
    return a if a == b else F32


def tinygemm_dequantize(q, scale, zero, group_size, fmt, out_fmt=None):
    """``_dequantize_affine_tinygemm``: ``(q - 8) * scale + zero``, float64 values of `out_fmt`.

    Parameters
    ----------
    q : array_like of int (..., K), codes 0..15
    scale, zero : (..., K / group_size) values of `fmt` (the qparams' dtype)
    out_fmt : the ``output_dtype``, default `fmt`

    Notes
    -----
    torchao 0.18 ``quant_primitives.py:975-1017``: ``d = (q - 8.0).to(out)`` (exact),
    ``d *= scale``, ``d += zero`` -- in place, so each op is computed in the promoted
    dtype of `out_fmt` and `fmt` (float32 when they differ) and stored in `out_fmt`.

    Examples
    --------
    >>> tinygemm_dequantize([[0, 5, 10, 15]], [[0.2001953125]], [[1.6015625]], 4,
    ...                     "bfloat16").tolist()
    [[0.0, 1.0, 2.0, 3.0]]
    """
    name = "tinygemm_dequantize"
    fmt = _fmt_name(fmt, ("bfloat16", "float32", "float16"), name)
    out = fmt if out_fmt is None else _fmt_name(out_fmt, ("bfloat16", "float32", "float16"),
                                                name)
    qa = np.asarray(q)
    if qa.dtype.kind not in "iu":
        raise TypeError(f"{name}: q must be integers, got dtype {qa.dtype}")
    g = _groups(qa.astype(np.float64) - 8.0, group_size, name)
    s, z = _qparams(scale, zero, g.shape[:-1], fmt, name)
    op = _promote(out, fmt)
    d = cast(g, out)
    d = cast(mul(d, s, op), out)
    d = cast(add(d, z, op), out)
    return np.asarray(d, np.float64).reshape(qa.shape)


class Int4Weight(NamedTuple):
    """An ``Int4OpaqueTensor``'s data, unpacked (the packed bytes depend on the CPU's ISA)."""

    qdata: np.ndarray        # (N, K) int32 codes 0..15
    scale: np.ndarray        # (N, K / group_size) float64 values of fmt
    zero: np.ndarray         # (N, K / group_size) float64 values of fmt
    group_size: int
    fmt: str


def int4_quantize_weight(w, group_size, fmt):
    """``PrototypeInt4WeightOnlyConfig(group_size)``: ``Int4OpaqueTensor.from_hp``.

    Checks what the CPU path requires (2-D weight, group size 32 / 64 / 128, N a multiple
    of 16, as ``_convert_weight_to_int4pack_for_cpu`` demands), then
    :func:`tinygemm_choose_qparams` (eps 1e-6) and :func:`tinygemm_quantize`.

    Examples
    --------
    >>> w = int4_quantize_weight(np.tile(np.arange(32.0), (16, 1)), 32, "bfloat16")
    >>> w.qdata[0, :4].tolist(), float(w.scale[0, 0]), float(w.zero[0, 0])
    ([0, 0, 1, 1], 2.0625, 16.5)
    """
    name = "int4_quantize_weight"
    fmt = _fmt_name(fmt, ("bfloat16", "float32", "float16"), name)
    wv = _values(w, fmt, "w", name)
    if wv.ndim != 2:
        raise ValueError(f"{name}: weight must be (N, K), got shape {wv.shape}")
    if group_size not in INT4_GROUP_SIZES:
        raise ValueError(f"{name}: group_size must be one of {INT4_GROUP_SIZES} (Int4OpaqueTensor"
                         f"), got {group_size!r}")
    if wv.shape[0] % 16:
        raise ValueError(f"{name}: N = {wv.shape[0]} output features is not a multiple of 16 "
                         "(_convert_weight_to_int4pack_for_cpu)")
    s, z = tinygemm_choose_qparams(wv, group_size, fmt)
    return Int4Weight(tinygemm_quantize(wv, s, z, group_size, fmt), s, z, int(group_size), fmt)


def int4_weight_only_linear(x, weight, bias=None):
    """Forward of a Linear quantized by ``PrototypeInt4WeightOnlyConfig`` (CPU, AVX2 build).

    Parameters
    ----------
    x : array_like (..., K), values rounded to ``weight.fmt``
    weight : Int4Weight
    bias : array_like (N,) or None

    Returns
    -------
    (..., N) float64 values of ``weight.fmt``

    Notes
    -----
    torch 2.13 ``_weight_int4pack_mm_for_cpu`` (ATen ``native/cpu/int4mm_kernel.cpp``,
    AVX2 dispatch), per output element in float32 from ``acc = +0``:

    * bfloat16 (vectorised kernel): ``z' = fma(s, -8, z)`` once per group, ``b_k =
      fma(q_k, s, z')``;
    * float32 / float16 (scalar template, compiled with FMA contraction): ``b_k =
      fma(q_k - 8, s, z)``;
    * ``acc = fma(x_k, b_k, acc)`` for k = 0 .. K-1 in order (model
      ``fp32-sequential-fma``), then ``y = rnd_D(acc)``.

    Then (``int4_opaque_tensor.py:379-425``) ``y = rnd_D(y + bias)``.

    Examples
    --------
    >>> w = int4_quantize_weight(np.tile(np.arange(32.0), (16, 1)), 32, "float32")
    >>> float(int4_weight_only_linear(np.ones((1, 32)), w)[0, 0])    # sum(0..31) = 496
    495.9999694824219
    """
    name = "int4_weight_only_linear"
    if not isinstance(weight, Int4Weight):
        raise TypeError(f"{name}: weight must be an Int4Weight (from int4_quantize_weight), "
                        f"got {type(weight).__name__}")
    fmt, gs = weight.fmt, weight.group_size
    q = np.asarray(weight.qdata)
    N, K = q.shape
    xv = _values(x, fmt, "x", name)
    if xv.ndim < 1 or xv.shape[-1] != K:
        raise ValueError(f"{name}: x must have shape (..., {K}), got {xv.shape}")
    sK = np.repeat(np.asarray(weight.scale, np.float64), gs, axis=1)      # (N, K)
    zK = np.repeat(np.asarray(weight.zero, np.float64), gs, axis=1)       # (N, K)
    if fmt == "bfloat16":
        b = fma(q.astype(np.float64), sK, fma(sK, -8.0, zK, F32), F32)    # (N, K)
    else:
        b = fma(q.astype(np.float64) - 8.0, sK, zK, F32)
    acc = matmul(xv.reshape(-1, K), b.T, "fp32-sequential-fma")           # (M, N)
    y = cast(acc, fmt)
    if bias is not None:
        bv = _values(bias, fmt, "bias", name)
        if bv.shape != (N,):
            raise ValueError(f"{name}: bias must have shape ({N},), got {bv.shape}")
        y = add(y, bv, fmt)
    return np.asarray(y, np.float64).reshape(xv.shape[:-1] + (N,))
