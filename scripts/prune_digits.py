"""Pruning on real data (issue 8, section 4): the digits MLP and small CNN of
``nn_formats.py``, trained in float32 exactly as there, then

1. accuracy versus sparsity: global L1 magnitude pruning of every Linear / Conv2d weight
   (:func:`refcomp.prune.global_unstructured`, torch's ``global_unstructured`` with
   ``L1Unstructured``) to each target sparsity, (a) one-shot without fine-tuning, (b)
   one-shot then fine-tuned, (c) iterative magnitude pruning through the same targets
   (:func:`refcomp.prune.iterative_prune`, from the same initial weights, cosine learning
   rate schedule): fine-tuning each round, learning-rate rewinding, weight rewinding to
   initialisation (the lottery-ticket procedure);
2. the Deep Compression curve (Han et al. 2016, without the Huffman stage): test accuracy
   versus compression ratio for pruning only (CSR, float32 values), weight quantization
   only (per-channel symmetric b-bit codes, dense) and pruning followed by quantization
   (CSR of b-bit codes); quantization is post-training, weight-only, torch's
   ``PerChannelMinMaxObserver`` rule with a custom ``[-2**(b-1), 2**(b-1) - 1]`` range
   (:func:`refcomp.quant.ptq.quantize_weight`), zeros stay zero;
3. structured pruning that removes neurons / channels (:mod:`refcomp.prune.structured`):
   parameter count, accuracy and forward time of the shrunk model.

Sizes are exact bytes of what each format stores (:mod:`refcomp.prune.sparse`): values at
their bit width, CSR column indices and row offsets at the smallest unsigned width that
holds them, per-channel float32 scales for quantized weights; biases (float32) are counted
in every model.  The compression ratio is the float32 model's bytes over the model's.

Writes ``golden/reports/prune-digits.md`` and ``prune-digits.png``.  Needs
``pip install -e '.[data,plot]'``.

    python scripts/prune_digits.py [--epochs 20] [--finetune 3] [--out golden/reports]
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import ROOT, best, versions  # noqa: E402
from nn_formats import cnn, mlp  # noqa: E402
from quant_digits import train, weighted  # noqa: E402
from refcomp import nn, prune  # noqa: E402
from refcomp.quant.observers import PerChannelMinMaxObserver  # noqa: E402
from refcomp.quant.ptq import quantize_weight  # noqa: E402

NETS = [("MLP 64-128-64-10", mlp, True), ("CNN 2x(conv3x3+pool)", cnn, False)]
SPARSITIES = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
BITS = [8, 6, 4, 3, 2]


def accuracy(model, data):
    x = data.x_test.astype(np.float32)
    return float(np.mean(np.argmax(nn.predict(model, x, "fp32"), 1) == data.y_test))


def finetune(model, data, epochs, seed):
    """SGD lr 0.01, momentum 0.9, batch 32, seeded batches."""
    if epochs <= 0:
        return model
    opt = nn.make_optimizer("sgd", "fp32", lr=0.01, momentum=0.9,
                            rng=np.random.default_rng(seed))
    nn.fit(model, data, "fp32", opt, epochs=epochs, batch_size=32,
           rng=np.random.default_rng(seed + 1))
    return model


def global_prune(model, sparsity):
    """Global L1 pruning of every weighted layer's weight to `sparsity` (in place)."""
    params = [(model.layers[i], "weight") for i in weighted(model)]
    prune.global_unstructured(params, prune.L1Unstructured, amount=sparsity)
    return model


def weights(model):
    """(layer index, effective float32 weight) of every weighted layer."""
    out = []
    for i in weighted(model):
        m = model.layers[i]
        w = prune.pruned_tensor(m, "weight") if prune.is_pruned(m) else m.params["weight"]
        out.append((i, np.asarray(w, np.float32)))
    return out


def bias_bytes(model):
    return sum(4 * model.layers[i].params["bias"].size for i in weighted(model))


def fp32_bytes(model):
    return sum(prune.dense_nbytes(w.shape, "float32") for _, w in weights(model)) + \
        bias_bytes(model)


def sparsity_of(model):
    ws = [w for _, w in weights(model)]
    return 1.0 - sum(int(np.count_nonzero(w)) for w in ws) / sum(w.size for w in ws)


