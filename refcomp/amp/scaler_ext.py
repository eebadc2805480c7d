"""Loss-scaling extensions that are NOT in torch: ``min_scale`` / ``max_scale`` clamps,
hysteresis (Megatron-LM / DeepSpeed) and per-parameter-group skipping, each citing the
rule it mirrors; with its defaults :class:`ExtendedGradScaler` is
:class:`refcomp.amp.scaler.GradScaler` step for step.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .scaler import GradScaler, _f32, _check_scale, _check_count

__all__ = ["ExtendedGradScaler", "skip_groups"]


class ExtendedGradScaler(GradScaler):
    """:class:`GradScaler` with extensions that are NOT in torch: scale clamps,
    hysteresis, per-parameter-group skipping.  With the defaults it is
    :class:`GradScaler` step for step.

    Parameters
    ----------
    init_scale, growth_factor, backoff_factor, growth_interval, enabled
        As :class:`GradScaler`.
    min_scale : float, optional
        NOT torch.  After a backoff the scale is ``max(scale, min_scale)`` (rounded to
        float32 at construction): Megatron-LM ``DynamicGradScaler.update``,
        ``torch.max(self._scale * self.backoff_factor, self.min_scale)``
        (``megatron/core/optimizer/grad_scaler.py``, NVIDIA/Megatron-LM commit 00caa53);
        DeepSpeed ``max(self.cur_scale / self.scale_factor, self.min_scale)``.
        Must not exceed ``init_scale``.
    max_scale : float, optional
        NOT torch.  After a growth the scale is ``min(scale, max_scale)``: apex amp
        ``LossScaler.unscale_and_update``, ``min(self._max_loss_scale, self._loss_scale
        * 2.)`` (``apex/amp/scaler.py``, NVIDIA/apex commit 03b0eeb, default 2**24).
        Must not be below ``init_scale``.
    hysteresis : int
        NOT torch.  Megatron-LM ``DynamicGradScaler`` (same file): a hysteresis tracker
        starts at ``hysteresis``; each inf / NaN step resets the growth tracker and
        decrements it, and the scale backs off only when it is ``<= 0``; a growth refills
        it.  So after the tolerance is spent every further overflow backs off until the
        next growth (the tracker is not refilled by a backoff, nor by a clean step).
        ``hysteresis=1`` is torch's rule.
    consecutive_hysteresis : bool
        NOT torch.  DeepSpeed ``DynamicLossScaler.update_scale`` with
        ``consecutive_hysteresis=True`` (``deepspeed/runtime/fp16/loss_scaler.py``,
        deepspeedai/DeepSpeed commit 18fd4c9): every step without inf / NaN refills the
        hysteresis tracker, so only ``hysteresis`` *consecutive* overflows back off.

    Notes
    -----
    The scale arithmetic stays torch's (``rnd_f32(scale * factor)`` with the factor a
    double, finite-only growth).  Megatron keeps its factors as float32 tensors and
    multiplies in float32; the two agree whenever the factors are float32 values (their
    exact product is a double, so one rounding either way) -- 2 and 0.5 included -- and
    can differ by one float32 ulp for factors such as 0.7.  Megatron also lets the scale
    grow to inf, which the guard here (torch's) prevents.

    Per-group skipping (:meth:`unscale_groups`, :func:`skip_groups`): torch's
    ``GradScaler.step`` skips the whole ``optimizer.step()`` when any gradient of the
    optimizer is inf / NaN; here only the groups with a non-finite gradient are skipped
    and the others step.  This is what torch does with one optimizer per group and one
    scaler ("Working with multiple models, losses, and optimizers", torch AMP examples):
    each ``scaler.step(opt)`` checks its own gradients, and ``update`` backs off if any
    optimizer found inf / NaN -- so call ``update(any(found.values()))``.

    Examples
    --------
    >>> s = ExtendedGradScaler(init_scale=1024.0, hysteresis=2, min_scale=256.0)
    >>> s.update(True); s.scale          # the first overflow is tolerated
    1024.0
    >>> s.update(True); s.scale
    512.0
    >>> s.update(True); s.update(True); s.scale   # clamped at min_scale
    256.0
    """

    _who = "ExtendedGradScaler"
    _EXTRA_KEYS = ("min_scale", "max_scale", "hysteresis", "consecutive_hysteresis",
                   "_hysteresis_tracker")

    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True, *, min_scale=None, max_scale=None,
                 hysteresis=1, consecutive_hysteresis=False):
        super().__init__(init_scale, growth_factor, backoff_factor, growth_interval, enabled)
        who = self._who
        self._min_scale = None if min_scale is None else _check_scale(min_scale,
                                                                      "min_scale", who)
        self._max_scale = None if max_scale is None else _check_scale(max_scale,
                                                                      "max_scale", who)
        self._check_bounds(self._scale, self._min_scale, self._max_scale, who)
        self._hysteresis = _check_count(hysteresis, "hysteresis", who)
        if not isinstance(consecutive_hysteresis, (bool, np.bool_)):
            raise TypeError(f"{who}: consecutive_hysteresis={consecutive_hysteresis!r} "
                            f"must be a bool")
        self._consecutive = bool(consecutive_hysteresis)
        self._hysteresis_tracker = self._hysteresis

    @staticmethod
    def _check_bounds(scale, lo, hi, who):
        if lo is not None and scale < lo:
            raise ValueError(f"{who}: scale {scale!r} is below min_scale={lo!r}")
        if hi is not None and scale > hi:
            raise ValueError(f"{who}: scale {scale!r} is above max_scale={hi!r}")

    def get_hysteresis_tracker(self) -> int:
        """Overflows still tolerated before the next backoff (Megatron's
        ``_hysteresis_tracker``; values ``<= 0`` mean every overflow backs off)."""
        return self._hysteresis_tracker

    def _update(self, found: bool) -> None:
        # megatron/core/optimizer/grad_scaler.py DynamicGradScaler.update, with torch's
        # kernel arithmetic for the factors and the clamps of the class docstring
        if found:
            self._growth_tracker = 0
            self._hysteresis_tracker -= 1
            if self._hysteresis_tracker <= 0:
                self._scale = _f32(self._scale * self._backoff_factor)
                if self._min_scale is not None:
                    self._scale = max(self._scale, self._min_scale)
            return
        if self._consecutive:                       # DeepSpeed consecutive_hysteresis
            self._hysteresis_tracker = self._hysteresis
        successful = self._growth_tracker + 1
        if successful == self._growth_interval:
            new = _f32(self._scale * self._growth_factor)
            if math.isfinite(new):
                self._scale = new
            if self._max_scale is not None:
                self._scale = min(self._scale, self._max_scale)
            self._growth_tracker = 0
            self._hysteresis_tracker = self._hysteresis
        else:
            self._growth_tracker = successful

    def unscale_groups(self, grads: dict, groups: dict) -> tuple[dict, dict]:
        """NOT torch: unscale `grads` and report inf / NaN per parameter group.

        Parameters
        ----------
        grads : dict of str -> ndarray
            As :meth:`GradScaler.unscale`.
        groups : dict of str -> list of str
            Group name -> the parameter names in it; every gradient in exactly one group.

        Returns
        -------
        unscaled : dict
            As :meth:`GradScaler.unscale`.
        found : dict of str -> bool
            Per group, whether any of its gradients is inf / NaN.

        Examples
        --------
        >>> import numpy as np
        >>> s = ExtendedGradScaler(init_scale=2.0)
        >>> g = {"a": np.array([2.0], np.float32), "b": np.array([np.nan], np.float32)}
        >>> u, found = s.unscale_groups(g, {"enc": ["a"], "dec": ["b"]})
        >>> found
        {'enc': False, 'dec': True}
        >>> skip_groups(u, {"enc": ["a"], "dec": ["b"]}, found)
        {'a': array([1.], dtype=float32), 'b': None}
        """
        owner = _group_owner(grads, groups, f"{self._who}.unscale_groups")
        out = {}
        found = {}
        for gname, names in groups.items():
            part, f = self.unscale({n: grads[n] for n in names if n in grads})
            out.update(part)
            found[gname] = f
        assert set(out) == set(owner)
        return {k: out[k] for k in grads}, found

    def state_dict(self) -> dict:
        """torch's five keys plus ``min_scale``, ``max_scale``, ``hysteresis``,
        ``consecutive_hysteresis``, ``_hysteresis_tracker`` (torch's
        ``load_state_dict`` reads its five keys and ignores the rest)."""
        d = super().state_dict()
        if d:
            d.update(min_scale=self._min_scale, max_scale=self._max_scale,
                     hysteresis=self._hysteresis,
                     consecutive_hysteresis=self._consecutive,
                     _hysteresis_tracker=self._hysteresis_tracker)
        return d

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state of :meth:`state_dict` or of torch's GradScaler (the extension
        settings then stay as they are and the hysteresis tracker is refilled)."""
        if not self._enabled:
            return
        who = f"{self._who}.load_state_dict"
        saved = (self._scale, self._growth_factor, self._backoff_factor,
                 self._growth_interval, self._growth_tracker)
        super().load_state_dict(state_dict)
        try:
            lo = state_dict.get("min_scale", self._min_scale)
            hi = state_dict.get("max_scale", self._max_scale)
            lo = None if lo is None else _check_scale(lo, "min_scale", who)
            hi = None if hi is None else _check_scale(hi, "max_scale", who)
            self._check_bounds(self._scale, lo, hi, who)
            hyst = _check_count(state_dict.get("hysteresis", self._hysteresis),
                                "hysteresis", who)
            cons = state_dict.get("consecutive_hysteresis", self._consecutive)
            if not isinstance(cons, (bool, np.bool_)):
                raise TypeError(f"{who}: consecutive_hysteresis={cons!r} must be a bool")
            tracker = state_dict.get("_hysteresis_tracker", hyst)
            if isinstance(tracker, (bool, np.bool_)) or not isinstance(tracker,
                                                                       numbers.Integral) \
                    or tracker > hyst:
                raise ValueError(f"{who}: _hysteresis_tracker={tracker!r} must be an "
                                 f"integer <= hysteresis={hyst}")
        except (TypeError, ValueError):
            (self._scale, self._growth_factor, self._backoff_factor,
             self._growth_interval, self._growth_tracker) = saved
            raise
        self._min_scale, self._max_scale, self._hysteresis = lo, hi, hyst
        self._consecutive, self._hysteresis_tracker = bool(cons), int(tracker)


def _group_owner(grads, groups, who) -> dict:
    if not isinstance(groups, dict):
        raise TypeError(f"{who}: groups must be a dict name -> list of parameter names, "
                        f"got {type(groups).__name__}")
    owner = {}
    for gname, names in groups.items():
        for n in names:
            if n in owner:
                raise ValueError(f"{who}: parameter {n!r} is in groups {owner[n]!r} and "
                                 f"{gname!r}")
            owner[n] = gname
    stray = [k for k in grads if k not in owner]
    if stray:
        raise ValueError(f"{who}: gradients {stray} belong to no group")
    return {k: owner[k] for k in grads}


def skip_groups(grads: dict, groups: dict, found: dict) -> dict:
    """NOT torch: `grads` with ``None`` for every parameter of a group whose ``found`` is
    True, so that ``optimizer.step(params, skip_groups(...))`` (:mod:`refcomp.nn.optim`,
    which leaves parameters without a gradient, and their state, untouched) steps only
    the finite groups.  See :class:`ExtendedGradScaler` for how this differs from torch.

    Examples
    --------
    >>> skip_groups({"a": 1.0, "b": 2.0}, {"g0": ["a"], "g1": ["b"]}, {"g0": True, "g1": False})
    {'a': None, 'b': 2.0}
    """
    owner = _group_owner(grads, groups, "skip_groups")
    missing = [g for g in groups if g not in found]
    if missing:
        raise ValueError(f"skip_groups: no found_inf for groups {missing}")
    return {k: None if found[owner[k]] else g for k, g in grads.items()}
