"""Elementwise activations, softmax, dropout and residual add: forward / backward pairs.

Each forward evaluates its formula in float64 on its input (values of the activation
format) and rounds the result once into ``policy.activations``; each backward evaluates
the derivative in float64 from the cached tensors named in its Notes (the rounded output
where torch's backward reads the output: sigmoid, tanh, softmax, log_softmax, relu) and
rounds once into ``policy.gradients``.  Backward functions return ``(dx, ())`` -- no
parameters.  Reductions (softmax sums) are float64 NumPy sums.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import _jit
from ._check import check_array, values
from .policy import Policy, get_policy

__all__ = ["ActCache", "relu_forward", "relu_backward", "leaky_relu_forward",
           "leaky_relu_backward", "gelu_forward", "gelu_backward", "sigmoid_forward",
           "sigmoid_backward", "tanh_forward", "tanh_backward", "softmax_forward",
           "softmax_backward", "log_softmax_forward", "log_softmax_backward",
           "dropout_forward", "dropout_backward", "add_forward", "add_backward", "erf"]

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_K_TANH = math.sqrt(2.0 / math.pi)
_C_TANH = 0.044715


class ActCache(NamedTuple):
    """Cache of an elementwise layer: the tensor its backward reads and the parameters."""

    saved: np.ndarray       # x or y as the layer's Notes say (same shape as x)
    arg: object             # slope / approximation / dim / dropout mask / None
    policy: Policy


def _erf_spec(x):
    """NumPy twin of the erf kernel: ``math.erf`` (C99 erf) per element."""
    return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)


def erf(x) -> np.ndarray:
    """float64 erf of every element (C99 ``erf`` via Numba, or ``math.erf`` per element
    when JIT is disabled; the two agree bit for bit on the tested platforms)."""
    x = np.asarray(x, np.float64)
    if not _jit.enabled():
        return _erf_spec(x)
    from .._jit.nn_kernels import erf_flat
    return erf_flat(np.ascontiguousarray(x).reshape(-1)).reshape(x.shape)


def _prep(x, policy, name, rng):
    p = get_policy(policy)
    return p, p.activations.round(check_array(x, name, "x"), rng)


# ------------------------------------------------------------------------------ relu
def relu_forward(x, policy, rng=None, name="relu"):
    """y = max(x, 0) (exact; +0 for x <= 0).  Cache: y.

    >>> relu_forward([-1.0, 2.0], "fp32")[0].tolist()
    [0.0, 2.0]
    """
    p = get_policy(policy)
    x = p.activations.round(check_array(x, name, "x", keep32=True), rng,
                            p.activations.carrier)
    if not _jit.enabled():
        y = _relu_spec(x)
    else:
        from .._jit.nn_kernels import relu_flat
        y = relu_flat(np.ascontiguousarray(x).reshape(-1)).reshape(x.shape)
    return y, ActCache(y, None, p)


def _relu_spec(x):
    """NumPy twin of the relu kernel."""
    return np.where(x > 0, x, 0.0)


def _relu_grad_spec(y, dy):
    """NumPy twin of the relu backward kernel."""
    return np.where(y > 0, dy, 0.0)


def relu_backward(dy, cache: ActCache, rng=None):
    """dx = dy where y > 0, else +0 (torch's threshold_backward on the output)."""
    dy = values(dy)
    if not _jit.enabled():
        return _relu_grad_spec(cache.saved, dy), ()
    from .._jit.nn_kernels import relu_grad_flat
    y = np.ascontiguousarray(cache.saved).reshape(-1)
    return relu_grad_flat(y, np.ascontiguousarray(dy).reshape(-1)).reshape(dy.shape), ()


def leaky_relu_forward(x, policy, negative_slope=0.01, rng=None, name="leaky_relu"):
    """y = x for x > 0, else rnd_act(negative_slope * x) (slope a float64 constant).
    Cache: x."""
    p, x = _prep(x, policy, name, rng)
    s = float(negative_slope)
    if not math.isfinite(s):
        raise ValueError(f"{name}: negative_slope={negative_slope!r} must be finite")
    y = np.where(x > 0, x, p.activations.round(x * s, rng))
    return y, ActCache(x, s, p)


def leaky_relu_backward(dy, cache: ActCache, rng=None):
    """dx = dy for x > 0, else rnd_g(negative_slope * dy)."""
    dy = np.asarray(dy, np.float64)
    p = cache.policy
    return np.where(cache.saved > 0, dy, p.gradients.round(dy * cache.arg, rng)), ()


# ------------------------------------------------------------------------------ gelu
def gelu_forward(x, policy, approximate="none", rng=None, name="gelu"):
    """GELU: ``0.5 x (1 + erf(x / sqrt 2))`` (approximate='none') or
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))`` ('tanh'), torch's two forms.
    Cache: x."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{name}: approximate={approximate!r} must be 'none' or 'tanh'")
    p, x = _prep(x, policy, name, rng)
    if approximate == "none":
        y = 0.5 * x * (1.0 + erf(x * _SQRT1_2))
    else:
        y = 0.5 * x * (1.0 + np.tanh(_K_TANH * (x + _C_TANH * x ** 3)))
    return p.activations.round(y, rng), ActCache(x, approximate, p)


def gelu_backward(dy, cache: ActCache, rng=None):
    """dx = dy * GELU'(x): ``Phi(x) + x phi(x)`` (erf form) or, with ``t = tanh(u)``,
    ``0.5 (1 + t) + 0.5 x (1 - t**2) sqrt(2/pi) (1 + 3 * 0.044715 x**2)`` (tanh form)."""
    x = cache.saved
    if cache.arg == "none":
        d = 0.5 * (1.0 + erf(x * _SQRT1_2)) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    else:
        t = np.tanh(_K_TANH * (x + _C_TANH * x ** 3))
        d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _K_TANH * (1.0 + 3 * _C_TANH * x * x)
    return cache.policy.gradients.round(np.asarray(dy, np.float64) * d, rng), ()


# ------------------------------------------------------------------- sigmoid / tanh
def sigmoid_forward(x, policy, rng=None, name="sigmoid"):
    """y = 1 / (1 + exp(-x)) (evaluated without overflow).  Cache: y."""
    p, x = _prep(x, policy, name, rng)
    e = np.exp(-np.abs(x))
    y = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    y = p.activations.round(y, rng)
    return y, ActCache(y, None, p)


def sigmoid_backward(dy, cache: ActCache, rng=None):
    """dx = dy * (1 - y) * y (torch's sigmoid_backward reads the output)."""
    y = cache.saved
    return cache.policy.gradients.round(np.asarray(dy, np.float64) * (1.0 - y) * y, rng), ()


def tanh_forward(x, policy, rng=None, name="tanh"):
    """y = tanh(x).  Cache: y."""
    p, x = _prep(x, policy, name, rng)
    y = p.activations.round(np.tanh(x), rng)
    return y, ActCache(y, None, p)


def tanh_backward(dy, cache: ActCache, rng=None):
    """dx = dy * (1 - y * y) (torch's tanh_backward reads the output)."""
    y = cache.saved
    return cache.policy.gradients.round(np.asarray(dy, np.float64) * (1.0 - y * y), rng), ()


# --------------------------------------------------------------- softmax / log_softmax
def _dim(x, dim, name):
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or \
            not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{name}: dim={dim!r} out of range for shape {x.shape}")
    return int(dim) % x.ndim


def softmax_forward(x, policy, dim=-1, rng=None, name="softmax"):
    """y = exp(x - max) / sum(exp(x - max)) along dim.  Cache: y."""
    p, x = _prep(x, policy, name, rng)
    d = _dim(x, dim, name)
    e = np.exp(x - np.max(x, axis=d, keepdims=True))
    y = p.activations.round(e / np.sum(e, axis=d, keepdims=True), rng)
    return y, ActCache(y, d, p)


def softmax_backward(dy, cache: ActCache, rng=None):
    """dx = y * (dy - sum(dy * y)) along dim (torch's _softmax_backward_data)."""
    y, d = cache.saved, cache.arg
    dy = np.asarray(dy, np.float64)
    dx = y * (dy - np.sum(dy * y, axis=d, keepdims=True))
    return cache.policy.gradients.round(dx, rng), ()


def log_softmax_forward(x, policy, dim=-1, rng=None, name="log_softmax"):
    """y = x - max - log(sum(exp(x - max))) along dim.  Cache: y."""
    p, x = _prep(x, policy, name, rng)
    d = _dim(x, dim, name)
    z = x - np.max(x, axis=d, keepdims=True)
    y = p.activations.round(z - np.log(np.sum(np.exp(z), axis=d, keepdims=True)), rng)
    return y, ActCache(y, d, p)


def log_softmax_backward(dy, cache: ActCache, rng=None):
    """dx = dy - exp(y) * sum(dy) along dim (torch's _log_softmax_backward_data)."""
    y, d = cache.saved, cache.arg
    dy = np.asarray(dy, np.float64)
    dx = dy - np.exp(y) * np.sum(dy, axis=d, keepdims=True)
    return cache.policy.gradients.round(dx, rng), ()


# ---------------------------------------------------------------------------- dropout
def dropout_forward(x, policy, p=0.5, train=True, rng=None, name="dropout"):
    """Inverted dropout: keep each element with probability 1 - p and scale by 1/(1 - p).

    The mask is ``rng.random(x.shape) >= p`` (refcomp's own seeded draw, not torch's
    stream); ``y = rnd_act(x * mask / (1 - p))``; p = 1 gives zeros; in eval mode
    (train=False) or p = 0, y = x.  Cache: the mask scaled by ``1 / (1 - p)``.
    """
    pol, x = _prep(x, policy, name, rng)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: p={p!r} must be a probability in [0, 1]")
    if not train or p == 0.0:
        return x, ActCache(None, None, pol)
    if rng is None:
        raise ValueError(f"{name}: training-mode dropout needs rng (a numpy Generator)")
    keep = rng.random(x.shape) >= p
    scale = np.where(keep, 1.0 / (1.0 - p), 0.0) if p < 1.0 else np.zeros(x.shape)
    return pol.activations.round(x * scale, rng), ActCache(scale, p, pol)


def dropout_backward(dy, cache: ActCache, rng=None):
    """dx = rnd_g(dy * mask / (1 - p)) (dy itself in eval mode)."""
    dy = np.asarray(dy, np.float64)
    if cache.saved is None:
        return dy, ()
    return cache.policy.gradients.round(dy * cache.saved, rng), ()


# ------------------------------------------------------------------------ residual add
def add_forward(a, b, policy, rng=None, name="add"):
    """y = rnd_act(a + b) (a residual connection); shapes must match."""
    p, a = _prep(a, policy, name, rng)
    b = p.activations.round(check_array(b, name, "b"), rng)
    if a.shape != b.shape:
        raise ValueError(f"{name}: shape mismatch, a {a.shape} vs b {b.shape}")
    return p.activations.round(a + b, rng), ActCache(None, None, p)


def add_backward(dy, cache: ActCache, rng=None):
    """(da, db) = (dy, dy), returned as ``((dy, dy), ())``."""
    dy = np.asarray(dy, np.float64)
    return (dy, dy), ()
