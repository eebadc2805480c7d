"""Golden suites of the NN engine (``nn``, ``optim``): the committed files verify, the
recorded policies rebuild, and independent oracles (exact Fractions, hand-written rules)
agree with a few cases."""

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from oracle import Fmt, round_value

from refcomp import _jit, formats, golden
from refcomp.crosscheck import opmap
from refcomp.golden import GoldenError, Operand
from refcomp.golden.compute import OPS, compute
from refcomp.golden.compute_nn import policy_from_params, policy_params
from refcomp.golden.store import MANIFEST
from refcomp.golden.suites_nn import NN_POLICIES

REPO_GOLDEN = Path(__file__).resolve().parents[1] / "golden"
NN_OPS = sorted(op for op in OPS if op.startswith(("nn.", "optim.")))


@pytest.fixture(scope="module")
def cases():
    return {s: {c.name: c for c in golden.read_suite(REPO_GOLDEN, s)} for s in ("nn", "optim")}


def test_committed_nn_and_optim_suites_verify(cases):
    checked, problems = golden.verify(REPO_GOLDEN, ["nn", "optim"])
    assert problems == []
    assert checked == len(cases["nn"]) + len(cases["optim"]) > 130


def test_regeneration_is_byte_identical(tmp_path):
    golden.generate(["nn", "optim"], tmp_path)
    mine = json.loads((tmp_path / MANIFEST).read_text())["suites"]
    repo = json.loads((REPO_GOLDEN / MANIFEST).read_text())["suites"]
    for s in ("nn", "optim"):
        assert (tmp_path / f"{s}.npz").read_bytes() == (REPO_GOLDEN / f"{s}.npz").read_bytes()
        assert mine[s] == repo[s]


def test_numpy_twins_give_the_same_bits(cases):
    """REFCOMP_DISABLE_JIT's path (erf, exact sqrt, accumulation twins) recomputes every
    case to the stored bits."""
    with _jit.use_jit(False):
        for suite in cases.values():
            for c in suite.values():
                got = compute(c.op, c.inputs, c.params)
                for k, op in got.items():
                    assert np.array_equal(op.bits, c.outputs[k].bits), (c.name, k)


def test_every_layer_and_optimizer_is_covered(cases):
    nn_ops = {c.op for c in cases["nn"].values()}
    assert nn_ops == {op for op in NN_OPS if op.startswith("nn.")}
    for op in nn_ops:                                   # under both policies
        pols = {c.params["policy"]["name"] for c in cases["nn"].values() if c.op == op}
        assert pols == set(NN_POLICIES), op
    opt = list(cases["optim"].values())
    assert {c.op for c in opt} == {"optim.sgd", "optim.adam", "optim.adamw"}
    for op in ("optim.sgd", "optim.adam", "optim.adamw"):
        mine = [c for c in opt if c.op == op]
        assert {(c.params["fmt"], c.params["update"]) for c in mine} == \
            {(f, u) for f in ("float32", "bfloat16") for u in ("nearest", "stochastic", "kahan")}
        assert any("compensation" in c.inputs for c in mine)          # resumed Kahan
    assert all(c.inputs["grad"].bits.shape[0] > 1 for c in opt)       # several steps


def test_policies_are_deterministic_and_rebuild_from_params(cases):
    for p in NN_POLICIES.values():
        assert policy_from_params(policy_params(p)) == p
        for m in (p.forward, p.grad_input, p.grad_weight):
            assert m.order.value == "sequential" and not m.stochastic, m.name
    m = json.loads((REPO_GOLDEN / MANIFEST).read_text())
    for c in m["suites"]["nn"]["cases"]:                # from the JSON, as a reader sees it
        assert policy_from_params(c["params"]["policy"]) == NN_POLICIES[c["params"]["policy"]
                                                                        ["name"]]
    cum = cases["nn"]["nn/batchnorm/train_cumulative/fp32-sequential"]
    assert "momentum" in cum.params and cum.params["momentum"] is None


def test_op_maps_give_a_reason_for_every_nn_op(cases):
    for name in ("torch-2.13", "ml_dtypes-0.6", "torchao-0.18"):
        ops = opmap.load(name)["ops"]
        for op in NN_OPS:
            assert ops[op]["unsupported"], (name, op)
    ops = opmap.load("torch-2.13")["ops"]
    assert "refcomp.crosscheck.nn" in ops["nn.linear"]["unsupported"]
    assert "tests/test_nn_optim.py" in ops["optim.adam"]["unsupported"]
    case = cases["nn"]["nn/relu/default/fp32-sequential"]
    assert opmap.check(opmap.load("torch-2.13"), case) == ops["nn.relu"]["unsupported"]


