"""Golden ops of the torch.ao.quantization references (issue 7, suite ``qtorch``).

Each op runs one :mod:`refcomp.quant` reference on a case's decoded inputs (exact float64
values of float32 operands, int64 integers) and JSON params, and returns output Operands;
:mod:`refcomp.golden.compute` merges :data:`OPS`, :data:`INPUTS` and :data:`OPTIONAL`.

``qt.observer``
    One observer of :mod:`refcomp.quant.observers` / :mod:`~refcomp.quant.histogram` fed
    the batches ``x[0], x[1], ...`` (``lengths[b]``, when given, keeps the first
    ``lengths[b]`` elements of the flattened batch ``b``: 0 is an empty batch).  Outputs,
    after each batch: ``min_val``, ``max_val``, ``scale`` (float32) and ``zero_point`` (int64,
    float32 for float qparams), shape ``(B,)`` per tensor or ``(B, C)`` per channel;
    HistogramObserver adds the final ``histogram``.
``qt.quantize``
    ``torch.quantize_per_tensor`` (``axis`` null) / ``quantize_per_channel`` codes
    (:func:`refcomp.ops.quantize_affine`, conventions ``torch-2.13-quantize_per_tensor`` /
    ``_per_channel``), ``dtype`` quint8, qint8 or qint32.
``qt.fake_quantize``
    :func:`refcomp.quant.fake_quant.fake_quantize_per_tensor_forward` (``axis`` null) or
    ``_per_channel_forward`` and the backward: ``y``, ``mask``, ``dx``.
``qt.lsq``
    :mod:`refcomp.quant.lsq` forward and backward: ``y``, ``dx``, ``dscale``,
    ``dzero_point``.
``qt.fused_obs_fq``
    :class:`refcomp.quant.fq_modules.FusedMovingAvgObsFakeQuantize` over the steps
    ``x[0], x[1], ...`` (observer / fake quant disabled from step ``observer_off`` /
    ``fake_quant_off`` on): per step ``y``, ``dx``, ``running_min``, ``running_max``,
    ``scale``, ``zero_point``.
``qt.dynamic_linear``
    :func:`refcomp.quant.dynamic.quantize_weight_dynamic` then ``dynamic_linear_forward``:
    ``y``, the weight codes ``wq`` and ``w_scale``.
``qt.linear``, ``qt.conv2d``
    :func:`refcomp.quant.static.quantized_linear` / ``quantized_conv2d``: output codes ``y``;
    ``int16_pairs`` selects the AVX2 (no VNNI) pair-saturating kernel model.
``qt.fuse_conv_bn``, ``qt.fuse_linear_bn``
    :func:`refcomp.quant.fuse.fuse_conv_bn_weights` / ``fuse_linear_bn_weights``: ``w``, ``b``.

>>> import numpy as np
>>> from refcomp.golden.suites import into
>>> out = OPS["qt.quantize"]({"x": np.array([0.25, -1.0]), "scale": np.array(0.1),
...                           "zero_point": np.array(3)}, {"dtype": "quint8", "axis": None})
>>> out["y"].values().tolist()
[6, 0]
"""

from __future__ import annotations

import warnings

import numpy as np

from ..formats import catalog
from ..ops.affine import quantize_affine
from ..quant import dynamic as qdyn
from ..quant import fake_quant as fq
from ..quant import fuse as qfuse
from ..quant import lsq as qlsq
from ..quant import observers as qobs
from ..quant import static as qstatic
from ..quant.fq_modules import FusedMovingAvgObsFakeQuantize
from ..quant.histogram import HistogramObserver
from .compute_quant import int_operand
from .schema import GoldenError, Operand

__all__ = ["OPS", "INPUTS", "OPTIONAL", "OBSERVERS", "QDTYPES", "sum_terms", "width"]

F32 = np.float32
#: torch's quantized dtypes and their code ranges
QDTYPES = {"quint8": (0, 255), "qint8": (-128, 127), "qint32": (-(1 << 31), (1 << 31) - 1)}
OBSERVERS = {"MinMaxObserver": qobs.MinMaxObserver,
             "MovingAverageMinMaxObserver": qobs.MovingAverageMinMaxObserver,
             "PerChannelMinMaxObserver": qobs.PerChannelMinMaxObserver,
             "MovingAveragePerChannelMinMaxObserver": qobs.MovingAveragePerChannelMinMaxObserver,
             "HistogramObserver": HistogramObserver}


