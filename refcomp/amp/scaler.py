"""Dynamic loss scaling: torch.amp.GradScaler bit for bit, and named extensions.

:class:`GradScaler` mirrors ``torch.amp.GradScaler`` of torch 2.13: the Python part from
``torch/amp/grad_scaler.py`` (``unscale_``, ``update``, ``state_dict``), the arithmetic
from the kernels ``_amp_update_scale_`` and ``_amp_foreach_non_finite_check_and_unscale_``
(``aten/src/ATen/native/cpu/AmpGradScalerKernels.cpp``; the CUDA kernels in
``aten/src/ATen/native/cuda/AmpKernels.cu`` apply the same rules):

* the scale is a float32 value (torch: a 0-d float32 tensor, ``torch.full((), init_scale)``),
  the growth tracker an int32 count of consecutive steps without inf / NaN;
* ``update(found_inf)``: on inf / NaN ``scale = rnd_f32(scale * backoff_factor)`` and the
  tracker is reset; otherwise the tracker counts up and, when it reaches
  ``growth_interval``, ``new = rnd_f32(scale * growth_factor)`` replaces the scale only if
  it is finite ("do not grow the scale past fp32 bounds to inf") and the tracker is reset.
  The kernel multiplies the float scale by the double factor in double and stores the
  float: ``rnd_f32(rnd_f64(scale * factor))``, which is what this module computes;
* ``unscale(grads)``: ``inv = rnd_f32(rnd_f64(1 / scale))`` (``scale.double().reciprocal()
  .float()``, "FP32 division can be imprecise for certain compile options"), every
  gradient ``rnd_f32(g * inv)`` (skipped when ``inv == 1``); any inf / NaN sets
  ``found_inf``, and the gradients are unscaled all the same.

The engine's training step (:func:`refcomp.nn.train_step`) reads ``scaler.scale`` and calls
``scaler.update(found_inf)`` after every step, so ``nn.train_step(..., scaler=GradScaler())``
trains with torch's dynamic loss scaling.

:class:`refcomp.amp.scaler_ext.ExtendedGradScaler` adds what torch does not have -- ``min_scale`` / ``max_scale``
clamps, hysteresis (Megatron-LM / DeepSpeed) and per-parameter-group skipping -- each
named as not-torch and citing the rule it mirrors; with its defaults it is
:class:`GradScaler`.

>>> from refcomp.amp import GradScaler
>>> s = GradScaler(init_scale=2.0**16, growth_interval=2)
>>> s.update(True); s.scale
32768.0
>>> s.update(False); s.update(False); s.scale
65536.0
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..nn.policy import round_to

__all__ = ["GradScaler"]

_INT32_MAX = 2**31 - 1
_TORCH_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval",
               "_growth_tracker")


def _f32(x: float) -> float:
    """x (a float64 value) rounded to nearest-even float32, overflow to inf, as a float."""
    return float(round_to(np.float64(x), "float32"))


def _real(value, name, who) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {name}={value!r} must be a real number")
    return float(value)


def _check_scale(value, name="init_scale", who="GradScaler") -> float:
    """A positive scale that stays finite in float32; returns it rounded to float32."""
    v = _real(value, name, who)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{who}: {name}={value!r} must be positive and finite")
    r = _f32(v)
    if not math.isfinite(r) or r == 0:
        raise ValueError(f"{who}: {name}={value!r} is {r} in float32 (the scale's format); "
                         f"it must be a positive finite float32 value")
    return r


def _check_growth(value, who="GradScaler") -> float:
    v = _real(value, "growth_factor", who)
    if not (math.isfinite(v) and v > 1.0):
        raise ValueError(f"{who}: growth_factor={value!r} must be finite and > 1 "
                         f"(torch: 'The growth factor must be > 1.0.')")
    return v


def _check_backoff(value, who="GradScaler") -> float:
    v = _real(value, "backoff_factor", who)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{who}: backoff_factor={value!r} must lie in (0, 1) "
                         f"(torch: 'The backoff factor must be < 1.0.')")
    return v


def _check_count(value, name, who, low=1, high=_INT32_MAX) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{who}: {name}={value!r} must be an integer")
    v = int(value)
    if not low <= v <= high:
        raise ValueError(f"{who}: {name}={value!r} must lie in [{low}, {high}] "
                         f"(the growth tracker is an int32)")
    return v


def _check_found(found_inf, who) -> bool:
    if not isinstance(found_inf, (bool, np.bool_)):
        raise TypeError(f"{who}.update: found_inf={found_inf!r} must be a bool")
    return bool(found_inf)


class GradScaler:
    """Dynamic loss scaling with the exact semantics of ``torch.amp.GradScaler`` (torch 2.13).

    Parameters
    ----------
    init_scale : float
        Initial scale, rounded to float32 as ``torch.full((), init_scale,
        dtype=torch.float32)`` does; positive, and finite in float32.
    growth_factor : float
        Multiplier after ``growth_interval`` consecutive steps without inf / NaN; > 1.
    backoff_factor : float
        Multiplier after a step with inf / NaN; in (0, 1).
    growth_interval : int
        Consecutive unskipped steps before growth; in ``[1, 2**31 - 1]`` (int32 tracker).
    enabled : bool
        False: torch's disabled scaler -- ``scale`` is 1.0, ``update`` and
        ``load_state_dict`` do nothing, ``unscale`` returns the gradients unchanged and
        unchecked, ``state_dict`` is ``{}``.

    Attributes
    ----------
    scale : float
        The current scale (a float32 value): what the engine multiplies the loss gradient
        by.  (torch's ``scale(outputs)`` is a method that multiplies tensors; here the loss
        multiplication is the engine's, :func:`refcomp.nn.train_step`.)

    Notes
    -----
    Rules: module docstring.  Validation is stricter than torch's, which only asserts
    ``growth_factor > 1`` and ``backoff_factor < 1`` (AssertionError); here a bad value
    raises ValueError naming it.

    Examples
    --------
    >>> import numpy as np
    >>> s = GradScaler(init_scale=3.0)
    >>> g, found = s.unscale({"w": np.array([3.0, 6.0], np.float32)})
    >>> g["w"], found
    (array([1., 2.], dtype=float32), False)
    >>> s.update(found); s.get_growth_tracker()
    1
    """

    _who = "GradScaler"

    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        if not isinstance(enabled, (bool, np.bool_)):
            raise TypeError(f"{self._who}: enabled={enabled!r} must be a bool")
        self._enabled = bool(enabled)
        who = self._who
        self._scale = _check_scale(init_scale, who=who)
        self._growth_factor = _check_growth(growth_factor, who)
        self._backoff_factor = _check_backoff(backoff_factor, who)
        self._growth_interval = _check_count(growth_interval, "growth_interval", who)
        self._growth_tracker = 0

    # --- the engine-facing interface -----------------------------------------------------
    @property
    def scale(self) -> float:
        """The current scale as a Python float (a float32 value); 1.0 when disabled."""
        return self._scale if self._enabled else 1.0

    def update(self, found_inf: bool, *, new_scale=None) -> None:
        """Update the scale after a step (torch ``GradScaler.update`` /
        ``_amp_update_scale_``).

        Parameters
        ----------
        found_inf : bool
            Whether any gradient of the step was inf / NaN (the step was skipped).
        new_scale : float, optional
            torch's ``update(new_scale)``: the scale becomes ``rnd_f32(new_scale)``,
            ``found_inf`` is ignored and the growth tracker is left as it is.

        Examples
        --------
        >>> s = GradScaler(init_scale=8.0, growth_interval=1)
        >>> s.update(False); s.scale
        16.0
        >>> s.update(False, new_scale=0.1); s.scale
        0.10000000149011612
        """
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = _f32(_real(new_scale, "new_scale", self._who))
            return
        self._update(_check_found(found_inf, self._who))

    def _update(self, found: bool) -> None:
        # AmpGradScalerKernels.cpp _amp_update_scale_cpu_kernel: float * double in double,
        # stored as float
        if found:
            self._scale = _f32(self._scale * self._backoff_factor)
            self._growth_tracker = 0
            return
        successful = self._growth_tracker + 1
        if successful == self._growth_interval:
            new = _f32(self._scale * self._growth_factor)
            if math.isfinite(new):                  # "do not grow ... past fp32 bounds"
                self._scale = new
            self._growth_tracker = 0
        else:
            self._growth_tracker = successful

    # --- torch-like methods --------------------------------------------------------------
    def get_scale(self) -> float:
        """The current scale (torch ``get_scale``: 1.0 when disabled)."""
        return self.scale

    def get_growth_tracker(self) -> int:
        """Consecutive steps without inf / NaN since the last growth or backoff (torch's
        private ``_get_growth_tracker``; 0 when disabled)."""
        return self._growth_tracker if self._enabled else 0

    def get_growth_factor(self) -> float:
        """The growth factor."""
        return self._growth_factor

    def get_backoff_factor(self) -> float:
        """The backoff factor."""
        return self._backoff_factor

    def get_growth_interval(self) -> int:
        """The growth interval."""
        return self._growth_interval

    def is_enabled(self) -> bool:
        """Whether scaling is enabled."""
        return self._enabled

    def inv_scale(self) -> float:
        """``rnd_f32(rnd_f64(1 / scale))``: torch's ``self._scale.double().reciprocal()
        .float()`` (a float32 value as a Python float; 1.0 when disabled).

        Examples
        --------
        >>> GradScaler(init_scale=3.0).inv_scale()
        0.3333333432674408
        """
        if not self._enabled:
            return 1.0
        with np.errstate(divide="ignore"):          # scale 0 (after many backoffs): inf
            return _f32(np.float64(1.0) / np.float64(self._scale))

    def unscale(self, grads: dict) -> tuple[dict, bool]:
        """Unscale gradients (torch ``unscale_`` / ``_amp_foreach_non_finite_check_and_
        unscale_``), out of place.

        Parameters
        ----------
        grads : dict of str -> ndarray
            float32 arrays (torch's float32 ``.grad``); float64 arrays are float64 grads
            (the kernel's ``double * float`` in double); ``None`` entries are skipped as
            torch skips ``grad is None``.

        Returns
        -------
        unscaled : dict of str -> ndarray
            ``rnd(g * inv)`` in the gradient's dtype (the exact product, rounded once),
            ``g`` itself when ``inv == 1``; non-finite gradients are unscaled too.
        found_inf : bool
            Whether any element of any gradient is inf or NaN (always False when disabled:
            torch's disabled ``unscale_`` returns without looking).

        Raises
        ------
        ValueError
            A float16 gradient: torch raises "Attempting to unscale FP16 gradients." (fp16
            gradients would overflow or lose the small values; keep fp32 master gradients).
        TypeError
            A gradient that is not a float32 / float64 array.

        Examples
        --------
        >>> import numpy as np
        >>> s = GradScaler(init_scale=2.0**16)
        >>> g, found = s.unscale({"w": np.array([65536.0, np.inf], np.float32)})
        >>> g["w"], found
        (array([ 1., inf], dtype=float32), True)
        """
        out = {}
        for name, g in grads.items():
            if g is None:
                out[name] = None
                continue
            if not isinstance(g, np.ndarray):
                raise TypeError(f"{self._who}.unscale: gradient {name!r} is a "
                                f"{type(g).__name__}, expected a float32 ndarray")
            if not self._enabled:                   # torch: unscale_ returns at once
                out[name] = g.copy()
                continue
            if g.dtype == np.float16:
                raise ValueError(f"{self._who}.unscale: gradient {name!r} is float16: "
                                 f"Attempting to unscale FP16 gradients. (torch refuses "
                                 f"too; unscale fp32 master gradients)")
            if g.dtype not in (np.float32, np.float64):
                raise TypeError(f"{self._who}.unscale: gradient {name!r} has dtype "
                                f"{g.dtype}, expected float32 (or float64)")
            out[name] = g
        if not self._enabled:
            return out, False
        inv = self.inv_scale()
        found = False
        fmt = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
        for name, g in out.items():
            if g is None:
                continue
            if not bool(np.all(np.isfinite(g))):
                found = True
            if inv == 1.0:
                out[name] = g.copy()
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    # float32 g * float32 inv is exact in float64: one rounding to float32;
                    # a float64 g: the kernel's double product, correctly rounded
                    prod = np.multiply(g, inv, dtype=np.float64)
                out[name] = round_to(prod, fmt[g.dtype], dtype=g.dtype)
        return out, found

    # --- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """torch's layout: ``scale``, ``growth_factor``, ``backoff_factor``,
        ``growth_interval``, ``_growth_tracker`` (``{}`` when disabled), loadable by
        ``torch.amp.GradScaler.load_state_dict``.

        Examples
        --------
        >>> GradScaler(init_scale=0.1).state_dict()["scale"]
        0.10000000149011612
        """
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state saved by :meth:`state_dict` or by ``torch.amp.GradScaler``
        (a no-op when disabled, as torch's).  The scale is rounded to float32, as torch's
        lazily created scale tensor rounds it; every value is validated as in the
        constructor, and the growth tracker must lie in ``[0, growth_interval)``.

        Raises
        ------
        ValueError
            An empty dict (torch: "The source state dict is empty, possibly because it was
            saved from a disabled instance of GradScaler."), missing keys, or a bad value.
        """
        if not self._enabled:
            return
        who = f"{self._who}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{who}: expected a dict, got {type(state_dict).__name__}")
        if len(state_dict) == 0:
            raise ValueError(f"{who}: the state dict is empty, possibly because it was "
                             f"saved from a disabled GradScaler")
        missing = [k for k in _TORCH_KEYS if k not in state_dict]
        if missing:
            raise ValueError(f"{who}: missing key(s) {missing} (have "
                             f"{sorted(state_dict)})")
        scale = _check_scale(state_dict["scale"], "scale", who)
        growth = _check_growth(state_dict["growth_factor"], who)
        backoff = _check_backoff(state_dict["backoff_factor"], who)
        interval = _check_count(state_dict["growth_interval"], "growth_interval", who)
        tracker = _check_count(state_dict["_growth_tracker"], "_growth_tracker", who,
                               low=0, high=interval - 1)
        self._scale, self._growth_factor, self._backoff_factor = scale, growth, backoff
        self._growth_interval, self._growth_tracker = interval, tracker

    def __repr__(self):
        return (f"{type(self).__name__}(scale={self.scale!r}, growth_tracker="
                f"{self.get_growth_tracker()}, enabled={self._enabled})")
