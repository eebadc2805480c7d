"""Op maps: which backend operation runs which golden op (data files beside this module).

``torch-2.13.json`` and ``ml_dtypes-0.6.json`` map each golden op to the backend call, the
rounding modes, formats and refcomp profiles under which it is comparable, the values each
other param may take (``param_values``, e.g. an affine ``convention``; ``param_combos`` for
values allowed only together, e.g. ``(qmin, qmax)``), and how NaN
outputs compare; an op marked ``unsupported`` carries the reason.  They are pinned to the
backend version in their name; :func:`load` refuses a map for another version.
"""

from __future__ import annotations

import json
from importlib import resources

from ..golden.schema import Tolerance
from .backend import Backend

__all__ = ["load", "check", "tolerance", "MappedBackend"]


def load(name: str) -> dict:
    text = resources.files(__package__).joinpath(f"{name}.json").read_text("utf-8")
    return json.loads(text)


def check(opmap: dict, case, formats: dict | None = None) -> str | None:
    """None if `opmap` can run `case`, else why not.  `formats`: profile -> format names."""
    op = opmap["ops"].get(case.op)
    if op is None:
        return f"{opmap['backend']} {opmap['version']} has no mapping for op {case.op!r}"
    if "unsupported" in op:
        return op["unsupported"]
    mode = case.params.get("rounding")
    if mode is not None and mode not in op.get("roundings", []):
        return (f"{opmap['backend']} {case.op} rounds {'/'.join(op.get('roundings', []))} "
                f"only, not {mode}")
    for key, allowed_values in op.get("param_values", {}).items():
        v = case.params.get(key)
        if v not in allowed_values:
            return (f"{opmap['backend']} {case.op} runs {key} in "
                    f"{', '.join(map(str, allowed_values))} only, not {v}")
    combos = op.get("param_combos")
    if combos is not None:
        got = [case.params.get(k) for k in combos["keys"]]
        if got not in combos["values"]:
            return (f"{opmap['backend']} {case.op} runs ({', '.join(combos['keys'])}) in "
                    f"{combos['values']} only, not {got}")
    prof = case.params.get("profile") or "softfloat-3e-8086-sse"
    allowed = None
    if "profiles" not in op:                    # an op without float-cast conventions
        if case.params.get("profile") is not None:
            return f"{opmap['backend']} {case.op} takes no profile"
    else:
        if prof not in op["profiles"]:
            return (f"case follows {prof} conventions; {opmap['backend']} {case.op} is "
                    f"compared under {', '.join(op['profiles'])}")
        fmt = case.params.get("fmt")
        allowed = op.get("formats")
        if allowed == "profile":
            allowed = (formats or {}).get(prof, [])
        if fmt is not None and allowed is not None and fmt not in allowed:
            return f"{opmap['backend']} {case.op} has no {fmt}"
    for k, v in case.inputs.items():
        ins = op.get("input_formats", allowed)
        if ins is not None and v.kind not in ins and v.kind not in op.get("extra_inputs", []):
            return f"{opmap['backend']} {case.op} does not take {v.kind} input {k!r}"
    for key in op.get("params_unsupported", []):
        if case.params.get(key) is not None:
            return f"{opmap['backend']} {case.op} has no {key!r} setting"
    return None


def tolerance(opmap: dict, case):
    """The case's own tolerance, or the op map's documented accuracy (``accuracy_ulp``)."""
    op = opmap["ops"].get(case.op, {})
    if case.tolerance is None and "accuracy_ulp" in op:
        return Tolerance("ulp", op["accuracy_source"], max_ulp=op["accuracy_ulp"])
    return case.tolerance


class MappedBackend(Backend):
    """A backend whose supported ops, tolerances and NaN rules come from an op map."""

    map: dict = {}
    formats: dict = {}

    def tolerance(self, case):
        return tolerance(self.map, case)

    def nan_bits(self, case) -> bool:
        how = self.map["ops"][case.op].get("nan", "bits")
        return case.nan_bits if how == "case" else how == "bits"
