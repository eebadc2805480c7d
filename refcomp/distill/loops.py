"""Distillation training loops on the engine: offline KD from a fixed teacher and online KD
by deep mutual learning.

Both loops are :func:`refcomp.nn.train_step` with the KD loss of :mod:`refcomp.distill.kd`
(so loss scaling, unscaling, skipped steps and the optimizer update are exactly the
engine's), seeded batches (:func:`refcomp.nn.data.batches`), and a per-epoch
:class:`refcomp.nn.History` as :func:`refcomp.nn.fit` returns.

* :func:`fit_offline_kd` -- the teacher is fixed and pre-trained; its logits are computed
  in eval mode (``train=False``: batch-norm running statistics, no dropout) under
  ``teacher_policy`` for every batch; the student minimises
  ``alpha T^2 KL(teacher || student) + (1 - alpha) CE`` (Hinton et al. 2015).
* :func:`fit_mutual` -- deep mutual learning (Zhang, Xiang, Hospedales and Lu, "Deep
  Mutual Learning", CVPR 2018): two networks train together, each on the KD loss against
  the other's current logits (a constant for it).  Both forward passes (train mode) run on
  the batch before either network is updated -- the simultaneous variant of common
  implementations; the paper's Algorithm 1 recomputes the second network's target after
  the first update.  ``alpha = 0.5``, ``T = 1`` is the paper's ``CE + KL`` at half scale.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nn.data import batches
from ..nn.policy import get_policy
from ..nn.train import History, predict, prepare, train_step
from ._check import check_alpha, check_reduction, check_temperature
from .kd import KD_REDUCTIONS, kd_loss_backward, kd_loss_forward

__all__ = ["MutualHistory", "fit_offline_kd", "fit_mutual"]


class MutualHistory(NamedTuple):
    """The per-epoch histories of the two networks of :func:`fit_mutual`."""

    a: History
    b: History


def _kd_pair(teacher_logits, temperature, alpha, reduction):
    """A (forward, backward) loss pair for train_step whose target is the labels and the
    teacher's logits are bound in."""
    def forward(y, target, policy):
        return kd_loss_forward(y, teacher_logits, target, policy, temperature=temperature,
                               alpha=alpha, reduction=reduction)
    return forward, kd_loss_backward


class _Replay:
    """A model whose forward returns an already computed (y, cache): lets train_step run
    the loss, backward and update of a network whose forward pass came first."""

    def __init__(self, model, y, cache):
        self.model, self.y, self.cache = model, y, cache
        self.name = getattr(model, "name", "model")

    def forward(self, x, policy, rng=None, train=True):
        return self.y, self.cache

    def backward(self, dy, cache, rng=None, need_dx=True):
        return self.model.backward(dy, cache, rng=rng, need_dx=need_dx)

    def named_parameters(self):
        return self.model.named_parameters()

    def set_parameters(self, values):
        self.model.set_parameters(values)


def _accuracy(model, data, p):
    pred = np.argmax(predict(model, data.x_test, p), axis=1)
    return float(np.mean(pred == data.y_test))


def _record(h: History, total, n, skipped, acc, p):
    h.train_loss.append(total / n)
    h.test_accuracy.append(acc)
    h.skipped.append(skipped)
    h.scale.append(p.loss_scale)


def _check_loop(data, epochs, batch_size, rng, temperature, alpha, reduction, name):
    """Every argument check of a loop, before any model is touched (also for epochs=0)."""
    _check_epochs(epochs, batch_size, rng, name)
    check_temperature(temperature, name)
    check_alpha(alpha, name)
    check_reduction(reduction, name, KD_REDUCTIONS)
    if len(data.x_train) == 0:
        raise ValueError(f"{name}: empty training set (x_train shape "
                         f"{np.shape(data.x_train)})")


def _check_epochs(epochs, batch_size, rng, name):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"{name}: epochs={epochs!r} must be an integer >= 0")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or \
            batch_size < 1:
        raise ValueError(f"{name}: batch_size={batch_size!r} must be an integer >= 1")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name}: rng must be a numpy Generator (no unseeded randomness), "
                        f"got {type(rng).__name__}")