def width(capability: str) -> int:
    """``Vectorized<float>::size()`` of an ATen CPU capability (16 on AVX-512, else 8)."""
    return 16 if str(capability).lower().startswith("avx512") else 8


def _fma(params) -> bool:
    return str(params.get("capability", "avx2")).lower() != "default"


def _f32op(values) -> Operand:
    return Operand("float32", catalog.get("float32").encode(np.asarray(values, np.float64)))


def _f32(v):
    return np.asarray(v, np.float64).astype(F32)          # exact: the values are float32


def _ints(v, kind):
    return int_operand(np.asarray(v).astype(np.int64), kind)


def _quiet(fn):
    """Run fn with refcomp's torch-compatible UserWarnings (uncalibrated, inf) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


# ---------------------------------------------------------------- observers
def _observer(params):
    name = params["observer"]
    if name not in OBSERVERS:
        raise GoldenError(f"unknown observer {name!r} (known: {', '.join(OBSERVERS)})")
    kw = {k: params[k] for k in ("dtype", "qscheme", "reduce_range", "quant_min", "quant_max",
                                 "eps", "averaging_constant", "ch_axis", "bins", "capability")
          if params.get(k) is not None}
    return OBSERVERS[name](**kw)


def batches(vals, params):
    """The observer's batches: ``x[b]`` (float32), cut to ``lengths[b]`` when given."""
    x = _f32(vals["x"])
    lengths = vals.get("lengths")
    if lengths is None:
        return [x[b] for b in range(x.shape[0])]
    if len(lengths) != x.shape[0]:
        raise GoldenError(f"lengths has {len(lengths)} entries for {x.shape[0]} batches")
    return [x[b].reshape(-1)[:int(n)] for b, n in enumerate(lengths)]


def _qt_observer(vals, params):
    """refcomp.quant observer .forward(x[b]) then .calculate_qparams(), b = 0, 1, ..."""
    obs = _observer(params)
    out = {k: [] for k in ("min_val", "max_val", "scale", "zero_point")}
    for xb in batches(vals, params):
        _quiet(lambda: obs.forward(xb))
        s, z = _quiet(obs.calculate_qparams)
        per_tensor = np.ndim(obs.min_val) == 0
        out["min_val"].append(np.asarray(obs.min_val, F32))
        out["max_val"].append(np.asarray(obs.max_val, F32))
        out["scale"].append(np.asarray(s, F32).reshape(()) if per_tensor else np.asarray(s, F32))
        out["zero_point"].append(np.asarray(z).reshape(()) if per_tensor else np.asarray(z))
    zf = np.stack(out["zero_point"])
    res = {k: _f32op(np.stack(out[k]).astype(np.float64)) for k in ("min_val", "max_val",
                                                                      "scale")}
    res["zero_point"] = _f32op(zf.astype(np.float64)) if zf.dtype.kind == "f" \
        else _ints(zf, "int64")
    if isinstance(obs, HistogramObserver):
        res["histogram"] = _f32op(obs.histogram.astype(np.float64))
    return res


# ---------------------------------------------------------------- quantize / fake quant
def _qt_quantize(vals, params):
    """refcomp.ops.quantize_affine with torch's quantize_per_tensor / _per_channel rule"""
    qmin, qmax = QDTYPES[params["dtype"]]
    axis = params.get("axis")
    x, s, z = vals["x"], vals["scale"], vals["zero_point"]
    if axis is None:
        q = quantize_affine(x, float(s), int(z), qmin, qmax, "torch-2.13-quantize_per_tensor")
    else:
        shape = [1] * x.ndim
        shape[axis] = -1
        q = quantize_affine(x, s.reshape(shape), z.reshape(shape), qmin, qmax,
                            "torch-2.13-quantize_per_channel")
    return {"y": _ints(q, "int32")}


def _qt_fake_quantize(vals, params):
    """refcomp.quant.fake_quant.fake_quantize_per_{tensor,channel}_forward + backward"""
    x, dy = _f32(vals["x"]), _f32(vals["dy"])
    qmin, qmax, axis = params["qmin"], params["qmax"], params.get("axis")
    zp = vals["zero_point"]
    zp = _f32(zp) if params.get("float_zero_point") else np.asarray(zp, np.int64)
    if axis is None:
        y, cache = fq.fake_quantize_per_tensor_forward(x, _f32(vals["scale"]), int(zp),
                                                       qmin, qmax)
    else:
        y, cache = fq.fake_quantize_per_channel_forward(x, _f32(vals["scale"]), zp, axis,
                                                        qmin, qmax, fma=_fma(params))
    dx = fq.fake_quantize_per_tensor_backward(dy, cache)
    return {"y": _f32op(y), "mask": Operand("bool", cache.mask.astype(np.uint8)),
            "dx": _f32op(dx)}