def quantized(model, bits):
    """A copy whose weights are replaced by their b-bit per-channel symmetric fake-quant
    values, and its weights' bytes: {"dense": codes dense + scales, "csr": CSR of the
    codes + scales}."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    fmt = f"int{bits}"
    m = copy.deepcopy(model)
    dense = csr = 0
    for i, w in weights(model):
        obs = PerChannelMinMaxObserver(dtype="qint8", qscheme="per_channel_symmetric",
                                       quant_min=lo, quant_max=hi)
        codes, scale, _ = quantize_weight(w, obs)
        shape = (-1,) + (1,) * (w.ndim - 1)
        deq = codes.astype(np.float32) * scale.astype(np.float32).reshape(shape)
        layer = m.layers[i]
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")
        layer.params["weight"] = deq.astype(np.float32)
        scales = 4 * scale.size
        dense += prune.dense_nbytes(w.shape, fmt) + scales
        csr += prune.csr_nbytes(prune.to_csr(codes), fmt).total + scales
    return m, {"dense": dense, "csr": csr}


def csr_bytes(model):
    return sum(prune.csr_nbytes(prune.to_csr(w), "float32").total for _, w in weights(model))


def run_net(net, make, flat, a, log):
    model, data, _ = train(make, flat, a.epochs)
    base_acc, base_bytes = accuracy(model, data), fp32_bytes(model)
    log(f"{net}: float32 {base_acc:.4f}, {base_bytes} B")
    sweep, curve = [], []
    for s in SPARSITIES:
        one = global_prune(copy.deepcopy(model), s)
        acc0 = accuracy(one, data)
        ft = finetune(one, data, a.finetune, seed=10)
        acc1 = accuracy(ft, data)
        sweep.append((s, sparsity_of(ft), acc0, acc1))
        log(f"  sparsity {s:.2f}: one-shot {acc0:.4f}, fine-tuned {acc1:.4f}")
        size = csr_bytes(ft) + bias_bytes(ft)
        curve.append(("pruning only", f"{100 * s:.0f}% pruned", base_bytes / size, acc1))
        for b in (8, 4):
            qm, qb = quantized(ft, b)
            curve.append((f"pruning + {b}-bit", f"{100 * s:.0f}% pruned, {b}-bit",
                          base_bytes / (qb["csr"] + bias_bytes(ft)), accuracy(qm, data)))
    for b in BITS:
        qm, qb = quantized(model, b)
        curve.append(("quantization only", f"{b}-bit", base_bytes / (qb["dense"] +
                                                                     bias_bytes(model)),
                      accuracy(qm, data)))
    imp, imp_dense = imp_runs(make, data, a, log)
    return dict(base_acc=base_acc, base_bytes=base_bytes, sweep=sweep, curve=curve,
                imp=imp, imp_dense=imp_dense, structured=structured_rows(model, data, a, log))


#: the cosine schedule's end, so "fine-tune at the final learning rate" uses the one-shot
#: fine-tuning's learning rate
IMP_FINAL_LR = 0.01
IMP_RUNS = [("IMP, fine-tune", dict(rewind="none")),
            ("IMP, LR rewind (k=2)", dict(rewind="lr", rewind_epoch=2)),
            ("IMP, weight rewind (k=0, lottery ticket)", dict(rewind="weights",
                                                              rewind_epoch=0))]


def imp_runs(make, data, a, log):
    """Iterative magnitude pruning (:func:`refcomp.prune.iterative_prune`) from the same
    initial weights: the dense run is `a.epochs` epochs of SGD (lr 0.05, momentum 0.9,
    cosine-annealed to IMP_FINAL_LR), then one round per target of SPARSITIES, each pruning globally
    by L1 and retraining: "fine-tune" `a.finetune` epochs at the final learning rate,
    "LR rewind" replays the schedule from epoch 2, "weight rewind" resets the surviving
    weights to their initial values and replays the whole schedule.  Returns {name:
    [(target, achieved sparsity, accuracy) per round]} and the dense accuracy."""
    out, dense = {}, None
    for name, kw in IMP_RUNS:
        model = make(0)
        h = prune.iterative_prune(
            model, data, "fp32", sparsities=SPARSITIES, epochs=a.epochs, batch_size=32,
            seed=20, hyper={"lr": 0.05, "momentum": 0.9},
            lr_schedule=lambda opt: nn.schedule.CosineAnnealingLR(opt, T_max=a.epochs,
                                                                  eta_min=IMP_FINAL_LR),
            finetune_epochs=a.finetune, **kw)
        dense = h.rounds[0].test_accuracy
        out[name] = [(r.target, r.sparsity, r.test_accuracy) for r in h.rounds[1:]]
        log(f"  {name}: " + ", ".join(f"{t:.2f}->{acc:.4f}" for t, _, acc in out[name]))
    return out, dense


def structured_rows(model, data, a, log):
    """Remove a fraction of the hidden units / channels of every weighted layer but the
    last (smallest L2 norm, :func:`refcomp.prune.select_channels`), shrink the model
    (:func:`refcomp.prune.shrink`), fine-tune `a.finetune` epochs; parameters, accuracy
    before / after fine-tuning, forward time on the test set against the full model."""
    rows = []
    x = data.x_test.astype(np.float32)
    hidden = weighted(model)[:-1]

    def fwd_time(m):
        return best(lambda: nn.predict(m, x, "fp32"), repeat=20)

    full_t = fwd_time(model)
    rows.append(("none", prune.parameter_count(model), accuracy(model, data), None, full_t))
    for frac in (0.5, 0.75):
        keep = {i: prune.select_channels(model, i, frac, n=2) for i in hidden}
        small = prune.shrink(model, keep)
        acc0 = accuracy(small, data)
        finetune(small, data, a.finetune, seed=30)
        rows.append((f"{100 * frac:.0f}% of units", prune.parameter_count(small), acc0,
                     accuracy(small, data), fwd_time(small)))
        log(f"  structured {frac:.2f}: {rows[-1][1]} parameters, {acc0:.4f} -> "
            f"{rows[-1][3]:.4f}")
    return rows


def plot(path, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    ax = axes[0]
    for net, r in results.items():
        s = [100 * row[0] for row in r["sweep"]]
        tag = net.split()[0]
        for k, (label, ls) in enumerate((("one-shot", ":"), ("one-shot + fine-tune", "--")),
                                        start=2):
            ax.plot(s, [100 * row[k] for row in r["sweep"]], ls, marker="o", ms=3,
                    label=f"{tag} {label}")
        for name, pts in r["imp"].items():
            ax.plot([100 * p[0] for p in pts], [100 * p[2] for p in pts], "-", marker=".",
                    label=f"{tag} {name}")
    ax.set_xlabel("weights pruned (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs sparsity (global L1)")
    ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax = axes[1]
    markers = {"pruning only": "o", "quantization only": "s", "pruning + 8-bit": "^",
               "pruning + 4-bit": "v"}
    for net, r in results.items():
        for kind, mk in markers.items():
            pts = sorted((c[2], c[3]) for c in r["curve"] if c[0] == kind)
            if pts:
                ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker=mk, ms=4,
                        ls="-" if net.startswith("MLP") else "--",
                        label=f"{net.split()[0]} {kind}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([1.5, 2, 3, 5, 7, 10, 15, 20, 30])
    ax.set_xlabel("compression ratio (float32 bytes / bytes, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Deep Compression curve (no Huffman stage)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results, a, secs):
    md = ["# Pruning on the UCI digits", "",
          f"The MLP and CNN of `scripts/nn_formats.py`, trained in float32 exactly as there "
          f"({a.epochs} epochs), then pruned.  Produced by `python scripts/prune_digits.py` "
          f"in {secs:.0f} s.", "", "## Accuracy versus sparsity", "",
          "Global L1 magnitude pruning of all Linear / Conv2d weights (biases kept).  "
          f"Fine-tuning: {a.finetune} epochs of SGD (lr 0.01, momentum 0.9, batch 32).  "
          "Iterative (IMP): its own dense run from the same initial weights (SGD lr 0.05, "
          f"momentum 0.9, cosine annealing to {IMP_FINAL_LR} over the {a.epochs} epochs), "
          "then one prune-and-retrain round per target in the order listed: fine-tune "
          f"{a.finetune} epochs per round at the final learning rate {IMP_FINAL_LR} (the "
          "one-shot fine-tuning's budget and rate); LR rewind: replay the schedule from "
          f"epoch 2 ({a.epochs - 2} epochs per round); weight rewind: reset the surviving "
          f"weights to initialisation and replay the whole schedule ({a.epochs} epochs "
          "per round).  One seed; one test image is "
          f"{100 / 359:.2f} points, so differences of a point or less are noise.", "",
          "| network | target sparsity | achieved | one-shot | one-shot + fine-tune | "
          + " | ".join(n for n, _ in IMP_RUNS) + " |",
          "|---|---:|---:|---:|---:|" + "---:|" * len(IMP_RUNS)]
    for net, r in results.items():
        md.append(f"| {net} | 0 (float32) | 0 | {r['base_acc']:.4f} | - | "
                  + " | ".join(f"{r['imp_dense']:.4f}" for _ in IMP_RUNS) + " |")
        for k, (s, got, a0, a1) in enumerate(r["sweep"]):
            imp = [r["imp"][n][k] for n, _ in IMP_RUNS]
            assert all(abs(p[0] - s) < 1e-12 for p in imp)
            md.append(f"| {net} | {s:.2f} | {got:.4f} | {a0:.4f} | {a1:.4f} | "
                      + " | ".join(f"{p[2]:.4f}" for p in imp) + " |")
    md += ["", "Largest target sparsity up to which every target's test accuracy is within 1 "
           "point of the dense model's (float32 for the one-shot columns, IMP's own dense "
           "run for the IMP columns; the seed's \"most weights can be pruned with little "
           "accuracy loss\"):", ""]
    for net, r in results.items():
        cols = [("one-shot", [(row[0], row[2]) for row in r["sweep"]]),
                ("one-shot + fine-tune", [(row[0], row[3]) for row in r["sweep"]])] + \
            [(n, [(p[0], p[2]) for p in r["imp"][n]]) for n, _ in IMP_RUNS]
        dense = {name: r["imp_dense"] if name.startswith("IMP") else r["base_acc"]
                 for name, _ in cols}
        md.append(f"- {net}: " + "; ".join(
            f"{name} {_within(pts, dense[name])}" for name, pts in cols) + ".")
    md += ["", "## Deep Compression curve", "",
           "| network | method | setting | compression ratio | test accuracy |",
           "|---|---|---|---:|---:|"]
    for net, r in results.items():
        for kind, setting, ratio, acc in sorted(r["curve"], key=lambda c: (c[0], c[2])):
            md.append(f"| {net} | {kind} | {setting} | {ratio:.1f}x | {acc:.4f} |")
    md += ["", "Largest compression ratio within 1 point of float32: " + "; ".join(
        f"{net.split()[0]} " + ", ".join(
            f"{kind} {_best_ratio(r, kind)}" for kind in
            ("pruning only", "quantization only", "pruning + 8-bit", "pruning + 4-bit"))
        for net, r in results.items()) + "."]
    md += ["", "## Structured pruning (units removed)", "",
           "Every weighted layer but the last loses the given fraction of its output units "
           "(smallest L2 norm), the model is rebuilt smaller (`refcomp.prune.shrink`: the "
           "next layer loses the matching inputs), then fine-tuned.  Forward time: the "
           "whole test set, fp32 policy, best of 20.", "",
           "| network | removed | parameters | accuracy after removal | after fine-tune | "
           "forward time (ms) |", "|---|---|---:|---:|---:|---:|"]
    for net, r in results.items():
        for name, n, acc0, acc1, t in r["structured"]:
            md.append(f"| {net} | {name} | {n} | {acc0:.4f} | "
                      + ("-" if acc1 is None else f"{acc1:.4f}") + f" | {1000 * t:.2f} |")
    md += ["", "## Versions", "", versions("Pruning mirrors torch 2.13's torch.nn.utils.prune; torch itself is not run.")]
    return "\n".join(md) + "\n"


def _within(pts, base, tol=0.01):
    """The largest target up to which every (target, accuracy) is within `tol` of base."""
    best = None
    for t, acc in sorted(pts):
        if acc < base - tol:
            break
        best = t
    return "none of the targets" if best is None else f"{100 * best:.0f}%"


def _best_ratio(r, kind, tol=0.01):
    ok = [c[2] for c in r["curve"] if c[0] == kind and c[3] >= r["base_acc"] - tol]
    return f"{max(ok):.1f}x" if ok else "-"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--finetune", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "golden" / "reports"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(msg):
        print(f"{msg} ({time.perf_counter() - t0:.0f}s)", flush=True)

    results = {net: run_net(net, make, flat, a, log) for net, make, flat in NETS}
    secs = time.perf_counter() - t0
    (out / "prune-digits.md").write_text(report(results, a, secs))
    plot(out / "prune-digits.png", results)
    print(f"wrote {out / 'prune-digits.md'} and prune-digits.png in {secs:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
