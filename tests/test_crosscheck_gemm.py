"""torch 2.13 CPU matmul and conv2d in float32, bfloat16 and float16 against refcomp's
accumulation models: every case within the model's derived bound (the real backend is the
oracle; the bound is derived, not fitted), the pinned flags recorded."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refcomp.crosscheck import gemm  # noqa: E402


@pytest.fixture(scope="module")
def cpu_run():
    return gemm.run("cpu", quick=True, seed=1)


def test_every_cpu_case_within_bound(cpu_run):
    results, env = cpu_run
    assert {r.dtype for r in results} == {"float32", "bfloat16", "float16"}
    assert {r.op for r in results} == {"matmul", "conv2d"}
    bad = [r for r in results if r.status == "mismatch"]
    assert not bad, "\n".join(f"{r.op} {r.dtype} {r.case} {r.shape}: err/bound "
                              f"{r.max_err_over_bound:.3g}" for r in bad)
    for r in results:
        assert r.max_err_over_bound <= 1.0
        assert 0.0 <= r.exact_rate <= 1.0


def test_bound_is_tighter_than_assert_close_for_half_precisions(cpu_run):
    """On same-sign data (|exact| = |A||B|) the bf16/fp16 bound (fp32 accumulation then one
    rounding) is about (K 2**-24 + 2**-9 or 2**-11) |exact|, below assert_close's rtol
    (1.6e-2 / 1e-3) for the K of the quick suite (<= 1000): allowance / bound > 1."""
    results, _ = cpu_run
    rows = [r for r in results if r.dtype in ("bfloat16", "float16") and
            r.case == "same-sign"]
    assert rows
    for r in rows:
        assert r.assert_close_over_bound > 1.0, r


def test_flags_pinned_and_recorded(cpu_run):
    _, env = cpu_run
    assert env["torch"].startswith("2.13")
    assert env["float32_matmul_precision"] == "highest"
    assert env["cudnn.allow_tf32"] is False
    md = gemm.markdown(*cpu_run)
    assert "float32_matmul_precision" in md and "| matmul | bfloat16 |" in md


def test_model_mismatch_would_be_detected():
    """The classification is not vacuous: a result off by more than the bound is a
    mismatch (here: the exact result perturbed by twice the bound)."""
    rng = np.random.default_rng(0)
    exact = rng.standard_normal((4, 4))
    bound = np.full((4, 4), 1e-6)
    got = exact + 2 * bound
    status, rate, ratio, _ = gemm._compare(got, exact, exact, np.zeros((4, 4)), bound,
                                           "float32")
    assert status == "mismatch" and ratio == pytest.approx(2.0)
