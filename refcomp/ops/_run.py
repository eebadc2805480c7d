"""Shared driver of the arithmetic operations: inputs, backends, stochastic slow path."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import _jit
from .._inputs import check_bool
from ..formats import codec
from ..formats.codec import widen
from ..rounding import stochastic
from ..rounding.cast import (CHUNK, CastPlan, as_input, cast_unpacked, make_plan, value_dtype,
                             value_shift)
from ..rounding.modes import Rounding
from ..rounding.params import P
from ..rounding.stochastic import Sqrt
from . import exact

__all__ = ["run_op", "OPS"]

#: op name -> (arity, NumPy exact function, exact rational for the stochastic slow path)
OPS = {
    "add": (2, lambda u, m: exact.add(u[0], u[1], m), lambda a, b: a + b),
    "sub": (2, lambda u, m: exact.add(u[0], u[1], m, negate_b=True), lambda a, b: a - b),
    "mul": (2, lambda u, m: exact.mul(u[0], u[1], m), lambda a, b: a * b),
    "div": (2, lambda u, m: exact.div(u[0], u[1], m), lambda a, b: a / b),
    "fma": (3, lambda u, m: exact.fma(u[0], u[1], u[2], m), lambda a, b, c: a * b + c),
    "sqrt": (1, lambda u, m: exact.sqrt(u[0], m), lambda a: Sqrt(a)),
}


def _operands(args, names):
    """Check, broadcast and flatten the operand arrays (one common float dtype)."""
    arrs = [as_input(a, what, allow_int=False)[0] for a, what in zip(args, names)]
    dtype = np.result_type(*arrs)
    shape = np.broadcast_shapes(*(a.shape for a in arrs))
    flat = []
    for a in arrs:
        a = a.astype(dtype, copy=False)
        if a.shape != shape:
            a = np.broadcast_to(a, shape)
        flat.append(np.ascontiguousarray(a).reshape(-1))
    return flat, shape


def _np_codes(op, flats, plan: CastPlan, words=None, force=None):
    """NumPy twin: (codes, flags, ambiguous) of an operation over flat operands."""
    p = plan.p
    fn = OPS[op][1]
    daz = int(p[P.EMIN]) if p[P.DAZ] else None
    size = flats[0].size
    codes = np.empty(size, dtype=np.uint64)
    flags = np.empty(size, dtype=np.uint8)
    amb = np.empty(size, dtype=bool)
    for a in range(0, size, CHUNK):
        b = min(size, a + CHUNK)
        us = [exact.operand(widen(f[a:b]), daz) for f in flats]
        res, opfl = fn(us, int(p[P.MODE]))
        w = None if words is None else words[a:b]
        fo = None if force is None else force[a:b]
        codes[a:b], fl, amb[a:b] = cast_unpacked(res, p, w, fo)
        flags[a:b] = fl | opfl
    return codes, flags, amb


def _settle(op, flats, plan, key, idx, out, flags):
    """Exact decisions for ambiguous stochastic roundings of an operation's results."""
    p = plan.p
    subs = [f[idx] for f in flats]
    res, _ = OPS[op][1]([exact.operand(widen(s)) for s in subs], int(p[P.MODE]))
    qe = np.maximum(res.e, int(p[P.EMIN])) - int(p[P.M])
    if not p[P.SUBN]:
        qe = np.where(res.e < p[P.EMIN], p[P.EMIN], qe)
    rational = OPS[op][2]
    mags = []
    for vals in zip(*(s.tolist() for s in subs)):
        v = rational(*(Fraction(x) for x in vals))
        mags.append(Sqrt(v.q) if isinstance(v, Sqrt) else abs(v))
    w1 = stochastic.words_at(key, idx)
    up = stochastic.decide(mags, qe.tolist(), w1.tolist(), plan.rng)
    codes, fl, still = _np_codes(op, subs, plan, w1, up.astype(np.int8))
    assert not np.any(still)
    out[idx] = codec.decode(codes, plan.fmt)
    if flags is not None:
        flags[idx] = fl


def run_op(op, args, names, fmt, rounding, overflow, subnormals, rng, flags, tininess,
           profile, random_bits, dtype=None):
    """Evaluate a correctly rounded operation; see the public functions in arith.py."""
    plan = make_plan(fmt, rounding, overflow, subnormals, rng, tininess, profile, random_bits)
    flags = check_bool(flags, "flags")
    vdtype, out_kind = value_dtype(plan.fmt, dtype)
    flats, shape = _operands(args, names)
    size = flats[0].size
    sr = plan.rounding is Rounding.STOCHASTIC
    key = int(plan.rng.bit_generator.random_raw()) if sr else None
    if _jit.enabled():
        from .._jit import fast_ops, ops_kernels
        out = np.empty(size, dtype=np.float64)
        fl = np.empty(size, dtype=np.uint8) if flags else None
        q = None
        if op in ("add", "sub", "mul", "fma") and not flags and fast_ops.fpu_is_default():
            q = fast_ops.fast_op_params(plan.p, plan.fmt)
        if q is None:
            amb = ops_kernels.run_op(op, flats, plan, key, out, fl)
        else:
            tn = plan.rounding is Rounding.TOWARD_NEGATIVE
            out = np.empty(size, dtype=vdtype)
            redo = fast_ops.run_fast_op(op, flats, q, tn, out, out_kind,
                                        value_shift(plan.fmt, vdtype))
            if redo.size:
                sub = np.empty(redo.size, dtype=np.float64)
                ops_kernels.run_op(op, [f[redo] for f in flats], plan, None, sub, None)
                out[redo] = sub
            amb = np.zeros(0, dtype=np.int64)
    else:
        ambs, codes, fl = [], np.empty(size, dtype=np.uint64), np.empty(size, dtype=np.uint8)
        for a in range(0, size, CHUNK):
            b = min(size, a + CHUNK)
            words = stochastic.words(key, a, b - a) if sr else None
            codes[a:b], fl[a:b], am = _np_codes(op, [f[a:b] for f in flats], plan, words)
            ambs.append(np.flatnonzero(am) + a)
        amb = np.concatenate(ambs) if ambs else np.zeros(0, dtype=np.int64)
        out = codec.decode(codes, plan.fmt)
        fl = fl if flags else None
    if sr and amb.size:
        _settle(op, flats, plan, key, amb, out, fl)
    if out.dtype != vdtype:
        out = out.astype(vdtype)                  # exact: value_dtype checked it
    out = out.reshape(shape)
    if len(shape) == 0:
        out = out[()]
    if not flags:
        return out
    fl = fl.reshape(shape)
    return out, (fl[()] if len(shape) == 0 else fl)
