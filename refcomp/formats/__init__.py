"""WHAT a number is: formats, the catalog of named formats, encode/decode of bit patterns.

Catalog formats are also attributes of this module: ``refcomp.formats.float16``.
"""

from .block import (BLOCK_FORMATS, BlockFormat, ScaleRule, bfp, get_block_format, mxfp4,
                    mxfp6_e2m3, mxfp6_e3m2, mxfp8_e4m3, mxfp8_e5m2, mxint8, nvfp4)
from .catalog import ALIASES, CATALOG, get, names
from .codec import decode, encode
from .floatformat import FloatFormat, Specials
from .intformat import INT_NAMES, FixedFormat, IntFormat, int_format

__all__ = ["FloatFormat", "Specials", "IntFormat", "FixedFormat", "int_format", "INT_NAMES",
           "BlockFormat", "ScaleRule", "bfp", "BLOCK_FORMATS", "get_block_format", "mxfp8_e4m3",
           "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "mxint8", "nvfp4", "CATALOG", "ALIASES", "get", "names", "encode",
           "decode", *CATALOG]


def __getattr__(name: str):
    try:
        return CATALOG[name]
    except KeyError:
        import difflib
        close = difflib.get_close_matches(name, list(CATALOG), n=2, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise AttributeError(f"module 'refcomp.formats' has no attribute {name!r}{hint}") \
            from None


def __dir__():
    return sorted(set(globals()) | set(CATALOG))
