"""``refcomp crosscheck`` and ``refcomp sweep``."""

from __future__ import annotations

import json
import sys

from ..golden.schema import GoldenError
from .backend import make_backend
from .report import summary_table, write_reports
from .run import run
from .sweep import SweepSpec, sweep

__all__ = ["add_commands"]


def cmd_crosscheck(args) -> int:
    try:
        be = make_backend(args.backend)
    except ValueError as e:
        print(f"refcomp crosscheck: {e}", file=sys.stderr)
        return 2
    print(f"cross-check on {be.name}: {json.dumps(be.describe(), default=str)}", flush=True)
    try:
        cc = run(be, args.golden, args.suite, progress=not args.quiet)
    except GoldenError as e:
        print(f"refcomp crosscheck: golden files: {e}", file=sys.stderr)
        return 1
    print(summary_table(cc))
    if args.report:
        for p in write_reports(cc, args.report):
            print(f"wrote {p}")
    return 0 if cc.ok else 1


def cmd_sweep(args) -> int:
    spec = SweepSpec(args.op, args.src, args.to, args.backend, args.chunk_bits)
    print(f"sweep {spec.op} {spec.src} -> {spec.dst} on {spec.backend}: {spec.total:,} cases "
          f"in {spec.chunks} chunk(s) of 2**{spec.chunk_bits}"
          + (f", first {args.limit} only" if args.limit else ""), flush=True)
    r = sweep(spec, workers=args.workers, dask=args.dask, limit=args.limit,
              progress=not args.quiet)
    print(f"{r.checked:,} cases checked in {r.seconds:.1f}s on {r.workers} worker(s): "
          + ("no mismatches" if not r.mismatches else f"{r.mismatches:,} mismatches"))
    for i, ours, theirs in r.examples:
        print(f"  input {i:#x}: refcomp {ours:#x}, {spec.backend} {theirs:#x}")
    return 1 if r.mismatches else 0


def add_commands(sub) -> None:
    p = sub.add_parser("crosscheck", help="run golden suites on a backend and report")
    p.add_argument("--backend", required=True,
                   help="torch-cpu, torch-cuda, ml_dtypes or file:PATH")
    p.add_argument("--suite", action="append", help="a suite (repeatable; default all)")
    p.add_argument("--golden", default=None, help="golden directory (default golden/)")
    p.add_argument("--report", default=None, help="write report.md, report.json and plots "
                                                  "here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_crosscheck)
    p = sub.add_parser("sweep", help="exhaustive sweep of a cast or 16-bit binary op")
    p.add_argument("--op", required=True, help="cast, add, sub, mul or div")
    p.add_argument("--from", dest="src", required=True, help="input format")
    p.add_argument("--to", required=True, help="output format")
    p.add_argument("--backend", required=True, help="torch-cpu, torch-cuda or ml_dtypes")
    p.add_argument("--workers", type=int, default=None, help="local processes (default: "
                                                             "all cores)")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run the chunks on a Dask scheduler at ADDRESS")
    p.add_argument("--chunk-bits", type=int, default=22)
    p.add_argument("--limit", type=int, default=None, help="only the first N chunks")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_sweep)
