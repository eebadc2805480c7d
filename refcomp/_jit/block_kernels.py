"""Fused Numba kernel of MX quantization with float elements (deterministic rounding).

One pass per block: the largest magnitude from the inputs' bit patterns, the scale
exponent from the exponent bits of that amax (rules floor/ceil/even/rceil, conventions
ocp-mx-1.0 and torchao-0.18 except torchao's rceil), then every element ``x * 2**-k``
rounded into the element format by :func:`refcomp._jit.fast_cast.narrow`, the Numba twin
of THE rounding core that ``refcomp.cast_bits`` runs.

NumPy twin (the specification): :func:`refcomp.ops.block.block_amax`,
:func:`refcomp.ops.block.mx_scales` and :func:`refcomp.ops.block.float_elements`;
tests/test_block.py runs both on the same inputs and compares every code
(``refcomp._jit.use_jit``), and ``REFCOMP_DISABLE_JIT=1`` selects the twin.  Blocks the
kernel flags (NaN scale) and elements whose scaled value would leave float64's normal
range are finished by the same NumPy code in both paths.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import CACHE
from .core import bits_from_f64, f64_from_bits, f64_from_f32_bits
from .fast_cast import fast_params, narrow

__all__ = ["run_mx_float"]

U = np.uint64
_KERNELS: dict = {}
_RULES = {"floor": 0, "ceil": 1, "even": 2, "rceil": 3}


@njit(inline="always")
def _f64_of(b, f32):
    """float64 value of a float32 (f32) or float64 bit pattern."""
    return f64_from_f32_bits(np.uint32(b)) if f32 else f64_from_bits(U(b))


@njit(inline="always")
def _scale(amax, f32, torchao, rule, emax, m_elem, frac_max, kmin, kmax):
    """(stored scale exponent k, divisor exponent, NaN scale) of a block's amax bits."""
    inf_in = U(0x7F800000) if f32 else U(0x7FF0000000000000)
    isnan = amax > inf_in
    isinf = amax == inf_in
    a64 = bits_from_f64(_f64_of(amax, f32))
    E = np.int64((a64 >> U(52)) & U(0x7FF)) - 1023
    frac = a64 & U((1 << 52) - 1)
    if E == -1023:                          # float64 subnormal: far below every scale
        E = -1075
    if isinf and torchao:                   # torchao reads the exponent field of inf: 128
        E = 128
        frac = U(0)
    if rule == 0:
        k = E - emax
    elif rule == 1:
        k = E - emax + np.int64(frac != U(0))
    elif rule == 2:
        k = E - emax + np.int64((frac + (U(1) << U(51 - m_elem))) >> U(52))
    else:
        k = E - emax + np.int64(frac > U(frac_max))
    if amax == U(0):
        k = kmin
    k = max(k, kmin)
    special = isnan or (not torchao and (isinf or k > kmax))
    keff = max(k, -126) if torchao else k
    return (0 if special else k), keff, special


@njit(inline="always")
def _block(row, crow, lo, cnt, f32, mode, torchao, rule, emax, m_elem, frac_max, kmin, kmax,
           max_elem, q):
    """Quantize row[lo:lo+cnt] in place of crow; returns (k, special, tiny count)."""
    absmask = U(0x7FFFFFFF) if f32 else U(0x7FFFFFFFFFFFFFFF)
    amax = U(0)
    for i in range(cnt):
        amax = max(amax, U(row[lo + i]) & absmask)
    k, keff, special = _scale(amax, f32, torchao, rule, emax, m_elem, frac_max, kmin, kmax)
    ntiny = 0
    if special:
        for i in range(cnt):
            crow[lo + i] = 0
        return k, special, ntiny
    mult = f64_from_bits(U(1023 - keff) << U(52))
    for i in range(cnt):
        xv = _f64_of(row[lo + i], f32)
        y = xv * mult
        if not f32:                         # float32 inputs never leave the range
            ntiny += np.int64((abs(y) < 2.0 ** -1022) & (xv != 0.0))
        y = min(max(y, -max_elem), max_elem)            # saturating (inf -> max)
        crow[lo + i] = narrow(bits_from_f64(y), q, 11, 52, mode, U(0))[0]
    return k, special, ntiny


def _make(mode: int, f32: bool, bs: int):
    # closure variables are plain numbers (Numba's disk cache keys on their pickles); the
    # block size is a compile-time constant so that the block loops vectorise
    @njit(cache=CACHE)
    def kernel(xb, rule, emax, m_elem, frac_max, kmin, kmax, torchao, max_elem, q,
               codes, kout, nanb):
        R, n = xb.shape
        nb = kout.shape[1]
        nfull = n // bs
        ntiny = 0
        for r in range(R):
            row = xb[r]
            crow = codes[r]
            for b in range(nfull):
                k, sp, t = _block(row, crow, b * bs, bs, f32, mode, torchao, rule, emax,
                                  m_elem, frac_max, kmin, kmax, max_elem, q)
                kout[r, b] = k
                nanb[r, b] = sp
                ntiny += t
            if nb > nfull:                   # the partial last block
                k, sp, t = _block(row, crow, nfull * bs, n - nfull * bs, f32, mode, torchao,
                                  rule, emax, m_elem, frac_max, kmin, kmax, max_elem, q)
                kout[r, nfull] = k
                nanb[r, nfull] = sp
                ntiny += t
        return ntiny
    return kernel


def run_mx_float(x2, bs, fmt, conv, rounding):
    """Element codes, scale exponents and NaN-scale mask of ``x2`` (rows, n) under `fmt`
    (float elements, power-of-two scales), deterministic `rounding`.

    Returns the same triple as the NumPy path of ``refcomp.ops.block._mx`` before its
    NaN-block patch.
    """
    from ..ops.block import Convention, float_elements, mx_scales
    from ..rounding.cast import make_plan
    el = fmt.element
    plan = make_plan(el, rounding, overflow="saturate")
    q = fast_params(plan.p, 11, 52, el)
    if q is None:                                      # outside the fast domain: NumPy twin
        from ..ops.block import block_amax
        k, keff, nanb = mx_scales(block_amax(x2, bs), fmt, conv)
        return float_elements(x2, keff, bs, fmt, rounding, None)[0], k, nanb
    if x2.dtype == np.float16:
        x2 = x2.astype(np.float32)                     # exact widening
    f32 = x2.dtype == np.float32
    mode = int(plan.rounding.code)
    R, n = x2.shape
    key = (mode, f32, bs)
    kern = _KERNELS.get(key)
    if kern is None:
        kern = _KERNELS[key] = _make(mode, f32, bs)
    nb = fmt.blocks_along(n)
    codes = np.empty((R, n), dtype=el.storage_dtype)
    k = np.empty((R, nb), dtype=np.int64)
    nanb = np.empty((R, nb), dtype=bool)
    frac_max = int((fmt.max_elem / 2.0 ** fmt.emax_elem - 1.0) * 2.0 ** 52)     # exact
    xb = x2.view(np.uint32 if f32 else np.uint64)
    ntiny = kern(xb, _RULES[fmt.scale_rule.value], fmt.emax_elem, el.man_bits, frac_max,
                 fmt.scale_kmin, fmt.scale_kmax, conv is Convention.TORCHAO,
                 float(fmt.max_elem), q, codes, k, nanb)
    if ntiny:
        keff = np.where(nanb, 0, k)
        ref, tiny = float_elements(x2, keff, bs, fmt, rounding, None)
        codes[tiny] = ref[tiny]
    return codes, k, nanb
