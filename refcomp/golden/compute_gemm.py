"""Golden ops of dot products / GEMMs under accumulation models and of tensor cores.

``matmul``     refcomp.ops.matmul(A, B, model, C=C[, scale_a, scale_b]); params ``model``:
               every field of the AccumulationModel (formats by name, enums by value),
               so a reader can rebuild it; ``seed`` for stochastic accumulation.
``tc_matmul``  refcomp.ops.tc_matmul / tc_matmul_scaled; params ``model``: the tensor-core
               model's fields (name, inputs, group, frac_bits, output, k, ...).
Inputs ``a`` (M, K), ``b`` (K, N), ``c`` (M, N), ``scale_a``, ``scale_b``; output ``d``
in the output format (float32 bits for e8m13 tensor-core outputs, whose
values are float32 values; NaN as the canonical 0x7FFFFFFF / 0x7FFF); integer GEMMs in
the accumulator's integer format.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..formats import catalog
from ..formats.floatformat import FloatFormat
from ..formats.intformat import IntFormat
from ..ops import accum, tensorcore
from ..ops.accum_model import AccumulationModel
from .compute_quant import int_operand
from .schema import Operand

__all__ = ["OPS", "INPUTS", "model_params", "tc_params"]


def model_params(m: AccumulationModel) -> dict:
    """Every field of an AccumulationModel as JSON (formats by name, enums by value)."""
    out = {}
    for f in dataclasses.fields(m):
        v = getattr(m, f.name)
        if isinstance(v, (FloatFormat, IntFormat)):
            v = v.name
        elif hasattr(v, "value"):
            v = v.value
        out[f.name] = v
    return out


def tc_params(m) -> dict:
    return dataclasses.asdict(m)


def _operand(values, fmt) -> Operand:
    if isinstance(fmt, IntFormat):
        return int_operand(values, fmt.name)
    return Operand(fmt.name, fmt.encode(np.asarray(values, np.float64)))


def _matmul(vals, params):
    """refcomp.ops.matmul(A, B, model, C=C, scale_a=..., scale_b=..., rng=...)"""
    m = AccumulationModel(**params["model"])
    rng = np.random.default_rng(params["seed"]) if params.get("seed") is not None else None
    d = accum.matmul(vals["a"], vals["b"], m, C=vals["c"], scale_a=vals.get("scale_a"),
                     scale_b=vals.get("scale_b"), rng=rng)
    return {"d": _operand(d, m.output_format)}


def _tc(vals, params):
    """refcomp.ops.tc_matmul(A, B, C, model) / tc_matmul_scaled(..., scale_A, scale_B)"""
    m = tensorcore.tensor_core(params["model"]["name"])
    if m.scaled:
        d = tensorcore.tc_matmul_scaled(vals["a"], vals["b"], vals["c"], vals["scale_a"],
                                        vals["scale_b"], m)
    else:
        d = tensorcore.tc_matmul(vals["a"], vals["b"], vals["c"], m)
    kind = "float16" if m.output == "float16" else "float32"
    dt = catalog.get(kind).storage_dtype
    return {"d": Operand(kind, np.asarray(tensorcore.tc_output_bits(d, m), dt))}


OPS = {"matmul": _matmul, "matmul_scaled": _matmul, "tc_matmul": _tc,
       "tc_matmul_scaled": _tc}
INPUTS = {"matmul": ("a", "b", "c"), "matmul_scaled": ("a", "b", "c", "scale_a", "scale_b"),
          "tc_matmul": ("a", "b", "c"),
          "tc_matmul_scaled": ("a", "b", "c", "scale_a", "scale_b")}
