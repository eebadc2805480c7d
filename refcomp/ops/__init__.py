"""Correctly rounded arithmetic, conversions, comparisons and neighbours, in any format.

Every operation takes any :class:`~refcomp.FloatFormat` (float64 included) and any
rounding mode, and returns the exact real result rounded once into the format, with IEEE
754-2019 flags on request (``flags=True``).  Special values follow x86 SSE (Berkeley
SoftFloat 3e, 8086-SSE specialisation) unless a profile says otherwise.

>>> import refcomp as rc
>>> rc.ops.lt([1.0, float("nan")], 2.0, flags=True)
(array([ True, False]), array([ 0, 16], dtype=uint8))
"""

from .affine import (AFFINE_CONVENTIONS, AffineConvention, choose_qparams_affine,
                     dequantize_affine, fake_quantize_affine, quantize_affine)
from .arith import add, div, fma, mul, sqrt, sub
from .block import BlockQuantized, Convention, dequantize_block, quantize_block
from .compare import eq, ge, gt, le, lt, ne, unordered
from .convert import round_to_integral, to_int
from .integer import (fixed_add, fixed_convert, fixed_div, fixed_mul, fixed_sub, fixed_value,
                      quantize_fixed, quantize_int)
from .neighbors import next_down, next_up, ulp
from .packing import pack, pack_int, unpack, unpack_int
from .requant import (RequantRounding, multiply_by_quantized_multiplier, quantize_multiplier,
                      rounding_divide_by_pot, saturating_rounding_doubling_high_mul)
from .tensorcore import TENSOR_CORES, TensorCoreModel, tc_matmul, tc_output_bits
from .accum_model import ACCUMULATION_MODELS, AccumulationModel, Order, accumulation_model
from .accum import dot, matmul
from .conv import conv2d, im2col

__all__ = ["add", "sub", "mul", "div", "sqrt", "fma", "round_to_integral", "to_int", "eq",
           "ne", "lt", "le", "gt", "ge", "unordered", "next_up", "next_down", "ulp",
           # integers and fixed point
           "quantize_int", "quantize_fixed", "fixed_convert", "fixed_add", "fixed_sub",
           "fixed_mul", "fixed_div", "fixed_value", "pack", "unpack", "pack_int", "unpack_int",
           # affine quantization and integer requantization
           "AffineConvention", "AFFINE_CONVENTIONS", "quantize_affine", "dequantize_affine",
           "fake_quantize_affine", "choose_qparams_affine", "RequantRounding",
           "saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
           "multiply_by_quantized_multiplier", "quantize_multiplier",
           # block formats (MX, NVFP4, BFP)
           "quantize_block", "dequantize_block", "BlockQuantized", "Convention",
           # dot / GEMM / conv under accumulation models, tensor cores
           "AccumulationModel", "ACCUMULATION_MODELS", "Order", "accumulation_model", "dot",
           "matmul", "conv2d", "im2col", "TensorCoreModel", "TENSOR_CORES", "tc_matmul",
           "tc_output_bits"]
