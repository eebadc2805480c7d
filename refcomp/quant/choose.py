"""FBGEMM / ATen ``ChooseQuantizationParams``: scale and zero point from a float range.

Two C++ functions in torch 2.13 (x86 build, ``USE_FBGEMM``) choose affine qparams from a
``[min, max]`` range, and they differ in details that change bits:

``ChooseSource.FBGEMM``  -- ``fbgemm::ChooseQuantizationParams`` (FBGEMM ``src/QuantUtils.cc``
    at 553548f1, the version the torch 2.13 binary behaves like).  Called by
    ``torch.fused_moving_avg_obs_fake_quant`` (``aten/src/ATen/native/quantized/cpu/
    fused_obs_fake_quant.cpp``), i.e. by ``FusedMovingAvgObsFakeQuantize``, the default x86
    QAT fake quant.  The scale is a **float**; no range checks; no reduce_range.
``ChooseSource.ATEN``  -- ``quant_utils::ChooseQuantizationParams``
    (``aten/src/ATen/native/quantized/cpu/QuantUtils.h``).  Called by the dynamic quantized
    Linear (``PackedLinearWeight::apply_dynamic_impl``) and ``torch._choose_qparams_per_tensor``.
    The scale is a **double** (callers narrow it to float when they quantize), the
    zero-point error terms are ``|q| - |m/s|`` (not ``+``), ``reduce_range`` halves the
    range, and ``min <= max`` and ``qmin < qmax`` are checked.

Both share the algorithm (NOT the Python observers' ``_calculate_qparams``):

1. symmetric (``preserve_sparsity``) only when ``min < 0 < max``: ``sqmin = -((qmax-qmin)/2
   + 1)``, ``sqmax = (qmax-qmin)/2`` (C int division), ``ms = max(|f32(min/sqmin)|,
   |f32(max/sqmax)|)``, ``min = f32(double(ms)*sqmin)``, ``max = f32(double(ms)*sqmax)``;
2. ``min = std::min(min, 0.f)``, ``max = std::max(max, 0.f)`` (0 is always representable);
3. ``scale = (double(max) - min) / (qmax - qmin)`` in double (FBGEMM narrows it to float
   here); a zero scale, or one whose float reciprocal overflows, becomes 0.1;
4. optional power-of-two scale;
5. scales below ``SMALL_SCALE_THRESHOLD = 6.1e-5f`` (fp16's smallest normal, rounded) are
   raised to it and ``min``/``max`` rescaled in float;
6. zero point from whichever end has the smaller error term (double), replaced by
   ``double(qmin+qmax)/2`` when symmetric, clamped to ``[qmin, qmax]`` or nudged with
   ``nearbyint`` (round half to even); a NaN becomes INT32_MIN (x86 ``cvttsd2si``).

Every float operation below is an IEEE operation of the stated width: NumPy float32
arithmetic on float32 scalars and Python float (binary64) arithmetic are both correctly
rounded, as the C++ float/double operations are (no FMA contraction: the C++ is scalar code
outside the per-capability kernels; confirmed against the binary, tests/test_fake_quant.py).

>>> from refcomp.quant.choose import choose_qparams_fbgemm
>>> choose_qparams_fbgemm(-1.0, 3.0, 0, 255)
QParams(scale=np.float32(0.015686275), zero_point=64)
>>> choose_qparams_fbgemm(-1.0, 1.0, -128, 127, preserve_sparsity=True)
QParams(scale=np.float32(0.007874016), zero_point=0)
>>> choose_qparams_fbgemm(0.0, 0.0, 0, 255)
QParams(scale=np.float32(0.1), zero_point=0)
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

import numpy as np

__all__ = ["ChooseSource", "QParams", "SMALL_SCALE_THRESHOLD", "choose_qparams_fbgemm"]

F32 = np.float32
#: ``constexpr float SMALL_SCALE_THRESHOLD = 6.1e-5f`` (float32 nearest to 6.1e-5).
SMALL_SCALE_THRESHOLD = F32(6.1e-5)
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


class ChooseSource(enum.Enum):
    """Which C++ ``ChooseQuantizationParams`` to mirror (module docstring)."""

    FBGEMM = "fbgemm"
    ATEN = "aten"


class QParams(NamedTuple):
    """``(scale, zero_point)``; scale is np.float32 (np.float64 with ``double=True``)."""

    scale: np.floating
    zero_point: int


def _source(source) -> ChooseSource:
    if isinstance(source, ChooseSource):
        return source
    try:
        return ChooseSource(source)
    except ValueError:
        raise ValueError(f"source must be 'fbgemm' or 'aten', got {source!r}") from None


def _int32(v, name):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if not _INT32_MIN <= int(v) <= _INT32_MAX:
        raise ValueError(f"{name}={v} does not fit int32 (the C++ parameter type)")
    return int(v)


def _float32(v, name):
    """The float parameter: a double argument is narrowed to float (IEEE RNE)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    with np.errstate(over="ignore"):
        return F32(v)          # IEEE narrowing, as C++ float(double)


