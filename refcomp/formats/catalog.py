"""The catalog of named formats.

Names equal the ml_dtypes / torch dtype names where those exist, so that
``getattr(ml_dtypes, fmt.name)`` and ``getattr(torch, fmt.name)`` work.  Each entry lists
only the defining fields; every constant is derived by :class:`FloatFormat`.

Sources of the field values: IEEE 754-2019 table 3.5 (binary16/32/64); the bfloat16 and
TF32 layouts (8 exponent bits with 7 resp. 10 mantissa bits, IEEE specials); the OCP 8-bit
Floating Point Specification (OFP8) rev 1.0 section 5.1 (E4M3 with bias 7 and NaN only at
S.1111.111; E5M2 IEEE-like); the OCP Microscaling Formats (MX) v1.0 spec section 5.3
(FP6 E2M3/E3M2 and FP4 E2M1, finite only) and 5.4.1 (E8M0 scale: unsigned, no zero, NaN
0xFF); Graphcore/AMD "fnuz" types (arXiv:2206.02915): bias 2**(e-1), NaN at 0x80; and
ml_dtypes 0.6 for float8_e4m3 (IEEE-like E4M3), float8_e3m4 and float8_e4m3b11fnuz.
The tests check every constant against ``ml_dtypes.finfo`` and a hand-written table.
"""

from __future__ import annotations

import difflib
import re

from .floatformat import FloatFormat, Specials

__all__ = ["CATALOG", "ALIASES", "get", "names"]

_F = FloatFormat
_E = Specials

CATALOG: dict[str, FloatFormat] = {f.name: f for f in (
    _F(11, 52, name="float64"),
    _F(8, 23, name="float32"),
    _F(5, 10, name="float16"),
    _F(8, 7, name="bfloat16"),
    _F(8, 10, name="tfloat32"),
    _F(4, 3, 7, _E.FN, name="float8_e4m3fn"),
    _F(4, 3, 8, _E.FNUZ, name="float8_e4m3fnuz"),
    _F(4, 3, 7, _E.IEEE, name="float8_e4m3"),
    _F(4, 3, 11, _E.FNUZ, name="float8_e4m3b11fnuz"),
    _F(5, 2, 15, _E.IEEE, name="float8_e5m2"),
    _F(5, 2, 16, _E.FNUZ, name="float8_e5m2fnuz"),
    _F(3, 4, 3, _E.IEEE, name="float8_e3m4"),
    _F(8, 0, 127, _E.FN, subnormals=False, signed=False, has_zero=False,
       name="float8_e8m0fnu"),
    _F(2, 3, 1, _E.FINITE, name="float6_e2m3fn"),
    _F(3, 2, 3, _E.FINITE, name="float6_e3m2fn"),
    _F(2, 1, 1, _E.FINITE, name="float4_e2m1fn"),
)}

#: convenience spellings accepted by :func:`get`
ALIASES: dict[str, str] = {
    "fp64": "float64", "double": "float64", "binary64": "float64",
    "fp32": "float32", "single": "float32", "float": "float32", "binary32": "float32",
    "fp16": "float16", "half": "float16", "binary16": "float16",
    "bf16": "bfloat16", "tf32": "tfloat32",
    "e4m3": "float8_e4m3fn", "fp8_e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2",
    "fp8_e5m2": "float8_e5m2", "e8m0": "float8_e8m0fnu",
    "fp6_e2m3": "float6_e2m3fn", "fp6_e3m2": "float6_e3m2fn", "fp4": "float4_e2m1fn",
    "fp4_e2m1": "float4_e2m1fn", "e2m1": "float4_e2m1fn",
}

_CUSTOM = re.compile(r"^e(\d+)m(\d+)$")


def names() -> list[str]:
    """Catalog names, in catalog order."""
    return list(CATALOG)


def get(fmt) -> FloatFormat:
    """Look a format up by name, alias or ``"e<E>m<M>"``; a FloatFormat is returned as is.

    Parameters
    ----------
    fmt : str or FloatFormat
        A catalog name (``"float16"``), an alias (``"fp16"``, ``"bf16"``), a custom IEEE
        layout ``"e5m7"`` (default bias, IEEE specials), or a FloatFormat.

    Raises
    ------
    ValueError
        Unknown name; the message suggests the closest known names.
    TypeError
        Neither a string nor a format.

    Examples
    --------
    >>> get("bf16").name
    'bfloat16'
    >>> get("e3m2").max_finite              # IEEE-like: 1.75 * 2**3
    14.0
    """
    if isinstance(fmt, FloatFormat):
        return fmt
    if not isinstance(fmt, str):
        raise TypeError(f"a format must be a FloatFormat or a name, got {fmt!r}")
    key = fmt.strip()
    if key in CATALOG:
        return CATALOG[key]
    low = key.lower()
    if low in CATALOG:
        return CATALOG[low]
    if low in ALIASES:
        return CATALOG[ALIASES[low]]
    m = _CUSTOM.match(low)
    if m:
        return FloatFormat(int(m.group(1)), int(m.group(2)))
    known = list(CATALOG) + list(ALIASES)
    close = difflib.get_close_matches(low, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown format {fmt!r}{hint} (known: {', '.join(CATALOG)}; "
                     "or 'e<E>m<M>' for a custom IEEE-like layout)")
