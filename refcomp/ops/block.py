"""Quantization into block-scaled formats (OCP MX, NVFP4, BFP) and exact dequantization.

``quantize_block(x, fmt)`` splits `x` into blocks of ``fmt.block_size`` elements along an
axis (a last partial block is quantized as if zero-padded), derives one scale per block
from the block's largest magnitude ``amax`` (:class:`~refcomp.formats.block.ScaleRule`;
floor(log2) always from exponent bits) and rounds every element ``x / scale`` with THE
rounding core: :func:`refcomp.cast_bits` for float elements (powers of two scale exactly
with ``np.ldexp``; an element whose scaled value would fall below float64's normal range
-- float64 inputs, huge scales -- is rounded straight into the element format shifted by
the scale, bias minus the scale exponent, exact as well), the core's ``round_at`` with a
per-element quantum then a clamp for integer elements (no scaling at all).

Conventions (``convention=``):

``ocp-mx-1.0`` (default for E8M0-scaled formats)
    OCP MX v1.0 section 6.3: ``X = 2**(floor(log2 amax) - emax_elem)`` (or the format's
    rule), clamped below to the scale format's smallest value (2**-127, also for all-zero
    blocks); elements in any rounding mode (the spec's: nearest-even), saturating to +-max.
    A block holding a NaN or an infinity, or whose scale exponent exceeds E8M0 (float64
    inputs), gets the NaN scale 0xFF and element codes 0: the whole block is NaN (MX v1.0
    section 5.4.1; the spec authors' emulator microsoft/microxcaling ``mx/mx_ops.py``
    ``_quantize_mx`` turns ``shared_exp > scale_emax``, an infinite amax's included, to NaN).
``torchao-0.18``
    torchao 0.18 ``prototype/mx_formats/mx_tensor.py`` ``to_mx`` on CPU (float32 inputs,
    nearest-even), bit for bit, quirks included: floor/ceil/even divide blocks of scale
    code 0 by 2**-126 (``scale_fp32`` clamped to ``F32_MIN_NORMAL``), read an infinite
    amax as exponent 128 (finite scale, the infinity saturates) and give NaN blocks code
    0xFF with elements ``x / inf``; rceil (``_to_mx_rceil``) rounds ``amax / max`` to
    float32 and takes ``ceil(log2)`` in float32 (:func:`_ceil_log2f`: ``k`` instead of
    ``k + 1`` just above ``2**k``), multiplies code-0 blocks by 1.0 and infinite ones by
    2**-127 (code 254), and makes every element of a NaN block that NaN.  NaN elements:
    FP8 ``0x7F | sign`` (c10), FP6/FP4 :func:`_fx_nan_code`; NaN payloads are bit-exact
    when a block's NaNs share one.  NVFP4 is defined by this convention only (:func:`_nvfp4`).
``qpytorch-0.2``
    QPyTorch 0.2.0 ``block_quantize`` (``quant_cpu.cpp`` ``block_quantize_helper``), integer
    elements: ``x + 6 * 2**E`` formed in float32 (x rounded to a multiple of ``2**(E-21)``,
    ties to even), then rounded at ``2**(E+2-wl)`` with ties toward +inf (``"nearest"``)
    or stochastically with ``23 - wl`` random bits (``"stochastic"``), clamped to
    +-(2**(wl-1)-1) quanta.  float32 inputs; a block needs ``amax == 0`` or
    ``2**-126 <= amax < 2**126`` (QPyTorch's float32 trick breaks outside): else ValueError.
"""

from __future__ import annotations

import enum
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from .. import _jit
from .._bits import U0, U1, bit_length
from ..formats.block import BlockFormat, ScaleRule, get_block_format
from ..formats.catalog import get as get_format
from ..formats.floatformat import FloatFormat
from ..rounding import core, stochastic
from ..rounding.cast import as_input, cast, cast_bits
from ..rounding.modes import as_generator, as_random_bits, as_rounding
from ..rounding.unpack import FINITE, bits_view, unpack_float_bits
from . import block_conventions
from .block_conventions import div32
from .exact import operand

__all__ = ["Convention", "BlockQuantized", "quantize_block", "dequantize_block"]

