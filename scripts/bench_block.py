"""Benchmark: MX block quantization, refcomp against torchao 0.18's ``to_mx`` on CPU.

A 4096 x 4096 float32 tensor (standard normal, ``--size`` to change), blocks of 32 along
the last axis, single thread (NUMBA_NUM_THREADS=1, torch.set_num_threads(1)), best of
``--repeat`` timings after a warm-up, both backends timed in the same run on the same
input.  Each row first checks that refcomp's scales and elements equal torchao's bit for
bit (refcomp quantizes with the convention named in the row; on this data the OCP rules
and torchao's agree).  ratio = torchao time / refcomp time; target: ratio >= 2.

Writes the Markdown table to stdout and to ``bench-results/bench_block.md``.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
import platform  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import ROOT, best  # noqa: E402
from refcomp.formats.block import BlockFormat  # noqa: E402
from refcomp.ops.block import quantize_block  # noqa: E402

TARGET = 2.0
ROWS = [  # (label, element, rule, torchao dtype name, convention)
    ("mxfp8_e4m3 floor", "float8_e4m3fn", "floor", "float8_e4m3fn", "ocp-mx-1.0"),
    ("mxfp8_e4m3 floor (torchao-0.18 convention)", "float8_e4m3fn", "floor", "float8_e4m3fn",
     "torchao-0.18"),
    ("mxfp8_e4m3 rceil", "float8_e4m3fn", "rceil", "float8_e4m3fn", "ocp-mx-1.0"),
    ("mxfp8_e5m2 floor", "float8_e5m2", "floor", "float8_e5m2", "ocp-mx-1.0"),
    ("mxfp6_e2m3 floor", "float6_e2m3fn", "floor", "fp6_e2m3", "ocp-mx-1.0"),
    ("mxfp4 floor", "float4_e2m1fn", "floor", "float4_e2m1fn_x2", "ocp-mx-1.0"),
    ("mxfp4 floor (torchao-0.18 convention)", "float4_e2m1fn", "floor", "float4_e2m1fn_x2",
     "torchao-0.18"),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.prototype.mx_formats.config import ScaleCalculationMode
        from torchao.prototype.mx_formats.mx_tensor import to_mx
        import torchao

    x = np.random.default_rng(0).standard_normal((args.size, args.size)).astype(np.float32)
    xt = torch.from_numpy(x)
    lines = ["| what | refcomp s | torchao s | ratio | target met |",
             "|---|---:|---:|---:|:---:|"]
    for label, elem, rule, tname, conv in ROWS:
        fmt = BlockFormat(elem, 32, scale_rule=rule)
        tdt = getattr(torch, tname) if hasattr(torch, tname) else tname
        mode = ScaleCalculationMode(rule)

        def run_rc():
            return quantize_block(x, fmt, convention=conv)

        def run_ao():
            return to_mx(xt, tdt, 32, mode)

        q, (s, d) = run_rc(), run_ao()
        e = d.view(torch.uint8).numpy()
        if elem == "float4_e2m1fn":
            e = np.stack([e & 0xF, e >> 4], axis=-1).reshape(x.shape)
        assert np.array_equal(q.scales, s.view(torch.uint8).numpy()), label
        assert np.array_equal(q.elements, e), label
        t_rc, t_ao = best(run_rc, args.repeat), best(run_ao, args.repeat)
        ratio = t_ao / t_rc
        lines.append(f"| {label} | {t_rc:.4f} | {t_ao:.4f} | {ratio:.2f} | "
                     f"{'yes' if ratio >= TARGET else 'no'} |")
    import numba
    head = (f"MX quantization of a {args.size} x {args.size} float32 tensor (blocks of 32 "
            f"along the last axis), single thread, best of {args.repeat}; refcomp's output "
            f"checked bit-equal to torchao's in every row.  ratio = torchao / refcomp, "
            f"target >= {TARGET:g}.  torch {torch.__version__}, torchao {torchao.__version__},"
            f" numpy {np.__version__}, numba {numba.__version__}, "
            f"{platform.processor() or platform.machine()}.")
    text = head + "\n\n" + "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_block.md").write_text(text)


if __name__ == "__main__":
    main()
