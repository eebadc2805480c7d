"""Golden ops of the pruning references (issue 8, suite ``prune``): :mod:`refcomp.prune`.

Each op prunes float32 weights given as inputs (``w``: one tensor, ``w0``, ``w1``, ...:
several) and returns the masks as ``bool`` outputs and the pruned tensors (torch's
``module.<name>``, ``mask * orig``: -0.0 for a pruned negative weight) as ``float32``.

``prune.l1_unstructured``
    :func:`refcomp.prune.l1_unstructured` (``amount``: an int is a count, a float a
    fraction); optional input ``scores`` (importance scores).  Outputs ``mask``, ``y``.
``prune.ln_structured``
    :func:`refcomp.prune.ln_structured` (``amount``, ``n``, ``dim``; ``n`` a number or one of
    ``"inf"``, ``"-inf"``, ``"fro"``, ``"nuc"``: JSON has no infinities); optional
    ``scores``.  Outputs ``mask``, ``y``.
``prune.repeated``
    ``steps`` (a list of ``{"method": "l1", "amount"}`` / ``{"method": "ln", "amount", "n",
    "dim"}``) applied in turn to the same tensor (torch's ``PruningContainer``
    composition).  Outputs ``mask`` and ``y`` after each step, stacked: ``(S, *shape)``.
``prune.global_unstructured``
    :func:`refcomp.prune.global_unstructured` with :class:`~refcomp.prune.L1Unstructured`
    over ``w0``, ``w1`` [, ``w2``, ``w3``] (``amount``); ``pre_amount`` (optional): an
    ``l1_unstructured`` of ``w0`` first, so that the global ranking sees its mask.
    Outputs ``mask0``, ``y0``, ``mask1``, ``y1``, ...
``prune.nm``
    :func:`refcomp.prune.nm_mask` (``n``, ``m``: keep n of every m consecutive entries of
    the (R, K) view).  Outputs ``mask`` and ``y = mask * w``.
``prune.to_csr``
    :func:`refcomp.prune.to_csr` of ``w`` (stored: ``w != 0``, NaN included, -0.0 not):
    ``indptr``, ``indices`` (``int64``; refcomp's own arrays are the smallest unsigned
    type, the values are the same) and ``values`` (``float32``, bit for bit).

``ties: true`` marks a case whose scores tie at the pruning boundary: the masks follow
refcomp's documented tie rule (:mod:`refcomp.prune.methods`), which torch leaves to
``topk`` / ``kthvalue``.

>>> import numpy as np
>>> out = OPS["prune.l1_unstructured"]({"w": np.array([[0.5, -0.1], [2.0, -3.0]])},
...                                    {"amount": 2})
>>> out["mask"].values().tolist(), out["y"].values().tolist()
([[0, 0], [1, 1]], [[0.0, -0.0], [2.0, -3.0]])
"""

from __future__ import annotations

import math

import numpy as np

from .. import nn, prune
from .compute_quant import int_operand
from .schema import GoldenError, Operand

__all__ = ["OPS", "INPUTS", "OPTIONAL", "norm_order", "MAX_TENSORS"]

F32 = np.float32
#: the most tensors a global_unstructured case prunes together
MAX_TENSORS = 4


def norm_order(n):
    """A JSON norm order as torch.norm takes it (``"inf"`` / ``"-inf"`` -> +-inf).

    >>> norm_order("-inf"), norm_order(2), norm_order("fro")
    (-inf, 2, 'fro')
    """
    return {"inf": math.inf, "-inf": -math.inf}.get(n, n) if isinstance(n, str) else n


def _f32(v):
    return np.asarray(v, np.float64).astype(F32)          # exact: the values are float32


def _module(w):
    m = nn.Module()
    m.params["weight"] = _f32(w)
    return m


def _mask(m) -> Operand:
    return Operand("bool", (np.asarray(m) != 0).astype(np.uint8))


def _y(t) -> Operand:
    t = np.asarray(t)
    if t.dtype != F32:
        raise GoldenError(f"a pruned tensor must stay float32, got {t.dtype}")
    return Operand("float32", np.ascontiguousarray(t).view(np.uint32).copy())


