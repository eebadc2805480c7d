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


@intrinsic
def f64_from_f32_bits(typingctx, x):
    """The float64 value of a float32 bit pattern (bitcast, then exact widening)."""
    sig = types.float64(types.uint32)

    def codegen(context, builder, signature, args):
        f = builder.bitcast(args[0], ir.FloatType())
        return builder.fpext(f, ir.DoubleType())

    return sig, codegen


@intrinsic
def f64_from_f16_bits(typingctx, x):
    """The float64 value of a float16 bit pattern (bitcast, then exact widening)."""
    sig = types.float64(types.uint16)

    def codegen(context, builder, signature, args):
        f = builder.bitcast(args[0], ir.HalfType())
        return builder.fpext(f, ir.DoubleType())

    return sig, codegen


@njit(inline="always")
def sel(c, a, b):
    """``a if c else b`` for uint64 a, b, as bit arithmetic (never a branch)."""
    return b ^ ((a ^ b) & (Z - U64(c)))


@njit(inline="always")
def clamp(x, lo, hi):
    return lo if x < lo else (hi if x > hi else x)


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
    return (m, p[_EMIN], p[_EMAX], width, signed, p[_HASZERO] != 0, p[_NEGZERO] != 0,
            maxcode, infcode, nankind, sign_bit, ones, inf_res, K, rbits, to_inf_pos,
            to_inf_neg, p[_FLUSH] != 0, p[_TININESS] != 0 or mode == 6, p[_SUBN] != 0,
            p[_NANRULE], p[_OVF] != 0 or nankind == 0,
            p[_NEGRULE] != 0, p[_ZERORULE] != 0, p[_QUIRK] != 0, p[_BIAS], p[_INFRULE] != 0)


@njit(inline="always")
def sr_decide(sig, sh, rem, st, w, rbits):
    """Twin of core._stochastic_up: (carry of F + w, ambiguous) as uint64 0/1."""
    near = sh <= 64
    F_near = rem << U64(clamp(64 - sh, 0, 63))
    d = clamp(sh - 64, 0, 64)
    low = ALL if d >= 64 else (ONE << U64(clamp(d, 0, 63))) - ONE
    F_far = Z if d >= 64 else sig >> U64(clamp(d, 0, 63))
    F = F_near if near else F_far
    win = (st << U64(clamp(64 - sh, 0, 63))) if near else (U64((sig & low) != Z) | st)
    total = F + w
    carry = U64(total < w)
    if rbits > 0 and rbits < 64:
        r = U64(rbits)
        up_r = U64(((F >> (U64(64) - r)) + (w >> (U64(64) - r))) >= (ONE << r))
        return up_r, Z
    amb = U64(total >= (Z - win)) & U64(win != Z) & (ONE - carry)
    return carry, (Z if rbits > 0 else amb)


@njit(inline="always")
def round_at(s, sig, lsb, sticky, qe, K, w, rbits):
    """Twin of core.round_at: (n, inexact, ambiguous), the last two as uint64 0/1."""
    k_ne, k_na, k_tp, k_tn, k_odd, k_sr = K
    sh = qe - lsb
    exact = sh <= 0
    shc = clamp(sh, 1, 63)
    rem = Z if exact else sig & ((ONE << U64(shc)) - ONE)
    n = (sig << U64(clamp(-sh, 0, 63))) if exact else (sig >> U64(shc))
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
    m, nankind, sign_bit, ones, nanrule = c[0], c[9], c[10], c[11], c[20]
    if nankind == 0:
        flip = ONE if nanrule == 4 else Z
        return sign_bit if (s ^ flip) != Z else Z
    if nankind == 3:
        return sign_bit
    sp = sign_bit if s != Z else Z
    if nankind == 2:
        return sp | ones
    mu = U64(m)
    quiet = ONE << (mu - ONE)
    if nanrule == 2:
        mant = (ONE << mu) - ONE
    elif nanrule == 1:
        mant = quiet
    else:
        mant = (payload >> (U64(52) - mu)) | quiet
    return sp | U64(c[8]) | mant


@njit(inline="always")
def pack_float(s, e, sig, lsb, sticky, c, w):
    """Twin of core.pack_float for one finite nonzero value: (code, flags, ambiguous)."""
    (m, emin, emax, width, signed, haszero, negzero, maxcode, _infcode, _nk, sign_bit,
     _ones, inf_res, K, rbits, to_inf_pos, to_inf_neg, flush, tin_before, subn) = c[:20]
    below = e < emin
    gap = below and not subn
    qe = emin if gap else (e if e > emin else emin) - m
    n, inexact, amb = round_at(s, sig, lsb, sticky, qe, K, w, rbits)
    n2, _i, _a = round_at(s, sig, lsb, sticky, e - m, K, w, rbits)
    tiny = below if tin_before else \
        (e < emin - 1) or (e == emin - 1 and n2 < (ONE << U64(m + 1)))
    expo = U64(clamp(e - emin, 0, 4096)) << U64(m)
    if haszero:
        code = (n << U64(m)) if gap else n + expo
    else:
        code = n + expo - (ONE << U64(m))
    zero_result = n == Z
    over = e > emax or (not zero_result and not below and code > maxcode)
    to_inf = to_inf_neg if s != Z else to_inf_pos
    code = (inf_res if to_inf else maxcode) if over else code
    fl = (OVERFLOW | INEXACT) if over else U8(0)
    amb = amb if e <= emax else Z
    flushit = haszero and flush and tiny and not over
    code = Z if flushit else code
    zero_result = zero_result or flushit
    amb = Z if flushit else amb
    fl |= (UNDERFLOW | INEXACT) if flushit else U8(0)
    fl |= UNDERFLOW if (haszero and tiny and inexact != Z) else U8(0)
    clampmin = below and not haszero
    code = Z if clampmin else code
    amb = Z if clampmin else amb
    fl |= (UNDERFLOW | INEXACT) if clampmin else U8(0)
    fl |= INEXACT if inexact != Z else U8(0)
    code = (code | sign_bit) if (signed and s != Z and (negzero or not zero_result)) else code
    bad = (not signed) and s != Z and (not zero_result or not haszero)
    code = nan_code(Z, c, Z) if bad else code
    fl = INVALID if bad else fl
    return code, fl, amb


