"""Integer-only quantized Linear and Conv2d of static post-training quantization, as torch
2.13's fbgemm kernels compute them (``quantized::linear`` / ``quantized::conv2d``; the
``x86`` engine takes the same fbgemm path on CPUs without AVX512-VNNI, and always for
Linear).

Given a quint8 input ``xq`` (scale ``s_x``, zero point ``z_x``), int8 weights ``wq``
(per-tensor or per-output-channel scales ``s_w``, zero points ``z_w``), a float32 bias and
the output qparams ``(s_y, z_y)``:

1. ``raw[m, n] = sum_k (xq - z_x)(wq - z_w)`` in int32, computed as fbgemm does: the
   u8 x s8 GEMM ``acc`` on the raw codes, then ``acc - z_x * col_off[n] - row_off[m] *
   z_w[n]`` with ``col_off[n] = sum_k wq[n, k] - z_w[n] K`` (fbgemm ``PackAWithRowOffset``,
   ``ReQuantizeOutput``).  On AVX2 without VNNI the GEMM adds each adjacent pair of
   products saturated to int16 first (``vpmaddubsw``; model ``u8s8-int32-avx2``), which
   changes ``acc`` when both activations of a pair are large; ``int16_pairs=False`` models
   VNNI's exact ``vpdpbusd``.  A convolution's K runs over (kernel row, kernel column,
   channel), channel fastest within a group (fbgemm's NHWC im2col), padded taps holding
   ``z_x``.
2. Scales in float32 (fbgemm ``GetQuantizationParams``): ``atw[n] = f32(f32(s_x) *
   s_w[n])``, ``mult[n] = f32(atw[n] / f32(s_y))``.
3. The float bias is folded in float32, never quantized to int32
   (``requantizeOutputProcessingAvx2``, ``BIAS_TYPE = float``): per-tensor weights
   ``xf = fma(bias[n], f32(1 / atw), f32(raw))`` (the compiler contracts ``bias * rcp +
   raw`` into one FMA), per-channel weights ``xf = f32(f32(raw) + f32(bias[n] / atw[n]))``.
4. ``q_y = clamp(rne(f32(xf * mult[n])) + z_y, relu ? z_y : 0, 255)``.

Source: torch 2.13 ``aten/src/ATen/native/quantized/cpu/qlinear.cpp``
(``PackedLinearWeight::apply_impl``), ``qconv.cpp`` (``PackedConvWeight::apply_impl``), and
FBGEMM ``src/QuantUtilsAvx2.cc`` / ``include/fbgemm/OutputProcessing-inl.h`` at the version
torch 2.13 pins.  Measured bit-exact against torch 2.13.0+cpu (``tests/test_quant_static.py``).
Every float32 operation is one IEEE float32 operation (NumPy float32 arithmetic, correctly
rounded) or :func:`refcomp.ops.fma` in float32.
"""

from __future__ import annotations

import numpy as np

from ..ops import fma, matmul
from ..ops.conv import _pair
from ._checks import to_f32 as _f32

__all__ = ["quantized_linear", "quantized_conv2d", "requantize_fbgemm"]


def _codes(a, what, lo, hi):
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integer codes, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        bad = a[(a < lo) | (a > hi)].flat[0]
        raise ValueError(f"{what} holds {int(bad)}, outside [{lo}, {hi}]")
    return a


def _scale(s, what, n=None):
    s = np.atleast_1d(np.asarray(s, np.float64))
    if s.ndim != 1 or (n is not None and s.size not in (1, n)):
        raise ValueError(f"{what} must be a scalar or have {n} entries, got shape {s.shape}")
    if not np.all(np.isfinite(s) & (s > 0)):
        bad = s[~(np.isfinite(s) & (s > 0))][0]
        raise ValueError(f"{what} must be positive and finite, got {bad!r}")
    return s


def _zp(z, what, lo, hi, n=None):
    z = np.atleast_1d(np.asarray(z))
    if z.dtype.kind not in "iu" or z.ndim != 1 or (n is not None and z.size not in (1, n)):
        raise ValueError(f"{what} must be an integer scalar or {n} integers, got {z!r}")
    z = z.astype(np.int64)
    if z.min() < lo or z.max() > hi:
        raise ValueError(f"{what}={z.tolist()} outside [{lo}, {hi}]")
    return z


