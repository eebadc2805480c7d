"""Golden files: determinism, refusal to overwrite, verify, and fuzzing of the reader."""

import json
import shutil
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import refcomp as rc
from refcomp import golden
from refcomp.cli import main
from refcomp.golden import GoldenError
from refcomp.golden.store import MANIFEST, suite_bytes

REPO_GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("g")
    golden.generate(["stochastic", "reduce"], d)
    return d


def copy(src, tmp_path):
    dst = tmp_path / "g"
    shutil.copytree(src, dst)
    return dst


def test_committed_golden_files_verify():
    """Every committed case recomputes to the stored bits and every hash matches."""
    checked, problems = golden.verify(REPO_GOLDEN)
    assert problems == [] and checked > 2000


def test_regeneration_is_byte_identical(tmp_path):
    golden.generate(None, tmp_path)
    for f in sorted(REPO_GOLDEN.glob("*.npz")) + [REPO_GOLDEN / MANIFEST]:
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f.name


def test_size_under_20mb():
    assert sum(f.stat().st_size for f in REPO_GOLDEN.rglob("*") if f.is_file()) < 20e6


def test_readable_without_refcomp(small):
    """The documented layout: manifest keys name npz arrays of the stated dtype/shape."""
    m = json.loads((small / MANIFEST).read_text())
    entry = m["suites"]["stochastic"]
    with np.load(small / entry["file"], allow_pickle=False) as z:
        for case in entry["cases"]:
            for arr in list(case["inputs"].values()) + list(case["outputs"].values()):
                a = z[arr["key"]]
                assert a.dtype.name == arr["dtype"] and list(a.shape) == arr["shape"]


