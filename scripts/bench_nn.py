"""Benchmark: one training step of the NN engine against PyTorch CPU eager, in one run.

Rows (issue 6 targets; ratio = refcomp time / peer time):

- fp32 policy, MLP 64-512-512-10, batch 256, SGD with momentum: <= 1.5x torch eager
  (float32, same model, same thread count: one);
- the same for a small CNN (conv3x3 16 + pool + conv3x3 32 + pool + linear, 8x8 inputs);
- bf16-mixed policy (bf16 compute emulated, fp32 master weights): <= 5x our fp32 policy;
- peak memory of a training step (resident-set growth over the process's state before
  the first step, each configuration in a fresh process) against torch's.

Best of N steps after warm-up.  Writes ``bench-results/bench_nn.md``.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import ROOT  # noqa: E402

BATCH = 256


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _peak():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def torch_step(kind):
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if kind == "mlp":
        m = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))
        x = torch.randn(BATCH, 64)
    else:
        m = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2), torch.nn.Conv2d(16, 32, 3, padding=1),
                                torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(128, 10))
        x = torch.randn(BATCH, 1, 8, 8)
    y = torch.randint(0, 10, (BATCH,))
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return step


def ours_step(kind, policy):
    from refcomp import nn
    r = np.random.default_rng(0)
    if kind == "mlp":
        m = nn.Sequential(nn.Linear(64, 512, rng=r), nn.ReLU(), nn.Linear(512, 512, rng=r),
                          nn.ReLU(), nn.Linear(512, 10, rng=r))
        x = r.standard_normal((BATCH, 64))
    else:
        m = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, rng=r), nn.ReLU(),
                          nn.MaxPool2d(kernel_size=2), nn.Conv2d(16, 32, 3, padding=1, rng=r),
                          nn.ReLU(), nn.MaxPool2d(kernel_size=2), nn.Flatten(),
                          nn.Linear(128, 10, rng=r))
        x = r.standard_normal((BATCH, 1, 8, 8))
    y = r.integers(0, 10, BATCH)
    nn.prepare(m, policy)
    opt = nn.make_optimizer("sgd", policy, lr=0.01, momentum=0.9)
    loss = (nn.cross_entropy_forward, nn.cross_entropy_backward)

    def step():
        nn.train_step(m, x, y, loss, opt, policy)
    return step


def measure(kind, who, repeat):
    """Run in a fresh process: (best step seconds, peak RSS growth in bytes)."""
    step = torch_step(kind) if who == "torch" else ours_step(kind, who)
    base = _rss()
    step()                                          # warm-up (and compile)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return min(times), _peak() - base


def _child(kind, who, repeat):
    out = subprocess.run([sys.executable, __file__, "--child", kind, who, str(repeat)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, who, repeat = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(measure(kind, who, repeat)))
        return
    import torch
    rows = []
    for kind, label in (("mlp", "MLP 64-512-512-10"), ("cnn", "small CNN (8x8 inputs)")):
        ts, ms = _child(kind, "torch", 20)
        fs, mf = _child(kind, "fp32", 20)
        bs, mb = _child(kind, "bf16-mixed", 10)
        rows.append((label, ts, fs, bs, ms, mf, mb))
        print(f"{label}: torch {ts * 1e3:.2f} ms, fp32 {fs * 1e3:.2f} ms ({fs / ts:.2f}x), "
              f"bf16-mixed {bs * 1e3:.2f} ms ({bs / fs:.2f}x fp32); peak MB torch "
              f"{ms / 2**20:.1f}, fp32 {mf / 2**20:.1f}, bf16 {mb / 2**20:.1f}", flush=True)
    md = ["# bench_nn: training step, batch 256, SGD momentum, one thread", "",
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, torch {torch.__version__}; best of 20 (10 for bf16) steps, "
          "each configuration in a fresh process.", "",
          "| model | torch eager (ms) | refcomp fp32 (ms) | fp32 / torch (target <= 1.5) "
          "| refcomp bf16-mixed (ms) | bf16 / fp32 (target <= 5) | peak MB torch | peak MB "
          "fp32 | peak MB bf16 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, ts, fs, bs, ms, mf, mb in rows:
        md.append(f"| {label} | {ts * 1e3:.2f} | {fs * 1e3:.2f} | {fs / ts:.2f} | "
                  f"{bs * 1e3:.2f} | {bs / fs:.2f} | {ms / 2**20:.1f} | {mf / 2**20:.1f} | "
                  f"{mb / 2**20:.1f} |")
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench_nn.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