def _lsq_run(vals, params):
    x, dy = _f32(vals["x"]), _f32(vals["dy"])
    s, z = _f32(vals["scale"]).reshape(-1), _f32(vals["zero_point"]).reshape(-1)
    qmin, qmax, axis = params["qmin"], params["qmax"], params.get("axis")
    kw = dict(fma=_fma(params), sum_width=width(params.get("capability", "avx2")))
    gf = params.get("grad_factor", 1.0)
    if axis is None:
        y, cache = qlsq.fake_quantize_learnable_per_tensor_forward(x, s, z, qmin, qmax, gf, **kw)
        return y, cache, qlsq.fake_quantize_learnable_per_tensor_backward(dy, cache)
    y, cache = qlsq.fake_quantize_learnable_per_channel_forward(x, s, z, axis, qmin, qmax, gf,
                                                                **kw)
    return y, cache, qlsq.fake_quantize_learnable_per_channel_backward(dy, cache)


def _qt_lsq(vals, params):
    """refcomp.quant.lsq.fake_quantize_learnable_per_{tensor,channel}_forward + backward"""
    y, _, (dx, ds, dz) = _lsq_run(vals, params)
    return {"y": _f32op(y), "dx": _f32op(dx), "dscale": _f32op(ds), "dzero_point": _f32op(dz)}


def sum_terms(case, output: str) -> np.ndarray:
    """The float32 terms torch sums into `output` of an LSQ case: (C, n) float64 values.

    ``dscale`` / ``dzero_point`` are sums of per-element gradients (the kernel's element
    formulas, bit-exact: see :mod:`refcomp.quant.lsq`); per channel with ``axis != 0``
    torch adds them in an order refcomp does not model, so those outputs carry a
    ``sum_terms`` tolerance (:func:`refcomp.golden.tolerance.interval`).
    """
    if case.op != "qt.lsq" or output not in ("dscale", "dzero_point"):
        raise GoldenError(f"case {case.name}: no summed terms for output {output!r}")
    vals = {k: v.values() for k, v in case.inputs.items()}
    p = case.params
    _, c, _ = _lsq_run(vals, p)
    x, dy = c.x, _f32(vals["dy"])
    if c.axis is None:
        zb = int(np.clip(c.zero_point[0] + F32(0.5), F32(c.qmin), F32(c.qmax)))
        _, ds, dz = qlsq._lsq_grads(x, dy, c.scale[0], F32(zb), zb, c.qmin, c.qmax,
                                    c.grad_factor, c.fma)
        axis = None
    else:
        zr = fq._along(np.clip(np.rint(c.zero_point), c.qmin, c.qmax).astype(F32), c.axis,
                       x.ndim)
        _, ds, dz = qlsq._lsq_grads(x, dy, fq._along(c.scale, c.axis, x.ndim), zr, None,
                                    c.qmin, c.qmax, c.grad_factor, c.fma)
        axis = c.axis
    t = ds if output == "dscale" else dz
    t = np.broadcast_to(t, x.shape)
    if axis is None:
        return t.reshape(1, -1).astype(np.float64)
    return np.moveaxis(t, axis, 0).reshape(x.shape[axis], -1).astype(np.float64)


def _qt_fused_obs_fq(vals, params):
    """refcomp.quant.fq_modules.FusedMovingAvgObsFakeQuantize, S steps"""
    m = FusedMovingAvgObsFakeQuantize(params["quant_min"], params["quant_max"],
                                      averaging_constant=params["averaging_constant"],
                                      per_channel=params["per_channel"],
                                      symmetric=params["symmetric"])
    x, dy = _f32(vals["x"]), _f32(vals["dy"])
    out = {k: [] for k in ("y", "dx", "running_min", "running_max", "scale", "zero_point")}
    for t in range(x.shape[0]):
        if t == params.get("observer_off"):
            m.disable_observer()
        if t == params.get("fake_quant_off"):
            m.disable_fake_quant()
        y, cache = m.forward(x[t])
        out["y"].append(y)
        out["dx"].append(m.backward(dy[t], cache))
        for k in ("running_min", "running_max", "scale", "zero_point"):
            v = np.asarray(getattr(m, k))
            out[k].append(v.reshape(()) if not params["per_channel"] else v.reshape(-1))
    res = {k: _f32op(np.stack(out[k]).astype(np.float64)) for k in out if k != "zero_point"}
    res["zero_point"] = _ints(np.stack(out["zero_point"]), "int32")
    return res


