"""Derived float32 / float64 error bounds of the distillation losses (:mod:`refcomp.distill`)
against torch autograd: shared by ``tests/test_distill.py`` and the golden suite
``distill`` (:mod:`refcomp.golden.compute_distill`, tolerance rule ``derived``).

Each torch computation (the graphs :mod:`refcomp.crosscheck.torch_distill` runs) is
transcribed operation by operation into the running error bounds of
:mod:`refcomp.crosscheck.nn_err` (Higham's standard model ``fl(a op b) = (a op b)(1 + d)
+ h``, sums in any order with ``gamma_{n-1}``, library exp / log within ``fn_ulps`` ulps,
every product of errors kept), giving ``E_torch`` with ``|torch - exact| <= E_torch``;
refcomp's float64 evaluation is transcribed the same way in float64 and, for float32,
followed by its one rounding to float32, giving ``E_ours``.  Then

    |ours - torch| <= (E_torch + E_ours) (1 + 2**-20)

(the factor covers the bound's own float64 evaluation, ``nn_err.SAFETY``), the bound
methodology of ``golden/reports/nn-torch-cpu.md``.  The ``*_bounds`` functions return
:class:`~refcomp.crosscheck.nn_err.Bnd` values, the torch side first: :func:`kd_bounds`
``(loss_t, grad_t, loss_o, grad_o)``, :func:`hint_bounds` ``[(loss, dW, db, dfs)_t,
(...)_o]``, :func:`rkd_bounds` ``[(loss, grad)_t, (loss, grad)_o]``.

Conservative choices (each covers both alternatives a kernel may take): a division by a
count or by T is bounded as a multiplication by the rounded reciprocal (two roundings;
covers one correctly rounded division, see ``nn_bounds_loss._mean``); the row maximum
of computed values is within the largest error of the row (max is 1-Lipschitz in the sup
norm); softmax as ``e * (1 / sum)``; GEMMs in any order with ``gamma_{K+2}`` (bias as
the initial accumulator or added once after).

>>> import numpy as np
>>> s = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
>>> lt, gt, lo, go = kd_bounds(s, s[::-1], np.array([0, 2]), 2.0, 0.5, "batchmean", False,
...                            "float32")
>>> bool(combined(lt, lo) < 2e-5 * abs(lt.v) and (combined(gt, go) < 2e-5).all())
True
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..bounds import gamma
from .nn_err import (F32, F64, SAFETY, Bnd, add, cast, const, div, exact, exp, log, mul, neg,
                     ratio_const, sqrt, sub, sum_, where)

__all__ = ["FMTS", "EPS", "row_max", "log_softmax", "divn", "gemm", "transpose", "combined",
           "kd_bounds", "hint_bounds", "clamp_eps", "pairwise_distances", "huber",
           "huber_grad", "rkd_bounds"]

#: the formats the bounds model, by name
FMTS = {"float32": F32, "float64": F64}


def combined(bt: Bnd, bo: Bnd) -> np.ndarray:
    """``(E_torch + E_ours) (1 + 2**-20)``: the bound on ``|ours - torch|``."""
    return (np.asarray(bt.e, np.float64) + np.asarray(bo.e, np.float64)) * SAFETY


# ------------------------------------------------------------------------- bound helpers
def row_max(X: Bnd, axis=1) -> Bnd:
    """Row maximum of computed values: within the row's largest error of the exact max."""
    return Bnd(np.max(X.v, axis=axis, keepdims=True), np.max(X.e, axis=axis, keepdims=True))


def log_softmax(f, X: Bnd) -> Bnd:
    """log_softmax over dim 1: ``(x - max) - log(sum exp(x - max))`` (torch's lastdim
    kernel and refcomp's formula)."""
    z = sub(f, X, row_max(X))
    return sub(f, z, log(f, sum_(f, exp(f, z), axis=1, keepdims=True)))


def divn(f, a: Bnd, n, torch_side) -> Bnd:
    """a / n: torch bounded as ``a * fl(1/n)`` (covers ``a / n``); refcomp's ``a / n``."""
    return mul(f, a, ratio_const(f, 1, n)) if torch_side else div(f, a, exact(np.float64(n)))


