"""Iterative magnitude pruning with fine-tuning, learning-rate rewinding and weight
rewinding (lottery tickets).

The procedure (:func:`iterative_prune`), all randomness from one
``numpy.random.default_rng(seed)`` (batch order, dropout, stochastic roundings):

1. the *original run*: the model as given is the initialisation; its parameters are
   rounded into the policy's master format (:func:`refcomp.nn.prepare`) and it is trained
   for `epochs` epochs with a fresh optimizer and the learning-rate schedule; the state at
   epoch `rewind_epoch` (0: the initialisation) is recorded;
2. for each target sparsity ``s_t`` of the schedule (:func:`sparsity_schedule`), a round:

   * prune by magnitude (L1) to ``round(s_t * N)`` pruned entries in all (``scope=
     "global"``: one ranking of the N prunable entries, :func:`refcomp.prune.
     global_unstructured`) or ``round(s_t * N_i)`` per tensor (``scope="layer"``,
     :func:`refcomp.prune.l1_unstructured`), Python's ``round`` of the float product as
     torch's ``_compute_nparams_toprune``.  The pruning goes through refcomp.prune's
     reparametrization with a *count*: only still-unpruned entries are ranked (by
     ``|mask * orig|``, the current effective weights) and the masks multiply, so each
     round's mask is a subset of the previous one;
   * retrain, by `rewind` (Renda, Frankle & Carbin, "Comparing Rewinding and Fine-tuning
     in Neural Network Pruning", ICLR 2020):

     - ``"none"`` (fine-tuning): from the current weights, `finetune_epochs` epochs
       (default ``epochs - rewind_epoch``) at the constant final learning rate of the
       original run (the rate of its last epoch);
     - ``"lr"`` (learning-rate rewinding): from the current weights, the original
       schedule replayed from epoch `rewind_epoch` to the end (``epochs - rewind_epoch``
       epochs);
     - ``"weights"`` (weight rewinding; Frankle & Carbin, "The Lottery Ticket
       Hypothesis", ICLR 2019, for ``rewind_epoch=0``; Frankle et al. 2020 for k > 0):
       every parameter (``<name>_orig`` of a pruned one, so the surviving weights
       ``mask * orig`` equal the recorded values exactly) and every non-mask buffer
       (batch-norm statistics) is reset to the record of epoch `rewind_epoch`, then the
       schedule is replayed from that epoch as for ``"lr"``.

   Every run starts a fresh optimizer (momentum and Adam moments are not rewound).

The returned :class:`PruneHistory` lists round 0 (the dense trained model) and every
pruning round: target, actual sparsity and count, test accuracy after retraining, the
masks, the per-epoch training loss and learning rate.

>>> sparsity_schedule("cubic", 0.875, 4)
[0.505859375, 0.765625, 0.861328125, 0.875]
"""

from __future__ import annotations

import enum
import numbers
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from ..nn.modules import Conv2d, Linear, Module
from ..nn.train import fit, make_optimizer, predict, prepare
from .methods import L1Unstructured
from .reparam import _masked, _reparam, global_unstructured, l1_unstructured

__all__ = ["Rewind", "Scope", "sparsity_schedule", "Round", "PruneHistory",
           "iterative_prune", "prunable_weights", "rewind_weights"]


class Rewind(enum.Enum):
    """What the retraining of a round starts from (module notes)."""

    NONE = "none"           # fine-tune the current weights at the final learning rate
    LR = "lr"               # current weights, original schedule from the rewind epoch
    WEIGHTS = "weights"     # weights of the rewind epoch, original schedule from there


class Scope(enum.Enum):
    """Where the magnitude ranking of a round runs."""

    GLOBAL = "global"       # one ranking over every prunable tensor
    LAYER = "layer"         # each tensor pruned to the target on its own


def _choice(cls, value, what):
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{what}={value!r} is not one of "
                         f"{[m.value for m in cls]}") from None