def test_cpu_model_cases_differ_from_the_default_model(cases):
    """The TorchCPU cases (AVX2's 16-bit tail loop, no FMA) are not vacuous."""
    cpu = [c for c in cases["optim"].values() if "cpu" in c.params]
    assert len(cpu) == 4
    for c in cpu:
        params = {k: v for k, v in c.params.items() if k != "cpu"}
        plain = compute(c.op, c.inputs, params)
        assert any(not np.array_equal(v.bits, c.outputs[k].bits) for k, v in plain.items()), \
            c.name


def test_inputs_are_checked(cases):
    c = cases["nn"]["nn/linear/bias_batched3d/fp32-sequential"]
    with pytest.raises(GoldenError, match="optional: b"):
        compute(c.op, {k: v for k, v in c.inputs.items() if k != "w"}, c.params)
    with pytest.raises(GoldenError, match="takes inputs"):
        compute(c.op, {**c.inputs, "z": c.inputs["b"]}, c.params)
    no_b = compute(c.op, {k: v for k, v in c.inputs.items() if k != "b"}, c.params)
    assert set(no_b) == {"y", "dx", "dw"}


# ------------------------------------------------------------------ independent oracles

def _rne(q: Fraction, fmt) -> Fraction:
    """q rounded to nearest-even into fmt (tests/oracle.py, no refcomp code)."""
    if q == 0:
        return Fraction(0)
    kind, v, neg, _ = round_value(abs(q), q < 0, Fmt(formats.get(fmt)), "nearest_even")
    assert kind == "finite"
    return -v if neg else v


def _fr(op: Operand):
    return np.array([Fraction(float(v)) for v in op.values().ravel()],
                    dtype=object).reshape(op.bits.shape)


def _seq(terms, acc_fmt, start=Fraction(0)):
    """Sequential FMA chain: acc = rnd_acc(acc + a * b), products exact."""
    acc = start
    for a, b in terms:
        acc = _rne(acc + a * b, acc_fmt)
    return acc


@pytest.mark.parametrize("policy", list(NN_POLICIES))
@pytest.mark.parametrize("label", ["nobias", "bias_batched3d"])
def test_linear_against_exact_fractions(cases, policy, label):
    """y = x w^T + b, dx = dy w, dw = dy^T x, db = 1^T dy, each a sequential FMA chain in
    float32 from the bias (or 0), products exact, then one rounding into the policy's
    format (bfloat16: the weights rounded to bfloat16 first)."""
    c = cases["nn"][f"nn/linear/{label}/{policy}"]
    p = NN_POLICIES[policy]
    lo = p.weights.format.name                        # float32 or bfloat16
    x = _fr(c.inputs["x"]).reshape(-1, c.inputs["x"].bits.shape[-1])
    w = np.vectorize(lambda v: _rne(v, lo), otypes=[object])(_fr(c.inputs["w"]))
    dy = _fr(c.inputs["dy"]).reshape(x.shape[0], -1)
    N, K = x.shape
    O = w.shape[0]
    b = None
    if "b" in c.inputs:
        b = [_rne(v, lo) for v in _fr(c.inputs["b"])]
    out = {k: _fr(v) for k, v in c.outputs.items()}
    for n in range(N):
        for o in range(O):
            want = _seq(zip(x[n], w[o]), "float32", b[o] if b else Fraction(0))
            assert out["y"].reshape(N, O)[n, o] == _rne(want, lo)
        for k in range(K):
            want = _seq(zip(dy[n], w[:, k]), "float32")
            assert out["dx"].reshape(N, K)[n, k] == _rne(want, lo)
    for o in range(O):
        for k in range(K):
            assert out["dw"][o, k] == _rne(_seq(zip(dy[:, o], x[:, k]), "float32"), lo)
        if b:
            ones = [Fraction(1)] * N
            assert out["db"][o] == _rne(_seq(zip(ones, dy[:, o]), "float32"), lo)


@pytest.mark.parametrize("policy", list(NN_POLICIES))
def test_relu_by_hand(cases, policy):
    """y = x where x > 0 else +0; dx = dy where y > 0 else +0, bit for bit."""
    c = cases["nn"][f"nn/relu/default/{policy}"]
    x, dy = c.inputs["x"], c.inputs["dy"]
    pos = x.values() > 0
    zero = np.zeros_like(x.bits)
    assert np.array_equal(c.outputs["y"].bits, np.where(pos, x.bits, zero))
    assert np.array_equal(c.outputs["dx"].bits, np.where(pos, dy.bits, zero))
    assert (~pos).sum() >= 2 and (x.values() == 0).sum() >= 2        # -0, +0 covered