_F32 = get_format("float32")
_E4M3 = get_format("float8_e4m3fn")
_TORCH = "torch-2.13-cpu"


class Convention(str, enum.Enum):
    """Whose rules a quantization follows (module docstring)."""

    OCP = "ocp-mx-1.0"
    TORCHAO = "torchao-0.18"
    QPYTORCH = "qpytorch-0.2"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class BlockQuantized(NamedTuple):
    """A quantized tensor: ``elements`` (codes, the input's shape, the element's storage
    dtype), ``scales`` (codes, uint8 for E8M0/E4M3, the input's shape with
    ``ceil(n / block_size)`` along `axis`), ``tensor_scale`` (NVFP4: 0-d float32, else
    None), ``fmt``, ``axis`` (non-negative) and ``convention``."""

    elements: np.ndarray
    scales: np.ndarray
    tensor_scale: np.ndarray | None
    fmt: BlockFormat
    axis: int
    convention: Convention


def _convention(value, fmt: BlockFormat) -> Convention:
    ratio = fmt.scale_rule is ScaleRule.RATIO
    if ratio and (fmt.element.name, fmt.scale.name) != ("float4_e2m1fn", "float8_e4m3fn"):
        raise ValueError(f"scale_rule='ratio' is NVFP4's (E2M1 elements, E4M3 scales), not "
                         f"{fmt.element.name} with {fmt.scale.name}")
    try:
        conv = Convention(value if value is not None else
                          Convention.TORCHAO if ratio else Convention.OCP)
    except ValueError:
        raise ValueError(f"unknown convention {value!r} (valid: "
                         f"{', '.join(c.value for c in Convention)})") from None
    if ratio and conv is not Convention.TORCHAO:
        raise ValueError(f"{fmt.name} (scale_rule='ratio') is defined only by the "
                         f"torchao-0.18 convention, not {conv.value!r}")
    if conv is Convention.QPYTORCH and not (fmt.is_fixed and fmt.scale_rule is ScaleRule.FLOOR):
        raise ValueError(f"convention 'qpytorch-0.2' is QPyTorch's block_quantize: it needs "
                         f"integer elements (bfp) and the floor rule, not {fmt.name}")
    if conv is Convention.TORCHAO and not ratio and (
            fmt.is_fixed or fmt.element.name not in _TORCHAO_ELEMS or
            fmt.scale.name != "float8_e8m0fnu"):
        raise ValueError(f"torchao 0.18's to_mx supports E8M0 scales with elements "
                         f"{', '.join(_TORCHAO_ELEMS)}; not {fmt.name}")
    return conv


_TORCHAO_ELEMS = ("float8_e4m3fn", "float8_e5m2", "float6_e2m3fn", "float6_e3m2fn",
                  "float4_e2m1fn")


# ----------------------------------------------------------------------------- layout
def _layout(x, fmt: BlockFormat, axis):
    """(x with the block axis moved last, as (R, n); the axis; the moved shape; block size)."""
    arr, _ = as_input(x, "x", allow_int=False)
    if arr.ndim == 0:
        raise ValueError("x is a scalar; block quantization needs at least one axis")
    ax = fmt.axis if axis is None else axis
    if isinstance(ax, (bool, np.bool_)) or not isinstance(ax, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {ax!r}")
    if not -arr.ndim <= int(ax) < arr.ndim:
        raise ValueError(f"axis={int(ax)} is out of range for an array of {arr.ndim} "
                         f"dimension(s)")
    ax = int(ax) % arr.ndim
    moved = np.moveaxis(arr, ax, -1)
    n = moved.shape[-1]
    x2 = np.ascontiguousarray(moved).reshape(-1, n)
    bs = fmt.block_size if fmt.block_size is not None else max(n, 1)
    return x2, ax, moved.shape, bs


def _restore(a2, moved_shape, ax, last):
    return np.moveaxis(a2.reshape(moved_shape[:-1] + (last,)), -1, ax)

def block_amax(x2: np.ndarray, bs: int) -> np.ndarray:
    """Largest magnitude of each block of the rows of `x2` (float64, NaN if any NaN)."""
    a = np.abs(x2.astype(np.float64, copy=False))
    return np.maximum.reduceat(a, np.arange(0, x2.shape[1], bs), axis=1)


def _exp_frac(a: np.ndarray):
    """floor(log2 a) and whether a is a power of two, from the float64 bits (a > 0)."""
    u = unpack_float_bits(bits_view(np.ascontiguousarray(a, dtype=np.float64)), 11, 52)
    return u.e, (u.sig & (u.sig - U1)) == U0


def _to32(v) -> np.ndarray:
    return np.asarray(cast(v, _F32, dtype=np.float32))        # exact: float32 values


def _float32_values(x2: np.ndarray, what: str) -> np.ndarray:
    """The float32 array of float32-exact inputs (ValueError naming the first that is not)."""
    if x2.dtype == np.float32:
        return x2
    y = cast(x2, _F32, dtype=np.float32)
    bad = ~((y == x2) | np.isnan(x2))
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"{what} needs float32 inputs; x has {float(x2.reshape(-1)[i])!r} "
                         f"(flat index {i} along the moved axis), not a float32 value")
    return y