# ---------------------------------------------------------------- integer kernels
def _qt_dynamic_linear(vals, params):
    """refcomp.quant.dynamic.quantize_weight_dynamic + dynamic_linear_forward"""
    pc = bool(params.get("per_channel", False))
    wq, ws, wz = qdyn.quantize_weight_dynamic(vals["w"], per_channel=pc)
    y, _ = qdyn.dynamic_linear_forward(vals["x"], wq, ws, wz, bias=vals.get("b"),
                                       relu=bool(params.get("relu", False)))
    return {"y": _f32op(y), "wq": _ints(wq, "int8"), "w_scale": _f32op(ws.astype(np.float64))}


def _static_args(vals):
    return (vals["xq"], vals["x_scale"], vals["x_zero_point"], vals["wq"], vals["w_scale"],
            vals["w_zero_point"], vals.get("bias"), vals["out_scale"],
            int(vals["out_zero_point"]))


def _qt_linear(vals, params):
    """refcomp.quant.static.quantized_linear"""
    y = qstatic.quantized_linear(*_static_args(vals), relu=bool(params.get("relu", False)),
                                 int16_pairs=bool(params["int16_pairs"]))
    return {"y": _ints(y, "uint8")}


def _qt_conv2d(vals, params):
    """refcomp.quant.static.quantized_conv2d"""
    kw = {k: params[k] for k in ("stride", "padding", "dilation", "groups") if k in params}
    y = qstatic.quantized_conv2d(*_static_args(vals), relu=bool(params.get("relu", False)),
                                 int16_pairs=bool(params["int16_pairs"]), **kw)
    return {"y": _ints(y, "uint8")}


# ---------------------------------------------------------------- fusion
def _qt_fuse_conv_bn(vals, params):
    """refcomp.quant.fuse.fuse_conv_bn_weights"""
    w, b = qfuse.fuse_conv_bn_weights(vals["conv_w"], vals.get("conv_b"), vals["bn_rm"],
                                      vals["bn_rv"], params["eps"], vals.get("bn_w"),
                                      vals.get("bn_b"), transpose=bool(params.get("transpose")))
    return {"w": _f32op(w), "b": _f32op(b)}


def _qt_fuse_linear_bn(vals, params):
    """refcomp.quant.fuse.fuse_linear_bn_weights"""
    w, b = qfuse.fuse_linear_bn_weights(vals["linear_w"], vals.get("linear_b"), vals["bn_rm"],
                                        vals["bn_rv"], params["eps"], vals["bn_w"],
                                        vals["bn_b"])
    return {"w": _f32op(w), "b": _f32op(b)}


OPS = {"qt.observer": _qt_observer, "qt.quantize": _qt_quantize,
       "qt.fake_quantize": _qt_fake_quantize, "qt.lsq": _qt_lsq,
       "qt.fused_obs_fq": _qt_fused_obs_fq, "qt.dynamic_linear": _qt_dynamic_linear,
       "qt.linear": _qt_linear, "qt.conv2d": _qt_conv2d,
       "qt.fuse_conv_bn": _qt_fuse_conv_bn, "qt.fuse_linear_bn": _qt_fuse_linear_bn}

_STATIC = ("xq", "x_scale", "x_zero_point", "wq", "w_scale", "w_zero_point", "out_scale",
           "out_zero_point")
INPUTS = {"qt.observer": ("x",), "qt.quantize": ("x", "scale", "zero_point"),
          "qt.fake_quantize": ("x", "dy", "scale", "zero_point"),
          "qt.lsq": ("x", "dy", "scale", "zero_point"), "qt.fused_obs_fq": ("x", "dy"),
          "qt.dynamic_linear": ("x", "w"), "qt.linear": _STATIC, "qt.conv2d": _STATIC,
          "qt.fuse_conv_bn": ("conv_w", "bn_rm", "bn_rv"),
          "qt.fuse_linear_bn": ("linear_w", "bn_rm", "bn_rv", "bn_w", "bn_b")}
OPTIONAL = {"qt.observer": ("lengths",), "qt.dynamic_linear": ("b",), "qt.linear": ("bias",),
            "qt.conv2d": ("bias",), "qt.fuse_conv_bn": ("conv_b", "bn_w", "bn_b"),
            "qt.fuse_linear_bn": ("linear_b",)}
