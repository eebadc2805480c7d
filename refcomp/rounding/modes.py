"""Enums of the numeric options (rounding, overflow, subnormals, tininess, flags).

Strings are accepted at the API edge and converted here, once (STYLE rule 7).  The
integer values of `Rounding` are the codes the kernels receive.
"""

from __future__ import annotations

import difflib
import enum

import numpy as np

__all__ = ["Rounding", "Overflow", "IntOverflow", "Subnormals", "Tininess", "Flag", "as_rounding",
           "as_overflow", "as_int_overflow", "as_subnormals", "as_tininess", "as_generator", "as_random_bits",
           "flag_names"]


class _Choice(str, enum.Enum):
    def __str__(self) -> str:
        return self.value


class Rounding(_Choice):
    """Rounding direction.

    ``nearest_even`` / ``nearest_away``
        IEEE 754-2019 roundTiesToEven / roundTiesToAway (4.3.1).  Ties are decided on the
        integral significand: with 0 mantissa bits (E8M0) every significand is 1 (odd), so
        ties round up, as ml_dtypes and torch do.
    ``toward_zero`` / ``toward_positive`` / ``toward_negative``
        IEEE roundTowardZero / roundTowardPositive / roundTowardNegative (4.3.2).
    ``odd``
        round to odd (von Neumann jamming): truncate, then set the last bit if inexact;
        as SoftFloat 3e's ``softfloat_round_odd``.
    ``stochastic``
        round up with probability equal to the discarded fraction of an ulp; see
        :func:`refcomp.cast` for the exact rule and the random-bit convention.
    """

    NEAREST_EVEN = "nearest_even"
    NEAREST_AWAY = "nearest_away"
    TOWARD_ZERO = "toward_zero"
    TOWARD_POSITIVE = "toward_positive"
    TOWARD_NEGATIVE = "toward_negative"
    ODD = "odd"
    STOCHASTIC = "stochastic"

    @property
    def code(self) -> int:
        return _ROUNDING_CODES[self]

    @property
    def deterministic(self) -> bool:
        return self is not Rounding.STOCHASTIC


_ROUNDING_CODES = {r: i for i, r in enumerate(Rounding)}
#: the six deterministic modes (IEEE's five plus round-to-odd)
DETERMINISTIC = tuple(r for r in Rounding if r.deterministic)


class Overflow(_Choice):
    """What a finite result beyond the largest finite value becomes.

    ``ieee``
        IEEE 754-2019 7.4: infinity for the nearest modes and for the directed mode that
        points away from zero, the largest finite value for the others; a format without
        infinity gives NaN instead of infinity, and one without NaN either saturates.
    ``saturate``
        always the largest finite value of the result's sign (OCP saturating conversions).
    """

    IEEE = "ieee"
    SATURATE = "saturate"


class IntOverflow(_Choice):
    """What an integer or fixed-point result outside the format's range becomes.

    ``saturate``  the nearest end of the range (min or max of the format).
    ``wrap``      the rounded integer modulo ``2**bits``, read back in the format's
                  two's-complement (or unsigned) range, as C/C++ unsigned arithmetic and
                  ``numpy.astype`` between integer types do.  Not defined for NaN or
                  infinity, nor for the narrow (symmetric) range.
    """

    SATURATE = "saturate"
    WRAP = "wrap"


class Subnormals(_Choice):
    """Treatment of subnormal numbers.

    ``keep``  no flushing: tiny results round to the format's own values -- gradual
              underflow (IEEE), or, in a format without subnormals, 0 or +-min normal
              as correct rounding gives (as CPFloat's ``CPFLOAT_SUBN_RND``).
    ``flush`` results that are tiny (per `tininess`) become a zero of the same sign,
              raising underflow and inexact, as x86 MXCSR.FTZ (Intel SDM vol. 1, 10.2.3.3).
    ``daz``   inputs that are subnormal are read as zero of the same sign, as x86 MXCSR.DAZ
              (Intel SDM vol. 1, 10.2.3.4); for `cast`, "subnormal" means subnormal in the
              input array's own dtype; for `ops`, below the target format's min normal.
    ``flush_daz`` both.
    """

    KEEP = "keep"
    FLUSH = "flush"
    DAZ = "daz"
    FLUSH_DAZ = "flush_daz"

    @property
    def flush(self) -> bool:
        return self in (Subnormals.FLUSH, Subnormals.FLUSH_DAZ)

    @property
    def daz(self) -> bool:
        return self in (Subnormals.DAZ, Subnormals.FLUSH_DAZ)


class Tininess(_Choice):
    """IEEE 754-2019 7.5: a nonzero result is tiny when its magnitude is below the smallest
    normal number, judged on the exact value (``before`` rounding) or on the value rounded
    to the format's precision with an unbounded exponent range (``after``, as x86 SSE and
    SoftFloat's 8086 specialisations)."""

    AFTER = "after"
    BEFORE = "before"


class Flag(enum.IntFlag):
    """IEEE 754 exception flags, with Berkeley SoftFloat's bit values."""

    INEXACT = 1
    UNDERFLOW = 2
    OVERFLOW = 4
    DIVIDE_BY_ZERO = 8
    INVALID = 16


def flag_names(value: int) -> str:
    """Human-readable flag set, e.g. ``'inexact|underflow'`` (``'-'`` when empty)."""
    names = [f.name.lower() for f in Flag if int(value) & f.value]
    return "|".join(names) if names else "-"


def _parse(enum_cls, value, what: str):
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        for member in enum_cls:
            if member.value == key:
                return member
        valid = [m.value for m in enum_cls]
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {what} {value!r}{hint} (valid: {', '.join(valid)})")
    raise TypeError(f"{what} must be a string or {enum_cls.__name__}, got {value!r}")


def as_rounding(value) -> Rounding:
    return _parse(Rounding, value, "rounding mode")


def as_overflow(value) -> Overflow:
    return _parse(Overflow, value, "overflow rule")


def as_int_overflow(value) -> IntOverflow:
    return _parse(IntOverflow, value, "integer overflow rule")


def as_subnormals(value) -> Subnormals:
    return _parse(Subnormals, value, "subnormal mode")


def as_tininess(value) -> Tininess:
    return _parse(Tininess, value, "tininess")


def as_generator(rng, rounding: Rounding):
    """Check the random generator: stochastic rounding needs an explicit Generator."""
    if rounding is Rounding.STOCHASTIC:
        if rng is None:
            raise ValueError("rounding='stochastic' needs an explicit generator, e.g. "
                             "rng=numpy.random.default_rng(seed); refcomp has no hidden "
                             "random state")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    elif rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def as_random_bits(random_bits, rounding: Rounding) -> int:
    """0 means exact-probability stochastic rounding; r in 1..64 models r random bits."""
    if random_bits is None:
        return 0
    if rounding is not Rounding.STOCHASTIC:
        raise ValueError(f"random_bits={random_bits!r} only applies to rounding='stochastic', "
                         f"not {rounding.value!r}")
    if isinstance(random_bits, (bool, np.bool_)) or not isinstance(random_bits, (int, np.integer)):
        raise TypeError(f"random_bits must be an integer, got {random_bits!r}")
    if not 1 <= int(random_bits) <= 64:
        raise ValueError(f"random_bits={int(random_bits)} is out of range: it must be in [1, 64]")
    return int(random_bits)
