"""Golden ops of integer, fixed-point, requantization, affine, packing and block primitives.

Each op maps decoded inputs (exact float64 values or int64 integers) and JSON params to
output Operands; :mod:`refcomp.golden.compute` merges :data:`OPS` and :data:`INPUTS`.
Fixed-point formats are given in params as ``[total_bits, frac_bits, signed, narrow]``;
block formats by name (``"mxfp4"``, ``"nvfp4"``, ``"bfp8"``) with optional ``scale_rule``
and ``block_size`` overrides.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import ops as rops
from ..formats import catalog
from ..formats.block import get_block_format
from ..formats.intformat import FixedFormat, int_format
from .schema import Operand

__all__ = ["OPS", "INPUTS", "int_operand", "block_format"]


def _rng(params):
    return np.random.default_rng(params["seed"]) if params.get("seed") is not None else None


def int_operand(values, kind) -> Operand:
    """Integers of an integer kind (``int32``, ``uint4``, ...) as an Operand of bit patterns."""
    fmt = int_format(kind)
    return Operand(fmt.name, fmt.encode(np.asarray(values)))


def _float_out(values, kind) -> Operand:
    fmt = catalog.get(kind)
    return Operand(fmt.name, fmt.encode(np.asarray(values, np.float64)))


def _fixed(p) -> FixedFormat:
    total, frac, signed, narrow = p
    return FixedFormat(total, frac, signed, narrow)


def _quantize_int(vals, params):
    """refcomp.ops.quantize_int(x, fmt, rounding, overflow=..., scale_exp=...)"""
    y = rops.quantize_int(vals["x"], params["fmt"], params.get("rounding", "nearest_even"),
                          overflow=params.get("overflow", "saturate"), rng=_rng(params),
                          random_bits=params.get("random_bits"),
                          scale_exp=params.get("scale_exp", 0))
    return {"y": int_operand(y, params["fmt"])}


def _fixed_convert(vals, params):
    """refcomp.ops.fixed_convert(q, src, dst, rounding, overflow=...)"""
    dst = _fixed(params["dst"])
    y = rops.fixed_convert(vals["q"], _fixed(params["src"]), dst,
                           params.get("rounding", "nearest_even"),
                           overflow=params.get("overflow", "saturate"), rng=_rng(params),
                           random_bits=params.get("random_bits"))
    return {"y": int_operand(y, dst.integer.name)}


def _fixed_binary(name):
    fn = getattr(rops, f"fixed_{name}")

    def run(vals, params):
        out = _fixed(params["out"])
        y = fn(vals["a"], vals["b"], _fixed(params["fa"]), _fixed(params["fb"]), out,
               params.get("rounding", "nearest_even"),
               overflow=params.get("overflow", "saturate"), rng=_rng(params),
               random_bits=params.get("random_bits"))
        return {"y": int_operand(y, out.integer.name)}
    run.__doc__ = f"refcomp.ops.fixed_{name}(a, b, fa, fb, out, rounding, overflow=...)"
    return run


def _requant(vals, params):
    """refcomp.ops.multiply_by_quantized_multiplier(x, multiplier, shift, rounding)"""
    x = vals["x"]
    y = rops.multiply_by_quantized_multiplier(x, vals["multiplier"], vals["shift"],
                                              params.get("rounding", "double"),
                                              x_bits=params.get("x_bits", 32))
    return {"y": int_operand(y, "int32")}


def _quantize_multiplier(vals, params):
    """refcomp.ops.quantize_multiplier(d, rounding)"""
    m, s = rops.quantize_multiplier(vals["d"], params.get("rounding", "double"))
    return {"multiplier": int_operand(m, "int32"), "shift": int_operand(s, "int32")}


def _srdhm(vals, params):
    """refcomp.ops.saturating_rounding_doubling_high_mul(a, b)"""
    return {"y": int_operand(rops.saturating_rounding_doubling_high_mul(vals["a"], vals["b"]),
                          "int32")}


def _rdbpot(vals, params):
    """refcomp.ops.rounding_divide_by_pot(x, exponent)"""
    return {"y": int_operand(rops.rounding_divide_by_pot(vals["x"], vals["exponent"]), "int32")}


def _quantize_affine(vals, params):
    """refcomp.ops.quantize_affine(x, scale, zero_point, qmin, qmax, convention, fmt)"""
    q = rops.quantize_affine(vals["x"], vals["scale"], vals["zero_point"], params["qmin"],
                             params["qmax"], params["convention"], fmt=params.get("fmt"))
    return {"y": int_operand(q, "int32")}


def _dequantize_affine(vals, params):
    """refcomp.ops.dequantize_affine(q, scale, zero_point, convention)"""
    y = rops.dequantize_affine(vals["q"], vals["scale"], vals["zero_point"],
                               params["convention"])
    return {"y": _float_out(y, "float32")}


def _fake_quantize_affine(vals, params):
    """refcomp.ops.fake_quantize_affine(x, scale, zero_point, qmin, qmax, convention)"""
    y = rops.fake_quantize_affine(vals["x"], vals["scale"], vals["zero_point"],
                                  params["qmin"], params["qmax"], params["convention"])
    return {"y": _float_out(y, "float32")}


def _choose_qparams_affine(vals, params):
    """refcomp.ops.choose_qparams_affine(x, mapping, block_size, qmin, qmax, fmt=...)"""
    fmt = params.get("fmt", "float32")
    s, z = rops.choose_qparams_affine(vals["x"], params["mapping"], tuple(params["block_size"]),
                                      params["qmin"], params["qmax"], eps=params.get("eps"),
                                      fmt=fmt)
    return {"scale": _float_out(s, fmt), "zero_point": int_operand(z, "int32")}


def _pack(vals, params):
    """refcomp.ops.pack(codes, bits) along the last axis"""
    y = rops.pack(np.asarray(vals["codes"]).astype(np.uint8), params["bits"])
    return {"y": Operand("uint8", y)}


def block_format(params):
    """The BlockFormat a case names (params fmt, scale_rule, block_size)."""
    f = get_block_format(params["fmt"])
    over = {k: params[k] for k in ("scale_rule", "block_size") if k in params}
    return dataclasses.replace(f, name=None, **over) if over else f


def _element_kind(fmt) -> str:
    e = fmt.element
    return e.integer.name if isinstance(e, FixedFormat) else e.name


def _quantize_block(vals, params):
    """refcomp.ops.quantize_block(x, fmt, axis, rounding, convention=..., tensor_scale=...)"""
    fmt = block_format(params)
    ts = params.get("tensor_scale", "amax")
    q = rops.quantize_block(vals["x"], fmt, params.get("axis"),
                            params.get("rounding", "nearest_even"), _rng(params),
                            convention=params.get("convention"),
                            tensor_scale=None if ts == "none" else ts)
    out = {"elements": Operand(_element_kind(fmt), np.asarray(q.elements)),
           "scales": Operand(fmt.scale.name, np.asarray(q.scales))}
    if q.tensor_scale is not None:
        out["tensor_scale"] = _float_out(np.asarray(q.tensor_scale, np.float64), "float32")
    return out


OPS = {
    "quantize_int": _quantize_int, "fixed_convert": _fixed_convert,
    **{f"fixed_{n}": _fixed_binary(n) for n in ("add", "sub", "mul", "div")},
    "requant": _requant, "quantize_multiplier": _quantize_multiplier, "srdhm": _srdhm,
    "rounding_divide_by_pot": _rdbpot, "quantize_affine": _quantize_affine,
    "dequantize_affine": _dequantize_affine, "fake_quantize_affine": _fake_quantize_affine,
    "choose_qparams_affine": _choose_qparams_affine, "pack": _pack,
    "quantize_block": _quantize_block,
}

INPUTS = {
    "quantize_int": ("x",), "fixed_convert": ("q",),
    **{f"fixed_{n}": ("a", "b") for n in ("add", "sub", "mul", "div")},
    "requant": ("multiplier", "shift", "x"), "quantize_multiplier": ("d",),
    "srdhm": ("a", "b"), "rounding_divide_by_pot": ("exponent", "x"),
    "quantize_affine": ("scale", "x", "zero_point"),
    "dequantize_affine": ("q", "scale", "zero_point"),
    "fake_quantize_affine": ("scale", "x", "zero_point"),
    "choose_qparams_affine": ("x",), "pack": ("codes",), "quantize_block": ("x",),
}
