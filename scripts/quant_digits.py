"""Quantization on real data (issue 7, section 4): the digits MLP and small CNN
of ``nn_formats.py``, trained in float32, then evaluated on the test split as

- float32 (the trained model);
- dynamic int8 (:func:`refcomp.quant.quantize_dynamic`: Linear layers only, torch's
  ``default_dynamic_qconfig``; convolutions stay float32);
- static int8 PTQ (:func:`refcomp.quant.fuse_modules` of conv/linear + ReLU, then
  ``prepare`` / ``calibrate`` / ``convert`` with the ``"x86"`` qconfig, calibrated on a few
  training batches): the integer-only model of torch's fbgemm engine;
- int4 weight-only (torchao's tinygemm rule, :mod:`refcomp.quant.torchao`): every Linear /
  Conv2d weight quantized per group of 32 along its input features (the largest divisor
  of the input features not above 32 where 32 does not divide them) and dequantized to
  float32 -- fake-quantized weights in the fp32 engine.  The integer kernel model
  (``int4_weight_only_linear``) exists for Linear only; the MLP is also run through it as
  a cross-check;
- QAT int8 (:func:`refcomp.quant.prepare_qat` with the ``"x86"`` QAT qconfig on the
  fused float model, fine-tuned on the engine, observers frozen for the last epoch,
  :func:`refcomp.quant.qat.convert`): the integer-only model of torch's eager QAT flow.

Model size counts the bytes each format stores: codes at their bit width (int8: 1 byte,
int4: two a byte), scales at their storage format (float32), zero points at the width of
the code they shift (1 byte for int8; tinygemm's float zero: float32), activation qparams
of the static model (float32 scale + uint8 zero point per observed tensor), biases float32.

Per-layer sensitivity: one layer at a time quantized, the rest float32, two ways:
static int8 of that layer only (its input quantized with the qparams the full static
model gives it, the converted integer layer, its output dequantized) and int4 weight-only
of that layer only.  Accuracy drop and logit SQNR against float32.

Writes ``golden/reports/quant-digits.md`` and ``quant-digits.png``.  Needs
``pip install -e '.[data,plot]'``.

    python scripts/quant_digits.py [--epochs 20] [--calib-batches 8] [--qat-epochs 3]
                                   [--out golden/reports]
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NamedTuple  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import ROOT, versions  # noqa: E402
from nn_formats import cnn, mlp  # noqa: E402
from refcomp import nn, quant  # noqa: E402
from refcomp.quant import torchao as tao  # noqa: E402
from refcomp.quant.fq_modules import FusedMovingAvgObsFakeQuantize  # noqa: E402
from refcomp.quant.histogram import HistogramObserver  # noqa: E402
from refcomp.quant.observers import PerChannelMinMaxObserver  # noqa: E402
from refcomp.quant.ptq import QConfig  # noqa: E402
from refcomp.quant.qmodules import DeQuantize, Quantize  # noqa: E402

# (name, builder, flat input, fusion groups (conv/linear + ReLU), weighted-layer names)
NETS = [("MLP 64-128-64-10", mlp, True, [["0", "1"], ["2", "3"]],
         {0: "fc1 64-128", 2: "fc2 128-64", 4: "fc3 64-10"}),
        ("CNN 2x(conv3x3+pool)", cnn, False, [["0", "1"], ["3", "4"]],
         {0: "conv1 1-16", 3: "conv2 16-32", 7: "fc 128-10"})]
F32 = "float32"
QUANT_NOTE = ("The modelled backends are torch 2.13.0+cpu (x86 / fbgemm, AVX2) and torchao "
              "0.18.0; torch itself is not run.")
SHORT = {"float32": "fp32", "dynamic int8": "dynamic int8", "static int8 (PTQ, x86)":
         "static int8", "QAT int8 (x86)": "QAT int8", "int4 weight-only": "int4 w-only",
         "static w2a8 (PTQ)": "PTQ w2a8", "QAT w2a8, fake-quant model": "QAT w2a8 fq",
         "QAT w2a8, converted": "QAT w2a8"}


class Size(NamedTuple):
    """Stored bytes of a model: weights (codes or floats), qparams, biases."""

    weights: float
    qparams: int
    biases: int

    @property
    def total(self):
        return self.weights + self.qparams + self.biases


# --------------------------------------------------------------------------- training
def train(make, flat, epochs, seed=0):
    """float32 training exactly as nn_formats.run: SGD lr 0.05, momentum 0.9, batch 32."""
    data = nn.data.load_digits(flat=flat)
    model = make(seed)
    opt = nn.make_optimizer("sgd", "fp32", lr=0.05, momentum=0.9,
                            rng=np.random.default_rng(seed + 1))
    hist = nn.fit(model, data, "fp32", opt, epochs=epochs, batch_size=32,
                  rng=np.random.default_rng(seed + 2))
    return model, data, hist


def weighted(model):
    """Indices of the Linear / Conv2d layers of a Sequential."""
    return [i for i, m in enumerate(model.layers) if isinstance(m, (nn.Linear, nn.Conv2d))]


def sqnr_db(ref, y):
    """10 log10(sum ref^2 / sum (ref - y)^2), in float64; inf when equal."""
    ref, y = np.asarray(ref, np.float64), np.asarray(y, np.float64)
    err = np.sum((ref - y) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(ref ** 2) / err))


def fp32_size(model):
    p = model.named_parameters()
    return Size(4 * sum(v.size for k, v in p.items() if k.endswith("weight")), 0,
                4 * sum(v.size for k, v in p.items() if k.endswith("bias")))


# --------------------------------------------------------------------------- int8
def dynamic_size(qmodel):
    w = qp = b = 0
    for m in qmodel.layers:
        if isinstance(m, quant.DynamicQuantizedLinear):
            w += m.wq.size                                        # int8 codes
            qp += 4 * m.w_scale.size + m.w_zero_point.size        # f32 scale, int8 zp
            b += 0 if m.bias is None else 4 * m.bias.size
        else:                                                     # float32 layer
            w += 4 * (m.params["weight"].size if "weight" in m.params else 0)
            b += 4 * (m.params["bias"].size if "bias" in m.params else 0)
    return Size(w, qp, b)


def static_size(qmodel, bits=8):
    w, qp, b = 0, 5, 0                                            # input Quantize: f32 + u8
    for m in qmodel.layers:
        if hasattr(m, "w_scale"):
            w += m.weight.size * bits / 8
            qp += 4 * m.w_scale.size + m.w_zero_point.size + 5    # + output scale / zp
            b += 0 if m.bias is None else 4 * m.bias.size
    return Size(w, qp, b)


def static_ptq(model, data, groups, n_batches, seed=3, qconfig="x86"):
    """fuse -> prepare(qconfig) -> calibrate on `n_batches` seeded training batches of 32 ->
    convert.  Returns (fused float model, converted QuantizedModel)."""
    fused = quant.fuse_modules(model, groups)
    prepared = quant.prepare(fused, qconfig)
    idx = nn.data.batches(len(data.x_train), 32, np.random.default_rng(seed))[:n_batches]
    quant.calibrate(prepared, [data.x_train[i].astype(np.float32) for i in idx])
    return fused, quant.convert(prepared)


def low_bit_qconfigs(bits):
    """(PTQ, QAT) qconfigs with `bits`-bit per-channel symmetric weights (qint8 codes in
    [-2**(bits-1), 2**(bits-1) - 1], torch's custom quant range) and the x86 activations."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    ptq = QConfig(lambda: HistogramObserver(reduce_range=True),
                  lambda: PerChannelMinMaxObserver(dtype="qint8",
                                                   qscheme="per_channel_symmetric",
                                                   quant_min=lo, quant_max=hi), f"w{bits}a8")
    qat = QConfig(lambda: FusedMovingAvgObsFakeQuantize(0, 127, dtype="quint8"),
                  lambda: FusedMovingAvgObsFakeQuantize(lo, hi, dtype="qint8", per_channel=True,
                                                        symmetric=True), f"w{bits}a8")
    return ptq, qat


