"""Smoke test of scripts/mpt_digits.py (issue 9, section 4): its main function runs on a
tiny budget and writes the report and the plot."""


import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from script_import import import_script  # noqa: E402


@pytest.fixture(scope="module")
def mpt_digits():
    return import_script("mpt_digits")


def test_mpt_digits_tiny_budget(mpt_digits, tmp_path):
    rc = mpt_digits.main(["--epochs", "1", "--hist-every", "9", "--shift", "16",
                          "--nets", "mlp", "--out", str(tmp_path)])
    assert rc == 0
    md = (tmp_path / "mpt-digits.md").read_text()
    png = tmp_path / "mpt-digits.png"
    assert png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for header in ("# Mixed Precision Training on the UCI digits",
                   "## 1. Gradient magnitudes of float32 training",
                   "| network | gradients | steps sampled | values | exactly 0 (%) |",
                   "| network | gradients | loss scale S | flushed to 0 (%) | subnormal (%) "
                   "| overflow to inf (%) | mass lost (%) |",
                   "| network | run | policy | final test accuracy | best | skipped steps ",
                   "### Test accuracy per epoch: MLP 64-128-64-10",
                   "## 3. VARIANT", "## Checks", "## Findings", "## Versions"):
        assert header in md, header
    for row in ("| MLP 64-128-64-10 | float32 | `fp32` |",
                "| MLP 64-128-64-10 | fp16, no loss scaling (S = 1) | `fp16-mixed` |",
                "| MLP 64-128-64-10 | fp16, dynamic (GradScaler defaults) | `fp16-mixed` |",
                "| MLP 64-128-64-10 | bf16-mixed (no scaling) | `bf16-mixed` |",
                "| MLP 64-128-64-10 | activation | 2^16 |", "| MLP 64-128-64-10 | weight | 8 |"):
        assert row in md, row
    # the sampling loop replays nn.fit, and the variant is float32-exact
    assert "FAIL" not in md
    assert md.count("- PASS:") == 3
