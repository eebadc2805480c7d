"""Bit-exact integer requantization: gemmlowp / TensorFlow Lite / CMSIS-NN fixed point.

Integer kernels (int8 conv, fully connected, add, ...) rescale their int32 accumulators by
a real multiplier ``M * 2**(shift - 31)`` held as an int32 ``M`` and an int ``shift``.  The
functions here reproduce those primitives bit for bit, vectorised over NumPy integer
arrays (broadcasting; a scalar in gives a NumPy scalar out).  They are integer shifts with
backend-defined ties, not roundings of low-precision floats, so they stand apart from
refcomp's float rounding core.

Sources read (facts only), and what they establish:

* gemmlowp ``fixedpoint/fixedpoint.h`` (google/gemmlowp @ 032a5999),
  ``SaturatingRoundingDoublingHighMul<std::int32_t>``: INT32_MAX when ``a == b ==
  INT32_MIN``, else ``(a*b + nudge) / 2**31`` in int64 with C++ truncating division, nudge
  ``2**30`` if ``a*b >= 0`` else ``1 - 2**30``.  CONFIRMED as written; ADDED: that equals
  ``floor((a*b + 2**30) / 2**31)``, i.e. nearest with ties toward +infinity (not away from
  zero: ``SRDHM(-1, 2**30) == 0``, ``SRDHM(1, 2**30) == 1``), which is what ARM VQRDMULH
  and CMSIS-NN ``arm_nn_doubling_high_mult_no_sat`` (nudge ``2**30``, arithmetic shift)
  compute.
* gemmlowp ``RoundingDivideByPOT``: asserts ``0 <= exponent <= 31``; ``mask = 2**e - 1``,
  ``threshold = (mask >> 1) + (x < 0)``, result ``(x >> e) + ((x & mask) > threshold)``.
  CONFIRMED; the rule is nearest with ties away from zero.
* TFLite ``tensorflow/lite/kernels/internal/common.cc`` (tensorflow/tensorflow @ 4713c153;
  identical in tensorflow/tflite-micro @ 90b983c2), ``MultiplyByQuantizedMultiplier``.
  ``TFLITE_SINGLE_ROUNDING`` is never defined by default (``#if`` of an undefined macro is
  0), so double rounding is the default.  Double rounding (int32 x):
  ``RoundingDivideByPOT(SRDHM(x * (1 << left), M), right)`` with ``left = max(shift, 0)``,
  ``right = max(-shift, 0)``; CONFIRMED, with no check of M or shift in the source; the
  int32 product ``x * (1 << left)`` may overflow (undefined behaviour), ``1 << 31``
  overflows ``int``, and RoundingDivideByPOT asserts ``right <= 31``.  Single rounding
  (int32 x): asserts ``M >= 0``, ``-31 <= shift <= 30`` and an int32 result, computes
  ``(x*M + 2**(30 - shift)) >> (31 - shift)`` in int64: CONFIRMED (an arithmetic shift, so
  ties go toward +infinity).  The int64-x overload (16x8 kernels) is the SAME in both
  branches: asserts ``M >= 0``, ``-31 <= shift <= 7``, ``-2**47 <= x < 2**47``; reduces
  the multiplier to 16 bits, ``rm = (M + 2**15) >> 16`` if ``M < 0x7FFF0000`` else
  ``0x7FFF``, then ``(x*rm + 2**(14 - shift)) >> (15 - shift)``; the single branch checks
  the int32 result, the double branch narrows it silently.  ``|x*rm| < 2**62``, so int64
  suffices (no 128-bit product).
* TFLite ``tensorflow/lite/kernels/internal/quantization_util.cc`` (tensorflow/tensorflow
  @ 02145c25), ``QuantizeMultiplier``: ``d == 0`` gives ``(0, 0)``; else ``q, shift =
  frexp(d)`` and ``q_fixed = TfLiteRound(q * 2**31)``, TfLiteRound being ``std::round``
  (``cppmath.h``: ties away from zero): CONFIRMED; ``q_fixed == 2**31`` is halved with
  ``shift + 1``: CONFIRMED; ADDED: then ``shift < -31`` gives ``(0, 0)`` (flush to zero,
  roughly ``d < 2**-32``), and under ``TFLITE_SINGLE_ROUNDING`` ``shift > 30`` gives
  ``(2**31 - 1, 30)`` (saturation).  The source does not reject negative ``d`` (it yields a
  negative multiplier in the double branch) nor inf/NaN (undefined conversion); refcomp
  raises ValueError for both.  The ``TFLITE_EMULATE_FLOAT`` path (``IntegerFrExp``,
  rounding ties toward zero and mishandling subnormals) is not mirrored.
* CMSIS-NN ``Include/arm_nnsupportfunctions.h`` (ARM-software/CMSIS-NN @ 99f736a6):
  ``arm_nn_requantize`` is the same rule as TFLite in both branches on valid input
  (documented shift range -31..30, no SRDHM saturation, which needs ``M == INT32_MIN``);
  ``arm_nn_requantize_s64`` narrows to int32 *before* its last rounding shift, so it agrees
  with the TFLite int64 overload only while ``2 * result`` fits int32.

What refcomp enforces (ValueError naming the value, never a silent wrap): every int32
operand within int32; multipliers in ``[0, 2**31 - 1]`` (the range TFLite's single and
int64 paths assert; QuantizeMultiplier yields ``0`` or ``[2**30, 2**31)``, smaller values
are accepted); shift in ``[-31, 30]`` (int32 x, both roundings; shift 31 would need
``1 << 31``) or ``[-31, 7]`` (int64 x); ``x * 2**shift`` within int32 for double rounding;
int32 results for single rounding and int64 x; exponent in ``[0, 31]``.

>>> import numpy as np
>>> from refcomp.ops.requant import multiply_by_quantized_multiplier, quantize_multiplier
>>> m, s = quantize_multiplier(0.3)
>>> int(m), int(s)
(1288490189, -1)
>>> multiply_by_quantized_multiplier(np.array([100, -100, 5, -5], np.int32), m, s).tolist()
[30, -30, 2, -2]
"""

