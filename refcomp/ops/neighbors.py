"""next_up, next_down (IEEE 754-2019 5.3.1) and ulp, in any format (NumPy).

For a value of the format, ``next_up`` is the next larger value of the format; for any
other float64 value it is the smallest value of the format above it (the format's
rounding toward positive).  ``next_up(-0) = next_up(+0)`` is the smallest positive value,
``next_up(max)`` is +infinity -- NaN in a format without infinity, and the max itself
(with overflow) in a format with neither -- ``next_up(-inf) = -max``, and a NaN gives the
format's quiet NaN (invalid if it was signalling).  ``next_down(x) = -next_up(-x)``,
computed directly for unsigned formats.
"""

from __future__ import annotations

import numpy as np

from .._inputs import check_bool
from ..formats import codec
from ..formats.codec import widen
from ..formats.catalog import get as get_format
from ..rounding.cast import as_input, cast_bits
from ..rounding.modes import Flag

__all__ = ["next_up", "next_down", "ulp"]


def _step(a, fmt, up: bool, flags: bool):
    flags = check_bool(flags, "flags")
    fmt = get_format(fmt)
    x = widen(as_input(a, "a", allow_int=False)[0])
    shape = x.shape
    x = x.reshape(-1)
    direction = "toward_positive" if up else "toward_negative"
    codes, fl = cast_bits(x, fmt, direction, flags=True)
    codes = codes.astype(np.uint64)
    vals = codec.decode(codes, fmt)
    nan = np.isnan(x)
    onto = ~nan & (vals == x)                   # x is a value of the format: step from it
    out_fl = np.where(nan, fl & np.uint8(Flag.INVALID), np.uint8(0))
    sb = np.uint64(fmt.sign_bit)
    mag = codes & ~sb
    neg = (codes & sb) != 0
    if not fmt.has_zero or not fmt.subnormals:
        first = np.uint64(0 if not fmt.has_zero else 1 << fmt.man_bits)
    else:
        first = np.uint64(1)
    # moving away from zero on this side of zero, or toward it on the other side
    away = (up & ~neg) | (~up & neg) | (vals == 0)
    zero = vals == 0
    zero_sign = np.uint64(0) if up else sb
    stepped_mag = np.where(zero, first,
                           np.where(away, mag + np.uint64(1), mag - np.uint64(1)))
    # below the first positive value of a format without zero there is nothing
    stepped_mag = np.where(~away & ~zero & ~fmt.has_zero & (mag == 0), mag, stepped_mag)
    below_nothing = ~away & ~zero & (not fmt.has_zero) & (mag == 0)
    if fmt.has_zero and fmt.subnormals is False:
        # magnitudes between 0 and the smallest normal do not exist
        stepped_mag = np.where(~away & ~zero & (mag == first), np.uint64(0), stepped_mag)
    sign = np.where(zero, zero_sign, codes & sb)
    if not fmt.has_negative_zero:
        sign = np.where(stepped_mag == 0, np.uint64(0), sign)
    if not fmt.signed:
        sign = np.zeros_like(sign)
    stepped = sign | stepped_mag
    beyond = away & ~zero & (mag == np.uint64(fmt.max_code))
    inf_like = np.isinf(vals)
    res = np.where(onto & ~inf_like, stepped, codes)
    # +-inf: next_up(-inf) = -max, next_up(+inf) = +inf (and mirrored)
    if fmt.has_inf:
        toward_finite = onto & inf_like & ((up & (vals < 0)) | (~up & (vals > 0)))
        res = np.where(toward_finite, (codes & sb) | np.uint64(fmt.max_code), res)
    over = onto & beyond & ~inf_like
    if fmt.has_inf:
        over_code = (codes & sb) | np.uint64(fmt.inf_code)
    elif fmt.has_nan:
        over_code = np.full(codes.shape, np.uint64(fmt.nan_code))
    else:
        over_code = codes
    res = np.where(over, over_code, res)
    out_fl = out_fl | np.where(over & (not fmt.has_inf) & (not fmt.has_nan),
                               np.uint8(Flag.OVERFLOW), np.uint8(0))
    if np.any(onto & below_nothing):
        nothing = onto & below_nothing
        res = np.where(nothing, np.uint64(fmt.nan_code if fmt.has_nan else 0), res)
        out_fl = out_fl | np.where(nothing, np.uint8(Flag.INVALID), np.uint8(0))
    out = codec.decode(res, fmt).reshape(shape)
    out_fl = out_fl.reshape(shape)
    if out.ndim == 0:
        out, out_fl = out[()], out_fl[()]
    return (out, out_fl) if flags else out


def next_up(a, fmt, *, flags=False):
    """Smallest value of `fmt` greater than each element (see the module docstring).

    Examples
    --------
    >>> import refcomp as rc
    >>> rc.ops.next_up([1.0, -0.0, 448.0], "float8_e4m3fn").tolist()
    [1.125, 0.001953125, nan]
    """
    return _step(a, fmt, True, flags)


def next_down(a, fmt, *, flags=False):
    """Largest value of `fmt` less than each element (see the module docstring).

    Examples
    --------
    >>> import refcomp as rc
    >>> rc.ops.next_down([1.0, 0.0], "bfloat16").tolist()
    [0.99609375, -9.183549615799121e-41]
    """
    return _step(a, fmt, False, flags)


def ulp(a, fmt):
    """Unit in the last place of `fmt` at each element: the spacing of the format's values
    in the binade of ``|a|`` (with an unbounded exponent above the largest binade).

    Below the smallest normal it is the subnormal spacing ``2**(emin - man_bits)`` (for a
    format without subnormals, the gap ``2**emin``); ``ulp(+-inf) = inf``, ``ulp(NaN)`` is
    NaN.  Exact float64 values.

    Examples
    --------
    >>> import refcomp as rc
    >>> rc.ops.ulp([1.0, 3.0, 0.0], "float16").tolist()
    [0.0009765625, 0.001953125, 5.960464477539063e-08]
    """
    fmt = get_format(fmt)
    x = widen(as_input(a, "a", allow_int=False)[0])
    ax = np.abs(x)
    with np.errstate(divide="ignore"):
        e = np.where(ax > 0, np.frexp(ax)[1] - 1, fmt.emin)
    e = np.where(np.isfinite(ax), e, 0)
    q = np.maximum(e, fmt.emin) - fmt.man_bits
    if not fmt.subnormals:
        q = np.where(e < fmt.emin, fmt.emin, q)
    out = np.ldexp(1.0, q.astype(np.int32))
    out = np.where(np.isinf(ax), np.inf, out)
    out = np.where(np.isnan(x), np.nan, out)
    return out[()] if out.ndim == 0 else out
