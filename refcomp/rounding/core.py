"""THE rounding core, NumPy specification (the Numba twin is refcomp._jit.core).

Every low-precision value refcomp produces goes through :func:`round_at` (round an exact
value to a multiple of a power of two) and, for floating-point targets,
:func:`pack_float` (choose the quantum from the exponent, round, then apply overflow,
underflow, flushing and the special-value encoding of the format).  The design follows
the single round-and-pack routine of Berkeley SoftFloat 3 (``softfloat_roundPackToF32``
and siblings), generalised to any format through the parameter vector of
:mod:`refcomp.rounding.params`, and to round-to-odd and stochastic rounding.

Exact values enter as ``(sign, e, sig, lsb, sticky)``: magnitude ``sig * 2**lsb`` with
``sig`` a uint64 below 2**62, ``e = floor(log2(sig * 2**lsb))``, and ``sticky`` set when
the exact magnitude lies strictly between ``sig * 2**lsb`` and ``(sig + 1) * 2**lsb``
(SoftFloat's "jam" bit, kept separate so that stochastic rounding knows when the
discarded fraction is exact).  A producer that sets ``sticky`` keeps at least two more
bits than the rounding keeps (``qe - lsb >= 2``), so the guard bit is never the sticky.

Stochastic rounding (mode code 6).  With ``F`` the discarded fraction of an ulp and
``U = 0.w1 w2 w3 ...`` a uniform number made of 64-bit words, the result rounds away from
zero iff ``F + U >= 1`` (the hardware convention: random bits are added below the kept
bits and the carry decides), so ``P(up) = F`` exactly.  ``w1`` is the element's word; the
decision needs further words only when ``F`` has more than 64 bits and the sum of the
known bits ends in all ones; such elements are reported as *ambiguous* and settled by
:mod:`refcomp.rounding.stochastic`.  With ``random_bits = r`` the fraction is truncated
to r bits and added to the top r bits of ``w1`` (no ambiguity).
"""

from __future__ import annotations

import numpy as np

from .._bits import ALL_ONES, U0, U1, bit_length, low_mask, shl, shr
from .modes import Flag
from .params import P

__all__ = ["round_at", "pack_float", "nan_code", "inf_code", "MODE"]

F_INEXACT = np.uint8(Flag.INEXACT)
F_UNDERFLOW = np.uint8(Flag.UNDERFLOW)
F_OVERFLOW = np.uint8(Flag.OVERFLOW)
F_INVALID = np.uint8(Flag.INVALID)


class MODE:
    NE, NA, TZ, TP, TN, ODD, SR = range(7)


def round_at(s, sig, lsb, sticky, qe, mode, w=None, rbits=0, force=None):
    """Round the exact magnitude ``(sig + sticky*θ) * 2**lsb`` to a multiple of ``2**qe``.

    Parameters
    ----------
    s : array of bool/uint8            sign (1 = negative), for the directed modes
    sig : uint64 array (< 2**62)       truncated significand
    lsb, qe : int64 arrays             exponent of sig's last bit, target quantum exponent
    sticky : bool array                exact value strictly above ``sig * 2**lsb``
    mode : int                         MODE code
    w : uint64 array                   stochastic rounding words (mode SR only)
    rbits : int                        0 exact-probability SR, else r random bits
    force : int8 array or None         SR decisions made by the slow path (1 up, 0 down,
                                       -1 undecided)

    Returns
    -------
    n : uint64 array        rounded magnitude in units of 2**qe (may carry to a new binade)
    inexact : bool array
    amb : bool array        stochastic decisions that need more random words
    """
    sh = np.asarray(qe - lsb, dtype=np.int64)
    exact_shift = sh <= 0
    shc = np.clip(sh, 1, 63)
    rem = np.where(exact_shift, U0, sig & low_mask(shc))
    n = np.where(exact_shift, shl(sig, np.clip(-sh, 0, 63)), shr(sig, shc))
    sticky = np.asarray(sticky, dtype=bool)
    if np.any(sticky & (sh < 2)):
        raise AssertionError("rounding core: sticky bit without two guard bits")
    inexact = (rem != U0) | sticky
    amb = np.zeros(n.shape, dtype=bool)
    half = shl(np.uint64(1), shc - 1)
    neg = np.asarray(s).astype(bool)
    if mode == MODE.NE:
        up = (rem > half) | ((rem == half) & (sticky | ((n & U1) == U1)))
    elif mode == MODE.NA:
        up = rem >= half
    elif mode == MODE.TZ:
        up = np.zeros(n.shape, dtype=bool)
    elif mode == MODE.TP:
        up = inexact & ~neg
    elif mode == MODE.TN:
        up = inexact & neg
    elif mode == MODE.ODD:
        return np.where(inexact, n | U1, n), inexact, amb
    elif mode == MODE.SR:
        up, amb = _stochastic_up(sig, sh, rem, sticky, w, rbits)
        if force is not None:
            decided = force >= 0
            up = np.where(decided, force == 1, up)
            amb = amb & ~decided
        up &= inexact
        amb &= inexact
    else:
        raise ValueError(f"unknown rounding code {mode}")
    return n + up.astype(np.uint64), inexact, amb


