"""Every Numba kernel against its NumPy twin, bit for bit (STYLE rule 9).

Each call runs once with the kernels (``use_jit(True)``: the fast paths where they apply,
the general kernels otherwise, e.g. with ``flags=True``) and once with the NumPy
specification (``use_jit(False)``), on inputs rich in edge cases.
"""

import numpy as np
import pytest

import refcomp as rc
from conftest import CATALOG, CUSTOM, fmt_id
from refcomp._jit import use_jit

MODES = ["nearest_even", "nearest_away", "toward_zero", "toward_positive", "toward_negative",
         "odd", "stochastic"]


def _edge_inputs(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * np.exp2(rng.integers(-160, 160, n))
    raw = rng.integers(0, 2 ** 63, n, dtype=np.uint64) | \
        (rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63))
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.0 ** -1022,
                        1.7976931348623157e308, 1.0, -1.0, 0.5, 1.5, 2.5, 448.0, 464.0, 480.0,
                        57344.0, 61440.0, 65504.0, 65520.0, 2.0 ** -149, 2.0 ** -126])
    snan = np.array([0x7FF0000000000001, 0xFFF4000000001234], dtype=np.uint64).view(np.float64)
    with np.errstate(over="ignore"):
        near = [np.nextafter(special, np.inf), np.nextafter(special, -np.inf)]
    return np.concatenate([x, raw.view(np.float64), special, -special, snan] + near)


def _both(fn):
    with use_jit(True):
        a = fn()
    with use_jit(False):
        b = fn()
    return a, b


def _same(a, b):
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        a = a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])
        b = b.view(a.dtype)
    return a.dtype == b.dtype and np.array_equal(a, b)


X64 = _edge_inputs()
with np.errstate(all="ignore"):
    X32 = X64.astype(np.float32)
    X16 = X64.astype(np.float16)
INTS = np.concatenate([np.random.default_rng(1).integers(-2 ** 63, 2 ** 63 - 1, 2000,
                                                         dtype=np.int64),
                       np.array([0, 1, -1, 2 ** 53 + 1, -2 ** 63, 2 ** 63 - 1])])


OPTIONS = [{}, {"overflow": "saturate"}, {"subnormals": "flush", "tininess": "before"},
           {"subnormals": "daz"}]


@pytest.mark.parametrize("fmt", CATALOG + CUSTOM, ids=fmt_id)
@pytest.mark.parametrize("mode", MODES)
def test_cast_twins(fmt, mode):
    rng = lambda: np.random.default_rng(3)                                    # noqa: E731
    inputs = (X64, X32, X16, INTS, INTS.astype(np.uint64), INTS.astype(np.int8))
    for i, x in enumerate(inputs):
        kw = dict(OPTIONS[(i + MODES.index(mode)) % len(OPTIONS)])   # every option in turn
        if mode == "stochastic" and i % 2:
            kw["random_bits"] = 9
        a, b = _both(lambda: (rc.cast_bits(x, fmt, mode, rng=rng(), **kw),
                              rc.cast(x, fmt, mode, rng=rng(), **kw),
                              rc.cast(x, fmt, mode, rng=rng(), flags=True, **kw)))
        assert _same(a, b), (fmt.name, mode, x.dtype, kw)


@pytest.mark.parametrize("profile,names", [
    ("torch-2.13-cpu", ["float32", "bfloat16", "float16", "float8_e4m3fn", "float8_e4m3fnuz",
                        "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu"]),
    ("ml_dtypes-0.6", ["bfloat16", "float8_e4m3fn", "float8_e3m4", "float8_e8m0fnu",
                       "float6_e2m3fn", "float4_e2m1fn"]),
])
def test_profile_twins(profile, names):
    for name in names:
        for x in (X64, X32):
            a, b = _both(lambda: (rc.cast_bits(x, name, profile=profile),
                                  rc.cast(x, name, profile=profile, flags=True)))
            assert _same(a, b), (profile, name, x.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_value_dtype_twins(dtype):
    for name in ("bfloat16", "float16", "float8_e4m3fn", "float8_e5m2", "float4_e2m1fn"):
        f = rc.formats.get(name)
        if f.man_bits > np.finfo(dtype).nmant or f.emax > np.finfo(dtype).maxexp - 1 \
                or f.emin - f.man_bits < np.finfo(dtype).minexp - np.finfo(dtype).nmant:
            continue
        a, b = _both(lambda: rc.cast(X32, f, dtype=dtype))
        assert _same(a, b), (name, dtype)


OPS = {"add": 2, "sub": 2, "mul": 2, "div": 2, "fma": 3, "sqrt": 1}


@pytest.mark.parametrize("fmt", [rc.formats.get(n) for n in (
    "float64", "float32", "bfloat16", "float16", "tfloat32", "float8_e4m3fn", "float8_e5m2",
    "float8_e4m3fnuz", "float8_e8m0fnu", "float4_e2m1fn")] + CUSTOM, ids=fmt_id)
@pytest.mark.parametrize("op", sorted(OPS))
def test_op_twins(fmt, op):
    rng = np.random.default_rng(5)
    n = X64.size
    operands = [X64[rng.permutation(n)] for _ in range(OPS[op])]
    with np.errstate(over="ignore", invalid="ignore"):
        narrow = [o.astype(np.float16) for o in operands]
    fn = getattr(rc.ops, op)
    for k, mode in enumerate(MODES):
        g = lambda: np.random.default_rng(8)                               # noqa: E731
        args = (operands, narrow)[k % 2]
        with np.errstate(all="ignore"):
            a, b = _both(lambda: (fn(*args, fmt, mode, rng=g()),
                                  fn(*args, fmt, mode, rng=g(), flags=True),
                                  fn(*args, fmt, mode, rng=g(), subnormals="daz")))
        assert _same(a, b), (fmt.name, op, mode, args[0].dtype)
