"""Golden suite ``prune`` (torch.nn.utils.prune references and N:M masks, issue 8): the
committed file verifies and regenerates byte for byte, its masks obey the definitions
(counts, N:M groups, mask * w), and torch 2.13 (``--backend torch-cpu``) computes the same
masks and pruned weights for every tie-free case; a wrong backend is caught."""

import math

import numpy as np
import pytest

from refcomp import crosscheck
from refcomp.crosscheck.torch_prune import TIE_REASON
from refcomp.golden.compute_prune import OPS as PRUNE_OPS
from refcomp.golden.suites_prune import tie_free
from refcomp.prune import compute_nparams_toprune

from golden_suite import (REPO_GOLDEN, read_cases, regenerates_identically,  # noqa: E402
                          tampered_backend, verify_committed)
from golden_suite import torch_run as run_on_torch  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    return read_cases("prune")


@pytest.fixture(scope="module")
def torch_run():
    return run_on_torch("prune")


def test_committed_suite_verifies(cases):
    assert verify_committed("prune", len(cases)) > 150


def test_regeneration_is_byte_identical(tmp_path):
    regenerates_identically("prune", tmp_path, 2 ** 20)


def test_every_op_and_variant_is_covered(cases):
    cs = list(cases.values())
    assert {c.op for c in cs} == set(PRUNE_OPS)
    ln = [c for c in cs if c.op == "prune.ln_structured"]
    assert {str(c.params["n"]) for c in ln} >= {"1", "2", "3", "0.5", "-1", "-2.5", "inf",
                                                 "-inf", "fro", "nuc", "0"}
    assert {c.params["dim"] for c in ln} >= {-4, -1, 0, 1, 2, 3}
    l1 = [c for c in cs if c.op == "prune.l1_unstructured"]
    assert {type(c.params["amount"]) for c in l1} == {int, float}
    assert {c.inputs["w"].bits.ndim for c in l1} == {1, 2, 3, 4}
    assert any("scores" in c.inputs for c in l1) and any("scores" in c.inputs for c in ln)
    nm = {(c.params["n"], c.params["m"]) for c in cs if c.op == "prune.nm"}
    assert {(2, 4), (1, 4), (4, 8)} <= nm
    assert any(c.inputs["w"].bits.ndim == 4 for c in cs if c.op == "prune.nm")
    assert {len(c.inputs) for c in cs if c.op == "prune.global_unstructured"} >= {3, 4}
    assert all(len(c.params["steps"]) >= 3 for c in cs
               if c.op == "prune.repeated" and not c.params.get("ties"))
    assert {c.op for c in cs if c.params.get("ties")} == set(PRUNE_OPS) - {"prune.to_csr"}


def _count_pruned(c):
    m = c.outputs["mask"].values()
    return int((m == 0).sum())


def test_masks_obey_the_definitions(cases):
    """Independent of refcomp.prune: pruned counts, mask * w, N:M groups, CSR round trip."""
    for c in cases.values():
        p = c.params
        if c.op == "prune.l1_unstructured":
            w = c.inputs["w"].values()
            k = compute_nparams_toprune(p["amount"], w.size)
            assert _count_pruned(c) == k, c.name
            if not p.get("ties"):                          # the k smallest |w| pruned
                m = c.outputs["mask"].values().astype(bool)
                score = np.abs(c.inputs.get("scores", c.inputs["w"]).values())
                if 0 < k < w.size:
                    assert score[~m].max() < score[m].min(), c.name
        if c.op == "prune.ln_structured":
            w = c.inputs["w"].values()
            d = p["dim"] % w.ndim
            m = np.moveaxis(c.outputs["mask"].values(), d, 0).reshape(w.shape[d], -1)
            assert np.all((m == 0).all(1) | (m == 1).all(1)), c.name     # whole channels
            assert int((m == 0).all(1).sum()) == compute_nparams_toprune(p["amount"],
                                                                          w.shape[d])
        if c.op == "prune.nm":
            w = c.inputs["w"].values()
            g = c.outputs["mask"].values().reshape(w.shape[0], -1, p["m"])
            assert np.all(g.sum(-1) == p["n"]), c.name
        if c.op in ("prune.l1_unstructured", "prune.ln_structured", "prune.nm"):
            w = c.inputs["w"].values().astype(np.float32)
            y = (c.outputs["mask"].values().astype(np.float32) * w)
            assert np.array_equal(y.view(np.uint32), c.outputs["y"].bits), c.name
        if c.op == "prune.to_csr":
            w = c.inputs["w"].values()
            w2 = w.reshape(1, -1) if w.ndim == 1 else w.reshape(w.shape[0], -1)
            ptr, idx = c.outputs["indptr"].values(), c.outputs["indices"].values()
            vals = c.outputs["values"].values()
            dense = np.zeros_like(w2)
            for r in range(w2.shape[0]):
                dense[r, idx[ptr[r]:ptr[r + 1]]] = vals[ptr[r]:ptr[r + 1]]
            assert np.array_equal(dense, np.where(w2 != 0, w2, 0.0), equal_nan=True)
            assert ptr[-1] == np.count_nonzero(w2)