def _stochastic_up(sig, sh, rem, sticky, w, rbits):
    """Carry of ``F + U`` (module docstring); also which decisions are not settled."""
    w = np.asarray(w, dtype=np.uint64)
    near = sh <= 64
    # F: the first 64 bits of the discarded fraction; `tail`: nonzero bits beyond them
    frac_near = shl(rem, np.clip(64 - sh, 0, 63))
    d = np.clip(sh - 64, 0, None)
    frac_far = shr(sig, d)
    F = np.where(near, frac_near, frac_far)
    tail_far = (sig & low_mask(d)) != U0
    # window: how far the unknown bits (sticky, and bits beyond 64) can push F + w up
    win_near = np.where(sticky, shl(np.uint64(1), np.clip(64 - sh, 0, 63)), U0)
    win = np.where(near, win_near, (tail_far | sticky).astype(np.uint64))
    if rbits:
        r = np.uint64(rbits)
        if rbits == 64:
            up = (F + w) < w
        else:
            up = ((F >> (np.uint64(64) - r)) + (w >> (np.uint64(64) - r))) >= (U1 << r)
        return up, np.zeros(up.shape, dtype=bool)
    total = F + w                                  # wraps modulo 2**64
    carry = total < w
    amb = ~carry & (win != U0) & (total >= (U0 - win))
    return carry, amb


def pack_float(s, e, sig, lsb, sticky, p, w=None, force=None):
    """Round finite nonzero exact values into a float format; encode the codes.

    Parameters
    ----------
    s, e, sig, lsb, sticky : arrays      exact values (module docstring)
    p : int64 array                      parameter vector (refcomp.rounding.params)
    w : uint64 array                     stochastic words
    force : int8 array or None           stochastic decisions of the slow path

    Returns
    -------
    code : uint64 array     full code, sign bit included
    flags : uint8 array
    amb : bool array        stochastic decisions left to the slow path
    """
    s = np.asarray(s, dtype=np.uint64)
    e = np.asarray(e, dtype=np.int64)
    m = int(p[P.M])
    emin = int(p[P.EMIN])
    mode = int(p[P.MODE])
    signed = bool(p[P.SIGNED])
    sign_bit = U1 << np.uint64(p[P.WIDTH] - 1)
    maxcode = np.uint64(p[P.MAXCODE])
    flags = np.zeros(e.shape, dtype=np.uint8)

    below = e < emin
    qe = np.maximum(e, emin) - m
    if not p[P.SUBN]:
        # no subnormals: below 2**emin the representable values are 0 and 2**emin
        qe = np.where(below, emin, qe)
    n, inexact, amb = round_at(s, sig, lsb, sticky, qe, mode, w, int(p[P.RBITS]), force)

    # tininess (IEEE 754-2019 7.5); stochastic rounding judges it before rounding
    if p[P.TININESS] or mode == MODE.SR:
        tiny = below
    else:
        edge = e == emin - 1
        n_unb, _, _ = round_at(s, sig, lsb, sticky, e - m, mode, w, int(p[P.RBITS]))
        tiny = (e < emin - 1) | (edge & (n_unb < (U1 << np.uint64(m + 1))))

    expo = (np.maximum(e - emin, 0).astype(np.uint64) << np.uint64(m))
    if p[P.HASZERO]:
        code = n + expo if p[P.SUBN] else np.where(below, n << np.uint64(m), n + expo)
    else:
        code = n + expo - (U1 << np.uint64(m))   # exponent field 0 is normal (E8M0)
    zero_result = n == U0

    # overflow (IEEE 754-2019 7.4): the rounded magnitude exceeds the largest finite one
    over = (e > p[P.EMAX]) | (~zero_result & ~below & (code > maxcode))
    code = np.where(over, _overflow_code(s, mode, p), code)
    flags |= np.where(over, F_OVERFLOW | F_INEXACT, 0).astype(np.uint8)
    amb &= e <= p[P.EMAX]            # beyond emax both neighbours overflow

    # underflow: tiny and inexact; flushing replaces tiny nonzero results by zero
    if p[P.HASZERO]:
        if p[P.FLUSH]:
            flush = tiny & ~over
            amb &= ~flush
            code = np.where(flush, U0, code)
            zero_result |= flush
            flags |= np.where(flush, F_UNDERFLOW | F_INEXACT, 0).astype(np.uint8)
        flags |= np.where(tiny & inexact, F_UNDERFLOW, 0).astype(np.uint8)
    else:
        # no zero (E8M0): values below the smallest one give the smallest one
        code = np.where(below, U0, code)
        amb &= ~below
        inexact = inexact | below
        flags |= np.where(below, F_UNDERFLOW, 0).astype(np.uint8)
    flags |= np.where(inexact, F_INEXACT, 0).astype(np.uint8)

    # sign (OR-ing it into the fnuz NaN 0x80 leaves that code unchanged)
    neg = s == U1
    if signed:
        keep = ~zero_result if not p[P.NEGZERO] else np.ones(e.shape, dtype=bool)
        code = np.where(neg & keep, code | sign_bit, code)
    else:
        bad = neg & (~zero_result | (p[P.HASZERO] == 0))
        code = np.where(bad, nan_code(np.zeros_like(s), p), code)
        flags = np.where(bad, F_INVALID, flags).astype(np.uint8)
    return code, flags, amb


