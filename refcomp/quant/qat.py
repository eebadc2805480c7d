"""Eager-mode quantization-aware training on the refcomp engine (torch 2.13).

Mirrors ``torch.ao.quantization.prepare_qat`` / ``convert`` (``torch/ao/quantization/
quantize.py``) for the torch model ``Sequential(QuantStub(), <layers>, DeQuantStub())``
with a global QAT qconfig:

1. :func:`get_default_qat_qconfig` -- ``get_default_qat_qconfig(backend, version=1)`` of
   ``torch/ao/quantization/qconfig.py``: ``"x86"`` / ``"fbgemm"``: activations
   ``FusedMovingAvgObsFakeQuantize(MovingAverageMinMaxObserver, 0, 255,
   reduce_range=True)`` (quint8, range [0, 127]), weights
   ``default_fused_per_channel_wt_fake_quant`` (qint8, [-128, 127], per-channel
   symmetric); ``"default"``: ``default_qat_qconfig`` = ``FakeQuantize`` around
   ``MovingAverageMinMaxObserver`` (activations quint8 [0, 127]; weights qint8 [-128, 127]
   per-tensor symmetric; averaging constant 0.01 for both -- the "memoryless" remark in
   torch's docstring does not match its arguments).
2. :func:`prepare_qat` swaps the layers as ``get_default_qat_module_mappings`` does and
   attaches fake quants where ``prepare`` attaches observers: the input (the QuantStub's
   ``activation_post_process``) and the output of every weighted layer.  Linear, Conv2d,
   LinearReLU and ConvReLU2d become :class:`QATLinear` / :class:`QATConv2d`
   (``nnqat.Linear``: ``F.linear(x, weight_fake_quant(weight), bias)``; the ReLU variants
   apply ``F.relu`` before the output fake quant); the unfolded containers of
   :func:`refcomp.quant.fuse.fuse_modules_qat` become :class:`QATConvBn2d` /
   :class:`QATLinearBn1d` (``nniqat.ConvBn2d``, ``ConvBnReLU2d``, ``LinearBn1d``; the
   "approximate" forward, class notes).  MaxPool2d, Flatten, ReLU and Identity are kept
   and get no fake quant (as in :mod:`refcomp.quant.ptq`); other layers raise.
3. Training: the prepared :class:`QATModel` is a refcomp Module, so
   :func:`refcomp.nn.train_step` / :func:`refcomp.nn.fit` train it.  Every forward call
   (train or eval, as torch) runs the fake quants, whose observers update unless
   :meth:`QATModel.disable_observer` was called; :meth:`QATModel.freeze_bn_stats` makes
   the batch norms use and keep their running statistics.  Gradients flow straight
   through every fake quant (``dy * mask``).
4. :func:`convert` builds the integer-only :class:`refcomp.quant.qmodules.QuantizedModel`
   as ``nnq.Linear.from_float`` / ``_ConvNd.from_float`` do for QAT modules: a ConvBn /
   LinearBn layer first folds its batch norm with ``fuse_conv_bn_weights`` /
   ``fuse_linear_bn_weights`` (running statistics); then ``weight_fake_quant(weight)`` is
   called once more (it updates the weight observer if that is still enabled, as in
   torch), and the weight is quantized with ``weight_fake_quant.calculate_qparams()`` --
   the observer's rule, not the fused fake quant's fbgemm rule -- by ``_quantize_weight``
   (:func:`refcomp.quant.ptq.quantize_weight`); output qparams are each activation fake
   quant's ``calculate_qparams()``.  The prepared model is left unchanged except for that
   observer update.

Saturation.  With reduce_range the activation fake quants clamp to codes [0, 127] while
the converted model's quint8 tensors, with the same scale and zero point, span [0, 255]: an
output that outgrows its (slowly moving, averaging constant 0.01) observed range is
clamped during training -- and gets no gradient there -- but not after convert.  That is
torch's behaviour, mirrored; it shows on short trainings whose logits grow.

Numerics.  The fake quants are bit-exact mirrors (:mod:`refcomp.quant.fq_modules`).  The
elementwise float32 operations of the ConvBn / LinearBn forward (``sqrt``, the divisions,
the products, the bias add) are IEEE float32 operations in torch's order, hence bit-exact
given the same operands; the GEMMs, the batch norm and every reduction in the backward
(bias and scale-factor gradients) are the engine's (float64 evaluation, one rounding per
result), while torch's are float32 in an unspecified order -- the same per-layer
difference that the engine's cross-check bounds (``golden/reports/nn-torch-cpu.md``).
tests/test_quant_qat.py checks against torch 2.13.0+cpu: bit-exact forward, fake-quant
state and gradients on data whose every sum is exact, bit-exact convert of torch's
trained state, and the module structure.

Sources: torch 2.13 ``torch/ao/nn/qat/modules/{linear,conv}.py``,
``torch/ao/nn/intrinsic/qat/modules/{conv_fused,linear_relu,linear_fused}.py``,
``torch/ao/quantization/{qconfig,fake_quantize,quantize,quantization_mappings}.py``,
``torch/ao/nn/quantized/modules/{conv,linear,utils}.py``.
"""

