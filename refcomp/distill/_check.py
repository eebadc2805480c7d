"""Argument checks of the distillation losses: errors name the loss and the bad value
(STYLE rule 7)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_temperature", "check_alpha", "check_reduction", "check_positive"]


def _real(v) -> bool:
    """A real scalar: a Python int / float (not bool) or a NumPy integer / float scalar."""
    if isinstance(v, (bool, np.bool_)):
        return False
    return isinstance(v, (int, float, np.integer, np.floating))


def check_positive(value, name, what) -> float:
    """value as a float; ValueError naming it unless it is a finite real number > 0."""
    if not _real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name}: {what}={value!r} must be a finite number > 0")
    return float(value)


def check_temperature(value, name) -> float:
    """The distillation temperature T: a finite real number > 0."""
    return check_positive(value, name, "temperature")


def check_alpha(value, name) -> float:
    """The distillation weight alpha: a real number in [0, 1]."""
    if not _real(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: alpha={value!r} must be a number in [0, 1]")
    return float(value)


def check_reduction(value, name, allowed) -> str:
    """One of the allowed reduction names."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: reduction={value!r} must be one of {', '.join(allowed)}")
    return value
