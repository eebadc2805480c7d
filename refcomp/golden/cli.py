"""``refcomp golden generate | verify | list``."""

from __future__ import annotations

import sys

from .manage import default_dir, generate, verify
from .schema import GoldenError
from .store import load_manifest
from .suites import SUITES

__all__ = ["add_commands"]


def cmd_generate(args) -> int:
    res = generate(args.suite, args.out, force=args.force)
    out = args.out or default_dir()
    for s in res.written:
        print(f"wrote {s} -> {out}/{s}.npz")
    for s in res.unchanged:
        print(f"unchanged {s}")
    for s, lines in res.refused.items():
        print(f"refused {s}: its content would change (use --force to overwrite):")
        for line in lines[:40]:
            print(line)
        if len(lines) > 40:
            print(f"  ... and {len(lines) - 40} more")
    return 1 if res.refused else 0


def cmd_verify(args) -> int:
    directory = args.dir or default_dir()
    checked, problems = verify(directory, args.suite)
    for p in problems:
        print(f"FAIL {p}")
    print(f"{checked} case(s) recomputed in {directory}: "
          + ("all match" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def cmd_list(args) -> int:
    directory = args.dir or default_dir()
    try:
        m = load_manifest(directory)
    except GoldenError as e:
        m = None
        print(f"({e})", file=sys.stderr)
    for name, fn in SUITES.items():
        entry = (m or {}).get("suites", {}).get(name)
        on_disk = (f"{len(entry['cases'])} cases in {entry['file']}" if entry
                   else "not generated")
        doc = (fn.__doc__ or "").strip().splitlines()
        print(f"{name:12s} {on_disk:28s} {doc[0] if doc else ''}")
        if args.cases and entry:
            for c in entry["cases"]:
                print(f"    {c['name']}")
    return 0


def add_commands(sub) -> None:
    g = sub.add_parser("golden", help="golden vectors: generate, verify, list")
    gs = g.add_subparsers(dest="golden_command", required=True)
    p = gs.add_parser("generate", help="write golden suites (never overwrites changed "
                                       "content without --force)")
    p.add_argument("--suite", action="append", choices=list(SUITES),
                   help="a suite (repeatable; default all)")
    p.add_argument("--out", default=None, help="directory (default golden/)")
    p.add_argument("--force", action="store_true", help="overwrite changed suites")
    p.set_defaults(func=cmd_generate)
    p = gs.add_parser("verify", help="recompute every case and check every hash")
    p.add_argument("dir", nargs="?", default=None)
    p.add_argument("--suite", action="append")
    p.set_defaults(func=cmd_verify)
    p = gs.add_parser("list", help="the suites and what is on disk")
    p.add_argument("dir", nargs="?", default=None)
    p.add_argument("--cases", action="store_true", help="also list every case")
    p.set_defaults(func=cmd_list)
