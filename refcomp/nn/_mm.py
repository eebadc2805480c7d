"""The matmuls of linear and conv layers under a policy: operand rounding, per-tensor
scaling, and the accumulation model (shared by :mod:`refcomp.nn.linear`)."""

from __future__ import annotations

import math

import numpy as np

from ..ops.accum import _blas
from ..ops.accum import matmul as _matmul
from ..ops.accum_model import AccumulationModel, Order
from .policy import Policy, Scaling, TensorSpec, round_to

__all__ = ["mm", "operand", "carrier"]


def carrier(model: AccumulationModel):
    """The NumPy dtype a matmul operand is kept in: float32 for the float32 BLAS (whose
    operands are float32 values), float64 otherwise."""
    return np.float32 if model.order is Order.BLAS and model.acc.name == "float32" \
        else np.float64


def _holds(f, g) -> bool:
    """Whether format g holds every value of format f."""
    return f.precision <= g.precision and f.emax <= g.emax and \
        f.emin - f.man_bits >= g.emin - g.man_bits


def pow2_scale(x, fmt) -> float:
    """``2**floor(log2(fmt.max / amax(x)))`` (1 for an all-zero or non-finite x): the
    per-tensor scale that brings the largest magnitude into ``[max / 2, max]``."""
    amax = float(np.max(np.abs(x), initial=0.0))
    if amax == 0.0 or not math.isfinite(amax):
        return 1.0
    return 2.0 ** math.floor(math.log2(fmt.max_finite / amax))


def operand(x, role: TensorSpec, fmt, policy: Policy, rng=None, dtype=np.float64):
    """(values, scale): x, rounded into its `role`, prepared as a matmul operand of format
    fmt.

    Without scaling, the role value rounded to nearest-even into fmt (nothing more to do
    when fmt holds the role's format).  With per-tensor scaling, ``rnd_fmt(x * s)`` with
    saturation, s the power-of-two :func:`pow2_scale`, so the product of the operands
    divided by the scales is exact in float64.  The values are returned in `dtype`
    (:func:`carrier`: they are exact there)."""
    scaled = policy.scaling is Scaling.PER_TENSOR
    holds = _holds(role.format, fmt)
    v = role.round(x, rng, dtype if holds and not scaled else np.float64)
    if scaled:
        s = pow2_scale(v, fmt)
        return round_to(v * s, fmt, overflow="saturate", rng=rng, dtype=dtype), s
    if holds:
        return v, 1.0
    return round_to(v, fmt, dtype=dtype), 1.0


def mm(A, B, model: AccumulationModel, C=None, c_fmt=None, scale=1.0, rng=None):
    """float64 value of ``A @ B / scale (+ C)`` under model (A, B already operands).

    Unscaled, with C of a format (`c_fmt`) the model's result format holds: C is the
    initial accumulator and the model's output rounding applies to the sum (one rounding,
    as a GEMM with a fused bias).  Otherwise the model's result is divided by the
    power-of-two scale (exact in float64) and C is added in float64; the caller then rounds
    once into the role's format."""
    fused = C is not None and scale == 1.0 and c_fmt is not None and \
        _holds(c_fmt, model.result_format)
    if model.order is Order.BLAS:
        D = _blas(A, B, C if fused else None, model)
        if model.output is not None:
            D = round_to(D, model.output, model.output_rounding)
    else:
        D = _matmul(A, B, model, C=C if fused else None, rng=rng)
    if scale != 1.0 or (C is not None and not fused):     # in float64: exact division
        D = np.asarray(D, np.float64) / scale
        if C is not None and not fused:
            D = D + C
    return D
