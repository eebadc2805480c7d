"""Benchmark: GEMMs and conv2d under accumulation models, against their peers in one run.

Rows (issue 5 targets; ratio = refcomp time / peer time unless said otherwise):

- 512x512x512, bfloat16 inputs, float32 sequential accumulation (exact products, one
  rounding per step): <= 20x NumPy's float32 matmul (``A32 @ B32``, BLAS);
- the same with float16 accumulation (not native to the CPU): <= 50x;
- int8 x int8 -> int32 GEMM (wrapping): throughput >= 0.25x torch's dynamically quantized
  Linear (``torch.ao.nn.quantized.dynamic.Linear``, fbgemm) on the same shapes
  (ratio = peer time / refcomp time here); the AVX2 int16-pair-saturation model is
  reported too;
- conv2d (bfloat16 inputs, float32 accumulation) through the same machinery against torch
  CPU conv2d in float32: reported.

The H100 tensor-core row is in scripts/bench_tensorcore.py.  One thread, best of N.
Writes ``bench-results/bench_gemm.md``.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import refcomp as rc  # noqa: E402
from benchlib import best, write_table  # noqa: E402
from refcomp.ops import AccumulationModel, conv2d, matmul  # noqa: E402


def main():
    import torch
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = 512
    A = np.asarray(rc.cast(rng.standard_normal((n, n)), "bfloat16"))
    B = np.asarray(rc.cast(rng.standard_normal((n, n)), "bfloat16"))
    A32, B32 = A.astype(np.float32), B.astype(np.float32)
    fp32acc = AccumulationModel("bf16-in-fp32-seq", "bfloat16", "float32")
    fp16acc = AccumulationModel("bf16-in-fp16-seq", "bfloat16", "float16")
    t_np = best(lambda: A32 @ B32, 20)
    t32 = best(lambda: matmul(A, B, fp32acc), 5)
    t16 = best(lambda: matmul(A, B, fp16acc), 3)
    rows = [("512^3 bf16 in, fp32 sequential FMA acc", t32, "numpy fp32 matmul", t_np,
             t32 / t_np, "<= 20x", t32 / t_np <= 20),
            ("512^3 bf16 in, fp16 sequential acc", t16, "numpy fp32 matmul", t_np,
             t16 / t_np, "<= 50x", t16 / t_np <= 50)]

    # int8 GEMM vs torch dynamic quantized Linear (fbgemm), same shapes
    qa = rng.integers(-128, 128, (n, n)).astype(np.int8)
    qb = rng.integers(-128, 128, (n, n)).astype(np.int8)
    ua = rng.integers(0, 256, (n, n)).astype(np.uint8)
    lin = torch.ao.nn.quantized.dynamic.Linear(n, n)
    lin.set_weight_bias(torch.quantize_per_tensor(torch.randn(n, n), 0.02, 0, torch.qint8),
                        torch.zeros(n))
    x = torch.randn(n, n)
    with torch.no_grad():
        t_q = best(lambda: lin(x), 20)
    t_i8 = best(lambda: matmul(qa, qb, "int8-int32-wrap"), 5)
    t_avx2 = best(lambda: matmul(ua, qb, "u8s8-int32-avx2"), 1)
    rows.append(("512^3 int8 x int8 -> int32 (wrap)", t_i8,
                 "torch dynamic quantized Linear", t_q, t_q / t_i8, ">= 0.25x (throughput)",
                 t_q / t_i8 >= 0.25))
    rows.append(("512^3 u8 x s8 -> int32, AVX2 int16 pairs", t_avx2,
                 "torch dynamic quantized Linear", t_q, t_q / t_avx2, "reported", True))

    # conv2d through im2col + the GEMM models vs torch conv2d float32
    xc = np.asarray(rc.cast(rng.standard_normal((8, 64, 28, 28)), "bfloat16"))
    wc = np.asarray(rc.cast(rng.standard_normal((64, 64, 3, 3)) * 0.05, "bfloat16"))
    tx, tw = torch.from_numpy(xc.astype(np.float32)), torch.from_numpy(wc.astype(np.float32))
    with torch.no_grad():
        t_tc = best(lambda: torch.nn.functional.conv2d(tx, tw, padding=1), 10)
    t_c = best(lambda: conv2d(xc, wc, fp32acc, padding=1), 3)
    rows.append(("conv2d 8x64x28x28, 64x3x3, bf16 in, fp32 seq acc", t_c,
                 "torch conv2d fp32 (CPU)", t_tc, t_c / t_tc, "reported", True))

    lines = [f"Measured {time.strftime('%Y-%m-%d')}, one thread, {platform.machine()}, "
             f"numpy {np.__version__}, torch {torch.__version__} "
             f"({torch.backends.cpu.get_cpu_capability()}).  Best of N runs.", "",
             "| what | refcomp ms | peer | peer ms | ratio | target | met |",
             "|---|---:|---|---:|---:|---|---|"]
    missed = 0
    for what, ours, peer, tp, ratio, target, ok in rows:
        missed += not ok
        lines.append(f"| {what} | {ours * 1e3:.1f} | {peer} | {tp * 1e3:.2f} | {ratio:.2f}x | "
                     f"{target} | {'yes' if ok else 'NO'} |")
    lines += ["", "Ratios: time ratio refcomp / peer, except the int8 rows (throughput ratio "
              "peer time / refcomp time)."]
    write_table("bench_gemm", lines)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
