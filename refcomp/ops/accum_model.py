"""Accumulation models: what a dot product / GEMM does with each product and partial sum.

An :class:`AccumulationModel` states every numeric choice of a reduction (STYLE rule 5):
the input formats; whether products are exact or rounded (format, rounding); the
accumulator format and rounding (stochastic included); the order of the additions; the
outer accumulator of blocked / split-K orders; the output rounding; for integer GEMMs, the
overflow rule and the AVX2 ``vpmaddubsw`` int16 pair saturation; and, for block-scaled
inputs (MX, NVFP4), how the scales enter.  The semantics, for one output element with
products ``p_1 .. p_K`` (``p_k = a_k * b_k``) and an initial value ``c`` (0 by default):

``sequential``
    ``s = c``; for k in 1..K: ``s = rnd_acc(s + p_k)`` -- one rounding per step when
    products are exact (a fused multiply-add), two (``rnd_acc(s + rnd_prod(p_k))``) when
    ``product`` names a format.
``pairwise``
    the K terms (exact or rounded products) are added in a balanced binary tree built
    bottom-up: level by level, adjacent pairs ``(t_1 + t_2), (t_3 + t_4), ...`` each
    rounded to the accumulator, an odd last term carried up unchanged; then
    ``rnd_acc(c + tree)`` (with ``c = +0`` by default, so a single exact product is
    rounded too).
``blocked`` (``block = L``) and ``split_k`` (``splits = S``, ``L = ceil(K / S)``)
    K is cut into consecutive chunks of L; each chunk is accumulated ``sequential``ly from
    +0 in the accumulator format; the chunk sums are added in order into an outer
    accumulator that starts at ``c``: ``o = rnd_outer(o + chunk)`` (the "promotion"
    of an inner fp8/fp16/fp32 tensor-core accumulator into an outer fp32 one, or the
    reduction of split-K partial GEMMs in order).
block-scaled inputs (``scale_block = L``)
    as ``blocked`` with chunks of the scale block, each chunk sum multiplied by the two
    block scales inside the outer addition, with one rounding:
    ``o = rnd_outer(o + chunk * sa * sb)``.  The OCP MX 1.0 specification (section 6.2,
    "Dot") defines the block-scaled dot product as ``sum_blocks (X_a X_b) sum_i P_i Q_i``
    and leaves the internal precision to the implementation; this fixes one.

``blas``
    the GEMM of the BLAS that NumPy links (``sgemm`` for a float32 accumulator, ``dgemm``
    for float64), then ``rnd_acc(gemm + c)``.  The order of the additions, the blocking
    and whether products are fused are the library's and the CPU's: results are NOT
    reproducible across BLAS builds, CPUs or thread counts, only bounded (the any-order
    bound of :func:`refcomp.bounds.deterministic`, with K + 1 roundings per term).  It is
    the speed path of the NN engine's fp32 / bf16 policies -- what torch's CPU matmul
    (oneDNN / MKL, also of unspecified order) is compared against.  Allowed for float32 /
    float64 accumulators rounding to nearest-even, without product format or outer
    accumulator, with inputs whose values the accumulator holds exactly.

Finally the result is rounded to ``output`` (when it differs from the accumulator), as a
bfloat16 GEMM that accumulates in float32 and stores bfloat16 does.

Integer GEMMs (``inputs`` integer formats): products are exact; ``acc`` is an integer
format whose ``int_overflow`` rule is applied after each addition (wrap is order-free;
saturate follows the sequential order).  ``int16_pairs`` models x86 AVX2 without VNNI
(``vpmaddubsw`` then ``vpmaddwd`` with ones then ``vpaddd``, as FBGEMM's u8 x s8 kernels
use): adjacent products ``p_{2t} + p_{2t+1}`` are summed and saturated to int16 before
they reach the int32 accumulator (Intel SDM vol. 2, PMADDUBSW: "saturate to signed word").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..formats import catalog
from ..formats.floatformat import FloatFormat
from ..formats.intformat import IntFormat, int_format
from ..rounding.modes import (IntOverflow, Rounding, _Choice, _parse, as_int_overflow,
                              as_rounding)

__all__ = ["Order", "AccumulationModel", "ACCUMULATION_MODELS", "accumulation_model"]


class Order(_Choice):
    """Order of the additions of a reduction (see :mod:`refcomp.ops.accum_model`)."""

    SEQUENTIAL = "sequential"
    PAIRWISE = "pairwise"
    BLOCKED = "blocked"
    SPLIT_K = "split_k"
    BLAS = "blas"


def _as_format(value, what: str, allow_int: bool = True):
    """A FloatFormat or IntFormat from a name or a format object (API edge)."""
    if isinstance(value, (FloatFormat, IntFormat)):
        if isinstance(value, IntFormat) and not allow_int:
            raise ValueError(f"{what} must be a floating-point format, got {value.name!r}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a format or a format name, got {value!r}")
    if allow_int and value.lstrip("u").startswith("int"):
        return int_format(value)
    return catalog.get(value)


@dataclass(frozen=True)
class AccumulationModel:
    """Every numeric choice of a dot product / GEMM (semantics: module docstring).

    Attributes
    ----------
    name : str
    inputs : format        format of A's (and, unless `inputs_b` is given, B's) values
    acc : format           accumulator format (float, or integer for integer GEMMs)
    acc_rounding : Rounding
    product : format or None   None: products exact (fused multiply-add); else each
                           product is rounded to this format first (separate rounding)
    product_rounding : Rounding
    order : Order          sequential, pairwise, blocked or split_k
    block : int            blocked: chunk length along K
    splits : int           split_k: number of chunks
    outer : format or None blocked / split_k / block-scaled: outer accumulator (None: acc)
    outer_rounding : Rounding
    output : format or None  final rounding of the result (None: the accumulator's)
    output_rounding : Rounding
    inputs_b : format or None  B's format when it differs from A's
    int_overflow : IntOverflow  integer accumulators: wrap or saturate
    int16_pairs : bool     AVX2 u8 x s8 pair saturation to int16 (integer GEMMs)
    scale_block : int      block-scaled inputs: elements per scale along K (0: none)
    scale_format : format or None  the scales' format (E8M0 for MX, E4M3 for NVFP4)
    source : str           the backend / document this model mirrors
    """

    name: str
    inputs: object
    acc: object
    acc_rounding: Rounding = Rounding.NEAREST_EVEN
    product: object = None
    product_rounding: Rounding = Rounding.NEAREST_EVEN
    order: Order = Order.SEQUENTIAL
    block: int = 0
    splits: int = 1
    outer: object = None
    outer_rounding: Rounding = Rounding.NEAREST_EVEN
    output: object = None
    output_rounding: Rounding = Rounding.NEAREST_EVEN
    inputs_b: object = None
    int_overflow: IntOverflow = IntOverflow.WRAP
    int16_pairs: bool = False
    scale_block: int = 0
    scale_format: object = None
    source: str = ""

    def __post_init__(self):
        put = object.__setattr__
        put(self, "inputs", _as_format(self.inputs, "inputs"))
        put(self, "inputs_b", self.inputs if self.inputs_b is None
            else _as_format(self.inputs_b, "inputs_b"))
        put(self, "acc", _as_format(self.acc, "acc"))
        for f in ("acc_rounding", "product_rounding", "outer_rounding", "output_rounding"):
            put(self, f, as_rounding(getattr(self, f)))
        put(self, "order", _parse(Order, self.order, "accumulation order"))
        put(self, "int_overflow", as_int_overflow(self.int_overflow))
        for f in ("product", "outer", "output", "scale_format"):
            v = getattr(self, f)
            if v is not None:
                put(self, f, _as_format(v, f, allow_int=False))
        for f in ("block", "splits", "scale_block"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{f}={v!r} must be a non-negative integer")
        self._check()

    def _check(self):
        ints = [isinstance(f, IntFormat) for f in (self.inputs, self.inputs_b, self.acc)]
        if any(ints) and not all(ints):
            raise ValueError(f"model {self.name!r}: integer GEMMs need integer inputs and an "
                             f"integer accumulator (inputs {self.inputs.name}, "
                             f"{self.inputs_b.name}, acc {self.acc.name})")
        if self.integer:
            if self.order is not Order.SEQUENTIAL or self.product is not None \
                    or self.output is not None or self.scale_block:
                raise ValueError(f"model {self.name!r}: integer GEMMs are sequential with "
                                 "exact products, no output rounding and no block scales")
            if self.int16_pairs and (self.inputs != IntFormat(8, signed=False)
                                     or self.inputs_b != IntFormat(8)
                                     or self.acc != IntFormat(32)):
                raise ValueError(f"model {self.name!r}: int16_pairs models AVX2 vpmaddubsw, "
                                 "which takes uint8 A, int8 B and an int32 accumulator")
            return
        if self.int16_pairs:
            raise ValueError(f"model {self.name!r}: int16_pairs applies to integer GEMMs")
        if self.order is Order.BLAS:
            self._check_blas()
        if self.order is Order.BLOCKED and self.block < 1:
            raise ValueError(f"model {self.name!r}: order 'blocked' needs block >= 1")
        if self.order is Order.SPLIT_K and self.splits < 1:
            raise ValueError(f"model {self.name!r}: order 'split_k' needs splits >= 1")
        if self.order not in (Order.BLOCKED, Order.SPLIT_K) and not self.scale_block \
                and self.outer is not None:
            raise ValueError(f"model {self.name!r}: an outer accumulator needs order "
                             "'blocked' or 'split_k' or block-scaled inputs")
        if self.scale_block:
            if self.order is not Order.SEQUENTIAL:
                raise ValueError(f"model {self.name!r}: block-scaled models accumulate each "
                                 "scale block sequentially (order 'sequential')")
            if self.scale_format is None:
                raise ValueError(f"model {self.name!r}: scale_block needs a scale_format")
        elif self.scale_format is not None:
            raise ValueError(f"model {self.name!r}: scale_format needs scale_block >= 1")
        for f in ("acc_rounding", "product_rounding", "outer_rounding", "output_rounding"):
            if getattr(self, f) is Rounding.STOCHASTIC and f != "acc_rounding" \
                    and f != "outer_rounding":
                raise ValueError(f"model {self.name!r}: stochastic {f} is not modelled "
                                 "(stochastic rounding applies to the accumulators)")

    def _check_blas(self):
        acc = self.acc
        ok = acc.name in ("float32", "float64") and self.acc_rounding is Rounding.NEAREST_EVEN \
            and self.product is None and self.outer is None and not self.scale_block
        for f in (self.inputs, self.inputs_b):
            ok = ok and f.precision <= acc.precision and f.emax <= acc.emax \
                and f.emin - f.man_bits >= acc.emin - acc.man_bits
        if not ok:
            raise ValueError(f"model {self.name!r}: order 'blas' needs a float32 / float64 "
                             "accumulator rounding to nearest-even that holds the inputs "
                             "exactly, no product format, no outer accumulator, no block "
                             f"scales (got {self.describe()})")

    # ------------------------------------------------------------------ derived views
    @property
    def integer(self) -> bool:
        return isinstance(self.acc, IntFormat)

    @property
    def outer_format(self):
        return self.acc if self.outer is None else self.outer

    @property
    def result_format(self):
        """The format of the accumulated result before the output rounding: the outer
        accumulator's for blocked / split-K / block-scaled models, else the accumulator's."""
        return self.outer_format if self.chunked else self.acc

    @property
    def output_format(self):
        return self.result_format if self.output is None else self.output

    @property
    def stochastic(self) -> bool:
        return Rounding.STOCHASTIC in (self.acc_rounding, self.outer_rounding)

    @property
    def chunked(self) -> bool:
        """Whether partial sums go through an outer accumulator (blocked, split-K, scaled)."""
        return self.order in (Order.BLOCKED, Order.SPLIT_K) or bool(self.scale_block)

    def chunk(self, K: int) -> int:
        """Chunk length along K of the blocked / split-K / block-scaled orders (K if none)."""
        if self.scale_block:
            return self.scale_block
        if self.order is Order.BLOCKED:
            return self.block
        if self.order is Order.SPLIT_K:
            return max(1, math.ceil(K / self.splits))
        return max(K, 1)

    def describe(self) -> str:
        """One line stating the model (for reports)."""
        if self.integer:
            s = (f"{self.inputs.name} x {self.inputs_b.name} -> {self.acc.name} "
                 f"({self.int_overflow.value})")
            return s + (", AVX2 int16 pair saturation" if self.int16_pairs else "")
        if self.order is Order.BLAS:
            s = (f"{self.inputs.name} x {self.inputs_b.name}, NumPy BLAS GEMM in "
                 f"{self.acc.name} (order and fusion unspecified)")
            return s + (f", output {self.output.name} ({self.output_rounding.value})"
                        if self.output is not None else "")
        prod = "exact products (FMA)" if self.product is None else \
            f"products rounded to {self.product.name} ({self.product_rounding.value})"
        s = (f"{self.inputs.name} x {self.inputs_b.name}, {prod}, {self.order.value} "
             f"accumulation in {self.acc.name} ({self.acc_rounding.value})")
        if self.order is Order.BLOCKED:
            s += f", blocks of {self.block}"
        if self.order is Order.SPLIT_K:
            s += f", {self.splits} splits"
        if self.scale_block:
            s += f", {self.scale_format.name} scales per {self.scale_block}"
        if self.order in (Order.BLOCKED, Order.SPLIT_K) or self.scale_block:
            s += f", outer {self.outer_format.name} ({self.outer_rounding.value})"
        if self.output is not None:
            s += f", output {self.output.name} ({self.output_rounding.value})"
        return s


def _presets():
    cpu = ("x86-64 CPU GEMM kernels (oneDNN/MKL/OpenBLAS inner loops: one FMA per product "
           "into a float32 register); the order of a real BLAS is blocked and unspecified, "
           "so cross-checks compare within the derived bound")
    fb = ("FBGEMM u8 x s8 -> s32 kernels (fbgemm/src/GenerateKernelU8S8S32ACC32.cc: "
          "vpmaddubsw + vpmaddwd + vpaddd on AVX2; vpdpbusd on AVX512-VNNI)")
    blas = ("NumPy's BLAS (OpenBLAS sgemm / dgemm); order unspecified, bounded, not "
            "reproducible across machines -- the NN engine's speed path")
    rows = [
        AccumulationModel("fp32-sequential-fma", "float32", "float32", source=cpu),
        AccumulationModel("fp64-sequential-fma", "float64", "float64", source=cpu),
        AccumulationModel("fp32-sequential-separate", "float32", "float32",
                          product="float32", source="C loop s += a[k] * b[k] without "
                          "contraction (-ffp-contract=off)"),
        AccumulationModel("fp32-pairwise", "float32", "float32", order="pairwise",
                          source="a balanced pairwise tree (NumPy's add.reduce uses a "
                          "blocked variant of it)"),
        AccumulationModel("bf16-fp32acc", "bfloat16", "float32", output="bfloat16",
                          source="torch 2.13 CPU bf16 matmul/conv2d (float32 accumulation, "
                          "one rounding to bf16): measured bit-exact with this model on every "
                          "element of the cross-check, golden/reports/gemm-torch-cpu.md "
                          "(x86-64 AVX-512; other CPUs may take other kernels)"),
        AccumulationModel("fp16-fp32acc", "float16", "float32", output="float16",
                          source="torch 2.13 CPU fp16 matmul/conv2d: float32 accumulation, "
                          "fp16 output; measured bit-exact on 99.6-100% of the elements, "
                          "always within the derived bound (golden/reports/gemm-torch-cpu.md)"),
        AccumulationModel("bf16-fp32acc-fp32out", "bfloat16", "float32", source=cpu),
        AccumulationModel("fp16-fp16acc", "float16", "float16",
                          source="half-precision accumulation (not native on CPUs; GPU "
                          "HGEMM with fp16 compute type)"),
        AccumulationModel("bf16-bf16acc", "bfloat16", "bfloat16",
                          source="bfloat16 accumulation (worst case of a bf16-only datapath)"),
        AccumulationModel("fp8-fp16acc-fp32outer-128", "float8_e4m3fn", "float16",
                          order="blocked", block=128, outer="float32",
                          source="two-level accumulation: limited-precision inner sums "
                          "promoted to fp32 every 128 products (DeepSeek-V3 report, sec. "
                          "3.3.2, promotion interval N_C = 128)"),
        AccumulationModel("fp32-blas", "float32", "float32", order="blas", source=blas),
        AccumulationModel("fp64-blas", "float64", "float64", order="blas", source=blas),
        AccumulationModel("bf16-fp32acc-blas", "bfloat16", "float32", order="blas",
                          output="bfloat16", source=blas),
        AccumulationModel("fp16-fp32acc-blas", "float16", "float32", order="blas",
                          output="float16", source=blas),
        AccumulationModel("e4m3-fp32acc-blas", "float8_e4m3fn", "float32", order="blas",
                          source=blas),
        AccumulationModel("e5m2xe4m3-fp32acc-blas", "float8_e5m2", "float32", order="blas",
                          inputs_b="float8_e4m3fn", source=blas),
        AccumulationModel("int8-int32-wrap", "int8", "int32", source=fb),
        AccumulationModel("int8-int32-saturate", "int8", "int32", int_overflow="saturate",
                          source="saturating int32 accumulation (e.g. ARM SQADD-based kernels)"),
        AccumulationModel("u8s8-int32-wrap", "uint8", "int32", inputs_b="int8", source=fb),
        AccumulationModel("u8s8-int32-avx2", "uint8", "int32", inputs_b="int8",
                          int16_pairs=True, source=fb),
        AccumulationModel("mxfp8-e4m3-fp32", "float8_e4m3fn", "float32", scale_block=32,
                          scale_format="float8_e8m0fnu",
                          source="OCP MX 1.0 sec. 6.2 Dot with exact products, fp32 "
                          "per-block and outer accumulation"),
        AccumulationModel("nvfp4-fp32", "float4_e2m1fn", "float32", scale_block=16,
                          scale_format="float8_e4m3fn",
                          source="NVFP4 (E2M1 elements, E4M3 scale per 16) with fp32 "
                          "per-block and outer accumulation"),
    ]
    return {m.name: m for m in rows}


#: preset accumulation models by name
ACCUMULATION_MODELS = _presets()


def accumulation_model(model) -> AccumulationModel:
    """An AccumulationModel from a preset name or the model itself."""
    if isinstance(model, AccumulationModel):
        return model
    if isinstance(model, str) and model in ACCUMULATION_MODELS:
        return ACCUMULATION_MODELS[model]
    raise ValueError(f"unknown accumulation model {model!r} (presets: "
                     f"{', '.join(ACCUMULATION_MODELS)})")
