"""torchao 0.18 float8 (e4m3fn) scaling, per tensor and per row, and torch 2.13's CPU
``_scaled_mm``.

Two conventions live side by side in torchao 0.18 and are inverses of each other:

inference (``Float8Tensor``, ``quantization/quant_primitives.py``)
    a DEQUANT scale, ``x ~ fp8 * s``: ``s = rnd_D(amax / 448)`` computed in the input dtype
    ``D`` (bfloat16 for a bfloat16 input) then stored float32 (``_choose_scale_float8``),
    NO eps -- an all-zero block gets ``s = 0`` and ``0 / 0`` codes, i.e. NaN codes and NaN
    outputs, as torchao gives (``activation_value_lb`` avoids it); codes
    ``e4m3(clamp(f32(x / s), -448, 448))`` (``_quantize_affine_float8``).
training (``Float8Linear``, ``float8/float8_utils.py``)
    a QUANT scale, ``fp8 ~ x * s``: ``s = f32(448 / max(f64(amax), 1e-12))`` (a float64
    division rounded once to float32, ``amax_to_scale``), floored to a power of two by the
    rowwise recipes; codes ``e4m3(clamp(f32(x * s), -448, 448))`` (``to_fp8_saturated``);
    the GEMM gets ``f32(1 / s)``.

``torch._scaled_mm`` on CPU (torch 2.13 ``_scaled_mm_out_cpu_emulated``, ATen Blas.cpp)
scales each operand in float32 BEFORE the GEMM: ``A = f32(f32(qa) * sa)``, ``B =
f32(f32(qb) * sb)``, ``out = A @ B`` (an MKL sgemm), ``+ bias`` in float32, ``.to(out)``.
The sgemm's summation order depends on the shape: it matched a sequential FMA loop
(model ``fp32-sequential-fma``) for every shape measured with K <= 128, and not for all
larger K, so outputs are bit-exact only at small K; elsewhere pass ``model="fp32-blas"``
and bound the difference with :func:`refcomp.bounds.deterministic`.

Measured against torchao 0.18.0 / torch 2.13.0+cpu (tests/test_quant_torchao.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..formats.catalog import get as get_format
from ..ops.accum import matmul
from ..ops.arith import add, div, mul
from ..rounding import cast
from .torchao import _choice, _fmt_name, _values

__all__ = ["Float8Quantized", "float8_choose_scale", "float8_quantize", "float8_dequantize",
           "scaled_mm_cpu", "float8_inference_linear", "amax_to_scale",
           "float8_training_linear"]

F32 = "float32"
E4M3 = "float8_e4m3fn"
#: ``torch.finfo(torch.float8_e4m3fn).max``, derived from the format
FP8_MAX = float(get_format(E4M3).max_finite)
#: ``torchao.float8.float8_utils.EPS``
TRAINING_EPS = 1e-12
_FMTS = ("float32", "bfloat16")


class Float8Quantized(NamedTuple):
    """Float8 codes and their float32 scales (keepdim: (..., 1) per row, (1, .., 1) per tensor)."""

    qdata: np.ndarray        # float64 values of float8_e4m3fn, shape of the input
    scale: np.ndarray        # float32


def _amax(x, granularity, name):
    _choice(granularity, ("per_tensor", "per_row"), "granularity", name)
    if x.ndim < 1 or x.size == 0:
        raise ValueError(f"{name}: x must be a non-empty (..., K) array, got shape {x.shape}")
    if granularity == "per_row":
        return np.abs(x).max(axis=-1, keepdims=True)
    return np.abs(x).max(keepdims=True)


def float8_choose_scale(x, fmt, granularity="per_tensor", lb=None, ub=None):
    """``_choose_scale_float8``: the inference dequant scale ``rnd_D(amax / 448)``, float32.

    Parameters
    ----------
    x : array_like (..., K), values rounded to `fmt`
    fmt : {"float32", "bfloat16"}   the input dtype D, in which the division is done
    granularity : {"per_tensor", "per_row"}
    lb, ub : float, optional   ``hp_value_lb`` / ``hp_value_ub``: ``amax`` clamped first

    Notes
    -----
    torchao 0.18 ``quant_primitives.py:2243``.  No eps: a zero block gives scale 0.

    Examples
    --------
    >>> float8_choose_scale([[300.0, -1.0]], "bfloat16").tolist()   # not 0.6696...
    [[0.66796875]]
    """
    name = "float8_choose_scale"
    fmt = _fmt_name(fmt, _FMTS, name)
    a = _amax(_values(x, fmt, "x", name), granularity, name)
    if lb is not None or ub is not None:
        a = np.clip(a, -np.inf if lb is None else float(cast(lb, fmt)),
                    np.inf if ub is None else float(cast(ub, fmt)))
    return np.asarray(div(a, FP8_MAX, fmt), np.float32)


def _scale(scale, shape, name):
    s = np.asarray(scale)
    if s.dtype.kind != "f":
        raise TypeError(f"{name}: scale must be floats, got dtype {s.dtype}")
    s = np.asarray(cast(s.astype(np.float64), F32), np.float64)
    try:
        np.broadcast_shapes(s.shape, shape)
    except ValueError:
        raise ValueError(f"{name}: scale of shape {s.shape} does not broadcast to {shape}") \
            from None
    return s


def float8_quantize(x, scale, fmt, convention="inference"):
    """Float8 e4m3fn codes of `x` (float64 values), saturating at +-448.

    Parameters
    ----------
    x : array_like, values rounded to `fmt`
    scale : float32 scale broadcastable to `x`
    fmt : {"float32", "bfloat16"}
    convention : {"inference", "training"}
        ``"inference"``: ``e4m3(clamp(f32(x / s), -448, 448))`` (``_quantize_affine_float8``,
        ``quant_primitives.py:2341``); ``"training"``: ``e4m3(clamp(f32(x * s), -448,
        448))`` (``hp_tensor_and_scale_to_float8``, ``float8_training_tensor.py:153``).
        The cast rounds to nearest even; a NaN (``0 / 0``) stays NaN.

    Examples
    --------
    >>> float8_quantize([[1.0, 500.0, -3.0]], np.float32(1.0), "float32").tolist()
    [[1.0, 448.0, -3.0]]
    """
    name = "float8_quantize"
    fmt = _fmt_name(fmt, _FMTS, name)
    _choice(convention, ("inference", "training"), "convention", name)
    xv = _values(x, fmt, "x", name)
    s = np.broadcast_to(_scale(scale, xv.shape, name), xv.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = div(xv, s, F32) if convention == "inference" else mul(xv, s, F32)
    t = np.clip(t, -FP8_MAX, FP8_MAX)                    # NaN passes, as torch.clamp
    return np.asarray(cast(t, E4M3), np.float64)


def float8_dequantize(q, scale, out_fmt="float32"):
    """``_dequantize_affine_float8``: ``rnd_out(f32(f32(q) * s))`` (inference scales)."""
    name = "float8_dequantize"
    out = _fmt_name(out_fmt, _FMTS, name)
    qv = np.asarray(q, np.float64)
    return np.asarray(cast(mul(qv, _scale(scale, qv.shape, name), F32), out), np.float64)


def scaled_mm_cpu(qa, qb, scale_a, scale_b, bias=None, out_fmt="float32",
                  model="fp32-sequential-fma"):
    """torch 2.13 CPU ``torch._scaled_mm(qa, qb, scale_a, scale_b, bias, out_dtype)``.

    Parameters
    ----------
    qa : (M, K) float8_e4m3fn values;  qb : (K, N) float8_e4m3fn values
    scale_a : (M, 1) or scalar float32;  scale_b : (1, N) or scalar float32
        Multiplicative (dequant) scales, as ``_scaled_mm`` takes them.
    bias : (N,) values of `out_fmt`, or None
    out_fmt : {"float32", "bfloat16"}
    model : accumulation model of the float32 GEMM: ``"fp32-sequential-fma"`` (what MKL
        did for every K <= 128 measured) or ``"fp32-blas"`` (any order; bound it with
        :func:`refcomp.bounds.deterministic`)

    Returns
    -------
    (M, N) float64 values of `out_fmt`: ``rnd_out(f32(gemm(A, B) + bias))`` with ``A =
    f32(qa * scale_a)``, ``B = f32(qb * scale_b)`` (``_scaled_mm_out_cpu_emulated``;
    ``use_fast_accum`` is ignored on CPU).
    """
    name = "scaled_mm_cpu"
    out = _fmt_name(out_fmt, _FMTS, name)
    qa, qb = np.asarray(qa, np.float64), np.asarray(qb, np.float64)
    if qa.ndim != 2 or qb.ndim != 2 or qa.shape[1] != qb.shape[0]:
        raise ValueError(f"{name}: need qa (M, K) and qb (K, N), got {qa.shape} and {qb.shape}")
    A = mul(qa, _scale(scale_a, qa.shape, name), F32)                     # (M, K)
    B = mul(qb, _scale(scale_b, qb.shape, name), F32)                     # (K, N)
    y = matmul(A, B, model)                                               # (M, N) float32
    if bias is not None:
        b = _values(bias, out, "bias", name)
        if b.shape != (qb.shape[1],):
            raise ValueError(f"{name}: bias must have shape ({qb.shape[1]},), got {b.shape}")
        y = add(y, b, F32)
    return np.asarray(cast(y, out), np.float64)


def float8_inference_linear(x, weight, bias, fmt, granularity="per_tensor",
                            model="fp32-sequential-fma"):
    """``F.linear(x, Float8Tensor)``: dynamic fp8 activation, fp8 weight (torch kernel, CPU).

    Parameters
    ----------
    x : array_like (..., K), values rounded to `fmt`
    weight : Float8Quantized of the (N, K) weight (:func:`float8_choose_scale` and
        :func:`float8_quantize` with the weight's granularity)
    bias : (N,) or None;  fmt : the model dtype (output dtype)
    granularity : the activation's (``PerTensor`` or ``PerRow``; torchao pairs it with the
        weight's)

    Notes
    -----
    ``float8_tensor.py:338`` ``_float8_addmm_impl`` -> ``addmm_float8_unwrapped_inference``
    (``float8/inference.py:86``): the 2-D view of x, its scale as (M, 1) or (1, 1), the
    weight scale transposed to (1, N), passed as they are (no reciprocal) to
    :func:`scaled_mm_cpu` with ``out_dtype = D``; with a float32 output the bias is added
    after the GEMM (the same float32 addition).
    """
    name = "float8_inference_linear"
    fmt = _fmt_name(fmt, _FMTS, name)
    xv = _values(x, fmt, "x", name)
    K = xv.shape[-1]
    qw = np.asarray(weight.qdata, np.float64)
    if qw.ndim != 2 or qw.shape[1] != K:
        raise ValueError(f"{name}: x (..., K={K}) does not match the weight {qw.shape}")
    sx = float8_choose_scale(xv, fmt, granularity)
    qx = float8_quantize(xv, sx, fmt)
    y = scaled_mm_cpu(qx.reshape(-1, K), qw.T, sx.reshape(-1, 1),
                      np.asarray(weight.scale).reshape(1, -1), bias, fmt, model)
    return y.reshape(xv.shape[:-1] + (qw.shape[0],))


def amax_to_scale(amax, round_to_power_of_2=False):
    """``float8_utils.amax_to_scale`` for e4m3fn: ``f32(448 / max(f64(amax), 1e-12))``.

    ``round_to_power_of_2`` (rowwise recipes): ``exp2(floor(log2(s)))`` in float32; the
    log2 is modelled as correctly rounded to float32 (so a scale just below ``2**k`` whose
    log2 rounds up to ``k`` gives ``2**k``, as torch's float32 log2 does).

    Examples
    --------
    >>> amax_to_scale(np.array([3.0, 0.0]), True).tolist()
    [128.0, 281474976710656.0]
    """
    a = np.asarray(amax, np.float64)
    s = np.asarray(cast(div(448.0, np.maximum(a, TRAINING_EPS), "float64"), F32), np.float64)
    if round_to_power_of_2:
        with np.errstate(divide="ignore"):
            lg = np.asarray(cast(np.log2(s), F32), np.float64)
        s = np.exp2(np.floor(lg))
    return s.astype(np.float32)


def float8_training_linear(x, w, bias, fmt, recipe="tensorwise", model="fp32-sequential-fma"):
    """Forward of ``convert_to_float8_training`` (``Float8LinearConfig.from_recipe_name``).

    Parameters
    ----------
    x : array_like (..., K), w : (N, K), bias : (N,) or None; values rounded to `fmt`
    recipe : {"tensorwise", "rowwise"}

    Returns
    -------
    (..., N) float64 values of `fmt`

    Notes
    -----
    amax: tensorwise ``max|x|``, ``max|w|``; rowwise per token of x and per output channel
    of w (``w.t()`` dim 0), scales floored to powers of two.  Codes with the ``"training"``
    convention; ``addmm_float8_unwrapped`` (``float8/float8_ops.py:29``) passes ``f32(1 /
    s)`` to :func:`scaled_mm_cpu` with the model dtype as output, except that rowwise forces
    a bfloat16 output for float32 models (then ``.to(float32)``: bfloat16-rounded values).
    Bias: ``y + bias`` in the output dtype (``float8_linear.py:271``).  Fast accumulation
    (the recipes' forward setting) only.
    """
    name = "float8_training_linear"
    fmt = _fmt_name(fmt, _FMTS, name)
    _choice(recipe, ("tensorwise", "rowwise"), "recipe", name)
    xv = _values(x, fmt, "x", name)
    wv = _values(w, fmt, "w", name)
    K = xv.shape[-1]
    if wv.ndim != 2 or wv.shape[1] != K:
        raise ValueError(f"{name}: x (..., K={K}) does not match the weight {wv.shape}")
    x2 = xv.reshape(-1, K)                                                # (M, K)
    rowwise = recipe == "rowwise"
    ax = np.abs(x2).max(axis=1, keepdims=True) if rowwise else np.abs(x2).max(keepdims=True)
    aw = np.abs(wv).max(axis=1, keepdims=True) if rowwise else np.abs(wv).max(keepdims=True)
    sx, sw = amax_to_scale(ax, rowwise), amax_to_scale(aw, rowwise)       # (M|1, 1), (N|1, 1)
    qx = float8_quantize(x2, sx, fmt, "training")
    qw = float8_quantize(wv, sw, fmt, "training")
    inv_x, inv_w = div(1.0, sx, F32), div(1.0, sw, F32)
    mm_out = "bfloat16" if rowwise else fmt
    y = scaled_mm_cpu(qx, qw.T, inv_x, inv_w.reshape(1, -1), None, mm_out, model)
    y = np.asarray(cast(y, fmt), np.float64)
    if bias is not None:
        b = _values(bias, fmt, "bias", name)
        y = add(y, b, fmt)
    return np.asarray(y, np.float64).reshape(xv.shape[:-1] + (wv.shape[0],))
