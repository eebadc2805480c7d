"""Mixed Precision Training on the UCI digits (issue 9, section 4): the gradient histogram of
Micikevicius et al., "Mixed Precision Training" (ICLR 2018, Fig. 3) and loss scaling,
on the MLP and the small CNN of ``nn_formats.py``.

1. **Gradient magnitudes.**  The float32 model is trained (SGD lr 0.05, momentum 0.9, batch
   32, the batches of :func:`refcomp.nn.fit`); every ``--hist-every``-th step the batch is
   also run through ``model.forward`` and a hand-written walk of ``model.layers`` backward
   that records every activation gradient -- the gradient of the loss with respect to the
   logits and every layer's input gradient ``dx`` except the first layer's (the gradient
   with respect to the image, which training does not compute) -- and every weight / bias
   gradient, with loss scale 1.  The histogram of log2|g| is drawn against the float16
   range (smallest subnormal 2^-24, smallest normal 2^-14, largest 65504), and each value
   times a loss scale S is rounded into float16 by refcomp's rounding core
   (:func:`refcomp.nn.policy.round_to`, i.e. :func:`refcomp.cast`): the fraction that
   flushes to zero, becomes subnormal, or overflows, for S = 1, 8, 2^10, 2^16 and the
   scales the dynamic scaler settles at in the fp16 runs of part 2.
2. **Training.**  From the same initial weights and batches: float32; float16 compute with
   float32 master weights (``fp16-mixed``) with loss scale 1, static 2^10 and 2^16
   (:class:`refcomp.nn.StaticScaler`: a step with an inf/NaN gradient is skipped and the
   scale stays), dynamic loss scaling (:class:`refcomp.amp.GradScaler`, torch's defaults,
   and with growth_interval 50 so that the scale moves within this short run); bfloat16
   compute (``bf16-mixed``, no scaling).  Final and per-epoch test accuracy, skipped steps,
   the loss scale over time, the fraction of weight-gradient entries that are exactly zero.
3. **A labelled variant that moves the histogram down** (``--shift``): the loss multiplied
   by 2^-k and the learning rate by 2^k.  In float32 (and bfloat16, which has float32's
   exponent range) this is the same training bit for bit -- every gradient is the original
   times 2^-k exactly -- so it stands for a network whose gradients sit k binades lower
   (as in the paper's larger networks); in float16 without scaling those gradients flush
   to zero.  It is not the digits network's own behaviour.

Writes ``golden/reports/mpt-digits.md`` and ``mpt-digits.png``.  Needs
``pip install -e '.[data,plot]'``.

    python scripts/mpt_digits.py [--epochs 20] [--hist-every 5] [--shift 16,18]
                                 [--nets mlp,cnn] [--variant-nets mlp]
                                 [--out golden/reports]
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import ROOT, versions  # noqa: E402
from nn_formats import cnn, mlp  # noqa: E402
from refcomp import nn  # noqa: E402
from refcomp.nn.loss import cross_entropy_backward, cross_entropy_forward  # noqa: E402
from refcomp.nn.policy import round_to  # noqa: E402

from refcomp.amp import GradScaler  # noqa: E402

SCALER_SOURCE = "`refcomp.amp.GradScaler`"
NETS = {"mlp": ("MLP 64-128-64-10", mlp, True), "cnn": ("CNN 2x(conv3x3+pool)", cnn, False)}
LR, MOMENTUM, BATCH = 0.05, 0.9, 32
FP16_TINY, FP16_MIN_NORMAL, FP16_MAX = 2.0 ** -24, 2.0 ** -14, 65504.0
CE = (cross_entropy_forward, cross_entropy_backward)

# (label, policy, scaler factory or None, short key); dynamic keys start with "dyn"
RUNS = [("float32", "fp32", None, "fp32"),
        ("fp16, no loss scaling (S = 1)", "fp16-mixed", lambda: nn.StaticScaler(1.0), "s1"),
        ("fp16, static S = 2^10", "fp16-mixed", lambda: nn.StaticScaler(2.0 ** 10), "s10"),
        ("fp16, static S = 2^16", "fp16-mixed", lambda: nn.StaticScaler(2.0 ** 16), "s16"),
        ("fp16, dynamic (GradScaler defaults)", "fp16-mixed", lambda: GradScaler(), "dyn"),
        ("fp16, dynamic (growth_interval 50)", "fp16-mixed",
         lambda: GradScaler(growth_interval=50), "dyn50"),
        ("bf16-mixed (no scaling)", "bf16-mixed", None, "bf16")]
VARIANT_RUNS = ("fp32", "s1", "dyn", "dyn50", "bf16")


def log2s(s):
    e = np.log2(s)
    return f"2^{e:g}" if e == round(e) else f"2^{e:.2f}"


def shifted_loss(k):
    """Cross-entropy whose backward uses dloss = S * 2^-k: the gradients of L * 2^-k."""
    f = 2.0 ** -k
    return (cross_entropy_forward, lambda S, lc: cross_entropy_backward(S * f, lc))


def collect(model, x, target, p):
    """Activation gradients (d loss / d logits and every layer's input gradient but the
    first's) and weight gradients of one batch, loss scale 1, flattened to float64."""
    y, caches = model.forward(p.activations.round(x, None, p.activations.carrier), p,
                              train=True)
    _, lc = cross_entropy_forward(y, target, p)
    dy, _ = cross_entropy_backward(1.0, lc)
    acts, ws = [np.asarray(dy, np.float64).ravel()], []
    for i in range(len(model.layers) - 1, -1, -1):
        dy, g = model.layers[i].backward(dy, caches[i], need_dx=i > 0)
        if i > 0:
            acts.append(np.asarray(dy, np.float64).ravel())
        ws += [np.asarray(v, np.float64).ravel() for v in g.values()]
    return np.concatenate(acts), np.concatenate(ws)


def gradient_sample(make, data, epochs, every, seed=0):
    """Train the float32 model with nn.fit's batches and steps; sample gradients every
    `every` steps.  Returns (activation grads, weight grads, steps sampled, final params)."""
    p = nn.get_policy("fp32")
    model = nn.prepare(make(seed), p)
    opt = nn.make_optimizer("sgd", p, lr=LR, momentum=MOMENTUM,
                            rng=np.random.default_rng(seed + 1))
    rng = np.random.default_rng(seed + 2)
    acts, ws, step = [], [], 0
    for _ in range(epochs):
        for idx in nn.data.batches(len(data.x_train), BATCH, rng):
            if step % every == 0:
                a, w = collect(model, data.x_train[idx], data.y_train[idx], p)
                acts.append(a)
                ws.append(w)
            nn.train_step(model, data.x_train[idx], data.y_train[idx], CE, opt, p, rng=rng)
            step += 1
    return np.concatenate(acts), np.concatenate(ws), len(acts), model.named_parameters()


def fp16_effect(g, scale):
    """Of the nonzero float32 values g, scaled by `scale` and rounded into float16: the
    fractions flushed to zero, subnormal, overflowed, and the share of sum |g| flushed."""
    nz = g[g != 0]
    r = round_to(nz * scale, "float16")
    a = np.abs(r)
    flushed = r == 0
    return dict(flush=np.mean(flushed), subnormal=np.mean((a > 0) & (a < FP16_MIN_NORMAL)),
                overflow=np.mean(~np.isfinite(r)),
                mass=np.abs(nz[flushed]).sum() / np.abs(nz).sum())


def distribution(g):
    nz = g[g != 0]
    lg = np.log2(np.abs(nz))
    return dict(n=g.size, zero=1 - nz.size / g.size,
                pct=np.percentile(lg, [0, 1, 5, 50, 95, 99, 100]),
                below_tiny=np.mean(np.abs(nz) < FP16_TINY),
                below_normal=np.mean(np.abs(nz) < FP16_MIN_NORMAL),
                headroom=np.log2(FP16_MAX) - lg.max())


def train(make, flat, policy, scaler, epochs, loss=CE, lr=LR, seed=0):
    data = nn.data.load_digits(flat=flat)
    model = make(seed)
    opt = nn.make_optimizer("sgd", policy, lr=lr, momentum=MOMENTUM,
                            rng=np.random.default_rng(seed + 1))
    steps = []                                        # (scale used, found_inf, zero frac)

    def on_step(r):
        zero = total = 0
        if not r.found_inf:
            for g in r.grads.values():
                zero += int(np.count_nonzero(g == 0))
                total += g.size
        steps.append((r.scale, r.found_inf, zero / total if total else np.nan))

    t = time.perf_counter()
    hist = nn.fit(model, data, policy, opt, epochs=epochs, batch_size=BATCH,
                  rng=np.random.default_rng(seed + 2), loss=loss, scaler=scaler,
                  on_step=on_step)
    return dict(hist=hist, steps=steps, secs=time.perf_counter() - t,
                params=model.named_parameters())


def settled(steps, epochs):
    """The scale a dynamic run settles at: the median of the scales used in the last
    epoch's steps."""
    per = len(steps) // epochs
    return float(np.median([s for s, _, _ in steps[-per:]]))


def same_params(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def scale_changes(steps, limit=8):
    """'2^16 (steps 1-3), 2^15 (4-...)' : the runs of equal scale."""
    out, start = [], 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or steps[i][0] != steps[start][0]:
            out.append(f"{log2s(steps[start][0])} ({start + 1}-{i})")
            start = i
    if len(out) > limit:
        out = out[:limit // 2] + [f"... {len(out) - limit} more ..."] + out[-limit // 2:]
    return ", ".join(out)


def plot(path, nets, hists, results, variants, dyn_scales, shifts):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(nets)
    fig, axes = plt.subplots(3, 2, figsize=(13, 13), squeeze=False)
    for j in range(n, 2):                             # one network: empty top panels
        fig.delaxes(axes[0, j])
        fig.delaxes(axes[1, j])
    bins = np.arange(-90, 21, 1.0)
    for j, key in enumerate(nets):
        name = NETS[key][0]
        ax = axes[0, j]
        acts, ws = hists[key]
        for g, label in ((acts, "activation gradients"), (ws, "weight gradients")):
            nz = g[g != 0]
            w = np.full(nz.size, 100.0 / nz.size)
            ax.hist(np.log2(np.abs(nz)), bins=bins, weights=w, histtype="step", lw=1.5,
                    label=f"{label} ({100 * (1 - nz.size / g.size):.0f}% exactly 0)")
        ax.axvspan(bins[0], -24, color="red", alpha=0.08)
        ax.axvline(-24, color="red", lw=1, label="fp16 smallest subnormal 2^-24")
        ax.axvline(-14, color="orange", lw=1, label="fp16 smallest normal 2^-14")
        ax.axvline(np.log2(FP16_MAX), color="purple", lw=1, label="fp16 largest 65504")
        for s, style in ((8.0, ":"), (2.0 ** 16, "--")) + tuple(
                (d, "-.") for d in sorted(set(dyn_scales.get(key, ()))) if d not in (8, 2 ** 16)):
            ax.axvline(-24 - np.log2(s), color="grey", ls=style, lw=1,
                       label=f"flush threshold with S = {log2s(s)}")
        ax.set_yscale("log")
        ax.set_xlabel("log2 |gradient|  (float32 training, loss scale 1)")
        ax.set_ylabel("% of nonzero values")
        ax.set_title(f"{name}: gradient magnitudes vs the float16 range")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        ax = axes[1, j]
        for label, _, _, rk in RUNS:
            acc = results[key][rk]["hist"].test_accuracy
            ax.plot(range(1, len(acc) + 1), acc, label=label, marker=".")
        ax.set_title(f"{name}: test accuracy")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    ax = axes[2, 0]
    for key in nets:
        for rk in ("dyn", "dyn50"):
            s = [v[0] for v in results[key][rk]["steps"]]
            ax.plot(np.log2(s), label=f"{NETS[key][0]}, {rk}", lw=1)
        for k in variants[key]:
            s = [v[0] for v in variants[key][k]["dyn50"]["steps"]]
            ax.plot(np.log2(s), ls="--", lw=1,
                    label=f"{NETS[key][0]}, dyn50, variant loss x 2^-{k}")
    ax.set_title("loss scale over training steps (dynamic scaling)")
    ax.set_xlabel("step")
    ax.set_ylabel("log2 loss scale")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[2, 1]
    if not any(variants.values()):
        fig.delaxes(ax)
    else:
        for key in nets:
            for k in variants[key]:
                for rk, style in (("fp32", "-"), ("s1", "--"), ("dyn", ":")):
                    acc = variants[key][k][rk]["hist"].test_accuracy
                    ax.plot(range(1, len(acc) + 1), acc, ls=style, marker=".",
                            label=f"{NETS[key][0]}, x 2^-{k}: {rk}")
        ax.set_title("VARIANT (loss x 2^-k, lr x 2^k): test accuracy")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pct(x, digits=2):
    return f"{100 * x:.{digits}f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hist-every", type=int, default=5,
                    help="sample the float32 gradients every N-th training step")
    ap.add_argument("--shift", default="16,18",
                    help="comma-separated k of the variant (loss x 2^-k, lr x 2^k); "
                         "empty: no variant")
    ap.add_argument("--nets", default="mlp,cnn")
    ap.add_argument("--variant-nets", default="mlp",
                    help="networks the variant runs on (of --nets; default the MLP only, "
                         "to keep the run short)")
    ap.add_argument("--out", default=str(ROOT / "golden" / "reports"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    nets = [k.strip() for k in a.nets.split(",") if k.strip()]
    for k in nets:
        if k not in NETS:
            ap.error(f"unknown network {k!r} (known: {', '.join(NETS)})")
    shifts = [int(s) for s in a.shift.split(",") if s.strip()]
    vnets = [k.strip() for k in a.variant_nets.split(",") if k.strip() in nets]
    t0 = time.perf_counter()
    hists, dists, samples, results, variants, dyn_scales, checks = {}, {}, {}, {}, {}, {}, []
    for key in nets:
        name, make, flat = NETS[key]
        data = nn.data.load_digits(flat=flat)
        acts, ws, n_sampled, p_collect = gradient_sample(make, data, a.epochs, a.hist_every)
        hists[key], samples[key] = (acts, ws), n_sampled
        dists[key] = {"activation": distribution(acts), "weight": distribution(ws)}
        results[key] = {}
        for label, pol, mk, rk in RUNS:
            r = train(make, flat, pol, mk() if mk else None, a.epochs)
            results[key][rk] = r
            print(f"{name:22s} {label:38s} acc {r['hist'].test_accuracy[-1]:.4f} skipped "
                  f"{sum(r['hist'].skipped):4d} {r['secs']:5.1f}s", flush=True)
        checks.append((f"{name}: the gradient-sampling loop ends with the same float32 "
                       "parameters as `nn.fit` (same steps)",
                       same_params(p_collect, results[key]["fp32"]["params"])))
        dyn_scales[key] = [settled(results[key][rk]["steps"], a.epochs)
                           for rk in ("dyn", "dyn50")]
        variants[key] = {}
        for k in (shifts if key in vnets else ()):
            variants[key][k] = {}
            for label, pol, mk, rk in RUNS:
                if rk not in VARIANT_RUNS:
                    continue
                r = train(make, flat, pol, mk() if mk else None, a.epochs,
                          loss=shifted_loss(k), lr=LR * 2.0 ** k)
                variants[key][k][rk] = r
                print(f"{name:22s} x2^-{k} {label:38s} acc {r['hist'].test_accuracy[-1]:.4f} "
                      f"skipped {sum(r['hist'].skipped):4d} {r['secs']:5.1f}s", flush=True)
            for rk in ("fp32", "bf16"):
                checks.append((f"{name}, loss x 2^-{k}, lr x 2^{k}: {rk} parameters bit-"
                               f"identical to the unshifted {rk} run",
                               same_params(variants[key][k][rk]["params"],
                                           results[key][rk]["params"])))
    total_secs = time.perf_counter() - t0
    plot(out / "mpt-digits.png", nets, hists, results, variants, dyn_scales, shifts)
    md = report(a, nets, dists, samples, hists, results, variants, dyn_scales, shifts,
                checks, total_secs)
    (out / "mpt-digits.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / 'mpt-digits.md'} and mpt-digits.png in {total_secs:.0f} s")
    return 0


def report(a, nets, dists, samples, hists, results, variants, dyn_scales, shifts, checks,
           total_secs):
    digits = nn.data.load_digits()
    steps_per_epoch = -(-len(digits.x_train) // BATCH)
    md = ["# Mixed Precision Training on the UCI digits: gradient range and loss scaling", "",
          f"The MLP and CNN of `nn_formats.py`; SGD lr {LR}, momentum {MOMENTUM}, batch "
          f"{BATCH}, {a.epochs} epochs ({steps_per_epoch} steps each), "
          f"{len(digits.x_train)} training / {len(digits.x_test)} test images, one seed: "
          "the same initial weights and batches for every run.  fp16 = `fp16-mixed` "
          "(float16 weights copy, activations, gradients, fp32-accumulated matmuls, float32 "
          "master weights and optimizer state); bf16 = `bf16-mixed`.  Dynamic scaling: "
          f"{SCALER_SOURCE} (init 2^16, growth x2, backoff x0.5).  A test image is "
          f"{100 / len(digits.x_test):.2f} accuracy points; one seed, so differences of a "
          "point or so between runs are noise.  Produced by `python scripts/mpt_digits.py"
          f"{'' if a.epochs == 20 else f' --epochs {a.epochs}'}` in {total_secs:.0f} s.", "",
          "## 1. Gradient magnitudes of float32 training (the paper's Fig. 3)", "",
          f"Sampled every {a.hist_every}th step of the float32 run, loss scale 1.  "
          "Activation gradients: d loss / d logits and every layer's input gradient except "
          "the first layer's (ReLU, pool, flatten included: every tensor of the backward "
          "pass); weight gradients: weights and biases.  Percentiles of log2|g| over the "
          "nonzero values.  fp16: smallest subnormal 2^-24 (values below 2^-25 round to 0), "
          "smallest normal 2^-14, largest 65504 (2^15.999).  Headroom: how many binades the "
          "largest value can be scaled up before it passes 65504.", "",
          "| network | gradients | steps sampled | values | exactly 0 (%) | min | 1% | 5% "
          "| median | 95% | 99% | max | nonzero < 2^-24 (%) | nonzero < 2^-14 (%) "
          "| headroom (binades) |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in nets:
        for kind, d in dists[key].items():
            q = d["pct"]
            md.append(f"| {NETS[key][0]} | {kind} | {samples[key]} | {d['n']} | "
                      f"{pct(d['zero'], 1)} | " + " | ".join(f"{v:.1f}" for v in q) +
                      f" | {pct(d['below_tiny'])} | {pct(d['below_normal'])} | "
                      f"{d['headroom']:.1f} |")
    md += ["", "### The same values scaled by S and rounded into float16", "",
           "Fractions of the nonzero float32 values; *mass lost*: the share of sum |g| "
           "carried by the values that flush to zero.  Dynamic: the scale the GradScaler "
           "runs of section 2 settle at (median scale over their last epoch).  Values that "
           "overflow make the step's gradients inf: the scaler skips the step.", "",
           "| network | gradients | loss scale S | flushed to 0 (%) | subnormal (%) "
           "| overflow to inf (%) | mass lost (%) |", "|---|---|---|---:|---:|---:|---:|"]
    effects = {}
    for key in nets:
        dyn, dyn50 = dyn_scales[key]
        scales = [("1", 1.0), ("8", 8.0), ("2^10", 2.0 ** 10), ("2^16", 2.0 ** 16),
                  ("2^24 (to show overflow)", 2.0 ** 24),
                  (f"dynamic, defaults: {log2s(dyn)}", dyn),
                  (f"dynamic, growth_interval 50: {log2s(dyn50)}", dyn50)]
        for kind, g in zip(("activation", "weight"), hists[key]):
            for label, s in scales:
                e = fp16_effect(g, s)
                effects[(key, kind, label)] = e
                md.append(f"| {NETS[key][0]} | {kind} | {label} | {pct(e['flush'])} | "
                          f"{pct(e['subnormal'])} | {pct(e['overflow'], 4)} | "
                          f"{pct(e['mass'], 6)} |")
    md += ["", "## 2. Training in fp32, fp16 (with and without loss scaling) and bf16", "",
           "Skipped: steps with an inf/NaN gradient (`StepResult.found_inf`), whose update "
           "is skipped.  Zero grad entries: mean over the applied steps of the fraction of "
           "weight/bias gradient entries (after unscaling, in the master format) that are "
           "exactly 0.  Loss scale: the scale used at each step, as runs of equal "
           "scale `scale (first step-last step)`.", "",
           "| network | run | policy | final test accuracy | best | skipped steps "
           "| zero grad entries (%) | loss scale over the run | time (s) |",
           "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for key in nets:
        for label, pol, _, rk in RUNS:
            r = results[key][rk]
            h = r["hist"]
            zeros = np.nanmean([z for _, _, z in r["steps"]]) if r["steps"] else np.nan
            md.append(f"| {NETS[key][0]} | {label} | `{pol}` | {h.test_accuracy[-1]:.4f} | "
                      f"{max(h.test_accuracy):.4f} | {sum(h.skipped)} | {pct(zeros, 1)} | "
                      f"{scale_changes(r['steps'])} | {r['secs']:.1f} |")
    for key in nets:
        md += ["", f"### Test accuracy per epoch: {NETS[key][0]}", "",
               "| epoch | " + " | ".join(rk for _, _, _, rk in RUNS) +
               " | skipped (s16, dyn, dyn50) | scale at epoch end (dyn, dyn50) |",
               "|---:|" + "---:|" * len(RUNS) + "---|---|"]
        for e in range(a.epochs):
            hs = {rk: results[key][rk]["hist"] for _, _, _, rk in RUNS}
            md.append(f"| {e + 1} | " + " | ".join(f"{hs[rk].test_accuracy[e]:.4f}"
                                                    for _, _, _, rk in RUNS) +
                      f" | {hs['s16'].skipped[e]}, {hs['dyn'].skipped[e]}, "
                      f"{hs['dyn50'].skipped[e]} | {log2s(hs['dyn'].scale[e])}, "
                      f"{log2s(hs['dyn50'].scale[e])} |")
    md += ["", "Columns: " + "; ".join(f"{rk} = {label}" for label, _, _, rk in RUNS) + "."]
    if any(variants.values()):
        md += ["", "## 3. VARIANT (not the digits network's own gradients): loss x 2^-k, "
               "learning rate x 2^k", "",
               "The cross-entropy backward is called with dloss = S * 2^-k (the gradients "
               "of L * 2^-k) and the SGD learning rate is multiplied by 2^k.  In float32 "
               "every gradient is then the original times 2^-k exactly and the update "
               "lr * momentum buffer is the same number, so the float32 (and bf16, same "
               "exponent range) training is bit-identical (checked below): the variant "
               "stands for a network whose gradients sit k binades lower, and shows what "
               "fp16 without loss scaling does to such gradients.  Fractions: the "
               "section-1 float32 gradients times 2^-k times S.  Run on: " +
               ", ".join(NETS[key][0] for key in nets if variants[key]) +
               " (`--variant-nets`).", "",
               "| network | k | run | final test accuracy | best | skipped steps "
               "| zero grad entries (%) | act. grads flushed (%) | weight grads flushed (%) "
               "| weight-grad mass lost (%) | loss scale over the run |",
               "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for key in nets:
            for k in variants[key]:
                for label, _, _, rk in RUNS:
                    if rk not in VARIANT_RUNS:
                        continue
                    r = variants[key][k][rk]
                    h = r["hist"]
                    zeros = np.nanmean([z for _, _, z in r["steps"]])
                    if rk in ("fp32", "bf16"):
                        fa = fw = ml = "-"
                    else:
                        s = settled(r["steps"], a.epochs) * 2.0 ** -k
                        ea, ew = fp16_effect(hists[key][0], s), fp16_effect(hists[key][1], s)
                        fa, fw, ml = pct(ea["flush"]), pct(ew["flush"]), pct(ew["mass"], 4)
                    md.append(f"| {NETS[key][0]} | {k} | {label} | {h.test_accuracy[-1]:.4f} "
                              f"| {max(h.test_accuracy):.4f} | {sum(h.skipped)} | "
                              f"{pct(zeros, 1)} | {fa} | {fw} | {ml} | "
                              f"{scale_changes(r['steps'])} |")
        md += ["", "Per epoch (test accuracy, variant):", "",
               "| network | k | run | " + " | ".join(str(e + 1) for e in range(a.epochs)) + " |",
               "|---|---:|---|" + "---:|" * a.epochs]
        for key in nets:
            for k in variants[key]:
                for rk in VARIANT_RUNS:
                    acc = variants[key][k][rk]["hist"].test_accuracy
                    md.append(f"| {NETS[key][0]} | {k} | {rk} | " +
                              " | ".join(f"{v:.3f}" for v in acc) + " |")
    md += ["", "## Checks", ""] + [f"- {'PASS' if ok else 'FAIL'}: {text}"
                                   for text, ok in checks]
    md += ["", "## Findings", ""] + findings(nets, dists, effects, results, variants, shifts,
                                              dyn_scales)
    md += ["", "## Versions", "", versions("Loss scaling mirrors torch 2.13's "
                                         "torch.amp.GradScaler; torch itself is not run.")]
    return md


def findings(nets, dists, effects, results, variants, shifts, dyn_scales):
    out = []
    for key in nets:
        name = NETS[key][0]
        da, dw = dists[key]["activation"], dists[key]["weight"]
        e1a, e1w = effects[(key, "activation", "1")], effects[(key, "weight", "1")]
        e16a, e16w = effects[(key, "activation", "2^16")], effects[(key, "weight", "2^16")]
        r = results[key]
        acc = {rk: r[rk]["hist"].test_accuracy[-1] for rk in r}
        out.append(
            f"- **{name}, histogram.**  The median activation gradient is 2^{da['pct'][3]:.1f}"
            f" (weight gradients 2^{dw['pct'][3]:.1f}); {pct(da['below_normal'], 1)}% of the "
            f"nonzero activation gradients lie below fp16's smallest normal and "
            f"{pct(e1a['flush'], 1)}% flush to zero without scaling (weight gradients: "
            f"{pct(e1w['flush'], 1)}%).  The flushed values carry "
            f"{pct(e1a['mass'], 4)}% of the activation-gradient mass and "
            f"{pct(e1w['mass'], 4)}% of the weight-gradient mass (sum |g|).  The largest "
            f"value leaves "
            f"{min(da['headroom'], dw['headroom']):.1f} binades of headroom, so S = 2^16 "
            f"flushes {pct(e16a['flush'], 2)}% / {pct(e16w['flush'], 2)}% and overflows "
            f"{pct(e16a['overflow'], 4)}% / {pct(e16w['overflow'], 4)}% (activation / "
            f"weight) of the sampled float32 values.")
        out.append(
            f"- **{name}, training.**  Final test accuracy: fp32 {acc['fp32']:.4f}, fp16 "
            f"S = 1 {acc['s1']:.4f}, S = 2^10 {acc['s10']:.4f}, S = 2^16 {acc['s16']:.4f} "
            f"({sum(r['s16']['hist'].skipped)} skipped steps), dynamic {acc['dyn']:.4f} "
            f"({sum(r['dyn']['hist'].skipped)} skipped, settles at "
            f"{log2s(dyn_scales[key][0])}), dynamic growth_interval 50 {acc['dyn50']:.4f} "
            f"({sum(r['dyn50']['hist'].skipped)} skipped, settles at "
            f"{log2s(dyn_scales[key][1])}), bf16 {acc['bf16']:.4f}.")
        for k in variants[key]:
            v = variants[key][k]
            va = {rk: v[rk]["hist"].test_accuracy[-1] for rk in v}
            z1 = np.nanmean([z for *_, z in v["s1"]["steps"]])
            out.append(
                f"- **{name}, variant k = {k}** (labelled, section 3): fp32 {va['fp32']:.4f}"
                f", fp16 S = 1 {va['s1']:.4f} (mean {pct(z1, 1)}% of weight-gradient "
                f"entries exactly 0), dynamic {va['dyn']:.4f}, dynamic "
                f"growth_interval 50 {va['dyn50']:.4f}, bf16 {va['bf16']:.4f}.")
    return out


if __name__ == "__main__":
    sys.exit(main())
