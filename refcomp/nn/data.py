"""Real training data available offline: the UCI handwritten digits that scikit-learn ships
(1,797 8x8 grey images, 10 classes; ``pip install 'refcomp[data]'``), and seeded batching.

>>> import numpy as np
>>> idx = [b.tolist() for b in batches(5, 2, np.random.default_rng(0))]
>>> sorted(sum(idx, []))
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "load_digits", "batches"]


class Dataset(NamedTuple):
    """A train / test split: images (N, 1, 8, 8) or (N, 64) in [0, 1], labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(test_fraction=0.2, seed=0, flat=False) -> Dataset:
    """The UCI digits (scikit-learn's bundled copy; no download), pixels divided by 16
    (exact in every format with at least 4 significand bits: bfloat16, float16,
    float8_e4m3fn), split by a
    seeded permutation.  ImportError with the install hint when scikit-learn is absent."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise ImportError("refcomp.nn.data.load_digits needs scikit-learn: "
                          "pip install 'refcomp[data]'") from None
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r} must be in (0, 1)")
    d = _load()
    x = d.data.astype(np.float64) / 16.0                       # (1797, 64) exact
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    te, tr = perm[:n_test], perm[n_test:]
    if not flat:
        x = x.reshape(-1, 1, 8, 8)
    return Dataset(x[tr], y[tr], x[te], y[te])


def batches(n, batch_size, rng):
    """Index arrays of one epoch: a seeded permutation of range(n) cut into batches (the
    last one may be shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be >= 1")
    perm = rng.permutation(n)
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]