from __future__ import annotations

import numpy as np

from .. import _jit
from .._inputs import to_array
from ..rounding.modes import _Choice, _parse

__all__ = ["RequantRounding", "saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
           "multiply_by_quantized_multiplier", "quantize_multiplier"]

I64 = np.int64
MIN32, MAX32 = -(1 << 31), (1 << 31) - 1
WIDE_X = 1 << 47
#: (x low, x high, shift low, shift high) of each MultiplyByQuantizedMultiplier variant
_RANGES = {"double": (MIN32, MAX32, -31, 30), "single": (MIN32, MAX32, -31, 30),
           "wide": (-WIDE_X, WIDE_X - 1, -31, 7)}


class RequantRounding(_Choice):
    """TFLite's two MultiplyByQuantizedMultiplier builds.

    ``double``
        the default build: SRDHM (ties toward +inf) then RoundingDivideByPOT (ties away).
    ``single``
        ``-DTFLITE_SINGLE_ROUNDING=1``: one rounding, ties toward +inf.
    """

    DOUBLE = "double"
    SINGLE = "single"


def _ints(v, what: str) -> np.ndarray:
    """An integer operand as an int32 or int64 array (never a silent conversion)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) \
            and not -(1 << 63) <= int(v) < (1 << 64):
        raise ValueError(f"{what} = {int(v)} does not fit 64 bits")
    arr = to_array(v, what)
    if arr.dtype.kind not in "iu":
        sample = f" (e.g. {arr.ravel()[0].item()!r})" if arr.size else ""
        raise TypeError(f"{what} must be integers, got dtype {arr.dtype}{sample}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and arr.size \
            and int(arr.max()) > (1 << 63) - 1:
        raise ValueError(f"{what} = {int(arr.max())} is outside int64")
    if arr.dtype in (np.int32, np.int64):
        return arr
    return arr.astype(np.int32 if arr.dtype.itemsize < 4 else I64)


def _where(shape, idx) -> str:
    if shape == ():
        return ""
    return f" (element {idx[0] if len(shape) == 1 else tuple(int(i) for i in idx)})"


def _raise_first(shape, checks) -> None:
    """Raise ValueError for the first element (C order) that fails any check.

    ``checks``: (bad mask broadcastable to shape, message(at) -> str), in the order in
    which they are reported when one element fails several; ``at(a)`` is the failing
    element of an operand ``a`` (as an int, after broadcasting).
    """
    bad = np.zeros(shape, bool)
    for mask, _ in checks:
        bad |= mask
    if not bad.any():
        return
    idx = np.unravel_index(int(np.argmax(bad.ravel())), shape)

    def at(a):
        return int(np.broadcast_to(a, shape)[idx])

    for mask, message in checks:
        if np.broadcast_to(mask, shape)[idx]:
            raise ValueError(message(at) + _where(shape, idx))
    raise AssertionError("unreachable")           # pragma: no cover


def _range_check(arr, lo, hi, name, why=""):
    """A (mask, message) check that arr lies in [lo, hi]."""
    return ((arr < lo) | (arr > hi),
            lambda at: f"{name} = {at(arr)} is outside [{lo}, {hi}]{why}")


def _finish(out: np.ndarray):
    return out[()] if out.ndim == 0 else out


def _srdhm_np(a, b):
    """SRDHM on int64 arrays holding int32 values (the specification)."""
    high = (a * b + (1 << 30)) >> 31                  # = trunc((a*b + nudge) / 2**31)
    return np.where((a == MIN32) & (b == MIN32), I64(MAX32), high)


def _rdbpot_np(x, e):
    """RoundingDivideByPOT on int64 arrays, 0 <= e <= 31 (the specification)."""
    mask = (I64(1) << e) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + ((x & mask) > threshold)


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul for int32 (ARM VQRDMULH).

    Parameters
    ----------
    a, b : int or array_like of integers, broadcastable
        int32 values (any integer dtype; values outside int32 raise).

    Returns
    -------
    numpy.int32 or numpy.ndarray of int32
        ``a*b / 2**31`` rounded to nearest, ties toward +infinity; ``INT32_MAX`` for
        ``a == b == INT32_MIN`` (the only product that does not fit).

    Notes
    -----
    Mirrors ``SaturatingRoundingDoublingHighMul<std::int32_t>`` in gemmlowp
    ``fixedpoint/fixedpoint.h`` (google/gemmlowp @ 032a5999), which adds a nudge of
    ``2**30`` (``1 - 2**30`` for negative products) and divides by ``2**31`` with C++
    truncation.  For ``p = a*b < 0`` that is ``trunc((p + 1 - 2**30) / 2**31) =
    ceil((p + 1 - 2**30) / 2**31) = floor((p + 2**30) / 2**31)``, so both signs compute
    ``floor((p + 2**30) / 2**31)``, the form used here (int64: ``|p| <= 2**62``).

    Examples
    --------
    >>> saturating_rounding_doubling_high_mul([1, -1, -3, 3], 2**30).tolist()   # x / 2
    [1, 0, -1, 2]
    >>> saturating_rounding_doubling_high_mul(-2**31, -2**31)
    np.int32(2147483647)
    """
    a, b = _ints(a, "a"), _ints(b, "b")
    a, b = a.astype(I64, copy=False), b.astype(I64, copy=False)
    why = " (int32)"
    _raise_first(np.broadcast_shapes(a.shape, b.shape),
                 [_range_check(a, MIN32, MAX32, "a", why), _range_check(b, MIN32, MAX32, "b", why)])
    return _finish(_srdhm_np(a, b).astype(np.int32))


