"""Golden suite ``amp`` (torch.amp.GradScaler's update and unscale as refcomp.amp.GradScaler
computes them, issue 9): the committed file verifies and regenerates byte for byte, the
cases cover the settings and edges the suite promises, and torch 2.13's own GradScaler
(``--backend torch-cpu``, a real SGD step loop) agrees bit for bit; a wrong backend is
caught."""

import math

import numpy as np
import pytest

from refcomp import crosscheck
from refcomp.golden import GoldenError
from refcomp.golden.compute_amp import OPS as AMP_OPS
from refcomp.golden.suites_amp import FMAX

from golden_suite import (REPO_GOLDEN, read_cases, regenerates_identically,  # noqa: E402
                          tampered_backend, verify_committed)
from golden_suite import torch_run as run_on_torch  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    return read_cases("amp")


@pytest.fixture(scope="module")
def torch_run():
    return run_on_torch("amp")


def test_committed_suite_verifies(cases):
    assert verify_committed("amp", len(cases)) >= 50


def test_regeneration_is_byte_identical(tmp_path):
    regenerates_identically("amp", tmp_path, 200_000)


def _seqs(cases):
    return [c for c in cases.values() if c.op == "amp.scaler_update"]


def _unscales(cases):
    return [c for c in cases.values() if c.op == "amp.unscale"]


def test_settings_and_edges_are_covered(cases):
    assert {c.op for c in cases.values()} == set(AMP_OPS)
    seqs = _seqs(cases)
    assert {c.params["growth_interval"] for c in seqs} >= {1, 2, 3, 4, 5, 2000}
    assert any(c.params["growth_factor"] not in (2.0, 4.0) for c in seqs)
    assert any(math.log2(c.params["backoff_factor"]) % 1 for c in seqs)
    scales = np.concatenate([c.outputs["scale"].values() for c in seqs])
    assert scales.max() == FMAX                               # grown to the float32 max
    assert ((scales > 0) & (scales < 2.0 ** -126)).any()      # backed off into subnormals
    assert (scales == 0).any()                                # and down to 0
    assert all(c.outputs["scale"].kind == "float32" for c in seqs)
    assert all(c.outputs["growth_tracker"].kind == "int32" for c in seqs)
    d = [c for c in seqs if c.params["growth_interval"] == 2000][0]
    assert d.outputs["growth_tracker"].values().max() == 1999
    un = _unscales(cases)
    sc = {float(c.inputs["scale"].values()) for c in un}
    assert {3.0, 65535.0, 1.0, 2.0 ** 16, FMAX} <= sc and float(np.float32(0.1)) in sc
    assert any(0 < s < 2.0 ** -126 for s in sc)               # an infinite inverse
    g = np.concatenate([c.inputs["g"].values().ravel() for c in un])
    assert np.isnan(g).any() and np.isinf(g).any() and (np.abs(g) == FMAX).any()
    assert ((g != 0) & (np.abs(g) < 2.0 ** -126)).any()
    found = {bool(c.outputs["found_inf"].values()) for c in un}
    assert found == {False, True}


def test_sequences_obey_the_rules(cases):
    """Independent of refcomp.amp: step by step, torch's documented update rule."""
    f32 = np.float32
    for c in _seqs(cases):
        p = c.params
        found = c.inputs["found_inf"].values().astype(bool)
        scale = c.outputs["scale"].values()
        trk = c.outputs["growth_tracker"].values()
        prev_s, prev_t = float(f32(p["init_scale"])), 0
        for i, f in enumerate(found):
            if f:
                assert scale[i] == float(f32(prev_s * p["backoff_factor"])), (c.name, i)
                assert trk[i] == 0
            elif prev_t + 1 == p["growth_interval"]:
                with np.errstate(over="ignore"):
                    grown = float(f32(prev_s * p["growth_factor"]))
                assert scale[i] == (grown if math.isfinite(grown) else prev_s), (c.name, i)
                assert trk[i] == 0
            else:
                assert scale[i] == prev_s and trk[i] == prev_t + 1, (c.name, i)
            prev_s, prev_t = float(scale[i]), int(trk[i])