def test_golden_readme_example_runs_without_refcomp():
    """golden/README.md's reading example runs as written, importing only NumPy and json,
    and its hand-made RNE oracle agrees with the committed bfloat16 sums."""
    import re
    import subprocess
    import sys
    text = (REPO_GOLDEN / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code += "\nimport sys\nassert 'refcomp' not in sys.modules\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_GOLDEN.parent,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "checks out on" in r.stdout


def test_refuses_to_overwrite_changed_content(small, tmp_path, monkeypatch):
    d = copy(small, tmp_path)
    before = (d / "reduce.npz").read_bytes()
    orig = golden.SUITES["reduce"]
    monkeypatch.setitem(golden.SUITES, "reduce", lambda: orig()[:-1])
    res = golden.generate(["reduce"], d)
    assert "reduce" in res.refused and any("removed" in ln for ln in res.refused["reduce"])
    assert (d / "reduce.npz").read_bytes() == before
    res = golden.generate(["reduce"], d, force=True)
    assert res.written == ["reduce"] and (d / "reduce.npz").read_bytes() != before


def test_unchanged_suite_is_not_rewritten(small, tmp_path):
    d = copy(small, tmp_path)
    res = golden.generate(["stochastic"], d)
    assert res.unchanged == ["stochastic"] and not res.written


def test_stochastic_key_is_documented_draw(small):
    """params['key'] is the first raw 64-bit draw of numpy.random.default_rng(seed)."""
    for case in golden.read_suite(small, "stochastic"):
        raw = int(np.random.PCG64(case.params["seed"]).random_raw())
        assert case.params["key"] == raw


# ------------------------------------------------------------------ fuzzing the reader

def _verify_problems(d):
    checked, problems = golden.verify(d)
    return problems


def test_edited_array_is_reported_with_case_name(small, tmp_path):
    d = copy(small, tmp_path)
    m = json.loads((d / MANIFEST).read_text())
    case = m["suites"]["reduce"]["cases"][3]
    key = case["outputs"]["y"]["key"]
    with np.load(d / "reduce.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays[key] = arrays[key].copy()
    arrays[key][0] ^= 1
    np.savez(d / "reduce.npz", **arrays)
    problems = _verify_problems(d)
    assert any(p.case == case["name"] for p in problems), problems
    assert any("sha256" in p.message for p in problems)


def test_edited_manifest_output_is_reported(small, tmp_path):
    """A hand edit that keeps the hashes consistent is caught by recomputation."""
    d = copy(small, tmp_path)
    with np.load(d / "reduce.npz") as z:
        arrays = {k: z[k] for k in z.files}
    m = json.loads((d / MANIFEST).read_text())
    case = m["suites"]["reduce"]["cases"][0]
    key = case["outputs"]["y"]["key"]
    arrays[key] = arrays[key] ^ np.uint32(1)
    np.savez(d / "reduce.npz", **arrays)
    import hashlib
    case["outputs"]["y"]["sha256"] = hashlib.sha256(arrays[key].tobytes()).hexdigest()
    m["suites"]["reduce"]["sha256"] = hashlib.sha256((d / "reduce.npz").read_bytes()).hexdigest()
    (d / MANIFEST).write_text(json.dumps(m))
    problems = _verify_problems(d)
    assert [p.case for p in problems] == [case["name"]]
    assert "differs" in problems[0].message


@pytest.mark.parametrize("cut", [0, 10, 100, 1000, 5000, -1])
def test_truncated_file(small, tmp_path, cut):
    d = copy(small, tmp_path)
    data = (d / "stochastic.npz").read_bytes()
    (d / "stochastic.npz").write_bytes(data[:cut] if cut >= 0 else data[:-1])
    problems = _verify_problems(d)
    assert problems and all(isinstance(p.message, str) for p in problems)
    with pytest.raises(GoldenError):
        golden.read_suite(d, "stochastic")


def test_renamed_and_foreign_files(small, tmp_path):
    d = copy(small, tmp_path)
    (d / "reduce.npz").rename(d / "other.npz")
    msgs = [str(p) for p in _verify_problems(d)]
    assert any("foreign" in m for m in msgs) and any("missing" in m for m in msgs)


@pytest.mark.parametrize("edit", ["dtype", "shape", "kind", "missing_key", "bad_json",
                                  "schema", "no_suites", "bad_file", "tolerance", "op",
                                  "extra_array", "object_array"])
def test_malformed_inputs_raise_clear_errors(small, tmp_path, edit):
    d = copy(small, tmp_path)
    mpath = d / MANIFEST
    m = json.loads(mpath.read_text())
    case = m["suites"]["reduce"]["cases"][0]
    if edit == "dtype":
        case["outputs"]["y"]["dtype"] = "uint64"
    elif edit == "shape":
        case["outputs"]["y"]["shape"] = [999]
    elif edit == "kind":
        case["outputs"]["y"]["kind"] = "float7_nonsense"
    elif edit == "missing_key":
        case["outputs"]["y"]["key"] = "nope"
    elif edit == "schema":
        m["schema_version"] = 99
    elif edit == "no_suites":
        m = {"schema_version": 1}
    elif edit == "bad_file":
        m["suites"]["reduce"]["file"] = "../etc/passwd"
    elif edit == "tolerance":
        case["tolerance"] = {"rule": "guess"}
    elif edit == "op":
        case["op"] = "frobnicate"
    if edit == "bad_json":
        mpath.write_text("{not json")
    else:
        mpath.write_text(json.dumps(m))
    if edit in ("extra_array", "object_array"):
        with zipfile.ZipFile(d / "reduce.npz", "a") as z:
            import io
            buf = io.BytesIO()
            arr = np.array([{"a": 1}], dtype=object) if edit == "object_array" else \
                np.zeros(3, np.uint8)
            np.lib.format.write_array(buf, arr, allow_pickle=True)
            z.writestr(("0000.out.y" if edit == "object_array" else "extra") + "x.npy",
                       buf.getvalue())
    problems = _verify_problems(d)
    assert problems, edit
    for p in problems:
        assert str(p) and "Traceback" not in str(p)
    assert main(["golden", "verify", str(d)]) == 1


def test_cli_generate_verify_list(tmp_path, capsys):
    assert main(["golden", "generate", "--suite", "reduce", "--out", str(tmp_path)]) == 0
    assert main(["golden", "verify", str(tmp_path)]) == 0
    assert main(["golden", "list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reduce" in out and "all match" in out


def test_sum_case_is_the_correctly_rounded_sum():
    """Independent oracle: exact rational sum, rounded by an enumeration of neighbours."""
    case = next(c for c in golden.read_suite(REPO_GOLDEN, "reduce")
                if c.params["fmt"] == "bfloat16")
    x = case.inputs["x"].values()
    y = case.outputs["y"].values()
    fmt = rc.formats.bfloat16
    for row, got in zip(x.tolist(), y.tolist()):
        s = sum(map(Fraction, row), Fraction(0))
        lo = fmt.decode(rc.cast_bits(float(s), fmt, "toward_negative"))
        cands = [Fraction(float(v)) for v in (lo, rc.ops.next_up(lo, fmt))]
        best = min(cands, key=lambda c: (abs(c - s), fmt.encode(float(c)) & 1))
        assert Fraction(got) == best
