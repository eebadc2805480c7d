"""Benchmark: int4 packing and unpacking against ml_dtypes, measured in one run.

ml_dtypes 0.6 stores ``int4`` one element per byte and has no packed layout, so the peer is
the shortest ml_dtypes + NumPy route to the same packed bytes: ``v.astype(ml_dtypes.int4)``
then two nibbles per byte with NumPy (pack), and NumPy nibble split then
``.view(ml_dtypes.int4).astype(int8)`` (unpack).  refcomp: ``refcomp.ops.pack_int(v,
"int4")`` (range-checked) and ``unpack_int``.  Both give identical bytes / values (checked).

Target (issue 4): refcomp >= 1x the peer.  2**22 int8 values, best of 7, one thread.
Ratio = peer time / refcomp time.  Writes ``bench-results/bench_int.md``.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import ml_dtypes as ml  # noqa: E402
import numpy as np  # noqa: E402

import refcomp as rc  # noqa: E402
from benchlib import best, write_table  # noqa: E402


def peer_pack(v):
    c = v.astype(ml.int4).view(np.uint8) & np.uint8(15)
    return c[0::2] | (c[1::2] << np.uint8(4))


def peer_unpack(p):
    c = np.stack([p & np.uint8(15), p >> np.uint8(4)], axis=-1).reshape(-1)
    return c.view(ml.int4).astype(np.int8)


def main():
    n = 1 << 22
    v = np.random.default_rng(0).integers(-8, 8, n).astype(np.int8)
    p = rc.ops.pack_int(v, "int4")
    assert (p == peer_pack(v)).all() and (rc.ops.unpack_int(p, "int4") == peer_unpack(p)).all()
    rows = [("int4 pack (int8 values -> bytes)", best(lambda: rc.ops.pack_int(v, "int4")),
             best(lambda: peer_pack(v))),
            ("int4 unpack (bytes -> values)", best(lambda: rc.ops.unpack_int(p, "int4")),
             best(lambda: peer_unpack(p)))]
    lines = [f"Measured {time.strftime('%Y-%m-%d')}: {n:,} values, best of 7, one thread, "
             f"{platform.machine()}, numpy {np.__version__}, ml_dtypes {ml.__version__}.  "
             f"Ratio = peer time / refcomp time.", "",
             "| what | refcomp M/s | peer | peer M/s | ratio | target |",
             "|---|---:|---|---:|---:|---|"]
    missed = 0
    for what, ours, peer in rows:
        r = peer / ours
        missed += r < 1
        lines.append(f"| {what} | {n / ours / 1e6:,.0f} | ml_dtypes int4 + NumPy nibbles | "
                     f"{n / peer / 1e6:,.0f} | {r:.2f}x | 1.0x {'yes' if r >= 1 else 'NO'} |")
    write_table("bench_int", lines)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