from __future__ import annotations

import copy

import numpy as np

from ..nn.activation import relu_backward, relu_forward
from ..nn.linear import conv2d_backward, conv2d_forward, linear_backward, linear_forward
from ..nn.modules import (BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d,
                          Module, ReLU, Sequential)
from .fake_quant import _x as _f32   # float32 values, exact for float32 input
from .fq_modules import FakeQuantize, FusedMovingAvgObsFakeQuantize
from .fuse import (ConvBn2d, ConvBnReLU2d, ConvReLU2d, Identity, LinearBn1d, LinearReLU,
                   fuse_conv_bn_weights, fuse_linear_bn_weights)
from .observers import MovingAverageMinMaxObserver
from .ptq import QConfig, check_qconfig, convert_passthrough, quantize_weight
from .qmodules import Quantize, QuantizedConv2d, QuantizedLinear, QuantizedModel

__all__ = ["get_default_qat_qconfig", "prepare_qat", "QATModel", "QATLinear", "QATConv2d",
           "QATConvBn2d", "QATLinearBn1d", "convert"]

F32 = np.float32


def get_default_qat_qconfig(name="x86") -> QConfig:
    """torch 2.13's QAT qconfigs (module docstring, step 1).

    Parameters
    ----------
    name : {"x86", "fbgemm", "default"}

    Examples
    --------
    >>> q = get_default_qat_qconfig("x86")
    >>> a, w = q.activation(), q.weight()
    >>> (a.quant_min, a.quant_max), (w.quant_min, w.quant_max), w.qscheme.value
    ((0, 127), (-128, 127), 'per_channel_symmetric')
    """
    if name in ("x86", "fbgemm"):
        return QConfig(lambda: FusedMovingAvgObsFakeQuantize(0, 127, dtype="quint8"),
                       lambda: FusedMovingAvgObsFakeQuantize(-128, 127, dtype="qint8",
                                                             per_channel=True,
                                                             symmetric=True),
                       name)
    if name == "default":
        return QConfig(
            lambda: FakeQuantize(MovingAverageMinMaxObserver(
                quant_min=0, quant_max=255, reduce_range=True)),
            lambda: FakeQuantize(MovingAverageMinMaxObserver(
                dtype="qint8", qscheme="per_tensor_symmetric", quant_min=-128,
                quant_max=127)),
            name)
    raise ValueError(f"unknown QAT qconfig {name!r}; expected 'x86', 'fbgemm' or "
                     "'default' (or pass a QConfig of fake-quant factories)")


def _sum_to(g, axes, shape):
    """``sum_to_size``: a float64 sum over `axes`, rounded once to float32 (engine rule)."""
    return _f32(np.asarray(g, np.float64).sum(axis=axes).reshape(shape))


class QATInput(Module):
    """The QuantStub's fake quant: ``y = activation_post_process(x)``."""

    def __init__(self, fq):
        super().__init__()
        self.activation_post_process = fq

    def forward(self, x, policy, rng=None, train=True):
        return self.activation_post_process.forward(_f32(x))

    def backward(self, dy, cache, rng=None, need_dx=True):
        return (self.activation_post_process.backward(dy, cache) if need_dx else None), {}


