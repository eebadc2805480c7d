"""Learning-rate schedules that reproduce torch 2.13's ``torch.optim.lr_scheduler`` exactly.

Each scheduler drives the ``lr`` attribute of an optimizer-like object (a
:class:`refcomp.nn.optim.SGD` / ``Adam`` / ``AdamW``, or a bare :class:`LR` holder), as
torch's drive ``param_groups[0]["lr"]``.  The formulas are torch's, statement for statement,
in Python double: the *chainable* ``get_lr`` forms (each value computed from the current
``lr``, e.g. CosineAnnealingLR's ratio of cosines), the initial step in the constructor,
``_step_count`` / ``last_epoch`` bookkeeping, and SequentialLR's "undo and closed form at
a milestone" -- so every value equals torch's as a Python float, bit for bit.  Source:
torch/optim/lr_scheduler.py of torch 2.13.

Usage: construct (this sets the epoch-0 lr), then call :meth:`step` after each optimizer
step; :attr:`lr` / :meth:`get_last_lr` read the current value; :func:`lr_sequence` lists a
whole schedule.  One parameter group, fresh schedules only (no ``last_epoch`` resume).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter

__all__ = ["LR", "StepLR", "MultiStepLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR",
           "SequentialLR", "warmup_cosine", "lr_sequence"]


class LR:
    """A bare learning-rate holder: the optimizer stand-in schedules drive.

    Examples
    --------
    >>> holder = LR(0.1)
    >>> sched = StepLR(holder, step_size=2, gamma=0.5)
    >>> [sched.lr] + [(sched.step(), holder.lr)[1] for _ in range(4)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, lr: float):
        _real("lr", lr)
        self.lr = lr
        self.initial_lr = None

    def __repr__(self) -> str:
        return f"LR(lr={self.lr!r})"


def _real(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ValueError(f"{name} must be a real number, got {v!r}")
    return v


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


class _Scheduler:
    """torch's ``LRScheduler`` for one parameter group (``last_epoch=-1``)."""

    def __init__(self, optimizer):
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{type(optimizer).__name__} has no 'lr' attribute to schedule")
        self.optimizer = optimizer
        if getattr(optimizer, "initial_lr", None) is None:     # group.setdefault(...)
            optimizer.initial_lr = optimizer.lr
        self.base_lr = optimizer.initial_lr
        self.last_epoch = -1
        self._is_initial = False
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self) -> None:
        """Advance one epoch / iteration and write the new lr into the optimizer."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch=None) -> None:
        if epoch is None:
            self.last_epoch += 1
            value = self._get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_closed_form", None)
            value = closed() if closed is not None else self._get_lr()
        self.optimizer.lr = value
        self._last_lr = value

    @property
    def lr(self) -> float:
        """The most recent learning rate."""
        return self._last_lr

    def get_last_lr(self) -> list:
        """``[lr]``, as torch's list of one value per parameter group."""
        return [self._last_lr]


