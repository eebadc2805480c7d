"""Numba twin of refcomp.rounding.core / unpack / cast_unpacked, for one element.

The functions mirror their NumPy specifications step for step, but are written without
data-dependent branches: every alternative is computed and the result chosen with
selects and 0/1 masks, so that LLVM if-converts and vectorises the loops that inline
them.  tests/test_jit_twins.py runs both implementations on the same inputs and compares
every code and flag.  Significands are uint64, exponents int64; constants are typed
explicitly because Numba turns mixed uint64/int64 arithmetic into int64 or float64, and
``~`` on a bool is an int in Python semantics, so boolean logic uses ``not``/``&``/``|``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..rounding.params import P
from .intrinsics import bitlen

U64 = np.uint64
I64 = np.int64
U8 = np.uint8
Z = U64(0)
ONE = U64(1)
ALL = U64(0xFFFFFFFFFFFFFFFF)
QUIET64 = U64(1 << 51)
EXP64 = U64(0x7FF << 52)
GAMMA = U64(0x9E3779B97F4A7C15)

INEXACT, UNDERFLOW, OVERFLOW, INVALID = U8(1), U8(2), U8(4), U8(16)
# parameter indices as module constants (Numba freezes global ints, not class attributes)
_BIAS = P.BIAS
_DAZ = P.DAZ
_EMAX = P.EMAX
_EMIN = P.EMIN
_FLUSH = P.FLUSH
_HASZERO = P.HASZERO
_INFCODE = P.INFCODE
_INFRULE = P.INFRULE
_M = P.M
_MAXCODE = P.MAXCODE
_MODE = P.MODE
_NANKIND = P.NANKIND
_NANRULE = P.NANRULE
_NEGRULE = P.NEGRULE
_NEGZERO = P.NEGZERO
_OVF = P.OVF
_QUIRK = P.QUIRK
_RBITS = P.RBITS
_SIGNED = P.SIGNED
_SUBN = P.SUBN
_TININESS = P.TININESS
_VIA32 = P.VIA32
_WIDTH = P.WIDTH
_ZERORULE = P.ZERORULE
ZERO, FINITE, INF, NAN = 0, 1, 2, 3


@intrinsic
def bits_from_f64(typingctx, x):
    """Reinterpret a float64 as its uint64 bit pattern (an LLVM bitcast)."""
    sig = types.uint64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def f64_from_bits(typingctx, x):
    """Reinterpret a uint64 bit pattern as a float64 (an LLVM bitcast)."""
    sig = types.float64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@njit(inline="always")
def scale2(n, q):
    """``n * 2**q`` exactly, for an integer n < 2**53 and an exactly representable result:
    two normal powers of two built from their bits (no table, so the loop vectorises)."""
    q1 = q >> 1
    q2 = q - q1
    p1 = f64_from_bits(U64(q1 + 1023) << U64(52))
    p2 = f64_from_bits(U64(q2 + 1023) << U64(52))
    return (np.float64(np.int64(n)) * p1) * p2


def _widening(from_ir, from_numba, doc):
    @intrinsic
    def widen(typingctx, x):
        sig = types.float64(from_numba)

        def codegen(context, builder, signature, args):
            return builder.fpext(builder.bitcast(args[0], from_ir), ir.DoubleType())

        return sig, codegen
    widen.__doc__ = doc
    return widen


f64_from_f32_bits = _widening(ir.FloatType(), types.uint32,
                              "The float64 value of a float32 bit pattern (exact widening).")
f64_from_f16_bits = _widening(ir.HalfType(), types.uint16,
                              "The float64 value of a float16 bit pattern (exact widening).")


@intrinsic
def f16_bits_from_f64(typingctx, x):
    """float16 bit pattern of a float64 that float16 represents exactly (LLVM fptrunc)."""
    sig = types.uint16(types.float64)

    def codegen(context, builder, signature, args):
        # through float32 (exact here): x86 converts float -> half natively (F16C), while
        # a direct double -> half truncation becomes a runtime-library call
        f = builder.fptrunc(args[0], ir.FloatType())
        h = builder.fptrunc(f, ir.HalfType())
        return builder.bitcast(h, ir.IntType(16))

    return sig, codegen


@njit(inline="always")
def store_value(vb, code, shift, kind):
    """The value in the output dtype (kind is a compile-time constant): 0 float64 bits (vb),
    1 float32, 2 float16 bits, 3/4 float32/float16 bits as ``code << shift`` (formats with
    the output dtype's exponent layout).  Exactness was checked when the plan was made."""
    if kind == 0:
        return vb
    if kind == 1:
        return np.float32(f64_from_bits(vb))
    if kind == 2:
        return f16_bits_from_f64(f64_from_bits(vb))
    return code << U64(shift)


@njit(inline="always")
def sel(c, a, b):
    """``a if c else b`` for uint64 a, b, as bit arithmetic: LLVM can turn a select whose
    arm is expensive back into a branch (which stops vectorisation); this it cannot."""
    return U64(b) ^ ((U64(a) ^ U64(b)) & (Z - U64(c)))


@njit(inline="always")
def isel(c, a, b):
    """``a if c else b`` for int64 a, b, as bit arithmetic (see :func:`sel`)."""
    return I64(b) ^ ((I64(a) ^ I64(b)) & (-I64(c)))


@njit(inline="always")
def clamp(x, lo, hi):
    """x limited to [lo, hi] (LLVM smin/smax: no branch)."""
    return min(max(x, lo), hi)


@njit(inline="always")
def splitmix64(state):
    """SplitMix64's output function (Steele, Lea, Flood 2014), on a uint64 state."""
    z = (state ^ (state >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


@njit(inline="always")
def config(p):
    """The parameter vector as a tuple of scalars, read once per kernel call."""
    m = p[_M]
    width = p[_WIDTH]
    mode = p[_MODE]
    nankind = p[_NANKIND]
    signed = p[_SIGNED] != 0
    sign_bit = (ONE << U64(width - 1)) if signed else Z
    ones = (ONE << U64(width - p[_SIGNED])) - ONE
    infcode = p[_INFCODE]
    maxcode = U64(p[_MAXCODE])
    if infcode >= 0:
        inf_res = U64(infcode)
    elif nankind == 3:
        inf_res = ONE << U64(width - 1)
    elif nankind == 2:
        inf_res = ones
    else:
        inf_res = maxcode
    # masks of the rounding mode: nearest-even, nearest-away, toward +, toward -, odd, SR
    K = (U64(mode == 0), U64(mode == 1), U64(mode == 3), U64(mode == 4), U64(mode == 5),
         U64(mode == 6))
    rbits = p[_RBITS]
    to_inf_pos = (mode == 0 or mode == 1 or mode == 6 or mode == 3) and p[_OVF] == 0
    to_inf_neg = (mode == 0 or mode == 1 or mode == 6 or mode == 4) and p[_OVF] == 0
    # NaN code = (sign ^ flip ? nan_sign : 0) | nan_base | (payload >> (52 - m) if use_pay)
    nanrule = p[_NANRULE]
    flip = Z
    use_pay = Z
    if nankind == 0:
        nan_base, nan_sign = Z, sign_bit
        flip = ONE if nanrule == 4 else Z
    elif nankind == 3:
        nan_base, nan_sign = sign_bit, Z
    elif nankind == 2:
        nan_base, nan_sign = ones, sign_bit
    else:
        quiet = ONE << U64(m - 1)
        mant = ((ONE << U64(m)) - ONE) if nanrule == 2 else quiet
        nan_base, nan_sign = U64(infcode) | mant, sign_bit
        use_pay = ~Z if nanrule == 0 else Z
    return (m, p[_EMIN], p[_EMAX], width, signed, p[_HASZERO] != 0, p[_NEGZERO] != 0,
            maxcode, infcode, nankind, sign_bit, ones, inf_res, K, rbits, to_inf_pos,
            to_inf_neg, p[_FLUSH] != 0, p[_TININESS] != 0 or mode == 6, p[_SUBN] != 0,
            nanrule, p[_OVF] != 0 or nankind == 0,
            p[_NEGRULE] != 0, p[_ZERORULE] != 0, p[_QUIRK] != 0, p[_BIAS], p[_INFRULE] != 0,
            (nan_base, nan_sign, flip, use_pay))


@njit(inline="always")
def sr_decide(sig, sh, rem, st, w, rbits):
    """Twin of core._stochastic_up: (carry of F + w, ambiguous) as uint64 0/1."""
    near = sh <= 64
    F_near = rem << U64(clamp(64 - sh, 0, 63))
    d = clamp(sh - 64, 0, 64)
    low = sel(d >= 64, ALL, (ONE << U64(clamp(d, 0, 63))) - ONE)
    F_far = sel(d >= 64, Z, sig >> U64(clamp(d, 0, 63)))
    F = sel(near, F_near, F_far)
    win = sel(near, st << U64(clamp(64 - sh, 0, 63)), U64((sig & low) != Z) | st)
    total = F + w
    # carry out of F + w without the "sum < operand" idiom, which LLVM turns into an
    # overflow intrinsic its loop vectoriser does not handle
    carry = ((F >> ONE) + (w >> ONE) + (F & w & ONE)) >> U64(63)
    r = U64(clamp(rbits, 1, 63))
    up_r = U64(((F >> (U64(64) - r)) + (w >> (U64(64) - r))) >= (ONE << r))
    use_r = (rbits > 0) & (rbits < 64)
    amb = U64(total >= (Z - win)) & U64(win != Z) & (ONE - carry)
    return sel(use_r, up_r, carry), sel(rbits > 0, Z, amb)


@njit(inline="always")
def round_at(s, sig, lsb, sticky, qe, K, w, rbits):
    """Twin of core.round_at: (n, inexact, ambiguous), the last two as uint64 0/1."""
    k_ne, k_na, k_tp, k_tn, k_odd, k_sr = K
    sh = qe - lsb
    exact = sh <= 0
    shc = clamp(sh, 1, 63)
    rem = sel(exact, Z, sig & ((ONE << U64(shc)) - ONE))
    n = sel(exact, sig << U64(clamp(-sh, 0, 63)), sig >> U64(shc))
    half = ONE << U64(shc - 1)
    st = U64(sticky)
    inexact = U64(rem != Z) | st
    up = ((U64(rem > half) | (U64(rem == half) & (st | (n & ONE)))) & k_ne) \
        | (U64(rem >= half) & k_na) | (inexact & (ONE - s) & k_tp) | (inexact & s & k_tn)
    carry, amb = sr_decide(sig, sh, rem, st, w, rbits)
    up = (up | (carry & k_sr)) & inexact
    return (n + up) | (inexact & k_odd), inexact, amb & k_sr & inexact


@njit(inline="always")
def nan_code(s, c, payload):
    """Twin of core.nan_code (payload in float64 layout)."""
    m = c[0]
    nan_base, nan_sign, flip, use_pay = c[27]
    return sel((s ^ flip) != Z, nan_sign, Z) | nan_base | \
        ((payload >> U64(52 - m)) & use_pay)


@njit(inline="always")
def pack_float(s, e, sig, lsb, sticky, c, w):
    """Twin of core.pack_float for one finite nonzero value: (code, flags, ambiguous)."""
    (m, emin, emax, width, signed, haszero, negzero, maxcode, _infcode, _nk, sign_bit,
     _ones, inf_res, K, rbits, to_inf_pos, to_inf_neg, flush, tin_before, subn) = c[:20]
    below = e < emin
    gap = below & (not subn)
    qe = isel(gap, emin, max(e, emin) - m)
    n, inexact, amb = round_at(s, sig, lsb, sticky, qe, K, w, rbits)
    n2, _i, _a = round_at(s, sig, lsb, sticky, e - m, K, w, rbits)
    tiny_after = (e < emin - 1) | ((e == emin - 1) & (n2 < (ONE << U64(m + 1))))
    tiny = (tin_before & below) | ((not tin_before) & tiny_after)
    expo = U64(clamp(e - emin, 0, 4096)) << U64(m)
    code = sel(haszero, sel(gap, n << U64(m), n + expo), n + expo - (ONE << U64(m)))
    zero_result = n == Z
    over = (e > emax) | ((not zero_result) & (not below) & (code > maxcode))
    neg = s != Z
    to_inf = (neg & to_inf_neg) | ((not neg) & to_inf_pos)
    code = sel(over, sel(to_inf, inf_res, maxcode), code)
    fl = sel(over, U64(OVERFLOW | INEXACT), Z)
    amb = sel(e <= emax, amb, Z)
    flushit = haszero & flush & tiny & (not over)
    code = sel(flushit, Z, code)
    zero_result = zero_result | flushit
    amb = sel(flushit, Z, amb)
    fl |= sel(flushit, U64(UNDERFLOW | INEXACT), Z)
    fl |= sel(haszero & tiny & (inexact != Z), U64(UNDERFLOW), Z)
    clampmin = below & (not haszero)
    code = sel(clampmin, Z, code)
    amb = sel(clampmin, Z, amb)
    fl |= sel(clampmin, U64(UNDERFLOW | INEXACT), Z)
    fl |= sel(inexact != Z, U64(INEXACT), Z)
    code = code | sel(signed & neg & (negzero | (not zero_result)), sign_bit, Z)
    bad = (not signed) & neg & ((not zero_result) | (not haszero))
    code = sel(bad, nan_code(Z, c, Z), code)
    fl = sel(bad, U64(INVALID), fl)
    return code, U8(fl), amb


@njit(inline="always")
def cast_one(cls, s, e, sig, lsb, sticky, payload, c, w):
    """Twin of cast.cast_unpacked for one element of any class (computed, then chosen)."""
    haszero, negzero, maxcode, infcode, sign_bit = c[5], c[6], c[7], c[8], c[10]
    inf_res, nankind, inf_to_max, negrule, zerorule, quirk = c[12], c[9], c[21], c[22], \
        c[23], c[24]
    signed = c[4]
    s_nan = s
    s = sel(negrule, Z, s)
    sgn = sel(s != Z, sign_bit, Z)
    # finite
    code, fl, amb = pack_float(s, e, sig, lsb, sticky, c, w)
    pow2 = ((sig & (sig - ONE)) == Z) & (not sticky)
    q_on = quirk & (e < -126) & (s == Z)
    e127 = e == -127
    code = sel(q_on, U64(e127 & (not pow2)), code)
    fl = U8(sel(q_on, sel(e127 & pow2, Z, U64(INEXACT)), U64(fl)))
    # zero
    zcode = sel(haszero, sel(negzero, sgn, Z), sel(zerorule, Z, nan_code(s, c, Z)))
    zfl = sel(haszero, Z, sel(zerorule, U64(INEXACT | UNDERFLOW), U64(INVALID)))
    # infinity
    has_inf = infcode >= 0
    icode = sgn | sel(c[26], maxcode, sel(has_inf, U64(max(infcode, 0)),
                                          sel(inf_to_max, maxcode, inf_res)))
    ifl = sel(has_inf & (not c[26]), Z, U64(INVALID))
    ibad = (not signed) & (s != Z)
    icode = sel(ibad, nan_code(s, c, Z), icode)
    ifl = sel(ibad, U64(INVALID), ifl)
    # NaN
    ncode = nan_code(s_nan, c, payload)
    nfl = sel(((payload & QUIET64) == Z) | (nankind == 0), U64(INVALID), Z)
    fin, zer, inf = cls == FINITE, cls == ZERO, cls == INF
    out = sel(fin, code, sel(zer, zcode, sel(inf, icode, ncode)))
    ofl = sel(fin, U64(fl), sel(zer, zfl, sel(inf, ifl, nfl)))
    return out, U8(ofl), sel(fin, amb, Z)


@njit(inline="always")
def unpack_float(u, in_e, in_m, daz):
    """Twin of unpack.unpack_float_bits for one bit pattern (as uint64)."""
    bias = (I64(1) << (in_e - 1)) - 1
    emask = (I64(1) << in_e) - 1
    s = u >> U64(in_e + in_m)
    E = I64((u >> U64(in_m)) & U64(emask))
    M = u & ((ONE << U64(in_m)) - ONE)
    sub = E == 0
    sig = sel(sub, M, M | (ONE << U64(in_m)))
    lsb = isel(sub, I64(1), E) - bias - in_m
    e = lsb + bitlen(sig) - 1
    special = E == emask
    zero = sub & ((M == Z) | daz)
    cls = I64(FINITE) + I64(special) * (I64(INF) - I64(FINITE) + I64(M != Z)) \
        - I64(zero) * I64(FINITE)
    return cls, s, e, sig, lsb, False, M << U64(52 - in_m)


@njit(inline="always")
def unpack_mag(neg, mag):
    """Twin of unpack.unpack_int for one magnitude (uint64) with its sign."""
    length = bitlen(mag)
    k = clamp(length - 62, 0, 2)
    sig = mag >> U64(k)
    sticky = (mag & ((ONE << U64(k)) - ONE)) != Z
    cls = isel(mag == Z, I64(ZERO), I64(FINITE))
    return cls, U64(neg), length - 1, sig, k, sticky, Z


@njit(inline="always")
def decode_bits(code, c, pow2):
    """Twin of formats.codec.decode for one code: the float64 bit pattern of its value."""
    m, emin, haszero, infcode, nankind, sign_bit, ones, subn, bias = \
        c[0], c[1], c[5], c[8], c[9], c[10], c[11], c[19], c[25]
    neg = (code & sign_bit) != Z
    mag = code & ~sign_bit
    mmask = (ONE << U64(m)) - ONE
    field = I64(mag >> U64(m))
    frac = mag & mmask
    sub = haszero & (field == 0)
    n = sel(sub, sel(subn, frac, Z), frac | (ONE << U64(m)))
    q = clamp(isel(sub, emin - m, field - bias - m), -1074, 1023)
    v = np.float64(n) * pow2[q + 1074]
    sbit = sel(neg, ONE << U64(63), Z)
    bits = bits_from_f64(v) | sbit
    has_inf = infcode >= 0
    infc = sel(has_inf, U64(max(infcode, 0)), ALL)
    is_inf = has_inf & (mag == infc)
    is_nan = ((nankind == 1) & (mag > infc)) | ((nankind == 2) & (mag == ones)) \
        | ((nankind == 3) & (code == sign_bit))
    payload = frac << U64(52 - m)
    payload = sel(payload == Z, QUIET64, payload)
    bits = sel(is_inf, sbit | EXP64, bits)
    return sel(is_nan, sbit | EXP64 | payload, bits)
