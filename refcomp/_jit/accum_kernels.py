"""Numba twins of refcomp.ops.accum's floating-point specification (deterministic modes).

Every accumulation step is the fast-op computation of :mod:`refcomp._jit.fast_ops`: the
exact result as a float64 rounded to odd (products of the inputs are exact in float64:
the model's input precisions sum to at most 53 bits and their products cannot be tiny),
then one rounding into the accumulator by :func:`refcomp._jit.fast_cast.narrow`.  Loops
run i (rows of A), k (along K), j (columns of B), so each step is vectorisable across a
row of outputs while every output keeps its own sequential order.

Two native paths skip the bit-level rounding where the machine's own arithmetic IS the
model: float32 (or float64) accumulation rounding to nearest even, exact products
(:func:`refcomp._jit.fast_ops.fma_native`: one correctly rounded a*b + s) or products rounded
to the accumulator's format (separate multiply and add; Numba does not contract them).
They run only on finite inputs in the FPU's default state; a NaN produced on the way
(inf - inf) sends the whole GEMM to the bit-level kernel, whose NaN rules are the
specification's.  tests/test_accum.py compares both with the NumPy specification bit for
bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import CACHE
from .core import bits_from_f64, f64_from_bits
from .fast_cast import narrow
from .fast_ops import add_odd, fast_op_params, fma_native, fma_odd, fpu_is_default, mul_odd

__all__ = ["float_matmul", "int_matmul"]

_KERNELS: dict = {}
EXP64 = np.uint64(0x7FF0000000000000)
SIGN = np.uint64(1 << 63)
TWO2046 = np.uint64(2046 << 52)
DBL_MAX = 1.7976931348623157e308
TILE = 128                      # columns of B per panel (K x 128 float64 fits in L2)
U0 = np.uint64(0)


@njit(inline="always")
def round_value(r, m, emin, maxv, mode):
    """Round the float64 with bits `r` (a round-to-odd result) to `m` fraction bits with
    exponent range down to `emin` (subnormals below), in mode 0-4, for IEEE formats with
    infinities and the IEEE overflow rule; a non-finite input passes through (NaN results
    are redone by :func:`refcomp._jit.fast_cast.narrow`, see float_matmul).

    The quantum q = 2**(max(e, emin) - m) (e = floor(log2|x|), read from the exponent
    field) and 1/q are powers of two, so y = |x| / q is exact; floor/ceil give the
    directed modes, floor(y + 1/2) ties away
    (y + 1/2 is exact below 2**(m+1): y has at most 52 - m fraction bits).  Written with
    float max/select only, so that the loops calling it vectorise.
    """
    x = f64_from_bits(r)
    ax = np.abs(x)
    pw = max(f64_from_bits(r & EXP64), f64_from_bits(np.uint64(emin + 1023) << np.uint64(52)))
    if mode == 0:
        # c = 1.5 * 2**(e + 52 - m): x + c lies in [2**(e+52-m), 2**(e+53-m)), whose
        # spacing is q, so the addition rounds x to a multiple of q, to nearest even
        c = pw * f64_from_bits(np.uint64(1075 - m) << np.uint64(52)) * 1.5
        v = np.abs((x + c) - c)
        big = np.inf
    else:
        q = pw * f64_from_bits(np.uint64(1023 - m) << np.uint64(52))
        y = ax * f64_from_bits(TWO2046 - bits_from_f64(q))
        neg = x < 0.0
        if mode == 1:
            n = np.floor(y + 0.5)
        elif mode == 2:
            n = np.floor(y)
        elif mode == 3:
            n = np.floor(y) if neg else np.ceil(y)
        else:
            n = np.ceil(y) if neg else np.floor(y)
        v = n * q
        if mode == 1:
            big = np.inf
        elif mode == 2:
            big = maxv
        elif mode == 3:
            big = maxv if neg else np.inf
        else:
            big = np.inf if neg else maxv
    v = big if v > maxv else v
    v = f64_from_bits(bits_from_f64(v) | (r & SIGN))
    return v if ax <= DBL_MAX else x


@njit(inline="always")
def lean_sum_odd(x, y, tn):
    """Round-to-odd bits of x + y for finite x, y whose sum cannot overflow (TwoSum, as
    fast_ops.two_sum_odd without its overflow select); exact zero sums of opposite signs
    are -0 when rounding toward negative (tn), else +0."""
    s = x + y
    z = s - x
    err = (x - (s - z)) + (y - z)
    sb = bits_from_f64(s)
    nudge = (err != 0.0) & ((sb & np.uint64(1)) == np.uint64(0))
    up = (err > 0.0) == (s > 0.0)
    r = sb + np.uint64(nudge & up) - np.uint64(nudge & (not up))
    if tn:
        opposite = ((bits_from_f64(x) ^ bits_from_f64(y)) >> np.uint64(63)) != np.uint64(0)
        r = SIGN if (s == 0.0) & opposite else r
    return r


@njit(inline="always")
def _round(r, q, fast, mode):
    """The accumulator value of the round-to-odd bits r."""
    if fast:
        return round_value(r, q[0], q[1], f64_from_bits(np.uint64(q[2])), mode)
    _c, v = narrow(r, q, 11, 52, mode, U0)
    return f64_from_bits(v)


def _make_chunked(rne, has_prod, scaled, fa, fo, fp, lean):
    @njit(cache=CACHE)
    def kernel(A, B, C, L, chunked, qa, qo, qp, modes, tna, tno, SA, SB, out):
        if rne:                           # compile-time 0: the benchmarked common case
            mode_a, mode_o, mode_p = 0, 0, 0
        else:
            mode_a, mode_o, mode_p = modes[0], modes[1], modes[2]
        M, K = A.shape
        N = B.shape[1]
        s = np.empty(TILE)
        o = np.empty(TILE)
        for j0 in range(0, N, TILE):          # a panel of B stays in cache for all rows
            nj = min(TILE, N - j0)
            for i in range(M):
                o[:nj] = C[i, j0:j0 + nj]
                for k0 in range(0, K, L):
                    if chunked:
                        s[:nj] = 0.0
                    else:
                        s[:nj] = o[:nj]
                    for k in range(k0, min(k0 + L, K)):
                        a = A[i, k]
                        brow = B[k, j0:j0 + nj]
                        for j in range(nj):
                            if lean:              # finite data, exact products
                                p = a * brow[j]
                                if has_prod:
                                    p = _round(bits_from_f64(p), qp, fp, mode_p)
                                r = lean_sum_odd(s[j], p, tna)
                            elif has_prod:
                                rp, _ok = mul_odd(a, brow[j])
                                r = add_odd(s[j], _round(rp, qp, fp, mode_p), False, tna)
                            else:
                                r, _ok = fma_odd(a, brow[j], s[j], tna)
                            s[j] = _round(r, qa, fa, mode_a)
                    if chunked:
                        blk = k0 // L
                        for j in range(nj):
                            if lean:
                                t = s[j] * (SA[i, blk] * SB[blk, j0 + j]) if scaled else s[j]
                                r = lean_sum_odd(o[j], t, tno)
                            elif scaled:
                                r, _ok = fma_odd(s[j], SA[i, blk] * SB[blk, j0 + j], o[j],
                                                 tno)
                            else:
                                r = add_odd(o[j], s[j], False, tno)
                            o[j] = _round(r, qo, fo, mode_o)
                    else:
                        o[:nj] = s[:nj]
                out[i, j0:j0 + nj] = o[:nj]
    return kernel


def _make_pairwise(has_prod, fa, fp):
    @njit(cache=CACHE)
    def kernel(A, B, C, qa, qp, modes, tna, out):
        mode_a, mode_p = modes[0], modes[2]
        M, K = A.shape
        N = B.shape[1]
        T = np.empty((max(K, 1), N))
        for i in range(M):
            for k in range(K):
                a = A[i, k]
                for j in range(N):
                    rp, _ok = mul_odd(a, B[k, j])
                    if has_prod:
                        T[k, j] = _round(rp, qp, fp, mode_p)
                    else:
                        T[k, j] = f64_from_bits(rp)
            n = K
            while n > 1:
                h = n // 2
                for t in range(h):
                    for j in range(N):
                        r = add_odd(T[2 * t, j], T[2 * t + 1, j], False, tna)
                        T[t, j] = _round(r, qa, fa, mode_a)
                if n % 2:
                    T[h, :] = T[n - 1, :]
                n = h + n % 2
            for j in range(N):
                if K == 0:
                    out[i, j] = C[i, j]
                else:
                    r = add_odd(C[i, j], T[0, j], False, tna)
                    out[i, j] = _round(r, qa, fa, mode_a)
    return kernel


def _make_native(dt):
    """float32 (dt) or float64 accumulation, nearest even: one hardware FMA (or a multiply
    then an add) per step, in the machine's own arithmetic of that type."""
    @njit(cache=CACHE)
    def kernel(A, B, C, L, chunked, separate, out):
        M, K = A.shape
        N = B.shape[1]
        s = np.empty(N, dt)
        o = np.empty(N, dt)
        for i in range(M):
            for j in range(N):
                o[j] = dt(C[i, j])
            for k0 in range(0, K, L):
                if chunked:
                    s[:] = dt(0.0)
                else:
                    s[:] = o
                for k in range(k0, min(k0 + L, K)):
                    a = A[i, k]
                    if separate:
                        for j in range(N):
                            s[j] = s[j] + a * B[k, j]
                    else:
                        for j in range(N):
                            s[j] = fma_native(a, B[k, j], s[j])
                if chunked:
                    for j in range(N):
                        o[j] = o[j] + s[j]
                else:
                    o[:] = s
            for j in range(N):
                out[i, j] = np.float64(o[j])
    return kernel