def gemm(f, A: Bnd, B: Bnd, C: Bnd | None = None) -> Bnd:
    """``A @ B (+ C)`` by a GEMM of unknown order: every term meets at most K + 2 roundings
    (its product, K accumulations, the bias) -- ``gamma_{K+2} sum |a||b|`` on the
    computed operands (Higham 2002, eq. (3.5)), plus one underflow per rounding, plus the
    propagation ``|A||dB| + |dA||B| + |dA||dB|`` of the operands' errors."""
    K = A.v.shape[-1]
    aA, aB = np.abs(A.v), np.abs(B.v)
    v = A.v @ B.v
    prop = aA @ B.e + A.e @ aB + A.e @ B.e
    mag = (aA + A.e) @ (aB + B.e)
    if C is not None:
        v, prop, mag = v + C.v, prop + C.e, mag + np.abs(C.v) + C.e
    return Bnd(v, prop + gamma(K + 2, f.u) * mag + (K + 2) * f.eta)


def transpose(b: Bnd) -> Bnd:
    return Bnd(b.v.T, b.e.T)


# ================================================================= response-based KD loss
def kd_bounds(s, t, y, T, alpha, reduction, log_target, fmt):
    """Bounds of torch's and refcomp's KD loss and gradient (both about the same exact
    value).  torch (``fmt``), as the test computes it:

    ``zs = s / T``; ``lq = log_softmax(zs)``; ``p = softmax(t / T) = e * (1 / sum e)``
    (``log_target``: ``lp = log_softmax(t / T)``, pointwise ``exp(lp) * (lp - lq)``);
    pointwise ``xlogy(p, p) - p * lq``; a sum in any order, divided by N / N*C;
    ``L = fl(A) * kl + fl(B) * ce`` (A = alpha*T*T, B = 1 - alpha: Python doubles, held
    as ``fmt`` scalars); backward: ``fl(A)`` (/ D), ``-(g * p)``, ``dlq - exp(lq) *
    sum(dlq)``, ``/ T``; CE: ``-(fl(B) / N)`` at the targets, the same log_softmax
    backward; the two contributions to ``s`` added once.
    refcomp (float64): :func:`refcomp.distill.kd_loss_forward`'s Notes, op for op
    (``p = e / sum e``, ``p * (log p - lq)``, divisions by N, N*C and T), then one
    rounding to the policy's format."""
    N, C = s.shape
    f_t = FMTS[fmt]
    S, Tt = exact(s), exact(t)
    D = {"batchmean": N, "mean": N * C, "sum": 1}[reduction]
    rows = np.arange(N)
    onehot = np.zeros((N, C))
    onehot[rows, y] = 1.0
    res = []
    for f, torch_side in ((f_t, True), (F64, False)):
        def over_T(a):
            return mul(f, a, ratio_const(f, 1, Fraction(T))) if torch_side else \
                div(f, a, exact(np.float64(T)))
        zs, zt = over_T(S), over_T(Tt)
        lq = log_softmax(f, zs)
        if log_target:
            lp = log_softmax(f, zt)
            p = exp(f, lp)
            per = mul(f, p, sub(f, lp, lq))
        else:
            e = exp(f, sub(f, zt, row_max(zt)))
            tot_e = sum_(f, e, axis=1, keepdims=True)
            if torch_side:
                p = mul(f, e, div(f, const(f, 1.0), tot_e))
                per = sub(f, mul(f, p, log(f, p)), mul(f, p, lq))
            else:
                p = div(f, e, tot_e)
                per = mul(f, p, sub(f, log(f, p), lq))
        tot = sum_(f, per)
        kl = tot if D == 1 else divn(f, tot, D, torch_side)
        cA = const(f, alpha * T * T, approx=2)
        cB = const(f, 1.0 - alpha, approx=1)
        gk = cA if D == 1 else divn(f, cA, D, torch_side)
        dlq = neg(mul(f, gk, p))
        dz = sub(f, dlq, mul(f, exp(f, lq), sum_(f, dlq, axis=1, keepdims=True)))
        grad = over_T(dz)
        loss = mul(f, cA, kl)
        if alpha != 1.0 or torch_side:
            lp_s = log_softmax(f, S)
            nll = sum_(f, neg(Bnd(lp_s.v[rows, y], lp_s.e[rows, y])))
            ce = nll if reduction == "sum" else divn(f, nll, N, torch_side)
            loss = add(f, loss, mul(f, cB, ce))
            if torch_side:
                gc = neg(cB if reduction == "sum" else divn(f, cB, N, True))
                dlp = Bnd(onehot * gc.v, onehot * gc.e)
                dce = sub(f, dlp, mul(f, exp(f, lp_s), sum_(f, dlp, axis=1, keepdims=True)))
            else:
                g = sub(f, exp(f, lp_s), exact(onehot))
                g = g if reduction == "sum" else div(f, g, exact(np.float64(N)))
                dce = mul(f, cB, g)
            grad = add(f, grad, dce)
        res.append((loss, grad))
    (lt, gt), (lo, go) = res
    if fmt == "float32":
        lo, go = cast(F32, lo), cast(F32, go)
    return lt, gt, lo, go