def _state(m):
    return m.buffers["weight_mask"], prune.pruned_tensor(m, "weight")


def _step(m, step, scores=None):
    kind = step.get("method")
    if kind == "l1":
        prune.l1_unstructured(m, "weight", step["amount"], importance_scores=scores)
    elif kind == "ln":
        prune.ln_structured(m, "weight", step["amount"], n=norm_order(step["n"]),
                            dim=step["dim"], importance_scores=scores)
    else:
        raise GoldenError(f"unknown pruning step {step!r} (method 'l1' or 'ln')")


def _scores(vals):
    return None if vals.get("scores") is None else _f32(vals["scores"])


def _l1(vals, params):
    """refcomp.prune.l1_unstructured"""
    m = _module(vals["w"])
    _step(m, {"method": "l1", "amount": params["amount"]}, _scores(vals))
    mask, y = _state(m)
    return {"mask": _mask(mask), "y": _y(y)}


def _ln(vals, params):
    """refcomp.prune.ln_structured"""
    m = _module(vals["w"])
    _step(m, {"method": "ln", **{k: params[k] for k in ("amount", "n", "dim")}},
          _scores(vals))
    mask, y = _state(m)
    return {"mask": _mask(mask), "y": _y(y)}


def _repeated(vals, params):
    """steps of refcomp.prune.l1_unstructured / ln_structured on one tensor"""
    steps = params["steps"]
    if not isinstance(steps, list) or not steps:
        raise GoldenError(f"prune.repeated needs a non-empty list of steps, got {steps!r}")
    m = _module(vals["w"])
    masks, ys = [], []
    for s in steps:
        _step(m, s)
        mask, y = _state(m)
        masks.append(np.asarray(mask) != 0)
        ys.append(y)
    return {"mask": _mask(np.stack(masks)), "y": _y(np.stack(ys))}


def global_inputs(vals) -> list:
    """The tensors of a global case in order: ``w0``, ``w1``, ... (no gaps)."""
    names = [f"w{i}" for i in range(MAX_TENSORS) if f"w{i}" in vals]
    if names != [f"w{i}" for i in range(len(names))]:
        raise GoldenError(f"global pruning inputs must be w0, w1, ... without gaps, got "
                          f"{sorted(vals)}")
    return names


def _global(vals, params):
    """refcomp.prune.global_unstructured(L1Unstructured), after an optional l1 of w0"""
    names = global_inputs(vals)
    mods = [_module(vals[k]) for k in names]
    if params.get("pre_amount") is not None:
        _step(mods[0], {"method": "l1", "amount": params["pre_amount"]})
    prune.global_unstructured([(m, "weight") for m in mods], prune.L1Unstructured,
                              amount=params["amount"])
    out = {}
    for i, m in enumerate(mods):
        mask, y = _state(m)
        out[f"mask{i}"], out[f"y{i}"] = _mask(mask), _y(y)
    return out


def _nm(vals, params):
    """refcomp.prune.nm_mask; y = mask * w"""
    w = _f32(vals["w"])
    mask = prune.nm_mask(w, params["n"], params["m"])
    return {"mask": _mask(mask), "y": _y(np.multiply(mask.astype(F32), w))}


def _to_csr(vals, params):
    """refcomp.prune.to_csr"""
    c = prune.to_csr(_f32(vals["w"]))
    return {"indptr": int_operand(c.indptr.astype(np.int64), "int64"),
            "indices": int_operand(c.indices.astype(np.int64), "int64"),
            "values": _y(c.values)}


OPS = {"prune.l1_unstructured": _l1, "prune.ln_structured": _ln,
       "prune.repeated": _repeated, "prune.global_unstructured": _global,
       "prune.nm": _nm, "prune.to_csr": _to_csr}
INPUTS = {"prune.l1_unstructured": ("w",), "prune.ln_structured": ("w",),
          "prune.repeated": ("w",), "prune.global_unstructured": ("w0", "w1"),
          "prune.nm": ("w",), "prune.to_csr": ("w",)}
OPTIONAL = {"prune.l1_unstructured": ("scores",), "prune.ln_structured": ("scores",),
            "prune.global_unstructured": tuple(f"w{i}" for i in range(2, MAX_TENSORS))}
