"""`BlockFormat`: block-scaled formats (OCP MX, NVFP4, shared-exponent block floating point).

A block format stores a tensor as *elements* in a narrow format plus one *scale* per block
of `block_size` consecutive elements along one axis; the value of an element is
``element_value * scale_value`` (times a per-tensor float32 scale for NVFP4).  This module
says WHAT a block format is; :mod:`refcomp.ops.block` quantizes and dequantizes.

Sources of the presets:

* OCP Microscaling Formats (MX) Specification v1.0 (Sept. 2023): sections 5.1-5.4 (blocks
  of k = 32 elements sharing an E8M0 scale; element types FP8 E4M3/E5M2, FP6 E2M3/E3M2,
  FP4 E2M1, INT8) and 6.3 (the scale ``X = 2**(floor(log2(amax)) - emax_elem)``).  MXINT8's
  element is an 8-bit integer with an implicit scale ``2**-6``; refcomp uses the symmetric
  range ``-127/64 .. 127/64`` as the spec authors' reference emulator does
  (microsoft/microxcaling ``mx/formats.py``, ``_get_format_params``: int8 is
  sign-magnitude, ``max_norm = 127/64``): ``FixedFormat(8, 6, narrow=True)``, so the code
  0x80 (-2) is never produced (and, as for every narrow integer format, not decoded).
* NVFP4: torchao 0.18 ``torchao/prototype/mx_formats/nvfp4_tensor.py`` (``nvfp4_quantize``):
  16-element blocks of E2M1, an E4M3 block scale and a float32 per-tensor scale.
* Block floating point with integer mantissas: QPyTorch 0.2.0 ``block_quantize``
  (``qtorch/quant/quant_cpu/quant_cpu.cpp``, ``block_quantize_helper`` and
  ``sim_helper.cpp``/``bit_helper.cpp``): word length ``wl`` = sign + ``wl - 1`` magnitude
  bits, quantum ``2**(floor(log2(amax)) - (wl - 2))``, magnitudes clamped to
  ``2**(wl-1) - 1`` quanta (symmetric).  That is exactly an integer element
  ``FixedFormat(wl, wl - 2, narrow=True)`` under the MX rule with ``emax_elem = 0``.

>>> from refcomp.formats.block import mxfp8_e4m3, nvfp4, bfp
>>> mxfp8_e4m3.block_size, mxfp8_e4m3.element.name, mxfp8_e4m3.scale.name, mxfp8_e4m3.emax_elem
(32, 'float8_e4m3fn', 'float8_e8m0fnu', 8)
>>> nvfp4.scale_rule.value, nvfp4.block_size, nvfp4.tensor_scale
('ratio', 16, True)
>>> b = bfp(8, 16)
>>> b.name, b.element.name, b.max_elem
('bfp8_b16', 'Q1.6_narrow', 1.984375)
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass

import numpy as np

from .catalog import get as get_float_format
from .floatformat import FloatFormat
from .intformat import FixedFormat

__all__ = ["ScaleRule", "BlockFormat", "bfp", "BLOCK_FORMATS", "get_block_format",
           "mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "mxint8", "nvfp4"]


class ScaleRule(str, enum.Enum):
    """How a block's scale is derived from its largest magnitude ``amax``.

    With ``emax`` the exponent of the element format's largest power of two
    (:attr:`BlockFormat.emax_elem`) and ``max`` its largest value:

    ``floor``  ``X = 2**(floor(log2 amax) - emax)``: OCP MX v1.0 section 6.3; torchao 0.18
               ``ScaleCalculationMode.FLOOR``.  The largest element may round above ``max``
               and saturates.
    ``ceil``   ``X = 2**(ceil(log2 amax) - emax)``: torchao ``CEIL`` (the exponent of amax
               plus one unless amax is a power of two).
    ``even``   ``X = 2**(floor(log2 r) - emax)`` with ``r`` = amax rounded to the element's
               mantissa width, ties away from zero: torchao ``EVEN``.
    ``rceil``  ``X = 2**ceil(log2(amax / max))``, the smallest power of two with
               ``amax / X <= max``: torchao ``RCEIL``, NVIDIA cuBLAS "block quantization"
               (``cvt.rp.satfinite.ue8m0x2.f32``).
    ``ratio``  ``X = amax / max`` rounded to nearest-even into a scale format with a mantissa
               (E4M3 for NVFP4): torchao ``nvfp4_quantize``.
    """

    FLOOR = "floor"
    CEIL = "ceil"
    EVEN = "even"
    RCEIL = "rceil"
    RATIO = "ratio"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


def as_scale_rule(value) -> ScaleRule:
    """A ScaleRule from itself or its name (ValueError naming the bad value)."""
    if isinstance(value, ScaleRule):
        return value
    if isinstance(value, str):
        try:
            return ScaleRule(value.strip().lower())
        except ValueError:
            pass
        raise ValueError(f"unknown scale rule {value!r} (valid: "
                         f"{', '.join(r.value for r in ScaleRule)})")
    raise TypeError(f"scale_rule must be a string or ScaleRule, got {value!r}")


def _element(value):
    if isinstance(value, (FloatFormat, FixedFormat)):
        return value
    if isinstance(value, str):
        return get_float_format(value)
    raise TypeError(f"element must be a FloatFormat, a FixedFormat or a format name, "
                    f"got {value!r}")


@dataclass(frozen=True)
class BlockFormat:
    """A block-scaled format.

    Parameters
    ----------
    element : FloatFormat, FixedFormat or str
        Format of the elements (``"float8_e4m3fn"``, ``FixedFormat(8, 6, narrow=True)``).
    block_size : int or None
        Elements per block along `axis` (positive); None makes each whole slice along
        `axis` one block (QPyTorch's ``dim`` blocking).
    scale : FloatFormat or str
        Format of the block scales: a power-of-two format (``man_bits == 0``, E8M0) for
        the rules floor/ceil/even/rceil, any float format (E4M3) for ``ratio``.
    axis : int
        Default axis along which blocks run (``quantize_block`` may override it).
    scale_rule : ScaleRule or str
    tensor_scale : bool
        A second, per-tensor float32 scale level (NVFP4); needs ``scale_rule="ratio"``.
    name : str, optional

    Notes
    -----
    A block of a tensor whose axis length ``n`` is not a multiple of `block_size` is
    quantized as if zero-padded to a whole block (zeros do not change its amax); elements
    keep the input's shape and scales have ``ceil(n / block_size)`` entries along the axis.
    """

    element: FloatFormat | FixedFormat
    block_size: int | None
    scale: FloatFormat | str = "float8_e8m0fnu"
    axis: int = -1
    scale_rule: ScaleRule | str = ScaleRule.FLOOR
    tensor_scale: bool = False
    name: str | None = None

    def __post_init__(self):
        elem = _element(self.element)
        scale = get_float_format(self.scale) if isinstance(self.scale, str) else self.scale
        if not isinstance(scale, FloatFormat):
            raise TypeError(f"scale must be a FloatFormat or a format name, got {scale!r}")
        rule = as_scale_rule(self.scale_rule)
        bs = self.block_size
        if bs is not None:
            if isinstance(bs, (bool, np.bool_)) or not isinstance(bs, (int, np.integer)):
                raise TypeError(f"block_size must be a positive integer or None, got {bs!r}")
            if int(bs) <= 0:
                raise ValueError(f"block_size={int(bs)} is not positive")
            bs = int(bs)
        if isinstance(self.axis, (bool, np.bool_)) or not isinstance(self.axis,
                                                                      (int, np.integer)):
            raise TypeError(f"axis must be an integer, got {self.axis!r}")
        if not isinstance(self.tensor_scale, (bool, np.bool_)):
            raise TypeError(f"tensor_scale must be True or False, got {self.tensor_scale!r}")
        if rule is ScaleRule.RATIO:
            if not isinstance(elem, FloatFormat):
                raise ValueError("scale_rule='ratio' needs a float element format")
        elif scale.man_bits != 0:
            raise ValueError(f"scale_rule={rule.value!r} makes power-of-two scales; the scale "
                             f"format {scale.name} has {scale.man_bits} mantissa bits "
                             "(use a man_bits=0 format such as float8_e8m0fnu)")
        if self.tensor_scale and rule is not ScaleRule.RATIO:
            raise ValueError("tensor_scale=True (NVFP4's per-tensor level) needs "
                             "scale_rule='ratio'")
        if rule is ScaleRule.EVEN and not isinstance(elem, FloatFormat):
            raise ValueError("scale_rule='even' rounds amax to the element's mantissa width; "
                             "it needs a float element format")
        object.__setattr__(self, "element", elem)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "scale_rule", rule)
        object.__setattr__(self, "block_size", bs)
        object.__setattr__(self, "axis", int(self.axis))
        object.__setattr__(self, "tensor_scale", bool(self.tensor_scale))
        if self.name is None:
            b = "axis" if bs is None else str(bs)
            object.__setattr__(self, "name", f"block_{elem.name}_{scale.name}_{b}_{rule.value}")
        elif not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty string, got {self.name!r}")

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------- derived
    @property
    def is_fixed(self) -> bool:
        """Whether the elements are integers (FixedFormat), as MXINT8 and BFP."""
        return isinstance(self.element, FixedFormat)

    @property
    def max_elem(self) -> float:
        """Largest element value."""
        e = self.element
        return e.max if self.is_fixed else e.max_finite

    @property
    def emax_elem(self) -> int:
        """Exponent of the largest power of two <= :attr:`max_elem` (OCP MX ``emax_elem``)."""
        e = self.element
        if self.is_fixed:
            return e.integer.max.bit_length() - 1 - e.frac_bits
        return e.emax

    @property
    def scale_kmin(self) -> int:
        """Smallest scale exponent (power-of-two scales): -127 for E8M0."""
        return self.scale.emin

    @property
    def scale_kmax(self) -> int:
        """Largest scale exponent (power-of-two scales): 127 for E8M0."""
        return self.scale.emax

    def blocks_along(self, n: int) -> int:
        """Number of blocks of an axis of length n (``ceil(n / block_size)``)."""
        if self.block_size is None:
            return 1 if n > 0 else 0
        return -(-int(n) // self.block_size)

    def element_values(self, codes) -> np.ndarray:
        """Exact float64 values of element bit patterns."""
        return self.element.decode(np.asarray(codes))

    def element_storage(self) -> np.dtype:
        return self.element.storage_dtype


def bfp(bits: int, block_size: int | None = None, *, axis: int = -1,
        scale="float8_e8m0fnu", name: str | None = None) -> BlockFormat:
    """Shared-exponent block floating point with `bits`-bit sign-magnitude integer mantissas.

    The element is ``FixedFormat(bits, bits - 2, narrow=True)``: magnitudes up to
    ``2**(bits-1) - 1`` units of ``2**-(bits-2)``, so with the floor rule a block of
    largest magnitude ``amax`` has quantum ``2**(floor(log2 amax) - (bits - 2))``, the
    rule of QPyTorch 0.2.0 ``block_quantize(x, wl=bits)`` (``quant_cpu.cpp``).  ``bfp(8,
    32)`` equals MXINT8.

    Parameters
    ----------
    bits : int
        Word length including the sign, 2..53.
    block_size : int or None
        None: each whole slice along the axis is one block.

    Examples
    --------
    >>> bfp(4).element.decode([7, 9]).tolist()   # units of 2**-2; 0b1001 is -7
    [1.75, -1.75]
    """
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be an integer, got {bits!r}")
    if not 2 <= int(bits) <= 53:
        raise ValueError(f"bits={int(bits)} is out of range: it must be in [2, 53]")
    bits = int(bits)
    if name is None:
        name = f"bfp{bits}" + ("" if block_size is None else f"_b{block_size}")
    return BlockFormat(FixedFormat(bits, bits - 2, narrow=True), block_size, scale, axis,
                       ScaleRule.FLOOR, name=name)


_E8M0 = "float8_e8m0fnu"
mxfp8_e4m3 = BlockFormat("float8_e4m3fn", 32, _E8M0, name="mxfp8_e4m3")
mxfp8_e5m2 = BlockFormat("float8_e5m2", 32, _E8M0, name="mxfp8_e5m2")
mxfp6_e2m3 = BlockFormat("float6_e2m3fn", 32, _E8M0, name="mxfp6_e2m3")
mxfp6_e3m2 = BlockFormat("float6_e3m2fn", 32, _E8M0, name="mxfp6_e3m2")
mxfp4 = BlockFormat("float4_e2m1fn", 32, _E8M0, name="mxfp4")
mxint8 = BlockFormat(FixedFormat(8, 6, narrow=True), 32, _E8M0, name="mxint8")
nvfp4 = BlockFormat("float4_e2m1fn", 16, "float8_e4m3fn", scale_rule=ScaleRule.RATIO,
                    tensor_scale=True, name="nvfp4")

#: the named block formats
BLOCK_FORMATS: dict[str, BlockFormat] = {f.name: f for f in (
    mxfp8_e4m3, mxfp8_e5m2, mxfp6_e2m3, mxfp6_e3m2, mxfp4, mxint8, nvfp4)}


def get_block_format(fmt) -> BlockFormat:
    """A BlockFormat by name (``"mxfp4"``, ``"nvfp4"``, ``"bfp8"``); a BlockFormat as is.

    >>> get_block_format("mxfp6_e3m2").element.name
    'float6_e3m2fn'
    >>> get_block_format("bfp6").block_size is None
    True
    """
    if isinstance(fmt, BlockFormat):
        return fmt
    if not isinstance(fmt, str):
        raise TypeError(f"a block format must be a BlockFormat or a name, got {fmt!r}")
    key = fmt.strip().lower()
    if key in BLOCK_FORMATS:
        return BLOCK_FORMATS[key]
    if key.startswith("bfp") and key[3:].isdigit():
        return bfp(int(key[3:]))
    close = difflib.get_close_matches(key, list(BLOCK_FORMATS), n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown block format {fmt!r}{hint} (known: "
                     f"{', '.join(BLOCK_FORMATS)}, or 'bfp<bits>')")
