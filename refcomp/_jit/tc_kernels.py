"""Numba twin of refcomp.ops.tensorcore.tc_matmul: the whole chain of fused steps of a GEMM.

The specification is the NumPy code of :mod:`refcomp.ops.tensorcore` (``fused_step``
applied K / g times); tests/test_tensorcore.py runs both on the same inputs and compares
every output bit (both paths below included), and ``REFCOMP_DISABLE_JIT=1`` (or
``use_jit(False)``) runs the twin.

Arithmetic of one fused step of output (i, j) over the products k0 <= k < k0 + g, with
``f`` fraction bits:

* ``emax = max(ec, max_k(ea[i, k] + eb[k, j]))`` from exponents decoded once per input
  (``floor(log2|x|)`` clamped to the format's emin, -126 for a zero, plus an optional
  per-row / per-column offset: the block scales' exponents).  They are small integers,
  held as float32 (exact; cheap to add and compare in wide vectors).
* Terms ``trunc(c * 2**(f - emax))`` and ``trunc(a * b * 2**(f - emax))``, added exactly,
  ``v`` = their sum times ``2**(emax - f)``; every term is below ``4 * 2**f`` in
  magnitude (significands below 2, products below 4; c's below ``2 * 2**f``).
* Output: ``v`` is exact in float64 (an integer below 2**33 times a power of two in
  [2**-151, 2**290]); it is rounded with the quantum ``q = 2**(max(floor(log2|v|), emin)
  - m)``: ``trunc(v / q) * q`` (float32, m = 23, and e8m13, m = 13, toward zero) or
  ``rint(v / q) * q`` (float16, m = 10, nearest even); a result at or above 2**128
  (2**16 for float16) is infinite, and ``+ 0.0`` makes a zero result +0.

The product terms go one of two ways, both exact:

* float32 path (the fast one): per step, row i of A is normalised by its largest exponent
  ``xa`` and column j of B by ``xb`` (the values a'' = a * 2**-xa, b'' = b * 2**-xb are
  computed once), and a term is ``trunc((a'' * b'') * S)`` with ``S = 2**(f - emax + xa +
  xb)`` in float32, converted to int32 by truncation (``cvttps2dq``); the int32 sum of
  16 terms is below 16 * (2 - 2**-10)**2 * 2**25 < 2**31 - 16.  Exact when the exponent
  spreads of the row's and column's nonzero values add up to at most ``SPREAD`` = 100:
  then a'' * b'' >= 2**-120 (at most 22 significant bits) is an exact normal float32, S
  is at most 2**(f + 100) when some product is nonzero (emax is at least that product's
  exponent; S is clamped to [0, 2**127] otherwise, where every a'' * b'' is 0), and a
  term that is not truncated to 0 is at least 1, a normal float32, so the scaling is
  exact; below 2**-126 S is 0, its terms being below 2**-124.
* float64 path (wider spreads, and steps with non-finite values): ``trunc((a * b) *
  2**(f - emax))`` in float64, exact: products are at least 2**-272 and the scale at
  least 2**-271, far above float64's subnormals; the sum (below 32 * 2**27 + 2**26 <
  2**33) is exact in float64.

NaN and infinity: a step whose products or c include a non-finite value gets the float64
sum of its exact products and c (NaN or +-inf: finite products stay below 2**290, so
that sum cannot overflow), as the specification does; such steps are found from flags of
the decoded inputs and redone one output at a time after the vectorised pass.

Loops: B is copied panel by panel (``JT`` columns, all of K) into contiguous blocks of
values, exponents and normalised values; for each row of A and each step the loops over
the panel's columns are innermost, with the g products unrolled (g is a compile-time
constant of each kernel), so LLVM vectorises them across columns: the float32 path's
exponent and term loop has only 32-bit lanes (16 to an AVX-512 vector), the float64
rounding of the step's results runs in a loop of its own.  One thread.  The kernels also
check that every input is a value of its format; when one is not, the caller runs the
specification's check, which names it.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from . import CACHE
from .core import bits_from_f64, f64_from_bits

__all__ = ["tc_chain"]

_KERNELS: dict = {}
JT = 64                          # columns of B per panel
U = np.uint64
I64 = np.int64
F32 = np.float32
ZERO_EXP = -126                  # MMA-Sim: a zero's exponent, whatever its format
SPREAD = 100                     # largest exponent spread (A's + B's) of the float32 path
#: output -> (fraction bits, emin, nearest even (else toward zero), overflow threshold)
ROUND = {"float32": (23, -126, False, 2.0 ** 128), "e8m13": (13, -126, False, 2.0 ** 128),
         "float16": (10, -14, True, 2.0 ** 16)}


@intrinsic
def _trunc_i32(typingctx, x):
    """A float32 truncated toward zero to an int32 (LLVM fptosi; here |x| < 2**31)."""
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.fptosi(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _add_i32(typingctx, a, b):
    """a + b in int32 (Numba widens int32 sums to int64; they cannot overflow here)."""
    sig = types.int32(types.int32, types.int32)

    def codegen(context, builder, signature, args):
        return builder.add(args[0], args[1])

    return sig, codegen


@intrinsic
def _pow2f(typingctx, x):
    """2**x as a float32 for an integral float32 x in [-127, 127] (0.0 for -127)."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        e = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(e, ir.Constant(i32, 23)), ir.FloatType())

    return sig, codegen


