"""The "Making Models Smaller" table on real data: the same MLP and small CNN trained on the
UCI digits (scikit-learn's bundled copy) with float64, float32 and emulated bfloat16
(pure bf16: weights, activations, gradients, optimizer state; and bf16 compute with fp32
master weights) from the same initial weights and the same batches.

Writes ``golden/reports/nn-formats.md`` (final test accuracy, weight memory of the stored
parameters -- elements times the bytes of the master format --, wall time) and
``nn-formats.png`` (test accuracy per epoch).  Needs ``pip install -e '.[data,plot]'``.

    python scripts/nn_formats.py [--epochs 20] [--out golden/reports]
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import ROOT  # noqa: E402
from refcomp import nn  # noqa: E402

POLICIES = [("float64", "fp64"), ("float32", "fp32"), ("bfloat16 (pure)", "bf16-pure"),
            ("bfloat16 compute, fp32 master", "bf16-mixed")]


def mlp(seed):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, 128, rng=r), nn.ReLU(), nn.Linear(128, 64, rng=r),
                         nn.ReLU(), nn.Linear(64, 10, rng=r))


def cnn(seed):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, rng=r), nn.ReLU(),
                         nn.MaxPool2d(kernel_size=2), nn.Conv2d(16, 32, 3, padding=1, rng=r),
                         nn.ReLU(), nn.MaxPool2d(kernel_size=2), nn.Flatten(),
                         nn.Linear(128, 10, rng=r))


def run(make, flat, policy, epochs, seed=0):
    data = nn.data.load_digits(flat=flat)
    model = make(seed)
    opt = nn.make_optimizer("sgd", policy, lr=0.05, momentum=0.9,
                            rng=np.random.default_rng(seed + 1))
    t = time.perf_counter()
    hist = nn.fit(model, data, policy, opt, epochs=epochs, batch_size=32,
                  rng=np.random.default_rng(seed + 2))
    elapsed = time.perf_counter() - t
    p = nn.get_policy(policy)
    n_params = sum(v.size for v in model.named_parameters().values())
    memory = n_params * p.master_spec.format.width / 8
    return hist, elapsed, n_params, memory


def plot_panels(path, panels, ylabel, logy=False):
    """One subplot per (title, {label: per-epoch values}) panel, side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (title, lines) in zip(axes, panels):
        for label, values in lines.items():
            ax.plot(range(1, len(values) + 1), values, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "golden" / "reports"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for _, pol in POLICIES:                         # compile every kernel before timing
        run(mlp, True, pol, 1)
        run(cnn, False, pol, 1)
    for net, make, flat in (("MLP 64-128-64-10", mlp, True), ("CNN 2x(conv3x3+pool)", cnn, False)):
        for label, pol in POLICIES:
            hist, secs, n, mem = run(make, flat, pol, a.epochs)
            rows.append((net, label, pol, n, mem, hist.test_accuracy[-1], hist.train_loss[-1],
                         secs))
            curves[(net, label)] = hist.test_accuracy
            print(f"{net:22s} {label:30s} acc {hist.test_accuracy[-1]:.4f} {secs:6.1f}s",
                  flush=True)
    digits = nn.data.load_digits()
    md = ["# Making Models Smaller, on the UCI digits", "",
          f"Same initial weights and batches per network; SGD lr 0.05, momentum 0.9, batch 32, "
          f"{a.epochs} epochs, {len(digits.x_train)} training / {len(digits.x_test)} test "
          "images; one thread.  Memory: stored "
          "parameters (master copy) at the bytes of their format.  Produced by "
          "`python scripts/nn_formats.py`.", "",
          "| network | format | policy | parameters | weight memory (KB) | test accuracy "
          "| final train loss | train time (s) |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for net, label, pol, n, mem, acc, loss, secs in rows:
        md.append(f"| {net} | {label} | `{pol}` | {n} | {mem / 1024:.1f} | {acc:.4f} | "
                  f"{loss:.4f} | {secs:.1f} |")
    (out / "nn-formats.md").write_text("\n".join(md) + "\n")
    plot_panels(out / "nn-formats.png", [(net, {label: curves[(net, label)]
                                                for label, _ in POLICIES})
                                          for net in ("MLP 64-128-64-10",
                                                      "CNN 2x(conv3x3+pool)")],
                "test accuracy")
    print(f"wrote {out / 'nn-formats.md'} and nn-formats.png")


if __name__ == "__main__":
    main()
