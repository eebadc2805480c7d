"""Structured pruning that removes units: a smaller :class:`refcomp.nn.Sequential`.

Removing output unit ``j`` of a weighted layer (row ``j`` of a Linear weight, output
channel ``j`` of a Conv2d, and ``bias[j]``) removes, downstream, every tensor entry that
belongs to that unit up to and including the *next* weighted layer:

* a BatchNorm1d / BatchNorm2d: ``weight``, ``bias``, ``running_mean``, ``running_var``
  entries (``num_batches_tracked`` is kept);
* elementwise or per-channel layers (ReLU, LeakyReLU, GELU, Sigmoid, Tanh, Dropout,
  MaxPool2d, AvgPool2d, AdaptiveAvgPool2d) pass the unit through unchanged;
* a Flatten (``start_dim=1, end_dim=-1``) turns channel ``j`` of a (N, C, H, W) output
  into the block of features ``j*H*W .. (j+1)*H*W - 1`` (channel-major, as torch's flatten
  of an NCHW tensor); ``H*W`` is read from the next sized layer (``in_features / C``);
* the next Linear loses input columns, the next Conv2d input channels (``weight[:, j]``).

Any other layer between the two (LayerNorm, Softmax, Residual, a nested Sequential, a
grouped convolution, ...) raises ValueError naming it: removing a unit there would
change the other units' values.  The last weighted layer cannot be shrunk (its units are
the model's outputs).  Pruned tensors (``<name>_orig`` / ``<name>_mask`` of
:mod:`refcomp.prune.reparam`) are sliced together with their masks, so the smaller model is
pruned the same way at the units it keeps.

Exactness.  The smaller model computes the same function as the original when every
removed unit's value reaching the next weighted layer is exactly zero (weight rows and
bias zero; a following BatchNorm with ``bias == 0`` and ``weight == 0`` or
``running_mean == 0``; only zero-preserving activations -- not Sigmoid): each dropped
product is then ``x * 0 = +-0`` and ``s + 0 = s`` exactly, so any accumulation that adds the
surviving terms in the same relative order gives the same float result (``strict=True``
checks these conditions).  This holds bit for bit for the sequential accumulation models
of :mod:`refcomp.ops.accum` at any precision (policies ``fp32-sequential``,
``bf16-mixed-sequential``).  The BLAS policies (``fp32``, ``fp64``, ``bf16-mixed``)
promise no order: OpenBLAS picks its kernels by matrix shape, and on the test host ``fp32``
outputs of a shrunk network differ in the last bits even where only the number of output
columns changed; there the equality holds on data whose every sum is exact (tested, also
against torch).  Two caveats: the sign of an
exactly-zero output may differ (``-0 + +0 = +0``), and train-mode Dropout draws a mask of
a different shape (compare in eval mode).

>>> import numpy as np
>>> from refcomp import nn
>>> rng = np.random.default_rng(0)
>>> net = nn.Sequential(nn.Linear(4, 6, rng=rng), nn.ReLU(), nn.Linear(6, 2, rng=rng))
>>> small = shrink(net, {0: [0, 2, 5]})
>>> small.layers[0].params["weight"].shape, small.layers[2].params["weight"].shape
((3, 4), (2, 3))
>>> parameter_count(net), parameter_count(small)
(44, 23)
"""

from __future__ import annotations

import copy
import numbers

import numpy as np

from ..nn.modules import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout,
                          Flatten, GELU, LeakyReLU, Linear, MaxPool2d, Module, ReLU,
                          Sequential, Sigmoid, Tanh)
from .methods import LnStructured, combine_mask
from .reparam import _masked, _reparam, pruned_tensor
from .sparse import dense_nbytes

__all__ = ["shrink", "shrink_pruned", "keep_from_masks", "select_channels",
           "parameter_count", "model_nbytes"]

_WEIGHTED = (Linear, Conv2d)
_ZERO_PRESERVING = (ReLU, LeakyReLU, GELU, Tanh, Dropout, MaxPool2d, AvgPool2d,
                    AdaptiveAvgPool2d)
_PASS = _ZERO_PRESERVING + (Sigmoid,)