def rounding_divide_by_pot(x, exponent):
    """gemmlowp's RoundingDivideByPOT: ``x / 2**exponent`` rounded, ties away from zero.

    Parameters
    ----------
    x : int or array_like of integers
        int32 values.
    exponent : int or array_like of integers, broadcastable with x
        0..31 (gemmlowp asserts this range), per element if an array.

    Returns
    -------
    numpy.int32 or numpy.ndarray of int32

    Notes
    -----
    Mirrors ``RoundingDivideByPOT`` in gemmlowp ``fixedpoint/fixedpoint.h``
    (google/gemmlowp @ 032a5999): ``mask = 2**e - 1``, ``threshold = (mask >> 1) +
    (x < 0)``, result ``(x >> e) + ((x & mask) > threshold)`` with an arithmetic shift.
    CMSIS-NN ``arm_nn_divide_by_power_of_two`` is the same rule.

    Examples
    --------
    >>> rounding_divide_by_pot([5, -5, 6, -6, 7, -7], 1).tolist()
    [3, -3, 3, -3, 4, -4]
    >>> rounding_divide_by_pot(-2**31, 31)
    np.int32(-1)
    """
    x, e = _ints(x, "x"), _ints(exponent, "exponent")
    x, e = x.astype(I64, copy=False), e.astype(I64, copy=False)
    _raise_first(np.broadcast_shapes(x.shape, e.shape),
                 [_range_check(x, MIN32, MAX32, "x", " (int32)"),
                  _range_check(e, 0, 31, "exponent", " (gemmlowp asserts 0..31)")])
    return _finish(_rdbpot_np(x, e).astype(np.int32))


