"""Golden suites of the NN engine (refcomp.nn): layers and optimizer steps.

nn      every layer's forward and backward in one case (``nn.<layer>``): linear, conv2d
        (stride / padding / dilation / groups / depthwise / no bias), batchnorm (train with
        the updated running statistics, cumulative momentum, eval, no affine), layernorm,
        relu, leaky_relu, gelu (erf and tanh), sigmoid, tanh, softmax, log_softmax,
        max / avg / adaptive-avg pooling, seeded dropout, add, cross_entropy (label
        smoothing, ignore_index, class weights, every reduction), mse, kl_div; each under
        the two deterministic policies of :data:`NN_POLICIES`
optim   SGD (momentum, dampening, nesterov, weight decay, maximize), Adam and AdamW
        (amsgrad, maximize, weight decay) over several consecutive steps, float32 and
        bfloat16 parameters, nearest / seeded stochastic / Kahan updates, fresh and
        mid-training states, torch CPU kernel models (AVX2 tail loop, no FMA)

The policies are deterministic by construction: every matmul is a sequential FMA chain
(``fp32-sequential-fma``, ``bf16-fp32acc``), never a BLAS of unspecified order; the
elementwise and normalisation layers evaluate in float64 (NumPy, libm) and round once.
"""

from __future__ import annotations

import numpy as np

from ..formats import catalog
from ..nn import POLICIES
from .compute import compute, rng_key
from .compute_nn import policy_params
from .schema import Case, Operand
from .suites import _seed, into, suite

__all__ = ["nn_suite", "optim_suite", "NN_POLICIES"]

#: the deterministic policies the nn suite runs under (BLAS-order presets are not
#: reproducible across machines)
NN_POLICIES = {
    "fp32-sequential": POLICIES["fp32-sequential"],
    "bf16-mixed-sequential": POLICIES["bf16-mixed"].with_(
        name="bf16-mixed-sequential", forward="bf16-fp32acc", grad_input="bf16-fp32acc",
        grad_weight="bf16-fp32acc",
        source="bf16-mixed with sequential float32 accumulation of bf16 products "
               "(bf16-fp32acc) in all three matmuls instead of the BLAS order"),
}


def _case(name, op, params, inputs, notes="") -> Case:
    """Like :func:`refcomp.golden.suites.make`, but keeps null params (None is an
    argument of some layers: batchnorm's cumulative momentum)."""
    if params.get("seed") is not None:
        params["key"] = rng_key(params["seed"])
    return Case(name, op, params, inputs, compute(op, inputs, params), None, True, notes)


def _ints(values) -> Operand:
    return Operand("int64", np.asarray(values, np.int64).view(np.uint64))


class _Gen:
    """Inputs of one case: a seeded generator and the policy's formats."""

    def __init__(self, pol, *parts):
        self.rng = np.random.default_rng(_seed("nn", pol.name, *parts))
        self.act = pol.activations.format.name
        self.grad = pol.gradients.format.name
        self.master = pol.master_spec.format.name

    def x(self, *shape, scale=1.0):
        return into(self.rng.standard_normal(shape) * scale, self.act)

    def w(self, *shape, scale=0.5):
        return into(self.rng.standard_normal(shape) * scale, self.master)

    def dy(self, *shape):
        return into(self.rng.standard_normal(shape), self.grad)

    def f32(self, values):
        return into(values, "float32")


