"""Packing sub-byte bit patterns (int2/int4/uint4/fp4/fp6, any width 1..8) into bytes.

Element order (one rule for every width): the codes along the packed axis form a
little-endian bit stream -- element ``i`` occupies stream bits ``i*b .. i*b + b - 1`` with
its least significant bit first, and stream bit ``j`` is bit ``j % 8`` (LSB = 0) of byte
``j // 8``.  Hence for 4-bit codes element 0 is the low nibble and element 1 the high
nibble of byte 0, which is torch 2.13's ``float4_e2m1fn_x2`` layout
(``torch/headeronly/util/Float4_e2m1fn_x2.h``: "val1 : val0" in bits "7654 : 3210") and
torchao 0.18's ``pack_uint4`` (``torchao/prototype/mx_formats/kernels.py``: even elements
in bits 0-3, odd elements shifted left by 4); 2-bit codes go four to a byte from the low
bits up; 6-bit codes go four to three bytes (element 0 in bits 0-5 of byte 0, element 1 in
bits 6-7 of byte 0 and 0-3 of byte 1, ...).

The packed axis must hold a whole number of bytes (``n * b % 8 == 0``); pad the codes
yourself (e.g. with the format's zero) otherwise -- refcomp does not guess a padding.

>>> import numpy as np
>>> from refcomp.ops import pack, unpack
>>> pack(np.array([0x1, 0x2, 0xF, 0x0], np.uint8), 4).tolist()
[33, 15]
>>> unpack(np.array([33, 15], np.uint8), 4).tolist()
[1, 2, 15, 0]
"""

from __future__ import annotations

import numpy as np

from .. import _jit
from ..formats.intformat import IntFormat, int_format

__all__ = ["pack", "unpack", "pack_int", "unpack_int"]


def _check_bits(bits):
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be an integer, got {bits!r}")
    if not 1 <= int(bits) <= 8:
        raise ValueError(f"bits={int(bits)} is out of range: packing takes widths 1..8")
    return int(bits)


def _axis(ndim, axis):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for an array of {ndim} dimension(s)")
    return int(axis) % ndim


def pack(codes, bits, axis=-1) -> np.ndarray:
    """Pack `bits`-bit codes along `axis` into uint8 (see the module docstring for the order).

    Parameters
    ----------
    codes : array of unsigned (or non-negative) integers below ``2**bits``, shape (..., n, ...)
    bits : int, 1..8
    axis : int

    Returns
    -------
    uint8 array, shape (..., n * bits // 8, ...)
    """
    b = _check_bits(bits)
    c = np.asarray(codes)
    if c.dtype.kind not in "ui":
        raise TypeError(f"codes must be an integer array, got dtype {c.dtype}")
    if c.ndim == 0:
        raise ValueError("codes must have at least one dimension")
    ax = _axis(c.ndim, axis)
    n = c.shape[ax]
    if (n * b) % 8:
        raise ValueError(f"{n} codes of {b} bits along axis {ax} do not fill whole bytes "
                         f"({n * b} bits); pad to a multiple of {8 // np.gcd(b, 8)} codes")
    bad = (c < 0) | (c >= (1 << b)) if c.dtype.kind == "i" else c >= (1 << b)
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"code {c.reshape(-1)[i]} at index {i} does not fit in {b} bits")
    c = np.moveaxis(c, ax, -1).astype(np.uint8)
    if b == 8:
        out = np.ascontiguousarray(c)
    elif b == 4:
        out = c[..., 0::2] | (c[..., 1::2] << np.uint8(4))
    elif b == 2:
        out = (c[..., 0::4] | (c[..., 1::4] << np.uint8(2)) | (c[..., 2::4] << np.uint8(4))
               | (c[..., 3::4] << np.uint8(6)))
    elif b == 1:
        out = np.packbits(c, axis=-1, bitorder="little")
    else:
        stream = (c[..., None] >> np.arange(b, dtype=np.uint8)) & np.uint8(1)
        out = np.packbits(stream.reshape(*c.shape[:-1], n * b), axis=-1, bitorder="little")
    return np.moveaxis(out, -1, ax)


