"""General Numba kernels of the arithmetic operations: unpack, exact result, round, decode.

Twins of refcomp.ops._run._np_codes + formats.codec.decode.  One kernel per operation,
compiled on first use and cached on disk (fast_ops.py covers the common cases faster).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import CACHE
from ..formats.codec import widen
from ..rounding.params import P
from .cast_kernels import POW2
from .core import (FINITE, GAMMA, U8, U64, ZERO, Z, cast_one, config, decode_bits, isel,
                   sel, splitmix64, unpack_float)
from .exact_ops import x_add, x_div, x_fma, x_mul, x_sqrt

__all__ = ["run_op"]

_KERNELS: dict = {}
_MODE, _DAZ, _EMIN = P.MODE, P.DAZ, P.EMIN


def _make(op: str):
    negate = U64(op == "sub")

    @njit(cache=CACHE, error_model="numpy")
    def kernel(xa, xb, xc, p, key, sr, out, flags, amb, pow2):
        """One operation over float64 bit patterns; `sr` is a run-time switch."""
        c = config(p)
        tn = U64(p[_MODE] == 4)
        daz = p[_DAZ] != 0
        emin = p[_EMIN]
        for i in range(xa.size):
            ca, sa, ea, ga, la, _t, pa = unpack_float(U64(xa[i]), 11, 52, False)
            ca = isel(daz & (ca == FINITE) & (ea < emin), ZERO, ca)
            if op == "sqrt":
                r = x_sqrt(ca, sa, ea, ga, la, pa)
            else:
                cb, sb, eb, gb, lb, _t, pb = unpack_float(U64(xb[i]), 11, 52, False)
                cb = isel(daz & (cb == FINITE) & (eb < emin), ZERO, cb)
                if op == "add" or op == "sub":
                    r = x_add(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb, negate, tn)
                elif op == "mul":
                    r = x_mul(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb)
                elif op == "div":
                    r = x_div(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb)
                else:
                    cc, sc, ec, gc, lc, _t, pc = unpack_float(U64(xc[i]), 11, 52, False)
                    cc = isel(daz & (cc == FINITE) & (ec < emin), ZERO, cc)
                    r = x_fma(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb,
                              cc, sc, ec, gc, lc, pc, tn)
            cls, s, e, sig, lsb, st, pay, ofl = r
            w = sel(sr, splitmix64(key + U64(i + 1) * GAMMA), Z)
            code, fl, a = cast_one(cls, s, e, sig, lsb, st != Z, pay, c, w)
            out[i] = decode_bits(code, c, pow2)
            flags[i] = fl | U8(ofl)
            amb[i] = U8(a)
    return kernel


def run_op(op, flats, plan, key, out, flags):
    """Run an operation over flat operands; return the ambiguous stochastic indices.

    The general path (flags, stochastic rounding, formats outside the fast kernels):
    operands are widened to float64 first (exact), so one kernel per operation serves
    every operand dtype."""
    kern = _KERNELS.get(op)
    if kern is None:
        kern = _KERNELS[op] = _make(op)
    f64 = [np.ascontiguousarray(widen(f)) for f in flats]
    xs = [f.view(np.uint64) for f in f64] + [f64[0].view(np.uint64)] * (3 - len(f64))
    sr = key is not None
    n = f64[0].size
    amb = np.empty(n, dtype=np.uint8)
    fl = flags if flags is not None else np.empty(n, dtype=np.uint8)
    kern(xs[0], xs[1], xs[2], plan.p, np.uint64(key if sr else 0), sr, out.view(np.uint64),
         fl, amb, POW2)
    return np.flatnonzero(amb) if sr else np.zeros(0, dtype=np.int64)