@pytest.mark.parametrize("policy", list(NN_POLICIES))
def test_dropout_mask_is_numpys_draw(cases, policy):
    c = cases["nn"][f"nn/dropout/p0.5_seed0/{policy}"]
    assert c.params["key"] == int(np.random.PCG64(0).random_raw())
    x, dy = c.inputs["x"].values(), c.inputs["dy"].values()
    keep = np.random.default_rng(0).random(x.shape) >= 0.5
    assert 0 < keep.sum() < keep.size
    y, dx = c.outputs["y"].values(), c.outputs["dx"].values()
    assert np.array_equal(y, np.where(keep, 2 * x, 0.0))             # exact: times 2
    assert np.array_equal(dx, np.where(keep, 2 * dy, 0.0))


@pytest.mark.parametrize("policy", list(NN_POLICIES))
def test_pooling_against_exact_fractions(cases, policy):
    """avg_pool2d k=(2, 3), stride (1, 2): rnd(exact window sum / 6) (the float64 sum is
    exact here and float64 division then rounding is innocuous double rounding);
    max_pool2d k=2: the window's max, dy routed to its first maximum in scan order."""
    fmt = NN_POLICIES[policy].activations.format.name
    c = cases["nn"][f"nn/avg_pool2d/k23_s12/{policy}"]
    x, y = _fr(c.inputs["x"]), _fr(c.outputs["y"])
    N, C, Ho, Wo = y.shape
    for n, ch, i, j in np.ndindex(N, C, Ho, Wo):
        win = x[n, ch, i:i + 2, 2 * j:2 * j + 3]
        assert y[n, ch, i, j] == _rne(sum(win.ravel(), Fraction(0)) / 6, fmt)
    c = cases["nn"][f"nn/max_pool2d/k2/{policy}"]
    x, dy = c.inputs["x"].values(), c.inputs["dy"].values()
    y, dx = c.outputs["y"].values(), c.outputs["dx"].values()
    want = np.zeros_like(x)
    ties = 0
    for n, ch, i, j in np.ndindex(y.shape):
        win = x[n, ch, 2 * i:2 * i + 2, 2 * j:2 * j + 2].ravel()
        assert y[n, ch, i, j] == win.max()
        first = int(np.flatnonzero(win == win.max())[0])
        ties += (win == win.max()).sum() > 1
        want[n, ch, 2 * i + first // 2, 2 * j + first % 2] = dy[n, ch, i, j]
    assert np.array_equal(dx, want) and ties > 0


@pytest.mark.parametrize("fmt", ["float32", "bfloat16"])
def test_plain_sgd_against_exact_fractions(cases, fmt):
    """p <- rnd(p + a * g) with a = -lr rounded to float32 then to fmt (torch's
    ``add(alpha=-lr)``: one fused multiply-add), step after step."""
    c = cases["optim"][f"optim/sgd/plain/{fmt}/state={fmt}/nearest/fresh"]
    a = _rne(_rne(Fraction(-c.params["lr"]), "float32"), fmt)
    p = list(_fr(c.inputs["param"]))
    grads = _fr(c.inputs["grad"])
    got = _fr(c.outputs["param"])
    for t in range(grads.shape[0]):
        p = [_rne(pi + a * gi, fmt) for pi, gi in zip(p, grads[t])]
        assert list(got[t]) == p


def test_stochastic_updates_pick_a_neighbour(cases):
    """Each stochastic SGD write is one of the two fmt neighbours of the exact p + a g, and
    both directions occur."""
    c = cases["optim"]["optim/sgd/plain/bfloat16/state=bfloat16/stochastic/fresh"]
    f = Fmt(formats.bfloat16)
    a = _rne(_rne(Fraction(-c.params["lr"]), "float32"), "bfloat16")
    p = list(_fr(c.inputs["param"]))
    grads, got = _fr(c.inputs["grad"]), _fr(c.outputs["param"])
    ups = downs = 0
    for t in range(grads.shape[0]):
        for i, (pi, gi) in enumerate(zip(p, grads[t])):
            s = pi + a * gi
            dn, up = (round_value(abs(s), s < 0, f, m)[1] * (-1 if s < 0 else 1)
                      for m in ("toward_negative", "toward_positive")) if s else (s, s)
            assert got[t, i] in (dn, up)
            ups += got[t, i] == up != dn
            downs += got[t, i] == dn != up
        p = list(got[t])
    assert ups and downs
