"""Hypothesis strategies for values and bit patterns of any format (needs hypothesis).

>>> from hypothesis import given
>>> import refcomp as rc
>>> from refcomp.testing import values
>>> @given(values("float8_e4m3fn", allow_nan=False))
... def test_roundtrip(v):
...     assert rc.formats.float8_e4m3fn.decode(rc.formats.float8_e4m3fn.encode(v)) == v
>>> test_roundtrip()
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..formats.floatformat import FloatFormat
from ..rounding import cast_bits
from .ulp import _fmt, ordinal

__all__ = ["values", "bit_patterns", "near_ties", "value_arrays", "bit_arrays"]


def _code_of(k: int, fmt: FloatFormat) -> int:
    return k if k >= 0 else fmt.sign_bit | -k


def _ord_bound(v, fmt, mode) -> int:
    code = int(cast_bits(float(v), fmt, mode, overflow="saturate"))
    return int(ordinal(np.uint64(code), fmt))


def values(fmt, *, allow_nan: bool = True, allow_infinity: bool = True,
           allow_subnormal: bool = True, min_value=None, max_value=None):
    """Python floats that are values of `fmt` (every value reachable, both zeros).

    `min_value` / `max_value` bound the finite values drawn (they need not be values of
    the format); infinities and NaN are added when allowed and the bounds admit them.
    """
    fmt = _fmt(fmt)
    for name, v in (("min_value", min_value), ("max_value", max_value)):
        if v is not None and (not isinstance(v, (int, float)) or math.isnan(v)):
            raise ValueError(f"{name} must be a number, got {v!r}")
    if min_value is not None and max_value is not None and min_value > max_value:
        raise ValueError(f"min_value {min_value!r} > max_value {max_value!r}")
    top = fmt.max_code
    lo = -top if fmt.signed else 0
    if not fmt.has_zero:
        lo = max(lo, 0)
    hi = top
    if min_value is not None:
        lo = max(lo, _ord_bound(min_value, fmt, "toward_positive"))
    if max_value is not None:
        hi = min(hi, _ord_bound(max_value, fmt, "toward_negative"))
    parts = []
    if lo <= hi:
        def decode(k):
            return float(fmt.decode(np.uint64(_code_of(k, fmt))))
        finite = st.integers(lo, hi).map(decode)
        if fmt.has_negative_zero and lo <= 0 <= hi:
            finite = st.one_of(finite, st.just(-0.0))
        if not allow_subnormal and fmt.subnormals:
            finite = finite.filter(lambda v: v == 0 or abs(v) >= fmt.min_normal)
        parts.append(finite)
    if allow_infinity and fmt.has_inf:
        if max_value is None:
            parts.append(st.just(math.inf))
        if min_value is None and fmt.signed:
            parts.append(st.just(-math.inf))
    if allow_nan and fmt.has_nan:
        parts.append(st.just(math.nan))
    if not parts:
        raise ValueError(f"no value of {fmt.name} lies in [{min_value}, {max_value}]")
    return st.one_of(*parts)


def bit_patterns(fmt):
    """Every bit pattern of `fmt`, NaN codes included (Python ints)."""
    fmt = _fmt(fmt)
    return st.integers(0, (1 << fmt.width) - 1)


def near_ties(fmt, rounding="nearest_even"):
    """float64 values where `rounding` into `fmt` decides something.

    Nearest modes: midpoints between neighbouring values of `fmt` and the float64 values
    just either side.  Directed modes (and odd, stochastic): the values of `fmt` and their
    float64 neighbours.  Midpoints are exact for formats narrower than float64.
    """
    fmt = _fmt(fmt)
    nearest = str(getattr(rounding, "value", rounding)).startswith("nearest")
    top = fmt.max_code

    def build(code, side, neg):
        v = float(fmt.decode(np.uint64(code)))
        if nearest and fmt.precision < 53:
            nxt = (float(fmt.decode(np.uint64(code + 1))) if code < top
                   else v + (v - float(fmt.decode(np.uint64(code - 1)))))
            v = v + (nxt - v) / 2
        if side:
            v = float(np.nextafter(v, math.inf if side > 0 else -math.inf))
        return -v if neg and fmt.signed else v
    return st.builds(build, st.integers(0, top), st.sampled_from([-1, 0, 1]), st.booleans())


def value_arrays(fmt, shape, **kwargs):
    """float64 arrays of `shape` whose elements are drawn by :func:`values`."""
    return hnp.arrays(np.float64, shape, elements=values(fmt, **kwargs), fill=st.nothing())


def bit_arrays(fmt, shape):
    """Arrays of bit patterns (``fmt.storage_dtype``) of `shape`."""
    fmt = _fmt(fmt)
    return hnp.arrays(fmt.storage_dtype, shape,
                      elements=st.integers(0, (1 << fmt.width) - 1), fill=st.nothing())
