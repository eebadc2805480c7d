"""The ``amp.*`` golden ops (suite ``amp``) on torch 2.13's own ``torch.amp.GradScaler``.

Called by :class:`refcomp.crosscheck.torch_backend.TorchBackend`: each function takes the
torch module, the case and its input tensors (built from the golden bits) and returns
output tensors named as the golden outputs.  Both drive a real ``torch.amp.GradScaler``
(on the inputs' device) over a ``torch.optim.SGD`` of ``torch.nn.Parameter``\\ s whose
``.grad`` is set directly, as a training loop's backward would leave it:

* ``amp.scaler_update``: ``GradScaler(device, init_scale, growth_factor, backoff_factor,
  growth_interval)``; every step ``scaler.scale(loss)`` (which creates the scale lazily),
  ``.grad = [0, 2**-20]`` or ``[0, inf]`` as ``found_inf[i]`` says, ``scaler.step(opt)``
  (``unscale_``, the inf check, the step or its skip), ``scaler.update()``; the outputs are
  ``scaler._scale`` and ``scaler._growth_tracker`` after each update.  torch's found_inf
  looks at the gradients as given (before unscaling), so a clean step stays clean under a
  zero scale too; the found_inf torch recorded in ``step`` is checked against the case's
  (a difference is an error of the driver, not a mismatch);
* ``amp.unscale``: ``GradScaler(device, init_scale=scale)``, ``.grad = g``,
  ``scaler.unscale_(opt)`` (``_amp_foreach_non_finite_check_and_unscale_``); the outputs
  are the parameter's ``.grad`` and whether torch recorded an inf / NaN.
"""

from __future__ import annotations

__all__ = ["OPS"]

_FINITE_GRAD = 2.0 ** -20


def _found(scaler, opt) -> bool:
    per_device = scaler._per_optimizer_states[id(opt)]["found_inf_per_device"]
    return bool(sum(v.item() for v in per_device.values()))


def _scaler_update(torch, case, ins):
    p = case.params
    found = ins["found_inf"].to("cpu").tolist()
    dev = ins["found_inf"].device
    scaler = torch.amp.GradScaler(dev.type, init_scale=float(p["init_scale"]),
                                  growth_factor=float(p["growth_factor"]),
                                  backoff_factor=float(p["backoff_factor"]),
                                  growth_interval=int(p["growth_interval"]))
    w = torch.nn.Parameter(torch.zeros(2, device=dev))
    opt = torch.optim.SGD([w], lr=0.1)
    loss = torch.ones((), device=dev)
    scales, trackers = [], []
    for i, f in enumerate(found):
        scaler.scale(loss)
        w.grad = torch.tensor([0.0, float("inf") if f else _FINITE_GRAD], device=dev)
        scaler.step(opt)
        if _found(scaler, opt) != bool(f):
            raise ValueError(f"step {i}: torch recorded found_inf={not f}, the case says "
                             f"{bool(f)} (scale {scaler._scale.item()!r})")
        scaler.update()
        scales.append(scaler._scale.detach().clone().reshape(()))
        trackers.append(scaler._growth_tracker.detach().clone().reshape(()))
    return {"scale": torch.stack(scales), "growth_tracker": torch.stack(trackers)}


def _unscale(torch, case, ins):
    g, dev = ins["g"], ins["g"].device
    scaler = torch.amp.GradScaler(dev.type, init_scale=float(ins["scale"].item()))
    scaler.scale(torch.ones((), device=dev))
    w = torch.nn.Parameter(torch.zeros(g.shape, dtype=g.dtype, device=dev))
    opt = torch.optim.SGD([w], lr=0.1)
    w.grad = g.clone()
    scaler.unscale_(opt)
    return {"y": w.grad.detach(),
            "found_inf": torch.tensor(_found(scaler, opt), dtype=torch.bool)}


OPS = {"amp.scaler_update": _scaler_update, "amp.unscale": _unscale}
