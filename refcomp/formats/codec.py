"""encode / decode: bit patterns <-> exact float64 values (NumPy).

`decode` is exact for every code of every format (all values of a FloatFormat are float64
values, which the format checks at construction).  `encode` is the exact inverse on the
values a format can represent; it never rounds and raises for anything else (use
:func:`refcomp.cast_bits` to round).  NaN payloads map between a format and float64 by
aligning the mantissa fields at their top (IEEE 754-2019 6.2.3 and x86 SSE conversions),
so every NaN code survives ``encode(decode(bits))``.
"""

from __future__ import annotations

import numpy as np

from .._bits import bit_length
from .._inputs import to_array
from .floatformat import FloatFormat, Specials

__all__ = ["decode", "encode", "as_bits_array", "widen"]

_QUIET64 = np.uint64(1 << 51)
_EXP64 = np.uint64(0x7FF << 52)


def _fmt(fmt) -> FloatFormat:
    if isinstance(fmt, FloatFormat):
        return fmt
    from .catalog import get
    return get(fmt)


def as_bits_array(bits, fmt: FloatFormat) -> np.ndarray:
    """Validate bit patterns: integers in ``[0, 2**width)``; returned as uint64."""
    arr = np.asarray(bits)
    if arr.dtype == object or (arr.dtype.kind == "f" and not isinstance(bits, np.ndarray)):
        flat = np.asarray(bits, dtype=object).ravel()
        ints = [v for v in flat if isinstance(v, (int, np.integer))
                and not isinstance(v, (bool, np.bool_))]
        if len(ints) == flat.size:                 # Python ints NumPy could not type
            big = [v for v in ints if not 0 <= int(v) < 1 << fmt.width]
            if big:
                raise ValueError(f"bit pattern {int(big[0])} does not fit {fmt.name}: codes "
                                 f"are integers in [0, 2**{fmt.width})")
            arr = np.array([int(v) for v in ints], dtype=np.uint64).reshape(np.shape(bits))
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.uint64)
    if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        raise TypeError(f"bit patterns must be integers, got dtype {arr.dtype}"
                        + (f" (e.g. {arr.ravel()[0]!r})" if arr.size else ""))
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        bad = arr[arr < 0].flat[0]
        raise ValueError(f"bit pattern {bad} is negative; {fmt.name} codes are unsigned")
    u = arr.astype(np.uint64)
    limit = np.uint64((1 << fmt.width) - 1)
    if u.size and u.max() > limit:
        bad = u[u > limit].flat[0]
        raise ValueError(f"bit pattern {int(bad):#x} does not fit {fmt.name}: codes have "
                         f"{fmt.width} bits (at most {int(limit):#x})")
    return u


def decode(bits, fmt) -> np.ndarray:
    """Exact float64 values of bit patterns.

    Parameters
    ----------
    bits : array_like of int
        Codes, right-aligned, ``0 <= bits < 2**fmt.width``.
    fmt : FloatFormat or str

    Returns
    -------
    numpy.ndarray of float64, same shape.  NaN codes decode to float64 NaNs with the same
    sign and the payload aligned at the top of the mantissa (a payload of zero bits,
    as in fn/fnuz/E8M0 NaNs, gives the quiet bit alone).

    Examples
    --------
    >>> import refcomp as rc
    >>> rc.formats.float8_e4m3fn.decode([0x7E, 0x01, 0xB8]).tolist()
    [448.0, 0.001953125, -1.0]
    """
    fmt = _fmt(fmt)
    u = as_bits_array(bits, fmt)
    m = fmt.man_bits
    neg = (u & np.uint64(fmt.sign_bit)) != 0
    mag = u & np.uint64(((1 << fmt.width) - 1) & ~fmt.sign_bit)
    field = (mag >> np.uint64(m)).astype(np.int64)
    frac = mag & np.uint64((1 << m) - 1)
    if fmt.has_zero:
        sub = field == 0
        n = np.where(sub, frac if fmt.subnormals else np.uint64(0),
                     frac | np.uint64(1 << m))
        q = np.where(sub, fmt.emin, field - fmt.bias) - m
    else:
        n = frac | np.uint64(1 << m)
        q = field - fmt.bias - m
    nan = _nan_mask(u, mag, fmt)
    special = nan | (mag == np.uint64(fmt.inf_code)) if fmt.has_inf else nan
    q = np.where(special, 0, q)                    # keep ldexp in range for Inf/NaN codes
    vals = np.ldexp(n.astype(np.float64), q.astype(np.int32))
    vals = np.where(neg, -vals, vals)
    if fmt.has_inf:
        inf = mag == np.uint64(fmt.inf_code)
        vals = np.where(inf, np.where(neg, -np.inf, np.inf), vals)
    if np.any(nan):
        payload = frac << np.uint64(52 - m)
        payload = np.where(payload == 0, _QUIET64, payload)
        nbits = (neg.astype(np.uint64) << np.uint64(63)) | _EXP64 | payload
        vals = np.where(nan, nbits.view(np.float64), vals)
    return vals