# ------------------------------------------------------------------ nn
def _linear_conv(pol, P):
    cases = []
    for label, lead, bias in (("nobias", (4,), False), ("bias_batched3d", (2, 3), True)):
        g = _Gen(pol, "linear", label)
        ins = {"x": g.x(*lead, 8), "w": g.w(5, 8), "dy": g.dy(*lead, 5)}
        if bias:
            ins["b"] = g.w(5)
        cases.append(_case(f"nn/linear/{label}/{pol.name}", "nn.linear", dict(P), ins))
    convs = [("stride2_pad1", 3, 4, (3, 3), {"stride": 2, "padding": 1}),
             ("dilation2_pad2", 2, 3, (3, 3), {"dilation": 2, "padding": 2}),
             ("groups2", 4, 6, (3, 3), {"groups": 2, "padding": 1}),
             ("depthwise", 4, 4, (3, 3), {"groups": 4, "stride": 2}),
             ("rect_nobias", 3, 2, (2, 3), {"stride": [1, 2], "padding": [1, 0],
                                            "dilation": [2, 1]})]
    for label, C, O, (R, S), kw in convs:
        g = _Gen(pol, "conv2d", label)
        grp = kw.get("groups", 1)
        ins = {"x": g.x(2, C, 6, 7), "w": g.w(O, C // grp, R, S)}
        if "nobias" not in label:
            ins["b"] = g.w(O)
        ins["dy"] = g.dy(2, O, *_conv_out((6, 7), (R, S), kw))
        cases.append(_case(f"nn/conv2d/{label}/{pol.name}", "nn.conv2d", {**P, **kw}, ins))
    return cases


def _conv_out(hw, k, kw):
    def pair(v, d):
        v = kw.get(v, d)
        return (v, v) if isinstance(v, int) else tuple(v)
    st, pd, dl = pair("stride", 1), pair("padding", 0), pair("dilation", 1)
    return tuple((hw[i] + 2 * pd[i] - dl[i] * (k[i] - 1) - 1) // st[i] + 1 for i in (0, 1))


def _norms(pol, P):
    cases = []
    bns = [("train4d", (3, 4, 3, 3), {"train": True, "momentum": 0.1}, True, True),
           ("train2d_noaffine", (6, 5), {"train": True, "momentum": 0.25, "eps": 1e-3},
            False, True),
           ("train_cumulative", (4, 3, 5), {"train": True, "momentum": None,
                                            "num_batches_tracked": 3}, True, True),
           ("train_nostats", (5, 3), {"train": True}, True, False),
           ("eval4d", (3, 4, 3, 3), {"train": False}, True, True)]
    for label, shape, kw, affine, stats in bns:
        g = _Gen(pol, "batchnorm", label)
        C = shape[1]
        ins = {"x": g.x(*shape, scale=2.0), "dy": g.dy(*shape)}
        ins["x"] = into(ins["x"].values() + 0.75, g.act)           # a non-zero mean
        if affine:
            ins["w"] = into(1.0 + 0.3 * g.rng.standard_normal(C), g.master)
            ins["b"] = g.w(C)
        if stats:
            ins["running_mean"] = g.w(C)
            ins["running_var"] = into(g.rng.uniform(0.5, 2.0, C), g.master)
        cases.append(_case(f"nn/batchnorm/{label}/{pol.name}", "nn.batchnorm",
                           {**P, **kw}, ins))
    for label, shape, ns, affine in (("last2", (2, 3, 4), [3, 4], True),
                                     ("noaffine", (3, 8), [8], False)):
        g = _Gen(pol, "layernorm", label)
        ins = {"x": g.x(*shape, scale=3.0), "dy": g.dy(*shape)}
        if affine:
            ins["w"] = into(1.0 + 0.3 * g.rng.standard_normal(ns), g.master)
            ins["b"] = g.w(*ns)
        cases.append(_case(f"nn/layernorm/{label}/{pol.name}", "nn.layernorm",
                           {**P, "normalized_shape": ns, "eps": 1e-5}, ins))
    return cases


def _act_x(g, shape):
    """Random values with signed zeros, saturating magnitudes and ties of max."""
    x = g.rng.standard_normal(shape) * 2.5
    flat = x.reshape(-1)
    flat[:6] = [0.0, -0.0, 30.0, -30.0, 700.0, -745.0]
    return into(x, g.act)


def _activations(pol, P):
    cases = []
    acts = [("relu", {}), ("leaky_relu", {"negative_slope": 0.01}),
            ("leaky_relu", {"negative_slope": 0.2}), ("gelu", {"approximate": "none"}),
            ("gelu", {"approximate": "tanh"}), ("sigmoid", {}), ("tanh", {})]
    for op, kw in acts:
        label = "/".join(f"{k}={v}" for k, v in kw.items()) or "default"
        g = _Gen(pol, op, label)
        ins = {"x": _act_x(g, (4, 16)), "dy": g.dy(4, 16)}
        cases.append(_case(f"nn/{op}/{label}/{pol.name}", f"nn.{op}", {**P, **kw}, ins))
    for op in ("softmax", "log_softmax"):
        for label, shape, dim in (("last", (5, 7), -1), ("dim1_3d", (2, 4, 3), 1)):
            g = _Gen(pol, op, label)
            x = g.rng.standard_normal(shape) * 3.0
            x.reshape(-1, shape[-1])[0] = 0.5                     # a row of equal logits
            x.reshape(-1)[-1] = 80.0                               # a dominant logit
            ins = {"x": into(x, g.act), "dy": g.dy(*shape)}
            cases.append(_case(f"nn/{op}/{label}/{pol.name}", f"nn.{op}",
                               {**P, "dim": dim}, ins))
    return cases


def _pools(pol, P):
    cases = []
    pools = [("max_pool2d", "k2", {"kernel_size": 2}),
             ("max_pool2d", "k3_s2_p1", {"kernel_size": 3, "stride": 2, "padding": 1}),
             ("max_pool2d", "k2_s1_d2_overlap", {"kernel_size": 2, "stride": 1,
                                                 "dilation": 2}),
             ("avg_pool2d", "k23_s12", {"kernel_size": [2, 3], "stride": [1, 2]}),
             ("avg_pool2d", "k3_s2_p1_excpad", {"kernel_size": 3, "stride": 2,
                                                "padding": 1, "count_include_pad": False}),
             ("avg_pool2d", "k3_s1_p1_div5", {"kernel_size": 3, "stride": 1, "padding": 1,
                                              "divisor_override": 5}),
             ("adaptive_avg_pool2d", "to2x3", {"output_size": [2, 3]}),
             ("adaptive_avg_pool2d", "to4x4", {"output_size": 4})]
    for op, label, kw in pools:
        g = _Gen(pol, op, label)
        x = g.rng.standard_normal((2, 3, 6, 7))
        if op == "max_pool2d":                                     # ties: small integers
            x[0] = g.rng.integers(-2, 3, (3, 6, 7))
        ins = {"x": into(x, g.act), "dy": g.dy(*_pool_shape(x.shape, kw))}
        cases.append(_case(f"nn/{op}/{label}/{pol.name}", f"nn.{op}", {**P, **kw}, ins))
    return cases


def _pool_shape(shape, kw):
    if "output_size" in kw:
        o = kw["output_size"]
        return shape[:2] + ((o, o) if isinstance(o, int) else tuple(o))
    k = kw["kernel_size"]
    k = (k, k) if isinstance(k, int) else tuple(k)
    st = kw.get("stride", k)
    kw2 = {"stride": st, "padding": kw.get("padding", 0), "dilation": kw.get("dilation", 1)}
    return shape[:2] + _conv_out(shape[2:], k, kw2)


def _misc(pol, P):
    cases = []
    for label, kw in (("p0.5_seed0", {"p": 0.5, "train": True, "seed": 0}),
                      ("p0.1_seed7", {"p": 0.1, "train": True, "seed": 7}),
                      ("p1_seed3", {"p": 1.0, "train": True, "seed": 3}),
                      ("eval", {"p": 0.5, "train": False})):
        g = _Gen(pol, "dropout", label)
        ins = {"x": g.x(4, 16), "dy": g.dy(4, 16)}
        cases.append(_case(f"nn/dropout/{label}/{pol.name}", "nn.dropout", {**P, **kw}, ins,
                           notes="mask = numpy.random.default_rng(seed).random(x.shape) >= p "
                                 "(refcomp's own draw, not torch's stream)"))
    g = _Gen(pol, "add")
    a = g.rng.standard_normal((4, 8)) * np.exp2(g.rng.integers(-12, 12, (4, 8)))
    ins = {"a": into(a, g.act), "b": g.x(4, 8), "dy": g.dy(4, 8)}
    cases.append(_case(f"nn/add/default/{pol.name}", "nn.add", dict(P), ins))
    return cases


def _losses(pol, P):
    cases = []
    N, C = 6, 5
    ces = [("mean", {}, None, 1.0),
           ("sum_loss_scale1024", {"reduction": "sum"}, None, 1024.0),
           ("none_ignore_index1", {"reduction": "none", "ignore_index": 1}, "ignore1", None),
           ("smoothing0.1", {"label_smoothing": 0.1}, None, 1.0),
           ("weights", {}, "weights", 1.0),
           ("weights_smoothing_ignore", {"label_smoothing": 0.2}, "both", 0.5)]
    for label, kw, extra, dloss in ces:
        g = _Gen(pol, "cross_entropy", label)
        t = g.rng.integers(0, C, N)
        if extra == "both":
            t[[1, 4]] = -100
        if extra == "ignore1":
            t[[0, 3]] = 1
        kw = {"ignore_index": -100, "label_smoothing": 0.0, "reduction": "mean", **kw}
        ins = {"x": g.x(N, C, scale=2.0), "target": _ints(t),
               "dy": g.dy(N) if dloss is None else into(np.array(dloss), g.grad)}
        if extra in ("weights", "both"):
            ins["weight"] = g.f32(g.rng.uniform(0.25, 2.0, C))
        cases.append(_case(f"nn/cross_entropy/{label}/{pol.name}", "nn.cross_entropy",
                           {**P, **kw}, ins))
    for red in ("mean", "none"):
        g = _Gen(pol, "mse", red)
        ins = {"x": g.x(4, 6), "target": g.x(4, 6),
               "dy": g.dy(4, 6) if red == "none" else into(np.array(1.0), g.grad)}
        cases.append(_case(f"nn/mse/{red}/{pol.name}", "nn.mse", {**P, "reduction": red},
                           ins))
    for red, log_t in (("batchmean", False), ("none", False), ("sum", True)):
        g = _Gen(pol, "kl_div", red, log_t)
        # inputs built without exp / log (NumPy's SIMD transcendental functions differ
        # between CPUs): any values are valid inputs of the op
        logp = -g.rng.uniform(0.05, 4.0, (4, 6))
        q = g.rng.uniform(0.05, 1.0, (4, 6))
        if not log_t:
            q[0, :2] = 0.0                                        # zero probabilities
        q /= q.sum(axis=1, keepdims=True)
        t = -g.rng.uniform(0.05, 4.0, (4, 6)) if log_t else q
        ins = {"x": into(logp, g.act), "target": into(t, g.act),
               "dy": g.dy(4, 6) if red == "none" else into(np.array(1.0), g.grad)}
        cases.append(_case(f"nn/kl_div/{red}/log_target={log_t}/{pol.name}", "nn.kl_div",
                           {**P, "reduction": red, "log_target": log_t}, ins))
    return cases


@suite("nn")
def nn_suite() -> list[Case]:
    """Every refcomp.nn layer, forward and backward, under two deterministic policies."""
    cases = []
    for pol in NN_POLICIES.values():
        P = {"policy": policy_params(pol)}
        for part in (_linear_conv, _norms, _activations, _pools, _misc, _losses):
            cases += part(pol, P)
    return cases


# ------------------------------------------------------------------ optim
_N, _STEPS = 37, 3          # 37 = 32 + 5: AVX2's 16-bit vector loop and its scalar tail

_HYPER = {
    "sgd": [("plain", {"lr": 0.01}),
            ("momentum", {"lr": 0.01, "momentum": 0.9}),
            ("nesterov_wd", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                             "weight_decay": 1e-3}),
            ("dampening_maximize", {"lr": 0.1, "momentum": 0.5, "dampening": 0.25,
                                    "weight_decay": 0.01, "maximize": True})],
    "adam": [("default", {"lr": 1e-3}),
             ("wd_betas", {"lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6,
                           "weight_decay": 0.01}),
             ("amsgrad_maximize", {"lr": 3e-3, "amsgrad": True, "maximize": True})],
    "adamw": [("default", {"lr": 1e-3, "weight_decay": 0.01}),
              ("amsgrad_wd", {"lr": 0.01, "betas": [0.9, 0.95], "weight_decay": 0.1,
                              "amsgrad": True})],
}
_DEFAULTS = {"sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False,
                     "weight_decay": 0.0, "maximize": False},
             "adam": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
                      "amsgrad": False, "maximize": False}}
