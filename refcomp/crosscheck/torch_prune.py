"""The ``prune.*`` golden ops (suite ``prune``) on torch 2.13's own ``torch.nn.utils.prune``.

Called by :class:`refcomp.crosscheck.torch_backend.TorchBackend`: each function takes the
torch module, the case and its input tensors (built from the golden bits) and returns
output tensors named as the golden outputs.  The weights become ``torch.nn.Parameter``\\ s
of bare ``torch.nn.Module``\\ s and are pruned by ``torch.nn.utils.prune``
(``l1_unstructured``, ``ln_structured``, ``global_unstructured`` with
``L1Unstructured``, repeated calls composed by its ``PruningContainer``); the outputs are
``<name>_mask`` (as bool) and torch's ``module.weight``.  CSR export is
``Tensor.to_sparse_csr`` of the (R, K) view.

N:M masks: torch 2.13 has no CPU N:M pruning function (``to_sparse_semi_structured``
needs CUDA and takes an already 2:4-sparse tensor), so the backend evaluates the
documented definition -- in each group of ``m`` consecutive entries of the (R, K) view keep
the ``n`` of largest ``|w|`` -- with ``torch.topk``: an independent implementation of the
definition, not a torch reference.

Cases marked ``ties`` record refcomp's tie rule among equal scores; torch's ``topk`` /
``kthvalue`` choose among equal scores in an implementation-defined way, so
:func:`reason` reports them as not comparable.
"""

from __future__ import annotations

import math
import warnings

__all__ = ["OPS", "reason", "TIE_REASON"]

TIE_REASON = ("equal scores at the pruning boundary: the case records refcomp's tie rule "
              "(lower index pruned first, NaN last); torch.topk / kthvalue choose among "
              "equal scores in an implementation-defined way, so torch's mask is not "
              "comparable")


def reason(case):
    """None if torch's result is comparable with `case`, else why not."""
    return TIE_REASON if case.params.get("ties") else None


def _norm(n):
    return {"inf": math.inf, "-inf": -math.inf}.get(n, n) if isinstance(n, str) else n


def _module(torch, w):
    m = torch.nn.Module()
    m.weight = torch.nn.Parameter(w.clone())
    return m


def _step(torch, m, step, scores=None):
    from torch.nn.utils import prune as tp
    if step["method"] == "l1":
        tp.l1_unstructured(m, "weight", step["amount"], importance_scores=scores)
    else:
        tp.ln_structured(m, "weight", step["amount"], n=_norm(step["n"]), dim=step["dim"],
                         importance_scores=scores)


def _out(m, i=""):
    return {f"mask{i}": m.weight_mask.detach() != 0, f"y{i}": m.weight.detach()}


def _l1(torch, case, ins):
    m = _module(torch, ins["w"])
    _step(torch, m, {"method": "l1", "amount": case.params["amount"]}, ins.get("scores"))
    return _out(m)


def _ln(torch, case, ins):
    m = _module(torch, ins["w"])
    p = case.params
    _step(torch, m, {"method": "ln", "amount": p["amount"], "n": p["n"], "dim": p["dim"]},
          ins.get("scores"))
    return _out(m)


def _repeated(torch, case, ins):
    m = _module(torch, ins["w"])
    masks, ys = [], []
    for s in case.params["steps"]:
        _step(torch, m, s)
        o = _out(m)
        masks.append(o["mask"])
        ys.append(o["y"])
    return {"mask": torch.stack(masks), "y": torch.stack(ys)}


def _global(torch, case, ins):
    from torch.nn.utils import prune as tp
    mods = [_module(torch, ins[f"w{i}"]) for i in range(len(ins))]
    if case.params.get("pre_amount") is not None:
        tp.l1_unstructured(mods[0], "weight", case.params["pre_amount"])
    tp.global_unstructured([(m, "weight") for m in mods], pruning_method=tp.L1Unstructured,
                           amount=case.params["amount"])
    out = {}
    for i, m in enumerate(mods):
        out.update(_out(m, i))
    return out


def _nm(torch, case, ins):
    w = ins["w"]
    n, mm = case.params["n"], case.params["m"]
    g = w.reshape(w.shape[0], -1, mm).abs()
    idx = torch.topk(g, n, dim=-1).indices
    keep = torch.zeros(g.shape, dtype=torch.bool).scatter_(-1, idx, True).reshape(w.shape)
    return {"mask": keep, "y": keep.to(w.dtype) * w}


def _to_csr(torch, case, ins):
    w = ins["w"]
    w2 = w.reshape(1, -1) if w.dim() == 1 else w.reshape(w.shape[0], -1)
    with warnings.catch_warnings():         # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore")
        c = w2.to_sparse_csr()
    return {"indptr": c.crow_indices().to(torch.int64),
            "indices": c.col_indices().to(torch.int64), "values": c.values()}


OPS = {"prune.l1_unstructured": _l1, "prune.ln_structured": _ln,
       "prune.repeated": _repeated, "prune.global_unstructured": _global, "prune.nm": _nm,
       "prune.to_csr": _to_csr}
