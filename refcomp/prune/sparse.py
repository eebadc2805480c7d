"""Sparse export of pruned weights: CSR arrays and exact storage size in bytes.

A weight of shape ``(R, *rest)`` is exported through its 2-D view ``(R, K)`` with
``K = prod(rest)`` (C order: a Conv2d weight ``(O, C, kh, kw)`` becomes ``(O, C*kh*kw)``,
the GEMM view); a 1-D tensor is the single row ``(1, K)``.

CSR.  ``indptr`` (R + 1 row offsets), ``indices`` (column of every stored entry, rows in
order, columns ascending) and ``values`` (the stored entries in `w`'s own dtype, bit for
bit).  The stored entries are those with ``w != 0`` (NaN included), or, when a mask is
given, those with ``mask != 0`` -- then kept entries that happen to be zero are stored, with
their sign.  :func:`from_csr` puts +0.0 at every entry not stored, so the round trip is
exact in value, and exact in bits except that a -0.0 which is not stored comes back as
+0.0 (a pruned negative weight is -0.0 in torch's ``mask * orig``).

Size convention (all sizes are exact integers of bytes):

* values: ``ceil(nnz * b / 8)`` with ``b`` the value format's code width in bits
  (:func:`value_bits`: float32 32, bfloat16 / float16 16, float8_* and int8 8,
  float6_* 6, float4_e2m1fn and int4 4, tfloat32 19), the codes packed as one bit stream;
* index arrays: each array in the smallest unsigned integer of 8, 16, 32 or 64 bits that
  holds the largest value it may contain (:func:`uint_bits`): ``indices`` the largest
  column, ``K - 1``; ``indptr`` its last entry, ``nnz``; CSR arrays from :func:`to_csr` have
  exactly these dtypes;
* dense: ``ceil(R * K * b / 8)``.

No alignment padding and no header (shape, format) are counted.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from ..formats import FixedFormat, IntFormat
from ..formats import get as get_format

__all__ = ["CSR", "StorageSize", "uint_bits", "uint_dtype", "value_bits", "matrix_view",
           "to_csr", "from_csr", "csr_nbytes", "dense_nbytes"]

_INT_NAME = re.compile(r"^u?int(\d+)(_narrow)?$")


def uint_bits(max_value: int) -> int:
    """Width (8, 16, 32 or 64) of the smallest unsigned integer holding ``0..max_value``.

    Examples
    --------
    >>> uint_bits(255), uint_bits(256), uint_bits(0)
    (8, 16, 8)
    """
    v = int(max_value)
    if v < 0 or v >= 1 << 64:
        raise ValueError(f"max_value={max_value} is outside 0..2**64-1")
    return next(b for b in (8, 16, 32, 64) if v < 1 << b)


def uint_dtype(max_value: int) -> np.dtype:
    """NumPy dtype of :func:`uint_bits` (``uint8`` ... ``uint64``)."""
    return np.dtype(f"uint{uint_bits(max_value)}")


def value_bits(fmt) -> int:
    """Code width in bits of a value format.

    Parameters
    ----------
    fmt : str, FloatFormat, IntFormat, FixedFormat or int
        A float format name or alias (``"bfloat16"``, ``"fp8_e4m3"``), an integer name
        (``"int8"``, ``"uint4"``), a format object, or a width in bits.

    Examples
    --------
    >>> value_bits("float32"), value_bits("bf16"), value_bits("int4"), value_bits(12)
    (32, 16, 4, 12)
    """
    if isinstance(fmt, bool):
        raise TypeError(f"value format {fmt!r} is not a format")
    if isinstance(fmt, (int, np.integer)):
        if fmt < 1:
            raise ValueError(f"value width {fmt} bits must be positive")
        return int(fmt)
    if isinstance(fmt, IntFormat):
        return fmt.bits
    if isinstance(fmt, FixedFormat):
        return fmt.total_bits
    if isinstance(fmt, str):
        mt = _INT_NAME.match(fmt.strip())
        if mt:
            return int(mt.group(1))
    return get_format(fmt).width


def matrix_view(w) -> np.ndarray:
    """The 2-D view ``(R, K)`` of a weight (module notes).

    Examples
    --------
    >>> matrix_view(np.zeros((8, 3, 3, 3))).shape, matrix_view(np.zeros(5)).shape
    ((8, 27), (1, 5))
    """
    w = np.asarray(w)
    if w.ndim == 0:
        raise ValueError("a scalar has no sparse matrix view; expected an array of at "
                         "least 1 dim")
    return w.reshape(1, -1) if w.ndim == 1 else w.reshape(w.shape[0], -1)


class CSR(NamedTuple):
    """Compressed sparse rows of a weight's 2-D view."""

    indptr: np.ndarray      # (R + 1,) row offsets, uint dtype holding nnz
    indices: np.ndarray     # (nnz,) column of each stored entry, uint dtype holding K - 1
    values: np.ndarray      # (nnz,) stored entries, the weight's dtype
    shape: tuple            # (R, K)
    dense_shape: tuple      # the weight's own shape

    @property
    def nnz(self) -> int:
        return int(self.values.size)


