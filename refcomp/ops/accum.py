"""Dot products and (batched) GEMMs under an explicit accumulation model.

:func:`matmul` and :func:`dot` compute exactly what the :class:`AccumulationModel` says
(semantics in :mod:`refcomp.ops.accum_model`), every rounding done by the rounding core
through :mod:`refcomp.ops.arith` (this file is the NumPy specification; the Numba kernels
of :mod:`refcomp._jit.accum_kernels` are its fast twins).  A :class:`TensorCoreModel`
(or its name) is accepted too and runs :func:`refcomp.ops.tc_matmul`.

Special values: NaN and infinity propagate through the accumulator as the operations do
(x86 SSE rules: a NaN operand's payload, quieted; ``inf * 0`` and ``inf - inf`` give the
default NaN); on tensor cores as MMA-Sim models the hardware (canonical NaN).
"""

from __future__ import annotations

import numpy as np

from .. import _jit
from ..formats.intformat import IntFormat
from ..rounding.cast import cast
from ..rounding.modes import IntOverflow, Rounding, as_generator
from .accum_model import AccumulationModel, Order, accumulation_model
from .arith import add, fma, mul
from .tensorcore import TensorCoreModel, TENSOR_CORES, tc_matmul

__all__ = ["matmul", "dot"]


def _model(model):
    if isinstance(model, (AccumulationModel, TensorCoreModel)):
        return model
    if isinstance(model, str) and model in TENSOR_CORES:
        return TENSOR_CORES[model]
    return accumulation_model(model)


def _check_values(x, fmt, what):
    """Every element of x is a value of fmt (NaN/inf allowed where fmt has them)."""
    if isinstance(fmt, IntFormat):
        if np.issubdtype(x.dtype, np.integer) and np.iinfo(x.dtype).min >= fmt.min and \
                np.iinfo(x.dtype).max <= fmt.max:
            return                                        # the dtype holds only fmt values
        if not np.issubdtype(x.dtype, np.integer) and not (np.isfinite(x).all()
                                                           and (x == np.round(x)).all()):
            raise ValueError(f"{what} must hold integers for {fmt.name}")
        bad = (x < fmt.min) | (x > fmt.max)
    else:
        y = np.where(np.isnan(x), 0.0, x)
        with np.errstate(over="ignore"):
            bad = np.asarray(cast(y, fmt)) != y
    if bad.any():
        i = tuple(int(j) for j in np.unravel_index(int(np.flatnonzero(bad)[0]), x.shape))
        raise ValueError(f"{what}{list(i)} = {x[i].item()!r} is not a {fmt.name} value "
                         f"(round it first, e.g. refcomp.cast(x, {fmt.name!r}))")


def matmul(A, B, model, *, C=None, scale_a=None, scale_b=None, rng=None) -> np.ndarray:
    """D = A @ B (+ C) computed as `model` says, batched over leading dimensions.

    Parameters
    ----------
    A : array_like (..., M, K)
        Values of ``model.inputs`` (checked: a value that is not one raises ValueError).
    B : array_like (..., K, N)
        Values of ``model.inputs_b``.
    model : AccumulationModel, TensorCoreModel or a preset / tensor-core name
    C : array_like (..., M, N), optional
        Initial accumulator (values of the accumulator format -- of the outer accumulator
        for blocked / split-K / block-scaled models); +0 when omitted.
    scale_a, scale_b : array_like (..., M, K / L) and (..., K / L, N)
        Block scales (values of ``model.scale_format``) of block-scaled models (L =
        ``model.scale_block``); K must be a multiple of L.
    rng : numpy.random.Generator
        Required when the model rounds stochastically.

    Returns
    -------
    (..., M, N) float64 values of the output format (int64 for integer models).
    """
    m = _model(model)
    A = np.asarray(A)
    B = np.asarray(B)
    if A.ndim < 2 or B.ndim < 2:
        raise ValueError(f"matmul needs A (..., M, K) and B (..., K, N); got A {A.shape}, "
                         f"B {B.shape} (use dot for vectors)")
    if A.shape[-1] != B.shape[-2]:
        raise ValueError(f"shapes do not chain: A {A.shape}, B {B.shape} "
                         f"(K = {A.shape[-1]} vs {B.shape[-2]})")
    M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
    try:
        batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    except ValueError:
        raise ValueError(f"batch dimensions do not broadcast: A {A.shape}, B {B.shape}") \
            from None
    if C is not None:
        C = np.asarray(C)
        try:
            np.broadcast_shapes(C.shape, batch + (M, N))
        except ValueError:
            raise ValueError(f"C {C.shape} does not broadcast to the result "
                             f"{batch + (M, N)}") from None
    if isinstance(m, TensorCoreModel):
        return _batched(lambda a, b, c, sa, sb: tc_matmul(
            a, b, np.zeros((M, N)) if c is None else c, m), A, B, C, None, None, batch)
    _check_values(A, m.inputs, "A")
    _check_values(B, m.inputs_b, "B")
    if C is not None:
        _check_values(C, m.outer_format if m.chunked else m.acc, "C")
    if m.scale_block:
        scale_a, scale_b = _check_scales(m, scale_a, scale_b, batch, M, K, N)
    elif scale_a is not None or scale_b is not None:
        raise ValueError(f"model {m.name!r} is not block-scaled (scale_block = 0); "
                         "scale_a / scale_b given")
    if m.stochastic:
        as_generator(rng, Rounding.STOCHASTIC)
    fn = _int_matmul if m.integer else _float_matmul
    return _batched(lambda a, b, c, sa, sb: fn(a, b, c, m, sa, sb, rng), A, B, C, scale_a,
                    scale_b, batch)