def _checks(variant, x, m, s):
    """Range checks shared by the three MultiplyByQuantizedMultiplier twins."""
    xlo, xhi, slo, shi = _RANGES[variant]
    what = {"double": "rounding='double'", "single": "rounding='single' (TFLITE_DCHECK)",
            "wide": "x_bits=64 (TFLite's int64_t overload asserts)"}[variant]
    return [_range_check(x, xlo, xhi, "x", " (int32)" if variant != "wide"
                         else " (TFLite's int64_t overload asserts -2**47 <= x < 2**47)"),
            _range_check(m, 0, MAX32, "multiplier",
                         ": TFLite needs a non-negative int32 quantized multiplier"),
            _range_check(s, slo, shi, "shift", f" for {what}")]


def _result_check(r, x, m, s):
    return ((r < MIN32) | (r > MAX32),
            lambda at: f"result of x = {at(x)}, multiplier = {at(m)}, shift = {at(s)} is "
                       f"{at(r)}, outside int32 (TFLite asserts it fits)")


def _np_double(x, m, s):
    """Twin of mbqm_double: TFLite double rounding on int64 arrays (checks, then computes)."""
    x, m, s = (a.astype(I64, copy=False) for a in (x, m, s))
    shape = np.broadcast_shapes(x.shape, m.shape, s.shape)
    left, right = np.clip(s, 0, 30), np.clip(-s, 0, 31)
    xs = np.clip(x, MIN32, MAX32) << left
    overflow = ((xs < MIN32) | (xs > MAX32),
                lambda at: f"x * 2**shift = {at(x)} * 2**{at(s)} overflows int32 "
                          "(TFLite's x * (1 << shift) is an int32 product)")
    _raise_first(shape, _checks("double", x, m, s) + [overflow])
    return _rdbpot_np(_srdhm_np(xs, m), right)


def _np_single(x, m, s):
    """Twin of mbqm_single: (x*M + 2**(30 - s)) >> (31 - s) on int64 arrays."""
    x, m, s = (a.astype(I64, copy=False) for a in (x, m, s))
    shape = np.broadcast_shapes(x.shape, m.shape, s.shape)
    total = 31 - np.clip(s, -31, 30)
    r = (np.clip(x, MIN32, MAX32) * np.clip(m, 0, MAX32) + (I64(1) << (total - 1))) >> total
    _raise_first(shape, _checks("single", x, m, s) + [_result_check(r, x, m, s)])
    return r


def _np_wide(x, m, s):
    """Twin of mbqm_wide: TFLite's int64_t-x overload on int64 arrays."""
    x, m, s = (a.astype(I64, copy=False) for a in (x, m, s))
    shape = np.broadcast_shapes(x.shape, m.shape, s.shape)
    mc = np.clip(m, 0, MAX32)
    rm = np.where(mc < 0x7FFF0000, (mc + (1 << 15)) >> 16, I64(0x7FFF))
    total = 15 - np.clip(s, -31, 7)
    r = (np.clip(x, -WIDE_X, WIDE_X - 1) * rm + (I64(1) << (total - 1))) >> total
    _raise_first(shape, _checks("wide", x, m, s) + [_result_check(r, x, m, s)])
    return r


_TWINS = {"double": _np_double, "single": _np_single, "wide": _np_wide}


def _flat_operand(a: np.ndarray, shape, n: int):
    """A kernel operand: a plain int for a broadcast scalar, else a flat contiguous array."""
    if a.size == 1:
        return int(a.reshape(-1)[0])
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    return np.ascontiguousarray(a).reshape(n)


def _run_kernel(variant, x, m, s):
    """The Numba kernel of a variant; None when some element is invalid."""
    from .._jit import requant_kernels as k
    shape = np.broadcast_shapes(x.shape, m.shape, s.shape)
    n = int(np.prod(shape, dtype=I64))
    out = np.empty(shape, np.int32)
    if n == 0:
        return out
    kernel = {"double": k.mbqm_double, "single": k.mbqm_single, "wide": k.mbqm_wide}[variant]
    bad = kernel(*(_flat_operand(a, shape, n) for a in (x, m, s)), out.reshape(n))
    return None if bad else out


