"""Correctly rounded arithmetic, conversions, comparisons and neighbours, in any format.

Every operation takes any :class:`~refcomp.FloatFormat` (float64 included) and any
rounding mode, and returns the exact real result rounded once into the format, with IEEE
754-2019 flags on request (``flags=True``).  Special values follow x86 SSE (Berkeley
SoftFloat 3e, 8086-SSE specialisation) unless a profile says otherwise.

>>> import refcomp as rc
>>> rc.ops.lt([1.0, float("nan")], 2.0, flags=True)
(array([ True, False]), array([ 0, 16], dtype=uint8))
"""

from .arith import add, div, fma, mul, sqrt, sub
from .compare import eq, ge, gt, le, lt, ne, unordered
from .convert import round_to_integral, to_int
from .neighbors import next_down, next_up, ulp

__all__ = ["add", "sub", "mul", "div", "sqrt", "fma", "round_to_integral", "to_int", "eq",
           "ne", "lt", "le", "gt", "ge", "unordered", "next_up", "next_down", "ulp"]