# ------------------------------------------------------------------------ MX scales
def _ceil_log2f(d: np.ndarray) -> np.ndarray:
    """``ceil(torch.log2(d))`` for positive finite float32 d, as torch 2.13 CPU computes it.

    torch's float32 log2 is correctly rounded near the integers (measured in every binade,
    subnormals included: tests/test_block_torchao.py).  So for ``d = 2**k * (1 + f)``,
    ``f > 0``, it returns exactly ``k`` -- and the ceiling is ``k``, not ``k + 1`` -- when
    ``log2(1 + f)`` is below half the float32 spacing next to ``k``.  With ``d``'s
    significand ``sig`` of ``p`` bits, ``f = j / 2**(p-1)`` and the bound on ``j`` is
    derived from that spacing (no table): ``j < 2**(p-1) * (2**h - 1)``.
    """
    u = unpack_float_bits(bits_view(np.ascontiguousarray(d, dtype=np.float32)), 8, 23)
    e = u.e
    p = bit_length(u.sig)
    j = (u.sig - (U1 << (p - 1).astype(np.uint64))).astype(np.int64)
    out = np.where(j == 0, e, e + 1)
    for k, pk in set(zip(e[(j != 0) & (e != 0)].tolist(), p[(j != 0) & (e != 0)].tolist())):
        a = abs(k)
        top = a.bit_length() - 1                    # float32 spacing above |k|: 2**(top-23)
        below = k < 0 and a == 1 << top             # k < 0 moves toward zero: spacing halves
        h = 2.0 ** (top - 23 - 1 - int(below))
        limit = int(np.expm1(h * np.log(2.0)) * 2.0 ** (pk - 1))   # j <= limit: log2 -> k
        out = np.where((e == k) & (p == pk) & (j != 0) & (j <= limit), k, out)
    return out


def mx_scales(amax: np.ndarray, fmt: BlockFormat, conv: Convention):
    """(k, k_eff, nan) per block: stored scale exponent, exponent the elements are divided
    by (not k only under torchao's quirks), NaN scale (rules: :class:`ScaleRule`)."""
    rule, emax = fmt.scale_rule, fmt.emax_elem
    kmin, kmax = fmt.scale_kmin, fmt.scale_kmax
    torchao = conv is Convention.TORCHAO
    nan = np.isnan(amax)
    inf = np.isinf(amax)
    pos = ~nan & (amax > 0)
    a = np.where(pos, amax, 1.0)
    if torchao:
        a = np.where(inf, 2.0 ** 128, a)                     # float32 exponent field 255
    e, pow2 = _exp_frac(a)
    if rule is ScaleRule.FLOOR:
        k = e - emax
    elif rule is ScaleRule.CEIL:
        k = e - emax + ~pow2
    elif rule is ScaleRule.EVEN:
        r = cast(a, FloatFormat(11, fmt.element.man_bits), "nearest_away")
        big = np.isinf(r)                                    # rounded past float64's range
        k = np.where(big, 1024, _exp_frac(np.where(big, 1.0, r))[0]) - emax
    elif not torchao:                                        # rceil, exact
        k0 = e - emax
        with np.errstate(under="ignore"):                    # k0 out of range: clamped
            k = k0 + (a > np.ldexp(fmt.max_elem, np.clip(k0, -1100, 1000)))
    else:
        d = div32(_to32(np.where(inf, 1.0, a)), np.float32(fmt.max_elem))
        k = np.where(amax > 0, _ceil_log2f(d), kmin)
        k = np.where(inf, kmax, k)
    k = np.where(pos, k, kmin)
    k = np.maximum(k, kmin)
    over = k > kmax
    if torchao:
        assert not np.any(over & ~nan)
        keff = np.maximum(k, -126) if rule is not ScaleRule.RCEIL else np.where(k == kmin, 0, k)
    else:
        nan = nan | inf | over
        keff = k
    return np.where(nan, 0, k).astype(np.int64), np.where(nan, 0, keff).astype(np.int64), nan


