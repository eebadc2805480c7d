"""Integer-only int8 fully-connected and convolution layers with TFLite's fixed-point
requantization (the "TFLite / gemmlowp" profile of static quantization).

Mirrors the reference kernels of TFLite (tensorflow/tflite-micro @ 90b983c2,
``tensorflow/lite/kernels/internal/reference/integer_ops/fully_connected.h`` and
``conv.h``, ``ConvPerChannel``) and the converter's bias quantization
(``tensorflow/lite/tools/optimize/quantization_utils.cc``):

1. ``acc = sum_k (w + w_offset)(x + in_offset)`` in int32, ``in_offset = -in_zp``,
   ``w_offset = -w_zp`` (0 for the symmetric per-channel weights of int8 TFLite); a
   convolution skips taps outside the input ("zero padding by omitting"), which equals
   padding with ``in_zp``;
2. ``acc += bias_q[c]`` (int32, :func:`quantize_bias`);
3. ``acc = MultiplyByQuantizedMultiplier(acc, M[c], shift[c])``
   (:func:`refcomp.ops.multiply_by_quantized_multiplier`, the default double-rounding
   build), with ``(M, shift) = QuantizeMultiplier(eff)`` (:func:`multipliers`);
4. ``acc += out_zp``, clamped to ``[act_min, act_max]`` (int8 range, or the fused
   activation's range, :func:`activation_range`).

An int32 overflow of the accumulator is undefined behaviour in the C++ kernels; here it is
a ValueError naming the output element.
"""

from __future__ import annotations

import numpy as np

from ..ops.conv import _pair
from ..ops.requant import multiply_by_quantized_multiplier, quantize_multiplier
from ._checks import to_f32

__all__ = ["quantize_bias", "multipliers", "activation_range", "fully_connected",
           "conv2d"]

_I32 = 2**31 - 1


def _f32(v):
    """Values rounded to float32 (nearest even), as float64 values."""
    return to_f32(v).astype(np.float64)


def _positive(v, what):
    a = np.atleast_1d(np.asarray(v, np.float64))
    if not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError(f"{what} must be positive and finite, got {a.tolist()}")
    return a


def quantize_bias(bias, in_scale, w_scale):
    """int32 bias codes: ``inv = f32(1 / f32(in_s * w_s))`` (double division, float
    result), ``q = round_half_away(f32(b * inv))``, clamped to ``[-(2**31 - 1),
    2**31 - 1]`` (``SymmetricPerLayerBiasQuantize`` / ``SymmetricPerChannelBiasQuantize``,
    ``TfLiteRound`` = ``std::round``).  `w_scale` is a scalar or one per output channel.

    >>> quantize_bias([0.5, -0.25], 0.5, [0.1, 0.1]).tolist()
    [10, -5]
    """
    b = _f32(bias)
    sf = _f32(_f32(_positive(in_scale, "in_scale")) * _f32(_positive(w_scale, "w_scale")))
    inv = _f32(1.0 / sf)
    t = _f32(b * inv)
    q = np.sign(t) * np.floor(np.abs(t) + 0.5)                   # std::round (exact)
    return np.clip(q, -_I32, _I32).astype(np.int64)


def multipliers(in_scale, w_scale, out_scale, per_channel=True):
    """``(M, shift)`` per output channel from the effective scale ``in_s * w_s / out_s``:
    per-channel int8 kernels compute it in double from the float32 scales
    (``PopulateConvolutionQuantizationParams``); per-tensor (``per_channel=False``,
    ``GetQuantizedConvolutionMultipler``) rounds ``in_s * w_s`` to float first."""
    i, w, o = (_f32(_positive(v, n)) for v, n in ((in_scale, "in_scale"),
                                                    (w_scale, "w_scale"),
                                                    (out_scale, "out_scale")))
    eff = i * w / o if per_channel else _f32(i * w) / o
    m, s = quantize_multiplier(eff)
    return np.atleast_1d(m).astype(np.int64), np.atleast_1d(s).astype(np.int64)


def activation_range(kind, out_scale, out_zp, qmin=-128, qmax=127):
    """``CalculateActivationRangeQuantized``: ``"none"`` the full range, ``"relu"``
    ``[max(qmin, zp), qmax]``, ``"relu6"`` ``[max(qmin, zp), min(qmax, zp +
    round_half_away(6 / s))]`` (``6 / s`` in float32)."""
    if kind == "none":
        return qmin, qmax
    lo = max(qmin, int(out_zp))
    if kind == "relu":
        return lo, qmax
    if kind == "relu6":
        t = float(_f32(6.0 / _f32(_positive(out_scale, "out_scale"))[0]))
        return lo, min(qmax, int(out_zp) + int(np.sign(t) * np.floor(abs(t) + 0.5)))
    raise ValueError(f"activation {kind!r} unknown (none, relu, relu6)")


