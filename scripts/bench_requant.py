"""Benchmark: refcomp's MultiplyByQuantizedMultiplier against a plain NumPy int64 peer.

Single thread, 2**22 random int32 values (``--size`` to change), best of ``--repeat``
timings per entry, the peer timed right after refcomp on the same input.  The peer is the
straightforward NumPy int64 form of the same TFLite formulas (written below, no input
checks; refcomp's timing includes its checks); its output must equal refcomp's bit for
bit.  A ratio is ``peer time / refcomp time`` (above 1: refcomp is faster); target >= 1.
Writes the table to stdout and to ``bench-results/bench_requant.md``.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
import platform  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from benchlib import ROOT, best  # noqa: E402
from refcomp import _jit  # noqa: E402
from refcomp.ops.requant import multiply_by_quantized_multiplier  # noqa: E402

TARGET = 1.0


def peer_double(x, m, s):
    """TFLite double rounding in NumPy int64: RoundingDivideByPOT(SRDHM(x << l, m), r)."""
    x, m, s = x.astype(np.int64), np.int64(m) if np.ndim(m) == 0 else m.astype(np.int64), \
        np.int64(s) if np.ndim(s) == 0 else s.astype(np.int64)
    left, right = np.maximum(s, 0), np.maximum(-s, 0)
    high = ((x << left) * m + (1 << 30)) >> 31            # SRDHM (m >= 0: no saturation)
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (high < 0)
    return ((high >> right) + ((high & mask) > threshold)).astype(np.int32)


def peer_single(x, m, s):
    """TFLITE_SINGLE_ROUNDING in NumPy int64: (x*m + 2**(30 - s)) >> (31 - s)."""
    m = np.int64(m) if np.ndim(m) == 0 else m.astype(np.int64)
    total = 31 - (np.int64(s) if np.ndim(s) == 0 else s.astype(np.int64))
    return ((x.astype(np.int64) * m + (np.int64(1) << (total - 1))) >> total).astype(np.int32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1 << 22)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    args = ap.parse_args(argv)
    n, repeat = args.size, args.repeat
    rng = np.random.default_rng(2026)
    x = rng.integers(-2 ** 31, 2 ** 31, n).astype(np.int32)
    m_el = rng.integers(2 ** 30, 2 ** 31, n).astype(np.int32)
    s_el = rng.integers(-31, 1, n).astype(np.int32)
    cases = [("double, fixed multiplier/shift", "double", peer_double, 1288490189, -7),
             ("double, per-element multiplier/shift", "double", peer_double, m_el, s_el),
             ("single, fixed multiplier/shift", "single", peer_single, 1288490189, -7),
             ("single, per-element multiplier/shift", "single", peer_single, m_el, s_el)]
    rows = []
    for what, rounding, peer, m, s in cases:
        ours = multiply_by_quantized_multiplier(x, m, s, rounding)
        same = np.array_equal(ours, peer(x, m, s)) and ours.dtype == np.int32
        if not same:
            raise SystemExit(f"peer and refcomp disagree: {what}")
        t_ours = best(lambda: multiply_by_quantized_multiplier(x, m, s, rounding), repeat)
        t_peer = best(lambda: peer(x, m, s), repeat)
        ratio = t_peer / t_ours
        rows.append((what, n / t_ours / 1e6, n / t_peer / 1e6, ratio, ratio >= TARGET))
        print(f"{what:40s} refcomp {n / t_ours / 1e6:8,.0f} M/s  peer {n / t_peer / 1e6:8,.0f}"
              f" M/s  ratio {ratio:5.2f}x  same bits: {same}", flush=True)

    meta = (f"Measured {date.today().isoformat()}: {n:,} int32 elements, best of {repeat}, one "
            f"thread, {platform.machine()}, Python {platform.python_version()}, numpy "
            f"{np.__version__}, numba {numba.__version__}, kernels "
            f"{'on' if _jit.enabled() else 'off (REFCOMP_DISABLE_JIT=1)'}.  Peer: NumPy int64 "
            "form of the same formula, identical bits checked.  Ratio = peer time / refcomp "
            "time.")
    lines = [meta, "", "| what | refcomp M/s | peer M/s | ratio | target met (>= 1x) |",
             "|---|---:|---:|---:|---|"]
    lines += [f"| {w} | {a:,.0f} | {b:,.0f} | {r:.2f}x | {'yes' if ok else 'NO'} |"
              for w, a, b, r, ok in rows]
    md = "\n".join(lines) + "\n"
    print("\n" + md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_requant.md").write_text(md)
    missed = [r for r in rows if not r[4]]
    print(f"{len(missed)} target(s) missed" if missed else "all targets met")


if __name__ == "__main__":
    main()
