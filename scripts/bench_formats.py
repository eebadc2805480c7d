"""Benchmark: refcomp's casts and arithmetic against peers, as ratios measured in one run.

Single thread, 2**22-element arrays (``--size`` to change), best of ``--repeat`` timings
per entry, each peer timed right after refcomp on the same input.  A ratio is
``peer time / refcomp time`` (above 1: refcomp is faster).  Writes the table to stdout and
to ``bench-results/bench_formats.{md,json}``; ``--update-readme`` also replaces the table
between the ``<!-- bench:begin -->`` / ``<!-- bench:end -->`` markers of README.md.

Targets (issue 2): float32 -> bfloat16/float16/float8_e4m3fn/float8_e5m2 round-to-nearest
at least as fast as ml_dtypes ``astype``; a custom format in every mode at least as fast as
apytypes and 10x gfloat; stochastic rounding at least half the speed of our own RNE cast;
correctly rounded bfloat16/float16 add, mul, fma at least 2x NumPy's float16 arithmetic; a
cast allocating at most its output plus one input-sized temporary.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import refcomp as rc  # noqa: E402
from benchlib import ROOT, best  # noqa: E402

MODES_APY = {"nearest_even": "TIES_EVEN", "nearest_away": "TIES_AWAY", "toward_zero": "TO_ZERO",
             "toward_positive": "TO_POS", "toward_negative": "TO_NEG", "odd": "JAM_UNBIASED",
             "stochastic": "STOCH_WEIGHTED"}
MODES_GF = {"nearest_even": "TiesToEven", "nearest_away": "TiesToAway",
            "toward_zero": "TowardZero", "toward_positive": "TowardPositive",
            "toward_negative": "TowardNegative"}


def rate(n, t):
    return f"{n / t / 1e6:,.0f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1 << 22)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--gfloat-size", type=int, default=1 << 18,
                    help="gfloat is pure NumPy per element: time it on fewer elements and "
                         "compare rates")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    args = ap.parse_args(argv)

    import ml_dtypes
    import torch
    import apytypes as apy
    import gfloat
    torch.set_num_threads(1)
    apy.reset_thread_pool(1)

    n, R = args.size, args.repeat
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal(n).astype(np.float32)
    x64 = rng.standard_normal(n) * np.exp2(rng.integers(-8, 8, n))
    rows = []

    def row(section, what, ours_t, peer, peer_t, target=None, note=""):
        ratio = peer_t / ours_t if peer_t else None
        ok = "" if target is None else ("yes" if ratio >= target else "NO")
        rows.append({"section": section, "what": what, "refcomp_Mps": n / ours_t / 1e6,
                     "peer": peer, "peer_Mps": (n / peer_t / 1e6) if peer_t else None,
                     "ratio": ratio, "target": target, "met": ok, "note": note})
        r = f"{ratio:6.2f}x" if ratio else "   -  "
        print(f"{section:10s} {what:42s} {rate(n, ours_t):>8s} M/s  {peer:22s} "
              f"{(rate(n, peer_t) + ' M/s') if peer_t else '':>12s}  {r} "
              f"{('target ' + str(target) + 'x ' + ok) if target else ''} {note}", flush=True)

    # 1. float32 -> narrow formats, round to nearest even
    xt = torch.from_numpy(x32)
    for name in ("bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"):
        ours = best(lambda: rc.cast_bits(x32, name), R)
        ml_t = np.float16 if name == "float16" else getattr(ml_dtypes, name)
        peer = best(lambda: x32.astype(ml_t), R)
        row("cast", f"float32 -> {name} (RNE, codes)", ours,
            "numpy astype" if name == "float16" else "ml_dtypes astype", peer, 1.0)
        tt = getattr(torch, name)
        peer = best(lambda: xt.to(tt), R)
        row("cast", f"float32 -> {name} (RNE, codes)", ours, "torch .to()", peer)
        vals = best(lambda: rc.cast(x32, name), R)
        row("cast", f"float32 -> {name} (RNE, float64 values)", vals, "", None)

    # 2. custom formats, every mode, float64 inputs
    small = x64[:args.gfloat_size]
    for e, m in ((5, 7), (4, 5)):
        fmt = rc.FloatFormat(e, m)
        fi = gfloat.FormatInfo(f"e{e}m{m}", k=1 + e + m, precision=m + 1, bias=fmt.bias,
                               is_signed=True, domain=gfloat.Domain.Extended, has_nz=True,
                               num_high_nans=(1 << m) - 1, has_subnormals=True,
                               is_twos_complement=False)
        for mode, apy_mode in MODES_APY.items():
            g = np.random.default_rng(1)
            ours = best(lambda: rc.cast_bits(x64, fmt, mode, rng=g), R)
            qm = getattr(apy.QuantizationMode, apy_mode)

            def apy_cast():
                with apy.APyFloatQuantizationContext(qm):
                    return apy.APyFloatArray.from_float(x64, e, m)
            peer = best(apy_cast, R)
            row("custom", f"float64 -> e{e}m{m} {mode} (codes)", ours, "apytypes from_float",
                peer, 1.0)
            if mode in MODES_GF:
                # gfloat is slow: time it on fewer elements (its rate is flat by then)
                # and compare per-element rates
                rnd = getattr(gfloat.RoundMode, MODES_GF[mode])
                t_ours = best(lambda: rc.cast(x64, fmt, mode), R)
                t_gf = best(lambda: gfloat.round_ndarray(fi, small, rnd), 3)
                row("custom", f"float64 -> e{e}m{m} {mode} (values)", t_ours,
                    "gfloat round_ndarray", t_gf * n / small.size, 10.0,
                    note=f"(gfloat timed on {small.size:,})")

    # 3. stochastic rounding against our own RNE
    for name in ("bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"):
        rne = best(lambda: rc.cast_bits(x32, name), R)
        g = np.random.default_rng(2)
        sr = best(lambda: rc.cast_bits(x32, name, "stochastic", rng=g), R)
        row("stochastic", f"float32 -> {name} SR vs our RNE", sr, "refcomp RNE", rne, 0.5)

    # 4. correctly rounded arithmetic against NumPy float16
    a16, b16, c16 = (rng.standard_normal(n).astype(np.float16) for _ in range(3))
    np_t = {"add": best(lambda: a16 + b16, R), "mul": best(lambda: a16 * b16, R),
            "fma": best(lambda: a16 * b16 + c16, R)}
    for op in ("add", "mul", "fma"):
        f = getattr(rc.ops, op)
        operands = (a16, b16, c16) if op == "fma" else (a16, b16)
        for name, dt in (("float16", np.float16), ("bfloat16", np.float32)):
            ours = best(lambda: f(*operands, name, dtype=dt), R)
            row("ops", f"{name} {op} (float16 in, {np.dtype(dt).name} values)", ours,
                "numpy float16 " + ("a*b+c" if op == "fma" else op), np_t[op], 2.0)
            ours64 = best(lambda: f(*operands, name), R)
            row("ops", f"{name} {op} (float16 in, float64 values)", ours64,
                "numpy float16 " + ("a*b+c" if op == "fma" else op), np_t[op])

    # 5. memory: peak traced allocation of a cast over its output, in input sizes
    mem = []
    for name in ("bfloat16", "float8_e4m3fn"):
        for kind, fn in (("codes", lambda: rc.cast_bits(x32, name)),
                         ("values", lambda: rc.cast(x32, name)),
                         ("stochastic codes", lambda: rc.cast_bits(
                             x32, name, "stochastic", rng=np.random.default_rng(0)))):
            fn()
            tracemalloc.start()
            out = fn()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            extra = (peak - out.nbytes) / x32.nbytes
            mem.append({"cast": f"float32 -> {name} ({kind})", "output_MB": out.nbytes / 2**20,
                        "peak_MB": peak / 2**20, "extra_in_input_sizes": extra})
            print(f"memory     float32 -> {name} ({kind}): peak {peak / 2**20:.1f} MiB, output "
                  f"{out.nbytes / 2**20:.1f} MiB, beyond the output {extra:.3f} x input "
                  f"({'ok' if extra <= 1 else 'OVER'})", flush=True)

    meta = {"size": n, "repeat": R, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor(),
            "numpy": np.__version__, "numba": __import__("numba").__version__,
            "ml_dtypes": ml_dtypes.__version__, "torch": torch.__version__,
            "apytypes": apy.__version__, "gfloat": getattr(gfloat, "__version__", "0.5.2"),
            "refcomp": rc.__version__, "threads": 1,
            "date": time.strftime("%Y-%m-%d")}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_formats.json").write_text(json.dumps({"meta": meta, "rows": rows,
                                                            "memory": mem}, indent=1))
    md = markdown(rows, mem, meta)
    (out_dir / "bench_formats.md").write_text(md)
    if args.update_readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
        i, j = text.index(begin) + len(begin), text.index(end)
        readme.write_text(text[:i] + "\n" + md + text[j:])
    missed = [r for r in rows if r["met"] == "NO"] + [m for m in mem
                                                       if m["extra_in_input_sizes"] > 1]
    print(f"\n{len(missed)} target(s) missed" if missed else "\nall targets met")
    return 1 if missed else 0


def markdown(rows, mem, meta):
    lines = [f"Measured {meta['date']}: {meta['size']:,} elements, best of {meta['repeat']}, "
             f"one thread, {meta['machine']} ({meta['processor'] or 'cpu'}), Python "
             f"{meta['python']}, numpy {meta['numpy']}, numba {meta['numba']}, ml_dtypes "
             f"{meta['ml_dtypes']}, torch {meta['torch']}, apytypes {meta['apytypes']}, gfloat "
             f"{meta['gfloat']}.  Ratio = peer time / refcomp time.", "",
             "| what | refcomp M/s | peer | peer M/s | ratio | target |",
             "|---|---:|---|---:|---:|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else ""
        peer = f"{r['peer_Mps']:,.0f}" if r["peer_Mps"] else ""
        target = f"{r['target']}x {r['met']}" if r["target"] else ""
        lines.append(f"| {r['what']} | {r['refcomp_Mps']:,.0f} | {r['peer']} | {peer} | "
                     f"{ratio} | {target} |")
    lines += ["", "| cast | output MiB | peak MiB | beyond output (input sizes) |",
              "|---|---:|---:|---:|"]
    for m in mem:
        lines.append(f"| {m['cast']} | {m['output_MB']:.1f} | {m['peak_MB']:.1f} | "
                     f"{m['extra_in_input_sizes']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
