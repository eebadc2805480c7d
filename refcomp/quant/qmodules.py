"""Integer-only modules of an eager-mode statically quantized model (torch 2.13, fbgemm).

What :func:`refcomp.quant.ptq.convert` builds, one class per torch module it mirrors:

================================  ===================================================
refcomp                           torch 2.13 (``torch.ao.nn.quantized`` / ``intrinsic``)
================================  ===================================================
:class:`Quantize`                 ``nnq.Quantize`` (from ``QuantStub``)
:class:`QuantizedConv2d`          ``nnq.Conv2d``; ``relu=True``: ``nniq.ConvReLU2d``
:class:`QuantizedLinear`          ``nnq.Linear``; ``relu=True``: ``nniq.LinearReLU``
:class:`QuantizedMaxPool2d`       ``nn.MaxPool2d`` on a quint8 tensor
:class:`QuantizedFlatten`         ``nn.Flatten`` / ``nn.Identity`` on a quint8 tensor
:class:`QuantizedReLU`            ``nn.ReLU`` on a quint8 tensor
:class:`DeQuantize`               ``nnq.DeQuantize`` (from ``DeQuantStub``)
================================  ===================================================

Between the stubs every value is a quint8 code (an int64 array of integers in [0, 255])
carrying the qparams ``(scale, zero_point)`` of the layer that produced it:

- ``Quantize``: ``torch.quantize_per_tensor(x, s, z, quint8)``, the fused legacy rule
  ``clamp(rne(fma(x, f32(1 / s), z)), 0, 255)`` (:func:`refcomp.ops.quantize_affine`,
  convention ``"torch-2.13-quantize_per_tensor"``); the clamp is to [0, 255] even when the
  observer's range was [0, 127] (``reduce_range``).
- Conv2d / Linear: :func:`refcomp.quant.static.quantized_conv2d` /
  :func:`~refcomp.quant.static.quantized_linear` (fbgemm requantization with the float
  bias, new output qparams).
- Max pooling, flatten, identity and a lone ReLU act on the codes and keep their input's
  qparams (torch's quantized ``max_pool2d`` takes the maximum code, monotone in the value;
  quantized ``relu`` is ``max(q, zero_point)``, ATen ``qrelu_kernel``).
- ``DeQuantize``: ``f32(f32(q - z) * s)`` (ATen ``dequantize_val``).
"""

from __future__ import annotations

import numpy as np

from ..nn.pool import flatten_forward, max_pool2d_forward
from ..ops.affine import dequantize_affine, quantize_affine
from ..rounding import cast
from .static import quantized_conv2d, quantized_linear

__all__ = ["QTensor", "Quantize", "DeQuantize", "QuantizedConv2d", "QuantizedLinear",
           "QuantizedMaxPool2d", "QuantizedFlatten", "QuantizedReLU", "QuantizedModel"]


def _f32(v) -> float:
    """A scalar rounded to float32 (nearest even), as a Python float."""
    return float(cast(np.float64(v), "float32"))


class QTensor:
    """quint8 codes with their per-tensor qparams (a quantized torch tensor's content).

    Attributes
    ----------
    codes : int64 array of integers in [0, 255]
    scale : float, a float32 value
    zero_point : int
    """

    __slots__ = ("codes", "scale", "zero_point")

    def __init__(self, codes, scale, zero_point):
        self.codes, self.scale, self.zero_point = codes, float(scale), int(zero_point)

    def __repr__(self):
        return (f"QTensor(shape={self.codes.shape}, scale={self.scale!r}, "
                f"zero_point={self.zero_point})")


class Quantize:
    """``nnq.Quantize``: float32 input -> quint8 codes (module docstring).

    Parameters
    ----------
    scale : float, rounded to float32 (torch's observer gives a float32 value)
    zero_point : int in [0, 255]
    """

    def __init__(self, scale, zero_point):
        self.scale = _f32(scale)
        self.zero_point = int(zero_point)
        if not (np.isfinite(self.scale) and self.scale > 0) or not 0 <= self.zero_point <= 255:
            raise ValueError(f"Quantize: scale {scale!r} must be positive and finite and "
                             f"zero_point {zero_point!r} in [0, 255]")

    def forward(self, x) -> QTensor:
        """`x` (any shape) float32 values -> QTensor."""
        q = quantize_affine(x, self.scale, self.zero_point, 0, 255,
                            "torch-2.13-quantize_per_tensor")     # rounds x to float32
        return QTensor(q, self.scale, self.zero_point)

    def __repr__(self):
        return f"Quantize(scale={self.scale!r}, zero_point={self.zero_point})"


class DeQuantize:
    """``nnq.DeQuantize``: QTensor -> float32 ``f32(f32(q - z) * s)``."""

    def forward(self, qt: QTensor) -> np.ndarray:
        y = dequantize_affine(qt.codes, qt.scale, qt.zero_point,
                              "torch-2.13-quantize_per_tensor")
        return np.asarray(y, np.float32)

    def __repr__(self):
        return "DeQuantize()"