def multiply_by_quantized_multiplier(x, multiplier, shift, rounding="double", *, x_bits=32):
    """TFLite's MultiplyByQuantizedMultiplier: ``x * multiplier * 2**(shift - 31)``, rounded.

    Parameters
    ----------
    x : int or array_like of integers
        int32 values (``x_bits=32``) or int64 values in ``[-2**47, 2**47)`` (``x_bits=64``).
    multiplier : int or array_like of integers, broadcastable with x
        Quantized multiplier in ``[0, 2**31 - 1]`` (usually from :func:`quantize_multiplier`,
        then 0 or in ``[2**30, 2**31)``); per element (e.g. per channel) if an array.
    shift : int or array_like of integers, broadcastable with x
        Power-of-two exponent: ``[-31, 30]`` for int32 x, ``[-31, 7]`` for int64 x.
    rounding : {"double", "single"} or RequantRounding
        ``"double"``: TFLite's default build, ``RoundingDivideByPOT(SRDHM(x * 2**max(shift,
        0), multiplier), max(-shift, 0))``; ``x * 2**shift`` must fit int32.  ``"single"``:
        the ``TFLITE_SINGLE_ROUNDING`` build, ``(x*multiplier + 2**(30 - shift)) >> (31 -
        shift)``; the result must fit int32.  Ignored for ``x_bits=64``, whose rule is the
        same in both builds.
    x_bits : {32, 64}
        64 selects TFLite's ``int64_t`` overload (16x8 kernels): the multiplier is reduced
        to 16 bits, ``rm = (multiplier + 2**15) >> 16`` (``0x7FFF`` from ``0x7FFF0000`` on),
        then ``(x*rm + 2**(14 - shift)) >> (15 - shift)``; the result must fit int32.

    Returns
    -------
    numpy.int32 or numpy.ndarray of int32
        A scalar when every input is a scalar.

    Notes
    -----
    Mirrors both ``MultiplyByQuantizedMultiplier`` overloads and both
    ``TFLITE_SINGLE_ROUNDING`` branches of TFLite ``tensorflow/lite/kernels/internal/
    common.cc`` (tensorflow/tensorflow @ 4713c153), built on gemmlowp's SRDHM and
    RoundingDivideByPOT (see :func:`saturating_rounding_doubling_high_mul`,
    :func:`rounding_divide_by_pot`).  All arithmetic is exact in int64: ``|x * 2**shift *
    multiplier| < 2**62`` once the inputs are checked, and ``|x * rm| < 2**62`` for int64
    x.  Where TFLite has undefined behaviour, a DCHECK, or a silent narrowing (the
    overflowing shift, out-of-range shift or multiplier, a result outside int32), refcomp
    raises ValueError naming the value and its element.  Numba kernels
    (``refcomp._jit.requant_kernels``) run unless ``REFCOMP_DISABLE_JIT=1``; the NumPy code
    here is their specification.

    Examples
    --------
    >>> multiply_by_quantized_multiplier([3, -3], 1 << 30, -1).tolist()   # x * 0.25
    [1, -1]
    >>> multiply_by_quantized_multiplier([3, -3], 1 << 30, -1, "single").tolist()
    [1, -1]
    >>> multiply_by_quantized_multiplier([2, -2, 6, -6], 1 << 30, -2).tolist()   # x / 8
    [0, 0, 1, -1]
    >>> multiply_by_quantized_multiplier([2, -2, 6, -6], 1 << 30, -2, "single").tolist()
    [0, 0, 1, -1]
    >>> multiply_by_quantized_multiplier([2, -2], 1 << 30, -1).tolist()   # ties: away
    [1, -1]
    >>> multiply_by_quantized_multiplier([2, -2], 1 << 30, -1, "single").tolist()   # up
    [1, 0]
    >>> multiply_by_quantized_multiplier(1 << 40, 1 << 30, -20, x_bits=64)
    np.int32(524288)
    """
    rounding = _parse(RequantRounding, rounding, "requantization rounding")
    if isinstance(x_bits, (bool, np.bool_)) or x_bits not in (32, 64):
        raise ValueError(f"x_bits must be 32 or 64, got {x_bits!r}")
    variant = "wide" if x_bits == 64 else rounding.value
    x, m, s = _ints(x, "x"), _ints(multiplier, "multiplier"), _ints(shift, "shift")
    scalar = x.ndim == m.ndim == s.ndim == 0
    if _jit.enabled():
        out = _run_kernel(variant, x, m, s)
        if out is None:
            _TWINS[variant](x, m, s)                     # raises, naming the bad element
            raise AssertionError("kernel and twin disagree on validity")   # pragma: no cover
    else:
        out = _TWINS[variant](x, m, s).astype(np.int32)
    return out[()] if scalar else out


