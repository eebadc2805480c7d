"""Argument checks of the NN engine: errors name the layer and the tensor (STYLE rule 7)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_array", "check_shape", "values"]


def check_array(x, layer, tensor, ndim=None, min_ndim=None, nan_ok=False,
                keep32=False) -> np.ndarray:
    """x as a float64 array (a float32 array stays float32 with keep32: the layers of the
    float32 fast path); TypeError for non-real data, ValueError for a wrong rank or
    (unless nan_ok) a NaN, each naming the layer and the tensor."""
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating)
                                 or np.issubdtype(a.dtype, np.integer)
                                 or a.dtype == np.bool_):
        raise TypeError(f"{layer}: {tensor} must hold real numbers, got dtype {a.dtype}")
    if not (keep32 and a.dtype == np.float32):
        a = a.astype(np.float64, copy=False)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{layer}: {tensor} must have {ndim} dimensions, got shape {a.shape}")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(f"{layer}: {tensor} must have at least {min_ndim} dimension(s), got "
                         f"shape {a.shape}")
    if not nan_ok and np.isnan(a).any():
        idx = tuple(int(i) for i in np.argwhere(np.isnan(a))[0])
        raise ValueError(f"{layer}: {tensor} contains NaN (first at index {idx})")
    return a


def values(x) -> np.ndarray:
    """x as a float array: float32 arrays stay float32 (the fast path's carrier), anything
    else becomes float64."""
    a = np.asarray(x)
    return a if a.dtype == np.float32 else a.astype(np.float64, copy=False)


def check_shape(got, want, layer, what):
    """ValueError naming the layer when two sizes differ."""
    if got != want:
        raise ValueError(f"{layer}: shape mismatch, {what}: {got} != {want}")
