"""The command line, through ``refcomp.cli.main([...])`` and once as ``python -m refcomp``.

Numeric expectations come from the format definitions (OCP OFP8 for E4M3, IEEE 754 for
custom layouts) or from ml_dtypes, not from refcomp's own output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import refcomp
from refcomp.cli import main

#: the catalog, spelt as ml_dtypes / torch spell their dtypes
CATALOG_NAMES = [
    "float64", "float32", "float16", "bfloat16", "tfloat32", "float8_e4m3fn",
    "float8_e4m3fnuz", "float8_e4m3", "float8_e4m3b11fnuz", "float8_e5m2", "float8_e5m2fnuz",
    "float8_e3m4", "float8_e8m0fnu", "float6_e2m3fn", "float6_e3m2fn", "float4_e2m1fn",
]


def run(capsys, *argv):
    """(exit code, stdout, stderr) of ``refcomp argv...``."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def field(out: str, key: str) -> str:
    """The value printed by ``info`` for a constant."""
    m = re.search(rf"^\s+{re.escape(key)}\s+(.*)$", out, re.MULTILINE)
    assert m, f"no {key!r} line in:\n{out}"
    return m.group(1).strip()


# --------------------------------------------------------------------------- formats
def test_formats_lists_every_catalog_name(capsys):
    code, out, err = run(capsys, "formats")
    assert code == 0 and err == ""
    first_words = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert first_words == CATALOG_NAMES
    assert set(first_words) == set(refcomp.formats.names())


def test_formats_columns(capsys):
    _, out, _ = run(capsys, "formats")
    header = out.splitlines()[0].split()
    assert header[:6] == ["name", "width", "e", "m", "bias", "specials"]
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    # width, exponent bits, mantissa bits, bias, specials
    assert rows["float8_e4m3fn"][1:6] == ["8", "4", "3", "7", "fn"]
    assert rows["float8_e5m2fnuz"][1:6] == ["8", "5", "2", "16", "fnuz"]
    assert rows["bfloat16"][1:6] == ["16", "8", "7", "127", "ieee"]
    assert rows["tfloat32"][1] == "19"                       # 1 + 8 + 10
    assert rows["float4_e2m1fn"][1:6] == ["4", "2", "1", "1", "finite"]
    assert float(rows["float8_e4m3fn"][6]) == 1.75 * 2 ** 8  # 448
    assert float(rows["float16"][6]) == 65504.0              # (2 - 2**-10) * 2**15