def quantize_multiplier(d, rounding="double"):
    """TFLite's QuantizeMultiplier: a real multiplier as ``(multiplier, shift)``.

    Parameters
    ----------
    d : float or array_like of floats (or exactly representable integers)
        Non-negative finite multipliers (float16/32/64, read exactly as float64).
    rounding : {"double", "single"} or RequantRounding
        ``"single"`` adds the ``TFLITE_SINGLE_ROUNDING`` saturation ``shift > 30 ->
        (2**31 - 1, 30)``.

    Returns
    -------
    multiplier, shift : numpy.int32 or numpy.ndarray of int32
        ``d ~= multiplier * 2**(shift - 31)`` with ``multiplier`` in ``[2**30, 2**31)``,
        or ``(0, 0)`` for ``d == 0`` and for ``d`` below about ``2**-32``.

    Notes
    -----
    Mirrors ``QuantizeMultiplier`` in TFLite ``tensorflow/lite/kernels/internal/
    quantization_util.cc`` (tensorflow/tensorflow @ 02145c25), non-``TFLITE_EMULATE_FLOAT``
    path: ``q, shift = frexp(d)`` (``0.5 <= q < 1``), ``multiplier = std::round(q *
    2**31)`` (ties away from zero); ``2**31`` becomes ``2**30`` with ``shift + 1``; then
    ``shift < -31`` becomes ``(0, 0)``.  Here ``q * 2**31 = sig / 2**22`` for the 53-bit
    integer significand ``sig``, so the rounding is the integer ``(sig + 2**21) >> 22``.
    TFLite accepts negative ``d`` (double build) and leaves inf/NaN undefined; refcomp
    raises ValueError for them.

    Examples
    --------
    >>> m, s = quantize_multiplier([0.5, 1.0, 0.0, 1e-10, 1.0 - 2.0**-33])
    >>> m.tolist(), s.tolist()
    ([1073741824, 1073741824, 0, 0, 1073741824], [0, 1, 0, 0, 1])
    >>> quantize_multiplier(2.0**31, "single")
    (np.int32(2147483647), np.int32(30))
    """
    rounding = _parse(RequantRounding, rounding, "requantization rounding")
    arr = to_array(d, "d")
    if arr.dtype.kind in "iu":
        big = arr > (1 << 53)
        if big.any():
            idx = np.unravel_index(int(np.argmax(big.ravel())), arr.shape)
            raise ValueError(f"d = {int(arr[idx])}{_where(arr.shape, idx)} is an integer "
                             "above 2**53; pass a float")
        arr = arr.astype(np.float64)
    if arr.dtype.kind != "f":
        sample = f" (e.g. {arr.ravel()[0].item()!r})" if arr.size else ""
        raise TypeError(f"d must be real numbers, got dtype {arr.dtype}{sample}")
    d64 = arr.astype(np.float64)
    bad = ~np.isfinite(d64) | (d64 < 0)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad.ravel())), d64.shape)
        raise ValueError(f"d = {float(d64[idx])!r}{_where(d64.shape, idx)} must be a finite, "
                         "non-negative multiplier")
    frac, exp = np.frexp(d64)                           # exact; 0.5 <= frac < 1 or frac == 0
    sig = np.ldexp(frac, 53).astype(I64)                # exact 53-bit integer significand
    q = (sig + (1 << 21)) >> 22                         # std::round(frac * 2**31), frac >= 0
    exp = exp.astype(I64)
    renorm = q == (1 << 31)
    q = np.where(renorm, I64(1 << 30), q)
    exp = exp + renorm
    flush = exp < -31
    q, exp = np.where(flush, I64(0), q), np.where(flush, I64(0), exp)
    if rounding is RequantRounding.SINGLE:
        sat = exp > 30
        q, exp = np.where(sat, I64(MAX32), q), np.where(sat, I64(30), exp)
    return _finish(q.astype(np.int32)), _finish(exp.astype(np.int32))
