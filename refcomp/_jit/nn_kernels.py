"""Numba kernels of the NN engine: float64 erf (NumPy twin:
:func:`refcomp.nn.activation._erf_spec`, ``math.erf`` per element), the float32 fused
multiply-add of the optimizers' native path (twin: :func:`refcomp.ops.fma` in float32),
relu, max pooling, the scatter of its backward, and im2col (each with its NumPy twin named
in its docstring; tests compare the two bit for bit)."""

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
def max_pool_taps(xp, R, S, sh, sw, dh, dw, ph, pw, H, W, Ho, Wo):
    """Window maxima of xp (N, C, H + 2 ph, W + 2 pw), the input padded with -inf, and
    the flat index ``row * W + col`` into the unpadded input of each window's FIRST
    maximum among its input elements in (r, s) scan order: the scan starts at the
    window's first input element and a later tap replaces only when strictly greater (a
    -inf padding tap never does), so padding is never chosen.  (N, C, Ho, Wo) arrays, the
    maxima in xp's dtype; index -1 for a window without an input element (twin:
    :func:`refcomp.nn.pool._max_taps`)."""
    N, C = xp.shape[0], xp.shape[1]
    y = np.empty((N, C, Ho, Wo), xp.dtype)
    k = np.empty((N, C, Ho, Wo), np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                r0 = 0                              # first tap row inside the input
                while r0 < R and not 0 <= i * sh - ph + r0 * dh < H:
                    r0 += 1
                for j in range(Wo):
                    s0 = 0
                    while s0 < S and not 0 <= j * sw - pw + s0 * dw < W:
                        s0 += 1
                    if r0 == R or s0 == S:
                        y[n, c, i, j] = -np.inf
                        k[n, c, i, j] = -1
                        continue
                    best = xp[n, c, i * sh + r0 * dh, j * sw + s0 * dw]
                    arg = r0 * S + s0
                    for t in range(arg + 1, R * S):
                        r = t // S
                        s = t - r * S
                        v = xp[n, c, i * sh + r * dh, j * sw + s * dw]
                        if v > best:
                            best = v
                            arg = t
                    r = arg // S
                    s = arg - r * S
                    y[n, c, i, j] = best
                    k[n, c, i, j] = (i * sh - ph + r * dh) * W + (j * sw - pw + s * dw)
    return y, k


@njit(cache=CACHE)
def max_pool_2x2(x):
    """:func:`max_pool_taps` for the common 2 x 2 window with stride 2, no padding and no
    dilation, the four taps unrolled (the generic loop is several times slower)."""
    N, C, H, W = x.shape
    Ho, Wo = H // 2, W // 2
    y = np.empty((N, C, Ho, Wo), x.dtype)
    k = np.empty((N, C, Ho, Wo), np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                h = 2 * i
                for j in range(Wo):
                    w = 2 * j
                    m = x[n, c, h, w]
                    a = h * W + w
                    v = x[n, c, h, w + 1]
                    if v > m:
                        m = v
                        a = h * W + w + 1
                    v = x[n, c, h + 1, w]
                    if v > m:
                        m = v
                        a = (h + 1) * W + w
                    v = x[n, c, h + 1, w + 1]
                    if v > m:
                        m = v
                        a = (h + 1) * W + w + 1
                    y[n, c, i, j] = m
                    k[n, c, i, j] = a
    return y, k


@njit(cache=CACHE)
def scatter_rows(dx, idx, dy, accumulate):
    """``dx[r, idx[r, j]] = dy[r, j]`` (or ``+=`` with accumulate, in row-major order of
    (r, j): the order of ``numpy.add.at``) for 2-D arrays (twin: put_along_axis /
    numpy.add.at in :func:`refcomp.nn.pool.max_pool2d_backward`)."""
    for r in range(idx.shape[0]):
        for j in range(idx.shape[1]):
            if accumulate:
                dx[r, idx[r, j]] += dy[r, j]
            else:
                dx[r, idx[r, j]] = dy[r, j]
    return dx


@njit(cache=CACHE)
def im2col_kernel(xp, kh, kw, sh, sw, dh, dw, ho, wo):
    """Patches of xp (N, C, Hp, Wp), the zero-padded input, as (N, ho * wo, C * kh * kw),
    K ordered (c, r, s): a gather through a table of tap offsets (twin: the NumPy loop of
    :func:`refcomp.ops.conv.im2col`)."""
    n, c, hp, wp = xp.shape
    K = c * kh * kw
    off = np.empty(K, np.int64)
    q = 0
    for ch in range(c):
        for r in range(kh):
            for s in range(kw):
                off[q] = ch * hp * wp + r * dh * wp + s * dw
                q += 1
    out = np.empty((n, ho * wo, K), xp.dtype)
    o = out.reshape(-1)
    xf = xp.reshape(-1)
    t = 0
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                base = b * c * hp * wp + i * sh * wp + j * sw
                for q in range(K):
                    o[t] = xf[base + off[q]]
                    t += 1
    return out


@njit(cache=CACHE)
def fma32_scalar_flat(a, b, c):
    """fma(a, b[i], c[i]) rounded once to float32 for a float32 scalar a."""
    out = np.empty_like(c)
    for i in range(c.size):
        out[i] = fma_native(a, b[i], c[i])
    return out