# ----------------------------------------------------------------------------- helpers
def _effective(module, name):
    """The tensor the forward uses: ``mask * orig`` for a pruned one, else the value."""
    rp = _reparam(module)
    if rp is not None and name in rp.tensors:
        return _masked(module.params[name + "_orig"], module.buffers[name + "_mask"])
    if name in module.params:
        return module.params[name]
    return module.buffers.get(name)


def _take(module, name, idx, axis):
    """Keep entries `idx` along `axis` of parameter / buffer `name` (and of its
    reparametrization when pruned)."""
    rp = _reparam(module)
    if rp is not None and name in rp.tensors:
        for d, k in ((module.params, name + "_orig"), (module.buffers, name + "_mask")):
            d[k] = np.take(d[k], idx, axis=axis)
        rp.tensors[name] = np.take(rp.tensors[name], idx, axis=axis)
    elif name in module.params:
        module.params[name] = np.take(module.params[name], idx, axis=axis)
    elif isinstance(module.buffers.get(name), np.ndarray):
        module.buffers[name] = np.take(module.buffers[name], idx, axis=axis)


def _check_model(model, what):
    if not isinstance(model, Sequential):
        raise TypeError(f"{what}: model must be a refcomp.nn.Sequential, got "
                        f"{type(model).__name__}")


def _label(model, j):
    return f"{type(model.layers[j]).__name__} (layer {j})"


def _check_layer(model, layer, what):
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or \
            not 0 <= layer < len(model.layers):
        raise ValueError(f"{what}: layer={layer!r} is not a layer index of the model "
                         f"(0 .. {len(model.layers) - 1})")
    m = model.layers[layer]
    if not isinstance(m, _WEIGHTED):
        raise ValueError(f"{what}: {_label(model, layer)} has no output units to remove; "
                         "only Linear and Conv2d layers can be shrunk")
    if isinstance(m, Conv2d) and m.conv["groups"] != 1:
        raise ValueError(f"{what}: {_label(model, layer)} is a grouped convolution "
                         f"(groups={m.conv['groups']}); cannot shrink it")
    return int(layer)


def _units(module):
    return int(np.shape(_effective(module, "weight"))[0])


def _plan(model, i, what):
    """The layers after `i` up to the next weighted one: [(j, kind)], kind in
    'norm', 'pass', 'flatten', 'next'."""
    plan = []
    for j in range(i + 1, len(model.layers)):
        m = model.layers[j]
        if isinstance(m, _WEIGHTED):
            if isinstance(m, Conv2d) and m.conv["groups"] != 1:
                raise ValueError(f"{what}: cannot shrink layer {i} through "
                                 f"{_label(model, j)}, a grouped convolution "
                                 f"(groups={m.conv['groups']})")
            return plan + [(j, "next")]
        if isinstance(m, BatchNorm2d):
            plan.append((j, "norm"))
        elif isinstance(m, Flatten):
            if m.kw["start_dim"] != 1 or m.kw["end_dim"] != -1:
                raise ValueError(f"{what}: cannot shrink layer {i} through "
                                 f"{_label(model, j)} with start_dim={m.kw['start_dim']}, "
                                 f"end_dim={m.kw['end_dim']} (only 1, -1)")
            plan.append((j, "flatten"))
        elif isinstance(m, _PASS):
            plan.append((j, "pass"))
        else:
            raise ValueError(f"{what}: cannot shrink layer {i} through {_label(model, j)}: "
                             f"removing a unit there would change the other units")
    raise ValueError(f"{what}: {_label(model, i)} is the last weighted layer; its units "
                     "are the model's outputs and cannot be removed")


def _size(module):
    """A sized layer's length along the unit axis of its input."""
    if isinstance(module, _WEIGHTED):
        return int(np.shape(_effective(module, "weight"))[1])
    for k in ("weight", "bias", "running_mean", "running_var"):
        v = _effective(module, k)
        if v is not None:
            return int(np.shape(v)[0])
    return None                                  # BatchNorm without affine and stats


