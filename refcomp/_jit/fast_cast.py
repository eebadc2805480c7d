"""Fast paths of the cast: float inputs narrowing into a float format, without flags.

Twins of refcomp.rounding.cast.np_cast_codes on their domain (checked bit for bit by
tests/test_jit_twins.py).  The domain: float16/32/64 inputs; a target with zero,
subnormals and a sign, ``man_bits`` at most the input's and ``emin`` at least the input's
(so a subnormal input never needs its exact exponent); no flags, flushing, DAZ, double
rounding or backend quirks.  Everything is computed with SoftFloat's "rounding increment"
formulation, ``n = (sig + incr) >> sh`` with ``incr`` chosen by the mode, and every special
case is a select, so that the loops vectorise.  Two kernels:

aligned
    the target has the input's exponent width and bias and IEEE specials (float32 ->
    bfloat16/tfloat32, float16 -> float8_e5m2, float64 -> e11mM): the shift is a
    constant and rounding the input's encoding directly gives the target's (a carry runs
    into the exponent, and past the largest finite value into infinity, as IEEE asks).
general
    any other target in the domain: the shift grows below the target's min normal.

Stochastic rounding fits the same form exactly: the discarded fraction of a float input
has ``sh`` bits, and adding the top ``sh`` bits of the element's 64-bit word gives
``P(up) = rem / 2**sh``, the same decision as the general core's ``F + w >= 2**64`` (the
low bits of ``w`` cannot carry).  Only elements with ``sh > 63`` (values far below the
quantum) need more than 64 bits; :func:`slow_indices` finds them for the general path.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import CACHE
from ..rounding.unpack import bits_view
from .core import (EXP64, GAMMA, QUIET64, isel, scale2, sel, store_value, bits_from_f64, f64_from_f16_bits, f64_from_f32_bits,
                   splitmix64)

__all__ = ["fast_params", "fast_cast", "slow_indices"]

_KERNELS: dict = {}


def fast_params(p, in_e: int, in_m: int, fmt):
    """Scalars of the fast kernels, or None when the cast is outside their domain."""
    from ..rounding.params import P
    bias_in = (1 << (in_e - 1)) - 1
    if (p[P.VIA32] and in_m == 52) or p[P.DAZ] or p[P.FLUSH] or p[P.QUIRK] \
            or p[P.NEGRULE] or p[P.ZERORULE] or not fmt.has_zero or not fmt.subnormals \
            or not fmt.signed or fmt.man_bits > in_m or fmt.emin < 1 - bias_in:
        return None
    m = fmt.man_bits
    mode = int(p[P.MODE])
    sign_bit = 1 << (fmt.width - 1)
    maxcode = int(p[P.MAXCODE])
    kind, rule = int(p[P.NANKIND]), int(p[P.NANRULE])
    if fmt.inf_code is not None:
        inf_res = fmt.inf_code
    elif kind == 3:
        inf_res = sign_bit
    elif kind == 2:
        inf_res = sign_bit - 1
    else:
        inf_res = maxcode
    saturate = bool(p[P.OVF])
    ovf_pos = inf_res if (not saturate and mode in (0, 1, 3, 6)) else maxcode
    ovf_neg = inf_res if (not saturate and mode in (0, 1, 4, 6)) else maxcode
    if p[P.INFRULE]:
        inf_code = maxcode
    elif fmt.inf_code is not None:
        inf_code = fmt.inf_code
    elif saturate or kind == 0:
        inf_code = maxcode
    else:
        inf_code = inf_res
    # NaN code = (sign ^ flip ? nan_sign : 0) | nan_base | (payload >> (in_m - m) if pay)
    flip, use_pay = 0, 0
    if kind == 0:
        nan_base, nan_sign, flip = 0, sign_bit, int(rule == 4)
    elif kind == 3:
        nan_base, nan_sign = sign_bit, 0
    elif kind == 2:
        nan_base, nan_sign = sign_bit - 1, sign_bit
    else:
        quiet = 1 << (m - 1)
        mant = (1 << m) - 1 if rule == 2 else quiet
        nan_base, nan_sign, use_pay = fmt.inf_code | mant, sign_bit, int(rule == 0)
    aligned = int(fmt.exp_bits == in_e and fmt.bias == bias_in and fmt.has_inf)
    from ..formats.codec import decode
    vb = decode(np.array([ovf_pos, ovf_neg | sign_bit, inf_code, inf_code | sign_bit],
                         dtype=np.uint64), fmt).view(np.uint64)
    return (m, in_m - m, fmt.emin + bias_in, fmt.emax + bias_in, maxcode, sign_bit, ovf_pos,
            ovf_neg, inf_code, nan_base, nan_sign, flip, use_pay,
            int(fmt.has_negative_zero), mode, int(p[P.RBITS]), in_m + 2, aligned,
            vb[0], vb[1], vb[2], vb[3], kind, bias_in)


def slow_indices(flat, layout, q) -> np.ndarray:
    """Stochastic elements whose discarded fraction exceeds 63 bits (general path)."""
    in_e, in_m = layout
    thr = q[2] + q[1] - 63                  # Ef < eminb + base_sh - 63  <=>  sh > 63
    u = bits_view(flat)
    E = (u >> np.array(in_m, dtype=u.dtype)) & np.array((1 << in_e) - 1, dtype=u.dtype)
    tiny = (E < thr) & ((u & np.array((1 << (in_e + in_m)) - 1, dtype=u.dtype)) != 0)
    return np.flatnonzero(tiny)


@njit(inline="always")
def nan_value_bits(ncode, m, sign_bit, kind):
    """float64 bit pattern of the value of a NaN result code (codec.decode's rule)."""
    one = np.uint64(1)
    neg = (ncode & np.uint64(sign_bit)) != np.uint64(0)
    sbit = (one << np.uint64(63)) if neg else np.uint64(0)
    payload = (ncode & ((one << np.uint64(m)) - one)) << np.uint64(52 - m)
    payload = sel(payload == np.uint64(0), QUIET64, payload)
    return sbit if kind == 0 else sbit | EXP64 | payload


@njit(inline="always")
def narrow(u, q, in_e, in_m, mode, w):
    """Round one IEEE bit pattern (``in_e``/``in_m`` layout) into the target.

    `mode` is the rounding code (a compile-time constant at every call site); `w` the
    stochastic word.  Returns (code, float64 bit pattern of the value).
    """
    (m, base_sh, eminb, emaxb, maxcode, sign_bit, ovf_pos, ovf_neg, inf_code, nan_base,
     nan_sign, flip, use_pay, negzero, _mode, rbits, max_sh, _al, vb_op, vb_on, vb_ip,
     vb_in, kind, bias_in) = q
    sr = mode == 6
    U = np.uint64
    one = U(1)
    zero = U(0)
    emask = (1 << in_e) - 1
    s = u >> U(in_e + in_m)
    E = (u >> U(in_m)) & U(emask)
    M = u & U((1 << in_m) - 1)
    sub = E == zero
    Ef = sel(sub, one, E)
    sig = sel(sub, M, M | (one << U(in_m)))
    d = np.int64(eminb) - np.int64(Ef)
    sh_true = base_sh + max(d, 0)
    if sr:
        shs = min(sh_true, 63)
        rsh = isel((rbits == 0) | (rbits >= shs), shs, rbits)
        wtop = sel(rsh > 0, w >> U(64 - max(rsh, 1)), zero)
        n = ((sig >> U(shs - rsh)) + wtop) >> U(rsh)
    else:
        sh = min(sh_true, max_sh)
        shU = U(sh)
        half = one << U(max(sh - 1, 0))
        mask = (one << shU) - one
        neg = zero - s                                  # all ones when negative
        if mode == 0:
            incr = half - one + ((sig >> shU) & one)
        elif mode == 1:
            incr = half
        elif mode == 3:
            incr = mask & ~neg
        elif mode == 4:
            incr = mask & neg
        else:
            incr = zero
        incr = sel(sh > 0, incr, zero)
        n = (sig + incr) >> shU
        if mode == 5:
            n = n | U((sig & mask) != zero)
    normal = Ef > U(eminb)
    code = n + sel(normal, (Ef - U(eminb)) << U(m), zero)
    over = (Ef > U(emaxb)) | (code > U(maxcode))
    negv = s != zero
    code = sel(over, sel(negv, U(ovf_neg), U(ovf_pos)), code)
    special = E == U(emask)
    code = sel(special, U(inf_code), code)
    keep_sign = negv & ((negzero != 0) | (n != zero) | special | over)
    code = code | sel(keep_sign, U(sign_bit), zero)
    nsign = sel((s ^ U(flip)) != zero, U(nan_sign), zero)
    ncode = nsign | U(nan_base) | ((M >> U(base_sh)) & U(0 - use_pay))
    is_nan = special & (M != zero)
    qexp = np.int64(sel(normal, Ef, U(eminb))) - bias_in - m
    vb = bits_from_f64(scale2(n, qexp)) | sel(keep_sign, one << U(63), zero)
    vb = sel(over, sel(negv, U(vb_on), U(vb_op)), vb)
    vb = sel(special, sel(negv, U(vb_in), U(vb_ip)), vb)
    vb = sel(is_nan, nan_value_bits(ncode, m, sign_bit, kind), vb)
    return sel(is_nan, ncode, code), vb


def _make_general(mode: int, out_kind: int, in_e: int, in_m: int):
    sr = mode == 6
    width = 1 + in_e + in_m
    emask = (1 << in_e) - 1
    U = np.uint64

    @njit(cache=CACHE)
    def kernel(xb, out, q, key, pow2, vshift):
        base_sh, eminb = q[1], q[2]
        nslow = 0
        for i in range(xb.size):
            u = U(xb[i])
            w = splitmix64(key + U(i + 1) * GAMMA) if sr else U(0)
            code, vb = narrow(u, q, in_e, in_m, mode, w)
            if out_kind < 0:
                out[i] = code
            else:
                out[i] = store_value(vb, code, vshift, out_kind)
            if sr:
                E = (u >> U(in_m)) & U(emask)
                Ef = max(np.int64(E), 1)
                tiny = (base_sh + (eminb - Ef) > 63) & ((u & U((1 << (width - 1)) - 1)) != 0)
                nslow += np.int64(tiny & (E != U(emask)))
        return nslow
    return kernel


def _widener(in_m: int):
    """float64 bit pattern of an input-format bit pattern (exact widening)."""
    if in_m == 52:
        return njit(inline="always")(lambda b: b)
    if in_m == 23:
        return njit(inline="always")(lambda b: bits_from_f64(f64_from_f32_bits(np.uint32(b))))
    return njit(inline="always")(lambda b: bits_from_f64(f64_from_f16_bits(np.uint16(b))))


def _make_aligned(mode: int, out_kind: int, in_e: int, in_m: int, clamp: bool):
    """`clamp`: saturating overflow or infinity mapped to max.  Without it, rounding the
    encoding already gives IEEE overflow (a carry into the infinity code, infinities
    unchanged), so no selects are needed there."""
    width = 1 + in_e + in_m
    absmask = (1 << (in_e + in_m)) - 1
    U = np.uint64
    widen = _widener(in_m)

    @njit(cache=CACHE)
    def kernel(xb, out, q, key, pow2, vshift):
        (m, sh, _eminb, _emaxb, maxcode, sign_bit, ovf_pos, ovf_neg, inf_code, nan_base,
         _ns, _fl, use_pay, _nz, _mode, rbits, _mx, _al, _v0, _v1, _v2, _v3, _k, _b) = q
        one = U(1)
        zero = U(0)
        shU = U(sh)
        rounds = sh > 0
        half_m1 = (one << U(sh - 1 if rounds else 0)) - one
        mask = (one << shU) - one
        rsh = sh if (rbits == 0) | (rbits >= sh) else rbits
        inf_in = U(((1 << in_e) - 1) << in_m)          # the input's infinity, magnitude
        pay_mask = U((1 << in_m) - 1) if use_pay != 0 else zero
        sign_shift = U(width - 1)
        out_sign = U(sign_bit)
        for i in range(xb.size):
            u = U(xb[i])
            a = u & U(absmask)
            if sr:
                w = splitmix64(key + U(i + 1) * GAMMA)
                wtop = (w >> U(64 - rsh)) if rsh > 0 else zero
                code = ((a >> U(sh - rsh)) + wtop) >> U(rsh)
            elif mode == 0:
                code = (a + sel(rounds, half_m1 + ((a >> shU) & one), zero)) >> shU
            elif mode == 1:
                code = (a + sel(rounds, half_m1 + one, zero)) >> shU
            elif mode == 3:
                code = (a + sel(u >> sign_shift, zero, mask)) >> shU
            elif mode == 4:
                code = (a + sel(u >> sign_shift, mask, zero)) >> shU
            elif mode == 5:
                code = (a >> shU) | U((a & mask) != zero)
            else:
                code = a >> shU
            if clamp:
                neg = (u >> sign_shift) != zero
                code = sel(code > U(maxcode), sel(neg, U(ovf_neg), U(ovf_pos)), code)
                code = sel(a == inf_in, U(inf_code), code)
            code = sel(a > inf_in, U(nan_base) | ((a & pay_mask) >> shU), code)
            code = code | ((u >> sign_shift) * out_sign)
            if out_kind < 0:
                out[i] = code
            else:
                out[i] = store_value(widen(code << shU), code, vshift, out_kind)
        return 0
    sr = mode == 6
    return kernel


def fast_cast(flat, layout, q, out, out_kind, key, pow2, vshift=0) -> int:
    """Run the matching fast kernel (`q` from :func:`fast_params`); return how many
    stochastic elements need the general path (see :func:`slow_indices`)."""
    sr = key is not None
    aligned = bool(q[17])
    mode = int(q[14])
    # saturating, or infinity to max (profiles): the aligned kernel needs its selects
    clamp = aligned and (q[6] == q[4] or q[7] == q[4] or q[8] == q[4])
    # a 64-bit target's sign bit (q[5] = 2**63) makes Numba type those slots uint64, others
    # int64: one dispatcher per typing, or Numba may reuse an int64 overload and overflow
    wide = int(q[5]) >= 1 << 63
    k = (aligned, mode, out_kind, layout, clamp, wide)
    kern = _KERNELS.get(k)
    if kern is None:
        if aligned:
            kern = _KERNELS[k] = _make_aligned(mode, out_kind, layout[0], layout[1], clamp)
        else:
            kern = _KERNELS[k] = _make_general(mode, out_kind, layout[0], layout[1])
    return kern(bits_view(flat), out_view(out, out_kind), q, np.uint64(key if sr else 0),
                pow2, vshift)


def out_view(out, out_kind):
    """The array a kernel writes: codes as they are, float64 and float16 values as bits."""
    if out_kind == 0:
        return out.view(np.uint64)
    if out_kind in (2, 4):
        return out.view(np.uint16)
    if out_kind == 3:
        return out.view(np.uint32)
    return out
