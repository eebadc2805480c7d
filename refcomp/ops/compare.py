"""IEEE 754-2019 comparisons (5.11), with the invalid flag of quiet and signalling predicates.

Values are compared exactly (float64 comparisons are exact); -0 equals +0; any NaN makes
a comparison unordered.  Quiet predicates (``eq``, ``ne``, ``unordered``) raise invalid
only for signalling NaNs; signalling ones (``lt``, ``le``, ``gt``, ``ge``) for every NaN,
as SoftFloat's f64_eq / f64_lt and their _quiet / _signaling variants.  Pass
``signaling=`` to choose the other behaviour.
"""

from __future__ import annotations

import numpy as np

from .._inputs import check_bool
from ..formats.codec import widen
from ..rounding.cast import as_input
from ..rounding.modes import Flag

__all__ = ["eq", "ne", "lt", "le", "gt", "ge", "unordered"]

_QUIET = np.uint64(1 << 51)


def _compare(a, b, op, signaling, flags):
    signaling, flags = check_bool(signaling, "signaling"), check_bool(flags, "flags")
    x = widen(as_input(a, "a", allow_int=False)[0])
    y = widen(as_input(b, "b", allow_int=False)[0])
    x, y = np.broadcast_arrays(x, y)
    xn, yn = np.isnan(x), np.isnan(y)
    with np.errstate(invalid="ignore"):
        res = op(x, y)
    if signaling:
        inv = xn | yn
    else:
        snan = lambda v, n: n & ((np.ascontiguousarray(v).view(np.uint64) & _QUIET) == 0)
        inv = snan(x, xn) | snan(y, yn)
    fl = np.where(inv, np.uint8(Flag.INVALID), np.uint8(0))
    if res.ndim == 0:
        res, fl = res[()], fl[()]
    return (res, fl) if flags else res


def _doc(name, rel, default):
    return (f"``a {rel} b`` elementwise (IEEE 754-2019 compare{name}); "
            f"{'signalling' if default else 'quiet'} by default.\n\n"
            "    Parameters\n    ----------\n    a, b : array_like of float\n"
            "    signaling : bool\n        Raise invalid for quiet NaNs too.\n"
            "    flags : bool\n        Also return the flags (invalid only).\n\n"
            "    Returns\n    -------\n    bool array, and flags with ``flags=True``.\n")


def eq(a, b, *, signaling=False, flags=False):
    return _compare(a, b, np.equal, signaling, flags)


def ne(a, b, *, signaling=False, flags=False):
    return _compare(a, b, np.not_equal, signaling, flags)


def lt(a, b, *, signaling=True, flags=False):
    return _compare(a, b, np.less, signaling, flags)


def le(a, b, *, signaling=True, flags=False):
    return _compare(a, b, np.less_equal, signaling, flags)


def gt(a, b, *, signaling=True, flags=False):
    return _compare(a, b, np.greater, signaling, flags)


def ge(a, b, *, signaling=True, flags=False):
    return _compare(a, b, np.greater_equal, signaling, flags)


def unordered(a, b, *, signaling=False, flags=False):
    return _compare(a, b, lambda x, y: np.isnan(x) | np.isnan(y), signaling, flags)


for _f, _rel, _name, _sig in ((eq, "==", "QuietEqual", False),
                              (ne, "!=", "QuietNotEqual", False),
                              (lt, "<", "SignalingLess", True),
                              (le, "<=", "SignalingLessEqual", True),
                              (gt, ">", "SignalingGreater", True),
                              (ge, ">=", "SignalingGreaterEqual", True),
                              (unordered, "unordered", "QuietUnordered", False)):
    _f.__doc__ = _doc(_name, _rel, _sig)