def test_python_dash_m_formats():
    root = Path(refcomp.__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "refcomp", "formats"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    names = [line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()]
    assert names == CATALOG_NAMES


def test_python_dash_m_error_exit_code():
    root = Path(refcomp.__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "refcomp", "info", "bogus"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "'bogus'" in proc.stderr


# ------------------------------------------------------------------------------ info
def test_info_float8_e4m3fn(capsys):
    code, out, err = run(capsys, "info", "float8_e4m3fn")
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "float8_e4m3fn"
    # OCP OFP8 E4M3: bias 7, emin = 1 - 7, max = S.1111.110 = 1.75 * 2**8
    assert field(out, "max_finite").startswith(repr(1.75 * 2 ** 8))       # "448.0"
    assert field(out, "max_finite").startswith("448.0 ")
    assert field(out, "emin") == "-6"
    assert field(out, "emax") == "8"
    assert field(out, "bias") == "7"
    assert field(out, "width") == "8"
    assert field(out, "min_subnormal").startswith(repr(2.0 ** -9))
    assert field(out, "has_inf") == "False"
    assert field(out, "nan_code") == str(0x7F)
    assert field(out, "max_code") == str(0x7E)
    # encoding rules: NaN only at S.1111.111 (0x7F and 0xFF), no infinity
    nan_line = next(line for line in out.splitlines() if line.strip().startswith("NaN"))
    assert "all-ones" in nan_line and "0x7F" in nan_line and "0xFF" in nan_line
    assert re.search(r"^\s+infinity\s+none", out, re.MULTILINE)
    assert re.search(r"max finite\s+0x7E = 448\.0", out)
    assert "SEEEEMMM" in out


def test_info_matches_ml_dtypes_finfo(capsys):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for name in ("float8_e4m3fn", "float8_e5m2", "bfloat16", "float8_e4m3fnuz"):
        _, out, _ = run(capsys, "info", name)
        fi = ml_dtypes.finfo(getattr(ml_dtypes, name))
        assert float(field(out, "max_finite").split()[0]) == float(fi.max)
        assert float(field(out, "min_normal").split()[0]) == float(fi.smallest_normal)
        assert float(field(out, "eps").split()[0]) == float(fi.eps)


def test_info_alias(capsys):
    code, out, _ = run(capsys, "info", "bf16")
    assert code == 0 and out.splitlines()[0] == "bfloat16"


def test_info_custom_format(capsys):
    code, out, err = run(capsys, "info", "e5m7")
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "e5m7"
    # IEEE-like: 1 + 5 + 7 bits, bias 2**4 - 1, emin = 1 - 15, max = (2 - 2**-7) * 2**15
    assert field(out, "width") == "13"
    assert field(out, "bias") == "15"
    assert field(out, "emin") == "-14"
    assert field(out, "emax") == "15"
    assert float(field(out, "max_finite").split()[0]) == (2 - 2 ** -7) * 2 ** 15
    assert float(field(out, "min_subnormal").split()[0]) == 2.0 ** (-14 - 7)
    assert field(out, "specials") == "ieee"
    assert field(out, "inf_code") == str(0b11111 << 7)
    assert "SEEEEEMMMMMMM" in out


@pytest.mark.parametrize("argv, bad", [
    (["info", "bogus"], "'bogus'"),
    (["info", "float8_e4m3fm"], "'float8_e4m3fm'"),
    (["info", "e12m3"], "exp_bits=12"),
])
def test_info_bad_format(capsys, argv, bad):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("refcomp: error:")
    assert bad in err


def test_info_suggests(capsys):
    _, _, err = run(capsys, "info", "float8_e4m3fm")
    assert "did you mean 'float8_e4m3fn'" in err


# -------------------------------------------------------------------------- profiles
def test_profiles_lists(capsys):
    code, out, err = run(capsys, "profiles")
    assert code == 0 and err == ""
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert "torch-2.13-cpu" in names
    assert "ml_dtypes-0.6" in names
    assert set(names) == set(refcomp.PROFILES)


def test_profiles_torch(capsys):
    code, out, err = run(capsys, "profiles", "torch-2.13-cpu")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("torch-2.13-cpu:")
    assert "2.13.0" in lines[0]
    assert re.search(r"roundings:\s+nearest_even\s*$", out, re.MULTILINE)
    rules = {m.group(1): m.group(2) for m in re.finditer(r"^\s+(\w+): (overflow=.*)$", out,
                                                         re.MULTILINE)}
    # the dtypes torch 2.13 has, and none it lacks
    assert set(rules) == {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn",
                          "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                          "float8_e8m0fnu"}
    # torch saturates float8_e4m3fn casts (c10 fp8e4m3fn_from_fp32_value)
    assert rules["float8_e4m3fn"].startswith("overflow=saturate")
    assert rules["float8_e5m2"].startswith("overflow=ieee")
    assert "float32 first" in rules["bfloat16"]
    assert "source:" in out


def test_profiles_ml_dtypes(capsys):
    code, out, _ = run(capsys, "profiles", "ml_dtypes-0.6")
    assert code == 0
    assert re.search(r"^\s+float4_e2m1fn: overflow=saturate", out, re.MULTILINE)
    assert not re.search(r"^\s+float16:", out, re.MULTILINE)


def test_profiles_unknown(capsys):
    code, out, err = run(capsys, "profiles", "torch-2.13")
    assert code == 2 and out == ""
    assert "'torch-2.13'" in err and "did you mean 'torch-2.13-cpu'" in err


# ------------------------------------------------------------------------------ cast
def _bits_of(line: str) -> int:
    m = re.search(r"bits (0x[0-9A-F]+)", line)
    assert m, line
    return int(m.group(1), 16)


def test_cast_bfloat16(capsys):
    code, out, err = run(capsys, "cast", "0.1", "bfloat16")
    assert code == 0 and err == ""
    assert "bits 0x3DCD" in out
    ml_dtypes = pytest.importorskip("ml_dtypes")
    ref = np.array(0.1, dtype=np.float32).astype(ml_dtypes.bfloat16)
    assert _bits_of(out) == int(ref.view(np.uint16)) == 0x3DCD
    assert f"value {float(ref)!r}" in out                   # 0.10009765625
    assert "flags inexact" in out


def test_cast_hex_input(capsys):
    code, out, _ = run(capsys, "cast", "0x1.8p-3", "float16")
    assert code == 0
    # 0.1875 = 1.5 * 2**-3: exponent field 12, mantissa 1000000000 -> 0 01100 1000000000
    assert _bits_of(out) == (12 << 10) | (1 << 9) == 0x3200
    assert "value 0.1875" in out and "flags -" in out


def test_cast_profile_saturates(capsys):
    code, out, err = run(capsys, "cast", "1e9", "float8_e4m3fn", "--profile", "torch-2.13-cpu")
    assert code == 0 and err == ""
    # saturation to the largest finite E4M3 value S.1111.110 = 1.75 * 2**8
    assert _bits_of(out) == 0b0_1111_110 == 0x7E
    assert "bits 0x7E" in out and "value 448.0" in out
    assert "overflow" in out


def test_cast_without_profile_overflows_to_nan(capsys):
    # E4M3FN has no infinity: a non-saturating conversion gives NaN (S.1111.111), as
    # ml_dtypes' astype does
    code, out, _ = run(capsys, "cast", "1e9", "float8_e4m3fn")
    assert code == 0
    assert _bits_of(out) == 0x7F and "value nan" in out
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert np.isnan(np.array(1e9, dtype=np.float32).astype(ml_dtypes.float8_e4m3fn)
                    .astype(np.float32))


def test_cast_rounding_and_overflow_options(capsys):
    code, out, _ = run(capsys, "cast", "1e9", "float16", "--overflow", "saturate")
    assert code == 0 and _bits_of(out) == 0x7BFF            # 65504, max float16
    code, out, _ = run(capsys, "cast", "0.1", "bfloat16", "--rounding", "toward_zero")
    assert code == 0 and _bits_of(out) == 0x3DCC
    assert "(toward_zero)" in out


def test_cast_negative_value(capsys):
    code, out, _ = run(capsys, "cast", "-0.5", "float16")
    assert code == 0 and _bits_of(out) == 0xB800
    # values argparse would take for options need "--"
    code, out, _ = run(capsys, "cast", "--", "-1e9", "float16")
    assert code == 0 and _bits_of(out) == 0xFC00 and "value -inf" in out


@pytest.mark.parametrize("argv, bad", [
    (["cast", "abc", "float16"], "'abc'"),
    (["cast", "0.1", "bogus"], "'bogus'"),
    (["cast", "0.1", "bfloat16", "--rounding", "banana"], "'banana'"),
    (["cast", "0.1", "bfloat16", "--overflow", "saturat"], "did you mean 'saturate'"),
    (["cast", "0.1", "bfloat16", "--profile", "nope"], "'nope'"),
    (["cast", "1.0", "float6_e2m3fn", "--profile", "torch-2.13-cpu"], "'float6_e2m3fn'"),
    (["cast", "1e9", "float8_e4m3fn", "--profile", "torch-2.13-cpu", "--overflow", "ieee"],
     "overflow='ieee'"),
])
def test_cast_errors(capsys, argv, bad):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("refcomp: error:")
    assert bad in err


# ------------------------------------------------------------------------- argparse
def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() == f"refcomp {refcomp.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", refcomp.__version__)


@pytest.mark.parametrize("argv", [[], ["info"], ["frobnicate"], ["cast", "0.1"]])
def test_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err