class _QATWeighted(Module):
    """Shared parts: ``weight`` / ``bias`` parameters, the weight and output fake quants,
    and the plain forward ``y = afq(relu?(op(x, wfq(W), b)))`` with its backward (the
    straight-through weight gradient ``dW * mask``).  ``_op`` / ``_op_backward`` are the
    layer's engine functions (:class:`_LinearOp`, :class:`_ConvOp`)."""

    def __init__(self, base, qconfig, relu):
        super().__init__()
        self.params["weight"] = _f32(base.params["weight"])
        if "bias" in base.params:
            self.params["bias"] = _f32(base.params["bias"])
        self.weight_fake_quant = qconfig.weight()
        self.activation_post_process = qconfig.activation()
        self.relu = bool(relu)

    def _tail(self, y, policy, rng):
        rc = None
        if self.relu:
            y, rc = relu_forward(y, policy, rng=rng, name=self.name)
        y, ac = self.activation_post_process.forward(y)
        return y, (rc, ac)

    def _tail_backward(self, dy, tail):
        rc, ac = tail
        dy = self.activation_post_process.backward(dy, ac)
        if rc is not None:
            dy = relu_backward(dy, rc)[0]
        return dy

    def forward(self, x, policy, rng=None, train=True):
        wq, wc = self.weight_fake_quant.forward(self.params["weight"])
        y, oc = self._op(x, wq, self.params.get("bias"), policy, rng)
        y, tail = self._tail(y, policy, rng)
        return y, (wc, oc, tail)

    def backward(self, dy, cache, rng=None, need_dx=True):
        wc, oc, tail = cache
        dx, (dw, db) = self._op_backward(self._tail_backward(dy, tail), oc, rng, need_dx)
        grads = {"weight": self.weight_fake_quant.backward(dw, wc)}
        if db is not None:
            grads["bias"] = db
        return dx, grads


class _LinearOp:
    """The engine's linear pair as the QAT modules' ``_op``."""

    def _op(self, x, w, b, policy, rng):
        return linear_forward(x, w, b, policy, rng=rng, name=self.name)

    def _op_backward(self, dz, oc, rng, need_dx):
        return linear_backward(dz, oc, rng=rng, need_dx=need_dx)


class _ConvOp:
    """The engine's conv2d pair (``self.conv``: stride, padding, dilation, groups)."""

    def _op(self, x, w, b, policy, rng):
        return conv2d_forward(x, w, b, policy, rng=rng, name=self.name, **self.conv)

    def _op_backward(self, dz, oc, rng, need_dx):
        return conv2d_backward(dz, oc, rng=rng, need_dx=need_dx)


class QATLinear(_LinearOp, _QATWeighted):
    """``nnqat.Linear`` / ``nniqat.LinearReLU`` with its output fake quant:
    ``y = afq(relu?(x wfq(W)^T + b))``."""

    def __init__(self, base: Linear, qconfig, relu=False):
        super().__init__(base, qconfig, relu)


class QATConv2d(_ConvOp, _QATWeighted):
    """``nnqat.Conv2d`` / ``nniqat.ConvReLU2d`` with its output fake quant."""

    def __init__(self, base: Conv2d, qconfig, relu=False):
        super().__init__(base, qconfig, relu)
        self.conv = dict(base.conv)