def _overflow_code(s, mode, p):
    """Result code of an overflow (sign included for fnuz NaN only; see pack_float)."""
    maxcode = np.uint64(p[P.MAXCODE])
    if p[P.OVF]:
        return np.full(s.shape, maxcode, dtype=np.uint64)
    neg = s == U1
    if mode in (MODE.NE, MODE.NA, MODE.SR):
        to_inf = np.ones(s.shape, dtype=bool)
    elif mode == MODE.TP:
        to_inf = ~neg
    elif mode == MODE.TN:
        to_inf = neg
    else:                        # toward zero, odd: the largest finite value
        to_inf = np.zeros(s.shape, dtype=bool)
    return np.where(to_inf, inf_code(s, p), maxcode)


def inf_code(s, p):
    """Magnitude code an infinite result takes (infinity, else NaN, else max finite)."""
    if p[P.INFCODE] >= 0:
        return np.full(np.shape(s), np.uint64(p[P.INFCODE]), dtype=np.uint64)
    if p[P.NANKIND] == 3:
        return np.full(np.shape(s), U1 << np.uint64(p[P.WIDTH] - 1), dtype=np.uint64)
    if p[P.NANKIND] == 2:
        return np.full(np.shape(s), np.uint64((1 << int(p[P.WIDTH] - p[P.SIGNED])) - 1),
                       dtype=np.uint64)
    return np.full(np.shape(s), np.uint64(p[P.MAXCODE]), dtype=np.uint64)


def nan_code(s, p, payload=None):
    """Full NaN code (sign included) of NaN inputs with float64-layout payloads.

    ``payload`` holds the 52-bit float64 mantissa field (quiet bit = bit 51); formats
    without NaN get a zero of the NaN's sign (or, with rule ``zero_flipped``, the other).
    """
    s = np.asarray(s, dtype=np.uint64)
    width = int(p[P.WIDTH])
    sign_bit = (U1 << np.uint64(width - 1)) if p[P.SIGNED] else U0
    signed_part = s * sign_bit
    kind = int(p[P.NANKIND])
    if kind == 0:
        flip = U1 if p[P.NANRULE] == 4 else U0
        return (s ^ flip) * sign_bit
    if kind == 3:
        return np.full(s.shape, U1 << np.uint64(width - 1), dtype=np.uint64)
    if kind == 2:
        return signed_part | np.uint64((1 << (width - int(p[P.SIGNED]))) - 1)
    m = np.uint64(p[P.M])
    infc = np.uint64(p[P.INFCODE])
    quiet = U1 << (m - U1)
    rule = int(p[P.NANRULE])
    if rule == 2:
        mant = np.full(s.shape, (U1 << m) - U1, dtype=np.uint64)
    elif rule == 1 or payload is None:
        mant = np.full(s.shape, quiet, dtype=np.uint64)
    else:
        mant = (np.asarray(payload, dtype=np.uint64) >> (np.uint64(52) - m)) | quiet
    return signed_part | infc | mant