def qat_train(model, data, groups, epochs, qconfig="x86", seed=4):
    """fuse -> prepare_qat(qconfig) -> fine-tune `epochs` epochs from the trained weights
    (SGD lr 0.01, momentum 0.9, batch 32, seeded batches; the last epoch with the observers
    disabled, as torch's QAT recipe does).  No test data reaches the observers.  Returns
    the trained QATModel (convert it with ``quant.qat.convert``)."""
    q = quant.prepare_qat(quant.fuse_modules(model, groups), qconfig)
    nn.prepare(q, "fp32")
    rng = np.random.default_rng(seed)
    opt = nn.make_optimizer("sgd", "fp32", lr=0.01, momentum=0.9, rng=rng)
    loss = (nn.cross_entropy_forward, nn.cross_entropy_backward)
    for epoch in range(epochs):
        if epoch == epochs - 1:
            q.disable_observer()
        for idx in nn.data.batches(len(data.x_train), 32, rng):
            nn.train_step(q, data.x_train[idx].astype(np.float32), data.y_train[idx], loss,
                          opt, "fp32")
    return q


class OneStatic(nn.Module):
    """Layer i of a static int8 model inside a float model: quantize the float input with
    the qparams the full integer model gives that layer's input, run the integer layer,
    dequantize its output (float32)."""

    def __init__(self, scale, zero_point, qlayer):
        super().__init__()
        self.quant, self.qlayer, self.dequant = Quantize(scale, zero_point), qlayer, DeQuantize()

    def forward(self, x, policy, rng=None, train=False):
        return self.dequant.forward(self.qlayer.forward(self.quant.forward(x))), None