class _QATBn(_QATWeighted):
    """``nniqat._ConvBnNd`` / ``LinearBn1d``: the approximate BN folding of the forward.

    Forward (``_forward_approximate``), float32 tensor operations in torch's order::

        running_std = sqrt(running_var + f32(eps))
        sf          = bn.weight / running_std
        w_fq        = weight_fake_quant(weight * sf[:, None, ...])
        z           = op(x, w_fq, zero bias)            # conv2d / linear
        z_orig      = z / sf[None, :, None, ...] (+ bias[None, :, None, ...])
        y           = afq(relu?(bn(z_orig)))            # bn: batch stats in train mode

    The running variance is read before ``bn`` updates it.  ``freeze_bn`` (torch's
    ``freeze_bn_stats``) runs ``bn`` in eval mode (running statistics, no update) even
    in training.

    Backward (autograd's formulas): ``dz = dz_orig / sf``; ``dbias = sum dz_orig``;
    the scale factor collects ``-sum dz_orig * ((z / sf) / sf)`` from the division and
    ``sum dw_fq * weight`` from the weight product (the two added in float32);
    ``dweight = (dw_fq * mask) * sf``; ``dbn.weight = dbn_affine + dsf / running_std``.
    """

    _bn_kind = BatchNorm2d

    def __init__(self, base, bn, qconfig, relu=False, freeze_bn=False):
        super().__init__(base, qconfig, relu)
        if type(bn) is not self._bn_kind or "weight" not in bn.params \
                or "running_var" not in bn.buffers:
            raise ValueError(f"{type(self).__name__}: needs an affine {self._bn_kind.__name__} "
                             "that tracks running statistics")
        self.bn = copy.deepcopy(bn)
        self.bn.params = {k: _f32(v) for k, v in self.bn.params.items()}
        self.freeze_bn = bool(freeze_bn)

    def children(self):
        return [("bn", self.bn)]

    def _shapes(self, ndim):
        return (-1,) + (1,) * (ndim - 1), (1, -1) + (1,) * (ndim - 2)

    def forward(self, x, policy, rng=None, train=True):
        w = self.params["weight"]
        wshape, bshape = self._shapes(w.ndim)
        rv = _f32(self.bn.buffers["running_var"])
        running_std = np.sqrt(rv + _f32(self.bn.eps))
        sf = self.bn.params["weight"] / running_std
        w_scaled = w * sf.reshape(wshape)
        wq, wc = self.weight_fake_quant.forward(w_scaled)
        z, oc = self._op(x, wq, np.zeros(w.shape[0], F32), policy, rng)
        z = _f32(z)
        with np.errstate(divide="ignore", invalid="ignore"):
            z_orig = z / sf.reshape(bshape)
        if "bias" in self.params:
            z_orig = z_orig + self.params["bias"].reshape(bshape)
        y, bc = self.bn.forward(z_orig, policy, rng=rng, train=train and not self.freeze_bn)
        y, tail = self._tail(y, policy, rng)
        return y, (w_scaled, sf, running_std, wc, z, oc, bc, tail)

    def backward(self, dy, cache, rng=None, need_dx=True):
        w_scaled, sf, running_std, wc, z, oc, bc, tail = cache
        w = self.params["weight"]
        wshape, bshape = self._shapes(w.ndim)
        d_orig, bn_grads = self.bn.backward(self._tail_backward(dy, tail), bc, rng=rng)
        d_orig = _f32(d_orig)
        red = (0,) + tuple(range(2, z.ndim))
        grads = {}
        if "bias" in self.params:
            grads["bias"] = _sum_to(d_orig, red, sf.shape)
        sfb = sf.reshape(bshape)
        with np.errstate(divide="ignore", invalid="ignore"):
            dz = d_orig / sfb
            d_sf_div = _sum_to(-d_orig * ((z / sfb) / sfb), red, sf.shape)
        dx, (dwq, _) = self._op_backward(dz, oc, rng, need_dx)
        dws = self.weight_fake_quant.backward(dwq, wc)
        grads["weight"] = _f32(dws * sf.reshape(wshape))
        d_sf_w = _sum_to(_f32(dws) * w, tuple(range(1, w.ndim)), sf.shape)
        d_sf = d_sf_w + d_sf_div
        with np.errstate(divide="ignore", invalid="ignore"):
            grads["bn.weight"] = _f32(bn_grads["weight"]) + d_sf / running_std
        grads["bn.bias"] = bn_grads["bias"]
        return dx, grads


class QATConvBn2d(_ConvOp, _QATBn):
    """``nniqat.ConvBn2d`` / ``ConvBnReLU2d`` (notes of :class:`_QATBn`)."""

    def __init__(self, conv: Conv2d, bn: BatchNorm2d, qconfig, relu=False, freeze_bn=False):
        super().__init__(conv, bn, qconfig, relu, freeze_bn)
        self.conv = dict(conv.conv)


class QATLinearBn1d(_LinearOp, _QATBn):
    """``nniqat.LinearBn1d`` (notes of :class:`_QATBn`; input (N, D_in) only)."""

    _bn_kind = BatchNorm1d

    def __init__(self, linear: Linear, bn: BatchNorm1d, qconfig, freeze_bn=False):
        super().__init__(linear, bn, qconfig, False, freeze_bn)

    def _op(self, x, w, b, policy, rng):
        if np.ndim(x) != 2:
            raise ValueError(f"{self.name}: input must be (N, D_in), got shape {np.shape(x)}")
        return super()._op(x, w, b, policy, rng)


_PASS = (MaxPool2d, Flatten, Identity, ReLU)


