"""Learnable fake quantization (LSQ, Esser et al. 2020) as torch 2.13 CPU computes it:
``torch._fake_quantize_learnable_per_tensor_affine`` / ``_per_channel_affine``.

Forward as :mod:`refcomp.quant.fake_quant` with the zero point rounded (per tensor
``nearbyint``, per channel ``round``, both half to even, then clamped); backward per
element (``aten/src/ATen/native/quantized/cpu/kernels/QuantizedOpKernels.cpp``,
``fake_quantize_learnable_*_grad_kernel_cpu``), then the scale and zero-point gradients
summed by torch's float32 ``cascade_sum`` (:func:`refcomp.quant.torchsum.torch_sum_f32`).
Per channel with ``axis != 0``, torch reduces the scale and zero-point gradients in
another order: those two are then within a reordered-float32-sum bound, not bit-exact.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .fake_quant import (F32, _along, _axis, _f32, _fma32, _fq_channel_int, _fq_tensor,
                         _qrange, _scales, _to_int64, _x)
from .torchsum import _sum_except, torch_sum_f32

__all__ = ["LearnableCache", "fake_quantize_learnable_per_tensor_forward",
           "fake_quantize_learnable_per_tensor_backward",
           "fake_quantize_learnable_per_channel_forward",
           "fake_quantize_learnable_per_channel_backward"]


class LearnableCache(NamedTuple):
    """What the LSQ backward reads: the inputs, as torch's backward kernels do."""

    x: np.ndarray               # float32, input
    scale: np.ndarray           # float32, (1,) or (C,)
    zero_point: np.ndarray      # float32 (learnable, unrounded), (1,) or (C,)
    axis: int | None            # None: per tensor
    qmin: int
    qmax: int
    grad_factor: np.float32
    fma: bool
    sum_width: int