_native32 = _make_native(np.float32)
_native64 = _make_native(np.float64)


def _params(fmt, rounding, tier):
    """(fast, parameters): round_value's (m, emin, max bits) for IEEE formats with
    infinities in modes 0-4, else narrow's vector (None outside the kernels' domain)."""
    from ..rounding.cast import make_plan
    from ..formats.floatformat import Specials
    q = fast_op_params(make_plan(fmt, rounding).p, fmt)
    if q is None:
        return False, None
    mode = int(q[14])
    if tier < 2 and fmt.specials is Specials.IEEE and fmt.subnormals and mode <= 4 and \
            fmt.emin - fmt.man_bits >= -1000 and fmt.emax <= 1000:
        mx = np.array([fmt.max_finite], np.float64).view(np.uint64)[0]
        return True, (np.int64(fmt.man_bits), np.int64(fmt.emin), mx)
    return False, q


def _native(A, B, C, m, L):
    """The native float32/float64 paths, or None when the model or data are outside."""
    from ..rounding.modes import Rounding
    acc = m.acc.name
    if acc not in ("float32", "float64") or m.scale_block or m.order.value == "pairwise":
        return None
    rn = Rounding.NEAREST_EVEN
    if m.acc_rounding is not rn or m.outer_format != m.acc or m.outer_rounding is not rn:
        return None
    if m.product is not None and (m.product != m.acc or m.product_rounding is not rn):
        return None
    if not (np.isfinite(A).all() and np.isfinite(B).all() and np.isfinite(C).all()):
        return None
    out = np.empty(C.shape)
    if acc == "float32":
        if max(m.inputs.precision, m.inputs_b.precision) > 24 or \
                min(m.inputs.emin, m.inputs_b.emin) < -126 or \
                max(m.inputs.emax, m.inputs_b.emax) > 127:
            return None
        _native32(A.astype(np.float32), B.astype(np.float32), C, max(L, 1), m.chunked,
                  m.product is not None, out)
    else:
        _native64(A, B, C, max(L, 1), m.chunked, m.product is not None, out)
    return None if np.isnan(out).any() else out


