"""Pruning of engine modules with torch's reparametrization (torch 2.13
``torch/nn/utils/prune.py``: ``BasePruningMethod.apply``, ``remove``, ``is_pruned``,
``global_unstructured`` and the functional wrappers).

Pruning parameter ``<name>`` of a :class:`refcomp.nn.Module` (in place, the module is
returned):

* ``module.params[<name>]`` moves to ``module.params[<name>_orig]`` (appended last, as
  torch re-registers it) and ``module.buffers[<name>_mask]`` holds the float64 0/1 mask,
  so ``state_dict()`` / ``named_parameters()`` carry torch's keys (``weight_orig``,
  ``weight_mask``, ``0.weight_orig`` in a Sequential);
* every forward call computes the effective tensor ``mask * <name>_orig`` (an IEEE
  product, exact: pruned negative entries become -0.0 and pruned inf / NaN entries NaN,
  as torch's multiply gives) and runs the module's own forward with it; the backward
  returns the gradient of ``<name>_orig`` as ``d<name> * mask`` (torch's autograd of the
  product; the mask is read from the forward's cache), keyed ``<name>_orig``, so
  :func:`refcomp.nn.train_step` and :func:`refcomp.nn.fit` train a pruned model unchanged;
* pruning the same tensor again composes the masks as ``PruningContainer`` does
  (:func:`refcomp.prune.methods.combine_mask`): the new method ranks only what is still
  unpruned and the masks multiply.

Importance.  Without `importance_scores` the ranking uses torch's ``module.<name>``: the
original tensor for a first pruning, else the masked tensor *as computed at the last
pruning or forward call* (:func:`pruned_tensor`).  Like torch, it is not refreshed by an
optimizer step, so a pruning right after training ranks the weights of the last forward.

The forward hook is installed as instance attributes ``forward`` / ``backward`` (plus
``_prune_reparam``) that call the class's own methods with ``params`` holding the effective
tensors under their plain names; :func:`remove` makes the pruning permanent
(``params[<name>] = mask * orig``, appended last as torch does) and uninstalls the hook
when no pruned tensor is left.  A pruning that raises leaves the module unchanged (torch
may have reordered its parameters by then).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from ..nn.modules import Module
from .methods import (BasePruningMethod, CustomFromMask, Identity, L1Unstructured,
                      LnStructured, RandomStructured, RandomUnstructured, combine_mask)

__all__ = ["PrunedCache", "apply", "identity", "random_unstructured", "l1_unstructured",
           "random_structured", "ln_structured", "global_unstructured", "custom_from_mask",
           "remove", "is_pruned", "pruned_tensor"]


class PrunedCache(NamedTuple):
    """Cache of a pruned module's forward."""

    inner: object          # the module's own forward cache
    masks: dict            # name -> the mask the forward applied


def _masked(orig, mask):
    """``mask * orig`` in orig's dtype (torch's ``apply_mask``); exact."""
    orig = np.asarray(orig)
    return np.multiply(np.asarray(mask).astype(orig.dtype, copy=False), orig)


class _Reparam:
    """torch's forward pre-hook of a pruned module: computes the effective tensors and
    runs the module's class forward / backward with them."""

    def __init__(self, module):
        self.module = module
        self.tensors = {}       # name -> torch's module.<name> (masked, as of last update)

    def _effective(self):
        m = self.module
        out = {}
        for k, v in m.params.items():
            base = k[:-5] if k.endswith("_orig") else None
            if base in self.tensors:
                out[base] = _masked(v, m.buffers[base + "_mask"])
            else:
                out[k] = v
        return out

    def _run(self, fn, params, *args, **kw):
        """Call ``fn(module, ...)`` with the effective params and without the masks among
        the buffers (buffer updates made by `fn`, e.g. batch-norm statistics, are kept)."""
        m = self.module
        saved_p, saved_b = m.params, m.buffers
        masks = {k + "_mask" for k in self.tensors}
        m.params = params
        m.buffers = {k: v for k, v in saved_b.items() if k not in masks}
        try:
            return fn(m, *args, **kw)
        finally:
            new_b = m.buffers
            m.params = saved_p
            m.buffers = {**{k: new_b.get(k, v) for k, v in saved_b.items()},
                         **{k: v for k, v in new_b.items() if k not in saved_b}}

    def forward(self, x, policy, rng=None, train=True):
        m = self.module
        eff = self._effective()
        for k in self.tensors:
            self.tensors[k] = eff[k]
        masks = {k: m.buffers[k + "_mask"] for k in self.tensors}
        y, cache = self._run(type(m).forward, eff, x, policy, rng=rng, train=train)
        return y, PrunedCache(cache, masks)

    def backward(self, dy, cache, rng=None, need_dx=True):
        dx, grads = self._run(type(self.module).backward, self._effective(), dy, cache.inner,
                              rng=rng, need_dx=need_dx)
        grads = dict(grads)
        for k, mask in cache.masks.items():
            if k in grads:
                g = np.asarray(grads.pop(k))
                grads[k + "_orig"] = np.multiply(g, np.asarray(mask).astype(g.dtype,
                                                                             copy=False))
        return dx, grads


