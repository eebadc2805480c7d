"""Numba kernels of the NN engine: float64 erf (NumPy twin:
:func:`refcomp.nn.activation._erf_spec`, ``math.erf`` per element) and the float32 fused
multiply-add of the optimizers' native path (twin: :func:`refcomp.ops.fma` in float32)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import CACHE
from .fast_ops import fma_native


@njit(cache=CACHE)
def erf_flat(x):
    """math.erf of every element of a contiguous float64 vector."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = math.erf(x[i])
    return out


@njit(cache=CACHE)
def fma32_flat(a, b, c):
    """fma(a[i], b[i], c[i]) rounded once to float32, contiguous float32 vectors (the FMA
    instruction through llvm.fma.f32)."""
    out = np.empty_like(c)
    for i in range(c.size):
        out[i] = fma_native(a[i], b[i], c[i])
    return out


@njit(cache=CACHE)
def relu_flat(x):
    """x[i] if x[i] > 0 else +0 (twin: :func:`refcomp.nn.activation._relu_spec`)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = x[i] if x[i] > 0 else 0.0
    return out


@njit(cache=CACHE)
def relu_grad_flat(y, dy):
    """dy[i] if y[i] > 0 else +0 (twin: :func:`refcomp.nn.activation._relu_grad_spec`)."""
    out = np.empty_like(dy)
    for i in range(dy.size):
        out[i] = dy[i] if y[i] > 0 else 0.0
    return out


@njit(cache=CACHE)
def max_pool_taps(xp, R, S, sh, sw, dh, dw, Ho, Wo):
    """Window maxima of xp (N, C, Hp, Wp) (padding already -inf) and the index j = r S + s
    of the FIRST maximum in (r, s) scan order (a later tap replaces only when strictly
    greater), as (N, C, Ho, Wo) arrays (twin: the loop in
    :func:`refcomp.nn.pool.max_pool2d_forward`)."""
    N, C = xp.shape[0], xp.shape[1]
    y = np.empty((N, C, Ho, Wo))
    k = np.empty((N, C, Ho, Wo), np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best = xp[n, c, i * sh, j * sw]
                    arg = 0
                    for t in range(1, R * S):
                        r = t // S
                        s = t - r * S
                        v = xp[n, c, i * sh + r * dh, j * sw + s * dw]
                        if v > best:
                            best = v
                            arg = t
                    y[n, c, i, j] = best
                    k[n, c, i, j] = arg
    return y, k


@njit(cache=CACHE)
def fma32_scalar_flat(a, b, c):
    """fma(a, b[i], c[i]) rounded once to float32 for a float32 scalar a."""
    out = np.empty_like(c)
    for i in range(c.size):
        out[i] = fma_native(a, b[i], c[i])
    return out
