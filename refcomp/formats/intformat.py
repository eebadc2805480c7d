"""Integer and fixed-point formats: what the stored integer means, and its bit patterns.

An :class:`IntFormat` is a two's-complement (or unsigned) integer of 1..64 bits, optionally
with the *narrow* (symmetric) signed range ``-(2**(b-1) - 1) .. 2**(b-1) - 1`` that
symmetric quantizers use (the code ``-2**(b-1)`` is then never produced).  A
:class:`FixedFormat` is such an integer ``q`` read as the value ``q * 2**-frac_bits``
(``Qm.n`` with ``n = frac_bits``; ``m`` integer bits excluding the sign, as in ARM's and
TI's Q notation: ``Q1.14`` is ``FixedFormat(16, 14)``).

Bit patterns are the low ``bits`` bits of the two's-complement integer, stored in the
smallest unsigned dtype that holds them (uint8 for int2/int4/int8, ...); packing of
sub-byte formats several to a byte is :mod:`refcomp.ops.packing`.

>>> from refcomp.formats import IntFormat, FixedFormat, int_format
>>> int_format("int4").encode([-8, 7, -1]).tolist()
[8, 7, 15]
>>> FixedFormat(16, 14).decode(FixedFormat(16, 14).encode([16384, -32768])).tolist()
[1.0, -2.0]
>>> IntFormat(8, narrow=True).min
-127
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .floatformat import _int_field

__all__ = ["IntFormat", "FixedFormat", "int_format", "INT_NAMES"]

_UINT = ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64))
_NAME = re.compile(r"^(u?)int(\d+)(_narrow)?$")


@dataclass(frozen=True)
class IntFormat:
    """A signed (two's complement) or unsigned integer of `bits` bits.

    Parameters
    ----------
    bits : int
        1..64 (2..64 for signed).
    signed : bool
    narrow : bool
        Signed only: the symmetric range ``-(2**(bits-1) - 1) .. 2**(bits-1) - 1``
        (e.g. -127..127 for int8, as symmetric weight quantization uses).
    """

    bits: int
    signed: bool = True
    narrow: bool = False

    def __post_init__(self):
        if not isinstance(self.signed, (bool, np.bool_)):
            raise TypeError(f"signed must be True or False, got {self.signed!r}")
        if not isinstance(self.narrow, (bool, np.bool_)):
            raise TypeError(f"narrow must be True or False, got {self.narrow!r}")
        object.__setattr__(self, "bits", _int_field("bits", self.bits, 2 if self.signed else 1, 64))
        if self.narrow and not self.signed:
            raise ValueError("narrow=True is the symmetric signed range; an unsigned format "
                             "has no narrow variant")

    @property
    def name(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}{'_narrow' if self.narrow else ''}"

    def __str__(self) -> str:
        return self.name

    @property
    def min(self) -> int:
        """Smallest integer of the format (a Python int)."""
        if not self.signed:
            return 0
        return -(1 << (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def max(self) -> int:
        """Largest integer of the format (a Python int)."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def storage_dtype(self) -> np.dtype:
        """Unsigned dtype of one bit pattern (before sub-byte packing)."""
        return np.dtype(next(t for w, t in _UINT if self.bits <= w))

    @property
    def value_dtype(self) -> np.dtype:
        """dtype of decoded integers: int64, or uint64 for uint64."""
        return np.dtype(np.uint64 if (not self.signed and self.bits == 64) else np.int64)

    def encode(self, values) -> np.ndarray:
        """Bit patterns of integers already in range (ValueError naming the first that is not)."""
        v = _as_int_array(values, "values")
        _check_range(v, self.min, self.max, self.name)
        mask = np.uint64((1 << self.bits) - 1)
        raw = v.astype(np.int64).view(np.uint64) if v.dtype.kind == "i" else v.astype(np.uint64)
        return np.asarray((raw & mask).astype(self.storage_dtype))

    def decode(self, bits) -> np.ndarray:
        """Integers (int64, or uint64 for uint64) of bit patterns (high bits must be 0)."""
        b = np.asarray(bits)
        if b.dtype.kind not in "ui":
            raise TypeError(f"bit patterns must be an integer array, got {b.dtype}")
        u = b.astype(np.uint64) if b.dtype.kind == "u" else b.astype(np.int64).view(np.uint64)
        over = u >> np.uint64(self.bits) if self.bits < 64 else np.zeros_like(u)
        if np.any(over):
            i = int(np.flatnonzero(over.reshape(-1))[0])
            raise ValueError(f"bit pattern {int(u.reshape(-1)[i]):#x} at index {i} has bits "
                             f"beyond the {self.bits} of {self.name}")
        if not self.signed:
            return u.astype(self.value_dtype)
        sign = np.uint64(1 << (self.bits - 1))
        v = ((u ^ sign).view(np.int64) - np.int64(sign)) if self.bits < 64 else u.view(np.int64)
        if self.narrow and np.any(v == self.min - 1):
            i = int(np.flatnonzero((v == self.min - 1).reshape(-1))[0])
            raise ValueError(f"bit pattern at index {i} is {self.min - 1}, outside the narrow "
                             f"range of {self.name}")
        return v


@dataclass(frozen=True)
class FixedFormat:
    """A fixed-point format: an integer ``q`` of `total_bits` bits read as ``q * 2**-frac_bits``.

    Parameters
    ----------
    total_bits : int
        Width of the stored integer, sign included (1..64).
    frac_bits : int
        Fraction bits; may be negative (a step larger than 1) or exceed `total_bits`
        (all magnitudes below 1), -1024..1024.
    signed : bool
    narrow : bool
        Symmetric signed range (see :class:`IntFormat`).
    """

    total_bits: int
    frac_bits: int
    signed: bool = True
    narrow: bool = False

    def __post_init__(self):
        _int_field("frac_bits", self.frac_bits, -1024, 1024)
        object.__setattr__(self, "frac_bits", int(self.frac_bits))
        object.__setattr__(self, "total_bits", self.integer.bits)

    @property
    def integer(self) -> IntFormat:
        """The stored integer's format."""
        return IntFormat(self.total_bits, self.signed, self.narrow)

    @property
    def int_bits(self) -> int:
        """``m`` of Qm.n: integer bits, sign excluded."""
        return self.total_bits - self.frac_bits - (1 if self.signed else 0)

    @property
    def name(self) -> str:
        u = "" if self.signed else "U"
        return f"{u}Q{self.int_bits}.{self.frac_bits}{'_narrow' if self.narrow else ''}"

    def __str__(self) -> str:
        return self.name

    @property
    def step(self) -> float:
        """Value of one unit in the last place, ``2**-frac_bits``."""
        return float(np.ldexp(1.0, -self.frac_bits))

    @property
    def min(self) -> float:
        return float(np.ldexp(float(self.integer.min), -self.frac_bits))

    @property
    def max(self) -> float:
        """Largest value (rounded to float64 when total_bits > 53)."""
        return float(np.ldexp(float(self.integer.max), -self.frac_bits))

    @property
    def storage_dtype(self) -> np.dtype:
        return self.integer.storage_dtype

    def encode(self, codes) -> np.ndarray:
        """Bit patterns of stored integers (not of values; use ``ops.quantize_fixed``)."""
        return self.integer.encode(codes)

    def decode(self, bits) -> np.ndarray:
        """Exact float64 values of bit patterns (ValueError if a value needs more than 53
        bits or leaves float64's range; use ``integer.decode`` for the stored integers)."""
        q = self.integer.decode(bits)
        f = q.astype(np.float64)
        top = 2.0 ** (64 if q.dtype == np.uint64 else 63)
        big = np.abs(f) >= top
        big |= np.where(big, 0, f).astype(q.dtype) != q
        if np.any(big):
            i = int(np.flatnonzero(big.reshape(-1))[0])
            raise ValueError(f"{self.name} value at index {i} (integer {int(q.reshape(-1)[i])})"
                             f" is not exactly a float64")
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            v = np.ldexp(f, -self.frac_bits)
            lost = np.ldexp(v, self.frac_bits) != q.astype(np.float64)
        if np.any(lost):
            i = int(np.flatnonzero(lost.reshape(-1))[0])
            raise ValueError(f"{self.name} value at index {i} (integer {int(q.reshape(-1)[i])})"
                             f" is outside float64's range")
        return v


def int_format(name: str) -> IntFormat:
    """An IntFormat from its name: ``int4``, ``uint8``, ``int8_narrow``, ..."""
    if isinstance(name, IntFormat):
        return name
    m = _NAME.match(str(name))
    if not m:
        raise ValueError(f"unknown integer format {name!r}: use intN, uintN or intN_narrow "
                         f"with N in 1..64")
    return IntFormat(int(m.group(2)), m.group(1) == "", bool(m.group(3)))


#: the integer formats refcomp names in its catalog (any width works through IntFormat)
INT_NAMES = tuple(f"{s}int{b}" for s in ("", "u") for b in (2, 4, 8, 16, 32, 64))


def _as_int_array(values, what) -> np.ndarray:
    """An int64 (or uint64, for values above int64) array of integer input; Python ints of
    any size are checked here, so a value beyond 64 bits is a ValueError naming it."""
    if isinstance(values, np.ndarray) or np.isscalar(values) and not isinstance(values, int):
        v = np.asarray(values)
    else:
        obj = np.asarray(values, dtype=object)
        flat = obj.reshape(-1)
        for i, e in enumerate(flat):
            if isinstance(e, (bool, np.bool_)) or not isinstance(e, (int, np.integer)):
                raise TypeError(f"{what} must be integers, got {e!r} at index {i}")
            if not -(1 << 63) <= int(e) < 1 << 64:
                raise ValueError(f"value {int(e)} at index {i} of {what} does not fit in 64 "
                                 f"bits")
        ints = [int(e) for e in flat]
        dt = np.uint64 if ints and min(ints) >= 0 and max(ints) >= 1 << 63 else np.int64
        if dt is np.int64 and ints and max(ints) >= 1 << 63:
            i = max(range(len(ints)), key=lambda k: ints[k])
            raise ValueError(f"value {ints[i]} at index {i} of {what} does not fit in int64 "
                             f"beside negative values")
        return np.array(ints, dtype=dt).reshape(obj.shape)
    if v.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers, got dtype {v.dtype}")
    return v


def _check_range(v, lo, hi, name):
    if v.size == 0:
        return
    if v.dtype.kind == "u":
        bad = v > np.uint64(hi) if hi >= 0 else np.ones(v.shape, bool)
        bad |= (lo > 0) & (v < np.uint64(max(lo, 0)))
    else:
        v64 = v.astype(np.int64)
        bad = (v64 < lo) if lo > -(1 << 63) else np.zeros(v.shape, bool)
        if hi < (1 << 63) - 1:
            bad |= v64 > hi
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"value {v.reshape(-1)[i]} at index {i} is outside {name} "
                         f"[{lo}, {hi}]")
