"""Exact results of +, -, *, fma, /, sqrt on float64 operands (NumPy specification).

Each function returns an :class:`~refcomp.rounding.unpack.Unpacked` result -- the exact
value (class, sign, ``sig * 2**lsb`` with a sticky bit for bits beyond 60) -- plus the
operation's own flags (invalid, divide-by-zero).  The rounding core then rounds it into
the target format: one rounding, whatever the inputs (they need not be in the format).

Special values follow Berkeley SoftFloat 3e's 8086-SSE specialisation (= x86 SSE):
``s_propagateNaNF64UI.c`` -- a NaN operand propagates quieted, the first operand's NaN
winning over the second's, and invalid is raised when either is signalling; the default
NaN (invalid operations) is the negative quiet NaN; ``s_mulAddF64.c`` -- a NaN in a or b
propagates (then against c), 0*inf raises invalid and gives the default NaN even when c
is a NaN, otherwise a NaN c propagates.  Exact zero results of x + (-x) are +0, or -0
when rounding toward negative (IEEE 754-2019 6.3).
"""

from __future__ import annotations

import numpy as np

from .._bits import (U0, U1, add128, bit_length, bit_length128, low_mask, lt128, mul64, shl,
                     shl128, shr, shr128_sticky, sub128)
from ..rounding.core import MODE
from ..rounding.modes import Flag
from ..rounding.unpack import FINITE, INF, NAN, ZERO, Unpacked, unpack_float_bits

__all__ = ["operand", "add", "mul", "fma", "div", "sqrt", "DEFAULT_NAN_PAYLOAD", "TOP"]

QUIET = np.uint64(1 << 51)
DEFAULT_NAN_PAYLOAD = QUIET
INVALID = np.uint8(Flag.INVALID)
DIVZERO = np.uint8(Flag.DIVIDE_BY_ZERO)
#: exact results keep their significand below 2**(TOP+1), with a sticky bit beyond
TOP = 60
_TD = MODE.TN          # toward_negative: the one mode whose exact zero sums are -0


def operand(x: np.ndarray, daz_emin=None) -> Unpacked:
    """Unpack float64 operands; with ``daz_emin`` values below 2**daz_emin read as zero."""
    u = unpack_float_bits(np.ascontiguousarray(x, dtype=np.float64).view(np.uint64), 11, 52)
    if daz_emin is not None:
        tiny = (u.cls == FINITE) & (u.e < daz_emin)
        u = u._replace(cls=np.where(tiny, ZERO, u.cls).astype(np.uint8))
    return u


class _Result:
    """Mutable builder of an Unpacked result, filled class by class."""

    def __init__(self, n):
        self.cls = np.full(n, FINITE, dtype=np.uint8)
        self.s = np.zeros(n, dtype=np.uint64)
        self.e = np.zeros(n, dtype=np.int64)
        self.sig = np.zeros(n, dtype=np.uint64)
        self.lsb = np.zeros(n, dtype=np.int64)
        self.sticky = np.zeros(n, dtype=bool)
        self.payload = np.zeros(n, dtype=np.uint64)
        self.flags = np.zeros(n, dtype=np.uint8)
        self.done = np.zeros(n, dtype=bool)

    def put(self, mask, cls, s=None, payload=None, flags=None):
        mask = mask & ~self.done
        self.cls[mask] = cls
        if s is not None:
            self.s[mask] = np.broadcast_to(s, mask.shape)[mask]
        if payload is not None:
            self.payload[mask] = np.broadcast_to(payload, mask.shape)[mask]
        if flags is not None:
            self.flags[mask] |= np.broadcast_to(flags, mask.shape)[mask]
        self.done |= mask

    def put_value(self, mask, s, e, sig, lsb, sticky):
        mask = mask & ~self.done
        self.cls[mask] = FINITE
        for name, v in (("s", s), ("e", e), ("sig", sig), ("lsb", lsb), ("sticky", sticky)):
            getattr(self, name)[mask] = np.broadcast_to(v, mask.shape)[mask]
        self.done |= mask

    def result(self):
        return Unpacked(self.cls, self.s, self.e, self.sig, self.lsb, self.sticky,
                        self.payload), self.flags


