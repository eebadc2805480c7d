"""Batch normalisation (train and eval, running statistics) and layer normalisation.

Statistics, normalisation and the affine map are evaluated in float64 on the (rounded)
input and rounded once into ``policy.activations``; gradients are evaluated in float64 from
the cache and rounded once into ``policy.gradients``; running statistics are rounded into
the master format (``policy.master_spec``), where the parameters live.  Formulas and the
running-statistics rule follow torch 2.13 (``aten/src/ATen/native/Normalization.cpp``:
biased variance to normalise, unbiased ``var * n / (n - 1)`` into ``running_var``,
``running = (1 - momentum) * running + momentum * batch``, a cumulative average when
momentum is None).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._check import check_array, check_shape
from .policy import Policy, get_policy

__all__ = ["NormCache", "batchnorm_forward", "batchnorm_backward", "layernorm_forward",
           "layernorm_backward"]


class NormCache(NamedTuple):
    """What the backward of a normalisation reads."""

    xhat: np.ndarray        # normalised input (float64 intermediate), shape of x
    invstd: np.ndarray      # 1 / sqrt(var + eps), broadcastable to x
    gamma: np.ndarray | None  # rounded scale, broadcastable to x (None: no affine)
    axes: tuple             # reduced axes
    train: bool
    policy: Policy


def _affine(gamma, beta, shape, p, name, rng):
    if gamma is None and beta is None:
        return None, None
    if gamma is None or beta is None:
        raise ValueError(f"{name}: give both weight and bias, or neither")
    g = p.weights.round(check_array(gamma, name, "weight"), rng)
    b = p.weights.round(check_array(beta, name, "bias"), rng)
    for t, v in (("weight", g), ("bias", b)):
        if v.shape != shape:
            raise ValueError(f"{name}: shape mismatch, {t} {v.shape} vs {shape}")
    return g, b


def batchnorm_forward(x, gamma, beta, running_mean, running_var, policy, train=True,
                      momentum=0.1, eps=1e-5, num_batches_tracked=0, rng=None,
                      name="batchnorm"):
    """Batch normalisation over every axis but 1 of x (N, C, ...).

    Parameters
    ----------
    x : (N, C) or (N, C, L) or (N, C, H, W)
    gamma, beta : (C,) or None (no affine)
    running_mean, running_var : (C,) or None (no running statistics: batch statistics
        are used in eval mode too, as torch's track_running_stats=False)
    train : bool; momentum : float or None; eps : float
    num_batches_tracked : int, the count before this call (for momentum None)

    Returns
    -------
    y : values of ``policy.activations`` (shape of x)
    cache : NormCache
    running : (running_mean, running_var) after this call (unchanged in eval mode)

    Examples
    --------
    >>> import numpy as np
    >>> y, _, _ = batchnorm_forward(np.array([[1.0], [3.0]]), None, None, None, None, "fp64")
    >>> np.round(y.ravel(), 6).tolist()
    [-0.999995, 0.999995]
    """
    p = get_policy(policy)
    x = p.activations.round(check_array(x, name, "x"), rng)
    if x.ndim < 2:
        raise ValueError(f"{name}: x must be (N, C, ...), got shape {x.shape}")
    C = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, C) + (1,) * (x.ndim - 2)
    g, b = _affine(gamma, beta, (C,), p, name, rng)
    use_batch = train or running_mean is None
    if use_batch:
        n = x.size // C
        if train and n <= 1:
            raise ValueError(f"{name}: expected more than 1 value per channel when "
                             f"training, got input shape {x.shape}")
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    else:
        mean = check_array(running_mean, name, "running_mean").reshape(bshape)
        var = check_array(running_var, name, "running_var").reshape(bshape)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * invstd
    y = xhat if g is None else xhat * g.reshape(bshape) + b.reshape(bshape)
    y = p.activations.round(y, rng)
    running = (running_mean, running_var)
    if train and running_mean is not None:
        rm = check_array(running_mean, name, "running_mean")
        rv = check_array(running_var, name, "running_var")
        check_shape(rm.shape, (C,), name, "running_mean vs channels")
        check_shape(rv.shape, (C,), name, "running_var vs channels")
        f = 1.0 / (num_batches_tracked + 1) if momentum is None else float(momentum)
        unbiased = var.reshape(C) * (n / (n - 1))
        spec = p.master_spec
        running = (spec.round((1 - f) * rm + f * mean.reshape(C), rng),
                   spec.round((1 - f) * rv + f * unbiased, rng))
    gb = None if g is None else g.reshape(bshape)
    return y, NormCache(xhat, invstd, gb, axes, use_batch, p), running


def batchnorm_backward(dy, cache: NormCache, rng=None):
    """Gradients of :func:`batchnorm_forward`: (dx, (dgamma, dbeta) or (None, None)).

    Notes
    -----
    With batch statistics, ``dx = gamma * invstd / n * (n * dy - sum(dy) - xhat *
    sum(dy * xhat))``; with running statistics (eval) ``dx = dy * gamma * invstd``;
    ``dgamma = sum(dy * xhat)``, ``dbeta = sum(dy)`` (sums over the reduced axes, float64).
    """
    return _norm_backward(dy, cache, rng)


def _norm_backward(dy, c: NormCache, rng):
    p = c.policy
    dy = np.asarray(dy, np.float64)
    g = 1.0 if c.gamma is None else c.gamma
    sdy = dy.sum(axis=c.axes, keepdims=True)
    sdyx = (dy * c.xhat).sum(axis=c.axes, keepdims=True)
    if c.train:
        n = dy.size // sdy.size
        dx = (g * c.invstd / n) * (n * dy - sdy - c.xhat * sdyx)
    else:
        dx = dy * g * c.invstd
    dx = p.gradients.round(dx, rng)
    if c.gamma is None:
        return dx, (None, None)
    shape = c.gamma.shape
    keep = tuple(i for i in range(len(shape)) if shape[i] != 1)
    dg = p.gradients.round(sdyx.reshape([shape[i] for i in keep]), rng)
    db = p.gradients.round(sdy.reshape([shape[i] for i in keep]), rng)
    return dx, (dg, db)


def layernorm_forward(x, normalized_shape, gamma, beta, policy, eps=1e-5, rng=None,
                      name="layernorm"):
    """Layer normalisation over the trailing ``normalized_shape`` axes (biased variance).

    Returns (y, NormCache); gamma, beta of shape normalized_shape or None.

    >>> import numpy as np
    >>> y, _ = layernorm_forward(np.array([[1.0, 3.0]]), (2,), None, None, "fp64")
    >>> np.round(y, 6).tolist()
    [[-0.999995, 0.999995]]
    """
    p = get_policy(policy)
    x = p.activations.round(check_array(x, name, "x"), rng)
    ns = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) \
        else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or x.shape[x.ndim - k:] != ns or x.ndim < k:
        raise ValueError(f"{name}: normalized_shape {ns} does not match the trailing "
                         f"dimensions of x {x.shape}")
    axes = tuple(range(x.ndim - k, x.ndim))
    g, b = _affine(gamma, beta, ns, p, name, rng)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * invstd
    y = xhat if g is None else xhat * g + b
    return p.activations.round(y, rng), NormCache(xhat, invstd, g, axes, True, p)


def layernorm_backward(dy, cache: NormCache, rng=None):
    """Gradients of :func:`layernorm_forward`: (dx, (dgamma, dbeta) or (None, None)).

    ``dx = invstd / D * (D * h - sum(h) - xhat * sum(h * xhat))`` with ``h = dy * gamma``
    over the normalised axes; ``dgamma = sum(dy * xhat)``, ``dbeta = sum(dy)`` over the
    leading axes."""
    p = cache.policy
    dy = np.asarray(dy, np.float64)
    h = dy if cache.gamma is None else dy * cache.gamma
    D = int(np.prod([dy.shape[a] for a in cache.axes]))
    sh = h.sum(axis=cache.axes, keepdims=True)
    shx = (h * cache.xhat).sum(axis=cache.axes, keepdims=True)
    dx = p.gradients.round(cache.invstd / D * (D * h - sh - cache.xhat * shx), rng)
    if cache.gamma is None:
        return dx, (None, None)
    lead = tuple(range(dy.ndim - len(cache.axes)))
    dg = p.gradients.round((dy * cache.xhat).sum(axis=lead), rng)
    db = p.gradients.round(dy.sum(axis=lead), rng)
    return dx, (dg, db)