@njit(inline="always")
def cast_one(cls, s, e, sig, lsb, sticky, payload, c, w):
    """Twin of cast.cast_unpacked for one element of any class (computed, then chosen)."""
    haszero, negzero, maxcode, infcode, sign_bit = c[5], c[6], c[7], c[8], c[10]
    inf_res, nankind, inf_to_max, negrule, zerorule, quirk = c[12], c[9], c[21], c[22], \
        c[23], c[24]
    signed = c[4]
    s_nan = s
    s = Z if negrule else s
    sgn = sign_bit if s != Z else Z
    # finite
    code, fl, amb = pack_float(s, e, sig, lsb, sticky, c, w)
    pow2 = (sig & (sig - ONE)) == Z and not sticky
    q_on = quirk and e < -126 and s == Z
    code = (ONE if (e == -127 and not pow2) else Z) if q_on else code
    fl = (U8(0) if (e == -127 and pow2) else INEXACT) if q_on else fl
    # zero
    if haszero:
        zcode = sgn if negzero else Z
        zfl = U8(0)
    else:
        zcode = Z if zerorule else nan_code(s, c, Z)
        zfl = (INEXACT | UNDERFLOW) if zerorule else INVALID
    # infinity
    if c[26]:
        icode = sgn | maxcode
        ifl = INVALID
    elif infcode >= 0:
        icode = sgn | U64(infcode)
        ifl = U8(0)
    else:
        icode = sgn | (maxcode if inf_to_max else inf_res)
        ifl = INVALID
    ibad = (not signed) and s != Z
    icode = nan_code(s, c, Z) if ibad else icode
    ifl = INVALID if ibad else ifl
    # NaN
    ncode = nan_code(s_nan, c, payload)
    nfl = INVALID if ((payload & QUIET64) == Z or nankind == 0) else U8(0)
    if cls == FINITE:
        return code, fl, amb
    if cls == ZERO:
        return zcode, zfl, Z
    if cls == INF:
        return icode, ifl, Z
    return ncode, nfl, Z


@njit(inline="always")
def unpack_float(u, in_e, in_m, daz):
    """Twin of unpack.unpack_float_bits for one bit pattern (as uint64)."""
    bias = (I64(1) << (in_e - 1)) - 1
    emask = (I64(1) << in_e) - 1
    s = u >> U64(in_e + in_m)
    E = I64((u >> U64(in_m)) & U64(emask))
    M = u & ((ONE << U64(in_m)) - ONE)
    sub = E == 0
    sig = M if sub else M | (ONE << U64(in_m))
    lsb = (I64(1) if sub else E) - bias - in_m
    e = lsb + bitlen(sig) - 1
    special = E == emask
    if special:
        cls = INF if M == Z else NAN
    elif sub and (M == Z or daz):
        cls = ZERO
    else:
        cls = FINITE
    return cls, s, e, sig, lsb, False, M << U64(52 - in_m)


@njit(inline="always")
def unpack_mag(neg, mag):
    """Twin of unpack.unpack_int for one magnitude (uint64) with its sign."""
    length = bitlen(mag)
    k = clamp(length - 62, 0, 2)
    sig = mag >> U64(k)
    sticky = (mag & ((ONE << U64(k)) - ONE)) != Z
    cls = ZERO if mag == Z else FINITE
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
    n = (frac if subn else Z) if sub else frac | (ONE << U64(m))
    q = clamp((emin - m) if sub else field - bias - m, -1074, 1023)
    v = np.float64(n) * pow2[q + 1074]
    bits = bits_from_f64(-v if neg else v)
    sbit = (ONE << U64(63)) if neg else Z
    has_inf = infcode >= 0
    infc = U64(infcode) if has_inf else ALL
    is_inf = has_inf & (mag == infc)
    is_nan = ((nankind == 1) & (mag > infc)) | ((nankind == 2) & (mag == ones)) \
        | ((nankind == 3) & (code == sign_bit))
    payload = frac << U64(52 - m)
    payload = QUIET64 if payload == Z else payload
    bits = (sbit | EXP64) if is_inf else bits
    return (sbit | EXP64 | payload) if is_nan else bits