def _scale_codes(k, nan, fmt: BlockFormat):
    """Codes of the scales 2**k (power-of-two formats: the biased exponent field)."""
    s = fmt.scale
    kk = np.where(nan, fmt.scale_kmin, k)
    assert s.man_bits == 0 and np.all((kk >= s.emin) & (kk <= s.emax))
    codes = (kk + s.bias).astype(s.storage_dtype)
    if np.any(nan):
        if s.nan_code is None:
            raise ValueError(f"a block needs a NaN scale but {s.name} has no NaN")
        codes = np.where(nan, s.nan_code, codes).astype(s.storage_dtype)
    return codes


# ----------------------------------------------------------------------- elements
def float_elements(x2, keff, bs, fmt: BlockFormat, rounding, rng):
    """Codes of ``x / 2**keff`` (keff per block) rounded into the float element format,
    saturating; NumPy specification of the fused kernel.  Returns (codes (R, n), mask of
    elements that needed the exact shifted-format path)."""
    el = fmt.element
    kx = np.repeat(keff, bs, axis=1)[:, :x2.shape[1]]
    xd = x2.astype(np.float64, copy=False)
    with np.errstate(under="ignore"):
        y = np.ldexp(xd, -kx)
    y = np.clip(y, -fmt.max_elem, fmt.max_elem)    # = saturating overflow; inf -> +-max
    codes = cast_bits(y, el, rounding, overflow="saturate", rng=rng)
    tiny = (np.abs(y) < 2.0 ** -1022) & (xd != 0)
    if np.any(tiny):
        for k in np.unique(kx[tiny]).tolist():
            sel = tiny & (kx == k)
            shifted = FloatFormat(el.exp_bits, el.man_bits, el.bias - k, el.specials)
            codes[sel] = cast_bits(xd[sel], shifted, rounding, overflow="saturate", rng=rng)
    return codes, tiny


def round_fixed(xf, qe, rounding, rng, random_bits=None):
    """Signed integers ``round(x / 2**qe)`` (float64 x, qe per element), no clamping.

    THE rounding core (:func:`refcomp.rounding.core.round_at`) with per-element quanta;
    stochastic decisions it cannot settle with 64 random bits are settled exactly
    (:func:`refcomp.rounding.stochastic.decide`), as :func:`refcomp.ops.quantize_int`.
    """
    rnd = as_rounding(rounding)
    rng = as_generator(rng, rnd)
    rbits = as_random_bits(random_bits, rnd)
    xf = np.ascontiguousarray(xf, dtype=np.float64).reshape(-1)
    qe = np.ascontiguousarray(qe, dtype=np.int64).reshape(-1)
    u = operand(xf)
    fin = u.cls == FINITE
    w = None
    if not rnd.deterministic:
        w = stochastic.words(int(rng.bit_generator.random_raw()), 0, xf.size)
    n, _, amb = core.round_at(u.s, u.sig, u.lsb, u.sticky, qe, rnd.code, w, rbits)
    idx = np.flatnonzero(amb & fin)
    if idx.size:
        mags = [abs(Fraction(float(xf[i]))) for i in idx]
        force = np.full(xf.size, -1, dtype=np.int8)
        force[idx] = stochastic.decide(mags, qe[idx].tolist(), w[idx].tolist(), rng)
        n, _, _ = core.round_at(u.s, u.sig, u.lsb, u.sticky, qe, rnd.code, w, rbits, force)
    n = np.where(fin, n, U0).astype(np.int64)
    return np.where(u.s == U1, -n, n)