def requantize_fbgemm(raw, x_scale, w_scale, bias, out_scale, out_zero_point, relu=False):
    """Steps 2-4 of the module docstring: int32 ``raw`` (M, N) -> quint8 codes (M, N).

    `w_scale` has 1 (per-tensor) or N (per-channel) entries; `bias` is None or (N,) float32
    values."""
    raw = np.asarray(raw, np.int64)
    N = raw.shape[-1]
    ws = _f32(_scale(w_scale, "w_scale", N))
    per_channel = ws.size > 1
    atw = _f32(_scale(x_scale, "x_scale", 1))[0] * ws         # float32 product, IEEE
    mult = atw / _f32(_scale(out_scale, "out_scale", 1))[0]   # float32 quotient, IEEE
    xf = _f32(raw)                                            # cvtepi32_ps (nearest-even)
    if bias is not None:
        b = np.asarray(bias, np.float32)
        if per_channel:
            xf = xf + b / atw                                 # two float32 ops, no FMA
        else:
            rcp = np.float32(1.0) / atw                       # float32 reciprocal
            xf = np.asarray(fma(b, rcp, xf, "float32"), np.float32)
    y = xf * mult                                             # float32 product, IEEE
    r = np.rint(y).astype(np.int64)                           # cvtps_epi32: half to even
    lo = int(out_zero_point) if relu else 0
    return np.clip(r + int(out_zero_point), lo, 255)


def _checks(x_scale, x_zero_point, w_scale, w_zero_point, out_scale, out_zero_point, n):
    _scale(x_scale, "x_scale", 1)
    _scale(out_scale, "out_scale", 1)
    ws = _scale(w_scale, "w_scale", n)
    zw = _zp(w_zero_point, "w_zero_point", -128, 127, n)
    zx = int(_zp(x_zero_point, "x_zero_point", 0, 255, 1)[0])
    zy = int(_zp(out_zero_point, "out_zero_point", 0, 255, 1)[0])
    return ws, zw, zx, zy


def _raw(A, W, zx, zw, int16_pairs):
    """int32 ``sum_k (A - zx)(W - zw)`` the fbgemm way: A (M, K) u8 codes, W (N, K) s8."""
    model = "u8s8-int32-avx2" if int16_pairs else "u8s8-int32-wrap"
    acc = np.asarray(matmul(A, W.T, model), np.int64)                   # (M, N)
    K = A.shape[1]
    col_off = W.sum(axis=1) - np.broadcast_to(zw, (W.shape[0],)) * K    # (N,)
    row_off = A.sum(axis=1)                                             # (M,)
    raw = acc - zx * col_off[None, :] - row_off[:, None] * zw[None, :]
    return (raw + 2**31) % 2**32 - 2**31                                # int32 wrap


def quantized_linear(xq, x_scale, x_zero_point, wq, w_scale, w_zero_point, bias,
                     out_scale, out_zero_point, *, relu=False, int16_pairs=True):
    """torch 2.13 ``quantized::linear`` (``relu=True``: ``quantized::linear_relu``), fbgemm.

    Parameters
    ----------
    xq : (..., K) quint8 codes (integers in [0, 255])
    x_scale, x_zero_point : the input's qparams
    wq : (N, K) qint8 codes
    w_scale, w_zero_point : scalars (per-tensor) or (N,) (per-channel, axis 0)
    bias : (N,) float32 values or None
    out_scale, out_zero_point : the output's qparams
    relu : clamp below at the output zero point
    int16_pairs : model AVX2's int16 pair saturation (True) or VNNI's exact products

    Returns
    -------
    (..., N) int64 array of quint8 codes.

    Examples
    --------
    >>> quantized_linear([[130, 120]], 0.5, 128, [[2, -1]], 0.25, 0, None, 1.0, 100).tolist()
    [[102]]
    """
    xq = _codes(xq, "xq", 0, 255)
    wq = _codes(wq, "wq", -128, 127)
    if wq.ndim != 2 or xq.ndim < 1 or xq.shape[-1] != wq.shape[1]:
        raise ValueError(f"quantized_linear: xq {xq.shape} and wq {wq.shape} do not match "
                         "((..., K) and (N, K))")
    N = wq.shape[0]
    _, zw, zx, zy = _checks(x_scale, x_zero_point, w_scale, w_zero_point, out_scale,
                            out_zero_point, N)
    if bias is not None and np.shape(bias) != (N,):
        raise ValueError(f"quantized_linear: bias shape {np.shape(bias)} != ({N},)")
    A = xq.reshape(-1, xq.shape[-1])
    raw = _raw(A, wq, zx, zw, int16_pairs)
    out = requantize_fbgemm(raw, x_scale, w_scale, bias, out_scale, zy, relu)
    return out.reshape(xq.shape[:-1] + (N,))