@njit(inline="always")
def _pow2(e):
    """2**e for an integer e in [-1022, 1023], built from its bits."""
    return f64_from_bits(U(e + 1023) << U(52))


@njit(inline="always")
def _exp(x, emin):
    """floor(log2|x|) clamped to emin, -126 for a zero, 0 for a non-finite x (such steps
    are redone); x a value of a format that float64 represents as a normal number."""
    e = I64((bits_from_f64(x) >> U(52)) & U(0x7FF)) - 1023
    e = max(e, emin)
    e = e if x != 0.0 else I64(ZERO_EXP)
    return e if e != 1024 else I64(0)


@njit(inline="always")
def _valid(x, prec, emin, maxv):
    """Whether x is a value of the format (precision, emin, largest finite value); any
    non-finite x passes, as in the specification's check."""
    e = max(I64((bits_from_f64(x) >> U(52)) & U(0x7FF)) - 1023, emin)
    y = x * _pow2(prec - 1 - e)
    return (not np.isfinite(x)) or (np.trunc(y) == y and np.abs(x) <= maxv)


@njit(inline="always")
def _round(v, m, emin, rne, big):
    """v (an exact float64) rounded to m fraction bits, exponents down to emin
    (subnormals below), toward zero or to nearest even; >= big infinite; zero is +0."""
    e = I64((bits_from_f64(v) >> U(52)) & U(0x7FF)) - 1023
    q = max(e, emin) - m
    y = v * _pow2(-q)
    r = (np.rint(y) if rne else np.trunc(y)) * _pow2(q)
    r = r if np.abs(r) < big else np.copysign(np.inf, v)
    return r + 0.0


@njit(inline="always")
def _decode(x, off, emin):
    """(scaled value, exponent) of an input with the scale exponent `off`."""
    return x * _pow2(off), _exp(x, emin) + off


