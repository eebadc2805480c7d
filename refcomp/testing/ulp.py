"""Distances in units in the last place of a format, and assertions built on them.

Bit patterns are ordered as integers (numpy.testing's ``nulp`` idea, for every format):
a sign-magnitude code maps to ``-magnitude`` when its sign bit is set, so consecutive values
of the format are consecutive integers, +0 and -0 are both 0, and infinity is one step past
the largest finite value.
"""

from __future__ import annotations

import numpy as np

from ..formats import catalog
from ..formats.floatformat import FloatFormat

__all__ = ["as_bits", "ordinal", "ulp_distance", "assert_bits_equal", "assert_ulp_within",
           "describe_bits"]


def _fmt(fmt) -> FloatFormat:
    return fmt if isinstance(fmt, FloatFormat) else catalog.get(fmt)


def as_bits(x, fmt) -> np.ndarray:
    """Bit patterns of `fmt` as uint64: unsigned-integer arrays are taken as bit patterns,
    float arrays as values (encoded exactly; ValueError for a value the format lacks)."""
    fmt = _fmt(fmt)
    arr = np.asarray(x)
    if arr.dtype.kind == "u":
        if arr.size and int(arr.max()) >= 1 << fmt.width:
            bad = int(arr.ravel()[np.argmax(arr.ravel() >= np.uint64(1 << fmt.width))])
            raise ValueError(f"bit pattern {bad:#x} is out of range for {fmt.name} "
                             f"({fmt.width} bits)")
        return arr.astype(np.uint64)
    if arr.dtype.kind == "f":
        return np.asarray(fmt.encode(arr)).astype(np.uint64)
    raise TypeError(f"expected unsigned bit patterns or float values, got dtype {arr.dtype}")


def _is_nan(bits: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    return np.isnan(fmt.decode(bits))


def ordinal(bits: np.ndarray, fmt) -> np.ndarray:
    """Integers in value order (int64); NaN codes give arbitrary integers (mask them)."""
    fmt = _fmt(fmt)
    bits = np.asarray(bits, np.uint64)
    if not fmt.signed:
        return bits.astype(np.int64)
    sign = np.uint64(fmt.sign_bit)
    mag = (bits & ~sign).astype(np.int64)
    return np.where((bits & sign) != 0, -mag, mag)


def ulp_distance(a, b, fmt) -> np.ndarray:
    """Elementwise distance between `a` and `b` in steps of `fmt` (float64 array).

    0 where both are NaN, inf where exactly one is NaN.  `a`, `b`: bit patterns (unsigned
    integer arrays) or values of the format (float arrays); broadcast together.

    >>> import numpy as np, refcomp as rc
    >>> rc.testing.ulp_distance(np.float64([1.0, 1.0]), np.float64([1.0078125, -0.0]),
    ...                         "bfloat16").tolist()
    [1.0, 16256.0]
    """
    fmt = _fmt(fmt)
    x, y = np.broadcast_arrays(as_bits(a, fmt), as_bits(b, fmt))
    d = np.abs(ordinal(x, fmt) - ordinal(y, fmt)).astype(np.float64)
    nx, ny = _is_nan(x, fmt), _is_nan(y, fmt)
    d = np.where(nx | ny, np.where(nx & ny, 0.0, np.inf), d)
    return d


def describe_bits(code: int, fmt) -> str:
    fmt = _fmt(fmt)
    digits = (fmt.width + 3) // 4
    return f"0x{int(code):0{digits}x} ({float(fmt.decode(np.uint64(code)))!r})"


def _report(msg, idx, x, y, fmt, dist, limit=5):
    lines = [msg]
    for i in idx[:limit]:
        lines.append(f"  [{i}] actual {describe_bits(x[i], fmt)}  expected "
                     f"{describe_bits(y[i], fmt)}  ({dist[i]:g} ulp)")
    if idx.size > limit:
        lines.append(f"  ... {idx.size - limit} more")
    return "\n".join(lines)


def assert_bits_equal(actual, expected, fmt, *, nan_bits: bool = True) -> None:
    """Assert identical bit patterns (NaN by NaN-ness when ``nan_bits=False``).

    Raises AssertionError showing the first differences as bits, values and ULP distance.
    """
    fmt = _fmt(fmt)
    x, y = (np.ravel(v) for v in np.broadcast_arrays(as_bits(actual, fmt),
                                                     as_bits(expected, fmt)))
    bad = x != y
    if not nan_bits:
        bad &= ~(_is_nan(x, fmt) & _is_nan(y, fmt))
    idx = np.flatnonzero(bad)
    if idx.size:
        raise AssertionError(_report(f"{idx.size} of {x.size} {fmt.name} element(s) differ:",
                                     idx, x, y, fmt, ulp_distance(x, y, fmt)))


def assert_ulp_within(actual, expected, fmt, max_ulp) -> None:
    """Assert ``ulp_distance(actual, expected, fmt) <= max_ulp`` everywhere."""
    fmt = _fmt(fmt)
    if not (isinstance(max_ulp, (int, float, np.integer, np.floating)) and max_ulp >= 0):
        raise ValueError(f"max_ulp must be a number >= 0, got {max_ulp!r}")
    x, y = (np.ravel(v) for v in np.broadcast_arrays(as_bits(actual, fmt),
                                                     as_bits(expected, fmt)))
    d = ulp_distance(x, y, fmt)
    idx = np.flatnonzero(d > max_ulp)
    if idx.size:
        raise AssertionError(_report(f"{idx.size} of {x.size} {fmt.name} element(s) are "
                                     f"more than {max_ulp} ulp apart (max {d.max():g}):",
                                     idx, x, y, fmt, d))
