"""torch 2.13 CPU float32 against refcomp.nn's fp32 policy, layer by layer, forward and
backward: every tensor bit-exact or within its DERIVED bound (refcomp.crosscheck.nn), the
bit-exact claims held, the bounds not vacuous, and the running error analysis the bounds
are built from checked against an exact rational oracle."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refcomp.crosscheck import nn as cnn  # noqa: E402
from refcomp.crosscheck import nn_err as E  # noqa: E402
from refcomp.crosscheck.nn_cases import all_cases  # noqa: E402

LAYERS = {"linear", "conv2d", "batchnorm", "layernorm", "relu", "leaky_relu", "gelu",
          "sigmoid", "tanh", "softmax", "log_softmax", "max_pool2d", "avg_pool2d",
          "adaptive_avg_pool2d", "flatten", "dropout", "add", "cross_entropy", "mse",
          "kl_div"}
GEMM_LAYERS = {"linear", "conv2d"}


@pytest.fixture(scope="module")
def records():
    env = cnn._pin(torch)
    lanes = 16 if str(env["cpu_capability"]).startswith("AVX512") else 8
    return list(all_cases(torch, seed=0, lanes=lanes))


@pytest.fixture(scope="module")
def results(records):
    return [cnn.compare(r) for r in records]


def _where(r):
    return f"{r.layer} [{r.config}] {r.tensor}"


def test_every_layer_forward_and_backward(results):
    assert {r.layer for r in results} == LAYERS
    for layer in LAYERS:
        tensors = {r.tensor for r in results if r.layer == layer}
        assert any(t in tensors for t in ("y", "loss")), layer
        assert any(t.startswith("d") for t in tensors), layer
    bn = {r.tensor for r in results if r.layer == "batchnorm"}
    assert {"y", "dx", "dgamma", "dbeta", "running_mean", "running_var"} <= bn
    configs = {r.config for r in results if r.layer == "conv2d"}
    assert any("groups 2" in c for c in configs) and any("dilation 2" in c for c in configs)
    assert any("stride 2" in c and "padding 1" in c for c in configs)
    ce = {r.config for r in results if r.layer == "cross_entropy"}
    assert any("label_smoothing 0.1" in c for c in ce)
    assert any("weights True, ignore_index 2" in c for c in ce)
    kl = {r.config.split(", ")[1] for r in results if r.layer == "kl_div"}
    assert kl == {"mean", "batchmean", "sum", "none"}


def test_no_mismatch(results):
    bad = [r for r in results if r.status == "mismatch"]
    assert not bad, "\n".join(f"{_where(r)}: err/B {r.max_err_over_bound:.3g}, ours/E "
                              f"{r.ours_over_bound}, torch/E {r.torch_over_bound}" for r in bad)


def test_bit_exact_where_claimed(results):
    claimed = [r for r in results if r.claim == "bit-exact"]
    assert {r.layer for r in claimed} == {"relu", "max_pool2d", "flatten", "dropout", "add"}
    for r in claimed:
        assert r.status == "exact" and r.exact_rate == 1.0, _where(r)
        assert r.max_ulp in (0.0, None), _where(r)
    # the forward of max pooling and its routing are always exact, overlapping or not
    assert all(r.claim == "bit-exact" for r in results if r.layer == "max_pool2d"
               and r.tensor in ("y", "argmax"))


def test_derived_bounds_hold_and_are_not_vacuous(results):
    """Every side within its own bound, |ours - torch| within B, and B below 2**-10 of the
    largest magnitude of the tensor."""
    derived = [r for r in results if r.claim == "derived bound"]
    assert len(derived) > 100
    for r in derived:
        assert r.max_err_over_bound <= 1.0, _where(r)
        assert r.ours_over_bound <= 1.0 and r.torch_over_bound <= 1.0, _where(r)
        assert r.bound_over_magnitude < 2.0 ** -10, _where(r)


def _shift_ulps(a, k):
    """a moved k float32 steps away from zero (sign-magnitude bits + k)."""
    bits = np.asarray(a, np.float64).astype(np.float32).view(np.int32).astype(np.int64) + k
    return bits.astype(np.int32).view(np.float32).astype(np.float64)


def test_a_wrong_result_is_caught(records):
    """Our output moved by 256 ulps is a mismatch for every tensor with a derived bound;
    one ulp already is, for every non-scalar tensor of the layers whose bound on ours is
    half an ulp plus the float64 evaluation error (all but the GEMMs)."""
    for r in records:
        if r.bt is None:
            continue
        assert cnn.compare(r._replace(ours=_shift_ulps(r.ours, 256))).status == "mismatch", \
            _where(r)
        if r.layer not in GEMM_LAYERS and np.size(r.ours) > 1:
            assert cnn.compare(r._replace(ours=_shift_ulps(r.ours, 1))).status == \
                "mismatch", _where(r)


def test_exact_claim_catches_one_ulp(records):
    r = next(r for r in records if r.layer == "relu" and r.tensor == "y")
    moved = np.where(r.ours > 0, _shift_ulps(r.ours, 1), r.ours)
    c = cnn.compare(r._replace(ours=moved))
    assert c.status == "mismatch" and c.max_ulp == 1.0


def test_report_and_pinned_flags(tmp_path):
    assert cnn.main(["--out", str(tmp_path)]) == 0
    md = (tmp_path / "nn-torch-cpu.md").read_text()
    data = json.loads((tmp_path / "nn-torch-cpu.json").read_text())
    env = data["environment"]
    assert env["torch"].startswith("2.13")
    assert env["float32_matmul_precision"] == "highest"
    assert env["mkldnn.matmul.fp32_precision"] == "ieee"
    assert "num_threads" in env and "cpu_capability" in env
    assert set(data["derivations"]) == LAYERS
    assert {r["layer"] for r in data["results"]} == LAYERS
    assert "| conv2d |" in md and "## Derivations" in md


# --------------------------------------------------- the running error analysis itself
def _exact(x):
    return Fraction(float(x))


@pytest.mark.parametrize("seed", range(4))
def test_running_bound_against_rational_oracle(seed):
    """float32 evaluations of ``(a * b + c) / d``, ``sqrt(|a| + 1)`` and a 50-term sum,
    against the exact rational value: within the running bound."""
    rng = np.random.default_rng(seed)
    f = np.float32
    a, b, c, d = (rng.standard_normal(64).astype(f) * f(10.0) ** rng.integers(-3, 4, 64)
                  .astype(f) for _ in range(4))
    d = np.where(np.abs(d) < 1e-3, f(1.0), d)
    got = (a * b + c) / d                                      # float32, unfused
    bd = E.div(E.F32, E.muladd(E.F32, E.exact(a), E.exact(b), E.exact(c)), E.exact(d))
    for i in range(64):
        ex = (_exact(a[i]) * _exact(b[i]) + _exact(c[i])) / _exact(d[i])
        assert abs(_exact(got[i]) - ex) <= Fraction(float(bd.e[i])), i
    got = np.sqrt(np.abs(a) + f(1.0))
    bd = E.sqrt(E.F32, E.add(E.F32, E.exact(np.abs(a)), E.const(E.F32, 1.0)))
    for i in range(64):                  # |sqrt(q) - s| = |q - s^2| / (sqrt(q) + s)
        q, s = _exact(abs(a[i])) + 1, _exact(got[i])
        assert abs(q - s * s) / (2 * min(s, Fraction(math.sqrt(float(q))))) <= \
            Fraction(float(bd.e[i])) * (1 + Fraction(1, 2 ** 20)), i
    terms = a[:50] * b[:50]
    acc = f(0.0)
    for t in terms[::-1]:                                       # one order among many
        acc = f(acc + t)
    bd = E.sum_(E.F32, E.mul(E.F32, E.exact(a[:50]), E.exact(b[:50])))
    ex = sum(_exact(x) * _exact(y) for x, y in zip(a[:50], b[:50]))
    assert abs(_exact(acc) - ex) <= Fraction(float(bd.e))


def test_constants_are_bounded_exactly():
    third = E.ratio_const(E.F32, 1, 3)
    assert Fraction(float(np.float32(1 / 3))) - Fraction(1, 3) != 0
    assert float(third.e) >= abs(Fraction(float(np.float32(1 / 3))) - Fraction(1, 3))
    assert float(E.const(E.F32, 0.5).e) == 0.0
    assert float(E.const(E.F32, 0.1, approx=1).e) > abs(float(np.float32(0.1)) - 0.1)