def _fixed_codes(q, fmt: BlockFormat):
    it = fmt.element.integer                              # saturate, then two's complement
    return it.encode(np.clip(q, it.min, it.max))


# ------------------------------------------------------------------------- public API
def quantize_block(x, fmt, axis=None, rounding="nearest_even", rng=None, *, convention=None,
                   tensor_scale="amax") -> BlockQuantized:
    """Quantize an array into a block-scaled format.

    Parameters
    ----------
    x : array_like of float, shape (..., n, ...)
        float16/32/64 values (torchao/QPyTorch conventions: float32 values).
    fmt : BlockFormat or str
        ``"mxfp8_e4m3"``, ``"mxfp4"``, ``"mxint8"``, ``"nvfp4"``, ``bfp(8, 32)``, ...
    axis : int, optional
        Axis the blocks run along (default ``fmt.axis``, -1 for the presets).
    rounding : str
        Element rounding: any refcomp mode under ``ocp-mx-1.0``; ``nearest_even`` under
        ``torchao-0.18``; ``"nearest"`` or ``"stochastic"`` under ``qpytorch-0.2``.
    rng : numpy.random.Generator, optional
        Required for stochastic rounding (refcomp's cast convention for the words).
    convention : {"ocp-mx-1.0", "torchao-0.18", "qpytorch-0.2"}, optional
        Default: ``torchao-0.18`` for NVFP4, else ``ocp-mx-1.0`` (module docstring).
    tensor_scale : "amax", float or None
        NVFP4 only: ``"amax"`` derives the float32 per-tensor scale from ``max|x|`` as
        torchao's ``per_tensor_amax_to_scale``; a number is used as is (float32); None
        quantizes with block scales only (torchao ``per_tensor_scale=None``).

    Returns
    -------
    BlockQuantized
        ``elements`` (x.shape, element codes), ``scales`` (x.shape with
        ``ceil(n / block_size)`` along the axis, scale codes), ``tensor_scale``.

    Examples
    --------
    >>> import numpy as np, refcomp.ops.block as B
    >>> q = B.quantize_block(np.array([[1.0, -0.3, 6.5, 0.0]]), "mxfp4")
    >>> q.scales.tolist(), q.elements.tolist()        # X = 2**(2 - 2) = 1: 0x7F = 2**0
    ([[127]], [[2, 9, 7, 0]])
    >>> B.dequantize_block(q).tolist()                # 6.5 saturates to 6, -0.3 -> -0.5
    [[1.0, -0.5, 6.0, 0.0]]
    """
    fmt = get_block_format(fmt)
    conv = _convention(convention, fmt)
    if not fmt.tensor_scale and not (isinstance(tensor_scale, str) and tensor_scale == "amax"):
        raise ValueError(f"tensor_scale={tensor_scale!r} applies to formats with a per-tensor "
                         f"scale (NVFP4), not {fmt.name}")
    if isinstance(tensor_scale, str) and tensor_scale != "amax":
        raise ValueError(f"tensor_scale={tensor_scale!r}: use 'amax', a number or None")
    if conv is not Convention.QPYTORCH:
        rnd = as_rounding(rounding)
        as_generator(rng, rnd)
        if conv is Convention.TORCHAO and rnd.value != "nearest_even":
            raise ValueError(f"torchao 0.18 rounds elements to nearest-even only, not "
                             f"{rnd.value!r}")
    x2, ax, mshape, bs = _layout(x, fmt, axis)
    nb = fmt.blocks_along(x2.shape[1])
    ts = None
    if x2.size == 0:
        el = np.zeros(x2.shape, dtype=fmt.element_storage())
        sc = np.zeros((x2.shape[0], nb), dtype=fmt.scale.storage_dtype)
    elif conv is Convention.QPYTORCH:
        el, k = block_conventions.qpytorch(_float32_values(x2, "qpytorch-0.2"), bs, fmt,
                                           rounding, rng)
        sc = _scale_codes(k, np.zeros(k.shape, bool), fmt)
    elif fmt.scale_rule is ScaleRule.RATIO:
        el, sc, ts = block_conventions.nvfp4(_float32_values(x2, "NVFP4"), bs, tensor_scale)
    else:
        xin = _float32_values(x2, "torchao-0.18") if conv is Convention.TORCHAO else x2
        el, k, nanb = _mx(xin, bs, fmt, conv, rounding, rng)
        sc = _scale_codes(k, nanb, fmt)
    return BlockQuantized(_restore(el, mshape, ax, x2.shape[1]), _restore(sc, mshape, ax, nb),
                          ts, fmt, ax, conv)


