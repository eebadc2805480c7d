"""PyTorch backends: ``torch-cpu`` and ``torch-cuda`` (torch imported lazily, here only).

The op map ``torch-2.13.json`` says which torch call runs which golden op and under which
refcomp profile its results are comparable.  Inputs are built from the golden bit patterns
(``torch.from_numpy(bits).view(dtype)``, so NaN payloads and signed zeros arrive intact),
outputs are read back as bit patterns the same way.
"""

from __future__ import annotations

import platform
import warnings

import numpy as np

from ..rounding.profiles import PROFILES
from . import opmap, torch_amp, torch_distill, torch_prune, torch_qtorch
from .backend import register

__all__ = ["TorchBackend", "tensor_bits"]

_SIGNED = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}
_PINNED = "2.13.0"


def tensor_bits(torch, t) -> np.ndarray:
    """A tensor's elements as unsigned bit patterns (bool as uint8 0/1), on the CPU."""
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bool:
        return t.numpy().astype(np.uint8)
    n = t.element_size()
    return t.view(getattr(torch, _SIGNED[n])).numpy().view(f"u{n}").copy()


class TorchBackend(opmap.MappedBackend):
    """Golden cases on torch tensors on one device (``cpu`` or ``cuda``)."""

    def __init__(self, device: str = "cpu"):
        try:
            import torch
        except ImportError as e:
            raise ValueError("backend torch-* needs PyTorch: pip install 'refcomp[torch]'") \
                from e
        self.torch = torch
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("backend torch-cuda: no CUDA device is available here")
        self.device = device
        self.name = f"torch-{device}"
        self.map = opmap.load("torch-2.13")
        self.formats = {p: list(PROFILES[p].rules) for p in PROFILES}

    # -- conversions between bit patterns and tensors
    def _dtype(self, kind: str):
        dt = getattr(self.torch, kind, None)
        if not isinstance(dt, self.torch.dtype):
            raise ValueError(f"torch {self.torch.__version__} has no dtype {kind!r}")
        return dt

    def _tensor(self, operand):
        bits = np.asarray(operand.bits, order="C")
        signed = bits.view(_SIGNED[bits.dtype.itemsize])
        t = self.torch.from_numpy(signed.copy())
        return t.view(self._dtype(operand.kind)).to(self.device)

    def _bits(self, t) -> np.ndarray:
        return tensor_bits(self.torch, t)

    # -- the interface
    def describe(self) -> dict:
        torch = self.torch
        d = {"backend": self.name, "torch": torch.__version__, "pinned": _PINNED,
             "op_map": f"torch-{self.map['version']}", "python": platform.python_version(),
             "machine": platform.machine(), "processor": platform.processor() or "unknown",
             "threads": torch.get_num_threads(),
             "cpu_capability": torch.backends.cpu.get_cpu_capability(),
             "float32_matmul_precision": torch.get_float32_matmul_precision(),
             "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
        if self.device == "cpu":           # what the qtorch suite's kernels depend on
            d.update({"qtorch_engine": "fbgemm, 1 thread (qt.* ops)",
                      "fbgemm_int16_pairs": torch_qtorch.int16_pairs_here()})
        if self.device == "cuda":
            p = torch.cuda.get_device_properties(0)
            d.update({"device": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                      "compute_capability": f"{p.major}.{p.minor}",
                      "cudnn": torch.backends.cudnn.version(),
                      "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                      "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
                      "fp16_reduced_precision_reduction":
                          torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
                      "bf16_reduced_precision_reduction":
                          torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction})
            try:
                import subprocess
                out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                      "--format=csv,noheader"], capture_output=True,
                                     text=True, timeout=20)
                d["driver"] = out.stdout.strip() or "unknown"
            except (OSError, subprocess.SubprocessError):
                d["driver"] = "unknown (nvidia-smi not found)"
        return d

    def supports(self, case):
        if not self.torch.__version__.startswith(_PINNED):
            return (f"the op map is pinned to torch {_PINNED}; this is "
                    f"{self.torch.__version__}")
        why = opmap.check(self.map, case, self.formats)
        if why is None and case.op in torch_qtorch.OPS:
            if self.device != "cpu":
                return ("torch.ao.quantization's fbgemm kernels run on the CPU only: use "
                        "--backend torch-cpu")
            why = torch_qtorch.machine_reason(self.torch, case)
        if why is None and case.op in _SUITE_OPS:
            if self.device != "cpu":
                return ("the prune / distill / amp cross-checks (masks, derived float32 "
                        "bounds, GradScaler) are established on the CPU: use --backend "
                        "torch-cpu")
            why = torch_prune.reason(case)
        return why

    def run(self, case) -> dict:
        torch = self.torch
        op = self.map["ops"][case.op]
        ins = {k: self._tensor(v) for k, v in case.inputs.items()}
        if case.op in torch_qtorch.OPS:
            with torch_qtorch.torch_settings(torch):
                out = torch_qtorch.OPS[case.op](torch, case, ins)
            return {k: self._bits(v) for k, v in out.items()}
        if case.op in _SUITE_OPS:
            return {k: self._bits(v) for k, v in _SUITE_OPS[case.op](torch, case, ins).items()}
        if case.op in _AFFINE:
            return {"y": self._bits(_AFFINE[case.op](torch, case, ins))}
        if case.op == "cast":
            y = ins["x"].to(self._dtype(case.params["fmt"]))
        elif case.op == "sum":
            y = torch.sum(ins["x"], dim=-1)
        else:
            call = op["call"]
            if isinstance(call, dict):
                call = call[case.params["rounding"]]
            fn = getattr(torch, call.split(".", 1)[1])
            y = fn(*[ins[k] for k in sorted(ins)])
        return {"y": self._bits(y)}


