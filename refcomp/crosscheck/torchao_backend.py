"""The ``torchao`` backend: torchao 0.18's quantization primitives on CPU tensors.

torchao (installed with ``--no-deps`` beside torch 2.13) is imported lazily, here only; its
CUDA extensions fail to load on a CPU machine, harmlessly.  Which golden ops it runs is data
(``torchao-0.18.json``).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..golden.schema import is_int_kind
from . import opmap
from .backend import register
from .torch_backend import _SIGNED, tensor_bits

__all__ = ["TorchaoBackend"]

_PINNED = "0.18.0"


class TorchaoBackend(opmap.MappedBackend):
    name = "torchao"

    def __init__(self):
        try:
            import torch
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import torchao
                from torchao.prototype.mx_formats import kernels
                from torchao.quantization import quant_primitives
        except ImportError as e:
            raise ValueError("backend torchao needs torch and torchao: pip install "
                             "'refcomp[torch]'") from e
        self.torch, self.torchao = torch, torchao
        self.qp, self.kernels = quant_primitives, kernels
        self.map = opmap.load("torchao-0.18")

    def describe(self) -> dict:
        return {"backend": self.name, "torchao": self.torchao.__version__, "pinned": _PINNED,
                "torch": self.torch.__version__, "op_map": f"torchao-{self.map['version']}",
                "threads": self.torch.get_num_threads()}

    def supports(self, case):
        if self.torchao.__version__ != _PINNED:
            return (f"the op map is pinned to torchao {_PINNED}; this is "
                    f"{self.torchao.__version__}")
        return opmap.check(self.map, case)

    def _tensor(self, operand):
        """Integer kinds (any width) as int64 values, float formats as their torch dtype."""
        if is_int_kind(operand.kind):
            return self.torch.from_numpy(operand.values().astype(np.int64))
        bits = np.asarray(operand.bits, order="C")
        t = self.torch.from_numpy(bits.view(_SIGNED[bits.dtype.itemsize]).copy())
        return t.view(getattr(self.torch, operand.kind))

    def _bits(self, t) -> np.ndarray:
        return tensor_bits(self.torch, t)

    def run(self, case) -> dict:
        torch, qp, p = self.torch, self.qp, case.params
        ins = {k: self._tensor(v) for k, v in case.inputs.items()}
        if case.op == "quantize_block":
            return self._block(case, ins["x"])
        if case.op == "pack":
            return {"y": self._bits(self.kernels.pack_uint4(ins["codes"].to(torch.uint8)))}
        if case.op == "choose_qparams_affine":
            if case.inputs["x"].kind != p.get("fmt", "float32"):
                raise ValueError(f"choose_qparams_affine computes in the input's dtype: x is "
                                 f"{case.inputs['x'].kind}, the case says fmt="
                                 f"{p.get('fmt', 'float32')}")
            tdt = torch.int8 if p["qmin"] < 0 else torch.uint8
            mapping = getattr(qp.MappingType, p["mapping"].upper())
            s, z = qp.choose_qparams_affine(ins["x"], mapping, tuple(p["block_size"]), tdt,
                                            p["qmin"], p["qmax"])
            return {"scale": self._bits(s), "zero_point": self._bits(z.to(torch.int32))}
        scale = ins["scale"].reshape(1)
        zp = ins["zero_point"].reshape(1).to(torch.int32)
        if case.op == "quantize_affine":
            x = ins["x"]
            tdt = torch.int8 if p["qmin"] < 0 else torch.uint8
            q = qp.quantize_affine(x, tuple(x.shape), scale, zp, tdt, p["qmin"], p["qmax"])
            return {"y": self._bits(q.to(torch.int32))}
        if case.op == "dequantize_affine":
            q = ins["q"].to(torch.int32)
            y = qp.dequantize_affine(q, tuple(q.shape), scale, zp, torch.int32,
                                     output_dtype=torch.float32)
            return {"y": self._bits(y)}
        raise ValueError(f"torchao backend has no runner for {case.op!r}")

    def _block(self, case, x):
        """to_mx (MX formats) or nvfp4_quantize (NVFP4), outputs reshaped to the golden
        layout (same C order) and FP4 bytes unpacked low nibble first."""
        torch, p = self.torch, case.params
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.prototype.mx_formats.config import ScaleCalculationMode
            from torchao.prototype.mx_formats.mx_tensor import to_mx
            from torchao.prototype.mx_formats.nvfp4_tensor import (nvfp4_quantize,
                                                                   per_tensor_amax_to_scale)
        out = {}
        if p["fmt"] == "nvfp4":
            ts = p.get("tensor_scale", "amax")
            pts = (per_tensor_amax_to_scale(torch.max(torch.abs(x))) if ts == "amax" else
                   None if ts == "none" else torch.tensor(float(ts), dtype=torch.float32))
            s, d = nvfp4_quantize(x, 16, pts)
            if pts is not None:
                out["tensor_scale"] = self._bits(pts.reshape(case.outputs["tensor_scale"]
                                                             .bits.shape))
        else:
            from ..formats.block import get_block_format
            el = get_block_format(p["fmt"]).element.name
            dt = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2,
                  "float6_e2m3fn": "fp6_e2m3", "float6_e3m2fn": "fp6_e3m2",
                  "float4_e2m1fn": torch.float4_e2m1fn_x2}[el]
            s, d = to_mx(x, dt, 32, ScaleCalculationMode(p.get("scale_rule", "floor")))
        raw = d.view(torch.uint8).numpy()
        if case.outputs["elements"].kind == "float4_e2m1fn":
            e = np.empty(raw.shape[:-1] + (2 * raw.shape[-1],), dtype=np.uint8)
            e[..., 0::2], e[..., 1::2] = raw & 0xF, raw >> 4
        else:
            e = raw
        out["elements"] = e.reshape(case.outputs["elements"].bits.shape)
        out["scales"] = s.view(torch.uint8).numpy().reshape(case.outputs["scales"].bits.shape)
        return out


@register("torchao")
def _make(arg=None):
    return TorchaoBackend()
