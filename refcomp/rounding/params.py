"""The parameter vector the kernels receive: one int64 array per (format, options, rule).

Kernels (both the NumPy twins and the Numba ones) take the target format and every option
as this small int64 vector, so one compiled kernel serves every format and mode.  The
indices below are the only coupling between the two implementations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..formats.floatformat import FloatFormat, Specials
from .modes import Overflow, Rounding, Subnormals, Tininess

__all__ = ["FormatRule", "DEFAULT_RULE", "target_params", "NANRULE", "P"]


NANRULE = {"payload": 0, "canonical": 1, "all_ones": 2, "zero": 3, "zero_flipped": 4}


@dataclass(frozen=True)
class FormatRule:
    """How a backend encodes what IEEE 754 leaves open for one target format.

    Attributes
    ----------
    overflow : Overflow or None
        Fixed overflow rule, or None to take the caller's (default IEEE).
    inf : {"nan", "max"}
        Infinite inputs.  ``nan``: infinity where the format has it, else max finite
        under saturating overflow or in a format without NaN, else NaN.  ``max``: always
        the largest finite value (OCP saturating conversions).
    nan : {"payload", "canonical", "all_ones", "zero", "zero_flipped"}
        NaN inputs.  ``payload``: keep the sign and the leading payload bits, set the quiet
        bit (x86 SSE / SoftFloat 8086-SSE).  ``canonical``: sign and quiet bit only.
        ``all_ones``: sign and an all-ones mantissa.  Formats without NaN: ``zero`` (a zero
        of the NaN's sign) or ``zero_flipped`` (of the opposite sign, as ml_dtypes 0.6).
        Single-NaN formats (fn, fnuz) ignore the payload rules.
    negative : {"nan", "abs"}
        Negative inputs of unsigned formats: NaN and invalid, or the absolute value.
    zero : {"nan", "min"}
        Zero inputs of formats without zero: NaN and invalid, or the smallest value.
    e8m0_c10 : bool
        torch's E8M0 rounding of float32 subnormals (see refcomp.rounding.profiles).
    via_float32 : bool
        float64 inputs are first rounded to float32 (nearest-even), as torch and ml_dtypes
        do: a double rounding.
    nan_bits : bool
        Whether the backend's NaN bit patterns are deterministic (else only NaN-ness is
        meaningful when comparing with it).
    passthrough : bool
        An input already of the target's dtype comes back unchanged, signalling NaNs
        included (torch's ``Tensor.to`` returns the tensor itself).
    """

    overflow: Overflow | None = None
    inf: str = "nan"
    nan: str = "payload"
    negative: str = "nan"
    zero: str = "nan"
    e8m0_c10: bool = False
    via_float32: bool = False
    nan_bits: bool = True
    passthrough: bool = False

    def __post_init__(self):
        if self.overflow is not None:
            object.__setattr__(self, "overflow", Overflow(self.overflow))
        for field, allowed in (("inf", ("nan", "max")), ("nan", tuple(NANRULE)),
                               ("negative", ("nan", "abs")), ("zero", ("nan", "min"))):
            if getattr(self, field) not in allowed:
                raise ValueError(f"FormatRule.{field}={getattr(self, field)!r} is not one of "
                                 f"{allowed}")


DEFAULT_RULE = FormatRule()



class P:
    """Indices into the parameter vector."""

    M = 0          # man_bits
    EMIN = 1
    EMAX = 2
    WIDTH = 3
    SIGNED = 4
    HASZERO = 5
    NEGZERO = 6    # has a negative zero
    MAXCODE = 7    # largest finite magnitude code
    INFCODE = 8    # magnitude code of infinity, -1 if none
    NANKIND = 9    # 0 none, 1 ieee (payload field), 2 fn (all-ones code), 3 fnuz (0x80)
    MODE = 10      # Rounding.code
    OVF = 11       # 0 ieee, 1 saturate
    FLUSH = 12     # flush tiny results
    TININESS = 13  # 0 after, 1 before
    RBITS = 14     # stochastic: 0 exact probability, r = r random bits
    NANRULE = 15
    INFRULE = 16   # 0 nan, 1 max
    NEGRULE = 17   # 0 nan, 1 abs
    ZERORULE = 18  # 0 nan, 1 min
    QUIRK = 19     # 1: c10 E8M0 subnormal rule
    VIA32 = 20     # round float64 inputs to float32 first
    BIAS = 21
    SUBN = 22      # format has subnormals
    DAZ = 23       # inputs: subnormals read as zero
    PASS = 24      # inputs of the target's own dtype pass through unchanged
    SIZE = 25


_NANKIND = {Specials.FINITE: 0, Specials.IEEE: 1, Specials.FN: 2, Specials.FNUZ: 3}


@lru_cache(maxsize=512)
def target_params(fmt: FloatFormat, rounding: Rounding = Rounding.NEAREST_EVEN,
                  overflow: Overflow = Overflow.IEEE,
                  subnormals: Subnormals = Subnormals.KEEP,
                  tininess: Tininess = Tininess.AFTER, random_bits: int = 0,
                  rule: FormatRule = DEFAULT_RULE) -> np.ndarray:
    """Build the read-only parameter vector for the kernels."""
    v = np.zeros(P.SIZE, dtype=np.int64)
    v[P.M] = fmt.man_bits
    v[P.EMIN] = fmt.emin
    v[P.EMAX] = fmt.emax
    v[P.WIDTH] = fmt.width
    v[P.SIGNED] = fmt.signed
    v[P.HASZERO] = fmt.has_zero
    v[P.NEGZERO] = fmt.has_negative_zero
    v[P.MAXCODE] = fmt.max_code
    v[P.INFCODE] = -1 if fmt.inf_code is None else fmt.inf_code
    v[P.NANKIND] = _NANKIND[fmt.specials]
    v[P.MODE] = rounding.code
    v[P.OVF] = int(overflow is Overflow.SATURATE)
    v[P.FLUSH] = int(subnormals.flush)
    v[P.TININESS] = int(tininess is Tininess.BEFORE)
    v[P.RBITS] = random_bits
    v[P.NANRULE] = NANRULE[rule.nan]
    if fmt.specials is Specials.FINITE and rule.nan not in ("zero", "zero_flipped"):
        v[P.NANRULE] = NANRULE["zero"]
    v[P.INFRULE] = int(rule.inf == "max")
    v[P.NEGRULE] = int(rule.negative == "abs")
    v[P.ZERORULE] = int(rule.zero == "min")
    v[P.QUIRK] = int(rule.e8m0_c10)
    v[P.VIA32] = int(rule.via_float32)
    v[P.BIAS] = fmt.bias
    v[P.SUBN] = int(fmt.subnormals)
    v[P.DAZ] = int(subnormals.daz)
    v[P.PASS] = int(rule.passthrough)
    v.setflags(write=False)
    return v
