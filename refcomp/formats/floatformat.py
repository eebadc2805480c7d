"""`FloatFormat`: a binary floating-point format described by a few independent fields.

Every constant of a format (max finite, min normal, eps, emin, emax, ...) is derived from
its fields here; nothing is tabulated (STYLE rule 2).  The encoding rules are those of IEEE
754-2019 section 3.4 (binary interchange formats), generalised by four special-value
policies taken from the names ml_dtypes and torch give their float8 types:

``ieee``
    exponent field all ones: infinity (mantissa 0) or NaN (mantissa != 0), as IEEE 754.
``fn``
    finite + NaN: no infinity; the NaN is only the all-ones code of each sign
    (``S.1111.111`` for float8_e4m3fn); the all-ones exponent otherwise holds normal numbers.
``fnuz``
    finite + NaN + unsigned zero: no infinity, no negative zero; the single NaN is the
    negative-zero code ``1000...0``.
``finite``
    no infinity and no NaN at all (OCP MX FP6/FP4 element types).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

__all__ = ["FloatFormat", "Specials"]

#: widest exponent / mantissa we support: every finite value must be exact in float64.
MAX_EXP_BITS = 11
MAX_MAN_BITS = 52


class Specials(str, enum.Enum):
    """Special-value policy of a :class:`FloatFormat` (see the module docstring)."""

    IEEE = "ieee"
    FN = "fn"
    FNUZ = "fnuz"
    FINITE = "finite"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


def _int_field(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} is out of range: it must be in [{lo}, {hi}]")
    return value


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format.

    Parameters
    ----------
    exp_bits : int
        Width of the exponent field, 1..11.
    man_bits : int
        Number of stored mantissa (trailing significand) bits, 0..52.  The precision is
        ``man_bits + 1``.
    bias : int, optional
        Exponent bias; default ``2**(exp_bits - 1) - 1`` (the IEEE bias).
    specials : {"ieee", "fn", "fnuz", "finite"}
        Special-value policy (module docstring).
    subnormals : bool
        Whether the exponent-zero codes encode subnormal numbers.  When False they encode
        only zero (other exponent-zero codes decode to a signed zero, as hardware without
        subnormal support reads them) and casts flush tiny results to zero.
    signed : bool
        Whether the format has a sign bit (False for E8M0).
    has_zero : bool
        Whether zero exists.  When False (E8M0) the exponent-zero codes are normal
        numbers, so ``emin = -bias``; requires ``subnormals=False``.
    name : str, optional
        Catalog or user name; a descriptive name is generated when omitted.

    Notes
    -----
    Values of the format are exactly representable in float64 (checked at construction),
    so `decode` returns exact float64 values.  Bit patterns are right-aligned unsigned
    integers of `width` bits: sign (if any), exponent, mantissa, from most to least
    significant.

    Examples
    --------
    >>> from refcomp.formats import FloatFormat
    >>> f = FloatFormat(4, 3, bias=7, specials="fn", name="float8_e4m3fn")
    >>> f.max_finite, f.min_normal, f.min_subnormal, f.eps
    (448.0, 0.015625, 0.001953125, 0.125)
    """

    exp_bits: int
    man_bits: int
    bias: int | None = None
    specials: Specials | str = Specials.IEEE
    subnormals: bool = True
    signed: bool = True
    has_zero: bool = True
    name: str | None = None

    def __post_init__(self) -> None:
        e = _int_field("exp_bits", self.exp_bits, 1, MAX_EXP_BITS)
        m = _int_field("man_bits", self.man_bits, 0, MAX_MAN_BITS)
        bias = (1 << (e - 1)) - 1 if self.bias is None else _int_field(
            "bias", self.bias, -(1 << 20), 1 << 20)
        try:
            specials = Specials(self.specials)
        except ValueError:
            raise ValueError(
                f"specials={self.specials!r} is not one of "
                f"{[s.value for s in Specials]}") from None
        for flag in ("subnormals", "signed", "has_zero"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        object.__setattr__(self, "exp_bits", e)
        object.__setattr__(self, "man_bits", m)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "specials", specials)
        for flag in ("subnormals", "signed", "has_zero"):
            object.__setattr__(self, flag, bool(getattr(self, flag)))
        if self.width > 64:
            raise ValueError(f"width {self.width} (sign + exp_bits + man_bits) exceeds 64 bits")
        if specials is Specials.IEEE and m == 0:
            raise ValueError("specials='ieee' needs man_bits >= 1 (a NaN needs a nonzero mantissa)")
        if specials is Specials.FNUZ and not self.signed:
            raise ValueError("specials='fnuz' needs a sign bit (its NaN is the negative-zero code)")
        if not self.has_zero and self.subnormals:
            raise ValueError("has_zero=False needs subnormals=False "
                             "(subnormals live in the exponent-zero codes)")
        if self.max_code < self._first_positive_code:
            raise ValueError(f"format e{e}m{m} with specials={specials.value!r} "
                             "has no positive finite value")
        if self.emax > 1023:
            raise ValueError(f"emax={self.emax} > 1023: values of this format (bias={bias}) "
                             "would not be exact in float64")
        if self.emin - m < -1074:
            raise ValueError(f"smallest quantum 2**{self.emin - m} < 2**-1074: values of this "
                             f"format (bias={bias}) would not be exact in float64")
        if self.name is None:
            object.__setattr__(self, "name", self._auto_name())
        elif not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty string, got {self.name!r}")

    # ------------------------------------------------------------------ naming
    def _auto_name(self) -> str:
        parts = [f"e{self.exp_bits}m{self.man_bits}"]
        if self.bias != (1 << (self.exp_bits - 1)) - 1:
            parts.append(f"b{self.bias}")
        if self.specials is not Specials.IEEE:
            parts.append(self.specials.value)
        if not self.signed:
            parts.append("unsigned")
        if not self.has_zero:
            parts.append("nozero")
        elif not self.subnormals:
            parts.append("nosub")
        return "_".join(parts)

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------ field layout
    @property
    def width(self) -> int:
        """Total number of bits of a code."""
        return int(self.signed) + self.exp_bits + self.man_bits

    @property
    def precision(self) -> int:
        """Significand precision p = man_bits + 1."""
        return self.man_bits + 1

    @property
    def storage_dtype(self) -> np.dtype:
        """Smallest unsigned NumPy dtype that holds a code."""
        for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
            if self.width <= 8 * np.dtype(dt).itemsize:
                return np.dtype(dt)
        raise AssertionError("width > 64")  # excluded in __post_init__

    @property
    def sign_bit(self) -> int:
        """Mask of the sign bit (0 when unsigned)."""
        return (1 << (self.width - 1)) if self.signed else 0

    @property
    def _first_positive_code(self) -> int:
        return 1 if self.has_zero else 0

    # --------------------------------------------------------- special values
    @property
    def has_inf(self) -> bool:
        return self.specials is Specials.IEEE

    @property
    def has_nan(self) -> bool:
        return self.specials is not Specials.FINITE

    @property
    def has_negative_zero(self) -> bool:
        return self.signed and self.has_zero and self.specials is not Specials.FNUZ

    @property
    def _all_ones(self) -> int:
        return (1 << (self.exp_bits + self.man_bits)) - 1

    @property
    def max_code(self) -> int:
        """Largest code (sign bit clear) that encodes a finite value."""
        if self.specials is Specials.IEEE:
            return (((1 << self.exp_bits) - 1) << self.man_bits) - 1
        if self.specials is Specials.FN:
            return self._all_ones - 1
        return self._all_ones

    @property
    def inf_code(self) -> int | None:
        """Code of +infinity, or None."""
        return ((1 << self.exp_bits) - 1) << self.man_bits if self.has_inf else None

    @property
    def nan_code(self) -> int | None:
        """Code of the canonical positive quiet NaN (fnuz: its only NaN), or None."""
        if self.specials is Specials.IEEE:
            return self.inf_code | (1 << (self.man_bits - 1))
        if self.specials is Specials.FN:
            return self._all_ones
        if self.specials is Specials.FNUZ:
            return self.sign_bit
        return None

    def is_nan_code(self, code: int) -> bool:
        """Whether a code (with sign bit) is a NaN."""
        mag = code & ~self.sign_bit
        if self.specials is Specials.IEEE:
            return mag > self.inf_code
        if self.specials is Specials.FN:
            return mag == self._all_ones
        if self.specials is Specials.FNUZ:
            return code == self.sign_bit
        return False

    # ---------------------------------------------------- derived constants
    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal number."""
        return (1 if self.has_zero else 0) - self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite number."""
        return (self.max_code >> self.man_bits) - self.bias

    def code_value(self, code: int) -> Fraction:
        """Exact value of a finite code (with sign bit) as a Fraction."""
        code = int(code)
        if not 0 <= code < (1 << self.width):
            raise ValueError(f"code {code} is out of range for {self.name} ({self.width} bits)")
        if self.is_nan_code(code) or (self.has_inf and (code & ~self.sign_bit) == self.inf_code):
            raise ValueError(f"code {code:#x} of {self.name} is not finite")
        neg = bool(code & self.sign_bit)
        mag = code & ~self.sign_bit
        field, frac = mag >> self.man_bits, mag & ((1 << self.man_bits) - 1)
        if self.has_zero and field == 0:
            sig = frac if self.subnormals else 0
            exp = self.emin - self.man_bits
        else:
            sig = frac | (1 << self.man_bits)
            exp = field - self.bias - self.man_bits
        v = Fraction(sig) * (Fraction(2) ** exp)
        return -v if neg else v

    @cached_property
    def max_finite(self) -> float:
        """Largest finite value."""
        return float(self.code_value(self.max_code))

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value, 2**emin."""
        return float(Fraction(2) ** self.emin)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value (min_normal when there are no subnormals)."""
        if not self.subnormals:
            return self.min_normal
        return float(Fraction(2) ** (self.emin - self.man_bits))

    @property
    def eps(self) -> float:
        """Machine epsilon 2**-man_bits: the gap between 1 and the next larger value."""
        return float(Fraction(2) ** -self.man_bits)

    @property
    def unit_roundoff(self) -> float:
        """u = eps / 2, the relative error bound of round-to-nearest."""
        return self.eps / 2

    def constants(self) -> dict:
        """All derived constants, as a dict (used by ``refcomp info``)."""
        return {
            "name": self.name, "width": self.width, "exp_bits": self.exp_bits,
            "man_bits": self.man_bits, "precision": self.precision, "bias": self.bias,
            "specials": self.specials.value, "signed": self.signed,
            "subnormals": self.subnormals, "has_zero": self.has_zero,
            "emin": self.emin, "emax": self.emax, "max_finite": self.max_finite,
            "min_normal": self.min_normal, "min_subnormal": self.min_subnormal,
            "eps": self.eps, "has_inf": self.has_inf, "has_nan": self.has_nan,
            "has_negative_zero": self.has_negative_zero, "max_code": self.max_code,
            "inf_code": self.inf_code, "nan_code": self.nan_code,
            "storage_dtype": self.storage_dtype.name,
        }

    # ------------------------------------------------------------- codec API
    def encode(self, values):
        """Bit patterns of values that are exactly representable in this format.

        See :func:`refcomp.formats.codec.encode`.
        """
        from .codec import encode
        return encode(values, self)

    def decode(self, bits):
        """Exact float64 values of bit patterns.  See :func:`refcomp.formats.codec.decode`."""
        from .codec import decode
        return decode(bits, self)