def _is_snan(u):
    return (u.cls == NAN) & ((u.payload & QUIET) == U0)


def _propagate(r: _Result, ua: Unpacked, ub: Unpacked):
    """x86 SSE NaN propagation of two operands (SoftFloat s_propagateNaNF64UI, 8086-SSE)."""
    a_nan, b_nan = ua.cls == NAN, ub.cls == NAN
    inv = np.where(_is_snan(ua) | _is_snan(ub), INVALID, np.uint8(0))
    r.put(a_nan | b_nan, NAN, np.where(a_nan, ua.s, ub.s),
          np.where(a_nan, ua.payload, ub.payload) | QUIET, inv)


def _default_nan(r: _Result, mask):
    r.put(mask, NAN, U1, DEFAULT_NAN_PAYLOAD, INVALID)


def _zero_sign(sa, sb, mode):
    """Sign of an exact zero sum of operands with signs sa, sb (IEEE 754-2019 6.3)."""
    rd = np.uint64(mode == _TD)
    return np.where(sa == sb, sa, rd)


def _to_top(u: Unpacked):
    """Significand shifted so that its leading bit is bit TOP; returns (sig, lsb)."""
    k = TOP - (u.e - u.lsb)
    return shl(u.sig, k), u.lsb - k


def add(ua: Unpacked, ub: Unpacked, mode: int, negate_b: bool = False):
    """a + b (or a - b); NaN propagation sees b's original sign."""
    n = ua.cls.size
    r = _Result(n)
    sb = ub.s ^ np.uint64(negate_b)
    _propagate(r, ua, ub)
    a_inf, b_inf = ua.cls == INF, ub.cls == INF
    _default_nan(r, a_inf & b_inf & (ua.s != sb))
    r.put(a_inf, INF, ua.s)
    r.put(b_inf, INF, sb)
    a_zero, b_zero = ua.cls == ZERO, ub.cls == ZERO
    r.put(a_zero & b_zero, ZERO, _zero_sign(ua.s, sb, mode))
    r.put_value(a_zero, sb, ub.e, ub.sig, ub.lsb, False)
    r.put_value(b_zero, ua.s, ua.e, ua.sig, ua.lsb, False)
    both = ~r.done
    if np.any(both):
        sa_sig, a_lsb = _to_top(ua)
        sb_sig, b_lsb = _to_top(ub)
        a_big = (ua.e > ub.e) | ((ua.e == ub.e) & (sa_sig >= sb_sig))
        big = np.where(a_big, sa_sig, sb_sig)
        small = np.where(a_big, sb_sig, sa_sig)
        e_big = np.where(a_big, ua.e, ub.e)
        lsb = np.where(a_big, a_lsb, b_lsb)
        d = np.abs(ua.e - ub.e)
        shifted = shr(small, d)
        lost = (small & low_mask(d)) != U0
        same = ua.s == sb
        S = np.where(same, big + shifted, big - shifted - lost.astype(np.uint64))
        sign = np.where(a_big, ua.s, sb)
        zero = (S == U0) & ~lost
        r.put(both & zero, ZERO, _zero_sign(ua.s, sb, mode))
        r.put_value(both, sign, lsb + bit_length(S) - 1, S, lsb, lost)
    return r.result()


def _reduce128(hi, lo, lsb):
    """A 128-bit magnitude as (e, sig < 2**(TOP+1), lsb, sticky)."""
    length = bit_length128(hi, lo)
    k = np.maximum(length - (TOP + 1), 0)
    h, low, lost = shr128_sticky(hi, lo, k)
    return lsb + length - 1, low, lsb + k, lost


def _product_specials(ua: Unpacked, ub: Unpacked):
    """Result builder of a product or quotient after NaN propagation, with the sign and
    the infinity / zero masks of the operands."""
    r = _Result(ua.cls.size)
    _propagate(r, ua, ub)
    return r, ua.s ^ ub.s, ua.cls == INF, ub.cls == INF, ua.cls == ZERO, ub.cls == ZERO


