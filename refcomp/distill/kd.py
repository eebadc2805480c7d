"""Response-based knowledge distillation (Hinton, Vinyals and Dean, "Distilling the
Knowledge in a Neural Network", 2015): the loss on the student's logits and its gradient.

``L = alpha * T**2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)``

with the KL term given by the formula of torch 2.13's
``F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction=...)`` (or, with
``log_target=True``, ``F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1),
reduction=..., log_target=True)``) and the cross-entropy ``F.cross_entropy(s, y)``
(``torch/nn/functional.py``; reductions of ``aten/src/ATen/native/Loss.cpp``).  The
formula and reductions are torch's, evaluated in float64, not torch's operation order:
the pointwise KL term here is ``p * (log p - lq)`` where torch computes
``xlogy(p, p) - p * lq``, so results agree with torch within the error bounds the tests
derive, not bit for bit.

As the engine's losses (:mod:`refcomp.nn.loss`), the loss is evaluated in float64 and
rounded once into ``policy.activations``; the gradient with respect to the student logits
is evaluated in float64 and rounded once into ``policy.gradients`` by the backward pass.
The teacher logits are constants: they receive no gradient.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..nn._check import check_array
from ..nn.loss import cross_entropy_forward
from ..nn.policy import Policy, get_policy
from ._check import check_alpha, check_reduction, check_temperature

__all__ = ["KDCache", "KD_REDUCTIONS", "kd_loss_forward", "kd_loss_backward"]

#: the reductions of the KL term (torch's ``F.kl_div``)
KD_REDUCTIONS = ("batchmean", "mean", "sum")


class KDCache(NamedTuple):
    """What :func:`kd_loss_backward` reads: the float64 gradient for ``dloss = 1`` and
    the two terms of the loss (float64, for reporting)."""

    grad: np.ndarray        # (N, C) dL/ds, float64
    kl: float               # the reduced KL term, before the factor alpha T**2
    ce: float               # the cross-entropy term (nan without targets)
    policy: Policy


def _log_softmax(z):
    """Rows of log_softmax in float64: ``(z - max) - log(sum exp(z - max))``."""
    zs = z - np.max(z, axis=1, keepdims=True)                       # (N, C)
    return zs - np.log(np.sum(np.exp(zs), axis=1, keepdims=True))


def kd_loss_forward(student_logits, teacher_logits, target, policy, temperature=4.0,
                    alpha=0.9, reduction="batchmean", log_target=False, rng=None,
                    name="kd_loss"):
    """The distillation loss of student logits against teacher logits and labels.

    Parameters
    ----------
    student_logits, teacher_logits : array_like, shape (N, C)
        Logits, rounded into ``policy.activations`` (values of a network's output are
        unchanged).  The teacher's are constants (no gradient).
    target : array_like of int, shape (N,), or None
        Class indices for the cross-entropy term; may be None only when ``alpha == 1``.
        A given target is checked (shape and integer type) even when ``alpha == 1``.
    policy : Policy or str
        Numeric policy: the loss is rounded into its activation format.
    temperature : float
        T > 0, finite.
    alpha : float
        Weight of the distillation term, in [0, 1].
    reduction : {"batchmean", "mean", "sum"}
        Reduction of the KL term as torch's ``F.kl_div``: ``batchmean`` divides the sum by
        N (the mathematical KL per sample), ``mean`` by all N * C elements (torch 2.13
        warns that this will change to ``batchmean`` in a future release), ``sum`` none.
        The cross-entropy term is ``reduction="sum"`` for ``sum`` and the mean over the
        batch otherwise.
    log_target : bool
        Give torch's KL the teacher's log-probabilities (``log_target=True``) instead of
        its probabilities; mathematically equal, it differs where probabilities underflow.
    rng : numpy.random.Generator, optional
        For stochastic rounding policies.

    Returns
    -------
    loss : float
    cache : KDCache

    Notes
    -----
    Evaluated in float64 in this order (the order of torch's autograd graph, which the
    backward mirrors): ``zs = s / T``, ``lq = (zs - max) - log(sum exp(zs - max))``;
    teacher ``p = e / sum(e)``, ``e = exp(t / T - max)`` (``log_target``: ``lp`` the
    log-softmax of ``t / T`` and ``p = exp(lp)``); pointwise KL ``p (log p - lq)`` (0 where
    ``p == 0``; torch evaluates ``xlogy(p, p) - p * lq``; ``log_target``:
    ``p (lp - lq)``) summed and divided by ``D`` (N, N * C or 1); ``A = alpha * T * T`` (two float64 roundings, as Python evaluates torch's
    expression); ``L = A * KL + (1 - alpha) * CE``, CE from
    :func:`refcomp.nn.loss.cross_entropy_forward` in float64.  The gradient (for
    ``dloss = 1``):

    ``g = A / D``, ``dlq = -g * p``, ``dzs = dlq - exp(lq) * sum_c dlq`` (torch's
    ``_log_softmax_backward_data``), ``ds = dzs / T + (1 - alpha) * dCE/ds``,

    which equals ``alpha * T * (softmax(s / T) - p) / D`` plus the cross-entropy part
    whenever the teacher's row sums to 1; with ``p`` held fixed the formula above is the
    exact derivative of the evaluated loss.  With ``alpha == 1`` the CE term is skipped
    (target may be None); with ``alpha == 0`` the KL term still runs (it weighs 0).

    Examples
    --------
    >>> import numpy as np
    >>> s = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    >>> t = np.array([[0.5, 2.5, 0.0], [0.2, -0.5, 2.0]])
    >>> loss, cache = kd_loss_forward(s, t, np.array([1, 2]), "fp64", temperature=2.0,
    ...                               alpha=0.5)
    >>> round(loss, 6)
    0.214007
    >>> ds, _ = kd_loss_backward(1.0, cache)
    >>> ds.shape
    (2, 3)
    """
    p = get_policy(policy)
    s = p.activations.round(check_array(student_logits, name, "student logits", ndim=2), rng)
    t = p.activations.round(check_array(teacher_logits, name, "teacher logits", ndim=2), rng)
    if s.shape != t.shape:
        raise ValueError(f"{name}: shape mismatch, student logits {s.shape} vs teacher "
                         f"logits {t.shape}")
    T = check_temperature(temperature, name)
    a = check_alpha(alpha, name)
    check_reduction(reduction, name, KD_REDUCTIONS)
    N, C = s.shape
    if N == 0:
        raise ValueError(f"{name}: empty batch (logits shape {s.shape})")
    if target is None:
        if a != 1.0:
            raise ValueError(f"{name}: target=None needs alpha == 1 (got alpha={alpha!r})")
    else:                    # checked even when alpha == 1 skips the CE term
        y = np.asarray(target)
        if y.shape != (N,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name}: target must be ({N},) integer class indices, got "
                             f"{y.dtype} {y.shape}")
    lq = _log_softmax(s / T)                                        # (N, C)
    zt = t / T
    if log_target:
        lp = _log_softmax(zt)
        pt = np.exp(lp)                                             # (N, C)
        per = pt * (lp - lq)
    else:
        e = np.exp(zt - np.max(zt, axis=1, keepdims=True))
        pt = e / np.sum(e, axis=1, keepdims=True)                   # (N, C)
        with np.errstate(divide="ignore"):
            per = np.where(pt > 0, pt * (np.log(np.where(pt > 0, pt, 1.0)) - lq), 0.0)
    D = {"batchmean": N, "mean": N * C, "sum": 1}[reduction]
    kl = per.sum() / D
    A = a * T * T
    g = A / D
    dlq = -g * pt
    grad = (dlq - np.exp(lq) * np.sum(dlq, axis=1, keepdims=True)) / T    # (N, C)
    value, ce = A * kl, math.nan
    if a != 1.0:
        ce, cc = cross_entropy_forward(s, target, "fp64",
                                       reduction="sum" if reduction == "sum" else "mean",
                                       name=name)
        b = 1.0 - a
        value = value + b * ce
        grad = grad + b * cc.grad
    return float(p.activations.round(value, rng)), KDCache(grad, float(kl), float(ce), p)


def kd_loss_backward(dloss, cache: KDCache, rng=None):
    """d student logits = rnd_g(dloss * dL/ds) (float64 product, one rounding into
    ``policy.gradients``; ``dloss`` carries a loss scale).  Returns ``(ds, ())``: the
    teacher logits receive no gradient.

    >>> import numpy as np
    >>> _, c = kd_loss_forward(np.zeros((1, 2)), np.zeros((1, 2)), None, "fp64", alpha=1.0)
    >>> kd_loss_backward(1.0, c)[0].tolist()
    [[0.0, 0.0]]
    """
    d = float(dloss)
    return cache.policy.gradients.round(d * cache.grad, rng), ()