def _fraction(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 1:
        raise ValueError(f"{name}={v!r} must be a number in [0, 1]")
    return v


def _int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise ValueError(f"{name}={v!r} must be an integer >= {low}")
    return int(v)


def sparsity_schedule(kind, final, rounds=1, initial=0.0) -> list:
    """Target sparsity of each pruning round ``t = 1 .. n``.

    Parameters
    ----------
    kind : {"one_shot", "linear", "geometric", "cubic"}
        ``"one_shot"``: ``[final]`` (`rounds` must be 1).
        ``"linear"`` (constant steps): ``s_t = s_i + (s_f - s_i) t / n``.
        ``"geometric"`` (a constant fraction of the remaining weights per round, as the
        iterative lottery-ticket search): ``s_t = 1 - (1 - s_i) r^(t/n)``,
        ``r = (1 - s_f) / (1 - s_i)``.
        ``"cubic"`` (Zhu & Gupta, "To prune, or not to prune", 2017, eq. 1 with
        ``t_0 = 0``, ``Δt = 1``): ``s_t = s_f + (s_i - s_f) (1 - t/n)^3``.
    final : float in [0, 1]
        ``s_f``.
    rounds : int >= 1
        ``n``.
    initial : float in [0, final]
        ``s_i``, the sparsity before the first round.

    Returns
    -------
    list of float
        ``"linear"`` and ``"cubic"``: the exact rational value of the formula on the
        given floats, rounded once to nearest (``float(Fraction(...))``).
        ``"geometric"``: ``1 - (1 - s_i) * r ** (t / n)`` in Python floats.  The last
        value is `final` itself.

    Examples
    --------
    >>> sparsity_schedule("linear", 0.75, 3)
    [0.25, 0.5, 0.75]
    >>> [round(s, 4) for s in sparsity_schedule("geometric", 0.75, 2)]
    [0.5, 0.75]
    >>> sparsity_schedule("one_shot", 0.9)
    [0.9]
    """
    kinds = ("one_shot", "linear", "geometric", "cubic")
    if kind not in kinds:
        raise ValueError(f"kind={kind!r} is not one of {list(kinds)}")
    _fraction("final", final)
    _fraction("initial", initial)
    n = _int("rounds", rounds, 1)
    if initial > final:
        raise ValueError(f"initial={initial!r} is above final={final!r}")
    if kind == "one_shot":
        if n != 1:
            raise ValueError(f"a one_shot schedule has one round, got rounds={rounds!r}")
        return [float(final)]
    si, sf = Fraction(initial), Fraction(final)
    out = []
    for t in range(1, n + 1):
        if kind == "linear":
            out.append(float(si + (sf - si) * Fraction(t, n)))
        elif kind == "cubic":
            out.append(float(sf + (si - sf) * (1 - Fraction(t, n)) ** 3))
        else:
            r = (1.0 - final) / (1.0 - initial) if initial < 1 else 1.0
            out.append(1.0 - (1.0 - initial) * r ** (t / n))
    out[-1] = float(final)
    return out


def _named_modules(model, prefix=""):
    yield prefix, model
    for n, c in model.children():
        yield from _named_modules(c, f"{prefix}{n}.")


def prunable_weights(model) -> list:
    """``[(module, "weight")]`` of every Linear and Conv2d in `model` (depth first, the
    order of ``named_parameters``): the default tensors of :func:`iterative_prune`.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> rng = np.random.default_rng(0)
    >>> net = nn.Sequential(nn.Linear(4, 3, rng=rng), nn.ReLU(), nn.Linear(3, 2, rng=rng))
    >>> [(m.name, k) for m, k in prunable_weights(net)]
    [('Linear (layer 0)', 'weight'), ('Linear (layer 2)', 'weight')]
    """
    return [(m, "weight") for _, m in _named_modules(model) if isinstance(m, (Linear,
                                                                              Conv2d))]


def _is_pruned(m, name):
    rp = _reparam(m)
    return rp is not None and name in rp.tensors


def _effective(m, name):
    return _masked(m.params[name + "_orig"], m.buffers[name + "_mask"]) \
        if _is_pruned(m, name) else m.params[name]


def _mask(m, name):
    return m.buffers[name + "_mask"].copy() if _is_pruned(m, name) else \
        np.ones(np.shape(m.params[name]))


class Round(NamedTuple):
    """One row of :class:`PruneHistory` (round 0: the dense model after the original
    run)."""

    round: int
    target: float           # the schedule's sparsity (0 for round 0)
    sparsity: float         # pruned / prunable entries, from the masks
    pruned: int             # number of pruned entries
    test_accuracy: float    # after the round's (re)training
    masks: dict             # dotted parameter name -> mask (float64 0/1) after the round
    train_loss: list        # per-epoch mean training loss of the round's run
    lr: list                # learning rate of each epoch of that run


class PruneHistory(NamedTuple):
    """What :func:`iterative_prune` returns."""

    rounds: list            # [Round], round 0 first
    rewind_state: dict      # state_dict of the rewind epoch (weight rewinding), else None


def rewind_weights(model, state):
    """Reset every parameter and non-mask buffer of `model` (in place) to a recorded
    ``state_dict`` of the same model before pruning; a pruned tensor's ``<name>_orig``
    takes the recorded ``<name>``, its mask is kept, so the surviving weights
    ``mask * orig`` equal the recorded values exactly (the lottery-ticket reset).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn, prune
    >>> lin = nn.Linear(2, 2, rng=np.random.default_rng(0))
    >>> lin.params["weight"] = np.array([[1.0, -2.0], [-3.0, 4.0]])
    >>> saved = lin.state_dict()
    >>> lin = prune.l1_unstructured(lin, "weight", 2)
    >>> lin.params["weight_orig"] = np.zeros((2, 2))           # training moved it
    >>> rewind_weights(lin, saved).forward(np.eye(2), "fp64")[0] - lin.params["bias"]
    array([[ 0., -3.],
           [ 0.,  4.]])
    """
    for prefix, m in _named_modules(model):
        pruned = set(_reparam(m).tensors) if _reparam(m) is not None else set()
        for k in list(m.params):
            base = k[:-5] if k.endswith("_orig") and k[:-5] in pruned else k
            v = np.asarray(state.get(prefix + k, state.get(prefix + base)))
            m.params[k] = v.astype(m.params[k].dtype, copy=True)
        for k, v in list(m.buffers.items()):
            if k.endswith("_mask") and k[:-5] in pruned:
                continue
            s = state[prefix + k]
            m.buffers[k] = s.copy() if isinstance(s, np.ndarray) else s
        for name in pruned:
            _reparam(m).tensors[name] = _effective(m, name)
    return model


def _train(model, data, policy, opt, sched, epochs, batch_size, rng, at=None):
    """`epochs` epochs one at a time; ``at = (k, callback)`` calls back before epoch k.
    Returns (losses, lrs, accuracy of the last epoch or None)."""
    losses, lrs, acc = [], [], None
    for e in range(epochs):
        if at is not None and e == at[0]:
            at[1]()
        lrs.append(opt.lr)
        h = fit(model, data, policy, opt, epochs=1, batch_size=batch_size, rng=rng,
                schedule=sched)
        losses.append(h.train_loss[0])
        acc = h.test_accuracy[0]
    return losses, lrs, acc


def _accuracy(model, data, policy):
    return float(np.mean(np.argmax(predict(model, data.x_test, policy), axis=1)
                         == data.y_test))


def iterative_prune(model, data, policy, *, sparsities, epochs, batch_size, seed,
                    optimizer="sgd", hyper=None, lr_schedule=None, rewind="none",
                    rewind_epoch=0, finetune_epochs=None, scope="global",
                    parameters=None) -> PruneHistory:
    """Train, then prune by magnitude and retrain round by round (module notes).

    Parameters
    ----------
    model : refcomp.nn.Module
        Its current parameters are the initialisation; trained and pruned in place
        (afterwards it holds the last round's masks and weights).
    data : refcomp.nn.data.Dataset
    policy : Policy or preset name
    sparsities : sequence of float
        Non-decreasing targets in [0, 1], e.g. from :func:`sparsity_schedule`.
    epochs : int >= 1
        Length of the original run.
    batch_size : int
    seed : int
        Seeds the one generator of the whole procedure.
    optimizer : str
        ``"sgd"``, ``"adam"`` or ``"adamw"`` (:func:`refcomp.nn.make_optimizer`), a fresh
        one per run, with keyword arguments `hyper` (e.g. ``{"lr": 0.1}``).
    lr_schedule : callable, optional
        ``lr_schedule(optimizer)`` returns a scheduler of :mod:`refcomp.nn.schedule`
        (stepped after each epoch); None: constant learning rate.
    rewind : {"none", "lr", "weights"} or Rewind
    rewind_epoch : int in [0, epochs)
        The epoch k the rewinding returns to (0: initialisation / the schedule's start).
    finetune_epochs : int, optional
        Epochs of a ``"none"`` round (default ``epochs - rewind_epoch``, the budget of the
        rewinding rounds).
    scope : {"global", "layer"} or Scope
    parameters : list of (module, name), optional
        Tensors to prune; default :func:`prunable_weights`.

    Returns
    -------
    PruneHistory

    Raises
    ------
    ValueError
        A target outside [0, 1] or below the previous one, bad epochs / rewind epoch, an
        unknown rewind / scope, a tensor that is not part of `model`.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> from refcomp.nn.data import Dataset
    >>> r = np.random.default_rng(0)
    >>> x = r.random((64, 4))
    >>> y = (x[:, 0] > x[:, 1]).astype(np.int64)
    >>> data = Dataset(x[:48], y[:48], x[48:], y[48:])
    >>> net = nn.Sequential(nn.Linear(4, 8, rng=r), nn.ReLU(), nn.Linear(8, 2, rng=r))
    >>> h = iterative_prune(net, data, "fp64", sparsities=[0.5, 0.75], epochs=2,
    ...                     batch_size=16, seed=0, hyper={"lr": 0.1}, rewind="weights")
    >>> [(r.round, r.pruned, r.sparsity) for r in h.rounds]
    [(0, 0, 0.0), (1, 24, 0.5), (2, 36, 0.75)]
    """
    if not isinstance(model, Module):
        raise TypeError(f"iterative_prune: model must be a refcomp.nn.Module, got "
                        f"{type(model).__name__}")
    rewind = _choice(Rewind, rewind, "rewind")
    scope = _choice(Scope, scope, "scope")
    E = _int("epochs", epochs, 1)
    k = _int("rewind_epoch", rewind_epoch, 0)
    if k >= E:
        raise ValueError(f"rewind_epoch={rewind_epoch!r} must be below epochs={E}")
    ft = E - k if finetune_epochs is None else _int("finetune_epochs", finetune_epochs, 0)
    targets = [float(_fraction("sparsity", s)) for s in sparsities]
    for a, b in zip(targets, targets[1:]):
        if b < a:
            raise ValueError(f"sparsities must not decrease: {b!r} follows {a!r}")
    hyper = dict(hyper or {})
    params = prunable_weights(model) if parameters is None else list(parameters)
    names = {id(m): p for p, m in _named_modules(model)}
    keys = []
    for m, name in params:
        if id(m) not in names:
            raise ValueError(f"iterative_prune: {getattr(m, 'name', m)!r} is not a module "
                             "of the model")
        keys.append(names[id(m)] + name)
    sizes = [int(np.size(_effective(m, n))) for m, n in params]
    total = sum(sizes)
    rng = np.random.default_rng(seed)

    def run(epochs_, start=0, lr=None, at=None):
        opt = make_optimizer(optimizer, policy, rng=rng, **hyper)
        sched = None
        if lr is not None:
            opt.lr = lr
        elif lr_schedule is not None:
            sched = lr_schedule(opt)
            for _ in range(start):
                sched.step()
                opt.lr = sched.lr
        return _train(model, data, policy, opt, sched, epochs_, batch_size, rng, at)

    def record(r, target, losses, lrs, acc):
        masks = {key: _mask(m, n) for key, (m, n) in zip(keys, params)}
        zeros = int(sum(np.count_nonzero(v == 0) for v in masks.values()))
        acc = _accuracy(model, data, policy) if acc is None else acc
        return Round(r, target, zeros / total, zeros, acc, masks, losses, lrs)

    prepare(model, policy)
    saved = {}

    def snap():
        saved.update(model.state_dict())

    if k == 0:
        snap()
    losses, lrs, acc = run(E, at=(k, snap) if k else None)
    final_lr = lrs[-1]
    history = [record(0, 0.0, losses, lrs, acc)]
    for t, s in enumerate(targets, 1):
        groups = [(params, total)] if scope is Scope.GLOBAL else \
            [([p], size) for p, size in zip(params, sizes)]
        for group, size in groups:
            zeros = sum(int(np.count_nonzero(_mask(m, n) == 0)) for m, n in group)
            count = round(s * size) - zeros
            if count < 0:
                raise ValueError(f"iterative_prune: round {t} targets sparsity {s!r} "
                                 f"({round(s * size)} of {size} entries) but {zeros} are "
                                 "already pruned")
            imp = {(m, n): _effective(m, n) for m, n in group}
            if scope is Scope.GLOBAL:
                global_unstructured(group, L1Unstructured, importance_scores=imp,
                                    amount=count)
            else:
                (m, n), = group
                l1_unstructured(m, n, count, importance_scores=imp[(m, n)])
        if rewind is Rewind.NONE:
            out = run(ft, lr=final_lr)
        else:
            if rewind is Rewind.WEIGHTS:
                rewind_weights(model, saved)
            out = run(E - k, start=k)
        history.append(record(t, s, *out))
    return PruneHistory(history, saved if rewind is Rewind.WEIGHTS else None)
