"""refcomp: a bit-exact reference emulator of number formats and of the compression
algorithms built on them.

>>> import refcomp as rc
>>> fmt = rc.formats.get("float16")
>>> float(rc.cast(1.0 / 3.0, fmt))
0.333251953125
"""

from . import formats, ops, testing
from ._version import __version__
from .formats import FloatFormat
from .rounding import (PROFILES, Flag, Overflow, Profile, Rounding, Subnormals, Tininess,
                       cast, cast_bits, flag_names, get_profile)

__all__ = ["__version__", "formats", "ops", "testing", "FloatFormat", "cast", "cast_bits", "Rounding",
           "Overflow", "Subnormals", "Tininess", "Flag", "flag_names", "PROFILES", "Profile",
           "get_profile"]

