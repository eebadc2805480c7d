"""Derived error bounds of the losses (cross-entropy, MSE, KL divergence), forward and
backward: torch 2.13 CPU float32 and refcomp's fp32 policy transcribed into
:mod:`refcomp.crosscheck.nn_err` (conventions of :mod:`refcomp.crosscheck.nn_bounds_act`).

torch sources (pytorch/pytorch, cyyever/pytorch commits 0d188885, 2ea36a1d):
``aten/src/ATen/native/LossNLL.cpp`` -- ``cross_entropy_loss_symint`` is
``nll_loss_nd(log_softmax(x))``, with label smoothing
``(1 - eps) * nll + ret * (eps / C)``, ``ret`` the masked ``-(logp * w).sum(1)`` reduced
(mean: over the summed target weights); ``nll_loss_out_frame`` accumulates
``-logp[i, t_i] * w_{t_i}`` in a cascade (any order here) and divides by the total weight;
``nll_loss_backward_out_frame`` writes ``w_t * -(g / total_weight)``.  The backward of the
composite is autograd's: every ``Scalar * Tensor`` multiplies by the scalar rounded to
float, every division by a count or a weight sum rounds once, the two gradient
contributions to ``logp`` are added once, then ``_log_softmax_backward_data`` on torch's
own ``logp``.  ``aten/src/ATen/native/Loss.cpp``: ``mse_loss`` = ``(x - t)**2`` reduced,
``mse_loss_backward`` = ``float(2 / n) * (x - t) * g``; ``kl_div`` =
``xlogy(t, t) - t * x`` or ``exp(t) * (t - x)`` reduced (batchmean: the sum divided by
the batch size in Python), backward by autograd.  A ``mean`` reduction is bounded as
``sum * float(1 / n)`` (two roundings), which also covers ``sum / n`` (one).

ours: :mod:`refcomp.nn.loss` in float64, one rounding to float32.
"""

from __future__ import annotations

import numpy as np

from .nn_err import (F32, F64, Bnd, add, cast, const, div, exact, exp, log, mul, neg,
                     ratio_const, sub, sum_, where)

__all__ = ["cross_entropy", "mse", "kl_div"]


def _zero(shape):
    return exact(np.zeros(shape))


def _mean(f, s, n):
    """sum / n: ``s * float(1 / n)`` for torch (covers ``s / n``), ``s / n`` for ours."""
    return mul(f, s, ratio_const(f, 1, n)) if f is F32 else div(f, s, exact(np.float64(n)))


def _take(b: Bnd, rows, cols):
    return Bnd(b.v[rows, cols], b.e[rows, cols])


def _logp(f, X):
    z = sub(f, X, exact(np.max(X.v, axis=1, keepdims=True)))
    return sub(f, z, log(f, sum_(f, exp(f, z), axis=1, keepdims=True)))


def cross_entropy(z, t, dloss, weight=None, ignore_index=-100, eps=0.0, reduction="mean"):
    """Returns ((loss_t, loss_o), (dz_t, dz_o)) for logits z (N, C), targets t (N,)."""
    N, C = z.shape
    X = exact(z)
    rows = np.arange(N)
    keep = t != ignore_index
    tk = np.where(keep, t, 0)
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    wt = np.where(keep, w[tk], 0.0)
    onehot = np.zeros((N, C), bool)
    onehot[rows, tk] = keep
    G = exact(dloss)
    c1 = const(F32, 1.0 - eps, approx=1)
    c2 = const(F32, eps / C, approx=1)
    # ---- torch forward
    lp = _logp(F32, X)
    lpt = _take(lp, rows, tk)
    term = lpt if weight is None else mul(F32, lpt, exact(wt))
    nll_rows = where(keep, neg(term), _zero(N))
    tw = exact(np.float64(keep.sum())) if weight is None else sum_(F32, exact(wt))
    if reduction == "none":
        nll = nll_rows
    else:
        nll = sum_(F32, nll_rows)
        nll = div(F32, nll, tw) if reduction == "mean" else nll
    loss_t = nll
    if eps > 0:
        lw = lp if weight is None else mul(F32, lp, exact(w[None, :]))
        smooth = where(keep, neg(sum_(F32, lw, axis=1)), _zero(N))
        ret = smooth if reduction == "none" else sum_(F32, smooth)
        if reduction == "mean":
            ret = div(F32, ret, tw)
        loss_t = add(F32, mul(F32, c1, nll), mul(F32, ret, c2))
    # ---- ours forward
    lp64 = _logp(F64, X)
    nll64 = mul(F64, neg(_take(lp64, rows, tk)), exact(wt))
    sm64 = where(keep, neg(sum_(F64, mul(F64, lp64, exact(w[None, :])), axis=1)), _zero(N))
    k1, k2 = const(F64, 1.0 - eps, approx=1), const(F64, eps / C, approx=1)
    per = add(F64, mul(F64, k1, nll64), mul(F64, k2, sm64))
    tw64 = sum_(F64, exact(wt))
    if reduction != "none":
        per = sum_(F64, per)
        per = div(F64, per, tw64) if reduction == "mean" else per
    loss_o = cast(F32, per)
    # ---- torch backward: nll_loss_backward + the smoothing branch, then log_softmax's
    g_nll = mul(F32, G, c1) if eps > 0 else G
    if reduction == "none":
        gn = neg(mul(F32, exact(wt), g_nll))                         # (N,)
    else:
        gs = neg(div(F32, g_nll, tw) if reduction == "mean" else g_nll)
        gn = Bnd(np.broadcast_to(gs.v, (N,)), np.broadcast_to(gs.e, (N,)))
        gn = gn if weight is None else mul(F32, exact(wt), gn)
    gn = Bnd(gn.v[:, None] * np.ones(C), gn.e[:, None] * np.ones(C))
    if eps > 0:
        gr = mul(F32, G, c2)
        d = div(F32, gr, tw) if reduction == "mean" else gr
        d = Bnd(np.broadcast_to(d.v, (N,))[:, None] * np.ones(C),
                np.broadcast_to(d.e, (N,))[:, None] * np.ones(C))
        ds = neg(d if weight is None else mul(F32, d, exact(w[None, :])))
        ds = where(keep[:, None], ds, _zero((N, C)))
        dlp = where(onehot, add(F32, gn, ds), ds)
    else:
        dlp = where(onehot, gn, _zero((N, C)))
    s = sum_(F32, dlp, axis=1, keepdims=True)
    dz_t = sub(F32, dlp, mul(F32, exp(F32, lp), s))
    # ---- ours backward: ((1-eps) wt (p - onehot) + eps/C where(keep, sum(w) p - w, 0)) / W
    p = exp(F64, lp64)
    g1 = mul(F64, mul(F64, k1, exact(wt[:, None])), sub(F64, p, exact(onehot * 1.0)))
    g2 = sub(F64, mul(F64, sum_(F64, exact(w)), p), exact(np.broadcast_to(w, (N, C))))
    grad = add(F64, g1, mul(F64, k2, where(keep[:, None], g2, _zero((N, C)))))
    if reduction == "mean":
        grad = div(F64, grad, tw64)
    Gb = G if np.ndim(G.v) == 0 else Bnd(G.v[:, None], G.e[:, None])
    dz_o = cast(F32, mul(F64, Gb, grad))
    return (loss_t, loss_o), (dz_t, dz_o)


