"""Golden ops of dynamic loss scaling (issue 9, suite ``amp``): :class:`refcomp.amp.GradScaler`,
torch 2.13's ``torch.amp.GradScaler`` (the extensions of :mod:`refcomp.amp.scaler_ext` are
not torch and have no golden cases).

``amp.scaler_update``
    A :class:`~refcomp.amp.GradScaler` built from the params ``init_scale`` (a number,
    rounded to float32 as torch's ``torch.full((), init_scale)``), ``growth_factor``,
    ``backoff_factor``, ``growth_interval``, then ``update(found_inf[i])`` for every step i
    of the input ``found_inf`` (``bool`` (S,)).  Outputs ``scale`` (``float32`` (S,)) and
    ``growth_tracker`` (``int32`` (S,)), both after each step.
``amp.unscale``
    ``GradScaler(init_scale=scale).unscale({"g": g})``: inputs ``g`` (``float32``, any
    shape) and ``scale`` (``float32`` shape ()).  Outputs ``y`` (``float32``: ``rnd(g * inv)``
    with ``inv = rnd_f32(rnd_f64(1 / scale))``, ``g`` itself when ``inv == 1``) and
    ``found_inf`` (``bool`` shape (): any inf / NaN in ``g``, the input).

float32 inputs are rebuilt bit for bit from the decoded float64 values (a signalling NaN
stays signalling: torch returns it untouched when ``inv == 1``).

>>> import numpy as np
>>> out = OPS["amp.scaler_update"]({"found_inf": np.array([0, 1, 0, 0])},
...     {"init_scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2})
>>> out["scale"].values().tolist(), out["growth_tracker"].values().tolist()
([8.0, 4.0, 4.0, 8.0], [1, 0, 1, 0])
>>> out = OPS["amp.unscale"]({"g": np.array([3.0, np.inf]), "scale": np.array(3.0)}, {})
>>> out["y"].values().tolist(), bool(out["found_inf"].values())
([1.0, inf], True)
"""

from __future__ import annotations

import numpy as np

from ..amp import GradScaler
from .compute_quant import int_operand
from .schema import GoldenError, Operand

__all__ = ["OPS", "INPUTS", "OPTIONAL", "f32_bits"]

F32 = np.float32


def f32_bits(v) -> np.ndarray:
    """float64 values that are float32 values (NaN payloads included, a signalling NaN kept
    signalling) as float32 bit patterns (uint32).

    >>> [hex(b) for b in f32_bits(np.array([1.0, -np.inf]))]
    ['0x3f800000', '0xff800000']
    """
    v = np.array(v, dtype=np.float64)          # a contiguous copy; keeps shape ()
    with np.errstate(invalid="ignore", over="ignore"):
        bits = v.astype(F32).view(np.uint32).copy()
        back = bits.view(F32).astype(np.float64)
    nan = np.isnan(v)
    if nan.any():
        b64 = v.view(np.uint64)[nan]
        bits[nan] = ((b64 >> np.uint64(32)) & np.uint64(0x80000000)).astype(np.uint32) \
            | np.uint32(0x7F800000) \
            | ((b64 >> np.uint64(29)) & np.uint64(0x7FFFFF)).astype(np.uint32)
    if not np.array_equal(back, v, equal_nan=True):
        raise GoldenError("amp: a float32 input holds values that are not float32")
    return bits


def _bool(x) -> Operand:
    return Operand("bool", np.asarray(x, bool).astype(np.uint8))


def _scaler_update(vals, params):
    """refcomp.amp.GradScaler(...).update(found_inf[i]) for every step"""
    found = np.asarray(vals["found_inf"]).reshape(-1)
    if found.size == 0:
        raise GoldenError("amp.scaler_update needs at least one step")
    s = GradScaler(init_scale=params["init_scale"], growth_factor=params["growth_factor"],
                   backoff_factor=params["backoff_factor"],
                   growth_interval=params["growth_interval"])
    scales, trackers = [], []
    for f in found:
        s.update(bool(f))
        scales.append(s.scale)
        trackers.append(s.get_growth_tracker())
    return {"scale": Operand("float32", f32_bits(np.array(scales))),
            "growth_tracker": int_operand(np.array(trackers, np.int64), "int32")}


def _unscale(vals, params):
    """refcomp.amp.GradScaler(init_scale=scale).unscale({"g": g})"""
    scale = np.asarray(vals["scale"], np.float64)
    if scale.shape != ():
        raise GoldenError(f"amp.unscale: scale must have shape (), got {scale.shape}")
    g = f32_bits(vals["g"]).view(F32)
    out, found = GradScaler(init_scale=float(scale)).unscale({"g": g})
    y = np.array(out["g"]).reshape(g.shape)         # a contiguous copy; keeps shape ()
    if y.dtype != F32:
        raise GoldenError(f"amp.unscale: unscaled gradient is {y.dtype}, expected float32")
    return {"y": Operand("float32", y.view(np.uint32).copy()), "found_inf": _bool(found)}


OPS = {"amp.scaler_update": _scaler_update, "amp.unscale": _unscale}
INPUTS = {"amp.scaler_update": ("found_inf",), "amp.unscale": ("g", "scale")}
OPTIONAL: dict = {}
