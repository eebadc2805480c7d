"""The ``distill.*`` golden ops (suite ``distill``) on torch 2.13's autograd.

Called by :class:`refcomp.crosscheck.torch_backend.TorchBackend`: each function takes the
torch module, the case and its input tensors (built from the golden bits, float32) and
returns the loss and the gradients (``loss.backward()``) named as the golden outputs.
These are exactly the graphs :mod:`refcomp.crosscheck.distill_bounds` transcribes into
``E_torch`` (and ``tests/test_distill.py`` runs):

* KD: ``alpha * T * T * F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1)
  [F.log_softmax with log_target], reduction) + (1 - alpha) * F.cross_entropy(s, y,
  reduction)`` (``sum`` for ``sum``, else ``mean``);
* hint: ``F.mse_loss(F.linear(fs, w, b), ft, reduction)``;
* RKD: the reference code (lenscloth/RKD ``RkdDistance`` with ``pdist``:
  ``|e_i|^2 + |e_j|^2 - 2 e_i . e_j`` clamped at eps, square root, zero diagonal, divided
  by the mean positive distance; the teacher's under ``no_grad``) and
  ``F.smooth_l1_loss(d, t_d, beta, reduction)``.
"""

from __future__ import annotations

import warnings

__all__ = ["OPS"]


def _kd(torch, case, ins):
    F = torch.nn.functional
    p = case.params
    T, alpha, red = float(p["temperature"]), float(p["alpha"]), p["reduction"]
    st = ins["s"].clone().requires_grad_(True)
    tt = ins["t"]
    lq = F.log_softmax(st / T, dim=1)
    log_target = bool(p.get("log_target", False))
    tgt = F.log_softmax(tt / T, dim=1) if log_target else F.softmax(tt / T, dim=1)
    with warnings.catch_warnings():
        # torch 2.13 warns that 'mean' divides by N * C (the semantics mirrored)
        warnings.filterwarnings("ignore", message="reduction: 'mean' divides",
                                category=UserWarning)
        kl = F.kl_div(lq, tgt, reduction=red, log_target=log_target)
    ce = F.cross_entropy(st, ins["target"], reduction="sum" if red == "sum" else "mean")
    loss = alpha * T * T * kl + (1 - alpha) * ce
    loss.backward()
    return {"loss": loss.detach(), "ds": st.grad}


def _hint(torch, case, ins):
    F = torch.nn.functional
    X = ins["fs"].clone().requires_grad_(True)
    W = ins["w"].clone().requires_grad_(True)
    B = ins["b"].clone().requires_grad_(True)
    loss = F.mse_loss(F.linear(X, W, B), ins["ft"],
                      reduction=case.params.get("reduction", "mean"))
    loss.backward()
    return {"loss": loss.detach(), "dfs": X.grad, "dw": W.grad, "db": B.grad}


def _pdist(e, eps):
    """lenscloth/RKD metric/utils.py ``pdist(e, squared=False)``."""
    e_square = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps)
    res = res.sqrt()
    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def _rkd(torch, case, ins):
    F = torch.nn.functional
    p = case.params
    eps = float(p["eps"])
    st = ins["es"].clone().requires_grad_(True)
    with torch.no_grad():
        t_d = _pdist(ins["et"], eps)
        t_d = t_d / t_d[t_d > 0].mean()
    d = _pdist(st, eps)
    d = d / d[d > 0].mean()
    loss = F.smooth_l1_loss(d, t_d, beta=float(p["beta"]), reduction=p["reduction"])
    loss.backward()
    return {"loss": loss.detach(), "de": st.grad}


OPS = {"distill.kd": _kd, "distill.hint": _hint, "distill.rkd": _rkd}
