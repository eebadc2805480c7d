"""refcomp: a bit-exact reference emulator of number formats and of the compression
algorithms built on them.

>>> import refcomp as rc
>>> fmt = rc.formats.get("float16")
>>> float(rc.cast(1.0 / 3.0, fmt))
0.333251953125
"""

from . import amp, bounds, distill, formats, nn, ops, prune, quant, testing
from ._version import __version__
from .formats import BlockFormat, FixedFormat, FloatFormat, IntFormat
from .ops import dequantize_block, quantize_block
from .rounding import (PROFILES, Flag, IntOverflow, Overflow, Profile, Rounding, Subnormals,
                       Tininess, cast, cast_bits, flag_names, get_profile)

__all__ = ["__version__", "amp", "bounds", "distill", "formats", "nn", "ops", "prune", "quant", "testing", "FloatFormat", "IntFormat", "FixedFormat",
           "BlockFormat", "quantize_block", "dequantize_block", "IntOverflow", "cast", "cast_bits", "Rounding", "Overflow", "Subnormals", "Tininess",
           "Flag", "flag_names", "PROFILES", "Profile", "get_profile"]

