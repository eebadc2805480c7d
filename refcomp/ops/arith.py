"""Correctly rounded +, -, *, /, sqrt and fused multiply-add, in any format and mode.

Each operation returns ``round(exact result)``: the exact real result of the operation on
the given float values (float16/32/64; they need not belong to the format) rounded once
into `fmt` by the rounding core, with IEEE 754-2019 flags on request.  Special values and
NaN propagation follow x86 SSE (Berkeley SoftFloat 3e, 8086-SSE specialisation); see
:mod:`refcomp.ops.exact`.
"""

from __future__ import annotations

from ._run import run_op

__all__ = ["add", "sub", "mul", "div", "sqrt", "fma"]

_COMMON = """
    fmt : FloatFormat or str
        Result format (any; float64 included).
    rounding : str or Rounding
        Any of the seven modes (``nearest_even`` default; ``stochastic`` needs `rng`).
    flags : bool
        Also return the IEEE flags (uint8 array of :class:`refcomp.Flag` bits).
    tininess : {"after", "before"}
        Underflow detection (IEEE 754-2019 7.5).
    overflow, subnormals, rng, random_bits, profile, dtype
        As in :func:`refcomp.cast` (``subnormals="daz"`` reads operands below the format's
        smallest normal as zeros; ``dtype`` narrows the returned values' dtype).

    Returns
    -------
    values : array of `dtype` (float64 by default; NumPy scalar for scalar inputs);
        ``(values, flags)`` with flags.
"""


def _doc(summary, params, example):
    def deco(fn):
        fn.__doc__ = f"{summary}\n\n    Parameters\n    ----------\n{params}{_COMMON}" \
                     f"\n    Examples\n    --------\n{example}"
        return fn
    return deco


_AB = """    a, b : array_like of float
        Operands (broadcast together).
"""


@_doc("Correctly rounded a + b.", _AB, """    >>> import refcomp as rc
    >>> float(rc.ops.add(1.0, 2.0 ** -8, "bfloat16"))   # a tie: to even
    1.0
    >>> float(rc.ops.add(1.0, 2.0 ** -8, "bfloat16", "nearest_away"))
    1.0078125
""")
def add(a, b, fmt, rounding="nearest_even", *, flags=False, tininess="after", overflow=None,
        subnormals=None, rng=None, random_bits=None, profile=None, dtype=None):
    return run_op("add", (a, b), ("a", "b"), fmt, rounding, overflow, subnormals, rng, flags,
                  tininess, profile, random_bits, dtype)


@_doc("Correctly rounded a - b.", _AB, """    >>> import refcomp as rc
    >>> float(rc.ops.sub(1.0, 1.0, "float16", "toward_negative"))
    -0.0
""")
def sub(a, b, fmt, rounding="nearest_even", *, flags=False, tininess="after", overflow=None,
        subnormals=None, rng=None, random_bits=None, profile=None, dtype=None):
    return run_op("sub", (a, b), ("a", "b"), fmt, rounding, overflow, subnormals, rng, flags,
                  tininess, profile, random_bits, dtype)


@_doc("Correctly rounded a * b.", _AB, """    >>> import refcomp as rc
    >>> v, fl = rc.ops.mul(300.0, 2.0, "float8_e4m3fn", flags=True)
    >>> float(v), rc.flag_names(fl)
    (nan, 'inexact|overflow')
""")
def mul(a, b, fmt, rounding="nearest_even", *, flags=False, tininess="after", overflow=None,
        subnormals=None, rng=None, random_bits=None, profile=None, dtype=None):
    return run_op("mul", (a, b), ("a", "b"), fmt, rounding, overflow, subnormals, rng, flags,
                  tininess, profile, random_bits, dtype)


@_doc("Correctly rounded a / b (x/0 gives infinity and divide_by_zero).", _AB,
      """    >>> import refcomp as rc
    >>> float(rc.ops.div(1.0, 3.0, "float16", "toward_zero"))
    0.333251953125
""")
def div(a, b, fmt, rounding="nearest_even", *, flags=False, tininess="after", overflow=None,
        subnormals=None, rng=None, random_bits=None, profile=None, dtype=None):
    return run_op("div", (a, b), ("a", "b"), fmt, rounding, overflow, subnormals, rng, flags,
                  tininess, profile, random_bits, dtype)


@_doc("Correctly rounded square root (negative operands: invalid, default NaN).",
      """    a : array_like of float
""", """    >>> import refcomp as rc
    >>> float(rc.ops.sqrt(2.0, "bfloat16"))
    1.4140625
""")
def sqrt(a, fmt, rounding="nearest_even", *, flags=False, tininess="after", overflow=None,
         subnormals=None, rng=None, random_bits=None, profile=None, dtype=None):
    return run_op("sqrt", (a,), ("a",), fmt, rounding, overflow, subnormals, rng, flags,
                  tininess, profile, random_bits, dtype)


@_doc("Fused multiply-add a * b + c with a single rounding.",
      """    a, b, c : array_like of float
        Operands (broadcast together).
""", """    >>> import refcomp as rc
    >>> x = 1.0 + 2.0 ** -7                  # a bfloat16 value
    >>> float(rc.ops.fma(x, x, -1.0, "bfloat16"))   # exact 2**-6 + 2**-14, rounded once
    0.015625
""")
def fma(a, b, c, fmt, rounding="nearest_even", *, flags=False, tininess="after",
        overflow=None, subnormals=None, rng=None, random_bits=None, profile=None,
        dtype=None):
    return run_op("fma", (a, b, c), ("a", "b", "c"), fmt, rounding, overflow, subnormals, rng,
                  flags, tininess, profile, random_bits, dtype)
