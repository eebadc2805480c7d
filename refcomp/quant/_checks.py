"""Input checks and the float32 narrowing shared by the quantization modules (errors name
the tensor, the index and the bad value, STYLE rule 7)."""

from __future__ import annotations

import numpy as np

from ..rounding import cast

__all__ = ["finite_values", "to_f32"]


def finite_values(x, fmt, what, name, why=""):
    """x's values rounded to `fmt` to nearest-even (as ``tensor.to(dtype)`` does), as a
    float64 array; TypeError for non-numeric data, ValueError naming the first element
    that is not finite in `fmt` (`why` is appended to the message)."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError(f"{name}: {what} must be numeric, got dtype {a.dtype}")
    with np.errstate(over="ignore"):
        v = np.asarray(cast(a.astype(np.float64), fmt), np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        i = tuple(int(j) for j in np.unravel_index(int(np.flatnonzero(bad)[0]), v.shape))
        raise ValueError(f"{name}: {what}{list(i)} = {a[i].item()!r} is not finite in "
                         f"{fmt}{why}")
    return v


def to_f32(v) -> np.ndarray:
    """Values rounded to float32 to nearest-even by the rounding core (C++ ``float(double)``
    narrowing), as a float32 array (a float32 scalar for a scalar)."""
    return np.asarray(cast(np.asarray(v, np.float64), "float32"), np.float32)[()]
