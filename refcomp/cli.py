"""Command line: ``refcomp ...`` and ``python -m refcomp ...``.

Commands
--------
formats            the catalog, one line per format
info FORMAT        derived constants and encoding rules of a format
profiles [NAME]    backend profiles and their rules
cast VALUE FORMAT  round a value; print bits, value and flags
golden ...         generate, verify and list golden vectors
crosscheck         run the golden suites on a backend (torch, ml_dtypes, file:PATH)
sweep              exhaustive sweep of a cast or a 16-bit binary op against a backend
"""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np

from . import __version__
from .formats import catalog
from .formats.floatformat import FloatFormat, Specials

__all__ = ["main"]


def _layout(f: FloatFormat) -> str:
    return ("S" if f.signed else "") + "E" * f.exp_bits + "M" * f.man_bits


def _code(f: FloatFormat, code: int) -> str:
    digits = (f.width + 3) // 4
    return f"0x{code:0{digits}X}"


def _rules(f: FloatFormat) -> list[str]:
    lines = [f"layout      {_layout(f)}  ({f.width} bits: "
             f"{'1 sign, ' if f.signed else 'no sign, '}{f.exp_bits} exponent, "
             f"{f.man_bits} mantissa), bias {f.bias}"]
    if f.has_zero:
        zero = "zero: exponent field 0, mantissa 0"
        if f.has_negative_zero:
            zero += f" (+0 {_code(f, 0)}, -0 {_code(f, f.sign_bit)})"
        else:
            zero += f" (only +0 {_code(f, 0)}; no negative zero)"
        lines.append(zero)
        if f.subnormals:
            lines.append(f"subnormals  exponent field 0: (-1)^S * 0.M * 2^{f.emin}")
        else:
            lines.append("subnormals  none: exponent-0 codes with M != 0 read as zero; "
                         "tiny values round to 0 or +-min normal")
        lines.append(f"normals     exponent field E >= 1: (-1)^S * 1.M * 2^(E-{f.bias})")
    else:
        lines.append(f"values      exponent field E (all codes but NaN): 1.M * 2^(E-{f.bias});"
                     " no zero, no subnormals")
    if f.specials is Specials.IEEE:
        lines.append(f"infinity    exponent all ones, mantissa 0 ({_code(f, f.inf_code)})")
        lines.append(f"NaN         exponent all ones, mantissa != 0; quiet bit = top mantissa "
                     f"bit (canonical {_code(f, f.nan_code)})")
    elif f.specials is Specials.FN:
        lines.append("infinity    none")
        if f.signed:
            lines.append(f"NaN         only the all-ones code of each sign "
                         f"({_code(f, f.nan_code)}, {_code(f, f.nan_code | f.sign_bit)})")
        else:
            lines.append(f"NaN         only the all-ones code ({_code(f, f.nan_code)})")
    elif f.specials is Specials.FNUZ:
        lines.append("infinity    none")
        lines.append(f"NaN         the single code {_code(f, f.nan_code)} (the negative-zero "
                     "code)")
    else:
        lines.append("infinity    none; NaN none (finite only)")
    lines.append(f"max finite  {_code(f, f.max_code)} = {f.max_finite!r}")
    return lines


def cmd_formats(args) -> int:
    print(f"{'name':22s} {'width':>5s} {'e':>3s} {'m':>3s} {'bias':>5s} {'specials':8s} "
          f"{'max finite':>14s} {'min normal':>12s} {'min subnormal':>13s} {'eps':>10s}")
    for f in catalog.CATALOG.values():
        print(f"{f.name:22s} {f.width:5d} {f.exp_bits:3d} {f.man_bits:3d} {f.bias:5d} "
              f"{f.specials.value:8s} {f.max_finite:14.6g} {f.min_normal:12.6g} "
              f"{f.min_subnormal:13.6g} {f.eps:10.4g}")
    return 0


def cmd_info(args) -> int:
    f = catalog.get(args.format)
    print(f"{f.name}")
    for key, value in f.constants().items():
        if key == "name":
            continue
        if isinstance(value, float):
            value = f"{value!r} (= {float(value).hex()})"
        print(f"  {key:18s} {value}")
    print("encoding rules")
    for line in _rules(f):
        print(f"  {line}")
    return 0


def cmd_profiles(args) -> int:
    from .rounding.profiles import PROFILES, get_profile
    if args.name:
        print(get_profile(args.name).describe())
        return 0
    for p in PROFILES.values():
        print(f"{p.name:24s} {p.backend} {p.version}")
    return 0


def cmd_cast(args) -> int:
    from .rounding import cast_bits, flag_names
    f = catalog.get(args.format)
    x = np.float64(float.fromhex(args.value) if args.value.lower().startswith(("0x", "-0x"))
                   else float(args.value))
    bits, fl = cast_bits(x, f, args.rounding, flags=True, overflow=args.overflow,
                         profile=args.profile)
    value = f.decode(bits)
    print(f"{args.value} -> {f.name} ({args.rounding}): bits {_code(f, int(bits))}, "
          f"value {float(value)!r}, flags {flag_names(fl)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="refcomp", description="Bit-exact reference emulator "
                                 "of number formats.")
    ap.add_argument("--version", action="version", version=f"refcomp {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("formats", help="list the format catalog").set_defaults(func=cmd_formats)
    p = sub.add_parser("info", help="constants and encoding rules of a format")
    p.add_argument("format")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("profiles", help="backend profiles")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_profiles)
    p = sub.add_parser("cast", help="round one value into a format")
    # let "-1e9", "-inf", "-0x1p-2" be values, not options
    p._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|nan|0x)", re.IGNORECASE)
    p.add_argument("value", help="a decimal or hexadecimal (0x1.8p-3) float")
    p.add_argument("format")
    p.add_argument("--rounding", default="nearest_even")
    p.add_argument("--overflow", default=None)
    p.add_argument("--profile", default=None)
    p.set_defaults(func=cmd_cast)
    from .golden.cli import add_commands as golden_commands
    golden_commands(sub)
    from .crosscheck.cli import add_commands as crosscheck_commands
    crosscheck_commands(sub)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"refcomp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
