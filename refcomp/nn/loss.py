"""Losses: cross-entropy (label smoothing, ignore index, class weights), MSE, KL divergence.

The loss is evaluated in float64 and rounded once into ``policy.activations``; the
gradient with respect to the input, ``dloss * dL/dx``, is evaluated in float64 and rounded
once into ``policy.gradients`` (``dloss`` carries the loss scale of mixed-precision
training).  Formulas and reductions follow torch 2.13 (``aten/src/ATen/native/Loss.cpp``,
``LossNLL.cpp``): ``mean`` divides by the number of elements -- for cross-entropy by the
summed class weights of the non-ignored targets (their count without weights) --
``batchmean`` (KL) by the batch size.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._check import check_array
from .policy import Policy, get_policy

__all__ = ["LossCache", "cross_entropy_forward", "cross_entropy_backward", "mse_forward",
           "mse_backward", "kl_div_forward", "kl_div_backward"]

_REDUCTIONS = ("mean", "sum", "none")


class LossCache(NamedTuple):
    """The gradient of the loss with respect to its input for dloss = 1 (float64), and
    the reduction (so the backward can broadcast dloss)."""

    grad: np.ndarray
    reduction: str
    policy: Policy


def _reduction(r, name, allowed=_REDUCTIONS):
    if r not in allowed:
        raise ValueError(f"{name}: reduction={r!r} must be one of {', '.join(allowed)}")
    return r


def _finish(per, grad, denom, reduction, p, rng):
    if reduction == "none":
        return p.activations.round(per, rng), LossCache(grad, reduction, p)
    total = per.sum()
    if reduction != "sum":
        total, grad = total / denom, grad / denom
    return float(p.activations.round(total, rng)), LossCache(grad, reduction, p)


def _backward(dloss, cache: LossCache, rng):
    d = np.asarray(dloss, np.float64)
    if cache.reduction == "none":
        d = d.reshape(d.shape + (1,) * (cache.grad.ndim - d.ndim))
    return cache.policy.gradients.round(d * cache.grad, rng), ()


def cross_entropy_forward(logits, target, policy, weight=None, ignore_index=-100,
                          label_smoothing=0.0, reduction="mean", rng=None,
                          name="cross_entropy"):
    """torch.nn.functional.cross_entropy for logits (N, C) and class indices (N,).

    ``L_i = (1 - eps) * w_{t_i} * (-logp_{i, t_i}) + eps / C * sum_c w_c * (-logp_{i, c})``
    for non-ignored rows (``logp`` the float64 log-softmax, ``w`` ones without weights),
    0 for ignored ones; ``mean`` divides the sum by ``sum_i w_{t_i}`` over non-ignored rows.

    Returns (loss, LossCache): a float (or (N,) array for reduction='none').

    >>> import numpy as np
    >>> loss, _ = cross_entropy_forward(np.zeros((2, 4)), np.array([0, 3]), "fp64")
    >>> round(loss, 12) == round(float(np.log(4)), 12)
    True
    """
    p = get_policy(policy)
    z = p.activations.round(check_array(logits, name, "logits", ndim=2), rng)
    N, C = z.shape
    t = np.asarray(target)
    if t.shape != (N,) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"{name}: target must be ({N},) integer class indices, got "
                         f"{t.dtype} {t.shape}")
    _reduction(reduction, name)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing={label_smoothing!r} must be in [0, 1]")
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= C))
    if bad.any():
        raise ValueError(f"{name}: target {int(t[bad][0])} out of range [0, {C}) at index "
                         f"{int(np.argmax(bad))}")
    w = np.ones(C) if weight is None else check_array(weight, name, "weight", ndim=1)
    if w.shape != (C,):
        raise ValueError(f"{name}: weight shape {w.shape} != ({C},)")
    zs = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(zs).sum(axis=1, keepdims=True))
    logp = zs - lse                                             # (N, C)
    prob = np.exp(logp)
    tk = np.where(keep, t, 0)
    wt = np.where(keep, w[tk], 0.0)                             # (N,)
    eps = float(label_smoothing)
    nll = -logp[np.arange(N), tk] * wt
    smooth = np.where(keep, -(logp * w).sum(axis=1), 0.0)
    per = (1 - eps) * nll + eps / C * smooth
    onehot = np.zeros((N, C))
    onehot[np.arange(N), tk] = 1.0
    grad = (1 - eps) * wt[:, None] * (prob - onehot) + \
        (eps / C) * np.where(keep[:, None], w.sum() * prob - w, 0.0)
    return _finish(per, grad, wt.sum(), reduction, p, rng)


def cross_entropy_backward(dloss, cache: LossCache, rng=None):
    """d logits = rnd_g(dloss * dL/dlogits): for row i,
    ``(1 - eps) w_{t_i} (p_i - e_{t_i}) + eps / C (sum_c w_c p_i - w)`` over the mean's
    divisor.  Returns (dlogits, ())."""
    return _backward(dloss, cache, rng)


def mse_forward(x, target, policy, reduction="mean", rng=None, name="mse_loss"):
    """``(x - target)**2`` reduced.  Returns (loss, LossCache)."""
    p = get_policy(policy)
    x = p.activations.round(check_array(x, name, "input"), rng)
    y = check_array(target, name, "target")
    if x.shape != y.shape:
        raise ValueError(f"{name}: shape mismatch, input {x.shape} vs target {y.shape}")
    _reduction(reduction, name)
    d = x - y
    return _finish(d * d, 2.0 * d, x.size, reduction, p, rng)


def mse_backward(dloss, cache: LossCache, rng=None):
    """dx = rnd_g(dloss * 2 (x - target) / n) (n = numel for 'mean')."""
    return _backward(dloss, cache, rng)


def kl_div_forward(x, target, policy, reduction="mean", log_target=False, rng=None,
                   name="kl_div"):
    """torch.nn.functional.kl_div: x log-probabilities, pointwise
    ``target * (log(target) - x)`` (0 where target == 0) or, with log_target,
    ``exp(target) * (target - x)``; reductions mean (over all elements), batchmean
    (over x.shape[0]), sum, none.  Returns (loss, LossCache)."""
    p = get_policy(policy)
    x = p.activations.round(check_array(x, name, "input"), rng)
    t = check_array(target, name, "target")
    if x.shape != t.shape:
        raise ValueError(f"{name}: shape mismatch, input {x.shape} vs target {t.shape}")
    _reduction(reduction, name, _REDUCTIONS + ("batchmean",))
    if log_target:
        pt = np.exp(t)
        per = pt * (t - x)
    else:
        if (t < 0).any():
            raise ValueError(f"{name}: target probabilities must be >= 0 (log_target=False)")
        pt = t
        with np.errstate(divide="ignore"):
            per = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1.0)) - x), 0.0 * x)
    denom = x.shape[0] if reduction == "batchmean" else x.size
    return _finish(per, -pt, denom, "mean" if reduction == "batchmean" else reduction, p,
                   rng)


def kl_div_backward(dloss, cache: LossCache, rng=None):
    """dx = rnd_g(-dloss * target / denominator) (``exp(target)`` with log_target)."""
    return _backward(dloss, cache, rng)