def quantized_conv2d(xq, x_scale, x_zero_point, wq, w_scale, w_zero_point, bias,
                     out_scale, out_zero_point, *, stride=1, padding=0, dilation=1, groups=1,
                     relu=False, int16_pairs=True):
    """torch 2.13 ``quantized::conv2d`` (``relu=True``: ``quantized::conv2d_relu``), fbgemm:
    NCHW quint8 codes in, NCHW quint8 codes out (torch computes channels-last; the values
    are the same).

    `wq` is (O, C / groups, R, S) qint8 codes; other parameters as
    :func:`quantized_linear`.  Zero padding is the input zero point (a real zero).
    """
    xq = _codes(xq, "xq", 0, 255)
    wq = _codes(wq, "wq", -128, 127)
    if xq.ndim != 4 or wq.ndim != 4:
        raise ValueError(f"quantized_conv2d: xq {xq.shape} and wq {wq.shape} must be 4-D")
    N, C, H, W = xq.shape
    O, Cg, R, S = wq.shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1 \
            or C % groups or O % groups or C // groups != Cg:
        raise ValueError(f"quantized_conv2d: groups={groups!r} does not fit input channels "
                         f"{C}, output channels {O} and weight in_channels {Cg}")
    _, zw, zx, zy = _checks(x_scale, x_zero_point, w_scale, w_zero_point, out_scale,
                            out_zero_point, O)
    if bias is not None and np.shape(bias) != (O,):
        raise ValueError(f"quantized_conv2d: bias shape {np.shape(bias)} != ({O},)")
    st, pd, dl = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(st + dl) < 1 or min(pd) < 0:
        raise ValueError(f"quantized_conv2d: stride {stride!r}, dilation {dilation!r} must be "
                         f">= 1 and padding {padding!r} >= 0")
    Ho = (H + 2 * pd[0] - dl[0] * (R - 1) - 1) // st[0] + 1
    Wo = (W + 2 * pd[1] - dl[1] * (S - 1) - 1) // st[1] + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"quantized_conv2d: kernel {(R, S)} does not fit the input {(H, W)}")
    xp = np.pad(xq, ((0, 0), (0, 0), (pd[0], pd[0]), (pd[1], pd[1])), constant_values=zx)
    # patches (N, Ho, Wo, R, S, C): K ordered (r, s, c), channel fastest (fbgemm NHWC)
    taps = [[xp[:, :, r * dl[0]:r * dl[0] + st[0] * (Ho - 1) + 1:st[0],
                s * dl[1]:s * dl[1] + st[1] * (Wo - 1) + 1:st[1]] for s in range(S)]
            for r in range(R)]
    cols = np.stack([np.stack(row, axis=-1) for row in taps], axis=-2)   # (N,C,Ho,Wo,R,S)
    cols = cols.transpose(0, 2, 3, 4, 5, 1).reshape(N * Ho * Wo, R, S, C)
    Og = O // groups
    zw_full = np.broadcast_to(zw, (O,))
    raw = np.empty((N * Ho * Wo, O), np.int64)
    for g in range(groups):
        A = cols[..., g * Cg:(g + 1) * Cg].reshape(N * Ho * Wo, R * S * Cg)
        Wg = wq[g * Og:(g + 1) * Og].transpose(0, 2, 3, 1).reshape(Og, R * S * Cg)
        raw[:, g * Og:(g + 1) * Og] = _raw(A, Wg, zx, zw_full[g * Og:(g + 1) * Og],
                                           int16_pairs)
    out = requantize_fbgemm(raw, x_scale, w_scale, bias, out_scale, zy, relu)
    return out.reshape(N, Ho, Wo, O).transpose(0, 3, 1, 2)