def _reduce(f, per, reduction, n, batch):
    if reduction == "none":
        return per
    s = sum_(f, per)
    if reduction == "sum":
        return s
    if reduction == "batchmean":
        return div(f, s, exact(np.float64(batch)))
    return _mean(f, s, n)


def _grad_scale(f, G, reduction, n, batch):
    """The incoming gradient after the reduction's backward (torch: ``g / n``; ours
    divides the cached gradient, which is the same rounding count)."""
    if reduction in ("mean", "batchmean"):
        return div(f, G, exact(np.float64(n if reduction == "mean" else batch)))
    return G


def mse(x, target, dloss, reduction="mean"):
    """Returns ((loss_t, loss_o), (dx_t, dx_o))."""
    X, T, G = exact(x), exact(target), exact(dloss)
    n = x.size
    d32 = sub(F32, X, T)
    loss_t = _reduce(F32, mul(F32, d32, d32), reduction, n, None)
    d64 = sub(F64, X, T)
    loss_o = cast(F32, _reduce(F64, mul(F64, d64, d64), reduction, n, None))
    norm = const(F32, 2.0 / n, approx=1) if reduction == "mean" else const(F32, 2.0)
    dx_t = mul(F32, mul(F32, norm, d32), G)
    g64 = mul(F64, const(F64, 2.0), d64)
    if reduction == "mean":
        g64 = div(F64, g64, exact(np.float64(n)))
    dx_o = cast(F32, mul(F64, G, g64))
    return (loss_t, loss_o), (dx_t, dx_o)


def kl_div(x, target, dloss, reduction="mean", log_target=False):
    """Returns ((loss_t, loss_o), (dx_t, dx_o))."""
    X, T, G = exact(x), exact(target), exact(dloss)
    n, batch = x.size, x.shape[0]
    pos = target > 0
    safe = exact(np.where(pos, target, 1.0))
    if log_target:
        per_t = mul(F32, exp(F32, T), sub(F32, T, X))
        per_o = mul(F64, exp(F64, T), sub(F64, T, X))
    else:
        xlogy = where(pos, mul(F32, T, log(F32, safe)), _zero(x.shape))
        per_t = sub(F32, xlogy, mul(F32, T, X))
        per_o = where(pos, mul(F64, T, sub(F64, log(F64, safe), X)), _zero(x.shape))
    loss_t = _reduce(F32, per_t, reduction, n, batch)
    loss_o = cast(F32, _reduce(F64, per_o, reduction, n, batch))
    pt32 = exp(F32, T) if log_target else T
    dx_t = neg(mul(F32, _grad_scale(F32, G, reduction, n, batch), pt32))
    pt64 = exp(F64, T) if log_target else T
    g64 = neg(pt64)
    if reduction in ("mean", "batchmean"):
        g64 = div(F64, g64, exact(np.float64(n if reduction == "mean" else batch)))
    dx_o = cast(F32, mul(F64, G, g64))
    return (loss_t, loss_o), (dx_t, dx_o)
