"""Benchmark: one training step of the NN engine against PyTorch CPU eager, in one run.

Rows (issue 6 targets; ratio = refcomp time / peer time):

- fp32 policy, MLP 64-512-512-10, batch 256, SGD with momentum: <= 1.5x torch eager
  (float32, same model, same thread count: one);
- the same for a small CNN (conv3x3 16 + pool + conv3x3 32 + pool + linear, 8x8 inputs);
- bf16-mixed policy (bf16 compute emulated, fp32 master weights): <= 5x our fp32 policy;
- peak memory of a training step against torch's.

Every configuration runs in a fresh process: warm-up steps (they also compile), then the
best of N timed steps.  Each runs twice, under two allocator settings, the same for both
peers:

``default``
    glibc's malloc as the process starts.  Its dynamic trim threshold (twice the largest
    block freed so far) makes it hand a step's freed temporaries back to the kernel when
    they exceed it, and the next step page-faults them in again; on this virtual machine a
    fault costs microseconds, so a step that allocates ~10 MB of temporaries pays
    milliseconds for it (the column of faults per step shows it);
``tuned``
    ``MALLOC_MMAP_THRESHOLD_=16 MiB`` and ``MALLOC_TRIM_THRESHOLD_=256 MiB`` in the
    environment: freed memory is kept and reused, no step page-faults.

Peak memory of a steady-state step is measured in a third run with
``MALLOC_MMAP_THRESHOLD_=64 KiB``: every block of 64 KiB or more is its own mapping,
returned to the kernel when freed, so the resident set follows the live arrays.  The peak
resident set (VmHWM, reset through ``/proc/self/clear_refs`` after the warm-up) over the
resident set before the timed steps is the step's peak memory.  Writes
``bench-results/bench_nn.md``.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import write_table  # noqa: E402

BATCH = 256


ALLOCATORS = {"default": {},
              "tuned": {"MALLOC_MMAP_THRESHOLD_": str(16 * 2**20),
                        "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)},
              "memory": {"MALLOC_MMAP_THRESHOLD_": str(64 * 2**10)}}


def _status(key):
    """A kB field of /proc/self/status (VmRSS, VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _faults():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


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
    """Run in a fresh process: (best step seconds, peak bytes of a step, faults per step)."""
    step = torch_step(kind) if who == "torch" else ours_step(kind, who)
    for _ in range(3):                              # warm-up (and compile)
        step()
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak resident set
        f.write("5")
    base, f0 = _status("VmRSS"), _faults()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return min(times), _status("VmHWM") - base, (_faults() - f0) / repeat


def _child(kind, who, repeat, alloc):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(ALLOCATORS[alloc])
    out = subprocess.run([sys.executable, __file__, "--child", kind, who, str(repeat)],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


MODELS = (("mlp", "MLP 64-512-512-10"), ("cnn", "small CNN (8x8 inputs)"))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, who, repeat = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(measure(kind, who, repeat)))
        return
    import torch
    rows, mem = [], []
    peers = (("torch", 30), ("fp32", 30), ("bf16-mixed", 10))
    for kind, label in MODELS:
        for alloc in ("default", "tuned"):
            r = {who: _child(kind, who, n, alloc) for who, n in peers}
            rows.append((label, alloc, r))
            t, f, b = (r[w][0] for w in ("torch", "fp32", "bf16-mixed"))
            print(f"{label} [{alloc}]: torch {t * 1e3:.2f} ms, fp32 {f * 1e3:.2f} ms "
                  f"({f / t:.2f}x), bf16-mixed {b * 1e3:.2f} ms ({b / f:.2f}x fp32); faults/step "
                  f"torch {r['torch'][2]:.0f}, fp32 {r['fp32'][2]:.0f}", flush=True)
        mem.append((label, {who: _child(kind, who, 5, "memory") for who, _ in peers}))
    md = ["# bench_nn: training step, batch 256, SGD momentum, one thread", "",
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, torch {torch.__version__}; best of 30 (10 for bf16) steps "
          "after 3 warm-up steps, each configuration in a fresh process; allocator settings "
          "in the script's docstring.", "",
          "| model | allocator | torch eager (ms) | refcomp fp32 (ms) | fp32 / torch (target "
          "<= 1.5) | refcomp bf16-mixed (ms) | bf16 / fp32 (target <= 5) | page faults / step "
          "torch | page faults / step fp32 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, alloc, r in rows:
        t, f, b = (r[w][0] for w in ("torch", "fp32", "bf16-mixed"))
        md.append(f"| {label} | {alloc} | {t * 1e3:.2f} | {f * 1e3:.2f} | {f / t:.2f} | "
                  f"{b * 1e3:.2f} | {b / f:.2f} | {r['torch'][2]:.0f} | {r['fp32'][2]:.0f} |")
    md += ["", "Peak memory of a steady-state step (every block >= 64 KiB mapped on its own):",
           "",
           "| model | torch (MB) | refcomp fp32 (MB) | refcomp bf16-mixed (MB) |",
           "|---|---:|---:|---:|"]
    for label, r in mem:
        md.append(f"| {label} | " + " | ".join(f"{r[w][1] / 2**20:.1f}"
                                              for w in ("torch", "fp32", "bf16-mixed")) + " |")
    write_table("bench_nn", md)


if __name__ == "__main__":
    main()
