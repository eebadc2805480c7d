"""General Numba cast kernels: unpack, round, encode and optionally decode, in one pass.

Twins of refcomp.rounding.cast.np_cast_codes followed by formats.codec.decode, for every
cast the fast kernels (fast_cast.py) do not cover: flags, flushing, DAZ, integer inputs,
formats without zero or subnormals, backend quirks.  One kernel per input kind, compiled
once (stochastic rounding, flags and value output are run-time switches); it writes the
caller's float64 output through a uint64 view (NaN payloads stay exact), or codes through
a chunk-sized uint64 buffer, so memory stays bounded.

Stochastic rounding: element i (C order) uses word ``splitmix64(key + (i + 1) * GAMMA)``,
the i-th output of SplitMix64 seeded with ``key`` -- one word that the caller draws from
the user's generator.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import CACHE

from ..formats.catalog import get as get_format
from ..rounding.params import target_params
from ..rounding.unpack import bits_view
from .fast_cast import fast_cast, fast_params, slow_indices
from .core import (_DAZ, _VIA32, GAMMA, U64, Z, cast_one, config, decode_bits, sel,
                   splitmix64, unpack_float, unpack_mag)

__all__ = ["run_cast", "run_fast", "fast_plan", "POW2"]

#: 2**k for k in [-1074, 1023], exact: the decode step multiplies by these
POW2 = np.ldexp(1.0, np.arange(-1074, 1024))
_F32 = get_format("float32")
_P32 = target_params(_F32)
_Q32 = fast_params(_P32, 11, 52, _F32)
#: elements per call of the general kernel (bounds the code buffer)
CHUNK = 1 << 16


@njit(cache=CACHE)
def cast_float_kernel(xb, in_e, in_m, p, key, start, sr, out, want_values, flags, amb,
                      pow2):
    """Cast IEEE bit patterns (uint16/32/64) into the target; `amb` marks the stochastic
    decisions left to the exact slow path.

    The run-time switches (`sr`, `want_values`) only choose between values computed for
    every element, so the loop has no branch and vectorises; flags are always written."""
    c = config(p)
    daz = p[_DAZ] != 0
    for i in range(xb.size):
        cls, s, e, sig, lsb, sticky, pay = unpack_float(U64(xb[i]), in_e, in_m, daz)
        w = sel(sr, splitmix64(key + U64(start + i + 1) * GAMMA), Z)
        code, fl, a = cast_one(cls, s, e, sig, lsb, sticky, pay, c, w)
        out[i] = sel(want_values, decode_bits(code, c, pow2), code)
        flags[i] = fl
        amb[i] = np.uint8(a)


@njit(cache=CACHE)
def cast_int_kernel(x, signed, p, key, start, sr, out, want_values, flags, amb, pow2):
    """Cast an integer array (any width; `signed` says how to read it)."""
    c = config(p)
    for i in range(x.size):
        if signed:
            v = np.int64(x[i])
            neg = v < 0
            mag = sel(neg, ~U64(v) + U64(1), U64(v))
        else:
            neg = False
            mag = U64(x[i])
        cls, s, e, sig, lsb, sticky, pay = unpack_mag(neg, mag)
        w = sel(sr, splitmix64(key + U64(start + i + 1) * GAMMA), Z)
        code, fl, a = cast_one(cls, s, e, sig, lsb, sticky, pay, c, w)
        out[i] = sel(want_values, decode_bits(code, c, pow2), code)
        flags[i] = fl
        amb[i] = np.uint8(a)


def run_cast(flat, layout, p, key, start, out, want_values, flags):
    """Run the general kernel on a flat contiguous input; return ambiguous indices.

    ``key`` is the stochastic seed word (None for deterministic modes); ``out`` receives
    float64 values or codes (any unsigned dtype).  Double-rounding profiles first round
    float64 inputs to float32 with the fast kernel, as their backends do.
    """
    sr = key is not None
    want_flags = flags is not None
    k64 = np.uint64(key if sr else 0)
    ambs = []
    buf = np.empty(min(CHUNK, flat.size), dtype=np.uint64)
    amb = np.empty(min(CHUNK, flat.size), dtype=np.uint8)
    fbuf = np.empty(0 if want_flags else min(CHUNK, flat.size), dtype=np.uint8)
    for a in range(0, flat.size, CHUNK):
        b = min(flat.size, a + CHUNK)
        seg, lay, pre = flat[a:b], layout, None
        if layout is not None and p[_VIA32] and layout[1] == 52:
            seg, pre = _to_float32(seg, want_flags)
            lay = (8, 23)
        o = out.view(np.uint64)[a:b] if want_values else buf[:b - a]
        fl = flags[a:b] if want_flags else fbuf[:b - a]
        am = amb[:b - a]
        if lay is None:
            cast_int_kernel(seg, seg.dtype.kind == "i", p, k64, a, sr, o, want_values, fl,
                            am, POW2)
        else:
            cast_float_kernel(bits_view(seg), lay[0], lay[1], p, k64, a, sr, o,
                              want_values, fl, am, POW2)
        if not want_values:
            out[a:b] = o
        if pre is not None:
            fl |= pre
        if sr:
            ambs.append(np.flatnonzero(am) + a)
    return np.concatenate(ambs) if ambs else np.zeros(0, dtype=np.int64)


def _to_float32(seg, with_flags):
    """float64 -> float32 with round-to-nearest-even (x86 cvtsd2ss), and its flags."""
    f32 = np.empty(seg.size, dtype=np.float32)
    fast_cast(seg, (11, 52), _Q32, f32, 1, None, POW2)
    if not with_flags:
        return f32, None
    pre = np.empty(seg.size, dtype=np.uint8)
    cast_float_kernel(bits_view(seg), 11, 52, _P32, np.uint64(0), 0, False,
                      np.empty(seg.size, dtype=np.uint64), False, pre,
                      np.empty(seg.size, dtype=np.uint8), POW2)
    return f32, pre


def fast_plan(p, layout, fmt):
    """The fast kernels' scalars when the fast path applies, else None."""
    return fast_params(p, layout[0], layout[1], fmt)


def run_fast(flat, layout, plan, out, out_kind, key, vshift=0):
    """Run the fast kernel; return indices the general path must redo."""
    nslow = fast_cast(flat, layout, plan, out, out_kind, key, POW2, vshift)
    return slow_indices(flat, layout, plan) if nslow else np.zeros(0, dtype=np.int64)
