"""Relation-based distillation: the RKD distance loss (Park, Kim, Lu and Cho, "Relational
Knowledge Distillation", CVPR 2019, eq. (4)-(5); reference code lenscloth/RKD,
``metric/loss.py`` ``RkdDistance`` and ``metric/utils.py`` ``pdist``).

For student embeddings ``e`` (N, D_s) and teacher embeddings ``f`` (N, D_t) of the same
batch: pairwise Euclidean distances ``d_ij``, each set divided by its mean positive
distance ``mu = mean(d[d > 0])``, and the smooth-L1 (Huber) loss between the two
normalised matrices, torch's ``F.smooth_l1_loss(d / mu, d_t / mu_t, beta=beta)`` over all
N * N entries.  The teacher is a constant (no gradient).

Distances at zero (the diagonal, coincident embeddings) follow the reference ``pdist``:
``d_ij = sqrt(max(sq_ij, eps))`` off the diagonal (eps = 1e-12), 0 on the diagonal.  Its
gradient is what torch's autograd gives for that code: zero on the diagonal (the entries
are overwritten) and zero where ``sq_ij < eps`` (``clamp_min`` passes the gradient where
``sq >= eps``), so coincident embeddings exert no force on each other and no division by
a zero distance occurs.  Unlike the reference, which expands
``sq_ij = |e_i|^2 + |e_j|^2 - 2 e_i . e_j`` (cancellation for close points), the squared
distances here are ``sum_k (e_ik - e_jk)**2`` in float64, so the clamp decides on the
accurate value.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nn._check import check_array
from ..nn.policy import Policy, get_policy
from ._check import check_positive, check_reduction

__all__ = ["RKDCache", "pairwise_distances", "rkd_distance_forward", "rkd_distance_backward"]


class RKDCache(NamedTuple):
    """What :func:`rkd_distance_backward` reads (float64 values of the forward pass)."""

    diff: np.ndarray        # (N, N, D_s) e_i - e_j
    d: np.ndarray           # (N, N) student distances (clamped, zero diagonal)
    live: np.ndarray        # (N, N) bool: off the diagonal and sq >= eps (gradient flows)
    pos: np.ndarray         # (N, N) bool: d > 0 (the entries of the mean)
    mu: float               # mean positive student distance
    dn: np.ndarray          # (N, N) d / mu
    x: np.ndarray           # (N, N) d / mu - d_t / mu_t
    beta: float
    norm: float             # 1 / (N * N) for "mean", 1 for "sum"
    policy: Policy


def pairwise_distances(e, eps=1e-12):
    """Euclidean distances between the rows of e (N, D), float64, as the RKD reference
    ``pdist``: ``sqrt(max(sum_k (e_ik - e_jk)**2, eps))`` off the diagonal, 0 on it.

    Returns ``(d, sq, diff)``: distances (N, N), squared distances (N, N) before the
    clamp, differences (N, N, D).

    >>> d, _, _ = pairwise_distances([[0.0, 0.0], [3.0, 4.0]])
    >>> d.tolist()
    [[0.0, 5.0], [5.0, 0.0]]
    """
    e = np.asarray(e, np.float64)
    diff = e[:, None, :] - e[None, :, :]                            # (N, N, D)
    sq = np.sum(diff * diff, axis=2)                                # (N, N)
    d = np.sqrt(np.maximum(sq, eps))
    np.fill_diagonal(d, 0.0)
    return d, sq, diff


def _normalised(d):
    pos = d > 0
    P = int(pos.sum())
    assert P > 0, "N >= 2 and eps > 0 give positive off-diagonal distances"
    mu = float(d[pos].sum() / P)
    return d / mu, mu, pos


def rkd_distance_forward(student, teacher, policy, beta=1.0, eps=1e-12, reduction="mean",
                         rng=None, name="rkd_distance"):
    """The RKD distance loss of student embeddings against teacher embeddings.

    Parameters
    ----------
    student : array_like, (N, D_s)
    teacher : array_like, (N, D_t)
        Embeddings of the same N samples (D_s and D_t may differ); both rounded into
        ``policy.activations``.  N >= 2.
    policy : Policy or str
    beta : float
        The smooth-L1 threshold (> 0; torch's default 1).
    eps : float
        The clamp of the squared distances (> 0; the reference's 1e-12).
    reduction : {"mean", "sum"}
        Over all N * N entries of the distance matrices (``mean``: torch's default).

    Returns
    -------
    loss : float
    cache : RKDCache

    Notes
    -----
    float64: distances by :func:`pairwise_distances`; ``mu = sum(d[d > 0]) / P``;
    ``x = d / mu - d_t / mu_t``; ``h = 0.5 z**2 / beta`` for ``z = |x| < beta``, else
    ``z - 0.5 beta``; ``L = rnd_act(sum(h) * norm)`` (``sum(h) / (N * N)`` for mean).

    Examples
    --------
    >>> import numpy as np
    >>> e = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> loss, cache = rkd_distance_forward(e, 2.0 * e, "fp64")
    >>> loss
    0.0
    >>> rkd_distance_backward(1.0, cache)[0].shape
    (3, 2)
    """
    p = get_policy(policy)
    es = p.activations.round(check_array(student, name, "student embeddings", ndim=2), rng)
    et = p.activations.round(check_array(teacher, name, "teacher embeddings", ndim=2), rng)
    if es.shape[0] != et.shape[0]:
        raise ValueError(f"{name}: batch sizes differ, student {es.shape} vs teacher "
                         f"{et.shape}")
    if es.shape[0] < 2:
        raise ValueError(f"{name}: needs at least 2 embeddings, got shape {es.shape}")
    beta = check_positive(beta, name, "beta")
    eps = check_positive(eps, name, "eps")
    check_reduction(reduction, name, ("mean", "sum"))
    N = es.shape[0]
    d, sq, diff = pairwise_distances(es, eps)
    dt, _, _ = pairwise_distances(et, eps)
    dn, mu, pos = _normalised(d)
    tn, _, _ = _normalised(dt)
    x = dn - tn                                                     # (N, N)
    z = np.abs(x)
    h = np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)
    norm = 1.0 / (N * N) if reduction == "mean" else 1.0
    total = h.sum() / (N * N) if reduction == "mean" else h.sum()
    live = (sq >= eps) & ~np.eye(N, dtype=bool)
    return float(p.activations.round(total, rng)), RKDCache(diff, d, live, pos, mu, dn, x,
                                                             beta, norm, p)


def rkd_distance_backward(dloss, cache: RKDCache, rng=None):
    """d student embeddings = rnd_g(dloss * dL/de).  Returns ``(de, ())`` (the teacher gets
    no gradient).

    Notes
    -----
    float64, following torch's autograd of the reference code: ``g = clip(x / beta, -1,
    1) * norm`` (smooth-L1 backward); through ``d / mu``: ``gd = g / mu + [d > 0]
    gmu / P`` with ``gmu = -sum(g * d / mu) / mu`` (the mean's backward spreads ``gmu``
    over the P positive entries); through the clamped square root:
    ``gs = gd / (2 d)`` where ``live`` (off the diagonal, ``sq >= eps``), else 0; through
    ``sq_ij = |e_i - e_j|^2``: ``de_i = 2 sum_j (gs_ij + gs_ji) (e_i - e_j)``.
    """
    c = cache
    hp = np.where(c.x <= -c.beta, -1.0, np.where(c.x >= c.beta, 1.0, c.x / c.beta))
    g = hp * c.norm                                                 # (N, N)
    gmu = -np.sum(g * c.dn) / c.mu
    gd = g / c.mu + np.where(c.pos, gmu / int(c.pos.sum()), 0.0)
    gs = np.where(c.live, gd / np.where(c.live, 2.0 * c.d, 1.0), 0.0)
    w = gs + gs.T                                                   # (N, N)
    de = 2.0 * np.sum(w[:, :, None] * c.diff, axis=1)               # (N, D_s)
    return c.policy.gradients.round(float(dloss) * de, rng), ()
