"""The golden suites: named, deterministic generators of cases.

A suite is a function returning a list of :class:`~refcomp.golden.schema.Case`; register
one with :func:`suite`.  Inputs are drawn from ``numpy.random.default_rng`` with fixed seeds
(PCG64: the same stream on every machine), outputs computed by
:func:`refcomp.golden.compute.compute`.  Later capabilities (block formats, GEMM, the NN
engine, ...) add their suites here.

Foundation suites
-----------------
cast        every catalog format to every catalog format, six deterministic modes,
            edge-heavy inputs (ties, subnormal and overflow boundaries, ±0, inf, NaN)
arith       add, sub, mul, div, sqrt, fma, round_to_integral, to_int, eq/lt/le with flags
            in six formats and six modes (tininess after and before)
stochastic  stochastic-rounding casts and adds at fixed seeds, exact and 8-bit SR
profiles    casts under each backend profile (torch, ml_dtypes, OCP) from float32/float64
reduce      sums of rows, bit-exact by construction in refcomp (correctly rounded), with a
            rigorous bound for backends that sum in another order
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..formats import catalog
from ..rounding import cast_bits
from ..rounding.modes import Rounding
from ..rounding.profiles import DEFAULT_PROFILE, PROFILES
from .compute import compute, rng_key
from .edges import edge_values, special_values
from .schema import Case, GoldenError, Operand, Tolerance

__all__ = ["SUITES", "suite", "build", "DETERMINISTIC"]

SUITES: dict = {}
DETERMINISTIC = [r.value for r in Rounding if r.deterministic]
_FLOAT_INPUTS = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def suite(name: str):
    """Register a suite generator under `name`."""
    def deco(fn):
        SUITES[name] = fn
        return fn
    return deco


def build(name: str) -> list[Case]:
    if name not in SUITES:
        raise GoldenError(f"unknown suite {name!r} (known: {', '.join(SUITES)})")
    return SUITES[name]()


def _seed(*parts) -> int:
    """A stable seed from names (no Python hash(): it is salted per process)."""
    h = 0
    for ch in "/".join(map(str, parts)).encode():
        h = (h * 131 + ch) % (1 << 63)
    return h


def pow10(k) -> np.ndarray:
    """``10.0 ** k`` for integer k, correctly rounded by exact rational arithmetic: case
    inputs must not depend on the CPU's SIMD ``pow`` (NumPy dispatches float64 power to
    different code on AVX-512 and AVX2 machines, 1 ulp apart)."""
    k = np.asarray(k)
    return np.array([float(Fraction(10) ** int(e)) for e in k.ravel()]).reshape(k.shape)


def into(values: np.ndarray, kind: str) -> Operand:
    """float64 values rounded (RNE, refcomp's conventions) into a format, as an Operand.

    float64 keeps every bit (NaN payloads included); narrower formats go through the core.
    """
    fmt = catalog.get(kind)
    values = np.asarray(values, np.float64)
    if fmt.name == "float64":
        return Operand(kind, values.view(np.uint64).copy())
    return Operand(fmt.name, np.asarray(cast_bits(values, fmt), fmt.storage_dtype))


def _unique(op: Operand) -> Operand:
    _, idx = np.unique(op.bits, return_index=True)
    return Operand(op.kind, op.bits[np.sort(idx)])


def make(name, op, params, inputs, *, tolerance=None, nan_bits=True, notes="") -> Case:
    params = {k: v for k, v in params.items() if v is not None}
    if "seed" in params:
        params["key"] = rng_key(params["seed"])
    outputs = compute(op, inputs, params)
    return Case(name, op, params, inputs, outputs, tolerance, nan_bits, notes)


# ---------------------------------------------------------------- cast

@suite("cast")
def cast_suite() -> list[Case]:
    """Every catalog format to every catalog format, six modes, edge-heavy inputs."""
    cases = []
    names = catalog.names()
    for src in names:
        for dst in names:
            fmt = catalog.get(dst)
            rng = np.random.default_rng(_seed("cast", src, dst))
            x = _unique(into(edge_values(fmt, rng), src))
            for mode in DETERMINISTIC:
                cases.append(make(f"cast/{src}->{dst}/{mode}", "cast",
                                  {"fmt": dst, "rounding": mode}, {"x": x}))
    return cases


# ---------------------------------------------------------------- arithmetic

ARITH_FORMATS = ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"]


def _operands(fmt, rng, n):
    """n operand values of `fmt`: specials, boundaries and random codes (float64)."""
    edges = np.concatenate([edge_values(fmt, rng, 4), special_values()])
    codes = rng.integers(0, 1 << fmt.width, n, dtype=np.uint64)
    rand = fmt.decode(codes)
    return np.concatenate([rng.choice(edges, n // 2), rand])[rng.permutation(n + n // 2)]


def _ties(fmt, rng, n):
    """Pairs (a, b) whose exact sum is a tie or one float64 step from a tie in `fmt`."""
    codes = rng.integers(1 << fmt.man_bits, fmt.max_code - 1, n, dtype=np.uint64)
    a = fmt.decode(codes)
    up = fmt.decode(codes + np.uint64(1))
    b = (up - a) / 2 * rng.choice([-1.0, 1.0, 0.5, 1.5], n)
    return a, b


@suite("arith")
def arith_suite() -> list[Case]:
    """+ - * / sqrt fma, round_to_integral, to_int, eq/lt/le with flags, six modes."""
    cases = []
    n = 256
    for name in ARITH_FORMATS:
        fmt = catalog.get(name)
        rng = np.random.default_rng(_seed("arith", name))
        a, b, c = (_operands(fmt, rng, n) for _ in range(3))
        ta, tb = _ties(fmt, rng, n)
        ab = {"a": into(np.concatenate([a, ta]), name), "b": into(np.concatenate([b, tb]),
                                                                   name)}
        abc = {"a": into(a, name), "b": into(b, name), "c": into(c, name)}
        with np.errstate(invalid="ignore"):
            aa = {"a": into(np.concatenate([a, a * 0.5 + 0.25]), name)}
        for mode in DETERMINISTIC:
            p = {"fmt": name, "rounding": mode}
            for op in ("add", "sub", "mul", "div"):
                cases.append(make(f"arith/{op}/{name}/{mode}", op, p, ab))
            cases.append(make(f"arith/sqrt/{name}/{mode}", "sqrt", p, {"a": aa["a"]}))
            cases.append(make(f"arith/fma/{name}/{mode}", "fma", p, abc))
            for op in ("mul", "fma"):
                cases.append(make(f"arith/{op}/{name}/{mode}/tininess_before", op,
                                  {**p, "tininess": "before"}, abc if op == "fma" else ab))
            for exact in (True, False):
                cases.append(make(f"arith/round_to_integral/{name}/{mode}/exact={exact}",
                                  "round_to_integral", {**p, "exact": exact}, aa))
            for bits, signed in ((8, True), (32, True), (64, False)):
                kind = f"{'' if signed else 'u'}int{bits}"
                cases.append(make(f"arith/to_int/{name}->{kind}/{mode}", "to_int",
                                  {"bits": bits, "signed": signed, "rounding": mode,
                                   "exact": True}, aa))
        for op in ("eq", "lt", "le"):
            cases.append(make(f"arith/{op}/{name}", op, {}, ab))
    return cases


# ---------------------------------------------------------------- stochastic

SR_FORMATS = ["bfloat16", "float16", "float8_e4m3fn", "float8_e5m2", "float6_e3m2fn",
              "float4_e2m1fn"]


@suite("stochastic")
def stochastic_suite() -> list[Case]:
    """Stochastic-rounding casts and adds at fixed seeds (exact and 8-bit SR)."""
    cases = []
    for name in SR_FORMATS:
        fmt = catalog.get(name)
        rng = np.random.default_rng(_seed("stochastic", name))
        base = edge_values(fmt, rng, 16)
        base = base[np.isfinite(base)]
        x = into(np.concatenate([base, rng.standard_normal(512) * fmt.max_finite / 8]),
                 "float32")
        for seed in (0, 1, 20261122):
            for rbits in (None, 8):
                label = "exact" if rbits is None else f"{rbits}bit"
                cases.append(make(f"stochastic/cast/float32->{name}/seed={seed}/{label}",
                                  "cast", {"fmt": name, "rounding": "stochastic",
                                           "seed": seed, "random_bits": rbits}, {"x": x}))
        if name in ("bfloat16", "float16"):
            a, b = _ties(fmt, rng, 256)
            cases.append(make(f"stochastic/add/{name}/seed=7", "add",
                              {"fmt": name, "rounding": "stochastic", "seed": 7},
                              {"a": into(a, name), "b": into(b, name)}))
    return cases


# ---------------------------------------------------------------- profiles

@suite("profiles")
def profiles_suite() -> list[Case]:
    """Casts under each backend profile (torch, ml_dtypes, OCP)."""
    cases = []
    for pname, prof in PROFILES.items():
        if prof is DEFAULT_PROFILE:
            continue
        modes = [m for m in DETERMINISTIC if Rounding(m) in prof.roundings]
        for dst, rule in prof.rules.items():
            fmt = catalog.get(dst)
            rng = np.random.default_rng(_seed("profiles", pname, dst))
            vals = edge_values(fmt, rng)
            for src in ("float32", "float64"):
                x = _unique(into(vals, src))
                for mode in modes:
                    cases.append(make(f"profiles/{pname}/{src}->{dst}/{mode}", "cast",
                                      {"fmt": dst, "rounding": mode, "profile": pname},
                                      {"x": x}, nan_bits=rule.nan_bits))
    return cases


# ---------------------------------------------------------------- reductions

SUM_SOURCE = ("Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., "
              "section 4.2, eq. (4.4): any order of recursive or tree summation in precision "
              "u gives |s' - s| <= gamma_(n-1) * sum|x_i|, gamma_k = k u / (1 - k u)")


@suite("reduce")
def reduce_suite() -> list[Case]:
    """Correctly rounded row sums with a rigorous any-order bound."""
    cases = []
    for name, acc in (("float32", "float32"), ("bfloat16", "float32"),
                      ("float16", "float32")):
        fmt = catalog.get(name)
        tol = Tolerance("sum_any_order", SUM_SOURCE, accumulator=acc)
        for rows, k in ((64, 16), (16, 256), (4, 4096)):
            rng = np.random.default_rng(_seed("reduce", name, k))
            span = 5 if fmt.precision > 11 else 3
            mag = rng.uniform(0.5, 1.0, (rows, k)) * np.exp2(rng.integers(-span, span + 1,
                                                                           (rows, k)))
            x = mag * rng.choice([-1.0, 1.0], (rows, k))
            for label in ("random_signs", "cancelling"):
                if label == "cancelling":                   # pairs x, -x plus a little
                    x[:, ::2] = -x[:, 1::2] * (1 + 2.0 ** -6 * rng.choice([0, 1], (rows,
                                                                                k // 2)))
                xin = into(x.ravel(), name)
                xin = Operand(xin.kind, xin.bits.reshape(rows, k))
                cases.append(make(f"reduce/sum/{name}/{rows}x{k}/{label}", "sum",
                                  {"fmt": name}, {"x": xin}, tolerance=tol,
                                  notes=f"sum over the last axis; the bound assumes {acc} or "
                                        "wider accumulators in any order"))
    return cases