def mul(ua: Unpacked, ub: Unpacked, mode: int):
    """a * b."""
    r, s, a_inf, b_inf, a_zero, b_zero = _product_specials(ua, ub)
    _default_nan(r, (a_inf & b_zero) | (b_inf & a_zero))
    r.put(a_inf | b_inf, INF, s)
    r.put(a_zero | b_zero, ZERO, s)
    rest = ~r.done
    if np.any(rest):
        hi, lo = mul64(ua.sig, ub.sig)
        e, sig, lsb, sticky = _reduce128(hi, lo, ua.lsb + ub.lsb)
        r.put_value(rest, s, e, sig, lsb, sticky)
    return r.result()


def fma(ua: Unpacked, ub: Unpacked, uc: Unpacked, mode: int):
    """a * b + c with a single rounding (SoftFloat s_mulAddF64 special cases)."""
    r = _Result(ua.cls.size)
    sp = ua.s ^ ub.s
    a_nan, b_nan, c_nan = ua.cls == NAN, ub.cls == NAN, uc.cls == NAN
    # a or b NaN: propagate(a, b), then against c
    ab_nan = a_nan | b_nan
    ab_pay = np.where(a_nan, ua.payload, ub.payload) | QUIET
    ab_s = np.where(a_nan, ua.s, ub.s)
    inv = _is_snan(ua) | _is_snan(ub) | _is_snan(uc)
    r.put(ab_nan, NAN, ab_s, ab_pay, np.where(inv, INVALID, np.uint8(0)))
    a_inf, b_inf = ua.cls == INF, ub.cls == INF
    a_zero, b_zero = ua.cls == ZERO, ub.cls == ZERO
    _default_nan(r, (a_inf & b_zero) | (b_inf & a_zero))      # even when c is a NaN
    r.put(c_nan, NAN, uc.s, uc.payload | QUIET, np.where(_is_snan(uc), INVALID, np.uint8(0)))
    p_inf = a_inf | b_inf
    c_inf = uc.cls == INF
    _default_nan(r, p_inf & c_inf & (sp != uc.s))
    r.put(p_inf, INF, sp)
    r.put(c_inf, INF, uc.s)
    p_zero = a_zero | b_zero
    c_zero = uc.cls == ZERO
    r.put(p_zero & c_zero, ZERO, _zero_sign(sp, uc.s, mode))
    r.put_value(p_zero, uc.s, uc.e, uc.sig, uc.lsb, False)
    rest = ~r.done
    if not np.any(rest):
        return r.result()
    # product: 106 bits; place both operands with their leading bit at bit 124
    ph, pl = mul64(ua.sig, ub.sig)
    plen = bit_length128(ph, pl)
    ep = ua.lsb + ub.lsb + plen - 1
    ph, pl = shl128(ph, pl, np.clip(125 - plen, 0, 127))
    ch, cl = shl128(np.zeros_like(uc.sig), uc.sig, np.clip(125 - bit_length(uc.sig), 0, 127))
    c_zero_r = c_zero                              # c == 0 with a nonzero product: exact
    ec = np.where(c_zero_r, ep - 200, uc.e)        # put a zero c far below
    p_big = (ep > ec) | ((ep == ec) & ~lt128(ph, pl, ch, cl))
    bh, bl = np.where(p_big, ph, ch), np.where(p_big, pl, cl)
    sh_, sl_ = np.where(p_big, ch, ph), np.where(p_big, cl, pl)
    sh_ = np.where(c_zero_r, U0, sh_)
    sl_ = np.where(c_zero_r, U0, sl_)
    d = np.abs(ep - ec)
    xh, xl, lost = shr128_sticky(sh_, sl_, d)
    same = sp == uc.s
    th, tl = add128(bh, bl, xh, xl)
    dh, dl = sub128(bh, bl, xh, xl)
    dh, dl = sub128(dh, dl, U0, lost.astype(np.uint64))
    Sh, Sl = np.where(same, th, dh), np.where(same, tl, dl)
    sign = np.where(p_big, sp, uc.s)
    e_big = np.where(p_big, ep, ec)
    zero = (Sh == U0) & (Sl == U0) & ~lost
    r.put(rest & zero, ZERO, _zero_sign(sp, uc.s, mode))
    e, sig, lsb, sticky = _reduce128(Sh, Sl, e_big - 124)
    r.put_value(rest, sign, e, sig, lsb, sticky | lost)
    return r.result()


