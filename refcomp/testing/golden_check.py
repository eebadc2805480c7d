"""Compare your own implementation with a golden suite, in your tests.

>>> import numpy as np, refcomp as rc
>>> from refcomp.testing import check_against_golden
>>> def my_bf16_add(case):                      # a function under test: case -> outputs
...     a, b = (case.inputs[k].values() for k in "ab")
...     return {"y": rc.formats.bfloat16.encode(rc.ops.add(a, b, "bfloat16"))}
>>> res = check_against_golden(my_bf16_add, "arith", op="add", fmt="bfloat16",
...                            rounding="nearest_even")
>>> res.counts()["exact"]
1
"""

from __future__ import annotations

from ..crosscheck.backend import Backend
from ..crosscheck.run import run

__all__ = ["check_against_golden", "FunctionBackend"]


class FunctionBackend(Backend):
    """A Backend from a function ``fn(case) -> {output: bits}`` and a case filter."""

    def __init__(self, fn, select=None, name=None):
        self.fn, self.select = fn, select
        self.name = name or getattr(fn, "__name__", "function")

    def describe(self):
        return {"backend": self.name}

    def supports(self, case):
        if self.select is not None and not self.select(case):
            return "not selected"
        return None

    def run(self, case):
        return self.fn(case)


def check_against_golden(fn, suite, *, golden_dir=None, op=None, fmt=None, rounding=None,
                         select=None, strict: bool = True):
    """Run `fn` on the cases of `suite` (filtered by op / fmt / rounding / `select`).

    Raises AssertionError listing every mismatching or failing case (first differing
    elements as bits and values) when `strict`; returns the CrossCheck otherwise too.
    """
    def pick(case):
        return ((op is None or case.op == op)
                and (fmt is None or case.params.get("fmt") == fmt)
                and (rounding is None or case.params.get("rounding") == rounding)
                and (select is None or select(case)))
    cc = run(FunctionBackend(fn, pick), golden_dir, [suite], progress=False)
    ran = [r for r in cc.results if r.status != "unsupported"]
    if strict and not ran:
        raise AssertionError(f"no case of suite {suite!r} matched op={op!r} fmt={fmt!r} "
                             f"rounding={rounding!r}")
    bad = [r for r in ran if r.status in ("mismatch", "error")]
    if strict and bad:
        lines = [f"{len(bad)} of {len(ran)} golden case(s) failed:"]
        for r in bad[:10]:
            lines.append(f"  {r.status} {r.case}: {r.message}")
            lines += [f"    [{d['index']}] got {d['got']}, want {d['want']}" for d in r.diffs]
        raise AssertionError("\n".join(lines))
    return cc
