"""Derived error bounds of batch norm, layer norm and pooling: torch 2.13 CPU float32 and
refcomp's fp32 policy transcribed into :mod:`refcomp.crosscheck.nn_err` (conventions of
:mod:`refcomp.crosscheck.nn_bounds_act`; ours: :mod:`refcomp.nn.norm` / :mod:`refcomp.nn.pool`
in float64, one rounding to float32).

torch sources (cyyever/pytorch d684b9b1, 2ea36a1d, 4b33b207, ff536a35; pytorch/pytorch
00a9f883): ``aten/src/ATen/native/cpu/batch_norm_kernel.cpp`` and ``Normalization.cpp``
(statistics summed in float or double -- bounded as float sums in any order --, ``mean =
sum / n``, ``var_sum = sum (x - mean)**2`` with the float mean, ``invstd = 1 / sqrt(var_sum /
n + eps)`` in double stored as float, ``alpha = invstd w``, ``beta = b - mean alpha``,
``y = x alpha + beta``; running stats ``m mean + (1 - m) running`` with ``m = float(momentum)``
and ``var_sum / (n - 1)``; backward ``(dy - sum(dy) / n - (x - mean) k) invstd w`` with
``k = dotp invstd invstd / n``, ``dotp = sum (x - mean) dy``); ``layer_norm_kernel.cpp``
(``RowwiseMoments`` then ``rstd = 1 / sqrt(var + float(eps))``, ``y = (x - mean) rstd g + b``;
backward ``a dy g + b x + c`` with ``b = (db mean - ds) a a a / N``, ``c = -b mean - db a / N``);
``moments_utils.h`` (Welford over lanes of 8 floats (AVX2; 16 for AVX512) in chunks of 16
vectors, a cascade of ``AddMomentsVec`` merges, the scalar tail, then the lanes merged one by
one); ``MaxPoolKernel.cpp`` / ``AvgPoolKernel.cpp`` / ``AdaptiveAvgPoolKernel.cpp``
(window sums in float, ``sum / divisor``, adaptive ``sum / kh / kw``; backward ``+=`` of
``dy / divisor`` into each input of the window).
"""

from __future__ import annotations

import math

import numpy as np

from .nn_err import (F32, F64, Bnd, add, cast, const, div, exact, mul, neg, ratio_const,
                     sqrt, sub, sum_)
from ..bounds import gamma

__all__ = ["rowwise_moments", "batchnorm", "layernorm", "windows", "scatter_sum",
           "avg_pool", "adaptive_avg_pool", "max_pool_backward"]


# ----------------------------------------------------------------------------- Welford
def _mean_step(m: Bnd, cnew: Bnd, d_exact, a_add_e, c_exact, f=F32) -> Bnd:
    """``m + c * (x_add - m)`` rounded as torch does (``delta = x_add - m`` then
    ``m += delta * c``), with the exact sensitivity ``(1 - c) E_m + c E_add`` of a mean
    update (a generic running bound would count ``E_m`` twice and grow geometrically):
    computed ``= m + E_m + (d + E_add - E_m)(1 + t1)(c + E_c)(1 + t2)``, rounded once more,
    so the error is at most ``(1 - c) E_m + c E_add + (|d| + E_m + E_add) K`` plus that last
    rounding, ``K = c ((1 + u)**2 - 1) + E_c (1 + u)**2``."""
    u = f.u
    K = c_exact * ((1 + u) ** 2 - 1) + cnew.e * (1 + u) ** 2
    v = m.v + c_exact * d_exact
    pre = (1 - c_exact) * m.e + c_exact * a_add_e + (np.abs(d_exact) + m.e + a_add_e) * K
    return Bnd(v, pre + u * (np.abs(v) + pre))


