"""WHAT a number is: formats, the catalog of named formats, encode/decode of bit patterns.

Catalog formats are also attributes of this module: ``refcomp.formats.float16``.
"""

from .catalog import ALIASES, CATALOG, get, names
from .codec import decode, encode
from .floatformat import FloatFormat, Specials

__all__ = ["FloatFormat", "Specials", "CATALOG", "ALIASES", "get", "names", "encode",
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
