"""Smoke test of scripts/kd_digits.py (issue 8, section 4): its main function runs on a
tiny budget and writes the report and the plot."""


import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from script_import import import_script  # noqa: E402


@pytest.fixture(scope="module")
def kd_digits():
    return import_script("kd_digits")


def test_kd_digits_tiny_budget(kd_digits, tmp_path):
    rc = kd_digits.main(["--seeds", "2", "--grid-seeds", "1", "--epochs", "1",
                         "--temperatures", "1,4", "--alphas", "0.5", "--out", str(tmp_path)])
    assert rc == 0
    md = (tmp_path / "kd-digits.md").read_text()
    png = tmp_path / "kd-digits.png"
    assert png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for header in ("# Knowledge distillation on the UCI digits",
                   "| student | parameters | training | seeds | final: mean | std | min | max "
                   "| paired diff (points): mean |",
                   "### Per seed (final test accuracy)",
                   "| T | alpha | final: mean | std | min | max | paired diff (points): mean |",
                   "| T | mean largest probability |", "## Conclusion", "## Method"):
        assert header in md, header
    for row in ("| MLP 64-16-10 | 1210 | plain (cross-entropy) | 2 |",
                "| MLP 64-16-10 | 1210 | KD T=4 alpha=0.9 | 2 |",
                "| MLP 64-16-10 | 1210 | DML T=1 alpha=0.5 (network a) | 2 |",
                "| MLP 64-32-10 | 2410 | KD T=4 alpha=0.9 | 2 |", "| 1 | 0.5 |", "| 4 | 0.5 |"):
        assert row in md, row
    # the plain and KD loops see the same batches (alpha = 0 KD == nn.fit, bit for bit)
    assert "gives bit-identical parameters" in md