def _merge(n_add, add_, n, acc):
    """``AddMoments(n_add, m1_add, m2_add, n, m1, m2)``: (count, mean, M2) of the union;
    an empty side is an exact copy."""
    if n_add == 0:
        return n, acc[0], acc[1]
    if n == 0:
        return n_add, add_[0], add_[1]
    (m1a, m2a), (m1, m2) = add_, acc
    tot = n + n_add
    c = ratio_const(F32, n_add, tot)
    d = sub(F32, m1a, m1)
    mean = _mean_step(m1, c, m1a.v - m1.v, m1a.e, n_add / tot)
    dd = mul(F32, mul(F32, mul(F32, d, d), c), const(F32, float(n)))
    return tot, mean, add(F32, m2, add(F32, m2a, dd))


def _welford(m1, m2, x, j, divide=False):
    """One Welford step ``delta = x - m1; m1 += delta * c (or delta / (j + 1));
    m2 += delta * (x - m1)`` on the (j+1)-th element."""
    c = ratio_const(F32, 1, j + 1)
    if divide:
        c = Bnd(c.v, np.float64(0.0))                     # a division: no constant error
    d = sub(F32, x, m1)
    m1n = _mean_step(m1, c, x.v - m1.v, x.e, 1.0 / (j + 1))
    return m1n, add(F32, m2, mul(F32, d, sub(F32, x, m1n)))


