"""Numba twin of refcomp.ops.exact: exact results of +, -, *, fma, /, sqrt, one element.

Branch-free like refcomp._jit.core: every special case is computed and chosen by a
select in priority order (the NumPy spec's ``_Result.put`` order, reversed: the last
override wins here).  A result is the tuple ``(cls, s, e, sig, lsb, sticky, payload,
flags)`` with uint64 fields except ``cls``, ``e`` and ``lsb`` (int64).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .core import FINITE, INF, NAN, ONE, ZERO, Z, clamp, isel, sel
from .intrinsics import bitlen

U64 = np.uint64
I64 = np.int64
QUIET = U64(1 << 51)
INVALID = U64(16)
DIVZERO = U64(8)
TOP = 60
M32 = U64(0xFFFFFFFF)


@njit(inline="always")
def shl_c(x, k):
    """x << k, 0 for k >= 64 (k >= 0)."""
    return sel(k >= 64, Z, x << U64(clamp(k, 0, 63)))


@njit(inline="always")
def shr_c(x, k):
    """x >> k, 0 for k >= 64 (k >= 0)."""
    return sel(k >= 64, Z, x >> U64(clamp(k, 0, 63)))


@njit(inline="always")
def lowmask(k):
    return sel(k >= 64, ~Z, (ONE << U64(clamp(k, 0, 63))) - ONE)


@njit(inline="always")
def mul64(a, b):
    a0, a1 = a & M32, a >> U64(32)
    b0, b1 = b & M32, b >> U64(32)
    ll = a0 * b0
    lh = a0 * b1
    hl = a1 * b0
    mid = (ll >> U64(32)) + (lh & M32) + (hl & M32)
    lo = (ll & M32) | (mid << U64(32))
    hi = a1 * b1 + (lh >> U64(32)) + (hl >> U64(32)) + (mid >> U64(32))
    return hi, lo


@njit(inline="always")
def bitlen128(hi, lo):
    return isel(hi != Z, bitlen(hi) + 64, bitlen(lo))


@njit(inline="always")
def shl128(hi, lo, k):
    big = k >= 64
    hs = shl_c(hi, k) | sel(k == 0, Z, shr_c(lo, 64 - k))
    return sel(big, shl_c(lo, k - 64), hs), sel(big, Z, shl_c(lo, k))


@njit(inline="always")
def shr128_sticky(hi, lo, k):
    big = k >= 64
    ls = shr_c(lo, k) | sel(k == 0, Z, shl_c(hi, 64 - clamp(k, 0, 64)))
    nh = sel(big, Z, shr_c(hi, k))
    nl = sel(big, shr_c(hi, k - 64), ls)
    lost = sel(big, U64((lo != Z) | ((hi & lowmask(k - 64)) != Z)), U64((lo & lowmask(k)) != Z))
    return nh, nl, lost


@njit(inline="always")
def reduce128(hi, lo, lsb):
    """(e, sig < 2**(TOP+1), lsb, sticky) of a 128-bit magnitude."""
    length = bitlen128(hi, lo)
    k = clamp(length - (TOP + 1), 0, 128)
    _h, low, lost = shr128_sticky(hi, lo, k)
    return lsb + length - 1, low, lsb + k, lost


@njit(inline="always")
def is_snan(c, p):
    return U64((c == NAN) & ((p & QUIET) == Z))


@njit(inline="always")
def zero_sign(sa, sb, tn):
    return sel(sa == sb, sa, tn)


@njit(inline="always")
def to_top(e, sig, lsb):
    k = TOP - (e - lsb)
    return shl_c(sig, k), lsb - k


@njit(inline="always")
def nan_prop(ca, sa, pa, cb, sb, pb):
    """x86 propagation: (is NaN result, sign, payload, flags)."""
    an = ca == NAN
    return an | (cb == NAN), sel(an, sa, sb), sel(an, pa, pb) | QUIET, \
        sel((is_snan(ca, pa) | is_snan(cb, pb)) != Z, INVALID, Z)


@njit(inline="always")
def specials(cls, s, pay, fl, dn, ca, sa, pa, cb, sb, pb):
    """The last overrides of a two-operand result: invalid operations (``dn``) give the
    default NaN, then NaN operands propagate (the NumPy spec's first two ``put``s)."""
    cls, s, pay, fl = isel(dn, NAN, cls), sel(dn, ONE, s), sel(dn, QUIET, pay), \
        sel(dn, INVALID, fl)
    isn, ns, npay, nfl = nan_prop(ca, sa, pa, cb, sb, pb)
    return isel(isn, NAN, cls), sel(isn, ns, s), sel(isn, npay, pay), sel(isn, nfl, fl)


@njit(inline="always")
def x_add(ca, sa, ea, ga, la, pa, cb, sb0, eb, gb, lb, pb, negate, tn):
    """Twin of exact.add."""
    sb = sb0 ^ negate
    A, lA = to_top(ea, ga, la)
    B, lB = to_top(eb, gb, lb)
    a_big = (ea > eb) | ((ea == eb) & (A >= B))
    big = sel(a_big, A, B)
    small = sel(a_big, B, A)
    lsb = isel(a_big, lA, lB)
    d = clamp(abs(ea - eb), 0, 64)
    shifted = shr_c(small, d)
    lost = U64((small & lowmask(d)) != Z)
    S = sel(sa == sb, big + shifted, big - shifted - lost)
    zero = (S == Z) & (lost == Z)
    cls = isel(zero, ZERO, FINITE)
    s = sel(zero, zero_sign(sa, sb, tn), sel(a_big, sa, sb))
    e = lsb + bitlen(S) - 1
    sig, st, pay, fl = S, lost, Z, Z
    # one zero operand: the other operand exactly
    bz = cb == ZERO
    cls, s, e, sig, lsb, st = isel(bz, FINITE, cls), sel(bz, sa, s), isel(bz, ea, e), \
        sel(bz, ga, sig), isel(bz, la, lsb), sel(bz, Z, st)
    az = ca == ZERO
    cls, s, e, sig, lsb, st = isel(az, FINITE, cls), sel(az, sb, s), isel(az, eb, e), \
        sel(az, gb, sig), isel(az, lb, lsb), sel(az, Z, st)
    both0 = az & bz
    cls, s = isel(both0, ZERO, cls), sel(both0, zero_sign(sa, sb, tn), s)
    bi, ai = cb == INF, ca == INF
    cls, s = isel(bi, INF, cls), sel(bi, sb, s)
    cls, s = isel(ai, INF, cls), sel(ai, sa, s)
    cls, s, pay, fl = specials(cls, s, pay, fl, ai & bi & (sa != sb), ca, sa, pa, cb, sb0, pb)
    return cls, s, e, sig, lsb, st, pay, fl


@njit(inline="always")
def x_mul(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb):
    """Twin of exact.mul."""
    s = sa ^ sb
    hi, lo = mul64(ga, gb)
    e, sig, lsb, st = reduce128(hi, lo, la + lb)
    cls, pay, fl = FINITE, Z, Z
    az, bz, ai, bi = ca == ZERO, cb == ZERO, ca == INF, cb == INF
    cls = isel(az | bz, ZERO, cls)
    cls = isel(ai | bi, INF, cls)
    cls, s, pay, fl = specials(cls, s, pay, fl, (ai & bz) | (bi & az), ca, sa, pa, cb, sb, pb)
    return cls, s, e, sig, lsb, st, pay, fl


@njit(inline="always")
def x_fma(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb, cc, sc, ec, gc, lc, pc, tn):
    """Twin of exact.fma."""
    sp = sa ^ sb
    ph, pl = mul64(ga, gb)
    plen = bitlen128(ph, pl)
    ep = la + lb + plen - 1
    ph, pl = shl128(ph, pl, clamp(125 - plen, 0, 127))
    ch, cl = shl128(Z, gc, clamp(125 - bitlen(gc), 0, 127))
    cz = cc == ZERO
    ecc = isel(cz, ep - 200, ec)
    p_big = (ep > ecc) | ((ep == ecc) & ((ph > ch) | ((ph == ch) & (pl >= cl))))
    bh, bl = sel(p_big, ph, ch), sel(p_big, pl, cl)
    sh, sl = sel(cz, Z, sel(p_big, ch, ph)), sel(cz, Z, sel(p_big, cl, pl))
    d = clamp(abs(ep - ecc), 0, 200)
    xh, xl, lost = shr128_sticky(sh, sl, d)
    tl = bl + xl
    th = bh + xh + U64(tl < bl)
    dl = bl - xl
    dh = bh - xh - U64(bl < xl)
    dh = dh - U64(dl < lost)
    dl = dl - lost
    same = sp == sc
    Sh, Sl = sel(same, th, dh), sel(same, tl, dl)
    zero = (Sh == Z) & (Sl == Z) & (lost == Z)
    e, sig, lsb, st = reduce128(Sh, Sl, isel(p_big, ep, ecc) - 124)
    st = st | lost
    cls = isel(zero, ZERO, FINITE)
    s = sel(zero, zero_sign(sp, sc, tn), sel(p_big, sp, sc))
    pay, fl = Z, Z
    az, bz, ai, bi, ci = ca == ZERO, cb == ZERO, ca == INF, cb == INF, cc == INF
    pz = az | bz
    cls, s, e, sig, lsb, st = isel(pz, FINITE, cls), sel(pz, sc, s), isel(pz, ec, e), \
        sel(pz, gc, sig), isel(pz, lc, lsb), sel(pz, Z, st)
    both0 = pz & cz
    cls, s = isel(both0, ZERO, cls), sel(both0, zero_sign(sp, sc, tn), s)
    cls, s = isel(ci, INF, cls), sel(ci, sc, s)
    pi = ai | bi
    cls, s = isel(pi, INF, cls), sel(pi, sp, s)
    dn1 = pi & ci & (sp != sc)
    cls, s, pay, fl = isel(dn1, NAN, cls), sel(dn1, ONE, s), sel(dn1, QUIET, pay), \
        sel(dn1, INVALID, fl)
    cn = cc == NAN
    cls, s, pay, fl = isel(cn, NAN, cls), sel(cn, sc, s), sel(cn, pc | QUIET, pay), \
        sel(cn, sel(is_snan(cc, pc) != Z, INVALID, Z), fl)
    dn = (ai & bz) | (bi & az)
    cls, s, pay, fl = isel(dn, NAN, cls), sel(dn, ONE, s), sel(dn, QUIET, pay), \
        sel(dn, INVALID, fl)
    abn = (ca == NAN) | (cb == NAN)
    inv = (is_snan(ca, pa) | is_snan(cb, pb) | is_snan(cc, pc)) != Z
    an = ca == NAN
    cls, s = isel(abn, NAN, cls), sel(abn, sel(an, sa, sb), s)
    pay, fl = sel(abn, sel(an, pa, pb) | QUIET, pay), sel(abn, sel(inv, INVALID, Z), fl)
    return cls, s, e, sig, lsb, st, pay, fl


@njit(inline="always")
def x_div(ca, sa, ea, ga, la, pa, cb, sb, eb, gb, lb, pb):
    """Twin of exact.div."""
    s = sa ^ sb
    A = shl_c(ga, 52 - (ea - la))
    B = shl_c(gb, 52 - (eb - lb))
    small = A < B
    A = sel(small, A << ONE, A)
    lA = ea - 52 - I64(small)
    B = sel(B == Z, ONE, B)
    q = np.float64(np.int64(A)) / np.float64(np.int64(B))
    Q = U64(np.int64(q * 4503599627370496.0))
    R = np.int64((A << U64(52)) - Q * B)
    Bi = np.int64(B)
    t = R << 8
    qd = t // Bi
    sig = U64(np.int64(Q << U64(8)) + qd)
    st = U64((t - qd * Bi) != 0)
    lsb = lA - (eb - 52) - 52 - 8
    e = lsb + bitlen(sig) - 1
    cls, pay, fl = FINITE, Z, Z
    az, bz, ai, bi = ca == ZERO, cb == ZERO, ca == INF, cb == INF
    cls, fl = isel(bz, INF, cls), sel(bz, DIVZERO, fl)
    cls = isel(az, ZERO, cls)
    cls = isel(bi, ZERO, cls)
    cls, fl = isel(ai, INF, cls), sel(ai, Z, fl)        # inf / 0 is an exact infinity
    cls, s, pay, fl = specials(cls, s, pay, fl, (ai & bi) | (az & bz), ca, sa, pa, cb, sb, pb)
    return cls, s, e, sig, lsb, st, pay, fl


@njit(inline="always")
def x_sqrt(ca, sa, ea, ga, la, pa):
    """Twin of exact.sqrt."""
    X = shl_c(ga, 52 - (ea - la))
    lx = ea - 52
    odd = (lx & 1) == 1
    X = sel(odd, X << ONE, X)
    lx = lx - I64(odd)
    r0 = np.sqrt(np.float64(np.int64(X)))
    S = U64(np.int64(r0 * 67108864.0))
    S = sel(S == Z, ONE, S)
    R = np.int64((X << U64(52)) - S * S)
    Si = np.int64(S)
    d = (R << 7) // Si
    rr = np.int64(S << U64(8)) + d
    D = ((R << 7) - Si * d) * 512 - d * d
    lo = D < 0
    rr = rr - I64(lo)
    D = isel(lo, D + 2 * rr + 1, D)
    hi = D >= 2 * rr + 1
    D = isel(hi, D - 2 * rr - 1, D)
    rr = rr + I64(hi)
    sig = U64(rr)
    lsb = (lx - 68) >> 1
    e = lsb + bitlen(sig) - 1
    cls, s, st, pay, fl = FINITE, Z, U64(D != 0), Z, Z
    cls, s = isel(ca == ZERO, ZERO, cls), sel(ca == ZERO, sa, s)
    cls = isel(ca == INF, INF, cls)
    dn = (sa == ONE) & (ca != ZERO)
    cls, s, pay, fl = isel(dn, NAN, cls), sel(dn, ONE, s), sel(dn, QUIET, pay), \
        sel(dn, INVALID, fl)
    n = ca == NAN
    cls, s, pay = isel(n, NAN, cls), sel(n, sa, s), sel(n, pa | QUIET, pay)
    fl = sel(n, sel(is_snan(ca, pa) != Z, INVALID, Z), fl)
    return cls, s, e, sig, lsb, st, pay, fl
