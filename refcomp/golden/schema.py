"""The golden-case schema: what one case holds, independent of how it is stored.

A case is one operation on arrays of bit patterns::

    Case(name="cast/float64->bfloat16/toward_zero/edges", op="cast",
         params={"fmt": "bfloat16", "rounding": "toward_zero", "profile": None, ...},
         inputs={"x": Operand("float64", uint64 array)},
         outputs={"y": Operand("bfloat16", uint16 array), "flags": Operand("flags", uint8)},
         tolerance=None)                        # None: bit-exact by nature

Every array is an unsigned integer array of bit patterns.  ``Operand.kind`` names how to read
the bits: a float format name that :func:`refcomp.formats.get` resolves (``"float32"``,
``"float8_e4m3fn"``, ``"e5m7"``), an integer type ``"int8"`` ... ``"uint64"`` (two's
complement in the unsigned word of that width) or any :class:`~refcomp.formats.IntFormat`
name (``"int4"``, ``"uint2"``, ``"int8_narrow"``: the low bits of the smallest unsigned
word that holds them, one element per word; packed storage is the ``pack`` op), ``"bool"`` (uint8 0/1) or ``"flags"``
(uint8 of :class:`refcomp.Flag` bits).  The on-disk layout is in :mod:`refcomp.golden.store`
and ``golden/README.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..formats import catalog
from ..formats.intformat import int_format

__all__ = ["SCHEMA_VERSION", "Operand", "Tolerance", "Case", "GoldenError", "kind_dtype",
           "decode_operand", "INT_KINDS", "int_kind", "is_int_kind"]

SCHEMA_VERSION = 1

INT_KINDS = {f"{s}int{b}": (b, s == "") for s in ("", "u") for b in (8, 16, 32, 64)}
_UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}
_INT = re.compile(r"^u?int\d+(_narrow)?$")
_NAME = re.compile(r"^[A-Za-z0-9_.+\-/>=]+$")


class GoldenError(ValueError):
    """A golden file or case is malformed, edited, truncated or foreign."""


def int_kind(kind: str):
    """The IntFormat of an integer kind (``int4``, ``uint8``, ``int8_narrow``, ...) or None."""
    if not isinstance(kind, str) or not _INT.match(kind):
        return None
    try:
        return int_format(kind)
    except (ValueError, TypeError):
        return None


def is_int_kind(kind: str) -> bool:
    return int_kind(kind) is not None


def kind_dtype(kind: str) -> np.dtype:
    """The unsigned storage dtype of an operand kind (ValueError for an unknown kind)."""
    if kind in ("flags", "bool"):
        return np.dtype(np.uint8)
    if kind in INT_KINDS:
        return np.dtype(_UINT[INT_KINDS[kind][0]])
    if int_kind(kind) is not None:
        return int_kind(kind).storage_dtype
    try:
        return catalog.get(kind).storage_dtype
    except (ValueError, TypeError) as e:
        raise GoldenError(f"unknown operand kind {kind!r}: not a format name, an integer "
                          f"type (int8..uint64), 'bool' or 'flags'") from e


def decode_operand(kind: str, bits: np.ndarray) -> np.ndarray:
    """Read bit patterns as numbers: float64 values for formats, int64/uint64 for integers."""
    if kind in ("flags", "bool"):
        return bits.astype(np.int64)
    if kind in INT_KINDS:
        width, signed = INT_KINDS[kind]
        if not signed:
            return bits.astype(np.uint64)
        return bits.view({8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}[width]) \
            .astype(np.int64)
    if int_kind(kind) is not None:
        return int_kind(kind).decode(bits)
    return catalog.get(kind).decode(bits)


@dataclass(frozen=True)
class Operand:
    """An array of bit patterns and how to read them (see the module docstring)."""

    kind: str
    bits: np.ndarray

    def __post_init__(self):
        dt = kind_dtype(self.kind)
        if not isinstance(self.bits, np.ndarray) or self.bits.dtype != dt:
            got = getattr(self.bits, "dtype", type(self.bits).__name__)
            raise GoldenError(f"operand of kind {self.kind!r} must be a {dt} array of bit "
                              f"patterns, got {got}")

    def values(self) -> np.ndarray:
        return decode_operand(self.kind, self.bits)


@dataclass(frozen=True)
class Tolerance:
    """How far a backend may be from the golden output when it cannot be bit-exact.

    Attributes
    ----------
    rule : str
        ``"ulp"``: at most `max_ulp` units in the last place of the output format, for an
        elementwise op whose backend documents that accuracy.  ``"sum_any_order"``: the
        rigorous bound of a sum evaluated in any order with accumulators of precision `p`
        (see :func:`refcomp.golden.tolerance.bound`).  ``"sum_terms"``: outputs that are
        float sums, in an unspecified order, of terms the op's compute module gives
        (:func:`refcomp.golden.compute_qtorch.sum_terms`): the same any-order bound around
        the exact sum of those terms.  ``"derived"``: an elementwise bound
        ``|backend - golden| <= B`` derived op by op for the evaluation order `source`
        names (:func:`refcomp.golden.compute_distill.derived_bound` gives ``B``).
    max_ulp : float   for ``"ulp"``
    accumulator : str format name of the accumulator the bound assumes (at least this
                      precision), for ``"sum_any_order"``
    source : str      where the bound comes from (documentation, a theorem)
    outputs : tuple of str or None
                      the outputs the bound applies to (None: ``y``); the others are
                      compared bit for bit
    """

    rule: str
    source: str
    max_ulp: float | None = None
    accumulator: str | None = None
    outputs: tuple | None = None

    RULES = ("ulp", "sum_any_order", "sum_terms", "derived")

    def __post_init__(self):
        if self.rule not in self.RULES:
            raise GoldenError(f"unknown tolerance rule {self.rule!r} (known: "
                              f"{', '.join(self.RULES)})")
        if self.rule == "ulp" and not (isinstance(self.max_ulp, (int, float))
                                       and self.max_ulp >= 0):
            raise GoldenError(f"tolerance rule 'ulp' needs max_ulp >= 0, got {self.max_ulp!r}")
        if self.rule in ("sum_any_order", "sum_terms"):
            kind_dtype(str(self.accumulator))
        if self.outputs is not None:
            if isinstance(self.outputs, str) or not all(isinstance(o, str)
                                                        for o in self.outputs):
                raise GoldenError(f"tolerance outputs must be a list of output names, got "
                                  f"{self.outputs!r}")
            object.__setattr__(self, "outputs", tuple(self.outputs))
        if not self.source:
            raise GoldenError("a tolerance must name its source")

    def to_json(self) -> dict:
        return {k: v for k, v in (("rule", self.rule), ("source", self.source),
                                  ("max_ulp", self.max_ulp),
                                  ("accumulator", self.accumulator),
                                  ("outputs", None if self.outputs is None
                                   else list(self.outputs))) if v is not None}

    @classmethod
    def from_json(cls, d) -> "Tolerance":
        if not isinstance(d, dict) or set(d) - {"rule", "source", "max_ulp", "accumulator",
                                                "outputs"}:
            raise GoldenError(f"malformed tolerance {d!r}")
        try:
            return cls(**d)
        except TypeError as e:
            raise GoldenError(f"malformed tolerance {d!r}: {e}") from e

    def applies(self, output: str) -> bool:
        """Whether the bound covers `output` (the others must be bit-exact)."""
        return output == "y" if self.outputs is None else output in self.outputs


@dataclass(frozen=True)
class Case:
    """One golden case.

    Attributes
    ----------
    name : str        unique within its suite; letters, digits and ``_.+-/>=``
    op : str          an op of :data:`refcomp.golden.compute.OPS`
    params : dict     JSON-able keyword arguments of the op (format, rounding, profile,
                      overflow, subnormals, tininess, seed, ...)
    inputs, outputs : dict of str -> Operand
    tolerance : Tolerance or None (None: the op is bit-exact by nature)
    nan_bits : bool   compare NaN outputs bit for bit (False: by NaN-ness, where the
                      convention leaves NaN payloads unspecified)
    """

    name: str
    op: str
    params: dict
    inputs: dict
    outputs: dict
    tolerance: Tolerance | None = None
    nan_bits: bool = True
    notes: str = field(default="")

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise GoldenError(f"bad case name {self.name!r}: use letters, digits and _.+-/>=")
        for what, ops in (("input", self.inputs), ("output", self.outputs)):
            for k, v in ops.items():
                if not isinstance(v, Operand) or not re.match(r"^[a-z_][a-z0-9_]*$", k):
                    raise GoldenError(f"case {self.name}: bad {what} {k!r}")

    @property
    def profile(self):
        return self.params.get("profile")