def test_unscale_obeys_the_rule(cases):
    for c in _unscales(cases):
        g = c.inputs["g"].bits.view(np.float32)
        s = float(c.inputs["scale"].values())
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            inv = np.float32(1.0 / s)
            want = g if inv == 1 else (g.astype(np.float64) * float(inv)).astype(np.float32)
        got = c.outputs["y"].bits.view(np.float32)
        assert np.array_equal(got, want, equal_nan=True), c.name
        assert bool(c.outputs["found_inf"].values()) == (not np.isfinite(g).all()), c.name


def test_torch_agrees_bit_for_bit(torch_run):
    cc = torch_run
    bad = [(r.case, r.status, r.message) for r in cc.results if r.status != "exact"]
    assert bad == []
    assert {r.op for r in cc.results} == set(AMP_OPS)
    assert all(not r.not_compared for r in cc.results)


def test_tampered_outputs_are_caught():
    pytest.importorskip("torch")
    flips = {"amp/scaler_update/odd/3/x1.5/x0.3/interval=1": ("scale", 7, 0),
             "amp/scaler_update/defaults/growth_after_2000": ("growth_tracker", 3000, 0),
             "amp/scaler_update/sub/0x1p-120/x0.5/to_zero": ("scale", 40, 0),
             "amp/unscale/random/4x6/scale=0.1": ("y", 5, 0),
             "amp/unscale/special/4x5/scale=3": ("y", 12, 0),          # a NaN payload bit
             "amp/unscale/huge/16/scale=0.1": ("found_inf", 0, 0)}
    cc = crosscheck.run(tampered_backend(flips), REPO_GOLDEN, ["amp"], progress=False)
    st = {r.case: r.status for r in cc.results}
    assert set(flips) <= set(st)
    assert {st[k] for k in flips} == {"mismatch"}
    assert sum(s == "mismatch" for s in st.values()) == len(flips)


def test_clean_steps_at_scale_zero_stay_clean(cases):
    """torch's found_inf reads the gradients before unscaling: clean steps at scale 0 (an
    infinite inverse) are clean; the scale stays 0 (0 * growth_factor)."""
    c = cases["amp/scaler_update/sub/0x1p-120/x0.5/to_zero"]
    found = c.inputs["found_inf"].values().astype(bool)
    scale = c.outputs["scale"].values()
    assert not found[-1] and scale[-2] == 0 and scale[-1] == 0


def test_torch_driver_checks_found_inf(cases):
    """The torch driver compares the found_inf torch recorded with the case's."""
    torch = pytest.importorskip("torch")
    from refcomp.crosscheck import torch_amp
    c = cases["amp/scaler_update/interval=3/inf_at_tracker_2"]
    out = torch_amp.OPS[c.op](torch, c, {"found_inf": torch.tensor([False, True, False])})
    assert out["scale"].tolist() == [1024.0, 512.0, 512.0]
    orig = torch_amp._found
    try:
        torch_amp._found = lambda scaler, opt: True
        with pytest.raises(ValueError, match="found_inf"):
            torch_amp.OPS[c.op](torch, c, {"found_inf": torch.tensor([False])})
    finally:
        torch_amp._found = orig


def test_bad_inputs_are_refused():
    with pytest.raises(GoldenError):
        AMP_OPS["amp.unscale"]({"g": np.array([1.0]), "scale": np.array([2.0, 3.0])}, {})
    with pytest.raises(GoldenError):
        AMP_OPS["amp.unscale"]({"g": np.array([0.1]), "scale": np.array(2.0)}, {})
    with pytest.raises(GoldenError):
        AMP_OPS["amp.scaler_update"]({"found_inf": np.zeros(0)}, {
            "init_scale": 1.0, "growth_factor": 2.0, "backoff_factor": 0.5,
            "growth_interval": 1})
