"""The rounding modes, the overflow/subnormal options, backend profiles and THE one
rounding core (:mod:`refcomp.rounding.core`), with `cast` / `cast_bits` on top.

STYLE.md names a single ``rounding.py``; the core, its input unpacking, the profiles and
the stochastic slow path would not fit one 500-line module, so they are a package whose
public surface is exactly what ``rounding.py`` would have exported.
"""

from .cast import cast, cast_bits
from .modes import Flag, IntOverflow, Overflow, Rounding, Subnormals, Tininess, flag_names
from .profiles import PROFILES, Profile, get_profile

__all__ = ["cast", "cast_bits", "Rounding", "Overflow", "IntOverflow", "Subnormals", "Tininess", "Flag",
           "flag_names", "PROFILES", "Profile", "get_profile"]