def _expand(model, i, j, keep, C, size, flat, what):
    """Indices of the kept features at the sized layer j (blocks after a Flatten)."""
    if size is None:
        return keep
    if flat:
        if size % C:
            raise ValueError(f"{what}: shape mismatch after Flatten: {_label(model, j)} "
                             f"takes {size} features, not a multiple of the {C} units of "
                             f"layer {i}")
        hw = size // C
        return (keep[:, None] * hw + np.arange(hw)).reshape(-1)
    if size != C:
        raise ValueError(f"{what}: shape mismatch: {_label(model, j)} takes {size} "
                         f"features, layer {i} gives {C}")
    return keep


def _norm_keeps_zero(bn, f) -> bool:
    """Whether the BatchNorm `bn` maps zero to exactly zero at every feature in `f`:
    bias 0 and (running_mean 0 or weight 0) at each."""
    g, be, rm = (_effective(bn, k) for k in ("weight", "bias", "running_mean"))
    ok = np.ones(len(f), bool)
    if be is not None:
        ok &= be[f] == 0
    if rm is not None:
        zero = rm[f] == 0
        if g is not None:
            zero |= g[f] == 0
        ok &= zero
    return bool(np.all(ok))


def _dead_problems(model, i, removed):
    """Why removed units of layer i would not be exactly zero at the next weighted layer
    (empty when they are)."""
    m = model.layers[i]
    w = np.asarray(_effective(m, "weight")).reshape(_units(m), -1)
    out = []
    bad = [u for u in removed if np.any(w[u] != 0)]
    if bad:
        out.append(f"weight rows {bad} are not zero")
    b = _effective(m, "bias")
    bad = [u for u in removed if b is not None and b[u] != 0]
    if bad:
        out.append(f"bias entries {bad} are not zero")
    C = _units(m)
    flat = False
    for j, kind in _plan(model, i, "shrink"):
        n = model.layers[j]
        if kind == "flatten":
            flat = True
        elif kind == "norm":
            size = _size(n)
            # after a Flatten, unit u owns the features u*H*W .. (u+1)*H*W - 1 (_expand)
            bad = [u for u in removed if not _norm_keeps_zero(
                n, _expand(model, i, j, np.array([u]), C, size, flat, "shrink"))]
            if bad:
                out.append(f"{_label(model, j)} maps zero to nonzero for units {bad} "
                           "(needs bias 0 and weight 0 or running_mean 0)")
        elif isinstance(n, Sigmoid):
            out.append(f"{_label(model, j)} maps zero to 0.5")
    return out


def _validate_keep(model, layer, idx, what):
    n = _units(model.layers[layer])
    a = np.asarray(idx)
    if a.dtype == bool or (a.size and a.dtype.kind not in "iu") or a.ndim != 1:
        raise ValueError(f"{what}: units to keep of layer {layer} must be a 1-D sequence "
                         f"of integers, got {idx!r}")
    a = a.astype(np.int64)
    if a.size == 0:
        raise ValueError(f"{what}: keeping zero units of {_label(model, layer)}; a layer "
                         "needs at least one unit")
    bad = a[(a < 0) | (a >= n)]
    if bad.size:
        raise ValueError(f"{what}: units {bad.tolist()} are out of range for "
                         f"{_label(model, layer)} with {n} units")
    u, c = np.unique(a, return_counts=True)
    if np.any(c > 1):
        raise ValueError(f"{what}: units {u[c > 1].tolist()} of layer {layer} are listed "
                         "twice")
    return u


