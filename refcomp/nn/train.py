"""One training step of a module under a policy: forward, loss, backward, unscale,
optimizer update of the master copy.

The step (``train_step``):

1. ``x`` is rounded into ``policy.activations``; the parameters into ``policy.weights``
   inside each layer (the module holds the master values, ``policy.master_spec``);
2. ``y, cache = model.forward(x)``; ``loss, lc = loss_forward(y, target)``;
3. ``dy = loss_backward(S, lc)`` with ``S`` the loss scale (``scaler.scale`` when a
   scaler is given, else ``policy.loss_scale``): the scale enters as ``dloss`` and
   multiplies the first gradient before its rounding into ``policy.gradients``;
4. ``grads = model.backward(dy)``;
5. unscale, as torch.amp.GradScaler does (torch 2.13 ``torch/amp/grad_scaler.py``
   ``_unscale_grads_``): ``inv = rnd_f32(1 / S)`` (the reciprocal computed in double, then
   rounded to float32), each gradient ``rnd_master(g * inv)``; any non-finite gradient
   sets ``found_inf`` and the update is skipped (S = 1: gradients are converted into the
   master format, exactly when it holds the gradient format);
6. ``params = optimizer.step(params, grads)`` -- any object with that method (see
   :mod:`refcomp.nn.optim`); the module receives the new master values.

A scaler is any object with a ``scale`` attribute and an ``update(found_inf)`` method
(called after every step); :class:`StaticScaler` keeps a constant scale.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._check import check_array
from .policy import get_policy, round_to

__all__ = ["StepResult", "StaticScaler", "History", "prepare", "make_optimizer", "train_step",
           "predict", "fit"]


class StepResult(NamedTuple):
    """What a training step reports."""

    loss: float             # the loss value (of the unscaled loss)
    found_inf: bool         # a gradient was inf / NaN: the update was skipped
    scale: float            # the loss scale used
    grads: dict             # unscaled gradients in the master format


class StaticScaler:
    """A constant loss scale (``update`` does nothing)."""

    def __init__(self, scale=1.0):
        if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale > 0):
            raise ValueError(f"StaticScaler: scale={scale!r} must be positive and finite")
        self.scale = float(scale)

    def update(self, found_inf):
        """Static scaling: nothing to update."""


def prepare(model, policy):
    """Round every parameter of `model` into the policy's master format (in place, kept
    in that role's carrier: float32 arrays for float32 master weights) and return the
    model: call once before training (torch models load as float32)."""
    p = get_policy(policy)
    spec = p.master_spec
    model.set_parameters({k: spec.round(v, dtype=spec.carrier)
                          for k, v in model.named_parameters().items()})
    return model


def make_optimizer(kind, policy, rng=None, **hyper):
    """An optimizer of :mod:`refcomp.nn.optim` (``"sgd"``, ``"adam"``, ``"adamw"``) whose
    parameter format, state format and update rounding are the policy's (master format,
    ``optimizer_state``, ``update``); `rng` is needed for stochastic updates."""
    from . import optim
    classes = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}
    if kind not in classes:
        raise ValueError(f"unknown optimizer {kind!r} (known: {', '.join(classes)})")
    p = get_policy(policy)
    return classes[kind](fmt=p.master_spec.format.name, state_fmt=p.optimizer_state.name,
                         update=p.update.value, rng=rng, **hyper)


def train_step(model, x, target, loss, optimizer, policy, rng=None, scaler=None):
    """One step (module docstring).  `loss` is a pair ``(loss_forward, loss_backward)``
    from :mod:`refcomp.nn.loss` (e.g. ``(cross_entropy_forward, cross_entropy_backward)``).

    Returns StepResult; the model's parameters (and batch-norm buffers) are updated in
    place.
    """
    p = get_policy(policy)
    lf, lb = loss
    x = check_array(x, getattr(model, "name", "model"), "input x")
    y, cache = model.forward(p.activations.round(x, rng, p.activations.carrier), p, rng=rng,
                             train=True)
    value, lc = lf(y, target, p)
    S = p.loss_scale if scaler is None else float(scaler.scale)
    dy, _ = lb(S, lc)
    _, grads = model.backward(dy, cache, rng=rng, need_dx=False)
    inv = float(round_to(1.0 / S, "float32" if p.master_spec.format.name != "float64"
                         else "float64")) if S != 1.0 else 1.0
    spec = p.master_spec
    found = False
    master = {}
    for k, g in grads.items():
        if not np.all(np.isfinite(g)):
            found = True
        # g * inv in float64 (exact when both are float32 values), one rounding
        master[k] = spec.round(np.multiply(g, inv, dtype=np.float64) if inv != 1.0 else g,
                               rng, spec.carrier)
    if scaler is not None:
        scaler.update(found)
    if not found:
        params = model.named_parameters()
        missing = set(params) - set(master)
        if missing:
            raise ValueError(f"train_step: no gradient for parameters {sorted(missing)}")
        model.set_parameters(optimizer.step(params, master))
    return StepResult(float(value), found, S, master)


def predict(model, x, policy, batch=1024):
    """Eval-mode forward pass in batches; returns the outputs (float64 values)."""
    p = get_policy(policy)
    x = check_array(x, getattr(model, "name", "model"), "input x")
    outs = [np.asarray(model.forward(p.activations.round(x[i:i + batch],
                                                         dtype=p.activations.carrier),
                                     p, train=False)[0], np.float64)
            for i in range(0, len(x), batch)]
    return np.concatenate(outs) if outs else np.zeros((0,))


class History(NamedTuple):
    """Per-epoch record of :func:`fit`."""

    train_loss: list        # mean training loss of the epoch
    test_accuracy: list     # test accuracy after the epoch
    skipped: list           # steps skipped for inf / NaN gradients in the epoch
    scale: list             # loss scale at the end of the epoch


def fit(model, data, policy, optimizer, *, epochs, batch_size, rng, loss=None,
        scaler=None, schedule=None, on_step=None) -> History:
    """Train `model` on ``data`` (a :class:`refcomp.nn.data.Dataset`) with seeded batches.

    `loss` defaults to cross-entropy; `schedule`, if given, has a ``step()`` method and
    sets ``optimizer.lr`` (called after every epoch); `on_step(result)` is called after
    every step.  Accuracy is the argmax of :func:`predict` under the same policy.
    """
    from .data import batches
    from .loss import cross_entropy_backward, cross_entropy_forward
    loss = loss or (cross_entropy_forward, cross_entropy_backward)
    p = get_policy(policy)
    prepare(model, p)
    hist = History([], [], [], [])
    for _ in range(epochs):
        total, n, skipped = 0.0, 0, 0
        for idx in batches(len(data.x_train), batch_size, rng):
            r = train_step(model, data.x_train[idx], data.y_train[idx], loss, optimizer, p,
                           rng=rng, scaler=scaler)
            total += r.loss * len(idx)
            n += len(idx)
            skipped += r.found_inf
            if on_step is not None:
                on_step(r)
        if schedule is not None:
            schedule.step()
            optimizer.lr = schedule.lr
        pred = np.argmax(predict(model, data.x_test, p), axis=1)
        hist.train_loss.append(total / n)
        hist.test_accuracy.append(float(np.mean(pred == data.y_test)))
        hist.skipped.append(skipped)
        hist.scale.append(p.loss_scale if scaler is None else float(scaler.scale))
    return hist
