"""Feature-based distillation: the FitNets hint loss (Romero et al., "FitNets: Hints for
Thin Deep Nets", ICLR 2015).

A learned regressor ``r`` maps the student's hint-layer features to the teacher's
(:func:`hint_regressor`: an engine :class:`~refcomp.nn.Linear` for (N, D) features, a
1x1 :class:`~refcomp.nn.Conv2d` for (N, C, H, W) feature maps), and the loss is the mean
squared error to the teacher's features, ``L = mse(r(f_s), f_t)`` (torch's
``F.mse_loss``).  The regressor's forward and backward are the engine's layers under the
policy; the MSE is :func:`refcomp.nn.loss.mse_forward` (float64, one rounding).  The teacher
features are constants: they receive no gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nn import modules as M
from ..nn._check import check_array
from ..nn.loss import LossCache, mse_backward, mse_forward
from ..nn.policy import get_policy

__all__ = ["HintCache", "hint_regressor", "hint_loss_forward", "hint_loss_backward"]


class HintCache(NamedTuple):
    """What :func:`hint_loss_backward` reads."""

    regressor: M.Module     # the regressor the forward pass ran
    reg: object             # its cache
    loss: LossCache         # the MSE's cache


def hint_regressor(student_shape, teacher_shape, rng, bias=True, fmt="float32"):
    """A regressor from student features of ``student_shape`` to teacher features of
    ``teacher_shape`` (shapes without the batch dimension): ``Linear(D_s, D_t)`` for 1-D
    features, ``Conv2d(C_s, C_t, 1)`` for (C, H, W) maps (equal H, W), initialised as
    torch does from the seeded `rng`.

    >>> import numpy as np
    >>> r = hint_regressor((8, 4, 4), (16, 4, 4), np.random.default_rng(0))
    >>> r.params["weight"].shape
    (16, 8, 1, 1)
    """
    s, t = tuple(student_shape), tuple(teacher_shape)
    if len(s) == 1 and len(t) == 1:
        return M.Linear(s[0], t[0], bias=bias, rng=rng, fmt=fmt)
    if len(s) == 3 and len(t) == 3:
        if s[1:] != t[1:]:
            raise ValueError(f"hint_regressor: spatial sizes differ, student {s} vs teacher "
                             f"{t} (a 1x1 convolution keeps H, W)")
        return M.Conv2d(s[0], t[0], 1, bias=bias, rng=rng, fmt=fmt)
    raise ValueError(f"hint_regressor: feature shapes student {s} and teacher {t} must both "
                     "be (D,) or both (C, H, W)")


def _check_shapes(regressor, fs, ft, name):
    w = regressor.params.get("weight")
    if isinstance(regressor, M.Linear):
        want_s, want_t = (w.shape[1],), (w.shape[0],)
        if fs.ndim != 2:
            raise ValueError(f"{name}: student features must be (N, {w.shape[1]}) for a "
                             f"Linear regressor, got {fs.shape}")
        lead = fs.shape[:1]
    elif isinstance(regressor, M.Conv2d):
        if fs.ndim != 4:
            raise ValueError(f"{name}: student features must be (N, {w.shape[1]}, H, W) for "
                             f"a Conv2d regressor, got {fs.shape}")
        if w.shape[2:] != (1, 1) or regressor.conv != dict(stride=1, padding=0, dilation=1,
                                                           groups=1):
            raise ValueError(f"{name}: a Conv2d regressor must be 1x1, stride 1, no padding, "
                             f"one group (weight {w.shape}, {regressor.conv})")
        want_s, want_t = (w.shape[1],) + fs.shape[2:], (w.shape[0],) + fs.shape[2:]
        lead = fs.shape[:1]
    else:
        raise TypeError(f"{name}: regressor must be a refcomp.nn Linear or Conv2d, got "
                        f"{type(regressor).__name__}")
    if fs.shape[1:] != want_s:
        raise ValueError(f"{name}: student features {fs.shape} do not fit the regressor "
                         f"(expects (N,) + {want_s})")
    if ft.shape != lead + want_t:
        raise ValueError(f"{name}: teacher features {ft.shape} do not match the regressor's "
                         f"output {lead + want_t}")


def hint_loss_forward(regressor, student_features, teacher_features, policy,
                      reduction="mean", rng=None, name="hint_loss"):
    """``L = mse(regressor(f_s), f_t)``.

    Parameters
    ----------
    regressor : refcomp.nn.Linear or refcomp.nn.Conv2d (1x1)
    student_features : array_like, (N, D_s) or (N, C_s, H, W)
    teacher_features : array_like, (N, D_t) or (N, C_t, H, W)
        Rounded into ``policy.activations`` (no-op for a network's outputs); constants.
    policy : Policy or str
    reduction : {"mean", "sum"}
        torch's ``F.mse_loss`` reductions (``mean`` over all elements).

    Returns
    -------
    loss : float
        ``rnd_act`` of the float64 reduction of ``(r - f_t)**2``.
    cache : HintCache

    Examples
    --------
    >>> import numpy as np
    >>> r = hint_regressor((3,), (2,), np.random.default_rng(0))
    >>> fs, ft = np.ones((4, 3)), np.zeros((4, 2))
    >>> loss, cache = hint_loss_forward(r, fs, ft, "fp32")
    >>> dfs, grads = hint_loss_backward(1.0, cache)
    >>> dfs.shape, sorted(grads)
    ((4, 3), ['bias', 'weight'])
    """
    p = get_policy(policy)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{name}: reduction={reduction!r} must be one of mean, sum")
    fs = p.activations.round(check_array(student_features, name, "student features"), rng,
                             p.activations.carrier)
    ft = p.activations.round(check_array(teacher_features, name, "teacher features"), rng)
    _check_shapes(regressor, fs, ft, name)
    y, rc = regressor.forward(fs, p, rng=rng, train=True)
    loss, lc = mse_forward(y, ft, p, reduction=reduction, rng=rng, name=name)
    return loss, HintCache(regressor, rc, lc)


def hint_loss_backward(dloss, cache: HintCache, rng=None, need_dx=True):
    """Gradients of :func:`hint_loss_forward`: ``(d student features, grads)`` with
    ``grads`` the regressor's parameter gradients keyed ``"weight"`` / ``"bias"``
    (``dr = rnd_g(dloss * 2 (r - f_t) / n)``, then the regressor's backward).  No
    gradient for the teacher features."""
    dr, _ = mse_backward(np.asarray(dloss, np.float64), cache.loss, rng)
    return cache.regressor.backward(dr, cache.reg, rng=rng, need_dx=need_dx)