def div(ua: Unpacked, ub: Unpacked, mode: int):
    """a / b: quotient from the hardware division, made exact by its remainder."""
    r, s, a_inf, b_inf, a_zero, b_zero = _product_specials(ua, ub)
    _default_nan(r, (a_inf & b_inf) | (a_zero & b_zero))
    r.put(a_inf, INF, s)
    r.put(b_inf, ZERO, s)
    r.put(a_zero, ZERO, s)
    r.put(b_zero, INF, s, flags=DIVZERO)
    rest = ~r.done
    if np.any(rest):
        A = shl(ua.sig, 52 - (ua.e - ua.lsb))             # 53-bit significands
        B = shl(ub.sig, 52 - (ub.e - ub.lsb))
        la, lb = ua.e - 52, ub.e - 52
        small = A < B
        A = np.where(small, A << U1, A)                    # quotient in [1, 2)
        la = la - small
        A = np.where(rest, A, U1)                          # elements already decided:
        B = np.where(rest, B, U1)                          # 1/1, no overflow in the cast
        q = A.astype(np.float64) / B.astype(np.float64)    # correctly rounded, in [1, 2]
        Q = (q * 2.0 ** 52).astype(np.uint64)
        R = ((A << np.uint64(52)) - Q * B).view(np.int64)  # exact: |R| < B (mod 2**64)
        Bi = B.view(np.int64)
        t = R << 8
        sig = (Q << np.uint64(8)).view(np.int64) + np.floor_divide(t, Bi)
        sticky = np.mod(t, Bi) != 0
        sig = sig.view(np.uint64)
        lsb = la - lb - 52 - 8
        r.put_value(rest, s, lsb + bit_length(sig) - 1, sig, lsb, sticky)
    return r.result()


def sqrt(ua: Unpacked, mode: int):
    """sqrt(a): hardware square root, made exact by the integer remainder."""
    r = _Result(ua.cls.size)
    nan = ua.cls == NAN
    r.put(nan, NAN, ua.s, ua.payload | QUIET, np.where(_is_snan(ua), INVALID, np.uint8(0)))
    _default_nan(r, (ua.s == U1) & (ua.cls != ZERO))
    r.put(ua.cls == INF, INF, U0)
    r.put(ua.cls == ZERO, ZERO, ua.s)
    rest = ~r.done
    if np.any(rest):
        X = shl(ua.sig, 52 - (ua.e - ua.lsb))             # 53-bit significand
        lx = ua.e - 52
        odd = (lx & 1) == 1
        X = np.where(odd, X << U1, X)                      # even exponent, X in [2**52, 2**54)
        lx = lx - odd
        s = np.sqrt(X.astype(np.float64))                  # correctly rounded, [2**26, 2**27)
        S = (s * 2.0 ** 26).astype(np.uint64)
        R = ((X << np.uint64(52)) - S * S).view(np.int64)  # exact, |R| <= 2**54
        Si = np.maximum(S, U1).view(np.int64)             # S >= 2**52 where it counts;
        d = np.floor_divide(R << 7, Si)                    # zeros/specials: no 1/0 warning
        rr = (S << np.uint64(8)).view(np.int64) + d
        D = ((R << 7) - Si * d) * 512 - d * d              # N - rr**2 for N = X * 2**68
        lo = D < 0
        rr = np.where(lo, rr - 1, rr)
        D = np.where(lo, D + 2 * rr + 1, D)
        hi = D >= 2 * rr + 1
        D = np.where(hi, D - 2 * rr - 1, D)
        rr = np.where(hi, rr + 1, rr)
        sig = rr.view(np.uint64)
        lsb = (lx - 68) // 2
        r.put_value(rest, U0, lsb + bit_length(sig) - 1, sig, lsb, D != 0)
    return r.result()