def _reparam(module):
    return module.__dict__.get("_prune_reparam")


def _check_module(module, what):
    if not isinstance(module, Module):
        raise TypeError(f"{what}: module must be a refcomp.nn.Module, got "
                        f"{type(module).__name__}")


def pruned_tensor(module, name) -> np.ndarray:
    """torch's ``module.<name>``: the parameter itself when `name` is not pruned, else the
    masked tensor as of the last pruning or forward call (module notes).

    Examples
    --------
    >>> from refcomp import nn
    >>> lin = nn.Linear(2, 2, rng=np.random.default_rng(0))
    >>> lin.params["weight"] = np.array([[1.0, -2.0], [-3.0, 4.0]])
    >>> pruned_tensor(l1_unstructured(lin, "weight", 2), "weight").tolist()
    [[0.0, -0.0], [-3.0, 4.0]]
    """
    _check_module(module, "pruned_tensor")
    rp = _reparam(module)
    if rp is not None and name in rp.tensors:
        return rp.tensors[name]
    if name not in module.params:
        raise AttributeError(f"{module.name} has no parameter {name!r} (parameters: "
                             f"{sorted(module.params)})")
    return module.params[name]


def apply(method: BasePruningMethod, module, name: str, importance_scores=None):
    """Prune ``module.params[name]`` with `method` (torch's ``BasePruningMethod.apply``).

    Parameters
    ----------
    method : BasePruningMethod
        E.g. ``L1Unstructured(0.3)``.
    module : refcomp.nn.Module
    name : str
        A parameter of `module` itself (``"weight"``, ``"bias"``), pruned or not.
    importance_scores : array_like, optional
        Same shape as the parameter; default torch's ``module.<name>`` (module notes).

    Returns
    -------
    module

    Raises
    ------
    AttributeError
        `module` has no parameter `name` (torch raises AttributeError too).
    ValueError
        Shape mismatch of `importance_scores`, or a name that is a pruning's own
        ``<name>_orig``; errors of the method (amount, dim, n).
    """
    _check_module(module, "prune")
    if not isinstance(method, BasePruningMethod):
        raise TypeError(f"method must be a BasePruningMethod, got {method!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    rp = _reparam(module)
    pruned = rp is not None and name in rp.tensors
    if not pruned:
        if rp is not None and name.endswith("_orig") and name[:-5] in rp.tensors:
            raise ValueError(f"{module.name}: {name!r} is the reparametrization of the "
                             f"pruned {name[:-5]!r}; prune {name[:-5]!r} instead")
        if name not in module.params:
            raise AttributeError(f"{module.name} has no parameter {name!r} to prune "
                                 f"(parameters: {sorted(module.params)})")
    current = pruned_tensor(module, name)
    if importance_scores is None:
        scores = current
    else:
        scores = np.asarray(importance_scores)
        if scores.shape != np.shape(current):
            raise ValueError(f"importance_scores should have the same shape as parameter "
                             f"{name} of {module.name}, got {scores.shape} vs "
                             f"{np.shape(current)}")
    old = module.buffers[name + "_mask"] if pruned else np.ones(np.shape(current))
    mask = combine_mask(method, scores, old)
    if not pruned:
        if rp is None:
            rp = _Reparam(module)
            module._prune_reparam = rp
            module.forward, module.backward = rp.forward, rp.backward
        orig = module.params.pop(name)
        module.params[name + "_orig"] = orig
    module.buffers[name + "_mask"] = mask
    rp.tensors[name] = _masked(module.params[name + "_orig"], mask)
    return module


def identity(module, name):
    """Reparametrize ``module.<name>`` with a mask of ones (torch's ``prune.identity``).

    Examples
    --------
    >>> from refcomp import nn
    >>> m = identity(nn.Linear(2, 3, rng=np.random.default_rng(0)), "bias")
    >>> m.buffers["bias_mask"].tolist(), sorted(m.state_dict())
    ([1.0, 1.0, 1.0], ['bias_mask', 'bias_orig', 'weight'])
    """
    return apply(Identity(), module, name)


def random_unstructured(module, name, amount, rng):
    """Prune `amount` still-unpruned entries of ``module.<name>`` at random (torch's
    ``prune.random_unstructured``; the ranking ``rng.random`` draws is documented in
    :mod:`refcomp.prune.methods`).

    Parameters
    ----------
    module : refcomp.nn.Module
    name : str
    amount : int or float
        A count, or a fraction in [0, 1] of the still-unpruned entries.
    rng : numpy.random.Generator

    Examples
    --------
    >>> from refcomp import nn
    >>> m = random_unstructured(nn.Linear(4, 5, rng=np.random.default_rng(0)), "weight",
    ...                         0.25, np.random.default_rng(1))
    >>> int(m.buffers["weight_mask"].size - m.buffers["weight_mask"].sum())
    5
    """
    return apply(RandomUnstructured(amount, rng), module, name)


def l1_unstructured(module, name, amount, importance_scores=None):
    """Prune the `amount` still-unpruned entries of smallest ``|importance|`` (torch's
    ``prune.l1_unstructured``; tie rule in :mod:`refcomp.prune.methods`).

    Parameters
    ----------
    module : refcomp.nn.Module
    name : str
    amount : int or float
        A count, or a fraction in [0, 1] of the still-unpruned entries.
    importance_scores : array_like, optional

    Examples
    --------
    >>> from refcomp import nn
    >>> lin = nn.Linear(3, 2, rng=np.random.default_rng(0))
    >>> lin.params["weight"] = np.array([[0.5, -0.1, 2.0], [-3.0, 0.2, -0.4]])
    >>> l1_unstructured(lin, "weight", amount=0.5).buffers["weight_mask"].tolist()
    [[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    >>> sorted(lin.state_dict())
    ['bias', 'weight_mask', 'weight_orig']
    """
    return apply(L1Unstructured(amount), module, name, importance_scores)


def random_structured(module, name, amount, dim, rng):
    """Prune `amount` live channels along `dim` at random (torch's
    ``prune.random_structured``, refcomp's ``rng`` ranking).

    Examples
    --------
    >>> from refcomp import nn
    >>> m = random_structured(nn.Linear(3, 4, rng=np.random.default_rng(0)), "weight", 2,
    ...                       0, np.random.default_rng(0))
    >>> m.buffers["weight_mask"].sum(axis=1).tolist().count(0.0)
    2
    """
    return apply(RandomStructured(amount, dim, rng), module, name)


def ln_structured(module, name, amount, n, dim, importance_scores=None):
    """Prune the `amount` live channels along `dim` of smallest L\\ `n` norm (torch's
    ``prune.ln_structured``; norms and ties in :mod:`refcomp.prune.methods`).

    Parameters
    ----------
    module : refcomp.nn.Module
    name : str
    amount : int or float
        A count, or a fraction in [0, 1] of the live channels.
    n : int, float, inf, -inf, 'fro', 'nuc' or None
    dim : int
    importance_scores : array_like, optional

    Examples
    --------
    >>> from refcomp import nn
    >>> lin = nn.Linear(2, 3, rng=np.random.default_rng(0))
    >>> lin.params["weight"] = np.array([[1.0, 1.0], [3.0, 0.0], [0.5, -0.5]])
    >>> ln_structured(lin, "weight", 1, n=1, dim=0).buffers["weight_mask"].tolist()
    [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    """
    return apply(LnStructured(amount, n, dim), module, name, importance_scores)


def custom_from_mask(module, name, mask):
    """Multiply the mask of ``module.<name>`` by `mask` (torch's
    ``prune.custom_from_mask``).

    Examples
    --------
    >>> from refcomp import nn
    >>> m = custom_from_mask(nn.Linear(5, 3, rng=np.random.default_rng(0)), "bias",
    ...                      [0, 1, 0])
    >>> m.buffers["bias_mask"].tolist()
    [0.0, 1.0, 0.0]
    """
    return apply(CustomFromMask(mask), module, name)


def global_unstructured(parameters, pruning_method, importance_scores=None, **kwargs):
    """Prune several tensors together, ranking all their entries at once (torch's
    ``prune.global_unstructured``).

    The importance scores (torch's ``module.<name>`` unless given) and the masks in place
    (ones for unpruned tensors) are flattened and concatenated in the order of
    `parameters`; ``combine_mask(pruning_method(**kwargs), ...)`` computes one mask, whose
    slices are applied with :func:`custom_from_mask`.

    Parameters
    ----------
    parameters : iterable of (module, name)
    pruning_method : type
        An unstructured method class, e.g. :class:`L1Unstructured` or
        :class:`RandomUnstructured` (then pass ``rng=``).
    importance_scores : dict, optional
        ``{(module, name): scores}``.
    **kwargs
        The method's arguments (``amount``, ``rng``).

    Examples
    --------
    >>> from refcomp import nn
    >>> from refcomp.prune import L1Unstructured
    >>> rng = np.random.default_rng(0)
    >>> net = nn.Sequential(nn.Linear(10, 4, rng=rng), nn.Linear(4, 1, rng=rng))
    >>> global_unstructured([(net.layers[0], "weight"), (net.layers[1], "weight")],
    ...                     L1Unstructured, amount=10)
    >>> int(sum((m.buffers["weight_mask"] == 0).sum() for m in net.layers))
    10
    """
    if not isinstance(parameters, Iterable):
        raise TypeError("global_unstructured(): parameters is not an Iterable")
    parameters = list(parameters)
    if not parameters:
        raise ValueError("global_unstructured(): parameters is empty")
    importance_scores = {} if importance_scores is None else importance_scores
    if not isinstance(importance_scores, dict):
        raise TypeError("global_unstructured(): importance_scores must be of type dict")
    scores, masks = [], []
    for pair in parameters:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"global_unstructured(): {pair!r} is not a (module, name) pair")
        module, name = pair
        cur = pruned_tensor(module, name)
        s = np.asarray(importance_scores.get((module, name), cur))
        if s.shape != np.shape(cur):
            raise ValueError(f"importance_scores of {name} of {module.name} have shape "
                             f"{s.shape}, the parameter {np.shape(cur)}")
        scores.append(s.reshape(-1))
        rp = _reparam(module)
        masks.append(module.buffers[name + "_mask"].reshape(-1)
                     if rp is not None and name in rp.tensors else np.ones(s.size))
    method = pruning_method(**kwargs)
    if method.PRUNING_TYPE != "unstructured":
        raise TypeError('Only "unstructured" PRUNING_TYPE supported for the '
                        f"`pruning_method`. Found method {pruning_method} of type "
                        f"{method.PRUNING_TYPE}")
    final = combine_mask(method, np.concatenate(scores), np.concatenate(masks))
    at = 0
    for module, name in parameters:
        shape = np.shape(pruned_tensor(module, name))
        size = int(np.prod(shape))
        custom_from_mask(module, name, final[at:at + size].reshape(shape))
        at += size


