"""Format constants: derived from the fields, checked against independent sources."""

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
import torch

import refcomp as rc
from conftest import CATALOG, CUSTOM, SMALL, fmt_id
from table_oracle import field_values

# hand-written from the OCP OFP8 / MX v1.0 specs and the fnuz paper (arXiv:2206.02915):
# name: (bias, max finite, min normal, min subnormal)
SPEC_TABLE = {
    "float8_e4m3fn": (7, 448.0, 2.0 ** -6, 2.0 ** -9),
    "float8_e4m3fnuz": (8, 240.0, 2.0 ** -7, 2.0 ** -10),
    "float8_e5m2": (15, 57344.0, 2.0 ** -14, 2.0 ** -16),
    "float8_e5m2fnuz": (16, 57344.0, 2.0 ** -15, 2.0 ** -17),
    "float8_e8m0fnu": (127, 2.0 ** 127, 2.0 ** -127, 2.0 ** -127),
    "float6_e2m3fn": (1, 7.5, 1.0, 0.125),
    "float6_e3m2fn": (3, 28.0, 0.25, 0.0625),
    "float4_e2m1fn": (1, 6.0, 1.0, 0.5),
    "float16": (15, 65504.0, 2.0 ** -14, 2.0 ** -24),
    "bfloat16": (127, float.fromhex("0x1.fep127"), 2.0 ** -126, 2.0 ** -133),
    "tfloat32": (127, float.fromhex("0x1.ffcp127"), 2.0 ** -126, 2.0 ** -136),
}


@pytest.mark.parametrize("name", sorted(SPEC_TABLE))
def test_constants_match_the_specs(name):
    f = rc.formats.get(name)
    bias, mx, mn, ms = SPEC_TABLE[name]
    assert (f.bias, f.max_finite, f.min_normal, f.min_subnormal) == (bias, mx, mn, ms)


def _finfo(f):
    if f.name in ("float16", "float32", "float64"):
        return np.finfo(np.dtype(f.name))
    return ml_dtypes.finfo(getattr(ml_dtypes, f.name))


@pytest.mark.parametrize("f", [f for f in CATALOG if f.name != "tfloat32"], ids=fmt_id)
def test_constants_match_finfo(f):
    fi = _finfo(f)
    assert f.max_finite == float(fi.max)
    assert f.min_normal == float(fi.smallest_normal)
    assert f.min_subnormal == float(fi.smallest_subnormal)
    assert f.eps == float(fi.eps)
    assert f.emin == fi.minexp and f.emax == fi.maxexp - 1
    assert f.width == fi.bits


@pytest.mark.parametrize("f", SMALL + [c for c in CUSTOM if c.width <= 16], ids=fmt_id)
def test_constants_match_enumeration(f):
    """Every constant equals what enumerating all codes with the field formula gives."""
    v = field_values(f)
    fin = v[np.isfinite(v)]
    pos = np.unique(fin[fin > 0])
    assert f.max_finite == fin.max()
    assert f.min_subnormal == pos.min()
    normals = pos[pos >= f.min_normal]
    assert normals.min() == f.min_normal
    if 1.0 in pos:
        assert f.eps == pos[pos > 1.0].min() - 1.0
    assert f.has_inf == bool(np.any(np.isinf(f.decode(np.arange(1 << f.width)))))
    assert f.has_nan == bool(np.any(np.isnan(v)))
    assert f.has_negative_zero == bool(np.any((fin == 0) & np.signbit(fin)))
    assert f.emax == int(np.floor(np.log2(f.max_finite)))
    assert Fraction(f.max_finite) == f.code_value(f.max_code)


def test_catalog_names_are_backend_dtype_names():
    for f in CATALOG:
        if f.name != "tfloat32":
            assert hasattr(ml_dtypes, f.name) or hasattr(np, f.name), f.name
    for name in ("float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                 "float8_e5m2fnuz", "float8_e8m0fnu"):
        assert hasattr(torch, rc.formats.get(name).name)


def test_lookup_and_custom_names():
    assert rc.formats.get("fp16") is rc.formats.float16
    assert rc.formats.get("BF16").name == "bfloat16"
    f = rc.formats.get("e5m7")
    assert (f.exp_bits, f.man_bits, f.bias, f.name) == (5, 7, 15, "e5m7")
    assert rc.FloatFormat(4, 3, bias=11, specials="fnuz").name == "e4m3_b11_fnuz"
    assert rc.formats.get(f) is f
    assert rc.FloatFormat(4, 3, 7, "fn") == rc.formats.float8_e4m3fn.__class__(4, 3, 7, "fn")


def test_formats_are_hashable_and_frozen():
    f = rc.formats.float16
    assert {f: 1}[rc.formats.get("float16")] == 1
    with pytest.raises(Exception):
        f.man_bits = 3