def _lsq_check(x, scale, zero_point, qmin, qmax, grad_factor, n):
    qmin, qmax = _qrange(qmin, qmax)
    if not qmin <= 0 <= qmax:
        raise ValueError(f"quant range [{qmin}, {qmax}] must include 0 (torch: `quant_min` "
                         f"<= 0 and `quant_max` >= 0)")
    s = _scales(scale).reshape(-1)
    z = _x(zero_point, "zero_point").reshape(-1)
    for name, a in (("scale", s), ("zero_point", z)):
        if a.size != n:
            raise ValueError(f"{name} must have {n} element(s), got {a.size}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"zero_point must be finite, got {z.tolist()}")
    gf = _f32(float(grad_factor))                      # double argument narrowed to float
    return s, z, qmin, qmax, gf


def _lsq_grads(x, dy, s, zpf, zpi, qmin, qmax, gf, fma):
    """Per-element dX, dScale, dZp (``fake_quantize_learnable_*_grad_kernel_cpu``).

    `zpf`: the zero point as a float32 (broadcast); `zpi`: as int64 (per tensor, where the
    kernel subtracts integers) or None (per channel: float subtraction).
    """
    with np.errstate(all="ignore"):
        inv = F32(1) / s                                            # float32 divide
        xb, invb, zb, sb = np.broadcast_arrays(x, inv, zpf, s)
        v = _fma32(xb, invb, zb) if fma else zb + xb * invb         # zp added BEFORE rounding
        xqi = _to_int64(np.rint(v))                                 # nearbyint, (int64)
        inr = (xqi >= qmin) & (xqi <= qmax)
        dx = dy * inr.astype(F32)                                   # float32 multiply
        xc = np.clip(xqi, qmin, qmax)
        diff = (xc - zpi).astype(F32) if zpi is not None else xc.astype(F32) - zb
        d = _fma32(diff, sb, -xb) if fma else diff * sb - xb        # (xc - zp)*s - x
        ds_in = dy * d * invb * gf                                  # ((dy*d)*inv)*gf, f32
        small, big = F32(qmin) - zb, F32(qmax) - zb
        ds_out = np.where(xqi < qmin, dy * small, dy * big) * gf
        dz_out = dy * F32(-1) * sb * gf                             # ((dy*-1)*s)*gf
        ds = np.where(inr, ds_in, ds_out).astype(F32)
        dz = np.where(inr, F32(0), dz_out).astype(F32)
    return dx.astype(F32), ds, dz


def fake_quantize_learnable_per_tensor_forward(x, scale, zero_point, qmin, qmax,
                                               grad_factor=1.0, *, fma=True, sum_width=8):
    """``torch._fake_quantize_learnable_per_tensor_affine`` forward: ``(y, cache)``.

    Parameters
    ----------
    x : array_like, float32
    scale : float or (1,), positive finite (learnable); zero_point : float or (1,) (learnable,
        not rounded)
    qmin, qmax : int with ``qmin <= 0 <= qmax`` (the backward's check)
    grad_factor : float, narrowed to float32 (LSQ: ``1/sqrt(numel * qmax)``)
    fma : bool
        Backward: the AVX2/AVX-512 contractions ``fma(x, inv, zp)`` and ``fma(xc - zp, s,
        -x)``; False for ``ATEN_CPU_CAPABILITY=default``.
    sum_width : int
        ``Vectorized<float>::size()`` for the gradient sums (8 AVX2, 16 AVX-512).

    Notes
    -----
    FakeQuantPerTensorAffine.cpp: the forward zero point is ``clamp(nearbyint(zp))`` (half
    to even) and the output is :func:`fake_quantize_per_tensor_forward`'s.
    """
    xa = _x(x)
    s, z, qmin, qmax, gf = _lsq_check(xa, scale, zero_point, qmin, qmax, grad_factor, 1)
    zf = int(np.clip(np.rint(z[0]), qmin, qmax))
    y, _ = _fq_tensor(xa, s[0], zf, qmin, qmax)
    return y, LearnableCache(xa, s, z, None, qmin, qmax, gf, bool(fma), int(sum_width))


def fake_quantize_learnable_per_tensor_backward(dy, cache):
    """Gradients ``(dx, dscale (1,), dzero_point (1,))`` of the learnable per-tensor op.

    Notes
    -----
    ``_fake_quantize_learnable_per_tensor_affine_backward`` + ``fake_quantize_learnable_
    tensor_grad_kernel_cpu``: the zero point is ``(int64) clamp(f32(zp + 0.5f))`` (truncated:
    NOT the forward's rounding, 2.5 -> 3 here, 2 in the forward); per element, all float32,
    ``xqi = nearbyint(fma(x, 1/s, zp))``, ``dx = dy * (qmin <= xqi <= qmax)``; inside the
    range ``dscale = ((dy * fma(xc - zp, s, -x)) * inv) * gf``, ``dzp = 0``; outside
    ``dscale = (dy * (qmin|qmax - zp)) * gf``, ``dzp = ((dy * -1) * s) * gf``; the element
    vectors are summed by :func:`torch_sum_f32` (one-thread result above 32768 elements).
    The dx mask is not the forward's mask.  Empty x: torch returns ``(x, scale, zp)``.
    """
    c = cache
    d = _x(dy, "dy")
    if d.shape != c.x.shape:
        raise ValueError(f"dy has shape {d.shape}, x had {c.x.shape}")
    if c.x.size == 0:
        return c.x.copy(), c.scale.copy(), c.zero_point.copy()
    with np.errstate(invalid="ignore"):
        zb = int(np.clip(c.zero_point[0] + F32(0.5), F32(c.qmin), F32(c.qmax)))  # f32 add
    dx, ds, dz = _lsq_grads(c.x, d, c.scale[0], F32(zb), zb, c.qmin, c.qmax, c.grad_factor,
                            c.fma)
    return dx, np.array([torch_sum_f32(ds, c.sum_width)]), \
        np.array([torch_sum_f32(dz, c.sum_width)])


def fake_quantize_learnable_per_channel_forward(x, scale, zero_point, axis, qmin, qmax,
                                                grad_factor=1.0, *, fma=True, sum_width=8):
    """``torch._fake_quantize_learnable_per_channel_affine`` forward: ``(y, cache)``.

    Parameters as :func:`fake_quantize_learnable_per_tensor_forward`, with (C,) `scale` and
    `zero_point` along `axis`.  Forward zero point: ``zp.round().clamp(qmin, qmax)`` (half
    to even) as int32, then :func:`fake_quantize_per_channel_forward`'s int path.
    """
    xa = _x(x)
    axis = _axis(axis, xa.ndim)
    c = xa.shape[axis]
    s, z, qmin, qmax, gf = _lsq_check(xa, scale, zero_point, qmin, qmax, grad_factor, c)
    zr = np.clip(np.rint(z), qmin, qmax).astype(np.int64)
    y, _ = _fq_channel_int(xa, _along(s, axis, xa.ndim), _along(zr, axis, xa.ndim), qmin, qmax)
    return y, LearnableCache(xa, s, z, axis, qmin, qmax, gf, bool(fma), int(sum_width))


def fake_quantize_learnable_per_channel_backward(dy, cache):
    """Gradients ``(dx, dscale (C,), dzero_point (C,))`` of the learnable per-channel op.

    Notes
    -----
    ``_fake_quantize_learnable_per_channel_affine_backward`` + ``fake_quantize_learnable_
    channel_grad_kernel_cpu``: as per tensor but the zero point is ``round(zp)`` clamped,
    kept as a float (forward and backward agree), and ``xc - zp`` is a float subtraction.
    Each channel's element gradients are summed over every dim but `axis` with
    :func:`torch_sum_f32` in C order -- verified against torch for ``axis = 0`` (an inner
    reduction); torch sums other axes in another (outer-reduction) order, so there dscale
    and dzero_point agree only within the float32 reordering bound (tested; dx stays
    exact).  A 1-D x is a ValueError, as in torch (``returned an invalid gradient at index 1``).
    """
    c = cache
    d = _x(dy, "dy")
    if d.shape != c.x.shape:
        raise ValueError(f"dy has shape {d.shape}, x had {c.x.shape}")
    if c.x.ndim < 2:
        raise ValueError(f"learnable per-channel backward needs x with 2 or more dims, got "
                         f"shape {c.x.shape} (torch: returned an invalid gradient at index 1)")
    zr = _along(np.clip(np.rint(c.zero_point), c.qmin, c.qmax).astype(F32), c.axis, c.x.ndim)
    dx, ds, dz = _lsq_grads(c.x, d, _along(c.scale, c.axis, c.x.ndim), zr, None, c.qmin,
                            c.qmax, c.grad_factor, c.fma)
    return dx, _sum_except(ds, c.axis, c.sum_width), _sum_except(dz, c.axis, c.sum_width)