def _nan_mask(u, mag, fmt: FloatFormat):
    if fmt.specials is Specials.IEEE:
        return mag > np.uint64(fmt.inf_code)
    if fmt.specials is Specials.FN:
        return mag == np.uint64((1 << (fmt.exp_bits + fmt.man_bits)) - 1)
    if fmt.specials is Specials.FNUZ:
        return u == np.uint64(fmt.sign_bit)
    return np.zeros(u.shape, dtype=bool)


def encode(values, fmt) -> np.ndarray:
    """Bit patterns of values that the format represents exactly.

    Parameters
    ----------
    values : array_like of float
        float16/32/64 values (Python floats and ints that are exact in float64 too).
    fmt : FloatFormat or str

    Returns
    -------
    numpy.ndarray of ``fmt.storage_dtype``.  NaNs keep their sign (fnuz: the one NaN) and
    the leading bits of their payload; a payload that would vanish becomes the quiet bit.
    -0.0 encodes as +0 where the format has no negative zero.

    Raises
    ------
    ValueError
        For the first value the format cannot represent exactly (use ``refcomp.cast_bits``
        to round), and for infinities / NaNs in formats without them.

    Examples
    --------
    >>> import refcomp as rc
    >>> rc.formats.bfloat16.encode([1.0, -2.0]).tolist()
    [16256, 49152]
    """
    fmt = _fmt(fmt)
    x = _as_float64(values)
    u = x.view(np.uint64) if x.flags.c_contiguous else x.copy().view(np.uint64)
    neg = (u >> np.uint64(63)) != 0
    E = ((u >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    M = u & np.uint64((1 << 52) - 1)
    m = fmt.man_bits
    out = np.zeros(x.shape, dtype=np.uint64)
    sign = np.where(neg, np.uint64(fmt.sign_bit), np.uint64(0))

    nan = (E == 0x7FF) & (M != 0)
    inf = (E == 0x7FF) & (M == 0)
    zero = (E == 0) & (M == 0)
    fin = ~(nan | inf | zero)
    if np.any(nan):
        if not fmt.has_nan:
            _reject(x, nan, fmt, "has no NaN")
        if fmt.specials is Specials.IEEE:
            pay = M >> np.uint64(52 - m)
            pay = np.where(pay == 0, np.uint64(1 << (m - 1)), pay)
            code = sign | np.uint64(fmt.inf_code) | pay
        elif fmt.specials is Specials.FN:
            code = sign | np.uint64((1 << (fmt.exp_bits + m)) - 1)
        else:
            code = np.full(x.shape, np.uint64(fmt.sign_bit))
        out = np.where(nan, code, out)
    if np.any(inf):
        if not fmt.has_inf:
            _reject(x, inf, fmt, "has no infinity")
        _reject(x, inf & neg & (not fmt.signed), fmt, "is unsigned")
        out = np.where(inf, sign | np.uint64(fmt.inf_code), out)
    if np.any(zero):
        if not fmt.has_zero:
            _reject(x, zero, fmt, "has no zero")
        if fmt.has_negative_zero:
            out = np.where(zero, sign, out)
    if np.any(fin):
        _reject(x, fin & neg & (not fmt.signed), fmt, "is unsigned")
        sig = np.where(E == 0, M, M | np.uint64(1 << 52))
        lsb = np.where(E == 0, 1, E) - 1075
        top = lsb + bit_length(sig) - 1
        qe = np.maximum(top, fmt.emin) - m
        sh = qe - lsb
        lost = np.where(sh > 0, sig & ((np.uint64(1) << np.clip(sh, 0, 63).astype(np.uint64))
                                       - np.uint64(1)), np.uint64(0))
        n = np.where(sh > 0, sig >> np.clip(sh, 0, 63).astype(np.uint64),
                     sig << np.clip(-sh, 0, 63).astype(np.uint64))
        bad = fin & ((lost != 0) | (top > fmt.emax) | (sh > 60))
        if not fmt.subnormals:
            bad |= fin & (top < fmt.emin)
        expo = (np.maximum(top - fmt.emin, 0).astype(np.uint64) << np.uint64(m))
        code = n + expo - (np.uint64(0) if fmt.has_zero else np.uint64(1 << m))
        bad |= fin & (code > np.uint64(fmt.max_code))
        _reject(x, bad, fmt, "cannot represent it exactly")
        out = np.where(fin, sign | code, out)
    return out.astype(fmt.storage_dtype)


_IEEE_OF_DTYPE = {2: ("float16", np.uint16), 4: ("float32", np.uint32)}


def widen(arr: np.ndarray) -> np.ndarray:
    """float16/32/64 values as float64, exactly -- signalling NaNs included.

    ``astype(np.float64)`` quiets signalling NaNs (the hardware conversion does, and NumPy
    warns); decoding the bit patterns keeps them signalling, with the payload aligned at
    the top of the float64 mantissa.
    """
    if arr.dtype == np.float64:
        return arr
    name, uint = _IEEE_OF_DTYPE[arr.dtype.itemsize]
    from .catalog import CATALOG
    bits = np.ascontiguousarray(arr).view(uint).reshape(arr.shape)   # keeps 0-d shapes
    return decode(bits, CATALOG[name])


def _as_float64(values) -> np.ndarray:
    arr = to_array(values, "values to encode")
    if arr.dtype.kind == "f" and arr.dtype.itemsize in (2, 4, 8):
        return widen(arr)
    if arr.dtype.kind in "iu":
        # exact in float64 iff the integer has at most 53 significant bits
        mag = np.where(arr < 0, -(arr.astype(np.int64).astype(np.uint64)),
                       arr.astype(np.uint64)) if arr.dtype.kind == "i" else \
            arr.astype(np.uint64)
        span = bit_length(mag) - bit_length(mag & (~mag + np.uint64(1)))
        bad = span >= 53
        if np.any(bad):
            raise ValueError(f"integer {arr[bad].flat[0]} is not exact in float64; round "
                             "it with refcomp.cast_bits")
        return np.where(arr < 0, -mag.astype(np.float64), mag.astype(np.float64)) \
            if arr.dtype.kind == "i" else mag.astype(np.float64)
    raise TypeError(f"values to encode must be a float16/32/64 or integer array, "
                    f"got dtype {arr.dtype}")


def _reject(x, mask, fmt: FloatFormat, why: str) -> None:
    mask = np.asarray(mask, dtype=bool)
    if np.any(mask):
        bad = x[mask].flat[0] if x.ndim else x
        raise ValueError(f"value {float(bad)!r} cannot be encoded: {fmt.name} {why}; "
                         "use refcomp.cast_bits(values, fmt, rounding=...) to round")