def _codes(a, what):
    a = np.asarray(a)
    if a.dtype.kind not in "iu" or (a.size and (a.min() < -128 or a.max() > 127)):
        raise ValueError(f"{what} must hold int8 codes, got dtype {a.dtype}, range "
                         f"[{a.min() if a.size else ''}, {a.max() if a.size else ''}]")
    return a.astype(np.int64)


def _requant(acc, bias_q, M, shift, out_zp, act_min, act_max):
    """Steps 2-4 on int64 accumulators (N, C)."""
    if bias_q is not None:
        acc = acc + np.asarray(bias_q, np.int64)[None, :]
    if acc.size and (acc.min() < -2**31 or acc.max() > _I32):
        i = np.unravel_index(int(np.argmax((acc < -2**31) | (acc > _I32))), acc.shape)
        raise ValueError(f"int32 accumulator overflow at output {tuple(int(j) for j in i)}: "
                         f"{int(acc[i])} (undefined behaviour in TFLite's kernel)")
    r = multiply_by_quantized_multiplier(acc, M[None, :], shift[None, :])
    return np.clip(np.asarray(r, np.int64) + int(out_zp), act_min, act_max)


def fully_connected(xq, in_zp, wq, bias_q, M, shift, out_zp, act_min=-128, act_max=127,
                    w_zp=0):
    """TFLite ``reference_integer_ops::FullyConnected`` (int8): xq (N, K), wq (C, K) int8
    codes, `bias_q` (C,) int32 or None, `M`, `shift` scalars or (C,); returns (N, C) int8
    codes (module docstring).

    >>> fully_connected([[10, -3]], 0, [[2, 4]], None, 2**30, 0, 5).tolist()
    [[9]]
    """
    xq, wq = _codes(xq, "xq"), _codes(wq, "wq")
    if xq.ndim != 2 or wq.ndim != 2 or xq.shape[1] != wq.shape[1]:
        raise ValueError(f"fully_connected: xq {xq.shape} and wq {wq.shape} must be (N, K) "
                         "and (C, K)")
    C = wq.shape[0]
    M, shift = (np.broadcast_to(np.asarray(v, np.int64), (C,)) for v in (M, shift))
    acc = (xq - int(in_zp)) @ (wq - int(w_zp)).T                   # exact int64
    return _requant(acc, bias_q, M, shift, out_zp, act_min, act_max)


def conv2d(xq, in_zp, wq, bias_q, M, shift, out_zp, act_min=-128, act_max=127, *,
           stride=1, padding=0, dilation=1):
    """TFLite ``reference_integer_ops::ConvPerChannel`` (int8, one group): xq (N, C, H, W)
    and wq (O, C, R, S) int8 codes in NCHW / OIHW (TFLite stores NHWC / OHWI; the sums are
    the same), explicit zero padding (taps outside the input are skipped); returns
    (N, O, Ho, Wo) int8 codes."""
    xq, wq = _codes(xq, "xq"), _codes(wq, "wq")
    if xq.ndim != 4 or wq.ndim != 4 or xq.shape[1] != wq.shape[1]:
        raise ValueError(f"conv2d: xq {xq.shape} and wq {wq.shape} must be (N, C, H, W) and "
                         "(O, C, R, S)")
    N, C, H, W = xq.shape
    O, _, R, S = wq.shape
    st, pd, dl = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    Ho = (H + 2 * pd[0] - dl[0] * (R - 1) - 1) // st[0] + 1
    Wo = (W + 2 * pd[1] - dl[1] * (S - 1) - 1) // st[1] + 1
    if Ho < 1 or Wo < 1 or min(st + dl) < 1 or min(pd) < 0:
        raise ValueError(f"conv2d: kernel {(R, S)}, stride {st}, padding {pd}, dilation {dl} "
                         f"do not fit the input {(H, W)}")
    xs = np.pad(xq - int(in_zp), ((0, 0), (0, 0), (pd[0], pd[0]), (pd[1], pd[1])))
    acc = np.zeros((N, Ho, Wo, O), np.int64)
    for r in range(R):
        for s in range(S):
            tap = xs[:, :, r * dl[0]:r * dl[0] + st[0] * (Ho - 1) + 1:st[0],
                     s * dl[1]:s * dl[1] + st[1] * (Wo - 1) + 1:st[1]]   # (N, C, Ho, Wo)
            acc += np.einsum("nchw,oc->nhwo", tap, wq[:, :, r, s])   # exact int64
    M, shift = (np.broadcast_to(np.asarray(v, np.int64), (O,)) for v in (M, shift))
    out = _requant(acc.reshape(-1, O), bias_q, M, shift, out_zp, act_min, act_max)
    return out.reshape(N, Ho, Wo, O).transpose(0, 3, 1, 2)