def unpack(packed, bits, axis=-1) -> np.ndarray:
    """Inverse of :func:`pack`: uint8 bytes -> uint8 codes of `bits` bits along `axis`.

    Decode the codes with the format (``IntFormat.decode``, ``FloatFormat.decode``).
    """
    b = _check_bits(bits)
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise TypeError(f"packed must be a uint8 array, got dtype {p.dtype}")
    if p.ndim == 0:
        raise ValueError("packed must have at least one dimension")
    ax = _axis(p.ndim, axis)
    nbytes = p.shape[ax]
    if (nbytes * 8) % b:
        raise ValueError(f"{nbytes} bytes along axis {ax} do not hold a whole number of "
                         f"{b}-bit codes")
    p = np.moveaxis(p, ax, -1)
    m = np.uint8((1 << b) - 1)
    if b == 8:
        out = np.ascontiguousarray(p)
    elif b in (1, 2, 4):
        k = 8 // b
        shifts = (np.arange(k, dtype=np.uint8) * np.uint8(b))
        out = ((p[..., None] >> shifts) & m).reshape(*p.shape[:-1], nbytes * k)
    else:
        stream = np.unpackbits(p, axis=-1, bitorder="little")
        n = nbytes * 8 // b
        groups = stream.reshape(*p.shape[:-1], n, b)
        out = (groups << np.arange(b, dtype=np.uint8)).sum(axis=-1, dtype=np.uint8)
    return np.moveaxis(out, -1, ax)


def _int_fmt(fmt) -> IntFormat:
    return fmt if isinstance(fmt, IntFormat) else int_format(fmt)


def pack_int(values, fmt, axis=-1) -> np.ndarray:
    """Integers of a sub-byte format (``"int4"``, ``"uint2"``, ...) packed into bytes:
    ``pack(fmt.encode(values), fmt.bits, axis)`` (ValueError naming the first value out
    of range).  4-bit formats along the last axis run a fused Numba kernel.

    >>> import numpy as np
    >>> from refcomp.ops import pack_int, unpack_int
    >>> pack_int(np.array([-8, 7, -1, 0], np.int8), "int4").tolist()
    [120, 15]
    >>> unpack_int(np.array([120, 15], np.uint8), "int4").tolist()
    [-8, 7, -1, 0]
    """
    f = _int_fmt(fmt)
    if f.bits > 8:
        raise ValueError(f"pack_int packs formats of 1..8 bits, not {f.name}")
    v = np.asarray(values)
    fast = (_jit.enabled() and f.bits == 4 and v.ndim >= 1 and v.dtype.kind in "iu"
            and v.dtype.itemsize <= 8 and _axis(v.ndim, axis) == v.ndim - 1
            and v.shape[-1] % 2 == 0 and v.flags.c_contiguous and v.dtype != np.uint64)
    if not fast:
        return pack(f.encode(v), f.bits, axis)
    from .._jit.pack_kernels import pack_nibbles
    out = np.empty(v.shape[:-1] + (v.shape[-1] // 2,), dtype=np.uint8)
    bad = pack_nibbles(v.reshape(-1), f.min, f.max, out.reshape(-1))
    if bad >= 0:
        f.encode(v)                                  # raises the twin's error
        raise AssertionError("pack kernel flagged an element the encoder accepts")
    return out


def unpack_int(packed, fmt, axis=-1) -> np.ndarray:
    """Inverse of :func:`pack_int`: int64 integers (uint64 for uint64) of `fmt`."""
    f = _int_fmt(fmt)
    if f.bits > 8:
        raise ValueError(f"unpack_int unpacks formats of 1..8 bits, not {f.name}")
    p = np.asarray(packed)
    fast = (_jit.enabled() and f.bits == 4 and not f.narrow and p.dtype == np.uint8
            and p.ndim >= 1 and _axis(p.ndim, axis) == p.ndim - 1 and p.flags.c_contiguous)
    if not fast:
        return f.decode(unpack(p, f.bits, axis))
    from .._jit.pack_kernels import unpack_nibbles
    out = np.empty(p.shape[:-1] + (2 * p.shape[-1],), dtype=np.int64)
    unpack_nibbles(p.reshape(-1), f.signed, out.reshape(-1))
    return out
