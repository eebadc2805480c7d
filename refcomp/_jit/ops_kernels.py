"""Numba kernels of the arithmetic operations: unpack, exact result, round, decode.

Twins of refcomp.ops._run._np_codes + formats.codec.decode.  One variant per (operation,
stochastic, flags wanted, operand dtype) is compiled on first use and cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import CACHE
from ..rounding.params import P
from ..rounding.unpack import FLOAT_LAYOUT, bits_view
from .cast_kernels import POW2
from .core import (FINITE, GAMMA, U8, U64, ZERO, Z, cast_one, config, decode_bits, isel,
                   splitmix64, unpack_float)
from .exact_ops import x_add, x_div, x_fma, x_mul, x_sqrt

__all__ = ["run_op"]

_KERNELS: dict = {}
_ARITY = {"add": 2, "sub": 2, "mul": 2, "div": 2, "fma": 3, "sqrt": 1}
_MODE, _DAZ, _EMIN = P.MODE, P.DAZ, P.EMIN


def _make(op: str, sr: bool, want_flags: bool, in_e: int, in_m: int):
    negate = U64(op == "sub")

    @njit(cache=CACHE, error_model="numpy")
    def kernel(xa, xb, xc, p, key, out, flags, amb_idx, pow2):
        c = config(p)
        tn = U64(p[_MODE] == 4)
        daz = p[_DAZ] != 0
        emin = p[_EMIN]
        namb = 0
        for i in range(xa.size):
            ca, sa, ea, ga, la, _t, pa = unpack_float(U64(xa[i]), in_e, in_m, False)
            ca = isel(daz & (ca == FINITE) & (ea < emin), ZERO, ca)
            if op == "sqrt":
                r = x_sqrt(ca, sa, ea, ga, la, pa)
            else:
                cb, sb, eb, gb, lb, _t, pb = unpack_float(U64(xb[i]), in_e, in_m, False)
                cb = isel(daz & (cb == FINITE) & (eb < emin), ZERO, cb)
                if op == "add" or op == "sub":
                    r = x_add(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb, negate, tn)
                elif op == "mul":
                    r = x_mul(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb)
                elif op == "div":
                    r = x_div(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb)
                else:
                    cc, sc, ec, gc, lc, _t, pc = unpack_float(U64(xc[i]), in_e, in_m, False)
                    cc = isel(daz & (cc == FINITE) & (ec < emin), ZERO, cc)
                    r = x_fma(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb,
                              cc, sc, ec, gc, lc, pc, tn)
            cls, s, e, sig, lsb, st, pay, ofl = r
            w = splitmix64(key + U64(i + 1) * GAMMA) if sr else Z
            code, fl, amb = cast_one(cls, s, e, sig, lsb, st != Z, pay, c, w)
            out[i] = decode_bits(code, c, pow2)
            if want_flags:
                flags[i] = fl | U8(ofl)
            if sr:
                amb_idx[namb] = i
                namb += np.int64(amb)
        return namb
    return kernel


def run_op(op, flats, plan, key, out, flags):
    """Run an operation over flat operands; return the ambiguous stochastic indices."""
    layout = FLOAT_LAYOUT[flats[0].dtype]
    sr = key is not None
    k = (op, sr, flags is not None, layout)
    kern = _KERNELS.get(k)
    if kern is None:
        kern = _KERNELS[k] = _make(op, sr, flags is not None, layout[0], layout[1])
    xs = [bits_view(f) for f in flats] + [bits_view(flats[0])] * (3 - len(flats))
    amb = np.empty(flats[0].size if sr else 0, dtype=np.int64)
    fl = flags if flags is not None else np.empty(0, dtype=np.uint8)
    n = kern(xs[0], xs[1], xs[2], plan.p, np.uint64(key if sr else 0), out.view(np.uint64),
             fl, amb, POW2)
    return amb[:n]