def fit_offline_kd(student, teacher, data, policy, optimizer, *, epochs, batch_size, rng,
                   temperature=4.0, alpha=0.9, reduction="batchmean", teacher_policy=None,
                   on_step=None) -> History:
    """Train `student` by offline knowledge distillation from a fixed `teacher`.

    Parameters
    ----------
    student, teacher : refcomp.nn.Module
        The teacher is never updated; its logits come from an eval-mode forward pass.
    data : refcomp.nn.data.Dataset
    policy : Policy or str
        The student's policy (its parameters are rounded into the master format first,
        as :func:`refcomp.nn.fit` does).
    optimizer : an optimizer of :mod:`refcomp.nn.optim` for the student
    epochs, batch_size : int
    rng : numpy.random.Generator
        Batches and stochastic roundings.
    temperature, alpha, reduction
        Of :func:`refcomp.distill.kd_loss_forward`.
    teacher_policy : Policy or str, optional
        The teacher's policy (default: `policy`).
    on_step : callable, optional
        Called with every :class:`refcomp.nn.StepResult`.

    Returns
    -------
    refcomp.nn.History
        Mean KD loss per epoch and the student's test accuracy after each epoch.

    Raises
    ------
    ValueError
        Bad epochs, batch_size, temperature, alpha or reduction, or an empty training
        set, all checked before the student is touched (also with ``epochs=0``).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> r = np.random.default_rng(0)
    >>> x, y = r.standard_normal((16, 4)), np.arange(16) % 3
    >>> data = nn.data.Dataset(x, y, x, y)
    >>> teacher = nn.Sequential(nn.Linear(4, 3, rng=r))
    >>> student = nn.Sequential(nn.Linear(4, 3, rng=r))
    >>> opt = nn.make_optimizer("sgd", "fp32", lr=0.1)
    >>> h = fit_offline_kd(student, teacher, data, "fp32", opt, epochs=2, batch_size=8,
    ...                    rng=np.random.default_rng(1))
    >>> len(h.train_loss)
    2
    """
    _check_loop(data, epochs, batch_size, rng, temperature, alpha, reduction,
                "fit_offline_kd")
    p = get_policy(policy)
    tp = p if teacher_policy is None else get_policy(teacher_policy)
    prepare(student, p)
    hist = History([], [], [], [])
    for _ in range(epochs):
        total, n, skipped = 0.0, 0, 0
        for idx in batches(len(data.x_train), batch_size, rng):
            xb = data.x_train[idx]
            xt = tp.activations.round(xb, rng, tp.activations.carrier)
            t_logits, _ = teacher.forward(xt, tp, rng=rng, train=False)
            r = train_step(student, xb, data.y_train[idx],
                           _kd_pair(t_logits, temperature, alpha, reduction), optimizer, p,
                           rng=rng)
            total += r.loss * len(idx)
            n += len(idx)
            skipped += r.found_inf
            if on_step is not None:
                on_step(r)
        _record(hist, total, n, skipped, _accuracy(student, data, p), p)
    return hist


def fit_mutual(model_a, model_b, data, policy, optimizer_a, optimizer_b, *, epochs,
               batch_size, rng, temperature=1.0, alpha=0.5, reduction="batchmean",
               on_step=None) -> MutualHistory:
    """Deep mutual learning of two networks (module docstring).

    Per batch: ``y_a = a(x)``, ``y_b = b(x)`` (train mode, a first); network a steps on
    ``kd_loss(y_a, y_b, labels)``, then b on ``kd_loss(y_b, y_a, labels)``, each other's
    logits held constant.  `on_step(which, result)` is called with ``"a"`` / ``"b"``.

    Returns
    -------
    MutualHistory
        A :class:`refcomp.nn.History` per network (mean KD loss, test accuracy).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> r = np.random.default_rng(0)
    >>> x, y = r.standard_normal((16, 4)), np.arange(16) % 3
    >>> data = nn.data.Dataset(x, y, x, y)
    >>> a, b = nn.Linear(4, 3, rng=r), nn.Linear(4, 3, rng=r)
    >>> oa, ob = (nn.make_optimizer("sgd", "fp32", lr=0.1) for _ in range(2))
    >>> h = fit_mutual(a, b, data, "fp32", oa, ob, epochs=1, batch_size=8,
    ...                rng=np.random.default_rng(1))
    >>> len(h.a.train_loss), len(h.b.train_loss)
    (1, 1)
    """
    _check_loop(data, epochs, batch_size, rng, temperature, alpha, reduction, "fit_mutual")
    if model_a is model_b:
        raise ValueError("fit_mutual: model_a and model_b are the same object; mutual "
                         "learning needs two networks")
    p = get_policy(policy)
    prepare(model_a, p)
    prepare(model_b, p)
    hists = MutualHistory(History([], [], [], []), History([], [], [], []))
    for _ in range(epochs):
        tot = {"a": 0.0, "b": 0.0}
        skip = {"a": 0, "b": 0}
        n = 0
        for idx in batches(len(data.x_train), batch_size, rng):
            xb = p.activations.round(data.x_train[idx], rng, p.activations.carrier)
            ya, ca = model_a.forward(xb, p, rng=rng, train=True)
            yb, cb = model_b.forward(xb, p, rng=rng, train=True)
            ya64, yb64 = np.asarray(ya, np.float64), np.asarray(yb, np.float64)
            for which, model, y, c, other, opt in (("a", model_a, ya, ca, yb64, optimizer_a),
                                                    ("b", model_b, yb, cb, ya64, optimizer_b)):
                r = train_step(_Replay(model, y, c), xb, data.y_train[idx],
                               _kd_pair(other, temperature, alpha, reduction), opt, p,
                               rng=rng)
                tot[which] += r.loss * len(idx)
                skip[which] += r.found_inf
                if on_step is not None:
                    on_step(which, r)
            n += len(idx)
        for which, model, h in (("a", model_a, hists.a), ("b", model_b, hists.b)):
            _record(h, tot[which], n, skip[which], _accuracy(model, data, p), p)
    return hists