class StepLR(_Scheduler):
    """``lr * gamma`` every `step_size` steps (torch.optim.lr_scheduler.StepLR).

    Examples
    --------
    >>> lr_sequence(StepLR(LR(1.0), step_size=2, gamma=0.1), 4)
    [1.0, 1.0, 0.1, 0.1, 0.010000000000000002]
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = _positive_int("step_size", step_size)
        self.gamma = _real("gamma", gamma)
        super().__init__(optimizer)

    def _get_lr(self):
        lr = self.optimizer.lr
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma

    def _closed_form(self):
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class MultiStepLR(_Scheduler):
    """``lr * gamma**k`` at each milestone listed k times (torch MultiStepLR).

    Examples
    --------
    >>> lr_sequence(MultiStepLR(LR(1.0), milestones=[1, 3, 3], gamma=0.5), 4)
    [1.0, 0.5, 0.5, 0.125, 0.125]
    """

    def __init__(self, optimizer, milestones, gamma: float = 0.1):
        milestones = list(milestones)
        for m in milestones:
            if isinstance(m, bool) or not isinstance(m, int):
                raise ValueError(f"milestones must be integers, got {m!r}")
        self.milestones = Counter(milestones)
        self.gamma = _real("gamma", gamma)
        super().__init__(optimizer)

    def _get_lr(self):
        lr = self.optimizer.lr
        if self.last_epoch not in self.milestones:
            return lr
        return lr * self.gamma ** self.milestones[self.last_epoch]

    def _closed_form(self):
        milestones = sorted(self.milestones.elements())
        return self.base_lr * self.gamma ** bisect_right(milestones, self.last_epoch)


class CosineAnnealingLR(_Scheduler):
    """Cosine annealing from the base lr to `eta_min` over `T_max` steps, torch's recursive
    form ``eta_min + (1 + cos(pi t / T)) / (1 + cos(pi (t-1) / T)) * (lr - eta_min)``
    (torch CosineAnnealingLR; it continues periodically past `T_max`).

    Examples
    --------
    >>> [round(v, 6) for v in lr_sequence(CosineAnnealingLR(LR(1.0), T_max=4), 4)]
    [1.0, 0.853553, 0.5, 0.146447, 0.0]
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = _positive_int("T_max", T_max)
        self.eta_min = _real("eta_min", eta_min)
        super().__init__(optimizer)

    def _get_lr(self):
        lr, t, T, eta = self.optimizer.lr, self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return lr
        if self._step_count == 1 and t > 0:
            return eta + (self.base_lr - eta) * (1 + math.cos(t * math.pi / T)) / 2
        if (t - 1 - T) % (2 * T) == 0:
            return lr + (self.base_lr - eta) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) \
            * (lr - eta) + eta

    def _closed_form(self):
        return self.eta_min + (self.base_lr - self.eta_min) * \
            (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2


class LinearLR(_Scheduler):
    """Linear factor from `start_factor` to `end_factor` over `total_iters` steps (the
    usual warm-up), torch's recursive form (torch LinearLR).

    Examples
    --------
    >>> lr_sequence(LinearLR(LR(1.0), start_factor=0.25, total_iters=3), 4)
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5):
        if not 0 < _real("start_factor", start_factor) <= 1:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 "
                             f"and less or equal to 1, got start_factor={start_factor!r}")
        if not 0 <= _real("end_factor", end_factor) <= 1:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1, "
                             f"got end_factor={end_factor!r}")
        if isinstance(total_iters, bool) or not isinstance(total_iters, int) \
                or total_iters < 0:
            raise ValueError(f"total_iters must be an integer >= 0, got {total_iters!r}")
        self.start_factor, self.end_factor, self.total_iters = (start_factor, end_factor,
                                                                total_iters)
        super().__init__(optimizer)

    def _get_lr(self):
        lr, t = self.optimizer.lr, self.last_epoch
        sf, ef = self.start_factor, self.end_factor
        if t == 0:
            return lr * sf
        if self._is_initial or t > self.total_iters:
            return lr
        return lr * (1.0 + (ef - sf) / (self.total_iters * sf + (t - 1) * (ef - sf)))

    def _closed_form(self):
        return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor)
                               * min(self.total_iters, self.last_epoch) / self.total_iters)


class OneCycleLR(_Scheduler):
    """The 1cycle policy (torch OneCycleLR): warm up from ``max_lr / div_factor`` to
    `max_lr` over ``pct_start`` of `total_steps`, then anneal to
    ``initial_lr / final_div_factor`` (``three_phase``: back to the initial lr first);
    ``anneal_strategy`` "cos" or "linear".  With ``cycle_momentum`` the optimizer's
    ``momentum`` (or ``betas[0]``) cycles inversely between `max_momentum` and
    `base_momentum`.  Stepping past `total_steps` raises ValueError, as torch.

    Examples
    --------
    >>> s = OneCycleLR(LR(0.0), max_lr=1.0, total_steps=4, cycle_momentum=False)
    >>> lr_sequence(s, 3)                        # torch 2.13 gives the same floats
    [0.040000000000000036, 0.811745653949763, 0.28306099820869923, 4e-06]
    """

    def __init__(self, optimizer, max_lr: float, total_steps: int, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float = 0.85, max_momentum: float = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False):
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) \
                or total_steps <= 0:
            raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        self.total_steps = total_steps
        n = total_steps
        if three_phase:
            self._phases = [(float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum",
                             "base_momentum"),
                            (float(2 * pct_start * n) - 2, "max_lr", "initial_lr",
                             "base_momentum", "max_momentum"),
                            (n - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            self._phases = [(float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum",
                             "base_momentum"),
                            (n - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        if not isinstance(pct_start, float) or pct_start < 0 or pct_start > 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError("anneal_strategy must be one of 'cos' or 'linear', instead got "
                             f"{anneal_strategy}")
        self.anneal_strategy = anneal_strategy
        optimizer.initial_lr = _real("max_lr", max_lr) / div_factor
        self._group = {"max_lr": max_lr, "min_lr": optimizer.initial_lr / final_div_factor}
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = hasattr(optimizer, "betas")
            if not self.use_beta1 and not hasattr(optimizer, "momentum"):
                raise ValueError("optimizer must support momentum or beta1 with "
                                 "`cycle_momentum` option enabled")
            self._set_momentum(optimizer, max_momentum)
            self._group.update(max_momentum=max_momentum, base_momentum=base_momentum)
        super().__init__(optimizer)

    def _set_momentum(self, optimizer, m):
        if self.use_beta1:
            optimizer.betas = (m, *optimizer.betas[1:])
        else:
            optimizer.momentum = m

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            cos_out = math.cos(math.pi * pct) + 1
            return end + (start - end) / 2.0 * cos_out
        return (end - start) * pct + start

    def _get_lr(self):
        group = dict(self._group, initial_lr=self.optimizer.initial_lr)
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(f"Tried to step {step_num} times. The specified number of total "
                             f"steps is {self.total_steps}")
        start_step = 0.0
        for i, (end_step, lr0, lr1, m0, m1) in enumerate(self._phases):
            if step_num <= end_step or i == len(self._phases) - 1:
                pct = (step_num - start_step) / (end_step - start_step)
                lr = self._anneal(group[lr0], group[lr1], pct)
                if self.cycle_momentum:
                    self._set_momentum(self.optimizer, self._anneal(group[m0], group[m1], pct))
                return lr
            start_step = end_step


class SequentialLR:
    """Run `schedulers` one after another, switching at `milestones` (torch SequentialLR:
    each switch restarts the next scheduler with its closed form at epoch 0).

    Examples
    --------
    >>> opt = LR(1.0)
    >>> warm = LinearLR(opt, start_factor=0.5, total_iters=2)
    >>> decay = StepLR(opt, step_size=1, gamma=0.5)
    >>> lr_sequence(SequentialLR(opt, [warm, decay], milestones=[2]), 4)
    [0.5, 0.75, 1.0, 0.5, 0.25]
    """

    def __init__(self, optimizer, schedulers, milestones):
        schedulers, milestones = list(schedulers), list(milestones)
        if not schedulers:
            raise ValueError("SequentialLR expects at least one scheduler, but got no "
                             "scheduler.")
        for i, s in enumerate(schedulers):
            if getattr(s, "optimizer", None) is not optimizer:
                raise ValueError(f"SequentialLR expects all schedulers to belong to the same "
                                 f"optimizer, but got scheduler at index {i} with "
                                 f"{getattr(s, 'optimizer', None)!r}")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError("Sequential Schedulers expects number of schedulers provided to "
                             "be one more than the number of milestone points, but got "
                             f"{len(schedulers)} schedulers and {len(milestones)} milestones")
        self._schedulers, self._milestones = schedulers, milestones
        self.last_epoch = 0
        self.optimizer = optimizer
        optimizer.lr = optimizer.initial_lr
        self._undo(self)
        idx = bisect_right(milestones, 0)
        schedulers[idx]._initial_step()
        self._last_lr = schedulers[idx].lr

    def _undo(self, sched):
        if hasattr(sched, "_schedulers"):
            for s in sched._schedulers:
                self._undo(s)
        else:
            sched.last_epoch -= 1

    def step(self) -> None:
        """Advance one step: the active scheduler steps, or restarts at its milestone."""
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.lr

    @property
    def lr(self) -> float:
        """The most recent learning rate."""
        return self._last_lr

    def get_last_lr(self) -> list:
        """``[lr]``, as torch's list of one value per parameter group."""
        return [self._last_lr]


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int,
                  start_factor: float = 1e-3, eta_min: float = 0.0) -> SequentialLR:
    """Linear warm-up then cosine decay: ``SequentialLR([LinearLR(start_factor, 1.0,
    warmup_steps), CosineAnnealingLR(total_steps - warmup_steps, eta_min)],
    milestones=[warmup_steps])``, built exactly as one builds it in torch.

    Examples
    --------
    >>> seq = lr_sequence(warmup_cosine(LR(1.0), 2, 6, start_factor=0.5), 6)
    >>> [round(v, 4) for v in seq]
    [0.5, 0.75, 1.0, 0.8536, 0.5, 0.1464, 0.0]
    """
    _positive_int("warmup_steps", warmup_steps)
    if _positive_int("total_steps", total_steps) <= warmup_steps:
        raise ValueError(f"total_steps={total_steps} must exceed warmup_steps={warmup_steps}")
    warm = LinearLR(optimizer, start_factor, 1.0, warmup_steps)
    cos = CosineAnnealingLR(optimizer, total_steps - warmup_steps, eta_min)
    return SequentialLR(optimizer, [warm, cos], [warmup_steps])


def lr_sequence(scheduler, steps: int) -> list:
    """The current lr followed by the lr after each of `steps` calls of ``step()``.

    Examples
    --------
    >>> lr_sequence(StepLR(LR(0.5), step_size=1, gamma=0.5), 2)
    [0.5, 0.25, 0.125]
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    out = [scheduler.lr]
    for _ in range(steps):
        scheduler.step()
        out.append(scheduler.lr)
    return out
