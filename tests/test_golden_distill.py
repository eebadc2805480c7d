"""Golden suite ``distill`` (KD, FitNets hint and RKD distance losses with their gradients,
issue 8): the committed file verifies and regenerates byte for byte, every output carries
the ``derived`` tolerance, whose bound is informative, and torch 2.13's autograd
(``--backend torch-cpu``) lies within it for every case; a wrong backend is caught."""

import json

import numpy as np
import pytest

from refcomp import crosscheck, golden
from refcomp.crosscheck.torch_backend import TorchBackend
from refcomp.golden import GoldenError, Tolerance
from refcomp.golden.compute_distill import OPS as DISTILL_OPS
from refcomp.golden.compute_distill import OUTPUTS, derived_bound
from refcomp.golden.tolerance import interval

from golden_suite import (REPO_GOLDEN, read_cases, regenerates_identically,  # noqa: E402
                          verify_committed)
from golden_suite import torch_run as run_on_torch  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    return read_cases("distill")


@pytest.fixture(scope="module")
def torch_run():
    return run_on_torch("distill")


def test_committed_suite_verifies(cases):
    assert verify_committed("distill", len(cases)) >= 20


def test_regeneration_is_byte_identical(tmp_path):
    regenerates_identically("distill", tmp_path, 2 ** 20)


def test_every_op_and_variant_is_covered(cases):
    cs = list(cases.values())
    assert {c.op for c in cs} == set(DISTILL_OPS)
    kd = [c.params for c in cs if c.op == "distill.kd"]
    assert {p["reduction"] for p in kd} == {"batchmean", "mean", "sum"}
    assert {p["log_target"] for p in kd} == {False, True}
    assert {0.0, 1.0} <= {p["alpha"] for p in kd}
    assert len({p["temperature"] for p in kd}) >= 5
    for op in ("distill.hint", "distill.rkd"):
        assert {c.params["reduction"] for c in cs if c.op == op} == {"mean", "sum"}
    assert len({c.params["beta"] for c in cs if c.op == "distill.rkd"}) >= 3
    for c in cs:
        assert set(c.outputs) == set(OUTPUTS[c.op])
        assert {o.kind for o in c.outputs.values()} == {"float32"}
        assert c.outputs["loss"].bits.shape == ()


def test_derived_tolerance_on_every_output_and_informative(cases):
    """The derived bound B covers every output; it is far below the values' scale
    (B <= 2**-12 max|value|, the criterion of tests/test_distill.py) and the interval it
    gives contains the golden value."""
    for c in cases.values():
        t = c.tolerance
        assert t.rule == "derived" and set(t.outputs) == set(c.outputs), c.name
        for k, o in c.outputs.items():
            b = derived_bound(c, k)
            v = o.values()
            assert b.shape == v.shape and np.all(b > 0), (c.name, k)
            if np.abs(v).max() > 0:
                assert b.max() <= 2.0 ** -12 * np.abs(v).max(), (c.name, k)
            lo, hi = interval(c, k)
            assert np.all(lo <= v) and np.all(v <= hi) and np.all(lo < hi), (c.name, k)


def test_derived_tolerance_json_and_errors(cases):
    c = next(iter(cases.values()))
    assert Tolerance.from_json(json.loads(json.dumps(c.tolerance.to_json()))) == c.tolerance
    assert c.tolerance.applies("loss") and not Tolerance("derived", "x").applies("loss")
    with pytest.raises(GoldenError, match="no derived bound for output 'y'"):
        derived_bound(c, "y")


def test_torch_autograd_is_within_every_bound(torch_run):
    cc = torch_run
    bad = [(r.case, r.message, r.diffs) for r in cc.results if r.status in ("mismatch", "error")]
    assert bad == []
    assert {r.op for r in cc.results} == set(DISTILL_OPS)
    assert all(r.status in ("exact", "within") for r in cc.results)
    assert sum(r.status == "within" for r in cc.results) >= 20       # not bit-exact: float32
    assert all(not r.not_compared for r in cc.results)
    for r in cc.results:
        if r.status == "within":
            assert r.bound_ulp is not None and r.max_ulp <= r.bound_ulp


class _Tampered(TorchBackend):
    """torch-cpu with one output element of chosen cases changed: ``("ulp", k)`` moves it
    by one ulp (legitimately within the bound), ``("bit", k, b)`` flips bit b."""

    def __init__(self, edits):
        super().__init__("cpu")
        self.edits = edits

    def run(self, case):
        out = super().run(case)
        e = self.edits.get(case.name)
        if e is not None:
            v = out[e[1]].copy()
            flat = v.reshape(-1)
            flat[0] = flat[0] + np.uint32(1) if e[0] == "ulp" else \
                flat[0] ^ np.uint32(1 << e[2])
            out[e[1]] = v
        return out


def test_wrong_backend_is_caught_and_one_ulp_is_not():
    pytest.importorskip("torch")
    wrong = {"distill/kd/6x5/T=4.0/alpha=0.9/batchmean": ("bit", "ds", 20),
             "distill/kd/6x5/T=2.0/alpha=0.9/sum/log_target": ("bit", "loss", 16),
             "distill/hint/linear/6x7->5/mean": ("bit", "dw", 18),
             "distill/rkd/6x4_vs_7/beta=1.0/mean": ("bit", "de", 19)}
    close = {"distill/hint/linear/12x20->8/sum": ("ulp", "dfs"),
             "distill/kd/16x10/T=2.5/alpha=0.9/batchmean": ("ulp", "loss")}
    names = {c.name for c in golden.read_suite(REPO_GOLDEN, "distill")}
    assert set(wrong) | set(close) <= names
    cc = crosscheck.run(_Tampered({**wrong, **close}), REPO_GOLDEN, ["distill"],
                        progress=False)
    st = {r.case: r.status for r in cc.results}
    assert {st[k] for k in wrong} == {"mismatch"}
    assert {st[k] for k in close} == {"within"}
    assert sum(s == "mismatch" for s in st.values()) == len(wrong)
