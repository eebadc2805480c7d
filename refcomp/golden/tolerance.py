"""Derived tolerances: the interval a backend's output may lie in when it cannot be
bit-exact by nature.

Every bound here is rigorous (a theorem with its source in the Tolerance), evaluated with
exact rational arithmetic and widened outward, and the interval ends are rounded outward
into the output format by the core.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..formats import catalog
from ..rounding import cast
from .schema import Case, GoldenError

__all__ = ["interval", "ASSERT_CLOSE_DEFAULTS", "assert_close_allowance"]

#: torch.testing.assert_close default (rtol, atol) per dtype, torch 2.13
#: (torch/testing/_comparison.py, _DTYPE_PRECISIONS; float32 and wider use 1.3e-6/1e-5)
ASSERT_CLOSE_DEFAULTS = {"float16": (1e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5),
                         "float32": (1.3e-6, 1e-5), "float64": (1e-7, 1e-7)}


def assert_close_allowance(fmt_name: str, expected: np.ndarray):
    """|actual - expected| that assert_close's defaults accept, or None for other dtypes."""
    if fmt_name not in ASSERT_CLOSE_DEFAULTS:
        return None
    rtol, atol = ASSERT_CLOSE_DEFAULTS[fmt_name]
    with np.errstate(invalid="ignore"):
        return atol + rtol * np.abs(expected)


def _down(q: Fraction) -> float:
    f = float(q)
    return f if Fraction(f) <= q else float(np.nextafter(f, -np.inf))


def _up(q: Fraction) -> float:
    f = float(q)
    return f if Fraction(f) >= q else float(np.nextafter(f, np.inf))


def _sum_any_order(case: Case):
    fmt = catalog.get(case.params["fmt"])
    x = case.inputs["x"].values()
    return _rows_bound(case, fmt, x.reshape(-1, x.shape[-1]), x.shape[:-1])


def _sum_terms(case: Case, output: str):
    """Rows of terms the op sums into `output` (its compute module's ``sum_terms``)."""
    from .compute_qtorch import sum_terms
    want = case.outputs[output]
    rows = sum_terms(case, output)
    return _rows_bound(case, catalog.get(want.kind), rows, want.bits.shape)


def _derived(case: Case, output: str):
    """[golden - B, golden + B] with the op's derived elementwise bound B
    (:func:`refcomp.golden.compute_distill.derived_bound`), rounded outward into the
    output format."""
    from .compute_distill import derived_bound
    want = case.outputs[output]
    fmt = catalog.get(want.kind)
    w = np.asarray(want.values(), np.float64)
    b = np.asarray(derived_bound(case, output), np.float64)
    if b.shape != w.shape or not (b >= 0).all():
        raise GoldenError(f"case {case.name}: the derived bound of {output!r} has shape "
                          f"{b.shape} (output {w.shape}) or is not >= 0")
    lo = np.nextafter(w - b, -np.inf)                       # float64 rounding, outward
    hi = np.nextafter(w + b, np.inf)
    lo = cast(lo, fmt, "toward_negative")
    hi = cast(hi, fmt, "toward_positive")
    return np.asarray(lo, np.float64), np.asarray(hi, np.float64)


def _rows_bound(case: Case, fmt, rows, shape):
    """[exact sum -/+ gamma_(n-1) sum|t|] of each row, rounded outward into fmt."""
    acc = catalog.get(case.tolerance.accumulator)
    if acc.precision < fmt.precision:
        raise GoldenError(f"case {case.name}: accumulator {acc.name} is narrower than the "
                          f"output {fmt.name}")
    n = rows.shape[1]
    u = Fraction(1, 2 ** acc.precision)
    if (n - 1) * u >= 1:
        raise GoldenError(f"case {case.name}: {n} terms are too many for a bound in "
                          f"{acc.name}")
    gamma = (n - 1) * u / (1 - (n - 1) * u)
    lo, hi = [], []
    for r in rows.tolist():
        s = sum(map(Fraction, r), Fraction(0))
        d = gamma * sum((abs(Fraction(v)) for v in r), Fraction(0))
        lo.append(_down(s - d))
        hi.append(_up(s + d))
    lo = cast(np.array(lo).reshape(shape), fmt, "toward_negative")
    hi = cast(np.array(hi).reshape(shape), fmt, "toward_positive")
    return np.asarray(lo, np.float64), np.asarray(hi, np.float64)


def interval(case: Case, output: str = "y"):
    """(lo, hi) float64 arrays: the values of the output format a backend may return for
    `output`."""
    if case.tolerance is None:
        raise GoldenError(f"case {case.name} is bit-exact: it has no tolerance interval")
    if case.tolerance.rule == "sum_any_order":
        return _sum_any_order(case)
    if case.tolerance.rule == "sum_terms":
        return _sum_terms(case, output)
    if case.tolerance.rule == "derived":
        return _derived(case, output)
    raise GoldenError(f"case {case.name}: tolerance rule {case.tolerance.rule!r} is an ULP "
                      "bound, not an interval")