def _qdtype(torch, lo, hi):
    types = {(0, 255): torch.quint8, (-128, 127): torch.qint8}
    if (lo, hi) not in types:
        raise ValueError(f"torch quantized tensors are quint8 (0..255) or qint8 (-128..127), "
                         f"not {lo}..{hi}")
    return types[(lo, hi)]


def _scalars(case):
    s = float(case.inputs["scale"].values().reshape(-1)[0])
    z = int(case.inputs["zero_point"].values().reshape(-1)[0])
    if case.inputs["scale"].bits.size != 1 or case.inputs["zero_point"].bits.size != 1:
        raise ValueError("torch per-tensor quantization takes one scale and one zero point")
    return s, z


def _quantize(torch, case, ins):
    s, z = _scalars(case)
    with warnings.catch_warnings():          # deprecated in torch 2.13, still working
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(ins["x"], s, z, _qdtype(torch, case.params["qmin"],
                                                                case.params["qmax"]))
    return q.int_repr().to(torch.int32)


def _fake_quantize(torch, case, ins):
    s, z = _scalars(case)
    return torch.fake_quantize_per_tensor_affine(ins["x"], s, z, case.params["qmin"],
                                                 case.params["qmax"])


def _dequantize(torch, case, ins):
    s, z = _scalars(case)
    q = ins["q"]
    dt = torch.int8 if bool((q < 0).any()) else torch.uint8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qt = torch._make_per_tensor_quantized_tensor(q.to(dt), s, z)
        return torch.dequantize(qt)


#: suites prune, distill and amp (torch.nn.utils.prune, autograd of the distillation
#: losses, torch.amp.GradScaler)
_SUITE_OPS = {**torch_prune.OPS, **torch_distill.OPS, **torch_amp.OPS}

_AFFINE = {"quantize_affine": _quantize, "fake_quantize_affine": _fake_quantize,
           "dequantize_affine": _dequantize}


@register("torch-cpu")
def _cpu(arg=None):
    return TorchBackend("cpu")


@register("torch-cuda")
def _cuda(arg=None):
    return TorchBackend("cuda")