# ----------------------------------------------------------------------------- API
def shrink(model, keep: dict, strict=False):
    """A smaller copy of `model` keeping only the listed output units (module notes).

    Parameters
    ----------
    model : refcomp.nn.Sequential
        Not modified.
    keep : dict
        ``{layer index: indices of the output units to keep}``, for Linear / Conv2d
        layers; the indices are sorted (the kept units stay in their order).
    strict : bool
        Raise ValueError unless every removed unit is exactly zero where it reaches the
        next weighted layer (then the function is preserved: module notes).

    Returns
    -------
    refcomp.nn.Sequential
        A deep copy with the units removed.

    Raises
    ------
    ValueError
        An index that is not a layer, a layer that is not Linear / Conv2d or is the last
        weighted one, no unit kept, units out of range or repeated, a layer in between
        that cannot be shrunk through (named), a shape mismatch after Flatten, a nonzero
        removed unit with `strict`.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> rng = np.random.default_rng(0)
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
    ...                     nn.Flatten(), nn.Linear(4 * 2 * 2, 3, rng=rng))
    >>> small = shrink(net, {0: [1, 3]})
    >>> [small.layers[k].params["weight"].shape for k in (0, 1, 4)]
    [(2, 1, 3, 3), (2,), (3, 8)]
    >>> shrink(net, {0: []})
    Traceback (most recent call last):
    ...
    ValueError: shrink: keeping zero units of Conv2d (layer 0); a layer needs at least one unit
    """
    what = "shrink"
    _check_model(model, what)
    if not isinstance(keep, dict):
        raise TypeError(f"{what}: keep must be a dict {{layer: indices}}, got "
                        f"{type(keep).__name__}")
    todo = {}
    for layer, idx in keep.items():
        layer = _check_layer(model, layer, what)
        todo[layer] = (_validate_keep(model, layer, idx, what), _plan(model, layer, what))
    for layer, (k, _) in todo.items():
        n = _units(model.layers[layer])
        removed = np.setdiff1d(np.arange(n), k).tolist()
        if strict and removed:
            problems = _dead_problems(model, layer, removed)
            if problems:
                raise ValueError(f"{what}: removing units {removed} of "
                                 f"{_label(model, layer)} changes the model: "
                                 + "; ".join(problems))
    new = copy.deepcopy(model)
    sizes = {j: _size(m) for j, m in enumerate(model.layers)}
    for i, (k, plan) in todo.items():
        C = _units(model.layers[i])
        for name in ("weight", "bias"):
            _take(new.layers[i], name, k, 0)
        flat = False
        for j, kind in plan:
            m = new.layers[j]
            if kind == "flatten":
                flat = True
            elif kind == "norm":
                f = _expand(model, i, j, k, C, sizes[j], flat, what)
                for name in ("weight", "bias", "running_mean", "running_var"):
                    _take(m, name, f, 0)
            elif kind == "next":
                _take(m, "weight", _expand(model, i, j, k, C, sizes[j], flat, what), 1)
    return new


def keep_from_masks(model, name="weight") -> dict:
    """``{layer: units to keep}`` for every pruned Linear / Conv2d layer but the last
    weighted one: the units whose ``<name>_mask`` slice along dim 0 is not all zero (as
    :func:`refcomp.prune.ln_structured` with ``dim=0`` leaves them).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn, prune
    >>> rng = np.random.default_rng(0)
    >>> net = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.ReLU(), nn.Linear(4, 2, rng=rng))
    >>> _ = prune.ln_structured(net.layers[0], "weight", 2, n=1, dim=0)
    >>> {k: v.tolist() for k, v in keep_from_masks(net).items()}
    {0: [1, 3]}
    """
    _check_model(model, "keep_from_masks")
    weighted = [j for j, m in enumerate(model.layers) if isinstance(m, _WEIGHTED)]
    out = {}
    for j in weighted[:-1]:
        m = model.layers[j]
        rp = _reparam(m)
        if rp is None or name not in rp.tensors:
            continue
        mask = m.buffers[name + "_mask"]
        out[j] = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    return out


def shrink_pruned(model, strict=True, name="weight"):
    """Remove every unit whose structured mask is all zero (:func:`keep_from_masks`), e.g.
    after ``ln_structured(layer, "weight", amount, n, dim=0)``.

    With `strict` (default) a removed unit must be exactly zero at the next weighted layer
    (module notes): ``ln_structured`` on the weight leaves the bias, so prune it too, e.g.
    ``custom_from_mask(layer, "bias", mask.any(axis=1))``, or pass ``strict=False`` to
    accept the change of function.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn, prune
    >>> rng = np.random.default_rng(0)
    >>> net = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.ReLU(), nn.Linear(4, 2, rng=rng))
    >>> lin = prune.ln_structured(net.layers[0], "weight", 2, n=1, dim=0)
    >>> lin = prune.custom_from_mask(lin, "bias", lin.buffers["weight_mask"].any(axis=1))
    >>> x = rng.random((5, 3))
    >>> small = shrink_pruned(net)
    >>> small.layers[0].params["weight_orig"].shape
    (2, 3)
    >>> bool(np.all(small(x, "fp64")[0] == net(x, "fp64")[0]))
    True
    """
    return shrink(model, keep_from_masks(model, name), strict=strict)