# ====================================================================== FitNets hint loss
def hint_bounds(fs, ft, w, b, fmt, reduction="mean"):
    """Bounds for the hint loss ``mse(fs w^T + b, ft)`` (features flattened to rows: a
    1x1 convolution is this GEMM per pixel) and the gradients of the regressor's
    weight, bias and the student features.  torch: ``addmm`` (any order),
    ``F.mse_loss`` = ``(r - ft)**2`` summed in any order times ``1/n``; backward
    ``fl(2/n) (r - ft)``, ``dW = dr^T fs``, ``db = 1^T dr``, ``dfs = dr W`` (GEMMs of any
    order).  refcomp: the engine's GEMMs (same bounds, fp32-blas / fp64-blas), MSE in
    float64 (``(r - ft)**2``, sum, ``/ n``; ``2 (r - ft) / n``) rounded once into the
    policy's format.  ``reduction="sum"``: no division (``n = 1``: the factor 2 is
    exact)."""
    f_t = FMTS[fmt]
    X, Wt, Bb, Ft = exact(fs), transpose(exact(w)), exact(b), exact(ft)
    n = ft.size if reduction == "mean" else 1
    out = []
    for f, torch_side in ((f_t, True), (F64, False)):
        R = gemm(f_t, X, Wt, Bb)                   # both sides: a GEMM in the policy format
        d = sub(f, R, Ft)
        loss = sum_(f, mul(f, d, d))
        loss = loss if n == 1 else divn(f, loss, n, torch_side)
        if torch_side:
            dr = mul(f, d, ratio_const(f, 2, n))
        else:
            dr = mul(f, const(f, 2.0), d)
            dr = dr if n == 1 else div(f, dr, exact(np.float64(n)))
            if fmt == "float32":
                loss, dr = cast(F32, loss), cast(F32, dr)
        g = f_t
        dW = gemm(g, transpose(dr), X)
        db = gemm(g, exact(np.ones((1, dr.v.shape[0]))), dr)
        dX = gemm(g, dr, transpose(Wt))
        out.append((loss, dW, Bnd(db.v[0], db.e[0]), dX))
    return out


# ======================================================================= RKD distance loss
EPS = 1e-12


def clamp_eps(sq: Bnd, N):
    """clamp(sq, min=eps) off the diagonal: exactly eps where the computed value is surely
    below eps, the value itself where surely above; no entry may be undecided (the
    gradient's mask would be)."""
    off = ~np.eye(N, dtype=bool)
    above, below = sq.v - sq.e >= EPS, sq.v + sq.e < EPS
    assert np.all(above | below | ~off), "clamp undecided within the bound"
    return Bnd(np.where(below, EPS, sq.v), np.where(below, 0.0, sq.e)), above & off


def pairwise_distances(f, E: Bnd, torch_side):
    """Distances: torch = the reference's ``|e_i|^2 + |e_j|^2 - 2 e_i . e_j`` (GEMM);
    refcomp = ``sum_k (e_ik - e_jk)**2``.  Then clamp, sqrt, zero diagonal."""
    N = E.v.shape[0]
    if torch_side:
        esq = sum_(f, mul(f, E, E), axis=1)
        prod = gemm(f, E, transpose(E))
        a = add(f, Bnd(esq.v[:, None] + 0 * prod.v, esq.e[:, None] + 0 * prod.e),
                Bnd(esq.v[None, :] + 0 * prod.v, esq.e[None, :] + 0 * prod.e))
        sq = sub(f, a, mul(f, const(f, 2.0), prod))
        diff = None
    else:
        diff = sub(f, Bnd(E.v[:, None, :], E.e[:, None, :]), Bnd(E.v[None, :, :],
                                                                 E.e[None, :, :]))
        sq = sum_(f, mul(f, diff, diff), axis=2)
    cl, live = clamp_eps(sq, N)
    with np.errstate(invalid="ignore"):     # the diagonal (overwritten below) may be the
        d = sqrt(f, cl)                     # root of a float64 rounding below zero
    eye = np.eye(N, dtype=bool)
    return where(eye, exact(np.zeros((N, N))), d), live, diff


def huber(f, X: Bnd, beta):
    """``z = |x|``; ``0.5 z z / beta`` (z < beta) else ``z - 0.5 beta``: propagation by
    ``|h'| <= min((|x| + e) / beta, 1)``; the branch formula at the computed x (either
    branch) rounds at most twice: ``((1+u)^2 - 1)`` relative plus underflows."""
    z = np.abs(X.v)
    hv = np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)
    prop = X.e * np.minimum((z + X.e) / beta, 1.0)
    return Bnd(hv, prop + gamma(2, f.u) * (hv + prop) + 3 * f.eta)