def float_matmul(A, B, C, m, SA, SB, tier=0):
    """Run the model's kernel on float64 values A (M, K), B (K, N), C (M, N); None when the
    model is outside the kernels' domain (the caller then runs the specification).

    Tiers: 0 finite data (no special-value selects; rows whose result is not finite are
    redone at tier 1), 1 special values handled, 2 narrow's rounding only (rows with a
    NaN result from tier 1 are redone here, so NaNs get each format's NaN rule)."""
    from ..rounding.modes import Rounding
    if not fpu_is_default():
        return None
    K = A.shape[1]
    L = m.chunk(K)
    if tier == 0:
        out = _native(A, B, C, m, L)
        if out is not None:
            return out
    has_prod = m.product is not None
    fa, fb = m.inputs, m.inputs_b
    if fa.precision + fb.precision > 53 or \
            (fa.emin - fa.man_bits) + (fb.emin - fb.man_bits) < -969:
        return None                                 # products not exact in float64
    fa, qa = _params(m.acc, m.acc_rounding, tier)
    fo, qo = _params(m.outer_format, m.outer_rounding, tier)
    fp, qp = (fa, qa) if m.product is None else _params(m.product, m.product_rounding, tier)
    if qa is None or qo is None or qp is None:
        return None
    modes = np.array([r.code for r in (m.acc_rounding, m.outer_rounding,
                                       m.product_rounding if has_prod else m.acc_rounding)],
                     np.int64)
    tna = m.acc_rounding is Rounding.TOWARD_NEGATIVE
    tno = m.outer_rounding is Rounding.TOWARD_NEGATIVE
    out = np.empty(C.shape)
    scaled = bool(m.scale_block)
    one = np.ones((1, 1))
    SA = np.asarray(SA, np.float64) if scaled else one
    SB = np.asarray(SB, np.float64) if scaled else one
    if tier == 0 and not all(np.isfinite(x).all() for x in (A, B, C, SA, SB)):
        tier = 1
    if m.order.value == "pairwise":
        tier = max(tier, 1)
        key = ("pair", has_prod, fa, fp)
        kern = _KERNELS.get(key) or _KERNELS.setdefault(key, _make_pairwise(*key[1:]))
        kern(A, B, C, qa, qp, modes, tna, out)
    else:
        rne = not modes.any()
        key = ("chunk", rne, has_prod, scaled, fa, fo, fp, tier == 0)
        kern = _KERNELS.get(key) or _KERNELS.setdefault(key, _make_chunked(*key[1:]))
        kern(A, B, C, max(L, 1), m.chunked, qa, qo, qp, modes, tna, tno, SA, SB, out)
    if tier == 2:
        return out
    bad = ~np.isfinite(out) if tier == 0 else np.isnan(out)
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size:
        out[rows] = float_matmul(A[rows], B, C[rows], m, SA[rows] if scaled else SA, SB,
                                 tier + 1)
    return out