# --------------------------------------------------------------------------- int4
def group_size(k):
    """32 where it divides the input features k, else the largest divisor of k below 32."""
    return max(d for d in range(1, 33) if k % d == 0)


def int4_weight(w):
    """tinygemm int4 of a Linear / Conv2d weight seen as (O, K) (torch's layout flattened),
    float32 qparams; the CPU packing's checks (group 32/64/128, O % 16 == 0) are not
    applied, so every layer of both nets is covered."""
    w2 = np.asarray(w, np.float64).reshape(w.shape[0], -1)        # (O, K)
    g = group_size(w2.shape[1])
    s, z = tao.tinygemm_choose_qparams(w2, g, F32)                # (O, K / g) each
    q = tao.tinygemm_quantize(w2, s, z, g, F32)                   # (O, K) codes 0..15
    return tao.Int4Weight(q, s, z, g, F32)


def int4_dequant(w4, shape):
    d = tao.tinygemm_dequantize(w4.qdata, w4.scale, w4.zero, w4.group_size, F32)
    return d.reshape(shape).astype(np.float32)                    # exact: float32 values


def int4_model(model, only=None):
    """Deep copy with the weights of every weighted layer (or only layer `only`)
    replaced by their int4 fake-quantized float32 values; returns (model, Size)."""
    m = copy.deepcopy(model)
    w = qp = b = 0
    for i in weighted(m):
        p = m.layers[i].params
        b += 4 * p["bias"].size if "bias" in p else 0
        if only is not None and i != only:
            w += 4 * p["weight"].size
            continue
        w4 = int4_weight(p["weight"])
        p["weight"] = int4_dequant(w4, p["weight"].shape)
        w += (w4.qdata.size + 1) // 2                             # two codes a byte
        qp += 4 * (w4.scale.size + w4.zero.size)                  # f32 scale, f32 zero
    return m, Size(w, qp, b)


class Int4Linear(nn.Module):
    """torchao's CPU int4 weight-only Linear kernel model (int4_weight_only_linear)."""

    def __init__(self, w4, bias):
        super().__init__()
        self.w4, self.bias = w4, bias

    def forward(self, x, policy, rng=None, train=False):
        return tao.int4_weight_only_linear(x, self.w4, self.bias).astype(np.float32), None


def int4_kernel_mlp(model):
    m = copy.deepcopy(model)
    for i in weighted(m):
        p = m.layers[i].params
        m.layers[i] = Int4Linear(int4_weight(p["weight"]), p.get("bias"))
    return m


