"""Shared checks of the tests of one golden suite (tests/test_golden_<suite>.py): read the
committed cases, verify them, regenerate byte for byte, run the torch-cpu cross-check."""

import json
from pathlib import Path

import numpy as np
import pytest

from refcomp import crosscheck, golden
from refcomp.golden.store import MANIFEST

REPO_GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def read_cases(suite):
    """{case name: Case} of the committed suite."""
    return {c.name: c for c in golden.read_suite(REPO_GOLDEN, suite)}


def torch_run(suite):
    """The torch-cpu cross-check of the committed suite (skips without torch)."""
    pytest.importorskip("torch")
    return crosscheck.run("torch-cpu", REPO_GOLDEN, [suite], progress=False)


def verify_committed(suite, n_cases):
    """Recompute every committed case; returns how many were checked (== n_cases)."""
    checked, problems = golden.verify(REPO_GOLDEN, [suite])
    assert problems == []
    assert checked == n_cases
    return checked


def regenerates_identically(suite, tmp_path, max_bytes):
    """Regenerating gives the committed npz byte for byte and the same manifest entry."""
    golden.generate([suite], tmp_path)
    npz = f"{suite}.npz"
    assert (tmp_path / npz).read_bytes() == (REPO_GOLDEN / npz).read_bytes()
    mine = json.loads((tmp_path / MANIFEST).read_text())["suites"][suite]
    assert mine == json.loads((REPO_GOLDEN / MANIFEST).read_text())["suites"][suite]
    assert (REPO_GOLDEN / npz).stat().st_size < max_bytes


def tampered_backend(flips):
    """torch-cpu with one bit of one output of chosen cases flipped: ``flips`` maps a case
    name to ``(output, flat index, bit)``."""
    from refcomp.crosscheck.torch_backend import TorchBackend

    class Tampered(TorchBackend):
        def __init__(self):
            super().__init__("cpu")

        def run(self, case):
            out = super().run(case)
            if case.name in flips:
                k, i, shift = flips[case.name]
                v = out[k].copy()
                v.reshape(-1)[i] ^= np.array(1 << shift, v.dtype)
                out[k] = v
            return out

    return Tampered()