def select_channels(model, layer, amount, n=1) -> np.ndarray:
    """The units of `layer` that ``ln_structured(model.layers[layer], "weight", amount,
    n, dim=0)`` would keep (same amount rounding, norms and tie rule; a pruned weight ranks
    only its live units), without changing the model.  Like ``ln_structured`` (and
    torch), a pruned weight is ranked as :func:`refcomp.prune.pruned_tensor` gives it: the
    masked tensor saved at the last pruning or forward call, not the current
    ``weight_mask * weight_orig``.

    Parameters
    ----------
    model : refcomp.nn.Sequential
    layer : int
        A Linear or Conv2d layer.
    amount : int or float
        Units to remove: a count or a fraction of the live units.
    n : norm order, as :func:`refcomp.prune.channel_norm`

    Returns
    -------
    numpy.ndarray of int64, sorted: pass as ``shrink(model, {layer: ...})``.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> net = nn.Sequential(nn.Linear(2, 3, rng=np.random.default_rng(0)), nn.ReLU(),
    ...                     nn.Linear(3, 1, rng=np.random.default_rng(1)))
    >>> net.layers[0].params["weight"] = np.array([[1.0, 1.0], [3.0, 0.0], [0.5, -0.5]])
    >>> select_channels(net, 0, 1, n=1).tolist()
    [0, 1]
    """
    what = "select_channels"
    _check_model(model, what)
    layer = _check_layer(model, layer, what)
    m = model.layers[layer]
    w = np.asarray(pruned_tensor(m, "weight"))     # what ln_structured ranks (torch's)
    rp = _reparam(m)
    old = m.buffers["weight_mask"] if rp is not None and "weight" in rp.tensors else \
        np.ones(w.shape)
    mask = combine_mask(LnStructured(amount, n, 0), w, old)
    keep = np.flatnonzero(mask.reshape(w.shape[0], -1).any(axis=1))
    if keep.size == 0:
        raise ValueError(f"{what}: amount={amount!r} removes every unit of "
                         f"{_label(model, layer)}")
    return keep


def parameter_count(model) -> int:
    """Number of parameter entries (torch's ``sum(p.numel() for p in
    model.parameters())``; a pruned tensor counts its ``<name>_orig``).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> parameter_count(nn.Linear(3, 2, rng=np.random.default_rng(0)))
    8
    """
    if not isinstance(model, Module):
        raise TypeError(f"parameter_count: model must be a refcomp.nn.Module, got "
                        f"{type(model).__name__}")
    return int(sum(np.size(v) for v in model.named_parameters().values()))


def model_nbytes(model, fmt="float32", buffers=True) -> int:
    """Dense storage of the model in bytes: every parameter and (with `buffers`) every
    floating-point buffer except pruning masks (BatchNorm running statistics), each
    stored in `fmt` (:func:`refcomp.prune.dense_nbytes`); integer buffers
    (``num_batches_tracked``) count 8 bytes, as torch's int64.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> net = nn.Sequential(nn.Linear(3, 2, rng=np.random.default_rng(0)),
    ...                     nn.BatchNorm1d(2))
    >>> model_nbytes(net), model_nbytes(net, "bfloat16", buffers=False)
    (72, 24)
    """
    if not isinstance(model, Module):
        raise TypeError(f"model_nbytes: model must be a refcomp.nn.Module, got "
                        f"{type(model).__name__}")
    params = model.named_parameters()
    total = sum(dense_nbytes(np.shape(v), fmt) for v in params.values())
    if buffers:
        for k, v in model.state_dict().items():
            if k in params or k.endswith("_mask"):
                continue
            total += dense_nbytes(np.shape(v), fmt) if isinstance(v, np.ndarray) else 8
    return int(total)
