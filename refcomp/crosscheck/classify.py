"""Judge a backend's outputs against a golden case: bit-exact, within the case's derived
bound, or mismatch, with the evidence (first differing elements as bits, values and ULPs)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..formats import catalog
from ..golden.schema import Case, is_int_kind
from ..golden.tolerance import assert_close_allowance, interval
from ..ops import ulp as ulp_of
from ..testing.ulp import describe_bits, ulp_distance

__all__ = ["CaseResult", "classify", "STATUSES"]

STATUSES = ("exact", "within", "mismatch", "unsupported", "error")
_SHOW = 5


@dataclass
class CaseResult:
    suite: str
    case: str
    op: str
    fmt: str
    status: str
    message: str = ""
    elements: int = 0
    max_ulp: float = 0.0                     # observed, over float outputs
    bound_ulp: float | None = None           # the derived bound, in ULPs of the output
    assert_close_ratio: float | None = None  # assert_close default allowance / our bound
    assert_close_ulp: float | None = None    # median assert_close allowance in ULPs
    not_compared: list = field(default_factory=list)
    diffs: list = field(default_factory=list)
    ulp_errors: dict = field(default_factory=dict)   # ulp distance -> count (finite ones)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _hist(d: np.ndarray) -> dict:
    d = d[np.isfinite(d)]
    vals, counts = np.unique(d, return_counts=True)
    return {float(v): int(c) for v, c in zip(vals, counts)}


def _show(idx, got, want, kind, d):
    rows = []
    for i in idx[:_SHOW]:
        i = int(i)
        if is_int_kind(kind) or kind in ("bool", "flags"):
            rows.append({"index": i, "got": f"{int(got[i]):#x}", "want": f"{int(want[i]):#x}",
                         "ulp": None})
        else:
            rows.append({"index": i, "got": describe_bits(got[i], kind),
                         "want": describe_bits(want[i], kind),
                         "ulp": float(d[i]) if d is not None else None})
    return rows


def _assert_close_ulp(fmt_name, want_vals):
    allow = assert_close_allowance(fmt_name, want_vals)
    ok = np.isfinite(want_vals) & (want_vals != 0)
    if allow is None or not ok.any():
        return None
    u = np.asarray(ulp_of(want_vals[ok], fmt_name), np.float64)
    return float(np.median(allow[ok] / u))


def classify(suite: str, case: Case, got: dict, nan_bits: bool, tolerance=None) -> CaseResult:
    """Judge `got` against `case`; `tolerance` overrides the case's (a backend's accuracy)."""
    if tolerance is not None and tolerance is not case.tolerance:
        import dataclasses
        case = dataclasses.replace(case, tolerance=tolerance)
    y = case.outputs.get("y")
    res = CaseResult(suite, case.name, case.op, y.kind if y is not None else "", "exact",
                     elements=int(y.bits.size) if y is not None else 0)
    unknown = sorted(set(got) - set(case.outputs))
    if unknown:
        res.status, res.message = "error", f"backend returned unknown outputs {unknown}"
        return res
    res.not_compared = sorted(set(case.outputs) - set(got))
    if not got:
        res.status, res.message = "error", "backend returned no outputs"
        return res
    worst = "exact"
    for k in sorted(got):
        want = case.outputs[k]
        g = np.asarray(got[k])
        if g.dtype != want.bits.dtype or g.shape != want.bits.shape:
            res.status = "mismatch"
            res.message = (f"output {k!r}: backend gave {g.dtype}{list(g.shape)}, golden is "
                           f"{want.bits.dtype}{list(want.bits.shape)}")
            return res
        gf, wf = g.ravel(), want.bits.ravel()
        is_float = not is_int_kind(want.kind) and want.kind not in ("bool", "flags")
        bad = gf != wf
        d = None
        if is_float:
            fmt = catalog.get(want.kind)
            d = ulp_distance(gf, wf, fmt)
            if not nan_bits:
                bad &= ~(np.isnan(fmt.decode(gf)) & np.isnan(fmt.decode(wf)))
            res.max_ulp = max(res.max_ulp, float(d.max()) if d.size else 0.0)
            res.ulp_errors = _hist(d)
            if k == "y":
                res.assert_close_ulp = _assert_close_ulp(fmt.name, fmt.decode(wf))
        if not bad.any():
            continue
        idx = np.flatnonzero(bad)
        status = "mismatch"
        if case.tolerance is not None and is_float and case.tolerance.applies(k):
            status, note = _within(case, gf, wf, fmt, res, k)
            res.message = note
        if status == "mismatch":
            res.diffs = _show(idx, gf, wf, want.kind, d)
            res.message = (res.message + "; " if res.message else "") + \
                f"output {k!r}: {idx.size} of {gf.size} element(s) differ"
            res.status = "mismatch"
            return res
        worst = "within" if status == "within" else worst
    if case.tolerance is not None and res.bound_ulp is None:
        k = next((k for k in sorted(case.outputs) if case.tolerance.applies(k)), None)
        if k is not None:                                   # the bound, for the report
            b = case.outputs[k]
            _within(case, b.bits.ravel(), b.bits.ravel(), catalog.get(b.kind), res, k)
    res.status = worst
    return res


def _within(case, gf, wf, fmt, res, output="y"):
    """Check `output` against the case's tolerance; fill bound_ulp and assert_close_ratio."""
    tol = case.tolerance
    if tol.rule == "ulp":
        d = ulp_distance(gf, wf, fmt)
        res.bound_ulp = float(tol.max_ulp)
        w = fmt.decode(wf)
        allow = assert_close_allowance(fmt.name, w)
        fin = np.isfinite(w) & (w != 0)
        if allow is not None and fin.any() and tol.max_ulp > 0:
            u = np.asarray(ulp_of(w[fin], fmt), np.float64) * tol.max_ulp
            res.assert_close_ratio = float(np.min(allow[fin] / u))
        ok = bool((d <= tol.max_ulp).all())
        return ("within" if ok else "mismatch"), f"bound {tol.max_ulp} ulp ({tol.source})"
    lo, hi = (v.ravel() for v in interval(case, output))
    w, g = fmt.decode(wf), fmt.decode(gf)
    res.bound_ulp = max(res.bound_ulp or 0.0, float(np.maximum(ulp_distance(lo, w, fmt),
                                                               ulp_distance(hi, w, fmt)).max()))
    derived = np.maximum(hi - w, w - lo)
    allow = assert_close_allowance(fmt.name, w)
    if allow is not None:
        pos = derived > 0
        res.assert_close_ratio = (float(np.min(allow[pos] / derived[pos])) if pos.any()
                                  else float("inf"))
    ok = bool(((g >= lo) & (g <= hi)).all())
    acc = f" (accumulator {tol.accumulator})" if tol.accumulator else ""
    return ("within" if ok else "mismatch"), (f"{tol.rule} bound{acc}: up to "
                                               f"{res.bound_ulp:g} ulp")