def _w32(i):
    """C int32 arithmetic wraps (x86 two's complement): ``qmax - qmin`` for the full int32
    range is -1, which torch really computes (confirmed with the fused op)."""
    return (i + (1 << 31)) % (1 << 32) - (1 << 31)


def _cabs(i):
    """C ``std::abs(int32)``: abs(INT32_MIN) wraps to INT32_MIN on x86."""
    return i if i == _INT32_MIN else abs(i)


def _cdiv(a, b):
    """C int division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _nudge(z0, qmin, qmax):
    """Clamp or ``nearbyint`` (half to even) to int32; NaN -> INT32_MIN (cvttsd2si)."""
    if z0 < qmin:
        return qmin
    if z0 > qmax:
        return qmax
    if math.isnan(z0):
        return _INT32_MIN
    return int(np.rint(z0))    # nearbyint in FE_TONEAREST: ties to even (exact)


def _pow2(scale, aten):
    """``force_scale_power_of_two`` (FBGEMM: log2; ATen: log(x)/log(2))."""
    lg = (lambda v: math.log(v) / math.log(2)) if aten else math.log2
    if scale < 1:
        n = math.floor(lg(1.0 / float(scale)))
        if not 0 <= n <= 30:
            raise ValueError(f"force_scale_power_of_two: 1 << {n} overflows int32 for scale "
                             f"{float(scale)!r}")
        return 1.0 / (1 << n)
    n = math.ceil(lg(float(scale)))
    if not 0 <= n <= 30:
        raise ValueError(f"force_scale_power_of_two: 1 << {n} overflows int32 for scale "
                         f"{float(scale)!r}")
    return float(1 << n)


def _choose_one(mn, mx, qmin, qmax, sparse, pow2, aten):
    """One range; `mn`, `mx` float32, qmin/qmax ints already reduced."""
    with np.errstate(all="ignore"):
        if mn < 0 and mx > 0 and sparse:
            sqmin = -(_cdiv(_w32(qmax - qmin), 2) + 1)
            sqmax = _cdiv(_w32(qmax - qmin), 2)
            # float / int -> float division; fabs and std::max in float; then to double
            ms = float(max(abs(mn / F32(sqmin)), abs(mx / F32(sqmax))))
            mn = F32(ms * sqmin)                 # double product narrowed to float
            mx = F32(ms * sqmax)
        mn = F32(0) if F32(0) < mn else mn       # std::min(min, 0.f) = (0 < min) ? 0 : min
        mx = F32(0) if mx < F32(0) else mx       # std::max(max, 0.f) = (max < 0) ? 0 : max
        if aten and not qmin < qmax:
            raise ValueError(f"In ChooseQuantizationParams, qmin should be less than qmax "
                             f"(got qmin={qmin}, qmax={qmax} after reduce_range)")
        den = float(_w32(qmax - qmin))
        # IEEE double; /0 -> inf / nan
        sd = float(np.float64(float(mx) - float(mn)) / np.float64(den))
        scale = sd if aten else float(F32(sd))  # ATen keeps the double; FBGEMM narrows
        sf = F32(scale)
        if sf == 0 or np.isinf(F32(1) / sf):      # float compare and float reciprocal
            scale = 0.1 if aten else float(F32(0.1))
        if pow2:
            scale = _pow2(scale, aten)
            scale = scale if aten else float(F32(scale))
        if scale < float(SMALL_SCALE_THRESHOLD):
            org = F32(scale)                     # float org_scale = scale
            scale = float(SMALL_SCALE_THRESHOLD)
            span = F32(_w32(qmax - qmin))        # int converted to float
            if mn == 0:
                mx = SMALL_SCALE_THRESHOLD * span        # float32 multiply (IEEE)
            elif mx == 0:
                mn = -SMALL_SCALE_THRESHOLD * span
            else:
                amp = SMALL_SCALE_THRESHOLD / org        # float32 divide (IEEE)
                mn, mx = mn * amp, mx * amp              # float32 multiplies (IEEE)
        # double arithmetic from here (Python floats are IEEE binary64)
        rmin, rmax = float(mn) / scale, float(mx) / scale
        zmin, zmax = qmin - rmin, qmax - rmax
        if aten:
            emin, emax = _cabs(qmin) - abs(rmin), _cabs(qmax) - abs(rmax)
        else:
            emin, emax = _cabs(qmin) + abs(rmin), _cabs(qmax) + abs(rmax)
        z0 = zmin if emin < emax else zmax
        if mn < 0 and mx > 0 and sparse:
            z0 = float(_w32(qmin + qmax)) / 2
    return scale, _nudge(z0, qmin, qmax)


def choose_qparams_fbgemm(min, max, qmin, qmax, *, preserve_sparsity=False,  # noqa: A002
                          force_scale_power_of_two=False, reduce_range=False,
                          source="fbgemm", double=False):
    """Scale and zero point of FBGEMM/ATen ``ChooseQuantizationParams`` (torch 2.13, x86).

    Parameters
    ----------
    min, max : float or array_like of float
        The range (narrowed to float32, the C++ parameter type).  Arrays (same shape) give
        one choice per element, as the per-channel fused observer does.
    qmin, qmax : int
        Quantized range (int32).  ``qmin > qmax`` is a ValueError for both sources.
    preserve_sparsity : bool
        Symmetric quantization -- applied only when ``min < 0 < max`` (an all-positive
        range gets an affine scale and ``zero_point = qmin``).
    force_scale_power_of_two : bool
        Round the scale to a power of two (down below 1, up above); a shift outside
        ``[0, 30]`` (C ``1 << n`` overflow) is a ValueError.  Not reachable from torch
        Python APIs, so tested against the formula only.
    reduce_range : bool
        ``qmin/2``, ``qmax/2`` in C int division (truncation toward zero, ``-127/2 = -63``)
        before anything else, as ``QuantUtils.h`` does.  FBGEMM's function has no such
        argument; its callers pass an already reduced range.
    source : {"fbgemm", "aten"} or ChooseSource
        Which C++ function (module docstring).  ``"aten"`` raises ValueError for ``min >
        max`` or NaN (torch: ``"In ChooseQuantizationParams, min should be less than or
        equal to max"``) and for ``qmin >= qmax``.
    double : bool
        Return the scale as np.float64: ATen's unrounded double (what
        ``torch._choose_qparams_per_tensor`` returns).  Default: np.float32, the value the
        quantizing kernels use.

    Returns
    -------
    QParams
        ``(scale, zero_point)``: np.float32 (or float64) and int, or arrays of them
        (int64 zero points) for array inputs.

    Notes
    -----
    Sources: FBGEMM ``src/QuantUtils.cc::ChooseQuantizationParams`` (553548f1) and
    ``aten/src/ATen/native/quantized/cpu/QuantUtils.h::ChooseQuantizationParams``; the
    arithmetic of each step is in the module docstring.  FBGEMM edge results (confirmed
    against ``torch.fused_moving_avg_obs_fake_quant``): ``min = max = 0`` -> ``(0.1, 0)``;
    ``(inf, -inf)`` -> ``(0.1, 0)``; NaN -> ``(nan, INT32_MIN)``; ``min > max`` is accepted.
    Integer arithmetic wraps as int32 (``qmax - qmin`` of the full int32 range is -1), as
    the binary does; the results for that range are meaningless but reproduced.

    Examples
    --------
    >>> choose_qparams_fbgemm(-0.3, 1.7, 0, 255, reduce_range=True, source="aten", double=True)
    QParams(scale=np.float64(0.015748031965390905), zero_point=19)
    >>> choose_qparams_fbgemm(0.5, 1.0, -128, 127, preserve_sparsity=True)   # not symmetric
    QParams(scale=np.float32(0.003921569), zero_point=-128)
    """
    src = _source(source)
    aten = src is ChooseSource.ATEN
    qmin, qmax = _int32(qmin, "qmin"), _int32(qmax, "qmax")
    if qmin > qmax:
        raise ValueError(f"qmin={qmin} is above qmax={qmax}")
    if reduce_range:
        qmin, qmax = _cdiv(qmin, 2), _cdiv(qmax, 2)
    sparse, pow2 = bool(preserve_sparsity), bool(force_scale_power_of_two)
    mins, maxs = np.asarray(min), np.asarray(max)
    if mins.shape != maxs.shape:
        raise ValueError(f"min and max must have the same shape, got {mins.shape} and "
                         f"{maxs.shape}")
    out_t = np.float64 if double else F32
    if mins.ndim == 0:
        mn, mx = _float32(mins.item(), "min"), _float32(maxs.item(), "max")
        if aten and not mn <= mx:
            raise ValueError(f"In ChooseQuantizationParams, min should be less than or equal "
                             f"to max: got min={float(mn)!r}, max={float(mx)!r}")
        s, z = _choose_one(mn, mx, qmin, qmax, sparse, pow2, aten)
        return QParams(out_t(s), z)
    scales = np.empty(mins.shape, out_t)
    zps = np.empty(mins.shape, np.int64)
    for i in np.ndindex(mins.shape):
        s, z = choose_qparams_fbgemm(float(mins[i]), float(maxs[i]), qmin, qmax,
                                     preserve_sparsity=sparse, force_scale_power_of_two=pow2,
                                     source=src, double=double)
        scales[i], zps[i] = s, z
    return QParams(scales, zps)