def to_csr(w, mask=None) -> CSR:
    """CSR of `w` (stored entries: ``w != 0``, or ``mask != 0`` when a mask is given).

    Parameters
    ----------
    w : array_like, at least 1-D
    mask : array_like, same shape, optional

    Examples
    --------
    >>> c = to_csr([[0.0, 2.0, 0.0], [-1.0, 0.0, 3.0]])
    >>> c.indptr.tolist(), c.indices.tolist(), c.values.tolist(), c.indices.dtype.name
    ([0, 1, 3], [1, 0, 2], [2.0, -1.0, 3.0], 'uint8')
    >>> from_csr(c).tolist()
    [[0.0, 2.0, 0.0], [-1.0, 0.0, 3.0]]
    """
    w = np.asarray(w)
    w2 = matrix_view(w)                                   # (R, K)
    if mask is None:
        keep = w2 != 0
    else:
        m = np.asarray(mask)
        if m.shape != w.shape:
            raise ValueError(f"mask of shape {m.shape} does not match the weight's shape "
                             f"{w.shape}")
        keep = matrix_view(m) != 0
    rows, cols = np.nonzero(keep)
    nnz = rows.size
    R, K = w2.shape
    indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=R))))
    indptr = indptr.astype(uint_dtype(nnz))                # values <= nnz: exact
    return CSR(indptr, cols.astype(uint_dtype(max(K - 1, 0))), w2[rows, cols].copy(),
               (R, K), tuple(w.shape))


def from_csr(c: CSR) -> np.ndarray:
    """The dense weight of a :class:`CSR` (+0.0 where nothing is stored), in its original
    shape and the values' dtype."""
    R, K = c.shape
    out = np.zeros((R, K), c.values.dtype)
    counts = np.diff(c.indptr.astype(np.int64))
    if counts.size != R or np.any(counts < 0) or int(c.indptr[-1]) != c.values.size \
            or c.indices.size != c.values.size:
        raise ValueError(f"inconsistent CSR: indptr {c.indptr.tolist()[:8]}..., "
                         f"{c.indices.size} indices, {c.values.size} values, shape {c.shape}")
    out[np.repeat(np.arange(R), counts), c.indices.astype(np.int64)] = c.values
    return out.reshape(c.dense_shape)


class StorageSize(NamedTuple):
    """Bytes of a sparse encoding against the dense one."""

    values: int             # the stored values
    indices: int            # column indices (CSR) or position metadata (N:M)
    indptr: int             # row offsets (CSR; 0 for N:M)
    dense: int              # the dense tensor in the same value format

    @property
    def total(self) -> int:
        """Bytes of the sparse encoding."""
        return self.values + self.indices + self.indptr

    @property
    def ratio(self) -> float:
        """``total / dense``."""
        return self.total / self.dense if self.dense else math.nan


def _bytes(nbits: int) -> int:
    return -(-nbits // 8)


def dense_nbytes(shape, fmt="float32") -> int:
    """``ceil(prod(shape) * value_bits(fmt) / 8)``.

    Examples
    --------
    >>> dense_nbytes((3, 5), "float4_e2m1fn")
    8
    """
    return _bytes(math.prod(shape) * value_bits(fmt))


def csr_nbytes(c: CSR, fmt="float32") -> StorageSize:
    """Exact size of a :class:`CSR` with values in `fmt` (module notes).

    Examples
    --------
    >>> w = np.zeros((4, 300)); w[0, 299] = w[3, 0] = 1.0
    >>> s = csr_nbytes(to_csr(w), "bfloat16")
    >>> s, s.total                    # 2 values x 2 B, 2 uint16 indices, 5 uint8 offsets
    (StorageSize(values=4, indices=4, indptr=5, dense=2400), 13)
    """
    b = value_bits(fmt)
    R, K = c.shape
    return StorageSize(_bytes(c.nnz * b), c.nnz * uint_bits(max(K - 1, 0)) // 8,
                       (R + 1) * uint_bits(c.nnz) // 8, _bytes(R * K * b))