# --------------------------------------------------------------------------- report
def plot(path, sens, points):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    labels = [f"{net.split()[0]} {layer}" for net, layer, *_ in sens]
    x = np.arange(len(sens))
    for ax, col, title, ylabel in ((axes[0], 2, "accuracy drop, one layer quantized",
                                    "test accuracy drop (points)"),
                                   (axes[1], 4, "logit SQNR, one layer quantized",
                                    "SQNR vs float32 logits (dB)")):
        for k, (name, off) in enumerate((("static int8 (weights + activations)", -0.2),
                                         ("int4 weight-only (tinygemm)", 0.2))):
            ax.bar(x + off, [r[col + k] for r in sens], 0.4, label=name)
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
        ax.axvline(2.5, color="grey", lw=0.8)
        ax.axhline(0, color="black", lw=0.8)
    axes[0].legend(fontsize=8)
    ax = axes[2]
    for net, pts in points.items():
        kb = [p[1] / 1024 for p in pts]
        ax.plot(kb, [100 * p[2] for p in pts], "o", label=net)
        for k, (name, size, acc) in enumerate(pts):
            ax.annotate(name, (size / 1024, 100 * acc), fontsize=7,
                        xytext=(4, 4 if k % 2 else -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([2, 4, 8, 16, 32, 64])
    ax.set_xlabel("model size (KB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--calib-batches", type=int, default=8)
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--low-bits", type=int, default=2,
                    help="weight bits of the extra PTQ / QAT rows (0: none)")
    ap.add_argument("--out", default=str(ROOT / "golden" / "reports"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows, sens, points, notes = [], [], {}, []
    for net, make, flat, groups, names in NETS:
        model, data, hist = train(make, flat, a.epochs)
        x, y = data.x_test.astype(np.float32), data.y_test      # exact: k / 16
        n_train, n_test = len(data.x_train), len(y)
        ref = nn.predict(model, x, "fp32")                       # (N, 10) float32 logits

        def row(fmt, logits, size, how):
            acc = float(np.mean(np.argmax(logits, 1) == y))
            rows.append((net, fmt, acc, sqnr_db(ref, logits), size, how))
            print(f"{net:22s} {fmt:24s} acc {acc:.4f} size {size.total:8.0f} B "
                  f"({time.perf_counter() - t0:5.1f}s)", flush=True)
            return acc

        base = row("float32", ref, fp32_size(model), "trained model, fp32 engine")
        dyn = quant.quantize_dynamic(model)
        row("dynamic int8", nn.predict(dyn, x, "fp32"), dynamic_size(dyn),
            "Linear layers int8 (per-tensor weights, per-call activations)"
            + ("; convs float32" if not flat else ""))
        fused, qm = static_ptq(model, data, groups, a.calib_batches)
        row("static int8 (PTQ, x86)", qm.forward(x), static_size(qm),
            "integer-only fbgemm model, per-channel weights, histogram-calibrated activations")
        m4, s4 = int4_model(model)
        l4 = nn.predict(m4, x, "fp32")
        row("int4 weight-only", l4, s4, "tinygemm groups "
            + "/".join(str(group_size(model.layers[i].params["weight"][0].size))
                       for i in weighted(model)) + ", fake-quantized weights in fp32 engine")
        qq = quant.qat.convert(qat_train(model, data, groups, a.qat_epochs))
        row("QAT int8 (x86)", qq.forward(x), static_size(qq),
            f"fake-quant fine-tuning {a.qat_epochs} epochs on the engine, converted to the "
            "integer-only fbgemm model")
        if a.low_bits:
            lb = a.low_bits
            pcfg, qcfg = low_bit_qconfigs(lb)
            _, qlow = static_ptq(model, data, groups, a.calib_batches, qconfig=pcfg)
            row(f"static w{lb}a8 (PTQ)", qlow.forward(x), static_size(qlow, lb),
                f"as static int8, weights {lb}-bit per-channel symmetric")
            ql = qat_train(model, data, groups, a.qat_epochs, qcfg)
            row(f"QAT w{lb}a8, fake-quant model", nn.predict(ql, x, "fp32"),
                static_size(quant.qat.convert(ql), lb),
                "the trained QAT model in the fp32 engine (fake-quantized weights and "
                "activations)")
            row(f"QAT w{lb}a8, converted", quant.qat.convert(ql).forward(x),
                static_size(quant.qat.convert(ql), lb),
                "the same model after convert (the observers' qparams rule, below)")
        if net.startswith("MLP"):
            lk = nn.predict(int4_kernel_mlp(model), x, "fp32")
            notes.append(f"{net}: torchao's int4 CPU kernel model (`int4_weight_only_linear`, "
                         f"same codes and qparams) agrees with the fake-quantized engine on "
                         f"{int(np.sum(lk.argmax(1) == l4.argmax(1)))}/{len(y)} test "
                         f"predictions, largest logit difference "
                         f"{np.max(np.abs(lk.astype(np.float64) - l4)):.2e} (the kernel "
                         "forms each weight with one FMA, the dequantizer with two roundings, "
                         "and sums in order).")
        # one layer at a time
        codes = qm.forward_codes(x[:1], all_layers=True)          # codes[i]: input of layer i
        for i in weighted(model):
            one = copy.deepcopy(fused)
            one.layers[i] = OneStatic(codes[i].scale, codes[i].zero_point, qm.layers[i])
            ls = nn.predict(one, x, "fp32")
            li = nn.predict(int4_model(model, only=i)[0], x, "fp32")
            accs = [float(np.mean(np.argmax(v, 1) == y)) for v in (ls, li)]
            sens.append((net, names[i], 100 * (base - accs[0]), 100 * (base - accs[1]),
                         sqnr_db(ref, ls), sqnr_db(ref, li)))
        points[net] = [(SHORT.get(r[1], r[1]), r[4].total, r[2]) for r in rows
                       if r[0] == net and r[2] is not None and "fake-quant" not in r[1]]
    secs = time.perf_counter() - t0

    md = ["# Quantization on the UCI digits", "",
          f"The MLP and CNN of `scripts/nn_formats.py`, trained in float32 exactly as there "
          f"(same initial weights and batches, SGD lr 0.05, momentum 0.9, batch 32, "
          f"{a.epochs} epochs, {n_train} training / {n_test} test images), then quantized "
          f"after training (QAT: fine-tuned with fake quantization) and evaluated on the "
          f"{n_test} test images.  Produced by "
          f"`python scripts/quant_digits.py` in {secs:.0f} s.", "",
          "| network | format | test accuracy | change (points) | logit SQNR (dB) | weights (B) "
          "| scales + zero points (B) | biases (B) | total (B) | smaller than fp32 | how |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for net, fmt, acc, sq, size, how in rows:
        if acc is None:
            md.append(f"| {net} | {fmt} | - | - | - | - | - | - | - | - | {how} |")
            continue
        b = next(r for r in rows if r[0] == net and r[1] == "float32")
        md.append(f"| {net} | {fmt} | {acc:.4f} | {100 * (acc - b[2]):+.2f} | "
                  + ("-" if sq == float("inf") else f"{sq:.1f}")
                  + f" | {size.weights:.0f} | {size.qparams} | {size.biases} | "
                  f"{size.total:.0f} | {b[4].total / size.total:.2f}x | {how} |")
    md += ["", "## Per-layer sensitivity", "",
           "One layer quantized, every other layer float32.  Static int8: the layer's input "
           "is quantized with the qparams the full static model gives it, the converted "
           "integer layer (with its fused ReLU) runs, its output is dequantized.  int4: that "
           "layer's weight only, as in the table.  Drop = float32 accuracy minus the "
           "accuracy with that layer quantized (one test image = "
           f"{100 / n_test:.2f} points; negative: the quantized model got more images "
           "right).", "",
           "| network | layer | static int8 drop (points) | int4 w-only drop (points) "
           "| static int8 SQNR (dB) | int4 w-only SQNR (dB) |", "|---|---|---:|---:|---:|---:|"]
    for net, layer, d8, d4, q8, q4 in sens:
        md.append(f"| {net} | {layer} | {d8:.2f} | {d4:.2f} | {q8:.1f} | {q4:.1f} |")
    md += ["", "## Method", "",
           "- **float32**: the trained model under the `fp32` policy (NumPy sgemm order: "
           "fast, not bit-reproducible across machines).",
           "- **dynamic int8**: `refcomp.quant.quantize_dynamic(model)` -- torch's "
           "`quantize_dynamic` with `default_dynamic_qconfig` (per-tensor symmetric qint8 "
           "weights, activations quantized per call with reduce_range); only Linear layers, "
           "so the CNN's two convolutions stay float32 and it is barely smaller.",
           f"- **static int8**: `fuse_modules` (conv/linear + ReLU), `prepare(..., \"x86\")` "
           f"(HistogramObserver activations with reduce_range, per-channel symmetric qint8 "
           f"weights), `calibrate` on {a.calib_batches} seeded training batches of 32, "
           f"`convert`: the integer-only model (u8 x s8 GEMM with AVX2 int16 pair "
           f"saturation, fbgemm requantization), float input quantized and logits "
           f"dequantized.",
           "- **int4 weight-only**: torchao 0.18's tinygemm rule (`tinygemm_choose_qparams`, "
           "`tinygemm_quantize`, `tinygemm_dequantize` in float32: asymmetric uint4 with a "
           "float zero per group) on each Linear / Conv2d weight flattened to (out, in), "
           "group 32 where the input features allow it, else the largest divisor below 32 "
           "(conv1: 9, conv2: 24).  The dequantized float32 weights run in the fp32 engine "
           "(fake quantization): refcomp has an integer int4 path only for Linear "
           "(`int4_weight_only_linear`, torchao's CPU kernel), none for Conv2d, and "
           "torchao itself quantizes only Linear and packs only out-features divisible by "
           "16 (the MLP's fc3 has 10).  Activations stay float32."] \
        + [f"- {n}" for n in notes] + [
           f"- **QAT int8**: `fuse_modules` as for static int8, `prepare_qat(..., \"x86\")` "
           f"(fused moving-average observer + fake quant: activations quint8 [0, 127], "
           f"weights per-channel symmetric qint8, straight-through gradients), fine-tuned "
           f"from the trained float32 weights for {a.qat_epochs} epochs (SGD lr 0.01, "
           f"momentum 0.9, batch 32; observers disabled for the last epoch), then "
           f"`refcomp.quant.qat.convert` to the same kind of integer-only model as static "
           f"int8.  Post-training int8 already loses nothing on these small networks, so "
           f"there is no drop for QAT to recover; the row shows that the QAT path trains "
           f"and converts on the engine at int8 accuracy.",
           f"- **w{a.low_bits}a8** (with `--low-bits {a.low_bits}`): the same PTQ and QAT "
           f"flows with {a.low_bits}-bit weights (torch's custom quant range on qint8 "
           f"observers / fake quants: codes [{-(1 << (a.low_bits - 1))}, "
           f"{(1 << (a.low_bits - 1)) - 1}], per-channel symmetric).  Here PTQ loses "
           f"accuracy and the QAT-trained fake-quant model recovers it, but the converted "
           f"model loses part of it again: during training the fused fake quant takes its "
           f"weight scale from fbgemm's ChooseQuantizationParams (symmetric: max(|min| / "
           f"{1 << (a.low_bits - 1)}, max / {(1 << (a.low_bits - 1)) - 1})), while convert "
           f"quantizes the weights with the observer's `calculate_qparams` (max(|min|, max) "
           f"/ ((qmax - qmin) / 2)), a different grid at low bit widths.  That is torch "
           f"2.13's eager QAT (`FusedMovingAvgObsFakeQuantize.calculate_qparams` returns "
           f"the observer's), reproduced -- a torch model trained the same way converts "
           f"the same way (tests/test_quant_qat.py checks the convert bit for bit).  At "
           f"int8 the two grids differ by well under a code.",
           "- **Sizes**: stored bytes per format: int8 codes 1 byte, int4 codes two a byte, "
           "scales float32, int8 zero points 1 byte (also the symmetric weights' zeros, "
           "which torch stores), tinygemm zeros float32, the static model's activation "
           "qparams (input and each conv/linear output: float32 scale + uint8 zero point), "
           "biases float32 (every format keeps them float).  Containers (torch's int64 "
           "per-channel zero points, packing padding, module metadata) are not counted.",
           "- **SQNR**: 10 log10(sum z^2 / sum (z - z_q)^2) over all test logits z of "
           "the float32 model.", "",
           "## Versions", "", versions(QUANT_NOTE)]
    (out / "quant-digits.md").write_text("\n".join(md) + "\n")
    plot(out / "quant-digits.png", sens, points)
    print(f"wrote {out / 'quant-digits.md'} and quant-digits.png in {secs:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
