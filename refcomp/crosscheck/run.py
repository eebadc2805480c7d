"""Run golden suites on a backend and collect one CaseResult per case."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._version import __version__
from ..golden.manage import default_dir
from ..golden.store import load_manifest, read_suite
from .backend import Backend, make_backend
from .classify import STATUSES, CaseResult, classify

__all__ = ["run", "CrossCheck"]


@dataclass
class CrossCheck:
    backend: dict                       # Backend.describe()
    golden: dict                        # directory, schema and refcomp versions per suite
    results: list = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    @property
    def ok(self) -> bool:
        c = self.counts()
        return c["mismatch"] == 0 and c["error"] == 0


def _progress(suite, done, total, counts, out):
    parts = " ".join(f"{s} {counts[s]}" for s in STATUSES)
    print(f"  [{suite}] {done}/{total}  {parts}", file=out, flush=True)


def run(backend, golden_dir=None, suites=None, out=sys.stdout, progress: bool = True
        ) -> CrossCheck:
    """Run every case of `suites` (default all) from `golden_dir` on `backend`.

    A case the backend cannot run is "unsupported" (with its reason); a backend exception
    is an "error" for that case and the run goes on.  Golden files that fail validation
    raise :class:`refcomp.golden.GoldenError`.
    """
    be: Backend = make_backend(backend)
    directory = Path(golden_dir) if golden_dir is not None else default_dir()
    manifest = load_manifest(directory)
    names = list(manifest["suites"]) if not suites else list(suites)
    info = {"directory": str(directory), "refcomp": __version__,
            "schema_version": manifest["schema_version"],
            "suites": {s: {"generated_by": manifest["suites"].get(s, {}).get("refcomp_version"),
                           "sha256": manifest["suites"].get(s, {}).get("sha256")}
                       for s in names}}
    cc = CrossCheck(be.describe(), info)
    t0 = time.perf_counter()
    for s in names:
        cases = read_suite(directory, s, manifest)
        be.begin_suite(s)
        counts = Counter()
        step = max(1, len(cases) // 10)
        for i, case in enumerate(cases, 1):
            r = _one(be, s, case)
            cc.results.append(r)
            counts[r.status] += 1
            if progress and (i % step == 0 or i == len(cases)):
                _progress(s, i, len(cases), counts, out)
    cc.seconds = time.perf_counter() - t0
    return cc


def _one(be: Backend, suite, case) -> CaseResult:
    fmt = case.outputs["y"].kind if "y" in case.outputs else ""
    try:
        why = be.supports(case)
    except Exception as e:                   # a backend's own bug: report, go on
        return CaseResult(suite, case.name, case.op, fmt, "error",
                          f"supports() raised {type(e).__name__}: {e}")
    if why:
        return CaseResult(suite, case.name, case.op, fmt, "unsupported", why)
    try:
        got = be.run(case)
    except Exception as e:
        return CaseResult(suite, case.name, case.op, fmt, "error",
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    try:
        with np.errstate(all="ignore"):       # ratios for the report may overflow to inf
            return classify(suite, case, got, be.nan_bits(case), be.tolerance(case))
    except Exception as e:
        return CaseResult(suite, case.name, case.op, fmt, "error",
                          f"outputs could not be judged: {type(e).__name__}: {e}")
