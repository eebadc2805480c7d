"""Golden ops of the distillation losses (issue 8, suite ``distill``): :mod:`refcomp.distill`.

Each op runs one loss forward and its backward (``dloss = 1``) under the case's ``policy``
(every field of the :class:`~refcomp.nn.Policy`, as :func:`~refcomp.golden.compute_nn.
policy_params` records it): the loss in the activations format (shape ``()``), the
gradients in the gradients format.

``distill.kd``
    :func:`refcomp.distill.kd_loss_forward` / ``kd_loss_backward``: inputs ``s``, ``t``
    (student / teacher logits, (N, C)), ``target`` (``int64`` (N,)); params
    ``temperature``, ``alpha``, ``reduction`` (``batchmean``, ``mean``, ``sum``),
    ``log_target``.  Outputs ``loss``, ``ds``.
``distill.hint``
    :func:`refcomp.distill.hint_loss_forward` / ``hint_loss_backward`` with a Linear
    regressor of weight ``w`` (D_t, D_s) and bias ``b`` (D_t,): inputs ``fs`` (N, D_s),
    ``ft`` (N, D_t), ``w``, ``b``; param ``reduction`` (``mean``, ``sum``).  Outputs
    ``loss``, ``dfs``, ``dw``, ``db``.
``distill.rkd``
    :func:`refcomp.distill.rkd_distance_forward` / ``rkd_distance_backward``: inputs ``es``
    (N, D_s), ``et`` (N, D_t); params ``beta``, ``eps``, ``reduction`` (``mean``,
    ``sum``).  Outputs ``loss``, ``de``.

No backend evaluates these in refcomp's order (float64, one rounding): the cases carry the
``derived`` tolerance, ``|backend - golden| <= (E_torch + E_ours)(1 + 2**-20)`` element by
element, with both error bounds from :func:`derived_bound`
(:mod:`refcomp.crosscheck.distill_bounds`, the running error analysis of torch 2.13's
autograd graph of each loss and of refcomp's evaluation).

>>> import numpy as np
>>> from refcomp.nn import POLICIES
>>> from refcomp.golden.compute_nn import policy_params
>>> out = OPS["distill.rkd"]({"es": np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]),
...                          "et": np.array([[0.0], [2.0], [1.0]])},
...                         {"policy": policy_params(POLICIES["fp32-sequential"]),
...                          "beta": 1.0, "eps": 1e-12, "reduction": "mean"})
>>> out["loss"].kind, out["loss"].bits.shape, out["de"].bits.shape
('float32', (), (3, 2))
"""

from __future__ import annotations

import numpy as np

from .. import distill, nn
from .compute_nn import _enc, policy_from_params
from .schema import GoldenError

__all__ = ["OPS", "INPUTS", "OPTIONAL", "derived_bound", "OUTPUTS"]

#: the outputs of each op, in the order of the derived bounds
OUTPUTS = {"distill.kd": ("loss", "ds"), "distill.hint": ("loss", "dw", "db", "dfs"),
           "distill.rkd": ("loss", "de")}


def _pol(params):
    return policy_from_params(params["policy"])


def _kd(vals, params):
    """refcomp.distill.kd_loss_forward + kd_loss_backward"""
    p = _pol(params)
    loss, cache = distill.kd_loss_forward(
        vals["s"], vals["t"], np.asarray(vals["target"], np.int64), p,
        temperature=params["temperature"], alpha=params["alpha"],
        reduction=params["reduction"], log_target=bool(params.get("log_target", False)))
    ds, _ = distill.kd_loss_backward(1.0, cache)
    return {"loss": _enc(loss, p.activations.format), "ds": _enc(ds, p.gradients.format)}


def _hint(vals, params):
    """refcomp.distill.hint_loss_forward + hint_loss_backward (Linear regressor w, b)"""
    p = _pol(params)
    w, b = vals["w"], vals["b"]
    reg = distill.hint_regressor((w.shape[1],), (w.shape[0],), np.random.default_rng(0),
                                 fmt=p.master_spec.format.name)
    reg.params["weight"], reg.params["bias"] = w, b       # the case's regressor
    nn.prepare(reg, p)
    for k, v in (("weight", w), ("bias", b)):
        if not np.array_equal(np.asarray(reg.params[k], np.float64), v):
            raise GoldenError(f"the regressor's {k} is not a {p.master_spec.format.name} "
                              "tensor")
    loss, cache = distill.hint_loss_forward(reg, vals["fs"], vals["ft"], p,
                                            reduction=params.get("reduction", "mean"))
    dfs, grads = distill.hint_loss_backward(1.0, cache)
    g = p.gradients.format
    return {"loss": _enc(loss, p.activations.format), "dfs": _enc(dfs, g),
            "dw": _enc(grads["weight"], g), "db": _enc(grads["bias"], g)}


def _rkd(vals, params):
    """refcomp.distill.rkd_distance_forward + rkd_distance_backward"""
    p = _pol(params)
    loss, cache = distill.rkd_distance_forward(vals["es"], vals["et"], p,
                                               beta=params["beta"], eps=params["eps"],
                                               reduction=params["reduction"])
    de, _ = distill.rkd_distance_backward(1.0, cache)
    return {"loss": _enc(loss, p.activations.format), "de": _enc(de, p.gradients.format)}


def derived_bound(case, output: str) -> np.ndarray:
    """``(E_torch + E_ours)(1 + 2**-20)`` for `output` of a distill case: float64, the
    output's shape (:mod:`refcomp.crosscheck.distill_bounds`, whose transcription of torch
    is the graph :mod:`refcomp.crosscheck.torch_distill` runs)."""
    from ..crosscheck import distill_bounds as db
    if case.op not in OUTPUTS or output not in OUTPUTS[case.op]:
        raise GoldenError(f"case {case.name}: no derived bound for output {output!r}")
    p = _pol(case.params)
    fmt = p.activations.format.name
    if fmt not in db.FMTS or p.gradients.format.name != fmt:
        raise GoldenError(f"case {case.name}: derived bounds model float32 or float64 "
                          f"activations and gradients, not {fmt} / "
                          f"{p.gradients.format.name}")
    v = {k: o.values() for k, o in case.inputs.items()}
    prm = case.params
    if case.op == "distill.kd":
        lt, gt, lo, go = db.kd_bounds(v["s"], v["t"], np.asarray(v["target"], np.int64),
                                      prm["temperature"], prm["alpha"], prm["reduction"],
                                      bool(prm.get("log_target", False)), fmt)
        pairs = [(lt, lo), (gt, go)]
    elif case.op == "distill.hint":
        bt, bo = db.hint_bounds(v["fs"], v["ft"], v["w"], v["b"], fmt,
                                prm.get("reduction", "mean"))
        pairs = list(zip(bt, bo))
    else:
        if prm["eps"] != db.EPS:
            raise GoldenError(f"case {case.name}: the RKD bounds model eps = {db.EPS}")
        (lt, gt), (lo, go) = db.rkd_bounds(v["es"], v["et"], prm["beta"], fmt,
                                           prm["reduction"])
        pairs = [(lt, lo), (gt, go)]
    bt, bo = pairs[OUTPUTS[case.op].index(output)]
    return db.combined(bt, bo).reshape(case.outputs[output].bits.shape)


OPS = {"distill.kd": _kd, "distill.hint": _hint, "distill.rkd": _rkd}
INPUTS = {"distill.kd": ("s", "t", "target"), "distill.hint": ("fs", "ft", "w", "b"),
          "distill.rkd": ("es", "et")}
OPTIONAL: dict = {}