@njit(cache=CACHE)
def _decode_rows(A, offa, G, fin, Av, EA, An, EAx, spA, badA):
    """Rows of A per step: values, exponents, values normalised by the step's largest
    exponent (EAx), the spread of their nonzero exponents, non-finite flags.  Returns
    whether every element is a value of the input format."""
    prec, emin, maxv = I64(fin[0]), I64(fin[1]), fin[2]
    ok = True
    for i in range(A.shape[0]):
        for g in range(A.shape[1] // G):
            hi = I64(-100000)
            lo = I64(100000)
            bad = False
            for k in range(g * G, g * G + G):
                x = A[i, k]
                ok &= _valid(x, prec, emin, maxv)
                v, e = _decode(x, offa[i], emin)
                Av[i, k] = v
                EA[i, k] = F32(e)
                bad |= not np.isfinite(v)
                if x != 0.0:
                    hi = max(hi, e)
                    lo = min(lo, e)
            hi = hi if lo <= hi else I64(0)
            EAx[i, g] = F32(hi)
            spA[i, g] = F32(max(hi - lo, I64(0)))
            badA[i, g] = bad
            for k in range(g * G, g * G + G):
                An[i, k] = F32(Av[i, k] * _pow2(-hi))
    return ok


@njit(cache=CACHE)
def _pack_panel(B, offb, j0, G, fin, Bp, EBp, Bn, EBx, spB, badB):
    """Columns j0 .. j0 + JT of B as contiguous (K, JT) blocks, like _decode_rows (spB,
    badB: the largest spread and any non-finite value per step over the panel); columns
    past N are zeros.  Returns whether every element is a value of the input format."""
    prec, emin, maxv = I64(fin[0]), I64(fin[1]), fin[2]
    K, N = B.shape
    ok = True
    for g in range(K // G):
        sp = F32(0)
        bad = False
        for jj in range(JT):
            j = j0 + jj
            hi = I64(-100000)
            lo = I64(100000)
            for k in range(g * G, g * G + G):
                x = B[k, j] if j < N else 0.0
                ok &= _valid(x, prec, emin, maxv)
                v, e = _decode(x, offb[j] if j < N else 0, emin)
                Bp[k, jj] = v
                EBp[k, jj] = F32(e)
                bad |= not np.isfinite(v)
                if x != 0.0:
                    hi = max(hi, e)
                    lo = min(lo, e)
            hi = hi if lo <= hi else I64(0)
            EBx[g, jj] = F32(hi)
            sp = max(sp, F32(max(hi - lo, I64(0))))
            for k in range(g * G, g * G + G):
                Bn[k, jj] = F32(Bp[k, jj] * _pow2(-hi))
        spB[g] = sp
        badB[g] = bad
    return ok


def _make(G: int):
    """The chain kernel for steps of G products (unrolled)."""
    nch = (G + 15) // 16                 # int32 partial sums of at most 16 terms

    @njit(cache=CACHE)
    def kernel(A, B, C, offa, offb, frac, fin, fc, fout, spread, D):
        m, emin_out, rne, big = I64(fout[0]), I64(fout[1]), fout[2] != 0.0, fout[3]
        prec_c, emin_c, max_c = I64(fc[0]), I64(fc[1]), fc[2]
        fr = F32(frac)
        M, K = A.shape
        N = B.shape[1]
        ng = K // G
        ok = True
        for i in range(M):
            for j in range(N):
                ok &= _valid(C[i, j], prec_c, emin_c, max_c)
        Av = np.empty((M, K))
        EA = np.empty((M, K), F32)
        An = np.empty((M, K), F32)
        EAx = np.empty((M, ng), F32)
        spA = np.empty((M, ng), F32)
        badA = np.empty((M, ng), np.bool_)
        ok &= _decode_rows(A, offa, G, fin, Av, EA, An, EAx, spA, badA)
        Bp = np.empty((K, JT))
        EBp = np.empty((K, JT), F32)
        Bn = np.empty((K, JT), F32)
        EBx = np.empty((ng, JT), F32)
        spB = np.empty(ng, F32)
        badB = np.empty(ng, np.bool_)
        c = np.zeros(JT)                          # the panel's part of row i of D
        cold = np.zeros(JT)
        ecv = np.zeros(JT, F32)
        emv = np.zeros(JT, F32)
        tv = np.zeros((nch, JT), np.int32)
        for j0 in range(0, N, JT):
            n = min(JT, N - j0)
            nv = (n + 15) // 16 * 16             # vector lanes used
            ok &= _pack_panel(B, offb, j0, G, fin, Bp, EBp, Bn, EBx, spB, badB)
            if not ok:
                return False
            for i in range(M):
                c[:n] = C[i, j0:j0 + n]
                c[n:] = 0.0
                for g in range(ng):
                    k0 = g * G
                    ea = EA[i, k0:k0 + G]
                    ebp = EBp[k0:k0 + G]
                    special = badA[i, g] or badB[g]
                    for jj in range(nv):
                        special |= not np.isfinite(c[jj])
                    if special:
                        cold[:] = c
                    if not special and spA[i, g] + spB[g] <= spread:
                        an = An[i, k0:k0 + G]
                        bn = Bn[k0:k0 + G]
                        xa = EAx[i, g] + fr
                        xb = EBx[g]
                        for jj in range(nv):
                            ecv[jj] = F32(_exp(c[jj], emin_c))
                        for jj in range(nv):              # 32-bit lanes only
                            em = ecv[jj]
                            for k in range(G):
                                em = max(em, ea[k] + ebp[k, jj])
                            sn = _pow2f(min(max(xa + xb[jj] - em, F32(-127)), F32(127)))
                            emv[jj] = em
                            for h in range(nch):
                                t32 = np.int32(0)
                                for k in range(h * 16, min(G, h * 16 + 16)):
                                    t32 = _add_i32(t32, _trunc_i32(an[k] * bn[k, jj] * sn))
                                tv[h, jj] = t32
                        for jj in range(nv):
                            emi = I64(emv[jj])
                            t = np.trunc(c[jj] * _pow2(frac - emi))
                            for h in range(nch):
                                t += np.float64(tv[h, jj])
                            c[jj] = _round(t * _pow2(emi - frac), m, emin_out, rne, big)
                    else:
                        a = Av[i, k0:k0 + G]
                        bp = Bp[k0:k0 + G]
                        for jj in range(nv):
                            cv = c[jj]
                            em = F32(_exp(cv, emin_c))
                            for k in range(G):
                                em = max(em, ea[k] + ebp[k, jj])
                            emi = I64(em)
                            s = _pow2(frac - emi)
                            t = np.trunc(cv * s)
                            for k in range(G):
                                t += np.trunc(a[k] * bp[k, jj] * s)
                            c[jj] = _round(t * _pow2(emi - frac), m, emin_out, rne, big)
                    if special:
                        a = Av[i, k0:k0 + G]
                        bp = Bp[k0:k0 + G]
                        for jj in range(n):
                            sp = 0.0
                            for k in range(G):
                                sp += a[k] * bp[k, jj]
                            sp += cold[jj]
                            if np.isnan(sp):
                                c[jj] = np.nan
                            elif np.isinf(sp):
                                c[jj] = sp
                D[i, j0:j0 + n] = c[:n]
        return ok

    return kernel


def tc_chain(A, B, C, group, frac_bits, fmt_in, fmt_c, output, off_a=None, off_b=None,
             spread=SPREAD):
    """D = the chain of K / group fused steps of refcomp.ops.tensorcore (see the module
    docstring) as float64 values (NaN results are NaN), or None when some element of A, B
    or C is neither a value of its format nor non-finite (the caller then names it).

    Parameters
    ----------
    A : (M, K), B : (K, N), C : (M, N) float64 values (TF32 inputs already truncated)
    group, frac_bits : products per fused step (at most 32), fraction bits (at most 25)
    fmt_in, fmt_c : (precision, emin, largest finite value) of the input and accumulator
        formats (emin: the exponent given to values below 2**emin)
    output : "float32", "e8m13" or "float16"
    off_a : (M,), off_b : (N,) int, optional
        Exponents of power-of-two scales of A's rows / B's columns (block-scaled steps):
        the values are scaled and their exponents raised by them.
    spread : int
        The float32 path's limit (module docstring); tests lower it to run the float64
        path everywhere.
    """
    A = np.ascontiguousarray(A, np.float64)
    B = np.ascontiguousarray(B, np.float64)
    C = np.ascontiguousarray(C, np.float64)
    M, K = A.shape
    N = B.shape[1]
    if K % group or not 1 <= group <= 32 or frac_bits > 25 or spread > SPREAD:
        raise ValueError(f"tc_chain: group={group}, frac_bits={frac_bits}, spread={spread} "
                         f"outside the kernel's proven bounds (K={K})")
    offa = np.zeros(M, np.int64) if off_a is None else np.ascontiguousarray(off_a, np.int64)
    offb = np.zeros(N, np.int64) if off_b is None else np.ascontiguousarray(off_b, np.int64)
    kern = _KERNELS.get(group)
    if kern is None:
        kern = _KERNELS[group] = _make(group)
    D = np.empty((M, N))
    ok = kern(A, B, C, offa, offb, I64(frac_bits), np.array(fmt_in, np.float64),
              np.array(fmt_c, np.float64), np.array(ROUND[output], np.float64),
              F32(spread), D)
    return D if ok else None
