"""The README's claims: set-up commands, the example, the format table."""

import contextlib
import io
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import refcomp as rc

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_two_setup_commands_and_ci_runs_the_test_one():
    setup = README[README.index("## Set up"):README.index("## Example")]
    cmds = [b.strip() for b in re.findall(r"```bash\n(.*?)```", setup, re.S)]
    assert len(cmds) == 2
    main_job, test_cmd = cmds
    assert "pip install" in main_job and "pip install" in test_cmd
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()


def test_example_runs_and_prints_what_it_says():
    code = _blocks("python")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README example", "exec"), {})
    lines = out.getvalue().splitlines()
    # 464 is the tie between 448 (mantissa 110) and 480 (111, a NaN code): to even, 448;
    # 500 is beyond it: overflow to NaN; saturating: 448 = 1.75 * 2**8
    assert lines[0] == "[448.  nan] inexact|overflow"
    assert lines[1] == "448.0"
    assert float(lines[2]) in (0.099609375, 0.10009765625)   # bfloat16 neighbours of 0.1
    # -416 = -1.101b * 2**8 -> 1 1111 101 = 253; torch rounds through float32 to -432,
    # a tie, then to even -448 = 1 1111 110 = 254
    assert lines[3] == "253 254"


def test_format_table_matches_the_catalog():
    table = README[README.index("## Formats"):README.index("Any other layout")]
    rows = [r.split("|")[1:-1] for r in table.splitlines() if r.startswith("| ")][1:]
    names = [r[0].strip() for r in rows]
    assert names == rc.formats.names()
    for r in rows:
        f = rc.formats.get(r[0].strip())
        assert int(r[2]) == f.bias
        mx = r[4].strip()
        want = float(eval(mx.replace("^", "**"))) if "^" in mx else float(mx)
        assert abs(want - f.max_finite) <= 0.005 * f.max_finite, (f.name, mx)


def test_readme_mentions_every_profile():
    for name in rc.PROFILES:
        assert f"`{name}`" in README


def test_integer_example_prints_its_comments():
    """The integer/fixed-point example: every print matches the comment on its line, and
    the comments agree with an exact computation done here."""
    code = _blocks("python")[1]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README integer example", "exec"), {})
    printed = out.getvalue().splitlines()
    comments = [line.split("#")[1].split("(")[0].strip() for line in code.splitlines()
                if line.startswith("print(") and "#" in line]
    # the affine example spans two lines; its comment is on the second
    comments.append(re.findall(r"\)\s+# (\[\d+\])", code)[-1])
    assert printed == comments
    # the comments, recomputed from their definitions with Python integers and Fractions
    from fractions import Fraction
    q15 = [int(Fraction(v) * 2 ** 15) for v in (0.5, -0.75)]         # toward zero, exact
    expect = [str([round(2.5), round(3.5), 127]),                     # RNE ties, saturate
              str([(300 + 128) % 256 - 128]),                         # wrap modulo 2**8
              str([-127]),                                            # narrow int8
              str([round(Fraction(a * a, 2 ** 15)) for a in q15]),    # one rounding, Q0.15
              str([(-8 & 15) | ((7 & 15) << 4), (-1 & 15) | (0 << 4)]),  # low nibble first
              str(round(Fraction(1000 * (1 << 30), 2 ** 31) / 2)),     # 1000 * 2**-1 * 2**-1
              str([round(Fraction(1, 4) / Fraction(1, 10) + 1)])]     # 2.5 + 1 = 3.5 -> 4
    assert comments == expect


def test_block_example_prints_its_comment():
    """The MX example: scale code 127 (2**0: floor(log2 6.5) = 2 = emax of E2M1), -0.3
    to the nearer of {0, 0.5}, 6.5 saturating to the E2M1 maximum 6."""
    blocks = _blocks("python")
    g = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(blocks[1], "README integer example", "exec"), g)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[2], "README block example", "exec"), g)
    comment = blocks[2].split("# [[")[1]
    assert out.getvalue().strip() == "[[" + comment.strip()
    assert out.getvalue().strip() == "[[127]] [[1.0, -0.5, 6.0, 0.0]]"


def test_gemm_example_runs_and_its_bound_holds():
    """The README GEMM example: D within E of the exact product (Fraction oracle)."""
    block = next(b for b in _blocks("python") if "AccumulationModel" in b)
    g = {}
    exec(compile(block, "README GEMM example", "exec"), g)
    A, D, E = np.asarray(g["A"]), g["D"], g["E"]
    for i in range(4):
        for j in range(4):
            exact = sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(A[i], A[j]))
            assert abs(Fraction(float(D[i, j])) - exact) <= Fraction(float(E[i, j]))


def test_nn_example_runs():
    """The NN example trains one step: a finite loss, float32 master weights, bf16
    gradients (the policy's roles)."""
    code = next(b for b in _blocks("python") if "from refcomp import nn" in b)
    env = {}
    exec(compile(code, "README nn example", "exec"), env)
    r, model = env["r"], env["model"]
    assert np.isfinite(r.loss) and not r.found_inf
    for v in model.named_parameters().values():
        assert np.array_equal(rc.cast(v, "float32"), v)
    assert any(not np.array_equal(rc.cast(v, "bfloat16"), v)
               for v in model.named_parameters().values())


def test_quant_example_prints_the_observer_rule():
    """The quantization example: MinMaxObserver's qparams are torch's affine rule,
    scale = f32((max - min) / 255), zero_point = 0 - round(min / scale) (here 64)."""
    code = next(b for b in _blocks("python") if "from refcomp import nn, quant" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README quant example", "exec"), {})
    first, second = out.getvalue().splitlines()
    scale = float(np.float32(np.float32(3.0) - np.float32(-1.0)) / np.float32(255))
    zp = 0 - round(Fraction(-1) / Fraction(scale))
    assert first == f"[{scale!r}] [{zp}]"
    assert second == "(2, 4)"
    for line, comment in zip((first, second), re.findall(r"# (.*)", code)):
        assert line == comment
