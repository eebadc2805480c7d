"""Pure-bfloat16 training with nearest, stochastic and Kahan-compensated weight updates
against float32 (the effect of Zamirai et al., "Revisiting BFloat16 Training", 2020): an
update smaller than half a bf16 ulp of its weight is lost to round-to-nearest; stochastic
rounding keeps it in expectation, Kahan summation keeps the lost part in a compensation
buffer.

Trains the digits MLP (64-128-64-10) with plain SGD at two learning rates from the same
initial weights and batches; writes ``golden/reports/nn-bf16-updates.md`` (final train
loss, test accuracy, the fraction of weight updates that changed nothing in the last
epoch) and ``nn-bf16-updates.png`` (train loss per epoch).

    python scripts/nn_bf16_updates.py [--epochs 30] [--out golden/reports]
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import ROOT  # noqa: E402
from nn_formats import mlp, plot_panels  # noqa: E402
from refcomp import nn  # noqa: E402

POLICIES = [("float32", "fp32"), ("bf16, nearest", "bf16-pure"),
            ("bf16, stochastic", "bf16-pure-sr"), ("bf16, Kahan", "bf16-pure-kahan")]


class _Counting:
    """Wraps an optimizer and counts parameter elements a step left unchanged."""

    def __init__(self, opt):
        self.opt, self.same, self.total = opt, 0, 0

    def step(self, params, grads):
        new = self.opt.step(params, grads)
        for k, v in new.items():
            moved = grads[k] != 0
            self.same += int(np.sum((v == params[k]) & moved))
            self.total += int(np.sum(moved))
        return new


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "golden" / "reports"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = nn.data.load_digits(flat=True)
    rows, curves = [], {}
    for lr in (0.1, 0.01):
        for label, pol in POLICIES:
            opt = _Counting(nn.make_optimizer("sgd", pol, lr=lr, rng=np.random.default_rng(7)))
            model, brng = mlp(0), np.random.default_rng(2)
            first = nn.fit(model, data, pol, opt, epochs=a.epochs - 1, batch_size=32, rng=brng)
            opt.same = opt.total = 0                    # count over the last epoch only
            last = nn.fit(model, data, pol, opt, epochs=1, batch_size=32, rng=brng)
            loss = first.train_loss + last.train_loss
            acc = first.test_accuracy + last.test_accuracy
            lost = opt.same / max(opt.total, 1)
            rows.append((lr, label, pol, loss[-1], acc[-1], lost))
            curves[(lr, label)] = loss
            print(f"lr {lr:5g} {label:18s} loss {loss[-1]:.4f} acc {acc[-1]:.4f} "
                  f"unchanged {lost:.3f}", flush=True)
    md = ["# Pure bfloat16 training: nearest vs stochastic vs Kahan updates", "",
          f"Digits MLP 64-128-64-10, plain SGD (no momentum), batch 32, {a.epochs} epochs, same "
          "initial weights and batches.  'Unchanged' is the fraction of weight elements with a "
          "nonzero gradient whose stored value did not move, over the last epoch.  Produced by "
          "`python scripts/nn_bf16_updates.py`.", "",
          "| lr | updates | policy | final train loss | test accuracy | unchanged updates |",
          "|---:|---|---|---:|---:|---:|"]
    for lr, label, pol, loss, acc, lost in rows:
        md.append(f"| {lr:g} | {label} | `{pol}` | {loss:.4f} | {acc:.4f} | {lost:.3f} |")
    (out / "nn-bf16-updates.md").write_text("\n".join(md) + "\n")
    plot_panels(out / "nn-bf16-updates.png",
                [(f"SGD lr {lr:g}", {label: curves[(lr, label)] for label, _ in POLICIES})
                 for lr in (0.1, 0.01)], "train loss", logy=True)
    print(f"wrote {out / 'nn-bf16-updates.md'} and nn-bf16-updates.png")


if __name__ == "__main__":
    main()