def test_repeated_masks_only_shrink(cases):
    for c in cases.values():
        if c.op == "prune.repeated":
            m = c.outputs["mask"].values()
            assert np.all(m[1:] <= m[:-1]), c.name


def test_tie_free_check_rejects_ties():
    w = np.array([[2.0, -1.0, 1.0], [3.0, 4.0, 5.0]], np.float32)
    assert not tie_free(w, [{"method": "l1", "amount": 1}])
    assert tie_free(w, [{"method": "l1", "amount": 2}])          # the boundary: 1 | 2
    w = np.array([[1.0, 2.0], [2.0, 1.0], [5.0, 5.0]], np.float32)
    assert not tie_free(w, [{"method": "ln", "amount": 1, "n": 1, "dim": 0}])
    assert tie_free(w[:2] * 2 ** np.arange(2.0), [{"method": "ln", "amount": 1, "n": "inf",
                                                   "dim": 1}])                  # 2 | 4
    close = np.array([[1.0, 1.0], [1.0, 1.0 + 2.0 ** -20], [9.0, 9.0]], np.float32)
    assert not tie_free(close, [{"method": "ln", "amount": 1, "n": 2, "dim": 0}])
    assert tie_free(close, [{"method": "ln", "amount": 1, "n": "inf", "dim": 0}])  # exact


def test_torch_agrees_with_every_tie_free_case(torch_run, cases):
    cc = torch_run
    bad = [(r.case, r.message, r.diffs) for r in cc.results if r.status in ("mismatch", "error")]
    assert bad == []
    ran = {r.op for r in cc.results if r.status == "exact"}
    assert ran == set(PRUNE_OPS)
    assert all(r.status in ("exact", "unsupported") for r in cc.results)
    assert all(not r.not_compared for r in cc.results)
    for r in cc.results:                                       # only the tie cases skipped
        assert (r.status == "unsupported") == bool(cases[r.case].params.get("ties")), r.case
        if r.status == "unsupported":
            assert r.message == TIE_REASON


def test_tampered_outputs_are_caught():
    pytest.importorskip("torch")
    flips = {"prune/l1_unstructured/5x6/amount=0.3": ("mask", 0, 0),
             "prune/ln_structured/4x3x5/n=2/dim=1/amount=0.34": ("y", 3, 31),   # sign of 0
             "prune/repeated/6x8/sequence1": ("mask", 40, 0),
             "prune/global_unstructured/3_tensors/pre=0.25/amount=0.5": ("y2", 1, 0),
             "prune/nm/8x16/2of4": ("mask", 5, 0),
             "prune/to_csr/6x10/pruned=0.6": ("indices", 2, 0)}
    cc = crosscheck.run(tampered_backend(flips), REPO_GOLDEN, ["prune"], progress=False)
    st = {r.case: r.status for r in cc.results}
    assert set(flips) <= set(st)
    assert {st[k] for k in flips} == {"mismatch"}
    assert sum(s == "mismatch" for s in st.values()) == len(flips)


def test_norm_orders_roundtrip_json(cases):
    """n = inf / -inf are stored as strings (the manifest is strict JSON)."""
    ns = {c.params["n"] for c in cases.values() if c.op == "prune.ln_structured"}
    assert {"inf", "-inf"} <= ns and not any(isinstance(n, float) and math.isinf(n)
                                            for n in ns)
