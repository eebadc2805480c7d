"""Numba cast kernels: unpack, (double-)round, encode and optionally decode, in one pass.

Twins of refcomp.rounding.cast.np_cast_codes followed by formats.codec.decode.  A kernel
allocates nothing: it writes the caller's output array (codes in the format's storage
dtype, or float64 values through a uint64 view so that NaN payloads are exact) and flags.
One variant is compiled per (input kind, stochastic, flags wanted, values wanted), so that
these choices are compile-time constants and the loop vectorises; variants compile on
first use and are cached on disk by Numba.

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
from .core import (_DAZ, _VIA32, GAMMA, U64, Z, cast_one, config, decode_bits, unpack_float, unpack_mag,
                   splitmix64)

__all__ = ["run_cast", "run_fast", "fast_plan", "POW2"]

#: 2**k for k in [-1074, 1023], exact: the decode step multiplies by these
POW2 = np.ldexp(1.0, np.arange(-1074, 1024))
_P32 = target_params(get_format("float32"))
_KERNELS: dict = {}


def _make_float_kernel(sr: bool, want_flags: bool, want_values: bool):
    @njit(cache=CACHE)
    def kernel(xb, in_e, in_m, p, p32, key, start, out, flags, amb_idx, pow2):
        c = config(p)
        c32 = config(p32)
        via32 = p[_VIA32] != 0 and in_m == 52
        daz = p[_DAZ] != 0
        namb = 0
        for i in range(xb.size):
            cls, s, e, sig, lsb, sticky, pay = unpack_float(U64(xb[i]), in_e, in_m, daz)
            pre = np.uint8(0)
            if via32:
                c32code, pre, _a = cast_one(cls, s, e, sig, lsb, sticky, pay, c32, Z)
                cls, s, e, sig, lsb, sticky, pay = unpack_float(c32code, 8, 23, False)
            w = splitmix64(key + U64(start + i + 1) * GAMMA) if sr else Z
            code, fl, amb = cast_one(cls, s, e, sig, lsb, sticky, pay, c, w)
            if want_values:
                out[i] = decode_bits(code, c, pow2)
            else:
                out[i] = code
            if want_flags:
                flags[i] = fl | pre
            if sr:
                amb_idx[namb] = i           # branch-free compaction of ambiguous indices
                namb += np.int64(amb)
        return namb
    return kernel


def _make_int_kernel(sr: bool, want_flags: bool, want_values: bool):
    @njit(cache=CACHE)
    def kernel(x, signed, p, key, start, out, flags, amb_idx, pow2):
        c = config(p)
        namb = 0
        for i in range(x.size):
            if signed:
                v = np.int64(x[i])
                neg = v < 0
                mag = (~U64(v) + U64(1)) if neg else U64(v)
            else:
                neg = False
                mag = U64(x[i])
            cls, s, e, sig, lsb, sticky, pay = unpack_mag(neg, mag)
            w = splitmix64(key + U64(start + i + 1) * GAMMA) if sr else Z
            code, fl, amb = cast_one(cls, s, e, sig, lsb, sticky, pay, c, w)
            if want_values:
                out[i] = decode_bits(code, c, pow2)
            else:
                out[i] = code
            if want_flags:
                flags[i] = fl
            if sr:
                amb_idx[namb] = i
                namb += np.int64(amb)
        return namb
    return kernel


def _kernel(kind: str, sr: bool, want_flags: bool, want_values: bool):
    key = (kind, sr, want_flags, want_values)
    k = _KERNELS.get(key)
    if k is None:
        make = _make_float_kernel if kind == "float" else _make_int_kernel
        k = _KERNELS[key] = make(sr, want_flags, want_values)
    return k


def run_cast(flat, layout, p, key, start, out, want_values, flags):
    """Run the matching kernel on a flat contiguous input; return ambiguous indices.

    ``key`` is the stochastic seed word (None for deterministic modes); ``out`` is the
    float64 result (viewed as uint64) or the storage-dtype code array.
    """
    sr = key is not None
    want_flags = flags is not None
    fl = flags if want_flags else np.empty(0, dtype=np.uint8)
    amb = np.empty(flat.size if sr else 0, dtype=np.int64)
    o = out.view(np.uint64) if want_values else out
    k64 = np.uint64(key if sr else 0)
    if layout is None:
        n = _kernel("int", sr, want_flags, want_values)(
            flat, flat.dtype.kind == "i", p, k64, start, o, fl, amb, POW2)
    else:
        n = _kernel("float", sr, want_flags, want_values)(
            bits_view(flat), layout[0], layout[1], p, _P32, k64, start, o, fl, amb, POW2)
    return amb[:n]


def fast_plan(p, layout, fmt):
    """The fast kernels' scalars when the fast path applies, else None."""
    return fast_params(p, layout[0], layout[1], fmt)


def run_fast(flat, layout, plan, out, out_kind, key, vshift=0):
    """Run the fast kernel; return indices the general path must redo."""
    nslow = fast_cast(flat, layout, plan, out, out_kind, key, POW2, vshift)
    return slow_indices(flat, layout, plan) if nslow else np.zeros(0, dtype=np.int64)