def _swap(i, m, q):
    """The QAT module of layer `m` (``get_default_qat_module_mappings``)."""
    if isinstance(m, ConvBnReLU2d):
        return QATConvBn2d(m.layers[0], m.layers[1], q, relu=True)
    if isinstance(m, ConvBn2d):
        return QATConvBn2d(m.layers[0], m.layers[1], q)
    if isinstance(m, LinearBn1d):
        return QATLinearBn1d(m.layers[0], m.layers[1], q)
    if isinstance(m, ConvReLU2d):
        return QATConv2d(m.layers[0], q, relu=True)
    if isinstance(m, LinearReLU):
        return QATLinear(m.layers[0], q, relu=True)
    if isinstance(m, Conv2d):
        return QATConv2d(m, q)
    if isinstance(m, Linear):
        return QATLinear(m, q)
    if isinstance(m, _PASS):
        return copy.deepcopy(m)
    hint = (" (fuse it with the preceding Conv2d / Linear by refcomp.quant.fuse_modules_qat "
            "first)" if isinstance(m, (BatchNorm1d, BatchNorm2d)) else "")
    raise ValueError(f"prepare_qat: layer {i} ({type(m).__name__}) is not supported by "
                     "quantization-aware training (supported: Linear, Conv2d, LinearReLU, "
                     "ConvReLU2d, ConvBn2d, ConvBnReLU2d, LinearBn1d, MaxPool2d, Flatten, "
                     "ReLU, Identity)" + hint)


_WEIGHTED = (QATLinear, QATConv2d, QATConvBn2d, QATLinearBn1d)


class QATModel(Sequential):
    """A prepared QAT model: the input fake quant, then the QAT layers.

    A refcomp :class:`~refcomp.nn.Sequential` (train it with :func:`refcomp.nn.fit` /
    :func:`refcomp.nn.train_step`, policy ``"fp32"``); its children keep the float
    model's names (``"0"``, ``"1"``, ...), so parameter names are torch's minus the
    QuantStub's shift (torch's ``"1.weight"`` is ``"0.weight"`` here; a ConvBn layer's
    batch norm is ``"0.bn.weight"``).

    Attributes
    ----------
    quant : QATInput (the QuantStub's fake quant)
    layers : list of modules
    qconfig : QConfig
    """

    def __init__(self, layers, qconfig):
        super().__init__(*layers)
        self.qconfig = qconfig
        self.quant = QATInput(qconfig.activation())

    def forward(self, x, policy, rng=None, train=True):
        x, qc = self.quant.forward(x, policy, rng=rng, train=train)
        y, caches = super().forward(x, policy, rng=rng, train=train)
        return y, (qc, caches)

    def backward(self, dy, cache, rng=None, need_dx=True):
        qc, caches = cache
        dx, grads = super().backward(dy, caches, rng=rng, need_dx=need_dx)
        if need_dx:
            dx, _ = self.quant.backward(dx, qc, rng=rng)
        return dx, grads

    def fake_quants(self) -> dict:
        """Every fake quant by torch-like name (``"quant"``, ``"0.weight_fake_quant"``,
        ``"0.activation_post_process"``)."""
        out = {"quant": self.quant.activation_post_process}
        for i, m in enumerate(self.layers):
            if isinstance(m, _WEIGHTED):
                out[f"{i}.weight_fake_quant"] = m.weight_fake_quant
                out[f"{i}.activation_post_process"] = m.activation_post_process
        return out

    def disable_observer(self):
        """``model.apply(torch.ao.quantization.disable_observer)``."""
        for fq in self.fake_quants().values():
            fq.disable_observer()
        return self

    def enable_observer(self):
        for fq in self.fake_quants().values():
            fq.enable_observer()
        return self

    def disable_fake_quant(self):
        for fq in self.fake_quants().values():
            fq.disable_fake_quant()
        return self

    def enable_fake_quant(self):
        for fq in self.fake_quants().values():
            fq.enable_fake_quant()
        return self

    def freeze_bn_stats(self, freeze=True):
        """``model.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)`` (or
        ``update_bn_stats`` with ``freeze=False``)."""
        for m in self.layers:
            if isinstance(m, _QATBn):
                m.freeze_bn = bool(freeze)
        return self


