"""Eager-mode static post-training quantization of a refcomp Sequential (torch 2.13).

Mirrors ``torch.ao.quantization.prepare`` / ``convert`` (``torch/ao/quantization/
quantize.py``) for the torch model ``Sequential(QuantStub(), <layers>, DeQuantStub())``
with a global qconfig, on the fbgemm engine:

1. :func:`prepare` copies the layers and attaches the observers torch attaches
   (``_add_observer_``): one on the input (the QuantStub's ``activation_post_process``)
   and one on the output of every Conv2d, Linear, ConvReLU2d and LinearReLU (fused by
   :func:`refcomp.quant.fuse_modules` or not).  MaxPool2d, Flatten, Identity and a lone
   ReLU get no observer: in torch's converted model they run on the quantized tensor and
   keep their input's qparams (measured on torch 2.13.0+cpu).  Every other layer is
   refused with a ValueError naming it (torch would leave it in float and fail at run
   time on the quantized input); an unfused BatchNorm must be folded first.
2. Calibration: :meth:`PreparedModel.forward` (or :func:`calibrate`) runs float batches
   through the layers with refcomp's float32 engine (policy ``"fp32"`` by default, eval
   mode) and feeds each observer the tensor torch's observer would see.  The observers
   are bit-exact given the same tensors; the float convolutions and matmuls are not
   bit-reproducible against torch's (MKL / oneDNN summation order), so a calibration of
   the same data can give slightly different observer ranges than torch's.  To reproduce
   torch's calibration exactly, feed the observers torch's activations
   (``prepared.observers[name].forward(a)``).
3. :func:`convert` builds a :class:`refcomp.quant.qmodules.QuantizedModel`
   (``_convert`` / ``swap_module`` with ``get_default_static_quant_module_mappings``):
   each weighted layer's weight goes through a fresh weight observer of the qconfig and is
   quantized (``_quantize_weight``: per-tensor ``quantize_per_tensor`` (fused legacy rule),
   per-channel ``quantize_per_channel`` (unfused legacy rule), to the observer's
   ``[quant_min, quant_max]``); the bias stays float32; the output qparams are the
   activation observer's ``calculate_qparams()``; the QuantStub becomes ``Quantize``.

Source: torch 2.13 ``torch/ao/quantization/{quantize.py, qconfig.py, observer.py}``,
``torch/ao/nn/quantized/modules/{conv.py, linear.py, utils.py, __init__.py}``.  Measured
against torch 2.13.0+cpu in ``tests/test_quant_ptq.py``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..nn.modules import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from ..ops.affine import quantize_affine
from ..rounding import cast
from .fuse import ConvReLU2d, Identity, LinearReLU
from .histogram import HistogramObserver
from .observers import MinMaxObserver, PerChannelMinMaxObserver
from .qmodules import (Quantize, QuantizedConv2d, QuantizedFlatten, QuantizedLinear,
                       QuantizedMaxPool2d, QuantizedModel, QuantizedReLU)
from .qparams import QDtype

__all__ = ["QConfig", "get_default_qconfig", "PreparedModel", "prepare", "calibrate",
           "convert", "quantize_weight", "convert_passthrough"]


@dataclass(frozen=True)
class QConfig:
    """``torch.ao.quantization.QConfig``: factories of the activation and weight observers.

    Attributes
    ----------
    activation : callable returning a per-tensor quint8 observer
    weight : callable returning a qint8 observer (per-tensor, or per-channel on axis 0)
    name : str, for messages
    """

    activation: Callable
    weight: Callable
    name: str = "custom"


def get_default_qconfig(name="x86", capability="avx2") -> QConfig:
    """torch 2.13's PTQ qconfigs.

    Parameters
    ----------
    name : {"x86", "fbgemm", "default"}
        ``"x86"`` / ``"fbgemm"``: ``get_default_qconfig(name)`` = activations
        ``HistogramObserver(reduce_range=True)`` (quint8, range [0, 127]), weights
        ``PerChannelMinMaxObserver(dtype=qint8, qscheme=per_channel_symmetric)``.
        ``"default"``: ``torch.ao.quantization.default_qconfig`` = activations
        ``MinMaxObserver(quant_min=0, quant_max=127)``, weights ``MinMaxObserver(
        dtype=qint8, qscheme=per_tensor_symmetric)``.
    capability : str, the ATen CPU build the HistogramObserver mirrors
        (:class:`refcomp.quant.histogram.CpuCapability`)

    Examples
    --------
    >>> q = get_default_qconfig("default")
    >>> q.activation().quant_max, q.weight().qscheme.value
    (127, 'per_tensor_symmetric')
    """
    if name in ("x86", "fbgemm"):
        return QConfig(lambda: HistogramObserver(reduce_range=True, capability=capability),
                       lambda: PerChannelMinMaxObserver(dtype="qint8",
                                                        qscheme="per_channel_symmetric"),
                       name)
    if name == "default":
        return QConfig(lambda: MinMaxObserver(quant_min=0, quant_max=127),
                       lambda: MinMaxObserver(dtype="qint8", qscheme="per_tensor_symmetric"),
                       name)
    raise ValueError(f"unknown qconfig {name!r}; expected 'x86', 'fbgemm' or 'default' "
                     "(or pass a QConfig)")


def check_qconfig(qconfig, named=None, kinds=None) -> QConfig:
    """`qconfig` (a QConfig, or a name for `named`, default :func:`get_default_qconfig`)
    after checking what fbgemm needs: per-tensor quint8 activations, qint8 weights per
    tensor or per channel on axis 0; `kinds`, a class tuple, restricts the objects the
    factories make (TypeError naming the role)."""
    named = named or get_default_qconfig
    q = qconfig if isinstance(qconfig, QConfig) else named(qconfig) \
        if isinstance(qconfig, str) else None
    if q is None:
        raise TypeError(f"qconfig must be a QConfig or a name, got {qconfig!r}")
    act, w = q.activation(), q.weight()
    for role, obj in (("activation", act), ("weight", w)):
        if kinds is not None and not isinstance(obj, kinds):
            raise TypeError(f"qconfig {q.name!r}: the {role} factory must make one of "
                            f"{', '.join(k.__name__ for k in kinds)}, got "
                            f"{type(obj).__name__}")
    if act.dtype is not QDtype.QUINT8 or act.qscheme.per_channel:
        raise ValueError(f"qconfig {q.name!r}: activations must be per-tensor quint8 for "
                         f"fbgemm, got {act.dtype.value} {act.qscheme.value}")
    if w.dtype is not QDtype.QINT8 or (w.qscheme.per_channel and w.ch_axis != 0) \
            or w.qscheme.value.endswith("float_qparams"):
        raise ValueError(f"qconfig {q.name!r}: weights must be qint8, per tensor or per "
                         f"channel on axis 0, got {w.dtype.value} {w.qscheme.value}")
    return q


# layer kinds: weighted (observed output) and code-only (input's qparams kept)
_WEIGHTED = (ConvReLU2d, LinearReLU, Conv2d, Linear)
_PASS = (MaxPool2d, Flatten, Identity, ReLU)


def _layers(model, what):
    if not isinstance(model, Sequential) or isinstance(model, (ConvReLU2d, LinearReLU)):
        raise TypeError(f"{what}: model must be a refcomp.nn Sequential, got "
                        f"{type(model).__name__}")
    return _check(model.layers, what)


def _check(layers, what):
    """`layers` if every one is supported, else ValueError naming the first that is not."""
    for i, m in enumerate(layers):
        if not isinstance(m, _WEIGHTED + _PASS):
            hint = (" (fold it into the preceding Conv2d / Linear with "
                    "refcomp.quant.fuse_modules first)"
                    if "BatchNorm" in type(m).__name__ or "BNReLU" in type(m).__name__
                    else "")
            raise ValueError(f"{what}: layer {i} ({type(m).__name__}) is not supported by "
                             "static quantization (supported: Conv2d, Linear, ConvReLU2d, "
                             "LinearReLU, MaxPool2d, Flatten, ReLU, Identity)" + hint)
    return layers


class PreparedModel:
    """A float model with observers attached (torch's prepared model).

    Attributes
    ----------
    layers : list of refcomp.nn Modules (deep copies; names "0", "1", ...)
    qconfig : QConfig
    observers : dict
        ``"input"``: the QuantStub's observer; ``"<i>"``: the observer of layer i's output
        (Conv2d / Linear / ConvReLU2d / LinearReLU layers only).
    """

    def __init__(self, model: Sequential, qconfig):
        self.qconfig = check_qconfig(qconfig)
        self.layers = copy.deepcopy(_layers(model, "prepare"))
        self.observers = {"input": self.qconfig.activation()}
        for i, m in enumerate(self.layers):
            if isinstance(m, _WEIGHTED):
                self.observers[str(i)] = self.qconfig.activation()

    def forward(self, x, policy="fp32"):
        """Calibration forward: float `x` through the layers (eval mode, `policy`),
        feeding the observers; returns the float output.

        The input is rounded to float32 first (torch's float32 model)."""
        x = np.asarray(x)
        if x.dtype != np.float32:
            x = cast(x.astype(np.float64), "float32", dtype=np.float32)
        self.observers["input"].forward(x)
        for i, m in enumerate(self.layers):
            x, _ = m.forward(x, policy, train=False)
            obs = self.observers.get(str(i))
            if obs is not None:
                obs.forward(x)
        return x

    __call__ = forward


def prepare(model: Sequential, qconfig="x86") -> PreparedModel:
    """``torch.ao.quantization.prepare`` for ``Sequential(QuantStub(), *model,
    DeQuantStub())`` with the global `qconfig` (module docstring, step 1).

    Parameters
    ----------
    model : refcomp.nn Sequential (optionally fused); not modified
    qconfig : QConfig or {"x86", "fbgemm", "default"}

    Returns
    -------
    PreparedModel

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> m = nn.Sequential(nn.Linear(3, 2, rng=np.random.default_rng(0)), nn.ReLU())
    >>> sorted(prepare(m, "default").observers)
    ['0', 'input']
    """
    return PreparedModel(model, qconfig)


def calibrate(prepared: PreparedModel, batches, policy="fp32") -> PreparedModel:
    """Run every batch of `batches` through ``prepared.forward``; returns `prepared`."""
    for x in batches:
        prepared.forward(x, policy)
    return prepared


def _calibrated(obs, where):
    if obs.min_val.size == 0 or np.all(np.isinf(obs.min_val)):
        raise ValueError(f"convert: the observer of {where} has seen no data (min_val "
                         f"{obs.min_val!r}); run calibration batches through the prepared "
                         "model before convert")
    return obs.calculate_qparams()


def quantize_weight(weight, observer):
    """``_quantize_weight`` of torch.ao.nn.quantized.modules.utils with a fresh observer.

    Parameters
    ----------
    weight : (O, ...) float32 values
    observer : a fresh qint8 weight observer (per tensor, or per channel on axis 0)

    Returns
    -------
    wq : int64 array of `weight`'s shape, integers in ``[quant_min, quant_max]``
    scale : (1,) or (O,) float64 array of float32 values
    zero_point : (1,) or (O,) int64 array

    Notes
    -----
    The observer records `weight` (``weight_post_process(mod.weight)`` in ``from_float``).
    Per-tensor: ``quantize_per_tensor(w, float(scale), int(zp), qint8)``, the fused legacy
    rule; per-channel: ``quantize_per_channel(w, scales, zps, 0, qint8)``, the unfused
    legacy rule (:mod:`refcomp.ops.affine`); then ``_clamp_weights`` to the observer's
    range (folded into the quantizer's clamp: the two clamps compose).

    Examples
    --------
    >>> import numpy as np
    >>> wq, s, z = quantize_weight(np.float32([[0.5, -1.0]]), MinMaxObserver(
    ...     dtype="qint8", qscheme="per_tensor_symmetric"))
    >>> wq.tolist(), z.tolist()
    ([[64, -127]], [0])
    """
    w = np.asarray(weight)
    if w.dtype != np.float32:
        w = cast(w.astype(np.float64), "float32", dtype=np.float32)
    observer.forward(w)
    scale, zp = observer.calculate_qparams()
    scale = np.asarray(scale, np.float64).reshape(-1)
    zp = np.asarray(zp, np.int64).reshape(-1)
    lo, hi = observer.quant_min, observer.quant_max
    if observer.qscheme.per_channel:
        shape = (-1,) + (1,) * (w.ndim - 1)
        wq = quantize_affine(w, scale.reshape(shape), zp.reshape(shape), lo, hi,
                             "torch-2.13-quantize_per_channel")
    else:
        wq = quantize_affine(w, scale[0], zp[0], lo, hi, "torch-2.13-quantize_per_tensor")
    return wq, scale, zp


def _convert_layer(i, m, prepared, int16_pairs):
    name = f"layer {i} ({type(m).__name__})"
    if isinstance(m, _WEIGHTED):
        relu = isinstance(m, (ConvReLU2d, LinearReLU))
        base = m.layers[0] if relu else m
        scale, zp = _calibrated(prepared.observers[str(i)], f"{name}'s output")
        wq, ws, wz = quantize_weight(base.params["weight"], prepared.qconfig.weight())
        b = base.params.get("bias")
        args = (wq, ws, wz, None if b is None else np.asarray(b, np.float32),
                float(np.asarray(scale).reshape(-1)[0]), int(np.asarray(zp).reshape(-1)[0]))
        if isinstance(base, Conv2d):
            return QuantizedConv2d(*args, base.conv, relu=relu, int16_pairs=int16_pairs,
                                   name=name)
        return QuantizedLinear(*args, relu=relu, int16_pairs=int16_pairs, name=name)
    return convert_passthrough(i, m)


def convert_passthrough(i, m):
    """The converted form of layer `i` when it is one that runs on the quantized tensor
    and keeps its input's qparams (MaxPool2d, Flatten, Identity, ReLU); ValueError naming
    it otherwise."""
    if isinstance(m, MaxPool2d):
        return QuantizedMaxPool2d(**m.kw)
    if isinstance(m, Flatten):
        return QuantizedFlatten(**m.kw)
    if isinstance(m, Identity):
        return QuantizedFlatten()
    if isinstance(m, ReLU):
        return QuantizedReLU()
    raise ValueError(f"convert: layer {i} ({type(m).__name__}) is not supported by static "
                     "quantization")


def convert(prepared: PreparedModel, int16_pairs=True) -> QuantizedModel:
    """``torch.ao.quantization.convert``: the integer-only model (module docstring, step 3).

    Parameters
    ----------
    prepared : PreparedModel, calibrated
    int16_pairs : bool
        Model the AVX2 kernel's int16 pair saturation (True; CPUs without AVX512-VNNI) or
        VNNI's exact products (see :mod:`refcomp.quant.static`).

    Returns
    -------
    refcomp.quant.qmodules.QuantizedModel

    Raises
    ------
    ValueError
        An observer that has seen no data (torch would warn and use scale 1.0, zero point
        0), or an unsupported layer (named).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> p = prepare(nn.Sequential(nn.Linear(2, 1, rng=np.random.default_rng(0))), "default")
    >>> _ = p.forward(np.float32([[1.0, -2.0], [0.5, 0.25]]))
    >>> q = convert(p)
    >>> q.forward(np.float32([[1.0, -2.0]])).shape
    (1, 1)
    """
    if not isinstance(prepared, PreparedModel):
        raise TypeError(f"convert: expected a PreparedModel (from prepare), got "
                        f"{type(prepared).__name__}")
    layers = _check(prepared.layers, "convert")
    scale, zp = _calibrated(prepared.observers["input"], "the input (QuantStub)")
    quant = Quantize(float(np.asarray(scale).reshape(-1)[0]),
                     int(np.asarray(zp).reshape(-1)[0]))
    return QuantizedModel(quant, [_convert_layer(i, m, prepared, int16_pairs)
                                  for i, m in enumerate(layers)])