@njit(cache=CACHE)
def _int_kernel(A, B, C, lo, hi, mask, saturate, pairs, out):
    M, K = A.shape
    N = B.shape[1]
    step = 2 if pairs else 1
    s = np.empty(N, np.int64)
    for i in range(M):
        s[:] = C[i]
        for t in range(0, K, step):
            a0 = A[i, t]
            a1 = A[i, t + 1] if pairs and t + 1 < K else np.int64(0)
            for j in range(N):
                q = a0 * B[t, j]
                if pairs:
                    if t + 1 < K:
                        q += a1 * B[t + 1, j]
                    q = min(max(q, np.int64(-32768)), np.int64(32767))
                v = s[j] + q
                if saturate:
                    v = min(max(v, lo), hi)
                else:
                    v = ((v - lo) & mask) + lo
                s[j] = v
        out[i] = s


def int_matmul(A, B, C, m):
    """Sequential integer accumulation with the overflow rule after every addition (twin of
    refcomp.ops.accum._int_spec); accumulators of at most 62 bits (None otherwise)."""
    if m.acc.bits > 62:
        return None
    out = np.empty(C.shape, np.int64)
    _int_kernel(np.ascontiguousarray(A, np.int64), np.ascontiguousarray(B, np.int64),
                np.ascontiguousarray(C, np.int64), np.int64(m.acc.min), np.int64(m.acc.max),
                np.int64((1 << m.acc.bits) - 1), m.int_overflow.value == "saturate",
                bool(m.int16_pairs), out)
    return out
