"""Benchmark: quantized inference against torch 2.13's quantized CPU kernels, in one run.

Rows (issue 7 section 5; ratio = peer time / refcomp time, so larger is faster for us):

- dynamic-quantized Linear forward (int8 weights, per-call activation qparams, float
  output) against ``torch.ao.nn.quantized.dynamic.Linear``: target >= 0.25x;
- static int8 inference of the small CNN (conv-relu, max-pool, conv-relu, max-pool,
  linear; fused, calibrated with the x86 qconfig, converted) against torch's converted
  quantized model (fbgemm engine): reported.

One thread, best of N after a warm-up call.  Writes ``bench-results/bench_quant.md``.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import platform  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import best, write_table  # noqa: E402

warnings.filterwarnings("ignore")                  # torch's quantized-tensor deprecation


def dynamic_rows(torch):
    from refcomp.quant.dynamic import DynamicQuantizedLinear
    rows = []
    rng = np.random.default_rng(0)
    for M, K, N in ((256, 512, 512), (64, 1024, 1024), (1, 4096, 4096)):
        w = rng.standard_normal((N, K)).astype(np.float32) * 0.05
        b = rng.standard_normal(N).astype(np.float32)
        x = rng.standard_normal((M, K)).astype(np.float32)
        ours = DynamicQuantizedLinear(w, b)
        lin = torch.nn.Linear(K, N)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        tq = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin),
                                                    {torch.nn.Linear}, dtype=torch.qint8)
        tx = torch.from_numpy(x)
        y_ours = ours.forward(x)[0]
        with torch.no_grad():
            y_t = tq(tx).numpy()
        exact = bool(np.array_equal(np.asarray(y_ours, np.float32).view(np.uint32),
                                    y_t.view(np.uint32)))
        t_ours = best(lambda: ours.forward(x), 5)
        with torch.no_grad():
            t_torch = best(lambda: tq(tx), 20)
        rows.append((f"dynamic Linear {M}x{K} @ {K}x{N}", t_torch, t_ours, exact))
    return rows


def cnn_row(torch):
    from refcomp import nn
    from refcomp.quant import fuse_modules
    from refcomp.quant.ptq import calibrate, convert, prepare
    rng = np.random.default_rng(1)
    m = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, rng=rng), nn.ReLU(),
                      nn.MaxPool2d(kernel_size=2), nn.Conv2d(16, 32, 3, padding=1, rng=rng),
                      nn.ReLU(), nn.MaxPool2d(kernel_size=2), nn.Flatten(),
                      nn.Linear(128, 10, rng=rng))
    x = rng.standard_normal((256, 1, 8, 8)).astype(np.float32)
    fused = fuse_modules(m, [["0", "1"], ["3", "4"]])
    prepared = prepare(fused, "x86")
    calibrate(prepared, [x[:64], x[64:128]])
    ours = convert(prepared)

    tm = torch.nn.Sequential(torch.ao.quantization.QuantStub(),
                             torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                             torch.nn.MaxPool2d(2), torch.nn.Conv2d(16, 32, 3, padding=1),
                             torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                             torch.nn.Linear(128, 10), torch.ao.quantization.DeQuantStub())
    tm.eval()
    torch.backends.quantized.engine = "fbgemm"
    tm = torch.ao.quantization.fuse_modules(tm, [["1", "2"], ["4", "5"]])
    tm.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(tm, inplace=True)
    with torch.no_grad():
        tm(torch.from_numpy(x[:64]))
        tm(torch.from_numpy(x[64:128]))
    torch.ao.quantization.convert(tm, inplace=True)
    tx = torch.from_numpy(x)
    t_ours = best(lambda: ours.forward(x), 5)
    with torch.no_grad():
        t_torch = best(lambda: tm(tx), 20)
    return ("static int8 small CNN, batch 256 (8x8 inputs)", t_torch, t_ours, None)


def main():
    import torch
    torch.set_num_threads(1)
    rows = dynamic_rows(torch) + [cnn_row(torch)]
    md = ["# bench_quant: quantized inference against torch 2.13 CPU, one thread", "",
          f"{platform.processor() or platform.machine()}, NumPy {np.__version__}, torch "
          f"{torch.__version__}; best of 5 (refcomp) / 20 (torch) calls after a warm-up.  "
          "Ratio = torch time / refcomp time.", "",
          "| case | torch (ms) | refcomp (ms) | ratio (dynamic target >= 0.25) | output "
          "bit-exact |", "|---|---:|---:|---:|---|"]
    for label, tt, to, exact in rows:
        md.append(f"| {label} | {tt * 1e3:.2f} | {to * 1e3:.2f} | {tt / to:.3f} | "
                  f"{'-' if exact is None else ('yes' if exact else 'NO')} |")
        print(md[-1], flush=True)
    write_table("bench_quant", md)


if __name__ == "__main__":
    main()