def prepare_qat(model: Sequential, qconfig="x86") -> QATModel:
    """``torch.ao.quantization.prepare_qat`` for ``Sequential(QuantStub(), *model,
    DeQuantStub())`` with the global QAT `qconfig` (module docstring, step 2).

    Parameters
    ----------
    model : refcomp.nn Sequential (optionally fused by :func:`~refcomp.quant.fuse_modules`
        or :func:`~refcomp.quant.fuse.fuse_modules_qat`); not modified
    qconfig : QConfig of fake-quant factories, or {"x86", "fbgemm", "default"}

    Returns
    -------
    QATModel (parameters float32)

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> m = nn.Sequential(nn.Linear(3, 2, rng=np.random.default_rng(0)), nn.ReLU())
    >>> sorted(prepare_qat(m).fake_quants())
    ['0.activation_post_process', '0.weight_fake_quant', 'quant']
    """
    if not isinstance(model, Sequential) or isinstance(model, (ConvReLU2d, LinearReLU,
                                                               QATModel)):
        raise TypeError(f"prepare_qat: model must be a refcomp.nn Sequential, got "
                        f"{type(model).__name__}")
    q = check_qconfig(qconfig, get_default_qat_qconfig,
                      (FakeQuantize, FusedMovingAvgObsFakeQuantize))
    return QATModel([_swap(i, m, q) for i, m in enumerate(model.layers)], q)


def _qparams(fq, where):
    mn = np.asarray(fq.min_val)
    if mn.size == 0 or np.all(np.isinf(mn)):
        raise ValueError(f"convert: the fake quant of {where} has seen no data (min_val "
                         f"{mn!r}); run training or calibration batches through the QAT "
                         "model before convert")
    s, z = fq.calculate_qparams()
    return float(np.asarray(s).reshape(-1)[0]), int(np.asarray(z).reshape(-1)[0])


def _convert_layer(i, m, int16_pairs):
    name = f"layer {i} ({type(m).__name__})"
    if isinstance(m, _WEIGHTED):
        w, b = m.params["weight"], m.params.get("bias")
        if isinstance(m, _QATBn):
            bn = m.bn
            fuse = fuse_conv_bn_weights if isinstance(m, QATConvBn2d) else \
                fuse_linear_bn_weights
            w, b = fuse(w, b, bn.buffers["running_mean"], bn.buffers["running_var"], bn.eps,
                        bn.params["weight"], bn.params["bias"])
            b = np.broadcast_to(b, (w.shape[0],))
        scale, zp = _qparams(m.activation_post_process, f"{name}'s output")
        # from_float: weight_post_process(mod.weight), then _quantize_weight
        wq, ws, wz = quantize_weight(w, m.weight_fake_quant)
        args = (wq, ws, wz, None if b is None else _f32(b), scale, zp)
        if isinstance(m, (QATConv2d, QATConvBn2d)):
            return QuantizedConv2d(*args, m.conv, relu=m.relu, int16_pairs=int16_pairs,
                                   name=name)
        return QuantizedLinear(*args, relu=m.relu, int16_pairs=int16_pairs, name=name)
    return convert_passthrough(i, m)


def convert(qat: QATModel, int16_pairs=True) -> QuantizedModel:
    """``torch.ao.quantization.convert`` of a QAT model (module docstring, step 4).

    Parameters
    ----------
    qat : QATModel (from :func:`prepare_qat`, trained)
    int16_pairs : bool, as :func:`refcomp.quant.ptq.convert`

    Returns
    -------
    refcomp.quant.qmodules.QuantizedModel

    Raises
    ------
    ValueError
        A fake quant whose observer has seen no data (torch would warn and use scale 1.0,
        zero point 0).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> m = prepare_qat(nn.Sequential(nn.Linear(2, 1, rng=np.random.default_rng(0))))
    >>> _ = m.forward(np.float32([[1.0, -2.0], [0.5, 0.25]]), "fp32")
    >>> convert(m).forward(np.float32([[1.0, -2.0]])).shape
    (1, 1)
    """
    if not isinstance(qat, QATModel):
        raise TypeError(f"convert: expected a QATModel (from prepare_qat), got "
                        f"{type(qat).__name__}")
    scale, zp = _qparams(qat.quant.activation_post_process, "the input (QuantStub)")
    return QuantizedModel(Quantize(scale, zp),
                          [_convert_layer(i, m, int16_pairs) for i, m in enumerate(qat.layers)])