def dot(x, y, model, *, c=None, scale_x=None, scale_y=None, rng=None) -> np.ndarray:
    """Dot products along the last axis of x and y (broadcast), as `model` says.

    x (..., K), y (..., K), c (...) optional initial value; scales (..., K / L).
    Returns (...) float64 values (int64 for integer models).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[-1] != y.shape[-1]:
        raise ValueError(f"dot needs x (..., K) and y (..., K); got {x.shape}, {y.shape}")
    A, B = x[..., None, :], y[..., :, None]
    C = None if c is None else np.asarray(c)[..., None, None]
    sa = None if scale_x is None else np.asarray(scale_x)[..., None, :]
    sb = None if scale_y is None else np.asarray(scale_y)[..., :, None]
    return matmul(A, B, model, C=C, scale_a=sa, scale_b=sb, rng=rng)[..., 0, 0]


def _check_scales(m, sa, sb, batch, M, K, N):
    L = m.scale_block
    if sa is None or sb is None:
        raise ValueError(f"model {m.name!r} is block-scaled: pass scale_a and scale_b")
    if K % L:
        raise ValueError(f"K={K} is not a multiple of the scale block {L} ({m.name})")
    sa, sb = np.asarray(sa), np.asarray(sb)
    for s, shape, what in ((sa, (M, K // L), "scale_a"), (sb, (K // L, N), "scale_b")):
        if s.shape[-2:] != shape:
            raise ValueError(f"{what} must have shape (..., {shape[0]}, {shape[1]}); got "
                             f"{s.shape}")
        _check_values(s, m.scale_format, what)
    return sa, sb


def _batched(fn, A, B, C, sa, sb, batch):
    """Run the 2-D core on every batch element."""
    if not batch:
        return fn(A, B, C, sa, sb)
    M, N = A.shape[-2], B.shape[-1]
    A = np.broadcast_to(A, batch + A.shape[-2:])
    B = np.broadcast_to(B, batch + B.shape[-2:])
    if C is not None:
        C = np.broadcast_to(C, batch + (M, N))
    if sa is not None:
        sa = np.broadcast_to(sa, batch + sa.shape[-2:])
        sb = np.broadcast_to(sb, batch + sb.shape[-2:])
    out = None
    for idx in np.ndindex(*batch):
        r = fn(A[idx], B[idx], None if C is None else C[idx],
               None if sa is None else sa[idx], None if sb is None else sb[idx])
        if out is None:
            out = np.empty(batch + (M, N), dtype=r.dtype)
        out[idx] = r
    return out


# --------------------------------------------------------------------- floating point
def _float_matmul(A, B, C, m, sa, sb, rng):
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    M, K = A.shape
    N = B.shape[1]
    if m.order is Order.BLAS:
        return _output(np.asarray(_blas(A, B, C, m), np.float64), m)
    C = np.zeros((M, N)) if C is None else np.array(C, np.float64)
    if _jit.enabled() and not m.stochastic:
        from .._jit.accum_kernels import float_matmul
        out = float_matmul(A, B, C, m, sa, sb)
        if out is not None:
            return _output(out, m)
    return _output(_spec(A, B, C, m, sa, sb, rng), m)


def _blas(A, B, C, m):
    """Order 'blas': NumPy's sgemm / dgemm (exact conversions of the checked inputs, none
    when they already have the accumulator's dtype), then rnd_acc(gemm + C) in the same
    IEEE type; returned in that dtype (float32 or float64)."""
    dt = np.float32 if m.acc.name == "float32" else np.float64
    with np.errstate(all="ignore"):                   # IEEE results: inf, NaN, underflow
        s = np.matmul(np.asarray(A, dt), np.asarray(B, dt))
        if C is not None:
            s += np.asarray(C, dt)
    return s


def _output(s, m):
    if m.output is None or m.output == m.result_format:
        return s
    return np.asarray(cast(s, m.output, m.output_rounding), np.float64)


def _product(a, b, m):
    """The term a k-step adds: None (the step is a fused multiply-add) or the rounded
    product."""
    if m.product is None:
        return None
    return mul(a, b, m.product, m.product_rounding)


def _step(s, a, b, fmt, rounding, m, rng):
    """One accumulation step: rnd(s + a*b) (FMA) or rnd(s + rnd_prod(a*b))."""
    p = _product(a, b, m)
    if p is None:
        return fma(a, b, s, fmt, rounding, rng=rng)
    return add(s, p, fmt, rounding, rng=rng)


def _spec(A, B, C, m, sa, sb, rng):
    """NumPy specification: one vectorised step per k over all M x N outputs."""
    M, K = A.shape
    N = B.shape[1]
    if m.order is Order.PAIRWISE:
        return _pairwise(A, B, C, m, rng)
    L = m.chunk(K)
    if not m.chunked:                                     # plain sequential
        s = C
        for k in range(K):
            s = _step(s, A[:, k, None], B[None, k, :], m.acc, m.acc_rounding, m, rng)
        return s
    o = C
    for j, k0 in enumerate(range(0, K, L)):
        s = np.zeros((M, N))
        for k in range(k0, min(k0 + L, K)):
            s = _step(s, A[:, k, None], B[None, k, :], m.acc, m.acc_rounding, m, rng)
        if m.scale_block:                                 # sa * sb exact (<= 8 bits each)
            o = fma(s, sa[:, j, None] * sb[None, j, :], o, m.outer_format,
                    m.outer_rounding, rng=rng)
        else:
            o = add(o, s, m.outer_format, m.outer_rounding, rng=rng)
    return o


def _pairwise(A, B, C, m, rng):
    K = A.shape[1]
    if m.product is None:
        if m.inputs.precision + m.inputs_b.precision > 53:
            raise ValueError(f"model {m.name!r}: pairwise sums of exact {m.inputs.name} "
                             "products are not modelled (products wider than float64); "
                             "give the model a product format")
        T = mul(A.T[:, :, None], B[:, None, :], "float64")   # (K, M, N), exact
    else:
        T = mul(A.T[:, :, None], B[:, None, :], m.product, m.product_rounding)
    if K == 0:
        return C
    while T.shape[0] > 1:
        h = T.shape[0] // 2
        s = add(T[0:2 * h:2], T[1:2 * h:2], m.acc, m.acc_rounding, rng=rng)
        T = np.concatenate([s, T[2 * h:]]) if T.shape[0] % 2 else s
    return add(C, T[0], m.acc, m.acc_rounding, rng=rng)


# --------------------------------------------------------------------------- integers
def _wrap_or_saturate(s, fmt: IntFormat, rule: IntOverflow):
    if rule is IntOverflow.SATURATE:
        return np.clip(s, fmt.min, fmt.max)
    span = np.int64(1) << np.int64(fmt.bits) if fmt.bits < 63 else None
    if span is None:
        return s
    return (s - fmt.min) % span + fmt.min


def _int_matmul(A, B, C, m, sa, sb, rng):
    if _jit.enabled():
        out = _int_fast(np.asarray(A), np.asarray(B), C, m)
        if out is not None:
            return out
    A = np.asarray(A, np.int64)
    B = np.asarray(B, np.int64)
    C = np.zeros((A.shape[0], B.shape[1]), np.int64) if C is None else np.array(C, np.int64)
    if _jit.enabled():
        from .._jit.accum_kernels import int_matmul
        out = int_matmul(A, B, C, m)
        if out is not None:
            return out
    return _int_spec(A, B, C, m)


def _int_spec(A, B, C, m):
    """Sequential integer accumulation, the overflow rule applied after every addition."""
    s = C
    K = A.shape[1]
    if m.int16_pairs:
        for t in range(0, K, 2):
            q = A[:, t, None] * B[None, t, :]
            if t + 1 < K:                                 # an odd K is padded with zeros
                q = q + A[:, t + 1, None] * B[None, t + 1, :]
            s = _wrap_or_saturate(s + np.clip(q, -32768, 32767), m.acc, m.int_overflow)
        return s
    for k in range(K):
        s = _wrap_or_saturate(s + A[:, k, None] * B[None, k, :], m.acc, m.int_overflow)
    return s


def _int_fast(A, B, C, m):
    """Exact integer GEMM through floating-point BLAS: when every partial sum is an integer
    of magnitude < 2**24 (float32) or < 2**53 (float64), any summation order is exact, so
    the BLAS result is the exact sum; wrapping is then applied once (wrap commutes with
    addition), and saturation cannot trigger when no partial sum leaves the range."""
    K = A.shape[1]
    amax = max(-int(A.min()), int(A.max())) if A.size else 0
    bmax = max(-int(B.min()), int(B.max())) if B.size else 0
    total = K * amax * bmax
    cmax = 0 if C is None else int(np.abs(np.asarray(C, np.int64)).max(initial=0))
    if m.int16_pairs and 2 * amax * bmax > 32767:
        return None                                       # pair saturation possible
    if m.int_overflow is IntOverflow.SATURATE and total + cmax > m.acc.max:
        return None                                       # saturation possible
    if total < 2 ** 24:
        s = (A.astype(np.float32) @ B.astype(np.float32)).astype(np.int64)
    elif total < 2 ** 53:
        s = (A.astype(np.float64) @ B.astype(np.float64)).astype(np.int64)
    else:
        return None
    if C is not None:
        s += np.asarray(C, np.int64)
    if total + cmax <= m.acc.max and -(total + cmax) >= m.acc.min:
        return s                                          # no partial sum leaves the range
    return _wrap_or_saturate(s, m.acc, m.int_overflow)
