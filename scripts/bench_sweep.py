"""Benchmark: the exhaustive float32 -> bfloat16 sweep against torch, with its peer in one run.

Target (issue 3): ``refcomp sweep --op cast --from float32 --to bfloat16 --backend torch-cpu``
checks all 2**32 inputs in under 10 minutes on a 2-core machine, in constant memory (< 1 GiB
per worker).

Measured in one run, same chunks (2**22 inputs) and same number of worker processes:

* *sweep*: the real sweep (inputs generated, refcomp's cast, torch's cast, bitwise compare);
* *peer*: torch alone over the same chunks (inputs generated, ``.to(torch.bfloat16)``) -- the
  least any harness that asks torch for every output must spend.

Ratio = peer time / sweep time (1.0 would mean refcomp and the comparison cost nothing).
Memory is the largest resident set of any worker process (``ru_maxrss`` of the children).
Writes ``bench-results/bench_sweep.{md,json}``; ``--update-readme`` replaces the table between
``<!-- sweep:begin -->`` / ``<!-- sweep:end -->`` in README.md.  ``--limit N`` runs only the
first N chunks (a quick look; the figure that counts is the full run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
try:
    import refcomp as rc
except ImportError:                                # running from a checkout
    sys.path.insert(0, str(ROOT))
    import refcomp as rc

import numpy as np  # noqa: E402

from refcomp.crosscheck.sweep import SweepSpec, sweep  # noqa: E402

BEGIN, END = "<!-- sweep:begin -->", "<!-- sweep:end -->"


def peer_chunk(args):
    """torch alone on chunk `index`: generate the inputs, convert, touch the result."""
    index, bits = args
    import torch
    torch.set_num_threads(1)
    flat = np.arange(index << bits, (index + 1) << bits, dtype=np.uint64)
    x = torch.from_numpy(flat.astype(np.uint32).view(np.int32)).view(torch.float32)
    y = x.to(torch.bfloat16).view(torch.int16).numpy()
    return int(y[0])


def run_peer(chunks, bits, workers):
    import multiprocessing as mp
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(peer_chunk, [(i, bits) for i in range(chunks)]):
            pass
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--limit", type=int, default=None, help="first N chunks only")
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args(argv)

    import torch
    spec = SweepSpec("cast", "float32", "bfloat16", "torch-cpu")
    chunks = spec.chunks if args.limit is None else min(args.limit, spec.chunks)
    res = sweep(spec, workers=args.workers, limit=args.limit)
    peer_s = run_peer(chunks, spec.chunk_bits, res.workers)
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    meta = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
            "workers": res.workers, "machine": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__,
            "numba": __import__("numba").__version__, "torch": torch.__version__,
            "refcomp": rc.__version__, "chunk_inputs": 1 << spec.chunk_bits}
    row = {"inputs": res.checked, "mismatches": res.mismatches, "sweep_s": res.seconds,
           "peer_s": peer_s, "ratio": peer_s / res.seconds,
           "full": res.checked == spec.total, "max_worker_rss_mib": rss_mib,
           "met_time": res.seconds * spec.total / max(res.checked, 1) < 600,
           "met_memory": rss_mib < 1024}
    md = markdown(meta, row)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_sweep.json").write_text(json.dumps({"meta": meta, "row": row}, indent=1))
    (out / "bench_sweep.md").write_text(md)
    if args.update_readme:
        if not row["full"]:
            sys.exit("--update-readme needs the full sweep (no --limit)")
        readme = ROOT / "README.md"
        text = readme.read_text()
        i, j = text.index(BEGIN) + len(BEGIN), text.index(END)
        readme.write_text(text[:i] + "\n" + md + text[j:])
    return 0 if (row["met_time"] and row["met_memory"] and not row["mismatches"]) else 1


def markdown(meta, row):
    scope = "all" if row["full"] else "the first"
    return "\n".join([
        f"Measured {meta['date']}: {scope} {row['inputs']:,} float32 inputs, {meta['workers']} "
        f"worker processes on {meta['cores']} cores, {meta['chunk_inputs']:,}-input chunks, "
        f"{meta['machine']}, Python {meta['python']}, numpy {meta['numpy']}, numba "
        f"{meta['numba']}, torch {meta['torch']}.  Ratio = peer time / sweep time.", "",
        "| what | seconds | ratio | mismatches | max worker RSS MiB | target |",
        "|---|---:|---:|---:|---:|---|",
        f"| refcomp sweep float32 -> bfloat16 vs torch-cpu | {row['sweep_s']:.1f} | "
        f"{row['ratio']:.2f}x | {row['mismatches']:,} | {row['max_worker_rss_mib']:.0f} | "
        f"< 600 s {'yes' if row['met_time'] else 'NO'}, < 1024 MiB "
        f"{'yes' if row['met_memory'] else 'NO'} |",
        f"| peer: torch .to(bfloat16) alone, same chunks and workers | {row['peer_s']:.1f} | "
        f"1.00x |  |  |  |", ""])


if __name__ == "__main__":
    sys.exit(main())
