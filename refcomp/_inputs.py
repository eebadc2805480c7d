"""Turning user inputs into arrays without silent conversions (shared by every layer)."""

from __future__ import annotations

import numpy as np

__all__ = ["to_array", "check_bool"]

_EXACT_INT = 2 ** 53


_NONE = object()


def _first_bad(flat):
    """The first element that is not a number representable in a 64-bit NumPy dtype."""
    for v in flat:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                                  np.floating)):
            return v
        if isinstance(v, (int, np.integer)) and not -2 ** 63 <= int(v) < 2 ** 64:
            return v
    return _NONE


def to_array(x, what: str) -> np.ndarray:
    """``np.asarray(x)`` that refuses what NumPy would convert silently or badly.

    Python sequences mixing integers beyond 2**53 with other numbers would become float64
    (rounding the integers); object arrays have no numeric meaning.  Both raise, naming
    the offending value.
    """
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{what} is a bool ({x!r}); pass numbers")
    if isinstance(x, np.ndarray):
        arr = x
    else:
        arr = np.asarray(x)
        if isinstance(x, (list, tuple)) and arr.dtype.kind in "fO":
            flat = np.asarray(x, dtype=object).ravel()
            for v in flat:
                if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) \
                        and abs(int(v)) > _EXACT_INT and arr.dtype.kind == "f":
                    raise ValueError(f"{what}: the integer {int(v)} is in a list that NumPy "
                                     "turns into float64, which would round it; pass an "
                                     "int64 or uint64 array")
    if arr.dtype == object:
        bad = _first_bad(arr.ravel())
        detail = f" (element {bad!r})" if bad is not _NONE else " (empty)" if not arr.size \
            else ""
        raise TypeError(f"{what} has dtype object{detail}: pass float16/32/64 values or "
                        "integers that fit 64 bits")
    if arr.dtype.kind in "US":
        example = arr.ravel()[0].item() if arr.size else ""
        raise TypeError(f"{what} holds strings (e.g. {example!r}), not numbers")
    return arr


def check_bool(value, name: str) -> bool:
    """A flag argument: a real bool (not a string or number)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
