"""`cast` and `cast_bits`: round any float or integer value into any format.

This module is the public face of the rounding core: it checks the arguments, turns
them into the kernels' parameter vector, dispatches to the Numba kernels or their NumPy
twins, and settles the rare stochastic decisions that need more random bits.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import numpy as np

from .. import _jit
from .._inputs import check_bool, to_array
from ..formats import codec
from ..formats.catalog import get as get_format
from ..formats.floatformat import FloatFormat
from . import core, stochastic
from .modes import (Overflow, Rounding, Subnormals, as_generator, as_overflow, as_random_bits,
                    as_rounding, as_subnormals, as_tininess)
from .params import DEFAULT_RULE, P, target_params
from .profiles import get_profile
from .unpack import (FINITE, FLOAT_LAYOUT, INF, NAN, ZERO, Unpacked, bits_view,
                     unpack_float_bits, unpack_int)

__all__ = ["cast", "cast_bits", "CastPlan", "make_plan", "as_input", "cast_codes",
           "cast_unpacked", "value_dtype", "value_shift"]

#: elements per chunk: bounds the NumPy twin's temporaries and the random words held
CHUNK = 1 << 16
_QUIET = np.uint64(1 << 51)


class CastPlan(NamedTuple):
    """Everything a kernel needs, resolved from the public arguments."""

    fmt: FloatFormat
    p: np.ndarray
    rounding: Rounding
    rng: np.random.Generator | None


def make_plan(fmt, rounding="nearest_even", overflow=None, subnormals=None, rng=None,
              tininess="after", profile=None, random_bits=None) -> CastPlan:
    """Resolve and check the public arguments of a rounding operation."""
    fmt = get_format(fmt)
    rnd = as_rounding(rounding)
    prof = get_profile(profile)
    rule = prof.rule_for(fmt) if profile is not None else DEFAULT_RULE
    if profile is not None:
        prof.check_rounding(rnd)
    if rule.overflow is not None:
        if overflow is not None and as_overflow(overflow) is not rule.overflow:
            raise ValueError(f"profile {prof.name!r} fixes overflow={rule.overflow.value!r} "
                             f"for {fmt.name}; do not pass overflow={overflow!r}")
        ovf = rule.overflow
    else:
        ovf = Overflow.IEEE if overflow is None else as_overflow(overflow)
    sub = Subnormals.KEEP if subnormals is None else as_subnormals(subnormals)
    p = target_params(fmt, rnd, ovf, sub, as_tininess(tininess),
                      as_random_bits(random_bits, rnd), rule)
    return CastPlan(fmt, p, rnd, as_generator(rng, rnd))


#: (exp_bits, man_bits, bias) of the value dtypes besides float64, and their kernel codes
_VALUE_DTYPES = {np.dtype(np.float64): (11, 52, 1023, 0), np.dtype(np.float32): (8, 23, 127, 1),
                 np.dtype(np.float16): (5, 10, 15, 2)}


def value_dtype(fmt: FloatFormat, dtype):
    """Check an output dtype for values: every value of `fmt` must be exact in it.

    Returns (numpy dtype, kernel output code).
    """
    dt = np.dtype(np.float64 if dtype is None else dtype)
    if dt not in _VALUE_DTYPES:
        raise TypeError(f"dtype={dt} is not float64, float32 or float16")
    e, m, bias, kind = _VALUE_DTYPES[dt]
    emin = 1 - bias
    if fmt.man_bits > m or fmt.emax > bias or fmt.emin - fmt.man_bits < emin - m:
        raise ValueError(f"dtype={dt} cannot hold every value of {fmt.name} exactly "
                         f"(it has {fmt.man_bits} mantissa bits, quanta down to 2**"
                         f"{fmt.emin - fmt.man_bits}, exponents up to {fmt.emax}); use float64")
    if kind and fmt.exp_bits == e and fmt.bias == bias and fmt.has_inf and fmt.subnormals:
        kind += 2         # same exponent layout: the value's bits are the code shifted left
    return dt, kind


def value_shift(fmt: FloatFormat, dt) -> int:
    """Mantissa shift from a format's code to a same-layout value dtype's bits."""
    return _VALUE_DTYPES[np.dtype(dt)][1] - fmt.man_bits


def as_input(x, what: str = "x", allow_int: bool = True):
    """Check an input array; return it C-contiguous with its float layout (None: ints)."""
    arr = to_array(x, what)
    kind = arr.dtype.kind
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    if kind == "f" and arr.dtype in FLOAT_LAYOUT:
        return arr, FLOAT_LAYOUT[arr.dtype]
    if kind in "iu" and allow_int:
        return arr, None
    if kind == "b":
        raise TypeError(f"{what} is a bool array; pass numbers")
    hint = ""
    if kind == "V" or arr.dtype.name in ("bfloat16",) or arr.dtype.name.startswith("float8"):
        hint = "; convert it with .astype(numpy.float32) (exact for every ml_dtypes type)"
    allowed = "float16/32/64 or an integer array" if allow_int else "float16/32/64 array"
    raise TypeError(f"{what} has dtype {arr.dtype}, not a {allowed}{hint}")


def _unpack(seg: np.ndarray, layout, p) -> Unpacked:
    if layout is None:
        return unpack_int(seg)
    return unpack_float_bits(bits_view(seg), layout[0], layout[1], bool(p[P.DAZ]))


_P32 = None


def _p_float32() -> np.ndarray:
    """Parameters of the float32 step of double-rounding profiles (x86 cvtsd2ss)."""
    global _P32
    if _P32 is None:
        _P32 = target_params(get_format("float32"))
    return _P32


def cast_unpacked(u: Unpacked, p, w=None, force=None):
    """Round unpacked values (all classes) into the target; NumPy specification.

    Returns (codes uint64, flags uint8, ambiguous bool).
    """
    size = u.cls.size
    code = np.zeros(size, dtype=np.uint64)
    flags = np.zeros(size, dtype=np.uint8)
    amb = np.zeros(size, dtype=bool)
    signed = bool(p[P.SIGNED])
    sign_bit = np.uint64(1 << int(p[P.WIDTH] - 1)) if signed else np.uint64(0)
    s = np.zeros(size, dtype=np.uint64) if p[P.NEGRULE] else u.s

    fin = u.cls == FINITE
    if np.any(fin):
        sub = (lambda a: None if a is None else a[fin])
        c, f, a = core.pack_float(s[fin], u.e[fin], u.sig[fin], u.lsb[fin], u.sticky[fin], p,
                                  sub(w), sub(force))
        if p[P.QUIRK]:
            c, f = _c10_e8m0_subnormals(s[fin], u.e[fin], u.sig[fin], u.sticky[fin], c, f)
        code[fin], flags[fin], amb[fin] = c, f, a

    zero = u.cls == ZERO
    if np.any(zero):
        if p[P.HASZERO]:
            neg0 = (s[zero] == 1) & bool(p[P.NEGZERO])
            code[zero] = np.where(neg0, sign_bit, np.uint64(0))
        elif p[P.ZERORULE]:
            flags[zero] = core.F_INEXACT | core.F_UNDERFLOW
        else:
            code[zero] = core.nan_code(s[zero], p)
            flags[zero] = core.F_INVALID

    inf = u.cls == INF
    if np.any(inf):
        si = s[inf]
        sgn = si * sign_bit
        if not signed:
            ok = si == 0
        else:
            ok = np.ones(si.shape, dtype=bool)
        if p[P.INFRULE]:
            c = sgn | np.uint64(p[P.MAXCODE])
            f = np.full(si.shape, core.F_INVALID)
        elif p[P.INFCODE] >= 0:
            c = sgn | np.uint64(p[P.INFCODE])
            f = np.zeros(si.shape, dtype=np.uint8)
        elif p[P.OVF] or p[P.NANKIND] == 0:
            c = sgn | np.uint64(p[P.MAXCODE])
            f = np.full(si.shape, core.F_INVALID)
        else:
            c = sgn | core.inf_code(si, p)
            f = np.full(si.shape, core.F_INVALID)
        code[inf] = np.where(ok, c, core.nan_code(si, p))
        flags[inf] = np.where(ok, f, core.F_INVALID)

    nan = u.cls == NAN
    if np.any(nan):
        pay = u.payload[nan]
        code[nan] = core.nan_code(u.s[nan], p, pay)
        signaling = (pay & _QUIET) == 0
        flags[nan] = np.where(signaling | (p[P.NANKIND] == 0), core.F_INVALID, 0)
    return code, flags, amb


def _c10_e8m0_subnormals(s, e, sig, sticky, code, flags):
    """torch/ml_dtypes E8M0 rule for float32 subnormal inputs (|x| < 2**-126).

    c10::detail::fp8e8m0fnu_from_fp32_value rounds the float32 exponent field with the
    mantissa's guard/round/sticky bits and the implicit bit as LSB; for subnormals (implicit
    bit 0) that gives 2**-126 iff x > 2**-127, else 2**-127.  ml_dtypes 0.6 agrees
    (measured exhaustively by scripts/sweep_float32.py).
    """
    sub32 = (e < -126) & (s == 0)          # negative inputs stay NaN (ml_dtypes)
    pow2 = ((sig & (sig - np.uint64(1))) == 0) & ~sticky
    up = (e == -127) & ~pow2
    code = np.where(sub32, up.astype(np.uint64), code)
    exact = (e == -127) & pow2
    flags = np.where(sub32, np.where(exact, 0, core.F_INEXACT), flags).astype(np.uint8)
    return code, flags


def np_cast_codes(flat, layout, p, words=None, force=None):
    """NumPy twin of the cast kernels: codes, flags and ambiguity of a flat input."""
    size = flat.size
    codes = np.empty(size, dtype=np.uint64)
    flags = np.empty(size, dtype=np.uint8)
    amb = np.empty(size, dtype=bool)
    via32 = bool(p[P.VIA32]) and layout == FLOAT_LAYOUT[np.dtype(np.float64)]
    for a in range(0, size, CHUNK):
        b = min(size, a + CHUNK)
        u = _unpack(flat[a:b], layout, p)
        pre = 0
        if via32:
            c32, pre, _ = cast_unpacked(u, _p_float32())
            u = unpack_float_bits(c32, 8, 23)
        w = None if words is None else words[a:b]
        f = None if force is None else force[a:b]
        codes[a:b], fl, amb[a:b] = cast_unpacked(u, p, w, f)
        flags[a:b] = fl | pre
    return codes, flags, amb


def _exact_magnitude(value) -> Fraction:
    return abs(Fraction(int(value))) if isinstance(value, (np.integer, int)) \
        else abs(Fraction(float(value)))


def cast_codes(flat, layout, plan: CastPlan, vdtype, want_flags: bool):
    """Run a cast over a flat contiguous array; returns (output, flags or None).

    The output is values in dtype `vdtype` (from :func:`value_dtype`), or codes in the
    format's storage dtype when `vdtype` is None.
    Stochastic rounding draws one 64-bit key from the generator; element i uses the i-th
    SplitMix64 word of that key (:func:`refcomp.rounding.stochastic.words`), and the rare
    ambiguous elements are then settled with further words from the generator.
    """
    p = plan.p
    size = flat.size
    sr = plan.rounding is Rounding.STOCHASTIC
    storage = plan.fmt.storage_dtype
    want_values = vdtype is not None
    if want_values:
        vdtype, out_kind = value_dtype(plan.fmt, vdtype)
    else:
        out_kind = -1
    if p[P.PASS] and layout == (plan.fmt.exp_bits, plan.fmt.man_bits) and plan.fmt.has_inf:
        # the backend returns an input of the target's own dtype unchanged
        bits = bits_view(flat).astype(np.uint64)
        out = codec.decode(bits, plan.fmt).astype(vdtype) if want_values else \
            bits.astype(storage)
        return out, (np.zeros(size, dtype=np.uint8) if want_flags else None)
    key = int(plan.rng.bit_generator.random_raw()) if sr else None
    if _jit.enabled():
        from .._jit import cast_kernels as jk
        fast = None if (layout is None or want_flags) else jk.fast_plan(p, layout, plan.fmt)
        flags = np.empty(size, dtype=np.uint8) if want_flags else None
        if fast is None:
            out = np.empty(size, dtype=np.float64 if want_values else storage)
            amb = jk.run_cast(flat, layout, p, key, 0, out, want_values, flags)
        else:
            out = np.empty(size, dtype=vdtype if want_values else storage)
            redo = jk.run_fast(flat, layout, fast, out, out_kind, key,
                               value_shift(plan.fmt, vdtype) if want_values else 0)
            amb = np.zeros(0, dtype=np.int64)
            if redo.size:        # stochastic roundings far below the quantum
                words = stochastic.words_at(key, redo)
                codes, _f, am = np_cast_codes(flat[redo], layout, p, words)
                out[redo] = codec.decode(codes, plan.fmt) if want_values else codes
                amb = redo[am]
    else:
        codes = np.empty(size, dtype=np.uint64)
        flags = np.empty(size, dtype=np.uint8)
        ambs = []
        for a in range(0, size, CHUNK):
            b = min(size, a + CHUNK)
            words = stochastic.words(key, a, b - a) if sr else None
            codes[a:b], flags[a:b], am = np_cast_codes(flat[a:b], layout, p, words)
            ambs.append(np.flatnonzero(am) + a)
        amb = np.concatenate(ambs) if ambs else np.zeros(0, dtype=np.int64)
        out = codec.decode(codes, plan.fmt) if want_values else codes.astype(storage)
        flags = flags if want_flags else None
    if sr and amb.size:
        _settle(flat, layout, plan, key, amb, out, flags, want_values)
    if want_values and out.dtype != vdtype:
        out = out.astype(vdtype)          # exact: value_dtype checked it
    return out, flags


def _settle(flat, layout, plan, key, idx, out, flags, want_values):
    """Decide ambiguous stochastic roundings exactly and patch their results."""
    p = plan.p
    sub = flat[idx]
    u = _unpack(sub, layout, p)
    qe = np.maximum(u.e, int(p[P.EMIN])) - int(p[P.M])
    if not p[P.SUBN]:
        qe = np.where(u.e < p[P.EMIN], p[P.EMIN], qe)
    w1 = stochastic.words_at(key, idx)
    mags = [_exact_magnitude(v) for v in sub]
    up = stochastic.decide(mags, qe.tolist(), w1.tolist(), plan.rng)
    codes, fl, still = np_cast_codes(sub, layout, p, w1, up.astype(np.int8))
    assert not np.any(still)
    out[idx] = codec.decode(codes, plan.fmt) if want_values else codes
    if flags is not None:
        flags[idx] = fl


def _run(x, fmt, rounding, overflow, subnormals, rng, flags, tininess, profile, random_bits,
         bits: bool, dtype=None):
    plan = make_plan(fmt, rounding, overflow, subnormals, rng, tininess, profile, random_bits)
    flags = check_bool(flags, "flags")
    arr, layout = as_input(x)
    vdtype = None if bits else value_dtype(plan.fmt, dtype)[0]
    out, fl = cast_codes(arr.reshape(-1), layout, plan, vdtype, bool(flags))
    out = out.reshape(arr.shape)
    if arr.ndim == 0:
        out = out[()]
    if not flags:
        return out
    fl = fl.reshape(arr.shape)
    return out, (fl[()] if arr.ndim == 0 else fl)


def cast(x, fmt, rounding="nearest_even", *, overflow=None, subnormals=None, rng=None,
         flags=False, tininess="after", profile=None, random_bits=None, dtype=None):
    """Round values into a format; return the results as exact float64 values.

    Parameters
    ----------
    x : array_like
        float16/float32/float64 values (any float64, rounded exactly in one step, never via
        an intermediate format), or integers of up to 64 bits (exact beyond 2**53 too).
    fmt : FloatFormat or str
        Target format (``"float8_e4m3fn"``, ``refcomp.formats.bfloat16``, ``"e5m7"``, ...).
    rounding : str or Rounding
        ``nearest_even`` (default), ``nearest_away``, ``toward_zero``,
        ``toward_positive``, ``toward_negative``, ``odd``, ``stochastic``.
    overflow : {"ieee", "saturate"}, optional
        Overflow rule (default IEEE 754 7.4; see :class:`refcomp.Overflow`).
    subnormals : {"keep", "flush", "daz", "flush_daz"}, optional
        Subnormal handling (default keep; see :class:`refcomp.Subnormals`).
    rng : numpy.random.Generator
        Required for stochastic rounding.  Each call draws one 64-bit key from
        ``rng.bit_generator.random_raw()``; element i (C order) then uses the i-th output
        of SplitMix64 seeded with that key, so the result depends only on the seed and the
        input, not on the machine or the backend.
    flags : bool
        Also return the IEEE flags, a uint8 array (:class:`refcomp.Flag` bits).
    tininess : {"after", "before"}
        When underflow is detected (IEEE 754-2019 7.5).  Stochastic rounding always
        judges tininess before rounding.
    profile : str, optional
        A backend's conventions, e.g. ``"torch-2.13-cpu"`` or ``"ml_dtypes-0.6"``
        (:data:`refcomp.PROFILES`).
    random_bits : int, optional
        Stochastic rounding with r random bits: the discarded fraction truncated to r bits
        is added to r random bits and the carry rounds up, as hardware SR units do.  By
        default the probability of rounding up is exactly the discarded fraction.
    dtype : {float64, float32, float16}, optional
        dtype of the returned values (default float64); a narrower one is accepted only
        when it holds every value of `fmt` exactly (e.g. float32 for bfloat16 and float8).

    Returns
    -------
    values : numpy.ndarray of `dtype` (a NumPy scalar for scalar input)
    flags : numpy.ndarray of uint8, only with ``flags=True``

    Notes
    -----
    Infinite inputs into a format without infinity give NaN (max finite when saturating or
    when the format has no NaN) and raise invalid; NaN inputs keep their sign and leading
    payload bits and are quieted (x86 SSE conversions; invalid for signalling NaNs), a
    format without NaN gives a zero of the NaN's sign and raises invalid.  Negative values
    into an unsigned format, and zero into one without zero (E8M0), give NaN and invalid.

    Examples
    --------
    >>> import refcomp as rc
    >>> float(rc.cast(0.1, "bfloat16"))
    0.10009765625
    >>> rc.cast([500.0, 1e9], "float8_e4m3fn", overflow="saturate").tolist()
    [448.0, 448.0]
    >>> v, fl = rc.cast(1e-8, "float16", rounding="toward_zero", flags=True)
    >>> float(v), rc.flag_names(fl)
    (0.0, 'inexact|underflow')
    """
    return _run(x, fmt, rounding, overflow, subnormals, rng, flags, tininess, profile,
                random_bits, bits=False, dtype=dtype)


def cast_bits(x, fmt, rounding="nearest_even", *, overflow=None, subnormals=None, rng=None,
              flags=False, tininess="after", profile=None, random_bits=None):
    """Round values into a format; return the bit patterns (``fmt.storage_dtype``).

    Same parameters and rules as :func:`cast`; ``cast_bits(x, fmt) ==
    fmt.encode(cast(x, fmt))``.

    Examples
    --------
    >>> import refcomp as rc
    >>> hex(rc.cast_bits(1.0 / 3.0, "bfloat16"))
    '0x3eab'
    """
    return _run(x, fmt, rounding, overflow, subnormals, rng, flags, tininess, profile,
                random_bits, bits=True)
