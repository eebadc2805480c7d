"""Correctly rounded arithmetic, conversions, comparisons and neighbours, in any format.

Every operation takes any :class:`~refcomp.FloatFormat` (float64 included) and any
rounding mode, and returns the exact real result rounded once into the format, with IEEE
754-2019 flags on request (``flags=True``).  Special values follow x86 SSE (Berkeley
SoftFloat 3e, 8086-SSE specialisation) unless a profile says otherwise.
"""

from .arith import add, div, fma, mul, sqrt, sub

__all__ = ["add", "sub", "mul", "div", "sqrt", "fma"]