_CPUS = {"avx2": {"fma": True, "block": 32, "threads": 1, "grain_size": 32768},
         "default": {"fma": False, "block": 32, "threads": 1, "grain_size": 32768}}


def _optim_case(kind, label, hyper, fmt, sfmt, update, fresh, cpu=None) -> Case:
    tag = "/".join(map(str, (kind, label, fmt, sfmt, update, fresh, cpu)))
    rng = np.random.default_rng(_seed("optim", tag))
    family = "sgd" if kind == "sgd" else "adam"
    hp = {**_DEFAULTS[family], **hyper}
    g = rng.standard_normal((_STEPS, _N)) * 0.1
    g[:, :2] = 0.0                                                # zero gradients
    param = rng.standard_normal(_N)
    ins = {"param": into(param, fmt), "grad": into(g, fmt)}
    if family == "sgd":
        if not fresh and hp["momentum"]:
            ins["momentum_buffer"] = into(rng.standard_normal(_N) * 0.05, sfmt)
    else:
        m = np.zeros(_N) if fresh else rng.standard_normal(_N) * 0.01
        v = np.zeros(_N) if fresh else (rng.standard_normal(_N) * 0.05) ** 2
        ins.update(step=into(np.array(0.0 if fresh else 10.0), "float32"),
                   exp_avg=into(m, sfmt), exp_avg_sq=into(v, sfmt))
        if hp["amsgrad"] and not fresh:
            ins["max_exp_avg_sq"] = into(v * rng.uniform(1.0, 2.0, _N), sfmt)
    if update == "kahan" and not fresh:
        p = catalog.get(fmt).precision
        c = ins["param"].values() * rng.uniform(-1.0, 1.0, _N) * 2.0 ** -(p + 1)
        ins["compensation"] = into(c, fmt)
    params = {**hp, "fmt": fmt, "state_fmt": sfmt, "update": update}
    if update == "stochastic":
        params["seed"] = _seed("optim-seed", tag) % (1 << 32)
    if cpu is not None:
        params["cpu"] = _CPUS[cpu]
    name = f"optim/{kind}/{label}/{fmt}/state={sfmt}/{update}/" + \
        ("fresh" if fresh else "resumed") + (f"/cpu={cpu}" if cpu else "")
    return _case(name, f"optim.{kind}", params, ins,
                 notes=f"{_STEPS} consecutive steps; outputs stacked along the first axis")