def huber_grad(f, X: Bnd, beta, norm: Bnd):
    """``norm * clip(x / beta, -1, 1)``: h' is (1/beta)-Lipschitz; the computed formula
    (torch: ``norm * x * g / beta`` or ``+-norm``; refcomp: ``clip(x / beta) * norm``)
    rounds at most three times and uses the held norm."""
    a = np.minimum((np.abs(X.v) + X.e) / beta, 1.0)
    v = np.clip(X.v / beta, -1.0, 1.0) * norm.v
    e = norm.v * X.e / beta + norm.e * a + gamma(3, f.u) * (norm.v + norm.e) * a + 4 * f.eta
    return Bnd(v, e)


def rkd_bounds(es, et, beta, fmt, reduction="mean"):
    """Bounds of torch's autograd of the reference RKD code and of refcomp's
    :func:`rkd_distance_forward` / backward (their Notes, op for op).  torch backward
    (grad 1): smooth-L1's ``norm x / beta`` (or ``+-norm``); ``d / mu``: ``g / mu`` and
    ``sum(-g ((d / mu) / mu))``, the mean's ``/ P`` added once on the positive entries;
    ``sqrt``: ``g / (2 d)``; the clamp's mask; the expansion: ``dA = g``, ``dprod = -2 g``,
    ``desq = sum_j g_ij + sum_i g_ij`` (added once), ``pow``: ``desq * (2 e)``, the GEMMs
    ``dprod @ e`` and ``dprod^T @ e``; the three contributions to ``e`` added in any order.
    refcomp: ``gs + gs^T``, ``2 * sum_j w_ij (e_i - e_j)``.  ``reduction="sum"``: the
    smooth-L1 sum without the division by ``N * N`` (``norm = 1``).  Every off-diagonal
    distance must be positive (no coincident rows)."""
    f_t = FMTS[fmt]
    N = es.shape[0]
    n = N * N if reduction == "mean" else 1
    out = []
    for f, torch_side in ((f_t, True), (F64, False)):
        E = exact(es)
        ds, live, diff = pairwise_distances(f, E, torch_side)
        dt, _, _ = pairwise_distances(f, exact(et), torch_side)
        pos = ~np.eye(N, dtype=bool)
        P = int(pos.sum())

        def mean_pos(d):
            s = sum_(f, Bnd(d.v[pos], d.e[pos]))
            return divn(f, s, P, torch_side)
        mu, mut = mean_pos(ds), mean_pos(dt)
        dn, tn = div(f, ds, mu), div(f, dt, mut)
        x = sub(f, dn, tn)
        loss = sum_(f, huber(f, x, beta))
        loss = loss if n == 1 else divn(f, loss, n, torch_side)
        g = huber_grad(f, x, beta, ratio_const(f, 1, n))
        gd = div(f, g, mu)
        if torch_side:
            gmu = sum_(f, neg(mul(f, g, div(f, div(f, ds, mu), mu))))
        else:
            gmu = neg(div(f, sum_(f, mul(f, g, dn)), mu))
        gd = where(pos, add(f, gd, divn(f, gmu, P, torch_side)), gd)
        # (the diagonal's gradient is zero: overwritten entries; divide by 1 there)
        ds1 = where(np.eye(N, dtype=bool), exact(np.ones((N, N))), ds)
        gs = div(f, gd, mul(f, const(f, 2.0), ds1))
        gs = where(live, gs, exact(np.zeros((N, N))))
        if torch_side:
            desq = add(f, sum_(f, gs, axis=1), sum_(f, gs, axis=0))
            c1 = mul(f, Bnd(desq.v[:, None], desq.e[:, None]), mul(f, const(f, 2.0), E))
            dprod = mul(f, neg(gs), const(f, 2.0))
            c2, c3 = gemm(f, dprod, E), gemm(f, transpose(dprod), E)
            grad = sum_(f, Bnd(np.stack([c1.v, c2.v, c3.v]), np.stack([c1.e, c2.e, c3.e])),
                        axis=0)
        else:
            w = add(f, gs, transpose(gs))
            t = sum_(f, mul(f, Bnd(w.v[:, :, None], w.e[:, :, None]), diff), axis=1)
            grad = mul(f, const(f, 2.0), t)
            if fmt == "float32":
                loss, grad = cast(F32, loss), cast(F32, grad)
        out.append((loss, grad))
    return out
