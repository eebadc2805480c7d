"""Dynamic quantization of Linear, as torch 2.13's fbgemm kernel computes it (x86 / fbgemm).

``torch.ao.quantization.quantize_dynamic`` replaces ``nn.Linear`` by
``torch.ao.nn.quantized.dynamic.Linear``: int8 weights quantized once, the activations
quantized afresh on every call from their own range, an integer GEMM, float32 output.
Prepacking sends both the ``x86`` and the ``fbgemm`` engine to fbgemm's
``PackedLinearWeight`` (``aten/src/ATen/native/quantized/cpu/qlinear_prepack.cpp``).

Weights (``from_float``, ``torch/ao/nn/quantized/dynamic/modules/linear.py`` and
``modules/utils.py::_quantize_weight``), qconfig ``default_dynamic_qconfig``
(``MinMaxObserver``, qint8, per-tensor symmetric) or ``per_channel_dynamic_qconfig``
(``PerChannelMinMaxObserver``, per-channel symmetric, axis 0):
``s_w = max(f32(max(-min(w_min, 0), max(w_max, 0)) / 127.5), 2**-23)``, ``z_w = 0``
(:func:`refcomp.quant.qparams.calculate_qparams`), then ``torch.quantize_per_tensor`` /
``quantize_per_channel`` to [-128, 127] (:func:`refcomp.ops.quantize_affine`; with
``z_w = 0`` both reduce to ``rne(f32(w * f32(1 / s_w)))``).

Per call (``PackedLinearWeight::apply_dynamic_impl``, ``qlinear_dynamic.cpp``), ``x`` float32
flattened to (M, K):

1. ``x_min, x_max`` over all elements (``fbgemm::FindMinMax``; 0, 0 for an empty input);
   ``(s_x, z_x) = ChooseQuantizationParams(x_min, x_max, 0, 255, reduce_range=True)``
   (``cpu/QuantUtils.h``; :func:`refcomp.quant.choose.choose_qparams_fbgemm` with
   ``source="aten"``): range [0, 127]; ``s_x`` is the double scale narrowed to float32.
   The module passes ``reduce_range=True`` on every engine (version 4 ``forward``).
2. ``xq = clamp(rne(fma(x, f32(1 / s_x), z_x)), 0, 255)``: fbgemm ``QuantizeAvx2`` in the
   LEGACY mode the FBGEMM pinned by torch 2.13 defaults to -- the zero point is added
   before the single rounding, fused (convention ``"torch-2.13-quantize_per_tensor"``);
   the clamp is to the full uint8 range.
3. ``raw[m, n] = sum_k (xq - z_x)(wq - z_w)`` in int32: fbgemm's u8 x s8 GEMM on the raw
   codes (``PackAWithQuantRowOffset``), then ``acc - z_x col_off[n] - row_off[m] z_w[n]``
   (``ReQuantizeForFloat``).  The AVX2 kernel without VNNI saturates each adjacent pair of
   products to int16 (``vpmaddubsw``, model ``u8s8-int32-avx2``).  With reduce_range the
   codes are at most 127 (128 at a rounding edge) and ``|2 * 128 * -128| = 32768`` does not
   exceed the int16 range, so the saturation never triggers on this path; it is modelled
   anyway (``int16_pairs``) since it is the kernel's arithmetic.
4. ``y = fma(f32(raw), f32(s_x * s_w[n]), bias[n])``, or ``f32(f32(raw) * f32(s_x *
   s_w[n]))`` without bias (``requantizeForFloatAvx2``, fbgemm ``src/QuantUtilsAvx2.cc``:
   the source's ``_mm256_add_ps(_mm256_mul_ps(...), bias)`` is contracted into one FMA,
   the file being compiled with ``-mfma``); ``f32(raw)`` is ``cvtepi32_ps`` (nearest even);
   ReLU (``LinearReLU``): ``_mm256_max_ps(0, y)``, i.e. ``0 > y ? +0 : y`` (a -0 stays).

Measured bit-exact against torch 2.13.0+cpu on an AVX2 machine without VNNI
(tests/test_quant_dynamic.py).  The legacy quantize rule (2) flips to ``rne(x * inv) + z``
once torch pins an FBGEMM past commit 798a6037a.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from ..nn.modules import Linear, Module, Residual, Sequential
from ..ops.accum import matmul
from ..ops.affine import quantize_affine
from ..ops.arith import fma, mul
from ..rounding import cast
from .choose import choose_qparams_fbgemm
from .fuse import LinearReLU
from .qparams import calculate_qparams, qparams_spec

from ._checks import finite_values

__all__ = ["DynamicLinearCache", "quantize_weight_dynamic", "dynamic_linear_forward",
           "DynamicQuantizedLinear", "quantize_dynamic", "PackedWeight", "pack_weight"]

F32 = "float32"


class DynamicLinearCache(NamedTuple):
    """The intermediate values of one dynamic Linear call (for inspection; no backward)."""

    x_scale: np.float32     # s_x, the activation scale (float32)
    x_zero_point: int       # z_x
    xq: np.ndarray          # (M, D_in) int64 uint8 codes of the input
    raw: np.ndarray         # (M, D_out) int64 carrier of the int32 corrected accumulators


def _f32(x, what, name):
    """Finite values rounded to float32 (as a torch float32 tensor holds them)."""
    return finite_values(x, F32, what, name, "; dynamic quantization needs finite values")


def quantize_weight_dynamic(weight, per_channel=False, name="DynamicQuantizedLinear"):
    """int8 weights of torch's default dynamic qconfigs (symmetric, zero point 0).

    Parameters
    ----------
    weight : (D_out, D_in) float values, rounded to float32
    per_channel : bool, ``per_channel_dynamic_qconfig`` (one scale per output row)
    name : str, for error messages

    Returns
    -------
    wq : (D_out, D_in) int64 codes in [-128, 127]
    scale : (1,) or (D_out,) float32
    zero_point : (1,) or (D_out,) int64 zeros

    Notes
    -----
    ``MinMaxObserver`` / ``PerChannelMinMaxObserver`` (qint8, symmetric) then
    ``_quantize_weight`` (``torch/ao/nn/quantized/modules/utils.py``): see the module
    docstring.

    Examples
    --------
    >>> wq, s, z = quantize_weight_dynamic([[1.0, -0.5], [0.25, 0.0]])
    >>> wq.tolist(), s.tolist(), z.tolist()
    ([[127, -64], [32, 0]], [0.007843137718737125], [0])
    """
    w = _f32(weight, "weight", name)
    if w.ndim != 2:
        raise ValueError(f"{name}: weight must be (D_out, D_in), got shape {w.shape}")
    w32 = w.astype(np.float32)                                 # exact: float32 values
    if per_channel:
        spec = qparams_spec("qint8", "per_channel_symmetric")
        mn = w32.min(axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
        mx = w32.max(axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
        scale, zp = calculate_qparams(mn, mx, spec)
        conv = "torch-2.13-quantize_per_channel"
        wq = quantize_affine(w, scale[:, None], zp[:, None], -128, 127, conv)
    else:
        spec = qparams_spec("qint8", "per_tensor_symmetric")
        mn = w32.min() if w.size else np.float32(0)
        mx = w32.max() if w.size else np.float32(0)
        scale, zp = calculate_qparams(mn, mx, spec)
        wq = quantize_affine(w, scale[0], int(zp[0]), -128, 127,
                             "torch-2.13-quantize_per_tensor")
    return wq, scale.astype(np.float32), zp.astype(np.int64)


def _wrap32(v):
    """int32 two's-complement wrap (fbgemm's int32 arithmetic) of int64 values."""
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


class PackedWeight(NamedTuple):
    """Weight-side data a :class:`DynamicQuantizedLinear` computes once (fbgemm's prepack):
    the checked codes transposed as exact float32 and float64 matrices (K, N) for the
    integer GEMM through BLAS, and fbgemm's column offsets."""

    wt32: np.ndarray        # (K, N) float32 codes
    wt64: np.ndarray        # (K, N) float64 codes
    col_sum: np.ndarray     # (N,) int64, sum_k wq[n, k]


def pack_weight(wq) -> PackedWeight:
    """:class:`PackedWeight` of int8 codes `wq` (N, K) (checked by the caller)."""
    wt = np.ascontiguousarray(np.asarray(wq).T)
    return PackedWeight(wt.astype(np.float32), wt.astype(np.float64),
                        np.asarray(wq, np.int64).sum(axis=1))


def _gemm_u7s8(xq, packed):
    """Exact ``xq @ wq^T`` for activation codes in [0, 127] (reduce_range) and int8
    weights: every product pair is at most 2 * 127 * 128 = 32512 in magnitude, so AVX2's
    int16 pair saturation cannot trigger, and every partial sum is an integer of magnitude
    at most K * 127 * 128; BLAS sums those exactly in float32 below 2**24, in float64 below
    2**53 (any order: integer sums below the precision limit are exact)."""
    K = xq.shape[1]
    if K * 127 * 128 < 2**24:
        return (xq.astype(np.float32) @ packed.wt32).astype(np.int64)
    return (xq.astype(np.float64) @ packed.wt64).astype(np.int64)


def dynamic_linear_forward(x, wq, w_scale, w_zero_point, bias=None, relu=False,
                           int16_pairs=True, name="DynamicQuantizedLinear", packed=None):
    """y = x W^T + b with per-call quantized activations (fbgemm dynamic int8 Linear).

    Parameters
    ----------
    x : (..., D_in) float values (rounded to float32), at least 2-D as torch requires
    wq : (D_out, D_in) int8 weight codes
    w_scale : (1,) or (D_out,) float32 weight scales; w_zero_point : same shape, integers
    bias : (D_out,) float values (rounded to float32) or None
    relu : bool, ``LinearReLU`` (``quantized::linear_relu_dynamic``)
    int16_pairs : bool, AVX2 pair saturation (True: this machine; False: AVX512-VNNI)
    name : str, for error messages
    packed : PackedWeight of `wq` (:func:`pack_weight`), optional: the weight-side work done
        once (the module passes it); `wq` is then trusted to be checked

    Returns
    -------
    y : (..., D_out) float64 array of float32 values
    cache : DynamicLinearCache

    Notes
    -----
    Steps 1-4 of the module docstring (torch 2.13 ``qlinear_dynamic.cpp``
    ``PackedLinearWeight::apply_dynamic_impl``; fbgemm ``QuantUtilsAvx2.cc``).

    Examples
    --------
    >>> import numpy as np
    >>> wq, s, z = quantize_weight_dynamic(np.eye(2))
    >>> y, c = dynamic_linear_forward(np.array([[0.5, -1.0]]), wq, s, z, bias=[0.0, 1.0])
    >>> y.tolist(), float(c.x_scale), c.x_zero_point
    ([[0.4941176772117615, -5.171750672161579e-08]], 0.011811023578047752, 85)
    """
    wq = np.asarray(wq)
    if wq.ndim != 2 or wq.dtype.kind not in "iu" or (packed is None and wq.size and (
            wq.min() < -128 or wq.max() > 127)):
        raise ValueError(f"{name}: weight codes must be a 2-D integer array in [-128, 127], "
                         f"got shape {wq.shape}, dtype {wq.dtype}")
    N, K = wq.shape
    ws = np.asarray(w_scale, np.float32).reshape(-1)
    wz = np.asarray(w_zero_point, np.int64).reshape(-1)
    if ws.shape != wz.shape or ws.shape[0] not in (1, N):
        raise ValueError(f"{name}: w_scale {ws.shape} and w_zero_point {wz.shape} must both "
                         f"be (1,) or ({N},)")
    xv = _f32(x, "x", name)
    if xv.ndim < 2:
        raise ValueError(f"{name}: the dimension of input tensor should be larger than or "
                         f"equal to 2 (torch's check), got shape {xv.shape}")
    if xv.shape[-1] != K:
        raise ValueError(f"{name}: input has {xv.shape[-1]} features, the weight expects {K}")
    x2 = xv.reshape(-1, K)                                            # (M, K)
    # 1. activation qparams from the whole tensor (ATen ChooseQuantizationParams)
    mn, mx = (float(x2.min()), float(x2.max())) if x2.size else (0.0, 0.0)
    s_x, z_x = choose_qparams_fbgemm(mn, mx, 0, 255, reduce_range=True, source="aten")
    # 2. legacy fbgemm quantization: rne(fma(x, 1/s, z)), clamped to uint8
    xq = quantize_affine(x2, float(s_x), z_x, 0, 255, "torch-2.13-quantize_per_tensor")
    # 3. u8 x s8 GEMM on the codes (int32, optional AVX2 pair saturation), then the
    #    zero-point corrections with fbgemm's row / column offsets
    if packed is not None and (xq.size == 0 or int(xq.max()) <= 127):
        acc = _gemm_u7s8(xq, packed)                                  # (M, N), exact
        col_sum = packed.col_sum
    else:
        model = "u8s8-int32-avx2" if int16_pairs else "u8s8-int32-wrap"
        acc = matmul(xq, wq.astype(np.int64).T, model)                # (M, N)
        col_sum = wq.astype(np.int64).sum(axis=1)
    row_off = xq.sum(axis=1, keepdims=True)                           # (M, 1)
    col_off = col_sum - wz * K                                        # (N,)
    raw = _wrap32(acc - z_x * col_off[None, :] - row_off * wz[None, :])
    # 4. float output: fma(f32(raw), f32(s_x * s_w), bias) (contracted AVX2 code)
    rf = cast(raw.astype(np.float64), F32)                            # cvtepi32_ps, RNE
    mult = mul(float(s_x), ws.astype(np.float64), F32)                # (1,) or (N,)
    if bias is None:
        y = mul(rf, mult[None, :], F32)
    else:
        b = _f32(bias, "bias", name)
        if b.shape != (N,):
            raise ValueError(f"{name}: bias has shape {b.shape}, expected ({N},)")
        y = fma(rf, mult[None, :], b[None, :], F32)
    y = np.asarray(y, np.float64).reshape(xv.shape[:-1] + (N,))
    if relu:
        y = np.where(0.0 > y, 0.0, y)     # _mm256_max_ps(0, y) = 0 > y ? 0 : y (-0 kept)
    return y, DynamicLinearCache(np.float32(s_x), int(z_x), xq, raw)


class DynamicQuantizedLinear(Module):
    """torch.ao.nn.quantized.dynamic.Linear (or ``LinearReLU`` with ``relu=True``), qint8.

    Parameters
    ----------
    weight : (D_out, D_in) float weight (rounded to float32), quantized at construction
    bias : (D_out,) or None, kept in float32
    per_channel : bool, ``per_channel_dynamic_qconfig`` instead of ``default_dynamic_qconfig``
    relu : bool, fused ReLU (``torch.ao.nn.intrinsic.quantized.dynamic.LinearReLU``)
    int16_pairs : bool, the AVX2 GEMM's pair saturation (module docstring)

    Attributes: ``wq``, ``w_scale``, ``w_zero_point``, ``bias``.  Like torch's module it
    has no parameters (``named_parameters()`` is empty) and no backward.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> q = DynamicQuantizedLinear.from_float(nn.Linear(3, 2, rng=np.random.default_rng(0)))
    >>> y, cache = q.forward(np.ones((4, 3)))
    >>> y.shape, cache.xq.shape
    ((4, 2), (4, 3))
    """

    def __init__(self, weight, bias=None, per_channel=False, relu=False, int16_pairs=True):
        super().__init__()
        self.wq, self.w_scale, self.w_zero_point = quantize_weight_dynamic(
            weight, per_channel, name=self.name)
        self.bias = None if bias is None else _f32(bias, "bias", self.name)
        if self.bias is not None and self.bias.shape != (self.wq.shape[0],):
            raise ValueError(f"{self.name}: bias has shape {self.bias.shape}, expected "
                             f"({self.wq.shape[0]},)")
        self.per_channel, self.relu, self.int16_pairs = bool(per_channel), bool(relu), \
            bool(int16_pairs)
        self.packed = pack_weight(self.wq)

    @classmethod
    def from_float(cls, mod, per_channel=False, int16_pairs=True):
        """From a refcomp.nn ``Linear`` or a fused ``LinearReLU`` (torch ``from_float``)."""
        relu = isinstance(mod, LinearReLU)
        lin = mod.layers[0] if relu else mod
        if type(lin) is not Linear:
            raise TypeError(f"DynamicQuantizedLinear.from_float needs a refcomp.nn Linear "
                            f"or LinearReLU, got {type(mod).__name__}")
        return cls(lin.params["weight"], lin.params.get("bias"), per_channel, relu,
                   int16_pairs)

    def forward(self, x, policy=None, rng=None, train=False):
        """``(y, cache)``: :func:`dynamic_linear_forward`.  `policy`, `rng` and `train` are
        accepted for :class:`refcomp.nn.Sequential` and ignored: the numerics are fbgemm's
        (float32 input and output)."""
        return dynamic_linear_forward(x, self.wq, self.w_scale, self.w_zero_point, self.bias,
                                      self.relu, self.int16_pairs, self.name, self.packed)

    def backward(self, dy, cache, rng=None, need_dx=True):
        raise NotImplementedError(f"{self.name}: dynamic quantized Linear has no backward "
                                  "(torch's quantized::linear_dynamic is not differentiable)")


def _swap(mod, per_channel, linear_relu, int16_pairs):
    if type(mod) is Linear or (linear_relu and isinstance(mod, LinearReLU)):
        return DynamicQuantizedLinear.from_float(mod, per_channel, int16_pairs)
    if isinstance(mod, LinearReLU):
        return mod                    # torch leaves fused modules it does not map as they are
    if isinstance(mod, Sequential):
        for i, m in enumerate(mod.layers):
            new = _swap(m, per_channel, linear_relu, int16_pairs)
            if new is not m:
                new.name = f"{type(new).__name__} (layer {i})"
                mod.layers[i] = new
    elif isinstance(mod, Residual):
        mod.block = _swap(mod.block, per_channel, linear_relu, int16_pairs)
        if mod.shortcut is not None:
            mod.shortcut = _swap(mod.shortcut, per_channel, linear_relu, int16_pairs)
    return mod


def quantize_dynamic(model, per_channel=False, linear_relu=False, int16_pairs=True,
                     inplace=False):
    """Replace every refcomp.nn ``Linear`` of a model by a :class:`DynamicQuantizedLinear`.

    Parameters
    ----------
    model : refcomp.nn Module (Sequential / Residual trees are searched; a bare Linear is
        replaced itself)
    per_channel : bool
        ``{nn.Linear: per_channel_dynamic_qconfig}`` instead of the default qconfig.
    linear_relu : bool
        Also map fused :class:`refcomp.quant.fuse.LinearReLU` containers (torch:
        ``qconfig_spec={nn.Linear, nni.LinearReLU}``).  By default they stay float, as
        torch's default ``qconfig_spec`` leaves ``LinearReLU`` (and the Linear inside it).
    int16_pairs : bool, AVX2 pair saturation of the GEMM (module docstring)
    inplace : bool, modify `model` (default: a deep copy)

    Returns
    -------
    the quantized model

    Notes
    -----
    torch 2.13 ``torch/ao/quantization/quantize.py::quantize_dynamic`` with ``dtype=qint8``
    (x86 / fbgemm engine).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> r = np.random.default_rng(0)
    >>> m = quantize_dynamic(nn.Sequential(nn.Linear(4, 8, rng=r), nn.ReLU(),
    ...                                    nn.Linear(8, 2, rng=r)))
    >>> [type(c).__name__ for c in m.layers]
    ['DynamicQuantizedLinear', 'ReLU', 'DynamicQuantizedLinear']
    """
    if not isinstance(model, Module):
        raise TypeError(f"quantize_dynamic: model must be a refcomp.nn Module, got "
                        f"{type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    return _swap(model, bool(per_channel), bool(linear_relu), bool(int16_pairs))
