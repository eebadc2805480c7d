"""Fast path of add, sub, mul and fma into narrow formats, for the deterministic modes.

Twin of refcomp.ops._run._np_codes on its domain (tests/test_jit_twins.py).  The exact
result is first computed as a float64 *rounded to odd* (von Neumann rounding: truncate,
then set the last bit if inexact) with error-free transformations -- Knuth's TwoSum for
sums, the hardware FMA for the error of a product -- and then rounded once into the
target by :func:`refcomp._jit.fast_cast.narrow`.  Rounding to odd at 53 bits followed by a
rounding at precision p <= 51 equals a single rounding of the exact value, in every mode
(Boldo and Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms
using rounding to odd", IEEE TC 57(4), 2008, theorem 3 needs 53 >= p + 2).  Overflowing
float64 results stand in as +-DBL_MAX (odd, beyond every target's max), and exact zero
sums take their sign from IEEE 754-2019 6.3.  Special operands follow x86 SSE, chosen
explicitly rather than left to the hardware.  Products whose error is not exact in
float64 (tiny products) and fma products that are not exact are reported for the
general path.  The kernels assume the FPU's default state (round to nearest, no FTZ/DAZ),
which refcomp checks before using them.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import CACHE
from ..rounding.unpack import bits_view
from .core import (bits_from_f64, f64_from_bits, f64_from_f16_bits, f64_from_f32_bits, sel,
                   store_value)
from .fast_cast import fast_params, narrow, out_view

__all__ = ["fast_op_params", "run_fast_op", "fpu_is_default"]

_KERNELS: dict = {}
U64 = np.uint64
QUIET = U64(1 << 51)
SIGN = U64(1 << 63)
DEFAULT_NAN = U64(0xFFF8000000000000)
DBL_MAX = U64(0x7FEFFFFFFFFFFFFF)
TINY = 2.0 ** -969          # products at least this large have an exact float64 error


@intrinsic
def fma_native(typingctx, a, b, c):
    """a * b + c with one rounding in float32 or float64 (LLVM llvm.fma.f32 / .f64: the FMA
    instruction, or libm fma); the three operands share one float type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    sig = a(a, a, a)
    name = "llvm.fma.f32" if a.bitwidth == 32 else "llvm.fma.f64"

    def codegen(context, builder, signature, args):
        t = ir.FloatType() if a.bitwidth == 32 else ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t, t, t]),
                                            name)
        return builder.call(fn, args)

    return sig, codegen


fma64 = fma_native              # the float64 use, under its historical name


def fpu_is_default() -> bool:
    """Whether floating-point arithmetic rounds to nearest without flushing subnormals."""
    tiny = np.float64(2.0 ** -1074)
    one = np.float64(1.0)
    third = np.float64(1.0) / np.float64(3.0)
    return bool(tiny * one != 0.0 and third * np.float64(3.0) == one
                and np.float64(1.0) + np.float64(2.0 ** -53) == one
                and np.float64(1.0) + np.float64(2.0 ** -52 + 2.0 ** -60) != one)


def fast_op_params(p, fmt):
    """Scalars of the fast op kernels, or None outside their domain."""
    from ..rounding.params import P
    if int(p[P.MODE]) == 6 or fmt.man_bits > 51:
        return None
    return fast_params(p, 11, 52, fmt)


@njit(inline="always")
def ro53(s, err):
    """Bits of the float64 rounding to odd of s + err (s = RN(s + err), err exact)."""
    sb = bits_from_f64(s)
    nudge = (err != 0.0) & ((sb & U64(1)) == U64(0))
    up = (err > 0.0) == (s > 0.0)
    return sel(nudge, sel(up, sb + U64(1), sb - U64(1)), sb)


@njit(inline="always")
def two_sum_odd(x, y, tn):
    """Round-to-odd bits of x + y for finite x, y; overflow gives +-DBL_MAX; exact zero
    sums of opposite signs are -0 when rounding toward negative (tn), else +0."""
    s = x + y
    z = s - x
    err = (x - (s - z)) + (y - z)
    r = ro53(s, err)
    r = sel(np.isinf(s), (bits_from_f64(s) & SIGN) | DBL_MAX, r)
    opposite = (bits_from_f64(x) ^ bits_from_f64(y)) >= SIGN
    return sel((s == 0.0) & opposite, sel(tn, SIGN, U64(0)), r)


def _widen(in_m: int):
    if in_m == 52:
        return njit(inline="always")(lambda b: f64_from_bits(U64(b)))
    if in_m == 23:
        return njit(inline="always")(lambda b: f64_from_f32_bits(np.uint32(b)))
    return njit(inline="always")(lambda b: f64_from_f16_bits(np.uint16(b)))


@njit(inline="always")
def add_odd(a, b, negate, tn):
    """Round-to-odd float64 bits of a + b (a - b if `negate`), with x86 SSE specials
    (inf - inf: default NaN; a NaN operand's payload, quieted, `a` first)."""
    y = -b if negate else b
    ab, yb = bits_from_f64(a), bits_from_f64(b)
    a_inf, y_inf = np.isinf(a), np.isinf(y)
    r = two_sum_odd(a, y, tn)
    r = sel(a_inf | y_inf, bits_from_f64(a + y), r)
    r = sel(a_inf & y_inf & ((a > 0.0) != (y > 0.0)), DEFAULT_NAN, r)
    r = sel(np.isnan(y), yb | QUIET, r)
    return sel(np.isnan(a), ab | QUIET, r)


