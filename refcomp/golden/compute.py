"""Compute a golden case's outputs from its inputs with refcomp (the reference backend).

Each op of :data:`OPS` maps a case's decoded inputs and its params to output Operands.
``generate`` builds cases with these; ``verify`` recomputes every stored case with them and
checks the stored bits.  The params are the keyword arguments of the refcomp function named
in the op's docstring; ``seed`` (stochastic rounding) means
``rng=numpy.random.default_rng(seed)``, and the 64-bit SplitMix64 key it yields is stored
beside it as ``key`` so that a backend without NumPy can reproduce the draws
(:func:`refcomp.cast` explains how the key is used).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .. import ops as rops
from ..formats import catalog
from ..rounding import cast_bits
from .schema import INT_KINDS, GoldenError, Operand

__all__ = ["OPS", "INPUTS", "OPTIONAL", "compute", "rng_key"]

_ROUND = ("rounding", "overflow", "subnormals", "tininess", "profile", "random_bits")


def rng_key(seed: int) -> int:
    """The SplitMix64 key refcomp draws from ``numpy.random.default_rng(seed)``."""
    return int(np.random.default_rng(seed).bit_generator.random_raw())


def _kw(params, names=_ROUND):
    kw = {k: params[k] for k in names if params.get(k) is not None}
    if params.get("seed") is not None:
        kw["rng"] = np.random.default_rng(params["seed"])
    return kw


def _fmt(params):
    return catalog.get(params["fmt"])


def _rounded(fn, n_in):
    """An arithmetic op: outputs y (bits of params['fmt']) and flags."""
    def run(vals, params):
        fmt = _fmt(params)
        y, fl = fn(*[vals[k] for k in "abc"[:n_in]], fmt, flags=True, **_kw(params))
        return {"y": Operand(fmt.name, fmt.encode(np.asarray(y, np.float64))),
                "flags": Operand("flags", np.asarray(fl, np.uint8))}
    run.__doc__ = f"refcomp.ops.{fn.__name__}"
    return run


def _cast(vals, params):
    """refcomp.cast_bits(x, fmt, ...)"""
    fmt = _fmt(params)
    y, fl = cast_bits(vals["x"], fmt, flags=True, **_kw(params))
    return {"y": Operand(fmt.name, np.asarray(y, fmt.storage_dtype)),
            "flags": Operand("flags", np.asarray(fl, np.uint8))}


def _round_to_integral(vals, params):
    """refcomp.ops.round_to_integral(a, fmt, rounding, exact=...)"""
    fmt = _fmt(params)
    kw = _kw(params, ("rounding", "tininess", "profile", "random_bits"))
    y, fl = rops.round_to_integral(vals["a"], fmt, exact=params.get("exact", True), flags=True,
                                   **kw)
    return {"y": Operand(fmt.name, fmt.encode(np.asarray(y, np.float64))),
            "flags": Operand("flags", np.asarray(fl, np.uint8))}


def _to_int(vals, params):
    """refcomp.ops.to_int(a, bits, signed, rounding, exact=...)"""
    bits, signed = params["bits"], params["signed"]
    kind = f"{'' if signed else 'u'}int{bits}"
    if kind not in INT_KINDS:
        raise GoldenError(f"to_int golden cases store 8/16/32/64-bit results, not {bits}")
    y, fl = rops.to_int(vals["a"], bits=bits, signed=signed, exact=params.get("exact", True),
                        flags=True, **_kw(params, ("rounding", "random_bits")))
    wide = np.asarray(y).astype(np.int64 if signed else np.uint64)
    return {"y": Operand(kind, wide.astype(f"u{bits // 8}")),      # two's complement
            "flags": Operand("flags", np.asarray(fl, np.uint8))}


def _compare(fn):
    def run(vals, params):
        kw = {"signaling": params["signaling"]} if "signaling" in params else {}
        y, fl = fn(vals["a"], vals["b"], flags=True, **kw)      # else the op's own default
        return {"y": Operand("bool", np.asarray(y, np.uint8)),
                "flags": Operand("flags", np.asarray(fl, np.uint8))}
    run.__doc__ = f"refcomp.ops.{fn.__name__}"
    return run


def _sum(vals, params):
    """Correctly rounded sum over the last axis: round(exact sum of x[..., :]) into fmt.

    The exact sum is formed in float64 with :func:`math.fsum` and checked against an exact
    rational sum; a case whose exact sum is not a float64 is refused (choose inputs within a
    narrower exponent range), so the only rounding is the one into `fmt` by the core.
    """
    fmt = _fmt(params)
    x = vals["x"]
    if x.ndim < 1 or x.shape[-1] < 1:
        raise GoldenError(f"sum needs inputs of shape (..., K) with K >= 1, got {x.shape}")
    rows = x.reshape(-1, x.shape[-1])
    if not np.isfinite(rows).all():
        raise GoldenError("sum golden cases take finite inputs only")
    exact = np.array([math.fsum(r) for r in rows.tolist()], dtype=np.float64)
    for r, s in zip(rows.tolist(), exact.tolist()):
        if sum(map(Fraction, r), Fraction(0)) != Fraction(s):
            raise GoldenError("the exact sum of a row is not a float64 value: narrow the "
                              "inputs' exponent range")
    y, fl = cast_bits(exact.reshape(x.shape[:-1]), fmt, flags=True)
    return {"y": Operand(fmt.name, np.asarray(y, fmt.storage_dtype)),
            "flags": Operand("flags", np.asarray(fl, np.uint8))}


OPS = {
    "cast": _cast,
    "add": _rounded(rops.add, 2), "sub": _rounded(rops.sub, 2),
    "mul": _rounded(rops.mul, 2), "div": _rounded(rops.div, 2),
    "sqrt": _rounded(rops.sqrt, 1), "fma": _rounded(rops.fma, 3),
    "round_to_integral": _round_to_integral, "to_int": _to_int,
    "eq": _compare(rops.eq), "lt": _compare(rops.lt), "le": _compare(rops.le),
    "sum": _sum,
}

#: the inputs each op takes
INPUTS = {"cast": ("x",), "sqrt": ("a",), "round_to_integral": ("a",), "to_int": ("a",),
          "fma": ("a", "b", "c"), "sum": ("x",),
          **{k: ("a", "b") for k in ("add", "sub", "mul", "div", "eq", "lt", "le")}}

#: the inputs an op may take besides (absent: None)
OPTIONAL: dict = {}


def _merge():
    from . import (compute_amp, compute_distill, compute_gemm, compute_nn, compute_prune,
                   compute_qtorch, compute_quant)
    for mod in (compute_quant, compute_gemm, compute_nn, compute_qtorch, compute_prune,
                compute_distill, compute_amp):
        OPS.update(mod.OPS)
        INPUTS.update(mod.INPUTS)
        OPTIONAL.update(getattr(mod, "OPTIONAL", {}))


_merge()


def compute(op: str, inputs: dict, params: dict) -> dict:
    """The outputs of `op` on `inputs` (dict of Operand) under `params` (dict of Operand)."""
    if op not in OPS:
        raise GoldenError(f"unknown golden op {op!r} (known: {', '.join(OPS)})")
    want, extra = INPUTS[op], OPTIONAL.get(op, ())
    if not set(want) <= set(inputs) or set(inputs) - set(want) - set(extra):
        opt = f" (optional: {', '.join(extra)})" if extra else ""
        raise GoldenError(f"op {op!r} takes inputs {', '.join(want)}{opt}, got "
                          f"{', '.join(sorted(inputs)) or 'none'}")
    vals = {k: v.values() for k, v in inputs.items()}       # exact float64 or int64/uint64
    try:
        return OPS[op](vals, dict(params))
    except GoldenError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise GoldenError(f"op {op!r} with params {params!r}: {e}") from e
