"""Golden suite ``qtorch`` (torch.ao.quantization references, issue 7): the committed file
verifies and regenerates byte for byte, and torch 2.13 itself (``--backend torch-cpu``:
observers, quantize_per_channel, fake quant / LSQ autograd, the fused QAT op, dynamic and
static quantized kernels, BN fusion) agrees with every case it can run on this machine."""

import json

import numpy as np
import pytest

from refcomp import crosscheck
from refcomp.crosscheck.torch_backend import TorchBackend
from refcomp.golden import GoldenError, Tolerance
from refcomp.golden.compute import compute
from refcomp.golden.compute_qtorch import OBSERVERS
from refcomp.golden.compute_qtorch import OPS as QT_OPS

from golden_suite import (REPO_GOLDEN, read_cases, regenerates_identically,  # noqa: E402
                          verify_committed)
from golden_suite import torch_run as run_on_torch  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    return read_cases("qtorch")


@pytest.fixture(scope="module")
def torch_run():
    return run_on_torch("qtorch")


def test_committed_suite_verifies(cases):
    assert verify_committed("qtorch", len(cases)) > 100


def test_regeneration_is_byte_identical(tmp_path):
    regenerates_identically("qtorch", tmp_path, 2 * 2 ** 20)


def test_every_op_and_variant_is_covered(cases):
    cs = list(cases.values())
    assert {c.op for c in cs} == set(QT_OPS)
    obs = [c for c in cs if c.op == "qt.observer"]
    assert {c.params["observer"] for c in obs} == set(OBSERVERS)
    assert {c.params["dtype"] for c in obs} >= {"quint8", "qint8", "qint32"}
    assert {c.params["qscheme"] for c in obs} == {
        "per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
        "per_channel_symmetric", "per_channel_affine_float_qparams"}
    assert any(c.params.get("reduce_range") for c in obs)
    assert any(c.params.get("quant_min") is not None for c in obs)
    assert all(c.inputs["x"].bits.shape[0] >= 2 for c in obs)             # many batches
    lengths = [c.inputs["lengths"].values() for c in obs if "lengths" in c.inputs]
    assert any((n == 0).any() for n in lengths)                            # empty batches
    mins = np.concatenate([c.outputs["min_val"].values().ravel() for c in obs])
    assert np.isnan(mins).any() and np.isinf(mins).any()                   # NaN, inf
    for op, key in (("qt.fake_quantize", "axis"), ("qt.lsq", "axis")):
        axes = {c.params.get(key) for c in cs if c.op == op}
        assert None in axes and {0, 1, 2} <= axes, op
    assert any(c.params.get("float_zero_point") for c in cs if c.op == "qt.fake_quantize")
    fused = [c for c in cs if c.op == "qt.fused_obs_fq"]
    assert {c.params["per_channel"] for c in fused} == {False, True}
    assert all(c.inputs["x"].bits.shape[0] >= 5 for c in fused)
    for op in ("qt.linear", "qt.conv2d"):
        assert {c.params["int16_pairs"] for c in cs if c.op == op} == {True, False}
    assert {c.params["relu"] for c in cs if c.op == "qt.dynamic_linear"} == {False, True}


def test_kernel_dependent_cases_really_differ(cases):
    """A static case marked kernel_dependent has a twin under the other kernel model whose
    codes differ; an unmarked case gives the same codes under both models."""
    for c in cases.values():
        if c.op not in ("qt.linear", "qt.conv2d"):
            continue
        other = compute(c.op, c.inputs, dict(c.params, int16_pairs=not c.params["int16_pairs"]))
        same = np.array_equal(other["y"].bits, c.outputs["y"].bits)
        assert same != c.params["kernel_dependent"], c.name
        if c.params["kernel_dependent"]:
            twin = c.name.rsplit("=", 1)[0] + f"={not c.params['int16_pairs']}"
            assert np.array_equal(cases[twin].outputs["y"].bits, other["y"].bits)


def test_torch_agrees_with_every_case_it_runs(torch_run):
    cc = torch_run
    bad = [(r.case, r.message, r.diffs) for r in cc.results if r.status in ("mismatch", "error")]
    assert bad == []
    counts = cc.counts()
    assert counts["exact"] > 100
    ran = {r.op for r in cc.results if r.status in ("exact", "within")}
    assert ran == set(QT_OPS)
    assert all(not r.not_compared for r in cc.results)                     # every output
    for r in cc.results:
        if r.status == "within":                       # only the bounded LSQ sums
            assert r.op == "qt.lsq" and "axis0" not in r.case and "per_channel" in r.case
            assert r.bound_ulp is not None and r.max_ulp <= r.bound_ulp


def test_only_the_other_kernel_model_is_skipped(torch_run, cases):
    """Of each kernel-dependent pair exactly one case runs here (the model of this CPU's
    fbgemm kernel); nothing else is unsupported."""
    from refcomp.crosscheck.torch_qtorch import int16_pairs_here
    here = int16_pairs_here()
    for r in torch_run.results:
        c = cases[r.case]
        skipped = r.status == "unsupported"
        expect = bool(c.params.get("kernel_dependent")) and c.params["int16_pairs"] != here
        assert skipped == expect, (r.case, r.message)
        if skipped:
            assert "fbgemm" in r.message


class _Tampered(TorchBackend):
    """torch-cpu, with one bit of one output of chosen cases flipped."""

    def __init__(self, flips):
        super().__init__("cpu")
        self.flips = flips

    def run(self, case):
        out = super().run(case)
        if case.name in self.flips:
            k, shift = self.flips[case.name]
            v = out[k].copy()
            v.reshape(-1)[0] ^= np.array(1 << shift, v.dtype)
            out[k] = v
        return out


def test_tampered_outputs_are_caught():
    pytest.importorskip("torch")
    flips = {"qtorch/observer/MinMaxObserver/quint8/per_tensor_affine": ("zero_point", 0),
             "qtorch/lsq/per_channel/0..255/axis1": ("dscale", 30),      # far out of bound
             "qtorch/lsq/per_channel/0..255/axis0": ("dscale", 0),       # exact: 1 ulp
             "qtorch/fused_obs_fake_quant/act_quint8": ("dx", 0),
             "qtorch/fuse_linear_bn/8x12/bias/eps=1e-05": ("b", 0)}
    cc = crosscheck.run(_Tampered(flips), REPO_GOLDEN, ["qtorch"], progress=False)
    st = {r.case: r.status for r in cc.results}
    assert {st[k] for k in flips} == {"mismatch"}
    assert sum(s == "mismatch" for s in st.values()) == len(flips)


def test_sum_terms_tolerance_json_roundtrip(cases):
    c = cases["qtorch/lsq/per_channel/-128..127/axis2"]
    t = c.tolerance
    assert t.rule == "sum_terms" and t.outputs == ("dscale", "dzero_point")
    assert Tolerance.from_json(json.loads(json.dumps(t.to_json()))) == t
    assert t.applies("dscale") and not t.applies("y") and not t.applies("dx")
    assert Tolerance("ulp", "x", max_ulp=1).applies("y")
    with pytest.raises(GoldenError, match="list of output names"):
        Tolerance("sum_terms", "x", accumulator="float32", outputs="dscale")
    assert cases["qtorch/lsq/per_channel/0..255/axis0"].tolerance is None
