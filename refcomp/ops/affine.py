"""Affine (scale and zero point) quantization with every convention explicit.

``q = clamp(round(x * (1/s)) + z, qmin, qmax)`` has several bit-level variants in the wild:
whether ``x`` is multiplied by a rounded reciprocal or divided by ``s``; whether the zero
point is added before or after rounding; in which format the arithmetic is done; how the
scale itself is rounded.  A :class:`AffineConvention` names one choice of each, and the
named conventions mirror real backends:

``torch-2.13-quantize_per_tensor``
    ``torch.quantize_per_tensor`` on CPU: ``inv = f32(1 / f32(s))``,
    ``t = f32(x * inv + z)`` with ONE rounding (a fused multiply-add), ``q =
    clamp(nearbyint(t))`` -- the zero point is added BEFORE rounding (FBGEMM ``Quantize``
    computes ``zero_point + src * inv_scale``, vectorised with FMA instructions).  Measured
    on torch 2.13.0+cpu (tests/test_affine.py): x = 0.17834997f, s = 0.0123, z = 3 gives
    17 (fused: x*inv + 3 = 17.4999988...), where an unfused multiply then add gives
    f32(14.499999f + 3) = 17.5 -> 18.
``torch-2.13-quantize_per_channel``
    ``torch.quantize_per_channel`` on CPU: the same formula WITHOUT the fusion,
    ``t = f32(f32(x * inv) + z)`` (measured: the example above gives 18 per channel).
``torch-2.13-fake_quantize``
    ``torch.fake_quantize_per_tensor_affine`` / ``_per_channel_affine``:
    ``q = clamp(nearbyint(f32(x * inv)) + z)``, output ``f32((q - z) * s)`` -- the zero point
    is added AFTER rounding (ATen ``fake_quantize_tensor_cachemask_kernel``).
``torchao-0.18``
    ``torchao.quantization.quant_primitives.quantize_affine``:
    ``clamp(torch.round(x * (1.0 / scale)) + zero_point, qmin, qmax)``, computed in float32
    for float32 scales (``1.0 / scale`` is a float32 reciprocal), and ``dequantize_affine``:
    ``(q.to(f32) - z.to(f32)) * scale``.

Rounding is half to even everywhere (``nearbyint`` in the default FE_TONEAREST mode,
``torch.round``).  Every float32 operation is one correctly rounded refcomp operation
(:mod:`refcomp.ops`), so these are bit-exact models, not approximations.  NaN inputs are a
ValueError (torch's result for NaN is an unspecified integer conversion).

>>> import refcomp as rc
>>> rc.ops.quantize_affine([0.25], 0.1, 1, 0, 255, "torch-2.13-quantize_per_tensor").tolist()
[4]
>>> rc.ops.quantize_affine([0.25], 0.1, 1, 0, 255, "torch-2.13-fake_quantize").tolist()
[3]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rounding import cast
from .arith import add, div, fma, mul, sub
from .convert import round_to_integral

__all__ = ["AffineConvention", "AFFINE_CONVENTIONS", "quantize_affine", "dequantize_affine",
           "fake_quantize_affine", "choose_qparams_affine"]


@dataclass(frozen=True)
class AffineConvention:
    """One bit-level convention of affine quantization (module docstring).

    Attributes
    ----------
    name : str
    zero_point : {"before_round", "after_round"}
    scaling : {"mul_reciprocal", "divide"}   ``x * f(1/s)`` or ``x / s``
    fused : bool       ``before_round`` only: ``x * inv + z`` rounded once (FMA)
    compute : str      format of every intermediate operation (``"float32"``)
    source : str       where the rule comes from
    """

    name: str
    zero_point: str
    scaling: str
    compute: str
    source: str
    fused: bool = False

    def __post_init__(self):
        if self.zero_point not in ("before_round", "after_round"):
            raise ValueError(f"zero_point must be 'before_round' or 'after_round', got "
                             f"{self.zero_point!r}")
        if self.scaling not in ("mul_reciprocal", "divide"):
            raise ValueError(f"scaling must be 'mul_reciprocal' or 'divide', got "
                             f"{self.scaling!r}")
        if self.fused and (self.zero_point != "before_round" or self.scaling == "divide"):
            raise ValueError("fused=True needs zero_point='before_round' and "
                             "scaling='mul_reciprocal'")


AFFINE_CONVENTIONS = {c.name: c for c in (
    AffineConvention("torch-2.13-quantize_per_tensor", "before_round", "mul_reciprocal",
                     "float32", "torch 2.13 CPU quantize_per_tensor -> FBGEMM Quantize "
                     "(fused multiply-add)", fused=True),
    AffineConvention("torch-2.13-quantize_per_channel", "before_round", "mul_reciprocal",
                     "float32", "torch 2.13 CPU quantize_per_channel (multiply, then add the "
                     "zero point in float32; measured)"),
    AffineConvention("torch-2.13-fake_quantize", "after_round", "mul_reciprocal", "float32",
                     "torch 2.13 ATen fake_quantize_tensor_cachemask_kernel (CPU)"),
    AffineConvention("torchao-0.18", "after_round", "mul_reciprocal", "float32",
                     "torchao 0.18 quantization/quant_primitives.py _quantize_affine_no_dtype_"
                     "cast, _dequantize_affine_no_dtype_check"),
)}


def _convention(c) -> AffineConvention:
    if isinstance(c, AffineConvention):
        return c
    try:
        return AFFINE_CONVENTIONS[c]
    except (KeyError, TypeError):
        raise ValueError(f"unknown affine convention {c!r} (known: "
                         f"{', '.join(AFFINE_CONVENTIONS)})") from None


def _values(x, what, fmt):
    """Input values rounded to the compute format (as torch.tensor(x, dtype=...) does)."""
    a = np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be numbers, got dtype {a.dtype}")
    v = cast(a, fmt)
    nan = np.isnan(v)
    if np.any(nan):
        i = int(np.flatnonzero(np.reshape(nan, -1))[0])
        raise ValueError(f"{what}[{i}] is NaN: affine quantization has no value for it")
    return np.asarray(v, dtype=np.float64)


def _range(qmin, qmax):
    for n, v in (("qmin", qmin), ("qmax", qmax)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{n} must be an integer, got {v!r}")
    if not qmin <= qmax:
        raise ValueError(f"qmin={qmin} is above qmax={qmax}")
    if abs(qmin) >= 1 << 24 or abs(qmax) >= 1 << 24:
        raise ValueError(f"qmin/qmax must lie within +-2**24 (float32 integers), got "
                         f"[{qmin}, {qmax}]")
    return int(qmin), int(qmax)


def _scale(scale, fmt):
    s = _values(scale, "scale", fmt)
    bad = ~(s > 0) | np.isinf(s)
    if np.any(bad):
        i = int(np.flatnonzero(np.reshape(bad, -1))[0])
        raise ValueError(f"scale[{i}] = {float(np.reshape(s, -1)[i])!r} is not a positive finite "
                         f"number (after rounding to {fmt})")
    return s


def _zero_point(zero_point):
    """Integral zero points within +-2**24 (exact in float32), as float64 values."""
    if zero_point is None:
        raise TypeError("zero_point must be an integer or an array of integers, got None")
    z = np.asarray(zero_point)
    if z.dtype.kind not in "iuf":
        raise TypeError(f"zero_point must be integers, got dtype {z.dtype}")
    zf = z.astype(np.float64)
    bad = ~np.isfinite(zf) | (zf != np.floor(zf)) | (np.abs(zf) > 1 << 24)
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"zero_point[{i}] = {float(zf.reshape(-1)[i])!r} is not an integer within "
                         f"+-2**24")
    return zf


def quantize_affine(x, scale, zero_point, qmin, qmax, convention="torchao-0.18", fmt=None):
    """Quantize: integers in ``[qmin, qmax]`` (int64) under `convention`.

    Parameters
    ----------
    x : array_like, rounded to the convention's compute format first (float32)
    scale, zero_point : scalars or arrays broadcastable to `x` (per-tensor, per-channel,
        per-group by broadcasting); `scale` is rounded to the compute format, as torch
        stores it
    qmin, qmax : int
    convention : str or AffineConvention
    fmt : str, optional
        Format of the arithmetic, default the convention's (float32).  torch computes in
        the promoted dtype of `x` and `scale`: bfloat16 inputs with bfloat16 scales (as
        torchao's ``choose_qparams_affine`` returns them) give ``fmt="bfloat16"``, every
        operation, the zero-point addition included, rounded to bfloat16.
    """
    c = _convention(convention)
    qmin, qmax = _range(qmin, qmax)
    fmt = c.compute if fmt is None else fmt
    xv = _values(x, "x", fmt)
    s = _scale(scale, fmt)
    z = _zero_point(zero_point)
    if c.fused:
        q = round_to_integral(fma(xv, div(1.0, s, fmt), z, fmt), fmt, "nearest_even")
        return np.clip(q, qmin, qmax).astype(np.int64)
    if c.scaling == "mul_reciprocal":
        t = mul(xv, div(1.0, s, fmt), fmt)
    else:
        t = div(xv, np.broadcast_to(s, np.broadcast_shapes(xv.shape, s.shape)), fmt)
    if c.zero_point == "before_round":
        q = round_to_integral(add(t, z, fmt), fmt, "nearest_even")
    else:
        q = add(round_to_integral(t, fmt, "nearest_even"), z, fmt)
    return np.clip(q, qmin, qmax).astype(np.int64)


def dequantize_affine(q, scale, zero_point, convention="torchao-0.18", fmt=None):
    """``f32(f32(q - z) * s)``: float64 arrays holding the float32 results.

    All three named conventions dequantize this way (ATen ``dequantize_val``: ``(q - z) *
    scale`` in float32; torchao ``_dequantize_affine_no_dtype_check`` with its default
    ``output_dtype=float32``, whatever the scale's dtype).  `fmt` is the output format.
    """
    c = _convention(convention)
    fmt = c.compute if fmt is None else fmt
    qa = np.asarray(q)
    if qa.dtype.kind not in "iu":
        raise TypeError(f"q must be integers, got dtype {qa.dtype}")
    s = _scale(scale, fmt)
    z = _zero_point(zero_point)
    return mul(sub(qa.astype(np.float64), z, fmt), s, fmt)


def fake_quantize_affine(x, scale, zero_point, qmin, qmax, convention="torch-2.13-fake_quantize"):
    """``dequantize_affine(quantize_affine(x, ...))`` (torch's fake_quantize_per_*_affine)."""
    q = quantize_affine(x, scale, zero_point, qmin, qmax, convention)
    return dequantize_affine(q, scale, zero_point, convention)


def _blocks(x, block_size):
    """View x as (..., n_blocks..., block elements) per torchao's _get_reduction_params."""
    if len(block_size) != x.ndim:
        raise ValueError(f"block_size {tuple(block_size)} has {len(block_size)} entries for an "
                         f"input of {x.ndim} dimension(s)")
    shape, red = [], []
    for i, (b, n) in enumerate(zip(block_size, x.shape)):
        if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"block_size[{i}] = {b!r} is not a positive integer")
        if n % b:
            raise ValueError(f"dimension {i} of size {n} is not divisible by block_size "
                             f"{b}")
        shape += [n // b, b]
        red.append(2 * i + 1)
    return x.reshape(shape), tuple(red)


def choose_qparams_affine(x, mapping, block_size, qmin, qmax, eps=None, fmt="float32"):
    """Scales and zero points the way torchao 0.18's ``choose_qparams_affine`` computes them.

    Mirrors ``torchao/quantization/quant_primitives.py::_choose_qparams_affine`` (0.18.0):
    per block, ``min_neg = min(amin, 0)``, ``max_pos = max(amax, 0)``; then

    * ``"symmetric"``: ``scale = max(-min_neg, max_pos) / ((qmax - qmin) / 2)``,
      ``zero_point = int((qmax + qmin + 1) / 2)``;
    * ``"symmetric_no_clipping_err"``: ``scale = max(min_neg / qmin, max_pos / qmax)`` (the
      larger of the two quotients);
    * ``"asymmetric"``: ``scale = (max_pos - min_neg) / (qmax - qmin)``,
      ``zero_point = clamp(qmin - round(min_neg / scale), qmin, qmax)``;

    with ``scale = max(scale, eps)`` (``eps`` defaults to the smallest normal of `fmt`), every
    operation rounded to `fmt` (the input dtype; torch computes bfloat16/float16 ops in
    float32 and rounds once, which is the correctly rounded result for these single ops).

    Returns
    -------
    scale : float64 array of `fmt` values, shape = number of blocks per dimension
    zero_point : int64 array, same shape
    """
    xv = _values(x, "x", fmt)
    qmin, qmax = _range(qmin, qmax)
    xb, red = _blocks(xv, block_size)
    min_neg = np.minimum(xb.min(axis=red), 0.0)
    max_pos = np.maximum(xb.max(axis=red), 0.0)
    if eps is None:
        from ..formats import catalog
        eps = catalog.get(fmt).min_normal
    eps = float(cast(eps, fmt))
    if mapping == "symmetric":
        m = np.maximum(-min_neg, max_pos)
        scale = div(m, float((qmax - qmin) / 2), fmt)
        zp = np.full(scale.shape, int((qmax + qmin + 1) / 2), dtype=np.int64)
    elif mapping == "symmetric_no_clipping_err":
        with np.errstate(divide="ignore", invalid="ignore"):
            smin = div(min_neg, float(qmin), fmt)
            smax = div(max_pos, float(qmax), fmt)
        scale = np.where(smin > smax, smin, smax)
        zp = np.full(scale.shape, int((qmax + qmin + 1) / 2), dtype=np.int64)
    elif mapping == "asymmetric":
        scale = div(sub(max_pos, min_neg, fmt), float(qmax - qmin), fmt)
        scale = np.where(np.isnan(scale) | (scale >= eps), scale, eps)
        r = round_to_integral(div(min_neg, scale, fmt), fmt, "nearest_even")
        zp = np.clip(sub(float(qmin), r, fmt), qmin, qmax).astype(np.int64)
        return scale, zp
    else:
        raise ValueError(f"unknown mapping {mapping!r}: use 'symmetric', "
                         f"'symmetric_no_clipping_err' or 'asymmetric'")
    scale = np.where(np.isnan(scale) | (scale >= eps), scale, eps)
    return scale, zp
