"""Dynamic quantization of Linear, as torch 2.13's fbgemm kernel computes it (x86 / fbgemm).

``torch.ao.quantization.quantize_dynamic`` replaces ``nn.Linear`` by
``torch.ao.nn.quantized.dynamic.Linear``: int8 weights quantized once, the activations
quantized afresh on every call from their own range, an integer GEMM, float32 output.
Prepacking sends both the ``x86`` and the ``fbgemm`` engine to fbgemm's
``PackedLinearWeight`` (``aten/src/ATen/native/quantized/cpu/qlinear_prepack.cpp``).

Weights (``from_float``, ``torch/ao/nn/quantized/dynamic/modules/linear.py`` and
``modules/utils.py::_quantize_weight``), qconfig ``default_dynamic_qconfig``
(``MinMaxObserver``, qint8, per-tensor symmetric) or ``per_channel_dynamic_qconfig``
(``PerChannelMinMaxObserver``, per-channel symmetric, axis 0):
``s_w = max(f32(max(-min(w_min, 0), max(w_max, 0)) / 127.5), 2**-23)``, ``z_w = 0``
(:func:`refcomp.quant.qparams.calculate_qparams`), then ``torch.quantize_per_tensor`` /
``quantize_per_channel`` to [-128, 127] (:func:`refcomp.ops.quantize_affine`; with
``z_w = 0`` both reduce to ``rne(f32(w * f32(1 / s_w)))``).

Per call (``PackedLinearWeight::apply_dynamic_impl``, ``qlinear_dynamic.cpp``), ``x`` float32
flattened to (M, K):

1. ``x_min, x_max`` over all elements (``fbgemm::FindMinMax``; 0, 0 for an empty input);
   ``(s_x, z_x) = ChooseQuantizationParams(x_min, x_max, 0, 255, reduce_range=True)``
   (``cpu/QuantUtils.h``; :func:`refcomp.quant.choose.choose_qparams_fbgemm` with
   ``source="aten"``): range [0, 127]; ``s_x`` is the double scale narrowed to float32.
   The module passes ``reduce_range=True`` on every engine (version 4 ``forward``).
2. ``xq = clamp(rne(fma(x, f32(1 / s_x), z_x)), 0, 255)``: fbgemm ``QuantizeAvx2`` in the
   LEGACY mode the FBGEMM pinned by torch 2.13 defaults to -- the zero point is added
   before the single rounding, fused (convention ``"torch-2.13-quantize_per_tensor"``);
   the clamp is to the full uint8 range.
3. ``raw[m, n] = sum_k (xq - z_x)(wq - z_w)`` in int32: fbgemm's u8 x s8 GEMM on the raw
   codes (``PackAWithQuantRowOffset``), then ``acc - z_x col_off[n] - row_off[m] z_w[n]``
   (``ReQuantizeForFloat``).  The AVX2 kernel without VNNI saturates each adjacent pair of
   products to int16 (``vpmaddubsw``, model ``u8s8-int32-avx2``).  With reduce_range the
   codes are at most 127 (128 at a rounding edge) and ``|2 * 128 * -128| = 32768`` does not
   exceed the int16 range, so the saturation never triggers on this path; it is modelled
   anyway (``int16_pairs``) since it is the kernel's arithmetic.
4. ``y = fma(f32(raw), f32(s_x * s_w[n]), bias[n])``, or ``f32(f32(raw) * f32(s_x *
   s_w[n]))`` without bias (``requantizeForFloatAvx2``, fbgemm ``src/QuantUtilsAvx2.cc``:
   the source's ``_mm256_add_ps(_mm256_mul_ps(...), bias)`` is contracted into one FMA,
   the file being compiled with ``-mfma``); ``f32(raw)`` is ``cvtepi32_ps`` (nearest even);
   ReLU (``LinearReLU``): ``_mm256_max_ps(0, y)``, i.e. ``0 > y ? +0 : y`` (a -0 stays).

Implementation (same bits, faster): the float32 steps 2 and 4 run in float64 with the
double-rounding check of :func:`_round_sum_f32` (exact products, TwoSum on float32
midpoints, refcomp.ops for subnormal / overflowing results); the integer GEMM of step 3 is
exact through float32 BLAS over K blocks of at most 1032 or, for batches of at most four
rows, a Numba kernel over the int8 weights (:func:`_gemm_u7s8`).

Measured bit-exact against torch 2.13.0+cpu on an AVX2 machine without VNNI
(tests/test_quant_dynamic.py).  The legacy quantize rule (2) flips to ``rne(x * inv) + z``
once torch pins an FBGEMM past commit 798a6037a.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from .. import _jit
from ..nn.modules import Linear, Module, Residual, Sequential
from ..ops.accum import matmul
from ..ops.affine import quantize_affine
from ..ops.arith import div, fma, mul
from .choose import choose_qparams_fbgemm
from .fuse import LinearReLU
from .qparams import calculate_qparams, qparams_spec

from ._checks import finite_values

__all__ = ["DynamicLinearCache", "quantize_weight_dynamic", "dynamic_linear_forward",
           "DynamicQuantizedLinear", "quantize_dynamic", "PackedWeight", "pack_weight"]

F32 = "float32"


class DynamicLinearCache(NamedTuple):
    """The intermediate values of one dynamic Linear call (for inspection; no backward)."""

    x_scale: np.float32     # s_x, the activation scale (float32)
    x_zero_point: int       # z_x
    xq: np.ndarray          # (M, D_in) int64 uint8 codes of the input
    raw: np.ndarray         # (M, D_out) int64 carrier of the int32 corrected accumulators


def _f32(x, what, name):
    """Finite values rounded to float32 (as a torch float32 tensor holds them)."""
    return finite_values(x, F32, what, name, "; dynamic quantization needs finite values")


def quantize_weight_dynamic(weight, per_channel=False, name="DynamicQuantizedLinear"):
    """int8 weights of torch's default dynamic qconfigs (symmetric, zero point 0).

    Parameters
    ----------
    weight : (D_out, D_in) float values, rounded to float32
    per_channel : bool, ``per_channel_dynamic_qconfig`` (one scale per output row)
    name : str, for error messages

    Returns
    -------
    wq : (D_out, D_in) int64 codes in [-128, 127]
    scale : (1,) or (D_out,) float32
    zero_point : (1,) or (D_out,) int64 zeros

    Notes
    -----
    ``MinMaxObserver`` / ``PerChannelMinMaxObserver`` (qint8, symmetric) then
    ``_quantize_weight`` (``torch/ao/nn/quantized/modules/utils.py``): see the module
    docstring.

    Examples
    --------
    >>> wq, s, z = quantize_weight_dynamic([[1.0, -0.5], [0.25, 0.0]])
    >>> wq.tolist(), s.tolist(), z.tolist()
    ([[127, -64], [32, 0]], [0.007843137718737125], [0])
    """
    w = _f32(weight, "weight", name)
    if w.ndim != 2:
        raise ValueError(f"{name}: weight must be (D_out, D_in), got shape {w.shape}")
    w32 = w.astype(np.float32)                                 # exact: float32 values
    if per_channel:
        spec = qparams_spec("qint8", "per_channel_symmetric")
        mn = w32.min(axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
        mx = w32.max(axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
        scale, zp = calculate_qparams(mn, mx, spec)
        conv = "torch-2.13-quantize_per_channel"
        wq = quantize_affine(w, scale[:, None], zp[:, None], -128, 127, conv)
    else:
        spec = qparams_spec("qint8", "per_tensor_symmetric")
        mn = w32.min() if w.size else np.float32(0)
        mx = w32.max() if w.size else np.float32(0)
        scale, zp = calculate_qparams(mn, mx, spec)
        wq = quantize_affine(w, scale[0], int(zp[0]), -128, 127,
                             "torch-2.13-quantize_per_tensor")
    return wq, scale.astype(np.float32), zp.astype(np.int64)


def _wrap32(v):
    """int32 two's-complement wrap (fbgemm's int32 arithmetic) of int64 values (a copy-free
    no-op when every value already lies in the int32 range, as it does for K < 2**16)."""
    if v.size == 0 or (int(v.min()) >= -(1 << 31) and int(v.max()) < (1 << 31)):
        return v
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


# --------------------------------------------------------------------------- float32 steps
# Fast paths of the float32 element operations of steps 2 and 4, each checked against the
# correctly rounded refcomp operation it replaces (tests/test_quant_dynamic.py).  With
# float32 operands x, y, c the product p = x * y is exact in float64 (two 24-bit
# significands make at most 48 bits, and the exponents stay far inside float64's range),
# so the exact result r = p + c is known as t = RN64(p + c) plus the exact rounding error
# e = r - t of that one addition (Knuth's TwoSum, six float64 operations; Knuth, TAOCP 2,
# 4.2.2, Theorem B).  Narrowing t to float32 (one hardware RNE conversion) gives
# RN32(RN64(r)), which equals the wanted RN32(r) unless t lies exactly on a float32
# rounding boundary: the float32 numbers and the midpoints between them are float64
# numbers, so by monotonicity RN64 keeps r within the closed interval between the two
# midpoints around RN32(r) (Figueroa, "When is double rounding innocuous?", SIGNUM
# Newsletter 30(3), 1995; Boldo and Melquiond, "When double rounding is odd", 2005).
# A normal float32 midpoint has, in its own binade, exactly bit 28 set among the 29 low
# significand bits of its float64 encoding.  There the sign of e decides: e = 0 is a true
# tie (RNE, what the conversion did), e > 0 takes the float32 neighbour above t, e < 0 the
# one below.  Nonzero results in the float32 subnormal range (|t| < 2**-126, where the
# float32 grid is coarser) and beyond the float32 maximum are not resolved here: the
# callers recompute them with refcomp.ops.  A float64 sum of exactly zero is exact (x + y
# = 0 only for y = -x, with gradual underflow) and signed by the same IEEE rule in float32.
_LOW29 = np.uint64((1 << 29) - 1)
_MID29 = np.uint64(1 << 28)
_F32_MIN_NORMAL = 2.0 ** -126
_F32_MAX = float(np.finfo(np.float32).max)


def _round_sum_f32(t, c, p_at):
    """``(r32, rest)``: ``RN32(p + c)`` as a float32 array, given ``t = RN64(p + c)`` (float64;
    ``c=None``: ``t = p`` exact), `c` and ``p_at(mask)``, the exact ``p`` at the masked
    elements (asked for the rare float32 midpoints only); and the mask of the elements left
    undecided (a nonzero result below the float32 normal range, an infinite or NaN one),
    whose ``r32`` the caller must replace.  See the comment above."""
    t32 = t.astype(np.float32)
    u = t32.view(np.uint32) & np.uint32(0x7FFFFFFF)            # |t32|: normal finite iff
    u -= np.uint32(0x00800000)                                 # 2**23 <= bits < 0x7F800000
    rest = u >= np.uint32(0x7F000000)                          # (unsigned wrap-around)
    if rest.any():
        rest &= t != 0                                         # exact zeros are decided
    if c is not None:
        mid = (t.view(np.uint64) & _LOW29) == _MID29
        if mid.any():
            mid &= ~rest
            tm = t[mid]
            pm = p_at(mid)
            cm = np.broadcast_to(c, t.shape)[mid]
            bb = tm - pm                                       # TwoSum: tm + e = pm + cm
            e = (pm - (tm - bb)) + (cm - bb)
            near = t32[mid].astype(np.float64)                 # the tie's even neighbour
            other = tm + (tm - near)                           # the other one (exact)
            r = np.where(e > 0, np.maximum(near, other),
                         np.where(e < 0, np.minimum(near, other), near))
            with np.errstate(over="ignore"):                   # above FLT_MAX: inf
                t32[mid] = r.astype(np.float32)
    return t32, rest


def _fma_f32(a, b, c):
    """float32 ``RN32(a * b + c)`` (``c=None``: ``RN32(a * b)``) of float64 arrays holding
    float32 values, as a float32 array: :func:`_round_sum_f32` on the exact product, the
    elements it leaves recomputed by :func:`refcomp.ops.fma` / :func:`refcomp.ops.mul`."""
    t = a * b                                                  # exact (48-bit significands)
    shape = t.shape
    if c is not None:
        t += c                                                 # the one float64 rounding
    with np.errstate(over="ignore"):
        t32, rest = _round_sum_f32(t, c, lambda m: (np.broadcast_to(a, shape)[m]
                                                    * np.broadcast_to(b, shape)[m]))
    if rest.any():
        ops = [np.broadcast_to(v, shape)[rest] for v in ((a, b) if c is None else (a, b, c))]
        t32[rest] = (mul(*ops, F32) if c is None else fma(*ops, F32))
    return t32


def _recip_f32(s):
    """``f32(1 / s)`` correctly rounded for a float32 scale `s` > 0: float64 division
    (one rounding) narrowed once, the double rounding innocuous unless the float64 quotient
    sits on a float32 midpoint or outside the normal range -- then :func:`refcomp.ops.div`."""
    q = np.array([1.0 / float(s)])
    if bool(((q.view(np.uint64) & _LOW29) == _MID29)[0]) or not (
            _F32_MIN_NORMAL <= q[0] <= _F32_MAX):
        return float(div(1.0, float(s), F32))
    return float(np.float32(q[0]))


def _quantize_fused(x32, s_x, z_x):
    """Step 2 on float32 `x32`: ``(q, xq)``, ``clamp(rne(fma(x, f32(1 / s_x), z_x)), 0, 255)``
    as float32 and as int64 codes, exactly ``quantize_affine(x, s_x, z_x, 0, 255,
    "torch-2.13-quantize_per_tensor")`` (the reciprocal by :func:`_recip_f32`, the FMA by
    :func:`_round_sum_f32`, the elements it leaves by ``quantize_affine`` itself; ``rint``
    is RNE, nearbyint's default mode)."""
    inv = np.float64(_recip_f32(s_x))
    t = np.multiply(x32, inv)                                  # float64, exact
    zf = np.float64(z_x)
    t += zf                                                    # the one float64 rounding
    q, rest = _round_sum_f32(t, zf, lambda m: x32[m] * inv)
    np.rint(q, out=q)
    np.clip(q, 0, 255, out=q)
    if rest.any():
        q[rest] = quantize_affine(x32[rest], float(s_x), z_x, 0, 255,
                                  "torch-2.13-quantize_per_tensor")
    return q, q.astype(np.int64)


def _f32_array(x, what, name):
    """x's float32 values as a float32 array (:func:`_f32`, narrowed: exact), without the
    rounding core when `x` already holds float32 values (a float32 array, or a float64
    array equal to its float32 narrowing: nothing rounds).  Finiteness is the caller's to
    check for float32 input (``_f32`` on failure gives the error message)."""
    a = np.asarray(x)
    if a.dtype == np.float32:
        return a
    if a.dtype == np.float64:
        with np.errstate(over="ignore", invalid="ignore"):
            a32 = a.astype(np.float32)
        if np.array_equal(a32, a):                             # NaN never equal: _f32
            return a32
    return _f32(x, what, name).astype(np.float32)


# --------------------------------------------------------------------------- the int GEMM
class PackedWeight(NamedTuple):
    """Weight-side data a :class:`DynamicQuantizedLinear` computes once (fbgemm's prepack):
    the checked codes transposed (K, N), as exact float32 values for the integer GEMM
    through BLAS and as int8 for the small-batch kernel, and fbgemm's column offsets."""

    wt32: np.ndarray        # (K, N) float32 codes
    wt8: np.ndarray         # (K, N) int8 codes
    col_sum: np.ndarray     # (N,) int64, sum_k wq[n, k]


def pack_weight(wq) -> PackedWeight:
    """:class:`PackedWeight` of int8 codes `wq` (N, K) (checked by the caller)."""
    wt = np.ascontiguousarray(np.asarray(wq).T)
    return PackedWeight(wt.astype(np.float32), wt.astype(np.int8),
                        np.asarray(wq, np.int64).sum(axis=1))


#: K per float32 BLAS call: every partial sum is an integer of magnitude at most
#: K * 127 * 128, exact in float32 below 2**24 (1032 * 16256 = 16776192)
_SGEMM_K = (2**24 - 1) // (127 * 128)
#: batches up to this many rows take the int8 kernel (a GEMV through float32 BLAS is bound
#: by streaming 4 bytes per weight; the kernel streams one)
_KERNEL_MAX_M = 4


def _gemm_u7s8(xq, packed, blas=False):
    """Exact ``xq @ wq^T`` (int64) for activation codes in [0, 127] (reduce_range) and int8
    weights: every product pair is at most 2 * 127 * 128 = 32512 in magnitude, so AVX2's
    int16 pair saturation cannot trigger, and every partial sum over k terms is an integer
    of magnitude at most k * 127 * 128, so any summation order gives the exact sum while
    the partial sums stay inside the carrier's exact range.

    * Batches of at most ``_KERNEL_MAX_M`` rows with ``K * 127 * 128 < 2**31``: int32
      accumulation in the Numba kernel ``refcomp._jit.quant_kernels.gemm_u7s8_int8``
      over the int8 weights (no overflow: exact).
    * Otherwise (and with ``blas=True`` or the JIT disabled): float32 BLAS on the float32
      codes over blocks of at most ``_SGEMM_K`` columns of K (each block sum exact below
      2**24), the block results added in int64.
    """
    M, K = xq.shape
    N = packed.wt32.shape[1]
    if (not blas and M <= _KERNEL_MAX_M and K * 127 * 128 < 2**31 and M * K * N
            and _jit.enabled()):
        from .._jit.quant_kernels import gemm_u7s8_int8
        out = np.empty((M, N), np.int64)
        gemm_u7s8_int8(xq.astype(np.int32), packed.wt8, out)
        return out
    x32 = np.asarray(xq, np.float32)
    if K <= _SGEMM_K:
        return (x32 @ packed.wt32).astype(np.int64)
    nb = -(-K // _SGEMM_K)
    step = -(-K // nb)
    acc = np.zeros((M, N), np.int64)
    for k0 in range(0, K, step):
        acc += (x32[:, k0:k0 + step] @ packed.wt32[k0:k0 + step]).astype(np.int64)
    return acc


def dynamic_linear_forward(x, wq, w_scale, w_zero_point, bias=None, relu=False,
                           int16_pairs=True, name="DynamicQuantizedLinear", packed=None):
    """y = x W^T + b with per-call quantized activations (fbgemm dynamic int8 Linear).

    Parameters
    ----------
    x : (..., D_in) float values (rounded to float32), at least 2-D as torch requires
    wq : (D_out, D_in) int8 weight codes
    w_scale : (1,) or (D_out,) float32 weight scales; w_zero_point : same shape, integers
    bias : (D_out,) float values (rounded to float32) or None
    relu : bool, ``LinearReLU`` (``quantized::linear_relu_dynamic``)
    int16_pairs : bool, AVX2 pair saturation (True: this machine; False: AVX512-VNNI)
    name : str, for error messages
    packed : PackedWeight of `wq` (:func:`pack_weight`), optional: the weight-side work done
        once (the module passes it); `wq` is then trusted to be checked

    Returns
    -------
    y : (..., D_out) float64 array of float32 values
    cache : DynamicLinearCache

    Notes
    -----
    Steps 1-4 of the module docstring (torch 2.13 ``qlinear_dynamic.cpp``
    ``PackedLinearWeight::apply_dynamic_impl``; fbgemm ``QuantUtilsAvx2.cc``).

    Examples
    --------
    >>> import numpy as np
    >>> wq, s, z = quantize_weight_dynamic(np.eye(2))
    >>> y, c = dynamic_linear_forward(np.array([[0.5, -1.0]]), wq, s, z, bias=[0.0, 1.0])
    >>> y.tolist(), float(c.x_scale), c.x_zero_point
    ([[0.4941176772117615, -5.171750672161579e-08]], 0.011811023578047752, 85)
    """
    wq = np.asarray(wq)
    if wq.ndim != 2 or wq.dtype.kind not in "iu" or (packed is None and wq.size and (
            wq.min() < -128 or wq.max() > 127)):
        raise ValueError(f"{name}: weight codes must be a 2-D integer array in [-128, 127], "
                         f"got shape {wq.shape}, dtype {wq.dtype}")
    N, K = wq.shape
    ws = np.asarray(w_scale, np.float32).reshape(-1)
    wz = np.asarray(w_zero_point, np.int64).reshape(-1)
    if ws.shape != wz.shape or ws.shape[0] not in (1, N):
        raise ValueError(f"{name}: w_scale {ws.shape} and w_zero_point {wz.shape} must both "
                         f"be (1,) or ({N},)")
    xv = _f32_array(x, "x", name)
    if xv.ndim < 2:
        raise ValueError(f"{name}: the dimension of input tensor should be larger than or "
                         f"equal to 2 (torch's check), got shape {xv.shape}")
    if xv.shape[-1] != K:
        raise ValueError(f"{name}: input has {xv.shape[-1]} features, the weight expects {K}")
    x2 = xv.reshape(-1, K)                                            # (M, K) float32
    # 1. activation qparams from the whole tensor (ATen ChooseQuantizationParams)
    mn, mx = (float(x2.min()), float(x2.max())) if x2.size else (0.0, 0.0)
    if not (np.isfinite(mn) and np.isfinite(mx)):                     # inf / NaN: the error
        _f32(x, "x", name)
    s_x, z_x = choose_qparams_fbgemm(mn, mx, 0, 255, reduce_range=True, source="aten")
    # 2. legacy fbgemm quantization: rne(fma(x, 1/s, z)), clamped to uint8
    q, xq = _quantize_fused(x2, s_x, z_x)
    # 3. u8 x s8 GEMM on the codes (int32, optional AVX2 pair saturation), then the
    #    zero-point corrections with fbgemm's row / column offsets
    if packed is not None and (xq.size == 0 or float(q.max()) <= 127):
        acc = _gemm_u7s8(q, packed)                                   # (M, N), exact
        col_sum = packed.col_sum
    else:
        model = "u8s8-int32-avx2" if int16_pairs else "u8s8-int32-wrap"
        acc = matmul(xq, wq.astype(np.int64).T, model)                # (M, N)
        col_sum = wq.astype(np.int64).sum(axis=1)
    col_off = col_sum - wz * K                                        # (N,)
    raw = acc
    if z_x:
        raw -= z_x * col_off[None, :]
    if wz.any():
        raw -= xq.sum(axis=1, keepdims=True) * wz[None, :]            # row offsets
    lo, hi = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
    if lo < -(1 << 31) or hi >= (1 << 31):
        raw = _wrap32(raw)
    # 4. float output: fma(f32(raw), f32(s_x * s_w), bias) (contracted AVX2 code);
    #    cvtepi32_ps rounds |raw| >= 2**24 to float32 (RNE; raw is exact in float64)
    rf = raw.astype(np.float64)
    if lo <= -(1 << 24) or hi >= (1 << 24):
        rf = rf.astype(np.float32).astype(np.float64)
    mult = _fma_f32(np.float64(s_x), ws.astype(np.float64), None).astype(np.float64)
    if bias is None:
        y = _fma_f32(rf, mult[None, :], None)
    else:
        b = _f32_array(bias, "bias", name)
        if not np.isfinite(b).all():
            _f32(bias, "bias", name)
        if b.shape != (N,):
            raise ValueError(f"{name}: bias has shape {b.shape}, expected ({N},)")
        y = _fma_f32(rf, mult[None, :], b.astype(np.float64)[None, :])
    if relu:
        y = np.where(0 > y, np.float32(0), y)  # _mm256_max_ps(0, y) = 0 > y ? 0 : y (-0 kept)
    y = y.astype(np.float64).reshape(xv.shape[:-1] + (N,))
    return y, DynamicLinearCache(np.float32(s_x), int(z_x), xq, raw)


class DynamicQuantizedLinear(Module):
    """torch.ao.nn.quantized.dynamic.Linear (or ``LinearReLU`` with ``relu=True``), qint8.

    Parameters
    ----------
    weight : (D_out, D_in) float weight (rounded to float32), quantized at construction
    bias : (D_out,) or None, kept in float32
    per_channel : bool, ``per_channel_dynamic_qconfig`` instead of ``default_dynamic_qconfig``
    relu : bool, fused ReLU (``torch.ao.nn.intrinsic.quantized.dynamic.LinearReLU``)
    int16_pairs : bool, the AVX2 GEMM's pair saturation (module docstring)

    Attributes: ``wq``, ``w_scale``, ``w_zero_point``, ``bias``.  Like torch's module it
    has no parameters (``named_parameters()`` is empty) and no backward.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> q = DynamicQuantizedLinear.from_float(nn.Linear(3, 2, rng=np.random.default_rng(0)))
    >>> y, cache = q.forward(np.ones((4, 3)))
    >>> y.shape, cache.xq.shape
    ((4, 2), (4, 3))
    """

    def __init__(self, weight, bias=None, per_channel=False, relu=False, int16_pairs=True):
        super().__init__()
        self.wq, self.w_scale, self.w_zero_point = quantize_weight_dynamic(
            weight, per_channel, name=self.name)
        self.bias = None if bias is None else _f32(bias, "bias", self.name)
        if self.bias is not None and self.bias.shape != (self.wq.shape[0],):
            raise ValueError(f"{self.name}: bias has shape {self.bias.shape}, expected "
                             f"({self.wq.shape[0]},)")
        self.per_channel, self.relu, self.int16_pairs = bool(per_channel), bool(relu), \
            bool(int16_pairs)
        self.packed = pack_weight(self.wq)

    @classmethod
    def from_float(cls, mod, per_channel=False, int16_pairs=True):
        """From a refcomp.nn ``Linear`` or a fused ``LinearReLU`` (torch ``from_float``)."""
        relu = isinstance(mod, LinearReLU)
        lin = mod.layers[0] if relu else mod
        if type(lin) is not Linear:
            raise TypeError(f"DynamicQuantizedLinear.from_float needs a refcomp.nn Linear "
                            f"or LinearReLU, got {type(mod).__name__}")
        return cls(lin.params["weight"], lin.params.get("bias"), per_channel, relu,
                   int16_pairs)

    def forward(self, x, policy=None, rng=None, train=False):
        """``(y, cache)``: :func:`dynamic_linear_forward`.  `policy`, `rng` and `train` are
        accepted for :class:`refcomp.nn.Sequential` and ignored: the numerics are fbgemm's
        (float32 input and output)."""
        return dynamic_linear_forward(x, self.wq, self.w_scale, self.w_zero_point, self.bias,
                                      self.relu, self.int16_pairs, self.name, self.packed)

    def backward(self, dy, cache, rng=None, need_dx=True):
        raise NotImplementedError(f"{self.name}: dynamic quantized Linear has no backward "
                                  "(torch's quantized::linear_dynamic is not differentiable)")


def _swap(mod, per_channel, linear_relu, int16_pairs):
    if type(mod) is Linear or (linear_relu and isinstance(mod, LinearReLU)):
        return DynamicQuantizedLinear.from_float(mod, per_channel, int16_pairs)
    if isinstance(mod, LinearReLU):
        return mod                    # torch leaves fused modules it does not map as they are
    if isinstance(mod, Sequential):
        for i, m in enumerate(mod.layers):
            new = _swap(m, per_channel, linear_relu, int16_pairs)
            if new is not m:
                new.name = f"{type(new).__name__} (layer {i})"
                mod.layers[i] = new
    elif isinstance(mod, Residual):
        mod.block = _swap(mod.block, per_channel, linear_relu, int16_pairs)
        if mod.shortcut is not None:
            mod.shortcut = _swap(mod.shortcut, per_channel, linear_relu, int16_pairs)
    return mod


def quantize_dynamic(model, per_channel=False, linear_relu=False, int16_pairs=True,
                     inplace=False):
    """Replace every refcomp.nn ``Linear`` of a model by a :class:`DynamicQuantizedLinear`.

    Parameters
    ----------
    model : refcomp.nn Module (Sequential / Residual trees are searched; a bare Linear is
        replaced itself)
    per_channel : bool
        ``{nn.Linear: per_channel_dynamic_qconfig}`` instead of the default qconfig.
    linear_relu : bool
        Also map fused :class:`refcomp.quant.fuse.LinearReLU` containers (torch:
        ``qconfig_spec={nn.Linear, nni.LinearReLU}``).  By default they stay float, as
        torch's default ``qconfig_spec`` leaves ``LinearReLU`` (and the Linear inside it).
    int16_pairs : bool, AVX2 pair saturation of the GEMM (module docstring)
    inplace : bool, modify `model` (default: a deep copy)

    Returns
    -------
    the quantized model

    Notes
    -----
    torch 2.13 ``torch/ao/quantization/quantize.py::quantize_dynamic`` with ``dtype=qint8``
    (x86 / fbgemm engine).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> r = np.random.default_rng(0)
    >>> m = quantize_dynamic(nn.Sequential(nn.Linear(4, 8, rng=r), nn.ReLU(),
    ...                                    nn.Linear(8, 2, rng=r)))
    >>> [type(c).__name__ for c in m.layers]
    ['DynamicQuantizedLinear', 'ReLU', 'DynamicQuantizedLinear']
    """
    if not isinstance(model, Module):
        raise TypeError(f"quantize_dynamic: model must be a refcomp.nn Module, got "
                        f"{type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    return _swap(model, bool(per_channel), bool(linear_relu), bool(int16_pairs))
