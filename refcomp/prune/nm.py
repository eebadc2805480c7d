"""N:M semi-structured sparsity (2:4 and general N:M): masks, pruning, compressed export.

Groups.  A weight is taken through its 2-D GEMM view ``(R, K)``
(:func:`refcomp.prune.sparse.matrix_view`): a Linear weight ``(out, in)`` as it is, a
Conv2d weight ``(O, C, kh, kw)`` as ``(O, C*kh*kw)`` in C order -- the reduction dimension
of the convolution's GEMM.  Every row is cut into ``K / M`` groups of ``M`` consecutive
entries and each group keeps its ``N`` entries of largest ``|w|``.  (NVIDIA's ASP groups a
convolution along ``C`` for each kernel position instead: transpose the weight to
``(O, kh, kw, C)`` first to get that layout.)

Tie rule.  Within a group, entries are ranked by a stable ascending sort of ``|w|``: among
equal magnitudes the lower index is pruned first (the rule of
:mod:`refcomp.prune.methods`); NaN ranks above every number, so it is kept.

Compressed form (:func:`nm_compress`).  Per row, the kept values in group order and, within
a group, in ascending position (``values``, shape ``(R, K/M*N)``), and their positions
``0..M-1`` inside the group (``positions``, shape ``(R, K/M, N)``) -- NVIDIA's 2:4 layout,
whose metadata is the 2-bit index of each kept element.

Size (:func:`nm_nbytes`; bytes, exact).  Values ``ceil(R * K/M * N * b / 8)`` with ``b`` the
value format's width; metadata, packed as one bit stream, either

* ``metadata="index"`` (default, NVIDIA's format): ``ceil(log2 M)`` bits per kept element
  (2 bits for 2:4, i.e. 4 bits per group of 4), or
* ``metadata="combinatorial"``: ``ceil(log2 C(M, N))`` bits per group (the index of the
  kept subset; 3 bits for 2:4).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .methods import CustomFromMask
from .reparam import _reparam, apply, pruned_tensor
from .sparse import StorageSize, matrix_view, uint_dtype, value_bits

__all__ = ["nm_mask", "nm_prune", "is_nm_sparse", "NMSparse", "nm_compress",
           "nm_decompress", "nm_nbytes"]


def _check_nm(n, m):
    for k, v in (("n", n), ("m", m)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"N:M sparsity: {k}={v!r} must be an int")
    if m < 1:
        raise ValueError(f"N:M sparsity: m={m} must be at least 1")
    if not 1 <= n <= m:
        raise ValueError(f"N:M sparsity: n={n} must be in [1, m={m}] (keep n of every m)")
    return int(n), int(m)


def _groups(shape, n, m):
    """(R, G) of a weight of `shape` cut into groups of m; errors name the shape."""
    n, m = _check_nm(n, m)
    if len(shape) < 2:
        raise ValueError(f"N:M sparsity needs a weight of at least 2 dims (Linear (out, "
                         f"in), Conv2d (O, C, kh, kw)); got shape {tuple(shape)}")
    K = math.prod(shape[1:])
    if K % m:
        what = "in_features" if len(shape) == 2 else "C*kh*kw" if len(shape) == 4 else \
            "prod(shape[1:])"
        raise ValueError(f"{n}:{m} sparsity: the reduction dimension {what} = {K} of shape "
                         f"{tuple(shape)} is not a multiple of m={m}")
    return shape[0], K // m


def _keep(score, n, m):
    """Boolean keep mask (R, G, m) of grouped scores (module notes, tie rule)."""
    order = np.argsort(score, axis=-1, kind="stable")     # (R, G, m), ascending
    keep = np.ones(score.shape, bool)
    np.put_along_axis(keep, order[..., :m - n], False, axis=-1)
    return keep


def nm_mask(w, n=2, m=4) -> np.ndarray:
    """The N:M mask of `w`: in each group of `m` consecutive reduction entries keep the `n`
    of largest ``|w|``.

    Parameters
    ----------
    w : array_like, shape (R, ...) with prod(shape[1:]) a multiple of m
    n, m : int
        1 <= n <= m.

    Returns
    -------
    numpy.ndarray, float64 0/1, the shape of `w`

    Examples
    --------
    >>> nm_mask([[0.1, -0.9, 0.5, 0.2, 1.0, 1.0, 1.0, 1.0]]).tolist()
    [[0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]]
    """
    w = np.asarray(w)
    R, G = _groups(w.shape, n, m)
    keep = _keep(np.abs(matrix_view(w)).reshape(R, G, m), n, m)
    return keep.reshape(w.shape).astype(np.float64)


def is_nm_sparse(w, n=2, m=4) -> bool:
    """Whether every group of `m` holds at most `n` nonzeros.

    Examples
    --------
    >>> is_nm_sparse([[1.0, 0.0, 0.0, 2.0]]), is_nm_sparse([[1.0, 3.0, 0.0, 2.0]])
    (True, False)
    """
    w = np.asarray(w)
    R, G = _groups(w.shape, n, m)
    return bool(np.all(np.count_nonzero(matrix_view(w).reshape(R, G, m), axis=-1) <= n))


def nm_prune(module, name="weight", n=2, m=4, importance_scores=None):
    """Prune ``module.<name>`` to N:M sparsity through torch's reparametrization
    (``<name>_orig``, ``<name>_mask``; as :func:`refcomp.prune.custom_from_mask`).

    The ranking uses ``|importance_scores|`` (default: torch's ``module.<name>``); entries
    an earlier pruning removed rank below every live entry, so each group keeps
    ``min(n, live entries)`` of its live entries.

    Examples
    --------
    >>> from refcomp import nn
    >>> lin = nn.Linear(8, 3, rng=np.random.default_rng(0))
    >>> m = nm_prune(lin, "weight", 2, 4).buffers["weight_mask"]
    >>> m.reshape(3, 2, 4).sum(axis=-1).tolist()
    [[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]
    >>> sorted(lin.state_dict())
    ['bias', 'weight_mask', 'weight_orig']
    """
    cur = np.asarray(pruned_tensor(module, name))
    s = cur if importance_scores is None else np.asarray(importance_scores)
    if s.shape != cur.shape:
        raise ValueError(f"importance_scores should have the same shape as parameter "
                         f"{name} of {module.name}, got {s.shape} vs {cur.shape}")
    R, G = _groups(cur.shape, n, m)
    score = np.abs(s).astype(np.float64)
    rp = _reparam(module)
    if rp is not None and name in rp.tensors:
        score = np.where(module.buffers[name + "_mask"] == 0, -1.0, score)
    keep = _keep(matrix_view(score).reshape(R, G, m), n, m)
    return apply(CustomFromMask(keep.reshape(cur.shape).astype(np.float64)), module, name)


class NMSparse(NamedTuple):
    """Compressed N:M weight (module notes)."""

    values: np.ndarray      # (R, G*n) kept entries, the weight's dtype
    positions: np.ndarray   # (R, G, n) position 0..m-1 of each kept entry in its group
    n: int
    m: int
    shape: tuple            # the weight's shape


def nm_compress(w, n=2, m=4) -> NMSparse:
    """Compress `w` to its N:M form (kept entries: :func:`nm_mask`'s).

    Examples
    --------
    >>> c = nm_compress([[0.1, -0.9, 0.5, 0.2, 0.0, 3.0, -4.0, 0.0]])
    >>> c.values.tolist(), c.positions.tolist()
    ([[-0.9, 0.5, 3.0, -4.0]], [[[1, 2], [1, 2]]])
    >>> nm_decompress(c).tolist()
    [[0.0, -0.9, 0.5, 0.0, 0.0, 3.0, -4.0, 0.0]]
    """
    w = np.asarray(w)
    n, m = _check_nm(n, m)
    R, G = _groups(w.shape, n, m)
    g = matrix_view(w).reshape(R, G, m)
    keep = _keep(np.abs(g), n, m)
    pos = np.nonzero(keep)[2].reshape(R, G, n)             # ascending within each group
    vals = np.take_along_axis(g, pos, axis=-1).reshape(R, G * n)
    return NMSparse(vals, pos.astype(uint_dtype(m - 1)), n, m, tuple(w.shape))


def nm_decompress(c: NMSparse) -> np.ndarray:
    """The dense weight of an :class:`NMSparse` (+0.0 at pruned positions)."""
    R, G = _groups(c.shape, c.n, c.m)
    out = np.zeros((R, G, c.m), c.values.dtype)
    np.put_along_axis(out, c.positions.astype(np.int64),
                      c.values.reshape(R, G, c.n), axis=-1)
    return out.reshape(c.shape)


def nm_nbytes(shape, n=2, m=4, fmt="float16", metadata="index") -> StorageSize:
    """Exact size of the N:M form of a weight of `shape` (module notes).

    Parameters
    ----------
    shape : tuple
    n, m : int
    fmt : value format (see :func:`refcomp.prune.sparse.value_bits`)
    metadata : {"index", "combinatorial"}

    Returns
    -------
    StorageSize
        ``indices`` holds the metadata bytes, ``indptr`` is 0.

    Examples
    --------
    >>> s = nm_nbytes((64, 128), 2, 4, "float16")     # 2:4 halves the values
    >>> s, s.total, round(s.ratio, 4)
    (StorageSize(values=8192, indices=1024, indptr=0, dense=16384), 9216, 0.5625)
    >>> nm_nbytes((64, 128), 2, 4, "float16", metadata="combinatorial").indices
    768
    """
    shape = tuple(shape)
    R, G = _groups(shape, n, m)
    b = value_bits(fmt)
    if metadata == "index":
        meta = R * G * n * (m - 1).bit_length()
    elif metadata == "combinatorial":
        meta = R * G * (math.comb(m, n) - 1).bit_length()
    else:
        raise ValueError(f"metadata={metadata!r}; expected 'index' or 'combinatorial'")
    return StorageSize(-(-R * G * n * b // 8), -(-meta // 8), 0,
                       -(-R * G * m * b // 8))
