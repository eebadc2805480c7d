"""Fake quantization as torch 2.13 CPU computes it: straight-through, learnable (LSQ), modules.

Mirrors, bit for bit, torch ``2.13.0+cpu`` on an x86 AVX2/AVX-512 build (ATen kernels in
``aten/src/ATen/native/quantized/FakeQuantPerTensorAffine.cpp``,
``FakeQuantPerChannelAffine.cpp``, ``cpu/kernels/QuantizedOpKernels.cpp``,
``cpu/fused_obs_fake_quant.cpp``; Python ``torch/ao/quantization/fake_quantize.py``):

* ``fake_quantize_per_tensor_*``: ``_fake_quantize_tensor_helper``.  ``inv = f32(1/s)``,
  ``qf = f32(zp + nearbyint(f32(x*inv)))``, ``q = fmin(fmax(qf, qmin), qmax)`` (NaN -> qmin),
  ``y = f32(f32(q - zp) * s)``, ``mask = qmin <= qf <= qmax`` (before the clamp).
* ``fake_quantize_per_channel_*``: ``_fake_quant_per_channel_cachemask_cpu_helper``.  Int
  zero point: ``q = (int64) f32(zp + nearbyint(f32(x*inv)))`` -- the cast happens BEFORE the
  clamp, and x86 converts NaN, +-inf and ``|v| >= 2**63`` to INT64_MIN, so they land on
  qmin (per tensor sends +inf to qmax); ``y = f32(double(clamp(q) - zp) * double(s))``.
  Float zero point: ``v = fma(x, inv, zp)`` (one rounding: GCC contracts ``zp + x*inv`` in
  the AVX2/AVX-512 kernels; ``fma=False`` is ``ATEN_CPU_CAPABILITY=default``:
  ``f32(zp + f32(x*inv))``), ``q = lrintf(v)`` (half to even; non-finite -> INT64_MIN),
  ``y = f32((fmin(fmax(q, qmin), qmax) - zp) * s)`` in double.
* backward of both: ``dx = dy * mask`` (a multiply: NaN in dy survives where mask is 0).
* learnable (LSQ): :mod:`refcomp.quant.lsq`; torch's float32 ``sum``:
  :mod:`refcomp.quant.torchsum`; the ``FakeQuantize`` and
  ``FusedMovingAvgObsFakeQuantize`` modules: :mod:`refcomp.quant.fq_modules` (this module
  holds the shared checks and the straight-through pairs).

Every float32 operation is an IEEE float32 operation: NumPy float32 array arithmetic
(correctly rounded), ``refcomp.ops.fma(..., "float32")`` for fused multiply-adds,
``np.rint`` on float32 values (exact, half to even) and ``refcomp.rounding.cast`` for the
double -> float narrowing.  Evidence: tests/test_fake_quant.py compares with real torch.

>>> import numpy as np
>>> from refcomp.quant.fake_quant import fake_quantize_per_tensor_forward
>>> y, cache = fake_quantize_per_tensor_forward(np.float32([-10, .3, 10, .7]), .1, 0, 0, 100)
>>> y.tolist(), cache.mask.tolist()
([0.0, 0.30000001192092896, 10.0, 0.699999988079071], [False, True, True, True])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..ops.arith import fma as _fma
from ._checks import to_f32 as _f32

__all__ = ["FakeQuantCache", "fake_quantize_per_tensor_forward",
           "fake_quantize_per_tensor_backward", "fake_quantize_per_channel_forward",
           "fake_quantize_per_channel_backward"]

F32 = np.float32
_I64_MIN = np.iinfo(np.int64).min


# ---------------------------------------------------------------- helpers and checks
def _fma32(a, b, c):
    """Correctly rounded float32 ``fma(a, b, c)``."""
    return _fma(a, b, c, "float32", dtype=F32)


def _x(x, name="x"):
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numbers, got dtype {a.dtype}")
    return a if a.dtype == F32 else _f32(a)          # torch.tensor(x, dtype=float32)


def _qrange(qmin, qmax):
    for n, v in (("qmin", qmin), ("qmax", qmax)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{n} must be an integer, got {v!r}")
    if not qmin <= qmax:
        raise ValueError(f"qmin={qmin} is above qmax={qmax} (torch: `quant_min` should be "
                         f"less than or equal to `quant_max`)")
    if max(abs(int(qmin)), abs(int(qmax))) > 1 << 31:
        raise ValueError(f"qmin/qmax [{qmin}, {qmax}] exceed the int32 range")
    return int(qmin), int(qmax)


def _scales(scale, n=None):
    """Positive finite float32 scales (narrowed as torch stores them)."""
    s = _x(scale, "scale")
    if n is not None and (s.ndim != 1 or s.size != n):
        raise ValueError(f"scale must be 1-D with {n} element(s) (one per channel), got shape "
                         f"{s.shape}")
    bad = ~(s > 0) | np.isinf(s)
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"scale[{i}] = {float(s.reshape(-1)[i])!r} is not a positive finite "
                         f"float32 number")
    return s


def _int_zp(zp, qmin, qmax, n=None):
    z = np.asarray(zp)
    if z.dtype.kind not in "iu":
        raise TypeError(f"zero_point must be integers here, got dtype {z.dtype}")
    if n is not None and (z.ndim != 1 or z.size != n):
        raise ValueError(f"zero_point must be 1-D with {n} element(s), got shape {z.shape}")
    bad = (z < qmin) | (z > qmax)
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"zero_point[{i}] = {int(z.reshape(-1)[i])} is not between quant_min "
                         f"{qmin} and quant_max {qmax}")
    return z.astype(np.int64)


def _axis(axis, ndim):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not 0 <= axis < ndim:
        raise ValueError(f"axis={axis} is not in [0, {ndim}) for an input of {ndim} dims "
                         f"(torch requires a non-negative axis)")
    return int(axis)


def _along(v, axis, ndim):
    """Per-channel vector (C,) reshaped to broadcast along `axis`."""
    shape = [1] * ndim
    shape[axis] = -1
    return np.reshape(v, shape)


def _to_int64(v):
    """x86 ``(int64_t) float`` (cvttss2si): NaN, +-inf and |v| >= 2**63 -> INT64_MIN."""
    ok = np.isfinite(v) & (np.abs(v) < F32(2.0 ** 63))
    return np.where(ok, np.where(ok, v, 0).astype(np.int64), _I64_MIN)


# ---------------------------------------------------------------- kernels (no checks)
def _fq_tensor(x, s, zp, qmin, qmax):
    """``_fake_quantize_tensor_helper``; s float32 scalar, zp int."""
    with np.errstate(all="ignore"):
        inv = F32(1) / s                                        # float32 divide
        qf = F32(zp) + np.rint(x * inv)                         # float32 mul, exact RNE, add
        q = np.fmin(np.fmax(qf, F32(qmin)), F32(qmax))          # fmax/fmin: NaN -> qmin
        y = (q.astype(np.int64) - zp).astype(F32) * s           # (float)(int64), f32 mul
    return y.astype(F32), (qmin <= qf) & (qf <= qmax)


def _fq_channel_int(x, s, zp, qmin, qmax):
    """Per-channel int zero point; s (float32) and zp (int64) broadcast to x."""
    with np.errstate(all="ignore"):
        inv = F32(1) / s                                        # float32 divide
        q = _to_int64(zp.astype(F32) + np.rint(x * inv))        # f32 add; cast before clamp
        d = (np.clip(q, qmin, qmax) - zp).astype(np.float64)    # exact
        y = _f32(d * s.astype(np.float64))                      # double product, narrowed
    return y, (qmin <= q) & (q <= qmax)


def _fq_channel_float(x, s, zp, qmin, qmax, fma):
    """Per-channel float zero point (``per_channel_affine_float_qparams``)."""
    with np.errstate(all="ignore"):
        inv = F32(1) / s
        xb, invb, zpb = np.broadcast_arrays(x, inv, zp)
        v = _fma32(xb, invb, zpb) if fma else zpb + xb * invb   # AVX2: one rounding
        q = _to_int64(np.rint(v))                               # lrintf
        qc = np.fmin(np.fmax(q.astype(np.float64), qmin), qmax)
        y = _f32((qc - zp.astype(np.float64)) * s.astype(np.float64))   # double, narrowed
    return y, (qmin <= q) & (q <= qmax)


# ---------------------------------------------------------------- straight-through
class FakeQuantCache(NamedTuple):
    """``mask``: bool, shape of x -- True where the unclamped code is inside the range."""

    mask: np.ndarray


def fake_quantize_per_tensor_forward(x, scale, zero_point, qmin, qmax):
    """``torch.fake_quantize_per_tensor_affine`` (cachemask variant): ``(y, cache)``.

    Parameters
    ----------
    x : array_like, any shape, float32 (other dtypes are rounded to float32 first)
    scale : float, positive finite; narrowed to float32 as torch does
    zero_point : int in ``[qmin, qmax]`` (the check of the float-scale overload)
    qmin, qmax : int, ``qmin <= qmax``

    Returns
    -------
    y : float32 array, shape of x
    cache : FakeQuantCache

    Notes
    -----
    ATen ``_fake_quantize_tensor_helper`` (QuantizedOpKernels.cpp): ``x * f32(1/s)``, not
    ``x / s``; RNE; zero point added after rounding; no FMA on any CPU capability.  NaN ->
    ``(qmin - zp) * s``, +inf -> ``(qmax - zp) * s``, both with mask False.

    Examples
    --------
    >>> y, c = fake_quantize_per_tensor_forward(np.float32([0.25, 0.35]), 0.1, 3, 0, 255)
    >>> y.tolist()
    [0.20000000298023224, 0.4000000059604645]
    """
    qmin, qmax = _qrange(qmin, qmax)
    s = _scales(scale).reshape(-1)
    if s.size != 1:
        raise ValueError(f"scale must be a single number per tensor, got {s.size} values")
    zp = int(_int_zp(zero_point, qmin, qmax).reshape(-1)[0])
    y, mask = _fq_tensor(_x(x), s[0], zp, qmin, qmax)
    return y, FakeQuantCache(mask)


def fake_quantize_per_tensor_backward(dy, cache):
    """``dx = dy * mask`` (``fake_quantize_per_tensor_affine_cachemask_backward``).

    A float32 multiply by 0.0/1.0, so NaN or inf in `dy` give NaN where the mask is 0, as in
    torch.  `dy` must have the shape of x.
    """
    d = _x(dy, "dy")
    if d.shape != cache.mask.shape:
        raise ValueError(f"dy has shape {d.shape}, x had {cache.mask.shape}")
    with np.errstate(invalid="ignore"):
        return d * cache.mask.astype(F32)


def fake_quantize_per_channel_forward(x, scale, zero_point, axis, qmin, qmax, *, fma=True):
    """``torch.fake_quantize_per_channel_affine`` (cachemask variant): ``(y, cache)``.

    Parameters
    ----------
    x : array_like, float32, ``x.shape[axis] == C``
    scale : (C,) positive finite, narrowed to float32
    zero_point : (C,) integers in ``[qmin, qmax]`` (int32 path), or (C,) floats
        (``per_channel_affine_float_qparams`` path, not range-checked, as torch)
    axis : int, ``0 <= axis < x.ndim``
    qmin, qmax : int
    fma : bool
        Float zero point only: ``zp + x*inv`` rounded once, as the AVX2/AVX-512 kernels
        (GCC contraction) compute it; ``False`` mirrors ``ATEN_CPU_CAPABILITY=default``.

    Notes
    -----
    ``_fake_quant_per_channel_cachemask_cpu_helper`` (QuantizedOpKernels.cpp); exact
    formulas in the module docstring.  Int path: NaN, +-inf and ``|x/s| >= 2**63`` go to
    qmin (the int64 cast precedes the clamp).

    Examples
    --------
    >>> y, c = fake_quantize_per_channel_forward(np.float32([[1e38, 0.3]]), [1.0], [3], 0, 0, 255)
    >>> y.tolist()                       # 1e38 -> INT64_MIN -> qmin (per tensor: qmax)
    [[-3.0, 0.0]]
    """
    qmin, qmax = _qrange(qmin, qmax)
    xa = _x(x)
    axis = _axis(axis, xa.ndim)
    c = xa.shape[axis]
    s = _along(_scales(scale, c), axis, xa.ndim)
    z = np.asarray(zero_point)
    if z.dtype.kind == "f":
        if z.ndim != 1 or z.size != c:
            raise ValueError(f"zero_point must be 1-D with {c} element(s), got shape {z.shape}")
        y, mask = _fq_channel_float(xa, s, _along(_f32(z), axis, xa.ndim), qmin, qmax,
                                    bool(fma))
    else:
        y, mask = _fq_channel_int(xa, s, _along(_int_zp(z, qmin, qmax, c), axis, xa.ndim),
                                  qmin, qmax)
    return y, FakeQuantCache(mask)


fake_quantize_per_channel_backward = fake_quantize_per_tensor_backward
