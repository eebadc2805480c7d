"""Cross-check reports: a summary table (terminal), Markdown, JSON and ULP histograms."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

from .classify import STATUSES
from .run import CrossCheck

__all__ = ["summary_table", "write_reports"]


def _groups(cc: CrossCheck):
    g = defaultdict(Counter)
    for r in cc.results:
        g[(r.suite, r.op, r.fmt)][r.status] += 1
    return g


def summary_table(cc: CrossCheck) -> str:
    head = f"{'suite':11s} {'op':18s} {'format':20s} " + " ".join(f"{s:>11s}" for s in STATUSES)
    lines = [head, "-" * len(head)]
    for (s, op, fmt), c in sorted(_groups(cc).items()):
        lines.append(f"{s:11s} {op:18s} {fmt:20s} " + " ".join(f"{c[k]:11d}" for k in STATUSES))
    tot = cc.counts()
    lines.append("-" * len(head))
    lines.append(f"{'total':51s} " + " ".join(f"{tot[k]:11d}" for k in STATUSES))
    verdict = "PASS" if cc.ok else "FAIL"
    lines.append(f"{verdict}: {len(cc.results)} cases on {cc.backend.get('backend')} in "
                 f"{cc.seconds:.1f}s")
    return "\n".join(lines)


def _fmt_ratio(x):
    if x is None:
        return ""
    return "inf" if math.isinf(x) else f"{x:.3g}x"


def markdown(cc: CrossCheck) -> str:
    out = [f"# refcomp cross-check: {cc.backend.get('backend')}", "",
           f"Verdict: **{'PASS' if cc.ok else 'FAIL'}** "
           f"({', '.join(f'{k} {v}' for k, v in sorted(cc.counts().items()))})", "",
           "## Backend", "", "| setting | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in cc.backend.items()]
    out += ["", "## Golden files", "", f"directory `{cc.golden['directory']}`, refcomp "
            f"{cc.golden['refcomp']}, schema {cc.golden['schema_version']}", "",
            "## Summary", "", "| suite | op | format | " + " | ".join(STATUSES) + " |",
            "|---|---|---|" + "---:|" * len(STATUSES)]
    for (s, op, fmt), c in sorted(_groups(cc).items()):
        out.append(f"| {s} | {op} | {fmt} | " + " | ".join(str(c[k]) for k in STATUSES) + " |")
    tol = [r for r in cc.results if r.bound_ulp is not None]
    if tol:
        out += ["", "## Derived bounds", "",
                "Cases that are not bit-exact by nature carry a derived bound.  The last "
                "column is torch.testing.assert_close's default allowance divided by the derived "
                "bound, smallest over the case's elements: above 1 the derived bound is that "
                "much tighter; below 1 the rigorous worst-case bound (any summation order) is "
                "looser than assert_close, which would then reject results the backend may "
                "legitimately return.", "",
                "| case | status | bound (ulp) | observed (ulp) | assert_close default / "
                "bound |", "|---|---|---:|---:|---:|"]
        out += [f"| {r.case} | {r.status} | {r.bound_ulp:g} | {r.max_ulp:g} | "
                f"{_fmt_ratio(r.assert_close_ratio)} |" for r in tol]
    ac = defaultdict(list)
    for r in cc.results:
        if r.status == "exact" and r.assert_close_ulp is not None:
            ac[r.fmt].append(r.assert_close_ulp)
    if ac:
        out += ["", "## Bit-exact cases against assert_close", "",
                "Bit-exact cases allow 0 ulp; assert_close's default would accept the median "
                "error below (in ulps of the output, median over each case's elements).", "",
                "| format | cases | assert_close default accepts (median ulp) |",
                "|---|---:|---:|"]
        out += [f"| {f} | {len(v)} | {sorted(v)[len(v) // 2]:.3g} |" for f, v in sorted(ac.items())]
    bad = [r for r in cc.results if r.status in ("mismatch", "error")]
    if bad:
        out += ["", "## Mismatches and errors", ""]
        for r in bad:
            out.append(f"- **{r.status}** `{r.case}`: {r.message}")
            for d in r.diffs:
                out.append(f"  - [{d['index']}] got {d['got']}, want {d['want']}"
                           + (f", {d['ulp']:g} ulp" if d.get("ulp") is not None else ""))
    why = Counter(r.message for r in cc.results if r.status == "unsupported")
    if why:
        out += ["", "## Not supported", "", "| cases | reason |", "|---:|---|"]
        out += [f"| {n} | {m} |" for m, n in why.most_common()]
    nc = Counter(tuple(r.not_compared) for r in cc.results if r.not_compared)
    if nc:
        out += ["", "Outputs the backend does not produce (not compared): "
                + "; ".join(f"{', '.join(k)} in {n} cases" for k, n in nc.items())]
    return "\n".join(out) + "\n"


def _plots(cc: CrossCheck, directory: Path) -> list:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    by_op = defaultdict(lambda: defaultdict(Counter))
    for r in cc.results:
        for u, n in r.ulp_errors.items():
            by_op[r.op][r.fmt][float(u)] += n
    files = []
    for op, per_fmt in sorted(by_op.items()):
        fig, ax = plt.subplots(figsize=(7, 4))
        for fmt, hist in sorted(per_fmt.items()):
            xs = sorted(hist)
            ax.plot([x + 1 for x in xs], [hist[x] for x in xs], marker="o", label=fmt or op)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ULP error + 1")
        ax.set_ylabel("elements")
        ax.set_title(f"{cc.backend.get('backend')}: {op}")
        ax.legend(fontsize=7)
        path = directory / f"ulp_{op}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        files.append(path)
    return files


def write_reports(cc: CrossCheck, directory) -> list:
    """Write report.md, report.json and ulp_<op>.png into `directory`; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    md = directory / "report.md"
    md.write_text(markdown(cc), encoding="utf-8")
    js = directory / "report.json"
    js.write_text(json.dumps({"backend": cc.backend, "golden": cc.golden,
                              "seconds": cc.seconds, "ok": cc.ok,
                              "counts": dict(cc.counts()),
                              "results": [r.to_json() for r in cc.results]},
                             indent=1, default=str) + "\n", encoding="utf-8")
    return [md, js] + _plots(cc, directory)
