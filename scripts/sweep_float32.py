#!/usr/bin/env python
"""Sweep every float32 bit pattern through refcomp and the real backends.

All 2**32 float32 bit patterns are cast, chunk by chunk (memory stays bounded by the
chunk size), into each selected format by

* ``refcomp.cast_bits(x, fmt, profile="torch-2.13-cpu")`` vs ``torch.from_numpy(x).to(dtype)``
* ``refcomp.cast_bits(x, fmt, profile="ml_dtypes-0.6")`` vs ``x.astype(ml_dtypes.<fmt>)``

and the output bit patterns are compared.  NaN results are compared bit for bit where the
profile's FormatRule has ``nan_bits=True`` (the backend's NaN bits are deterministic), else
by NaN-ness only.  A table of mismatch counts is printed at the end; the exit status is 1 if
anything differs.  Not run in CI (the full sweep takes about an hour on a laptop core).

Examples::

    python scripts/sweep_float32.py --limit 2                   # a quick try: 2 chunks
    python scripts/sweep_float32.py --backend torch --formats float8_e4m3fn,bfloat16
    python scripts/sweep_float32.py --start 127 --limit 2       # 0x7f000000.. (inf, NaN, -0)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from pathlib import Path

import numpy as np

try:
    import refcomp as rc
except ImportError:                 # run from a checkout without installing refcomp
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import refcomp as rc
from refcomp.rounding.profiles import PROFILES

PROFILE = {"torch": "torch-2.13-cpu", "ml_dtypes": "ml_dtypes-0.6"}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
TOTAL = 1 << 32


@dataclass
class Target:
    """One (backend, format) pair under test and its running tally."""

    backend: str
    name: str
    nan_bits: bool
    checked: int = 0
    mismatches: int = 0
    nan_only: int = 0          # bit differences forgiven because both sides are NaN
    examples: list = field(default_factory=list)

    @property
    def profile(self) -> str:
        return PROFILE[self.backend]


class TorchPeer:
    def __init__(self):
        import torch
        self.torch = torch
        self.bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}

    def cast(self, x: np.ndarray, name: str) -> np.ndarray:
        t = self.torch.from_numpy(x).to(getattr(self.torch, name))
        n = t.element_size()
        return t.view(self.bits[n]).numpy().view(UINT[n])

    def is_nan(self, codes: np.ndarray, name: str) -> np.ndarray:
        torch = self.torch
        n = codes.dtype.itemsize
        signed = codes.view({1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}[n])
        t = torch.from_numpy(np.ascontiguousarray(signed)).view(getattr(torch, name))
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float32)
        return torch.isnan(t).numpy()


class MlDtypesPeer:
    def __init__(self):
        import ml_dtypes
        self.ml = ml_dtypes

    def cast(self, x: np.ndarray, name: str) -> np.ndarray:
        dt = np.dtype(getattr(self.ml, name))
        with np.errstate(all="ignore"):
            return x.astype(dt).view(UINT[dt.itemsize])

    def is_nan(self, codes: np.ndarray, name: str) -> np.ndarray:
        dt = np.dtype(getattr(self.ml, name))
        with np.errstate(all="ignore"):
            return np.isnan(codes.view(dt).astype(np.float32))


PEERS = {"torch": TorchPeer, "ml_dtypes": MlDtypesPeer}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Compare refcomp.cast_bits with torch and ml_dtypes on every float32 "
                    "bit pattern.")
    ap.add_argument("--backend", choices=["torch", "ml_dtypes", "both"], default="both",
                    help="which peer(s) to compare with (default both)")
    ap.add_argument("--formats", default=None,
                    help="comma-separated format names (default: every format the backend "
                         "has in its refcomp profile)")
    ap.add_argument("--chunk-bits", type=int, default=24,
                    help="log2 of the patterns per chunk (default 24: 2**24 patterns, "
                         "about 64 MiB of input)")
    ap.add_argument("--start", type=int, default=0,
                    help="first chunk index (default 0)")
    ap.add_argument("--limit", type=int, default=None,
                    help="stop after this many chunks (a quick try)")
    ap.add_argument("--examples", type=int, default=5,
                    help="mismatching inputs to keep per format (default 5)")
    args = ap.parse_args(argv)
    if not 10 <= args.chunk_bits <= 30:
        ap.error("--chunk-bits must be between 10 and 30")
    n_chunks = TOTAL >> args.chunk_bits
    if not 0 <= args.start < n_chunks:
        ap.error(f"--start must be in [0, {n_chunks})")
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")
    return ap, args


def make_targets(ap, args) -> list[Target]:
    backends = ["torch", "ml_dtypes"] if args.backend == "both" else [args.backend]
    wanted = None
    if args.formats:
        wanted = [f.strip() for f in args.formats.split(",") if f.strip()]
        for f in wanted:
            if not any(f in PROFILES[PROFILE[b]].rules for b in backends):
                ap.error(f"format {f!r} is in none of the selected profiles "
                         f"({', '.join(PROFILE[b] for b in backends)})")
    targets = []
    for b in backends:
        rules = PROFILES[PROFILE[b]].rules
        for name in (wanted if wanted is not None else list(rules)):
            if name in rules:
                targets.append(Target(b, name, rules[name].nan_bits))
    return targets


def compare_chunk(x: np.ndarray, target: Target, peer, keep: int) -> None:
    got = rc.cast_bits(x, target.name, profile=target.profile)
    want = peer.cast(x, target.name)
    if got.dtype != want.dtype:
        raise SystemExit(f"{target.backend} {target.name}: storage dtypes differ "
                         f"(refcomp {got.dtype}, peer {want.dtype})")
    diff = np.flatnonzero(got != want)
    if diff.size and not target.nan_bits:
        both_nan = (np.isnan(rc.formats.get(target.name).decode(got[diff]))
                    & peer.is_nan(want[diff], target.name))
        target.nan_only += int(both_nan.sum())
        diff = diff[~both_nan]
    target.checked += x.size
    target.mismatches += diff.size
    room = keep - len(target.examples)
    for i in diff[:max(room, 0)]:
        target.examples.append((int(x.view(np.uint32)[i]), int(got[i]), int(want[i])))


def print_table(targets: list[Target]) -> None:
    head = f"{'backend':<10} {'format':<20} {'NaN compared':<13} {'checked':>12} " \
           f"{'mismatches':>11} {'NaN-only diffs':>15}"
    print(head)
    print("-" * len(head))
    for t in targets:
        how = "by bits" if t.nan_bits else "by NaN-ness"
        print(f"{t.backend:<10} {t.name:<20} {how:<13} {t.checked:>12} {t.mismatches:>11} "
              f"{t.nan_only:>15}")
    bad = [t for t in targets if t.examples]
    if bad:
        print("\nfirst mismatches (input float32 bits: refcomp / peer):")
        for t in bad:
            ex = ", ".join(f"{i:#010x}: {g:#x}/{w:#x}" for i, g, w in t.examples)
            print(f"  {t.backend} {t.name}: {ex}")


def main(argv=None) -> int:
    ap, args = parse_args(argv)
    targets = make_targets(ap, args)
    peers = {b: PEERS[b]() for b in {t.backend for t in targets}}
    size = 1 << args.chunk_bits
    n_chunks = TOTAL >> args.chunk_bits
    stop = n_chunks if args.limit is None else min(n_chunks, args.start + args.limit)
    todo = stop - args.start
    print(f"refcomp {rc.__version__}; peers: "
          + ", ".join(f"{b} ({PROFILE[b]})" for b in peers)
          + f"; {len(targets)} targets; chunks {args.start}..{stop - 1} of {n_chunks} "
            f"({size} patterns each)", flush=True)
    t0 = time.perf_counter()
    for done, c in enumerate(range(args.start, stop), 1):
        lo = c * size
        x = np.arange(lo, lo + size, dtype=np.uint64).astype(np.uint32).view(np.float32)
        for t in targets:
            compare_chunk(x, t, peers[t.backend], args.examples)
        el = time.perf_counter() - t0
        eta = el / done * (todo - done)
        bad = sum(t.mismatches for t in targets)
        print(f"[{done}/{todo}] chunk {c}: {lo:#010x}..{lo + size - 1:#010x}  "
              f"elapsed {el:8.1f}s  eta {eta:8.1f}s  mismatches so far {bad}", flush=True)
    elapsed = time.perf_counter() - t0
    print()
    print_table(targets)
    total = sum(t.mismatches for t in targets)
    print(f"\n{todo} chunk(s), {todo * size} float32 patterns x {len(targets)} targets in "
          f"{elapsed:.1f}s; {'no mismatches' if not total else f'{total} mismatches'}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