def _mx(x2, bs, fmt: BlockFormat, conv, rounding, rng):
    """Power-of-two-scaled blocks: (element codes, scale exponents, NaN-scale mask)."""
    fused = (_jit.enabled() and not fmt.is_fixed and as_rounding(rounding).deterministic
             and bs <= 4096                     # one compiled kernel per block size
             and not (conv is Convention.TORCHAO and fmt.scale_rule is ScaleRule.RCEIL))
    if fused:
        from .._jit.block_kernels import run_mx_float
        codes, k, nanb = run_mx_float(x2, bs, fmt, conv, rounding)
    else:
        amax = block_amax(x2, bs)
        k, keff, nanb = mx_scales(amax, fmt, conv)
        if fmt.is_fixed:
            qe = np.repeat(keff - fmt.element.frac_bits, bs, axis=1)[:, :x2.shape[1]]
            codes = _fixed_codes(round_fixed(x2, qe, rounding, rng).reshape(x2.shape), fmt)
        else:
            codes = float_elements(x2, keff, bs, fmt, rounding, rng)[0]
    if np.any(nanb):
        if conv is Convention.TORCHAO:
            codes = block_conventions.torchao_nan_blocks(x2, codes, nanb, bs, fmt)
        else:
            codes[np.repeat(nanb, bs, axis=1)[:, :x2.shape[1]]] = 0
    return codes, k, nanb


def dequantize_block(q: BlockQuantized) -> np.ndarray:
    """Exact float64 values of a quantized tensor: ``element * scale (* tensor_scale)``.

    Every product is exact in float64 (an element has at most 24 significant bits, a
    power-of-two scale none, an E4M3 scale 4 and NVFP4's float32 tensor scale 24).  A NaN
    scale makes its whole block NaN; NaN element codes give NaN.

    Parameters
    ----------
    q : BlockQuantized
        From :func:`quantize_block`, or built from stored codes
        (``BlockQuantized(elements, scales, tensor_scale, fmt, axis, convention)``).

    Returns
    -------
    numpy.ndarray of float64, ``q.elements.shape``.

    Examples
    --------
    >>> import numpy as np
    >>> q = quantize_block(np.array([[3.0, 0.1], [np.nan, 1.0]]), "mxint8", axis=0)
    >>> q.scales.tolist(), dequantize_block(q).tolist()     # blocks run down the columns
    ([[255, 127]], [[nan, 0.09375], [nan, 1.0]])
    """
    fmt = get_block_format(q.fmt)
    ax = int(q.axis)
    elements = np.asarray(q.elements)
    ev = np.moveaxis(fmt.element_values(elements), ax, -1)
    sv = np.moveaxis(fmt.scale.decode(np.asarray(q.scales)), ax, -1)
    n = ev.shape[-1]
    bs = fmt.block_size if fmt.block_size is not None else max(n, 1)
    if sv.shape[-1] != fmt.blocks_along(n) or sv.shape[:-1] != ev.shape[:-1]:
        raise ValueError(f"scales of shape {np.shape(q.scales)} do not match elements of "
                         f"shape {elements.shape} in {fmt.name} along axis {ax}")
    s = np.repeat(sv, bs, axis=-1)[..., :n]
    if fmt.tensor_scale and q.tensor_scale is not None:
        s = s * np.float64(np.asarray(q.tensor_scale, dtype=np.float32))
    with np.errstate(invalid="ignore"):
        return np.moveaxis(ev * s, -1, ax)
