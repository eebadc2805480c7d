"""The ``ml_dtypes`` backend: casts by ``ndarray.astype`` and bfloat16 ufuncs.

Which golden ops it runs, and under which profile, is data (``ml_dtypes-0.6.json``).
"""

from __future__ import annotations

import numpy as np

from ..rounding.profiles import PROFILES
from . import opmap
from .backend import register

__all__ = ["MlDtypesBackend"]

_PINNED = "0.6.0"


class MlDtypesBackend(opmap.MappedBackend):
    name = "ml_dtypes"

    def __init__(self):
        try:
            import ml_dtypes
        except ImportError as e:
            raise ValueError("backend ml_dtypes needs ml_dtypes: pip install "
                             "'refcomp[torch]'") from e
        self.ml = ml_dtypes
        self.map = opmap.load("ml_dtypes-0.6")
        self.formats = {p: list(PROFILES[p].rules) for p in PROFILES}

    def _dtype(self, kind):
        if kind in ("float16", "float32", "float64"):
            return np.dtype(kind)
        return np.dtype(getattr(self.ml, kind))

    def describe(self) -> dict:
        return {"backend": self.name, "ml_dtypes": self.ml.__version__, "pinned": _PINNED,
                "numpy": np.__version__, "op_map": f"ml_dtypes-{self.map['version']}"}

    def supports(self, case):
        if self.ml.__version__ != _PINNED:
            return f"the op map is pinned to ml_dtypes {_PINNED}; this is {self.ml.__version__}"
        return opmap.check(self.map, case, self.formats)

    def run(self, case) -> dict:
        ins = {k: v.bits.view(self._dtype(v.kind)) for k, v in case.inputs.items()}
        with np.errstate(all="ignore"):
            if case.op in ("cast", "quantize_int"):
                y = ins["x"].astype(self._dtype(case.params["fmt"]))
            else:
                fn = getattr(np, self.map["ops"][case.op]["call"].split(".", 1)[1])
                y = fn(*[ins[k] for k in sorted(ins)])
        return {"y": np.asarray(y, order="C").view(f"u{y.dtype.itemsize}").copy()}


@register("ml_dtypes")
def _make(arg=None):
    return MlDtypesBackend()