@njit(inline="always")
def mul_odd(a, b):
    """Round-to-odd float64 bits of a * b with x86 SSE specials, and whether the product's
    error was exact (False for tiny nonzero products: the general path must redo them)."""
    ab, bb = bits_from_f64(a), bits_from_f64(b)
    a_inf, b_inf = np.isinf(a), np.isinf(b)
    p = a * b
    e = fma64(a, b, -p)
    r = ro53(p, e)
    finite = np.isfinite(a) & np.isfinite(b)
    r = sel(np.isinf(p) & finite, (bits_from_f64(p) & SIGN) | DBL_MAX, r)
    r = sel(a_inf | b_inf, bits_from_f64(p), r)
    r = sel((a_inf & (b == 0.0)) | (b_inf & (a == 0.0)), DEFAULT_NAN, r)
    r = sel(np.isnan(b), bb | QUIET, r)
    r = sel(np.isnan(a), ab | QUIET, r)
    return r, not (finite & (a != 0.0) & (b != 0.0) & (np.abs(p) < TINY))


@njit(inline="always")
def fma_odd(a, b, c, tn):
    """Round-to-odd float64 bits of a * b + c with x86 SSE specials (NaN priority a, b,
    c), and whether the result is exact-by-construction (False: a product that is not
    exact in float64, the general path must redo it)."""
    ab, bb, cb = bits_from_f64(a), bits_from_f64(b), bits_from_f64(c)
    a_inf, b_inf = np.isinf(a), np.isinf(b)
    p = a * b
    e = fma64(a, b, -p)
    finite = np.isfinite(a) & np.isfinite(b)
    p_ok = (e == 0.0) & (not (np.isinf(p) & finite)) & \
        (not ((a != 0.0) & (b != 0.0) & (np.abs(p) < TINY) & finite))
    r = two_sum_odd(p, c, tn)
    p_inf, c_inf = a_inf | b_inf, np.isinf(c)
    r = sel(p_inf | c_inf, bits_from_f64(p + c), r)
    r = sel(p_inf & c_inf & ((p > 0.0) != (c > 0.0)), DEFAULT_NAN, r)
    r = sel(np.isnan(c), cb | QUIET, r)
    r = sel((a_inf & (b == 0.0)) | (b_inf & (a == 0.0)), DEFAULT_NAN, r)
    r = sel(np.isnan(b), bb | QUIET, r)
    r = sel(np.isnan(a), ab | QUIET, r)
    return r, p_ok | (not finite) | (not np.isfinite(c))


def _make(op: str, in_m: int, out_kind: int, mode: int):
    widen = _widen(in_m)

    @njit(cache=CACHE)
    def kernel(xa, xb, xc, q, tn, out, vshift):
        nslow = 0
        for i in range(xa.size):
            a = widen(xa[i])
            b = widen(xb[i])
            ok = True
            if op == "add" or op == "sub":
                r = add_odd(a, b, op == "sub", tn)
            elif op == "mul":
                r, ok = mul_odd(a, b)
            else:
                r, ok = fma_odd(a, b, widen(xc[i]), tn)
            code, vb = narrow(r, q, 11, 52, mode, U64(0))
            out[i] = store_value(vb, code, vshift, out_kind)
            nslow += np.int64(not ok)
        return nslow
    return kernel


@njit(cache=CACHE)
def _slow_scan(xa, xb, op_is_fma, out_idx):
    """Indices of the elements the fast kernels leave to the general path."""
    n = 0
    for i in range(xa.size):
        a = np.float64(xa[i])
        b = np.float64(xb[i])
        p = a * b
        finite = np.isfinite(a) & np.isfinite(b)
        bad = finite & (a != 0.0) & (b != 0.0) & (np.abs(p) < TINY)
        if op_is_fma:
            bad |= finite & ((fma64(a, b, -p) != 0.0) | np.isinf(p))
        if bad:
            out_idx[n] = i
            n += 1
    return n


def run_fast_op(op, flats, q, tn, out, out_kind=0, vshift=0):
    """Run a fast op kernel; return the indices the general path must redo."""
    from ..rounding.unpack import FLOAT_LAYOUT
    in_m = FLOAT_LAYOUT[flats[0].dtype][1]
    mode = int(q[14])
    k = (op, in_m, out_kind, mode)
    kern = _KERNELS.get(k)
    if kern is None:
        kern = _KERNELS[k] = _make(op, in_m, out_kind, mode)
    xs = [bits_view(f) for f in flats] + [bits_view(flats[0])] * (3 - len(flats))
    nslow = kern(xs[0], xs[1], xs[2], q, bool(tn), out_view(out, out_kind), vshift)
    if not nslow:
        return np.zeros(0, dtype=np.int64)
    idx = np.empty(flats[0].size, dtype=np.int64)
    # the operand values (exact in float64), scanned by a small scalar kernel
    a64, b64 = flats[0].astype(np.float64), flats[1].astype(np.float64)
    n = _slow_scan(a64, b64, op == "fma", idx)
    return idx[:n]