def remove(module, name):
    """Make the pruning of ``module.<name>`` permanent (torch's ``prune.remove``):
    ``params[name] = mask * params[name + "_orig"]`` (appended last); ``<name>_orig`` and
    ``<name>_mask`` are dropped.

    Raises
    ------
    ValueError
        `name` is not pruned (torch's wording).

    Examples
    --------
    >>> from refcomp import nn
    >>> lin = nn.Linear(2, 2, rng=np.random.default_rng(0))
    >>> lin.params["weight"] = np.array([[1.0, -2.0], [-3.0, 4.0]])
    >>> lin = remove(l1_unstructured(lin, "weight", 2), "weight")
    >>> list(lin.params), lin.params["weight"].tolist(), is_pruned(lin)
    (['bias', 'weight'], [[0.0, -0.0], [-3.0, 4.0]], False)
    """
    _check_module(module, "remove")
    rp = _reparam(module)
    if rp is None or name not in rp.tensors:
        raise ValueError(f"Parameter '{name}' of module {module.name} has to be pruned "
                         "before pruning can be removed")
    w = _masked(module.params.pop(name + "_orig"), module.buffers.pop(name + "_mask"))
    module.params[name] = w
    del rp.tensors[name]
    if not rp.tensors:
        for k in ("forward", "backward", "_prune_reparam"):
            module.__dict__.pop(k, None)
    return module


def is_pruned(module) -> bool:
    """Whether `module` or any submodule has a pruned tensor (torch's
    ``prune.is_pruned``).

    Examples
    --------
    >>> from refcomp import nn
    >>> net = nn.Sequential(nn.Linear(3, 2, rng=np.random.default_rng(0)), nn.ReLU())
    >>> is_pruned(net), is_pruned(l1_unstructured(net.layers[0], "bias", 1)) and \\
    ...     is_pruned(net)
    (False, True)
    """
    _check_module(module, "is_pruned")
    rp = _reparam(module)
    if rp is not None and rp.tensors:
        return True
    return any(is_pruned(c) for _, c in module.children())