class _QWeighted:
    """Shared state of the quantized Conv2d / Linear modules.

    Attributes
    ----------
    weight : int64 array of qint8 codes
    w_scale : (1,) or (O,) float64 array of float32 values (per-tensor / per-channel)
    w_zero_point : (1,) or (O,) int64 array
    bias : (O,) float32 array or None (kept in float, as torch does)
    scale, zero_point : the output qparams (float32 value, int)
    relu : bool, the fused ReLU (clamp below at the output zero point)
    int16_pairs : bool, model AVX2's int16 pair saturation (see
        :mod:`refcomp.quant.static`)
    """

    def __init__(self, weight, w_scale, w_zero_point, bias, scale, zero_point, relu=False,
                 int16_pairs=True, name=None):
        self.weight = np.asarray(weight, np.int64)
        self.w_scale = np.atleast_1d(np.asarray(w_scale, np.float64))
        self.w_zero_point = np.atleast_1d(np.asarray(w_zero_point, np.int64))
        self.bias = None if bias is None else np.asarray(bias, np.float32)
        self.scale, self.zero_point = _f32(scale), int(zero_point)
        self.relu, self.int16_pairs = bool(relu), bool(int16_pairs)
        self.name = name or type(self).__name__

    @property
    def per_channel(self) -> bool:
        return self.w_scale.size > 1

    def __repr__(self):
        return (f"{type(self).__name__}(weight={self.weight.shape}, "
                f"per_channel={self.per_channel}, relu={self.relu}, scale={self.scale!r}, "
                f"zero_point={self.zero_point})")


class QuantizedConv2d(_QWeighted):
    """``nnq.Conv2d`` / ``nniq.ConvReLU2d`` (fbgemm): QTensor (N, C, H, W) -> QTensor.

    `conv` holds ``stride, padding, dilation, groups`` as refcomp's Conv2d does; other
    parameters as :class:`_QWeighted`.  Numerics: :func:`refcomp.quant.static.quantized_conv2d`.
    """

    def __init__(self, weight, w_scale, w_zero_point, bias, scale, zero_point, conv,
                 relu=False, int16_pairs=True, name=None):
        super().__init__(weight, w_scale, w_zero_point, bias, scale, zero_point, relu,
                         int16_pairs, name)
        self.conv = dict(conv)

    def forward(self, qt: QTensor) -> QTensor:
        y = quantized_conv2d(qt.codes, qt.scale, qt.zero_point, self.weight, self.w_scale,
                             self.w_zero_point, self.bias, self.scale, self.zero_point,
                             relu=self.relu, int16_pairs=self.int16_pairs, **self.conv)
        return QTensor(y, self.scale, self.zero_point)


class QuantizedLinear(_QWeighted):
    """``nnq.Linear`` / ``nniq.LinearReLU`` (fbgemm): QTensor (..., K) -> QTensor (..., N).

    Numerics: :func:`refcomp.quant.static.quantized_linear`."""

    def forward(self, qt: QTensor) -> QTensor:
        y = quantized_linear(qt.codes, qt.scale, qt.zero_point, self.weight, self.w_scale,
                             self.w_zero_point, self.bias, self.scale, self.zero_point,
                             relu=self.relu, int16_pairs=self.int16_pairs)
        return QTensor(y, self.scale, self.zero_point)


class QuantizedMaxPool2d:
    """``nn.MaxPool2d`` on quint8: the maximum code of each window (padding never wins);
    qparams unchanged.  `kw`: ``kernel_size, stride, padding, dilation``."""

    def __init__(self, **kw):
        self.kw = dict(kw)

    def forward(self, qt: QTensor) -> QTensor:
        y, _ = max_pool2d_forward(qt.codes.astype(np.float64), "fp64", **self.kw)
        return QTensor(np.asarray(y).astype(np.int64), qt.scale, qt.zero_point)

    def __repr__(self):
        return f"QuantizedMaxPool2d({self.kw})"


class QuantizedFlatten:
    """``nn.Flatten`` (``start_dim, end_dim``) on quint8 codes; no arguments: identity."""

    def __init__(self, **kw):
        self.kw = dict(kw)

    def forward(self, qt: QTensor) -> QTensor:
        if not self.kw:
            return qt
        y, _ = flatten_forward(qt.codes.astype(np.float64), "fp64", **self.kw)
        return QTensor(np.asarray(y).astype(np.int64), qt.scale, qt.zero_point)

    def __repr__(self):
        return f"QuantizedFlatten({self.kw})" if self.kw else "Identity()"


class QuantizedReLU:
    """``nn.ReLU`` on quint8 (ATen ``qrelu``): ``max(q, zero_point)``, qparams unchanged."""

    def forward(self, qt: QTensor) -> QTensor:
        return QTensor(np.maximum(qt.codes, qt.zero_point), qt.scale, qt.zero_point)

    def __repr__(self):
        return "QuantizedReLU()"


class QuantizedModel:
    """QuantStub -> integer layers -> DeQuantStub: the converted model.

    Parameters
    ----------
    quant : Quantize
    layers : list of quantized layer objects (names "0", "1", ... as the float Sequential)

    Examples
    --------
    >>> import numpy as np
    >>> m = QuantizedModel(Quantize(0.5, 10), [QuantizedReLU()])
    >>> m.forward(np.float32([-3.0, 1.2])).tolist()
    [0.0, 1.0]
    >>> m.forward_codes(np.float32([-3.0, 1.2])).codes.tolist()
    [10, 12]
    """

    def __init__(self, quant: Quantize, layers):
        self.quant = quant
        self.layers = list(layers)
        self.dequant = DeQuantize()

    def forward_codes(self, x, all_layers=False):
        """The integer codes of the last layer's output (a :class:`QTensor`); with
        `all_layers`, the list of QTensors [input codes, layer 0 output, layer 1 output,
        ...]."""
        qt = self.quant.forward(x)
        outs = [qt]
        for m in self.layers:
            qt = m.forward(qt)
            outs.append(qt)
        return outs if all_layers else qt

    def forward(self, x) -> np.ndarray:
        """float32 input -> float32 output (quantize, integer layers, dequantize)."""
        return self.dequant.forward(self.forward_codes(x))

    __call__ = forward

    def __repr__(self):
        body = "\n".join(f"  ({i}): {m!r}" for i, m in enumerate(self.layers))
        return f"QuantizedModel(\n  {self.quant!r}\n{body}\n  {self.dequant!r}\n)"