def rowwise_moments(X, lanes=8, chunk=16):
    """torch's ``RowwiseMoments`` (moments_utils.h), replayed on running bounds.

    Parameters
    ----------
    X : (R, N) float32 values, the rows
    lanes : int, floats per vector register (8 for AVX2 / default, 16 for AVX512)
    chunk : int, ``kChunkSize``

    Returns
    -------
    mean, var : Bnd (R,)
        the exact mean and biased variance of each row and bounds on torch's float results
        (Welford per lane over chunks of ``chunk`` vectors, the cascade of merges, the
        scalar tail, then the lanes merged into it one by one, as the kernel orders them)
    """
    R, N = X.shape
    n = N // lanes
    m = -(-n // chunk)
    depth = 1 if m <= 2 else math.ceil(math.log2(m))            # utils::CeilLog2
    z = exact(np.zeros((R, lanes)))
    stk = [(0, (z, z)) for _ in range(depth)]
    for i in range(m):
        m0 = min(chunk, n - i * chunk)
        m1 = m2 = z
        for j in range(m0):
            k = (i * chunk + j) * lanes
            m1, m2 = _welford(m1, m2, exact(X[:, k:k + lanes]), j)
        cnt, a, b = _merge(m0, (m1, m2), *stk[0])
        stk[0] = (cnt, (a, b))
        mask, j = i + 1, 1
        while j < depth and (mask & 1) == 0:
            cnt, mm1, mm2 = _merge(stk[j - 1][0], stk[j - 1][1], stk[j][0], stk[j][1])
            stk[j] = (cnt, (mm1, mm2))
            stk[j - 1] = (0, (z, z))
            mask >>= 1
            j += 1
    for i in range(1, depth):
        cnt, mm1, mm2 = _merge(stk[i][0], stk[i][1], stk[0][0], stk[0][1])
        stk[0] = (cnt, (mm1, mm2))
    zs = exact(np.zeros(R))
    cnt, m1, m2 = 0, zs, zs
    for i in range(n * lanes, N):
        m1, m2 = _welford(m1, m2, exact(X[:, i]), cnt, divide=True)
        cnt += 1
    lm1, lm2 = stk[0][1]
    for i in range(lanes):
        cnt, m1, m2 = _merge(n, (Bnd(lm1.v[:, i], lm1.e[:, i]), Bnd(lm2.v[:, i], lm2.e[:, i])),
                             cnt, (m1, m2))
    return m1, div(F32, m2, const(F32, float(N)))


# ------------------------------------------------------------------------ batch norm
def _bn_affine(f, X, mean, invstd, w, b):
    """torch: ``alpha = invstd w``, ``beta = b - mean alpha``, ``y = x alpha + beta``."""
    alpha = mul(f, invstd, w)
    return add(f, mul(f, X, alpha), sub(f, b, mul(f, mean, alpha)))


def batchnorm(x, dy, w, b, rm, rv, train, momentum=0.1, eps=1e-5):
    """Bounds of y, dx, dgamma, dbeta (and running_mean, running_var in training), as a
    dict name -> (torch, ours).  x (N, C, ...); w, b, rm, rv (C,) (w = 1, b = 0 without
    affine)."""
    C = x.shape[1]
    xc = np.moveaxis(x, 1, 0).reshape(C, -1)                 # (C, n)
    dyc = np.moveaxis(dy, 1, 0).reshape(C, -1)
    n = xc.shape[1]
    X, D = exact(xc), exact(dyc)
    W, B = exact(w[:, None]), exact(b[:, None])
    nb = exact(np.float64(n))
    out = {}
    # ---- torch
    if train:
        mean = div(F32, sum_(F32, X, axis=1, keepdims=True), nb)
        d = sub(F32, X, mean)
        vs = sum_(F32, mul(F32, d, d), axis=1, keepdims=True)
        var = div(F32, vs, nb)
        one64 = const(F64, 1.0)
        invstd = cast(F32, div(F64, one64, sqrt(F64, add(F64, var, const(F64, eps)))))
    else:
        mean = exact(rm[:, None])
        invstd = div(F32, const(F32, 1.0), sqrt(F32, add(F32, exact(rv[:, None]),
                                                        const(F32, eps))))
    y_t = _bn_affine(F32, X, mean, invstd, W, B)
    sdy = sum_(F32, D, axis=1, keepdims=True)
    dotp = sum_(F32, mul(F32, sub(F32, X, mean), D), axis=1, keepdims=True)
    if train:
        k = div(F32, mul(F32, mul(F32, dotp, invstd), invstd), nb)
        gm = div(F32, sdy, nb)
        inner = sub(F32, sub(F32, D, gm), mul(F32, sub(F32, X, mean), k))
        dx_t = mul(F32, mul(F32, inner, invstd), W)
    else:
        inv_b = cast(F32, div(F64, const(F64, 1.0), sqrt(F64, add(F64, exact(rv[:, None]),
                                                                  const(F64, eps)))))
        dx_t = mul(F32, mul(F32, D, inv_b), W)
        invstd = inv_b
    dg_t = mul(F32, dotp, invstd)
    # ---- ours (refcomp.nn.norm)
    if train:
        mean64 = div(F64, sum_(F64, X, axis=1, keepdims=True), nb)
        d64 = sub(F64, X, mean64)
        var64 = div(F64, sum_(F64, mul(F64, d64, d64), axis=1, keepdims=True), nb)
    else:
        mean64, var64 = exact(rm[:, None]), exact(rv[:, None])
        d64 = sub(F64, X, mean64)
    inv64 = div(F64, const(F64, 1.0), sqrt(F64, add(F64, var64, const(F64, eps))))
    xhat = mul(F64, d64, inv64)
    y_o = cast(F32, add(F64, mul(F64, xhat, W), B))
    s1 = sum_(F64, D, axis=1, keepdims=True)
    s2 = sum_(F64, mul(F64, D, xhat), axis=1, keepdims=True)
    if train:
        coef = div(F64, mul(F64, W, inv64), nb)
        inner = sub(F64, sub(F64, mul(F64, nb, D), s1), mul(F64, xhat, s2))
        dx_o = cast(F32, mul(F64, coef, inner))
    else:
        dx_o = cast(F32, mul(F64, mul(F64, D, W), inv64))

    def back(bd):                                           # (C, n) -> shape of x
        shp = (C, x.shape[0]) + x.shape[2:]
        return Bnd(np.moveaxis(bd.v.reshape(shp), 0, 1), np.moveaxis(bd.e.reshape(shp), 0, 1))

    def flat(bd):
        return Bnd(bd.v[:, 0], bd.e[:, 0])

    out["y"] = (back(y_t), back(y_o))
    out["dx"] = (back(dx_t), back(dx_o))
    out["dgamma"] = (flat(dg_t), flat(cast(F32, s2)))
    out["dbeta"] = (flat(sdy), flat(cast(F32, s1)))
    if train:
        mom = const(F32, momentum)
        rest = sub(F32, const(F32, 1.0), mom)
        rm_t = add(F32, mul(F32, mom, mean), mul(F32, rest, exact(rm[:, None])))
        unb = div(F32, vs, exact(np.float64(n - 1)))
        rv_t = cast(F32, add(F64, mul(F64, mom, unb), mul(F32, rest, exact(rv[:, None]))))
        f = const(F64, momentum)
        rest64 = sub(F64, const(F64, 1.0), f)
        rm_o = cast(F32, add(F64, mul(F64, rest64, exact(rm[:, None])), mul(F64, f, mean64)))
        unb64 = mul(F64, var64, div(F64, nb, exact(np.float64(n - 1))))
        rv_o = cast(F32, add(F64, mul(F64, rest64, exact(rv[:, None])), mul(F64, f, unb64)))
        out["running_mean"] = (flat(rm_t), flat(rm_o))
        out["running_var"] = (flat(rv_t), flat(rv_o))
    return out


# ------------------------------------------------------------------------ layer norm
def layernorm(x, dy, g, b, ndim, eps=1e-5, lanes=8):
    """Bounds of y, dx, dgamma, dbeta over the trailing ``ndim`` axes (dict name ->
    (torch, ours)); g, b of the normalised shape (ones / zeros without affine)."""
    D_ = int(np.prod(x.shape[x.ndim - ndim:]))
    xr, dyr = x.reshape(-1, D_), dy.reshape(-1, D_)
    X, Dy = exact(xr), exact(dyr)
    G, Bb = exact(g.reshape(1, D_)), exact(b.reshape(1, D_))
    m1, var = rowwise_moments(xr, lanes)
    mean = Bnd(m1.v[:, None], m1.e[:, None])
    var = Bnd(var.v[:, None], var.e[:, None])
    rstd = div(F32, const(F32, 1.0), sqrt(F32, add(F32, var, const(F32, eps))))
    y_t = add(F32, mul(F32, mul(F32, add(F32, X, neg(mean)), rstd), G), Bb)
    # backward (torch's own mean / rstd)
    ds = sum_(F32, mul(F32, mul(F32, Dy, X), G), axis=1, keepdims=True)
    db = sum_(F32, mul(F32, Dy, G), axis=1, keepdims=True)
    sc = ratio_const(F32, 1, D_)
    a = rstd
    bb = mul(F32, mul(F32, mul(F32, mul(F32, sub(F32, mul(F32, db, mean), ds), a), a), a), sc)
    cc = sub(F32, neg(mul(F32, bb, mean)), mul(F32, mul(F32, db, a), sc))
    dx_t = add(F32, add(F32, mul(F32, mul(F32, a, Dy), G), mul(F32, bb, X)), cc)
    xh32 = add(F32, mul(F32, a, X), neg(mul(F32, a, mean)))
    dg_t = sum_(F32, mul(F32, Dy, xh32), axis=0)
    dbeta_t = sum_(F32, Dy, axis=0)
    # ours
    nD = exact(np.float64(D_))
    mean64 = div(F64, sum_(F64, X, axis=1, keepdims=True), nD)
    d64 = sub(F64, X, mean64)
    var64 = div(F64, sum_(F64, mul(F64, d64, d64), axis=1, keepdims=True), nD)
    inv = div(F64, const(F64, 1.0), sqrt(F64, add(F64, var64, const(F64, eps))))
    xhat = mul(F64, d64, inv)
    y_o = cast(F32, add(F64, mul(F64, xhat, G), Bb))
    h = mul(F64, Dy, G)
    sh = sum_(F64, h, axis=1, keepdims=True)
    shx = sum_(F64, mul(F64, h, xhat), axis=1, keepdims=True)
    inner = sub(F64, sub(F64, mul(F64, nD, h), sh), mul(F64, xhat, shx))
    dx_o = cast(F32, mul(F64, div(F64, inv, nD), inner))
    dg_o = cast(F32, sum_(F64, mul(F64, Dy, xhat), axis=0))
    dbeta_o = cast(F32, sum_(F64, Dy, axis=0))

    def sh_(bd, shape):
        return Bnd(bd.v.reshape(shape), bd.e.reshape(shape))

    ns = x.shape[x.ndim - ndim:]
    return {"y": (sh_(y_t, x.shape), sh_(y_o, x.shape)),
            "dx": (sh_(dx_t, x.shape), sh_(dx_o, x.shape)),
            "dgamma": (sh_(dg_t, ns), sh_(dg_o, ns)),
            "dbeta": (sh_(dbeta_t, ns), sh_(dbeta_o, ns))}


# --------------------------------------------------------------------------- pooling
def windows(x, kernel, stride, padding, dilation=(1, 1)):
    """(values (N, C, Ho, Wo, R*S) with 0 outside, flat input index (Ho, Wo, R*S), inside
    mask (Ho, Wo, R*S)) of every pooling window (torch's output-size formula, floor)."""
    N, C, H, W = x.shape
    (R, S), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    Ho = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    hi = (np.arange(Ho) * sh - ph)[:, None, None, None] + (np.arange(R) * dh)[None, None, :, None]
    wi = (np.arange(Wo) * sw - pw)[None, :, None, None] + (np.arange(S) * dw)[None, None, None, :]
    hi, wi = np.broadcast_arrays(hi, wi)                       # (Ho, Wo, R, S)
    inside = (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
    flat = np.clip(hi, 0, H - 1) * W + np.clip(wi, 0, W - 1)
    vals = x.reshape(N, C, H * W)[:, :, flat] * inside
    return vals.reshape(N, C, Ho, Wo, R * S), flat.reshape(Ho, Wo, -1), \
        inside.reshape(Ho, Wo, -1)


def scatter_sum(f, contrib: Bnd, index, size) -> Bnd:
    """Sums of the contributions (P, M) into `size` slots of each row by index (M,): each
    slot's k contributions added in any order (``gamma_{k-1}``)."""
    P = contrib.v.shape[0]
    v, e, mag = (np.zeros((P, size)) for _ in range(3))
    cnt = np.bincount(index, minlength=size)
    for arr, src in ((v, contrib.v), (e, contrib.e), (mag, np.abs(contrib.v) + contrib.e)):
        np.add.at(arr, (slice(None), index), src)
    g = np.array([gamma(max(k - 1, 0), f.u) if k > 1 else 0.0 for k in cnt])
    return Bnd(v, e + g * mag)


def _scatter_back(f, contrib, flat, inside, shape):
    """Contributions (N, C, Ho, Wo) of every window to its inside inputs, as scatter sums."""
    N, C, H, W = shape
    idx = np.broadcast_to(flat, inside.shape)[inside]
    src = np.broadcast_to(contrib.v[..., None], contrib.v.shape + (inside.shape[-1],))
    err = np.broadcast_to(contrib.e[..., None], src.shape)
    sel = (slice(None), slice(None), inside)
    c = Bnd(src[sel].reshape(N * C, -1), err[sel].reshape(N * C, -1))
    s = scatter_sum(f, c, idx, H * W)
    return Bnd(s.v.reshape(shape), s.e.reshape(shape))


def avg_pool(x, dy, kernel, stride, padding, count_include_pad=True, divisor=None):
    """avg_pool2d: torch ``sum / divisor`` (float sum), backward ``+= dy / divisor``; ours
    the float64 sum over one rounding.  Returns ((y_t, y_o), (dx_t, dx_o))."""
    vals, flat, inside = windows(x, kernel, stride, padding)
    R, S = kernel
    (ph, pw), (sh, sw) = padding, stride
    H, W = x.shape[2:]
    if divisor is not None:
        dv = np.full(flat.shape[:2], float(divisor))
    elif count_include_pad:             # the window clipped to the padded input, as torch
        Ho, Wo = flat.shape[:2]
        h0 = np.arange(Ho) * sh - ph
        w0 = np.arange(Wo) * sw - pw
        hh = np.minimum(h0 + R, H + ph) - h0
        ww = np.minimum(w0 + S, W + pw) - w0
        dv = (hh[:, None] * ww[None, :]).astype(np.float64)
    else:
        dv = inside.sum(axis=-1).astype(np.float64)
    Dv = exact(dv)
    out = []
    for f in (F32, F64):
        s = sum_(f, exact(vals), axis=-1)
        out.append(div(f, s, Dv))
    back = []
    for f in (F32, F64):
        g = div(f, exact(dy), Dv)
        back.append(_scatter_back(f, g, flat, inside, x.shape))
    return (out[0], cast(F32, out[1])), (back[0], cast(F32, back[1]))


def _cells(n, m):
    return [((i * n) // m, -((-(i + 1) * n) // m)) for i in range(m)]


def adaptive_avg_pool(x, dy, out_hw):
    """adaptive_avg_pool2d: torch ``sum / kh / kw`` (the (1, 1) mean path divides once),
    backward ``+= dy / kh / kw``; ours ``sum / (kh kw)``.  Returns ((y_t, y_o), (dx_t, dx_o))."""
    N, C, H, W = x.shape
    Ho, Wo = out_hw
    shape = (N, C, Ho, Wo)
    yv = {f: [np.zeros(shape), np.zeros(shape)] for f in (F32, F64)}
    dx = {f: [np.zeros(x.shape), np.zeros(x.shape), np.zeros(x.shape), np.zeros(x.shape)]
          for f in (F32, F64)}
    for i, (a, b) in enumerate(_cells(H, Ho)):
        for j, (c, d) in enumerate(_cells(W, Wo)):
            kh, kw = exact(np.float64(b - a)), exact(np.float64(d - c))
            cell = exact(x[:, :, a:b, c:d].reshape(N, C, -1))
            for f in (F32, F64):
                s = sum_(f, cell, axis=-1)
                y = div(f, div(f, s, kh), kw) if f is F32 else div(f, s, mul(f, kh, kw))
                yv[f][0][:, :, i, j], yv[f][1][:, :, i, j] = y.v, y.e
                g = exact(dy[:, :, i, j])
                g = div(f, div(f, g, kh), kw) if f is F32 else div(f, g, mul(f, kh, kw))
                acc = dx[f]
                acc[0][:, :, a:b, c:d] += g.v[:, :, None, None]
                acc[1][:, :, a:b, c:d] += g.e[:, :, None, None]
                acc[2][:, :, a:b, c:d] += (np.abs(g.v) + g.e)[:, :, None, None]
                acc[3][:, :, a:b, c:d] += 1
    res = []
    for f in (F32, F64):
        v, e, mag, k = dx[f]
        gk = np.vectorize(lambda n: gamma(int(n) - 1, f.u) if n > 1 else 0.0)(k)
        res.append((Bnd(*yv[f]), Bnd(v, e + gk * mag)))
    return (res[0][0], cast(F32, res[1][0])), (res[0][1], cast(F32, res[1][1]))


def max_pool_backward(dy, index, shape):
    """max_pool2d backward: dy routed to the flat input index of each window's maximum,
    torch adding the contributions in float (any order), ours in float64 then one
    rounding.  Returns (dx_t, dx_o)."""
    N, C, H, W = shape
    c = exact(dy.reshape(N * C, -1))
    out = []
    for f in (F32, F64):
        rows = []
        for r in range(N * C):
            s = scatter_sum(f, Bnd(c.v[r:r + 1], c.e[r:r + 1]), index.reshape(N * C, -1)[r],
                            H * W)
            rows.append(s)
        out.append(Bnd(np.concatenate([s.v for s in rows]).reshape(shape),
                       np.concatenate([s.e for s in rows]).reshape(shape)))
    return out[0], cast(F32, out[1])