@suite("optim")
def optim_suite() -> list[Case]:
    """SGD / Adam / AdamW steps: hyper-parameter sets, float32 and bfloat16, nearest,
    stochastic and Kahan updates, several steps with the state as input and output."""
    cases = []
    for kind, sets in _HYPER.items():
        for i, (label, hyper) in enumerate(sets):            # every set, nearest
            for fmt in ("float32", "bfloat16"):
                cases.append(_optim_case(kind, label, hyper, fmt, fmt, "nearest",
                                         fresh=i % 2 == 0))
        for update in ("stochastic", "kahan"):
            for (label, hyper), fmt, fresh in ((sets[0], "float32", True),
                                               (sets[0], "bfloat16", True),
                                               (sets[1], "bfloat16", False)):
                cases.append(_optim_case(kind, label, hyper, fmt, fmt, update, fresh))
        label, hyper = sets[1]                               # bf16 params, fp32 state
        cases.append(_optim_case(kind, label, hyper, "bfloat16", "float32", "nearest",
                                 fresh=False))
    for kind, i, fmt, cpu in (("sgd", 1, "bfloat16", "avx2"), ("adam", 1, "bfloat16", "avx2"),
                              ("sgd", 3, "float32", "default"),
                              ("adamw", 1, "float32", "default")):
        label, hyper = _HYPER[kind][i]               # each differs from cpu=None somewhere
        cases.append(_optim_case(kind, label, hyper, fmt, fmt, "nearest", fresh=False,
                                 cpu=cpu))
    return cases
