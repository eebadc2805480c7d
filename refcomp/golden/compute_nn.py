"""Golden ops of the NN engine: layer forward + backward pairs and optimizer steps.

``nn.<layer>``
    ``refcomp.nn.<layer>_forward`` on the case's inputs, then ``<layer>_backward`` on
    ``dy`` and the forward's cache (rng None, except dropout).  params: ``policy`` (every
    field of the :class:`~refcomp.nn.Policy`, see :func:`policy_params`) and the layer's
    keyword arguments under their refcomp names (``stride``, ``momentum``, ``dim``, ...;
    a null value is passed as None, e.g. batchnorm's cumulative-average momentum);
    dropout: ``seed``, the mask being ``default_rng(seed).random(x.shape) >= p``.
    Inputs: the forward's tensors (``x``, ``w``, ``b``, ``running_mean``, ``target``,
    ``weight``, ``a``; optional ones may be absent: None) and ``dy``.  Outputs: ``y`` in
    the activations format, the gradients ``dx`` (``da``, ``db`` for add), ``dw``, ``db``
    in the gradients format and, for batchnorm in training with running statistics, the
    updated ``running_mean``, ``running_var`` in the master format.
``optim.sgd``, ``optim.adam``, ``optim.adamw``
    S consecutive steps of ``refcomp.nn.optim.sgd_step`` / ``adam_step`` /
    ``adamw_step``.  params: the hyper-parameters under their refcomp names, ``fmt``,
    ``state_fmt``, ``update``, ``cpu`` (the fields of ``TorchCPU``; absent: None) and,
    for stochastic updates, ``seed``: one ``default_rng(seed)`` serves the S steps in
    order.  Inputs: ``param`` (shape P), ``grad`` (S, *P) and the initial state
    (``momentum_buffer``, ``step`` (float32, shape ()), ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq``, ``compensation``; optional ones absent: None).  Outputs: the
    parameter and every non-None state field after each step, stacked along a leading
    axis of length S (``param`` in ``fmt``, moments in ``state_fmt``, ``compensation``
    in ``fmt``, ``step`` float32).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import nn
from ..formats import catalog
from ..nn import optim
from ..nn.policy import Policy, TensorSpec
from ..ops.accum_model import AccumulationModel
from .compute_gemm import model_params
from .schema import GoldenError, Operand

__all__ = ["OPS", "INPUTS", "OPTIONAL", "policy_params", "policy_from_params"]


# ------------------------------------------------------------------ policies as JSON
def _spec_params(s: TensorSpec | None):
    if s is None:
        return None
    return {"format": s.format.name, "rounding": s.rounding.value,
            "overflow": None if s.overflow is None else s.overflow.value}


def policy_params(p: Policy) -> dict:
    """Every field of a Policy as JSON: specs as ``{format, rounding, overflow}``,
    accumulation models as :func:`~refcomp.golden.compute_gemm.model_params`.

    Examples
    --------
    >>> from refcomp.nn import POLICIES
    >>> d = policy_params(POLICIES["fp32-sequential"])
    >>> d["activations"], d["forward"]["order"]
    ({'format': 'float32', 'rounding': 'nearest_even', 'overflow': None}, 'sequential')
    >>> policy_from_params(d) == POLICIES["fp32-sequential"]
    True
    """
    out = {}
    for f in dataclasses.fields(p):
        v = getattr(p, f.name)
        if isinstance(v, TensorSpec) or (v is None and f.name == "master"):
            v = _spec_params(v)
        elif isinstance(v, AccumulationModel):
            v = model_params(v)
        elif hasattr(v, "value"):
            v = v.value
        elif hasattr(v, "storage_dtype"):
            v = v.name
        out[f.name] = v
    return out


def policy_from_params(d: dict) -> Policy:
    """The Policy that :func:`policy_params` recorded."""
    def spec(s):
        return None if s is None else TensorSpec(s["format"], s["rounding"], s["overflow"])
    kw = dict(d)
    for f in ("weights", "activations", "gradients", "master"):
        kw[f] = spec(kw[f])
    for f in ("forward", "grad_input", "grad_weight"):
        kw[f] = AccumulationModel(**kw[f])
    return Policy(**kw)


# ------------------------------------------------------------------ helpers
def _enc(values, fmt) -> Operand:
    """Bit patterns of values that `fmt` holds exactly (a GoldenError otherwise: the
    engine promised a value of that format)."""
    fmt = catalog.get(fmt) if isinstance(fmt, str) else fmt
    try:
        bits = fmt.encode(np.asarray(values, np.float64))
    except ValueError as e:
        raise GoldenError(f"an output is not a {fmt.name} value: {e}") from e
    return Operand(fmt.name, np.asarray(bits, fmt.storage_dtype))


def _result(p: Policy, y, **grads) -> dict:
    out = {"y": _enc(y, p.activations.format)}
    out.update({k: _enc(g, p.gradients.format) for k, g in grads.items() if g is not None})
    return out


def _kw(prm, names):
    """The layer's keyword arguments present in params (lists as tuples)."""
    return {k: tuple(prm[k]) if isinstance(prm[k], list) else prm[k]
            for k in names if k in prm}


def _pol(prm) -> Policy:
    return policy_from_params(prm["policy"])


# ------------------------------------------------------------------ layers
def _linear(v, prm):
    """refcomp.nn.linear_forward / linear_backward"""
    p = _pol(prm)
    y, c = nn.linear_forward(v["x"], v["w"], v.get("b"), p)
    dx, (dw, db) = nn.linear_backward(v["dy"], c)
    return _result(p, y, dx=dx, dw=dw, db=db)


def _conv2d(v, prm):
    """refcomp.nn.conv2d_forward / conv2d_backward"""
    p = _pol(prm)
    y, c = nn.conv2d_forward(v["x"], v["w"], v.get("b"), p,
                             **_kw(prm, ("stride", "padding", "dilation", "groups")))
    dx, (dw, db) = nn.conv2d_backward(v["dy"], c)
    return _result(p, y, dx=dx, dw=dw, db=db)


def _batchnorm(v, prm):
    """refcomp.nn.batchnorm_forward / batchnorm_backward"""
    p = _pol(prm)
    y, c, (rm, rv) = nn.batchnorm_forward(
        v["x"], v.get("w"), v.get("b"), v.get("running_mean"), v.get("running_var"), p,
        **_kw(prm, ("train", "momentum", "eps", "num_batches_tracked")))
    dx, (dw, db) = nn.batchnorm_backward(v["dy"], c)
    out = _result(p, y, dx=dx, dw=dw, db=db)
    if prm.get("train", True) and "running_mean" in v:
        m = p.master_spec.format
        out.update(running_mean=_enc(rm, m), running_var=_enc(rv, m))
    return out


def _layernorm(v, prm):
    """refcomp.nn.layernorm_forward / layernorm_backward"""
    p = _pol(prm)
    y, c = nn.layernorm_forward(v["x"], tuple(prm["normalized_shape"]), v.get("w"),
                                v.get("b"), p, **_kw(prm, ("eps",)))
    dx, (dw, db) = nn.layernorm_backward(v["dy"], c)
    return _result(p, y, dx=dx, dw=dw, db=db)


def _unary(fwd, bwd, kwargs=()):
    """An activation or pooling layer: y = f(x), dx."""
    def run(v, prm):
        p = _pol(prm)
        rng = np.random.default_rng(prm["seed"]) if prm.get("seed") is not None else None
        y, c = fwd(v["x"], p, rng=rng, **_kw(prm, kwargs))
        dx, _ = bwd(v["dy"], c)
        return _result(p, y, dx=dx)
    run.__doc__ = f"refcomp.nn.{fwd.__name__} / {bwd.__name__}"
    return run


def _add(v, prm):
    """refcomp.nn.add_forward / add_backward"""
    p = _pol(prm)
    y, c = nn.add_forward(v["a"], v["b"], p)
    (da, db), _ = nn.add_backward(v["dy"], c)
    return _result(p, y, da=da, db=db)


def _loss(fwd, bwd, kwargs, int_target=False):
    """A loss: y = L(x, target) (a scalar, or per-row for reduction 'none'), dx."""
    def run(v, prm):
        p = _pol(prm)
        t = v["target"].astype(np.int64) if int_target else v["target"]
        kw = _kw(prm, kwargs)
        if "weight" in v:
            kw["weight"] = v["weight"]
        y, c = fwd(v["x"], t, p, **kw)
        dx, _ = bwd(v["dy"], c)
        return _result(p, y, dx=dx)
    run.__doc__ = f"refcomp.nn.{fwd.__name__} / {bwd.__name__}"
    return run


# ------------------------------------------------------------------ optimizers
_SGD_HYPER = ("lr", "momentum", "dampening", "nesterov", "weight_decay", "maximize")
_ADAM_HYPER = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")
_STATE = {"sgd": ("momentum_buffer", "compensation"),
          "adam": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "compensation")}


def _optim(kind):
    step_fn = {"sgd": optim.sgd_step, "adam": optim.adam_step,
               "adamw": optim.adamw_step}[kind]
    hyper = _SGD_HYPER if kind == "sgd" else _ADAM_HYPER
    family = "sgd" if kind == "sgd" else "adam"

    def run(v, prm):
        fmt = catalog.get(prm["fmt"])
        sfmt = catalog.get(prm["state_fmt"]) if prm.get("state_fmt") else fmt
        rng = np.random.default_rng(prm["seed"]) if prm.get("seed") is not None else None
        cpu = optim.TorchCPU(**prm["cpu"]) if prm.get("cpu") else None
        kw = dict(_kw(prm, hyper), fmt=fmt.name, state_fmt=sfmt.name,
                  update=prm.get("update", "nearest"), rng=rng, cpu=cpu)
        p, grads = v["param"], v["grad"]
        if grads.ndim < 1 or grads.shape[1:] != p.shape:
            raise GoldenError(f"grad must be (steps, *param.shape), got {grads.shape} for "
                              f"param {p.shape}")
        if family == "sgd":
            state = optim.SGDState(v.get("momentum_buffer"), v.get("compensation"))
        else:
            state = optim.AdamState(float(v["step"]), v["exp_avg"], v["exp_avg_sq"],
                                    v.get("max_exp_avg_sq"), v.get("compensation"))
        traj = []
        for g in grads:
            p, state = step_fn(p, g, state, **kw)
            traj.append((p, state))
        out = {"param": _enc(np.stack([t[0] for t in traj]), fmt)}
        for name in _STATE[family]:
            vals = [getattr(s, name) for _, s in traj]
            if vals[-1] is not None:
                out[name] = _enc(np.stack(vals), fmt if name == "compensation" else sfmt)
        if family == "adam":
            out["step"] = _enc(np.array([s.step for _, s in traj]), "float32")
        return out
    run.__doc__ = f"refcomp.nn.optim.{step_fn.__name__}, S steps"
    return run


# ------------------------------------------------------------------ tables
OPS = {
    "nn.linear": _linear,
    "nn.conv2d": _conv2d,
    "nn.batchnorm": _batchnorm,
    "nn.layernorm": _layernorm,
    "nn.relu": _unary(nn.relu_forward, nn.relu_backward),
    "nn.leaky_relu": _unary(nn.leaky_relu_forward, nn.leaky_relu_backward,
                            ("negative_slope",)),
    "nn.gelu": _unary(nn.gelu_forward, nn.gelu_backward, ("approximate",)),
    "nn.sigmoid": _unary(nn.sigmoid_forward, nn.sigmoid_backward),
    "nn.tanh": _unary(nn.tanh_forward, nn.tanh_backward),
    "nn.softmax": _unary(nn.softmax_forward, nn.softmax_backward, ("dim",)),
    "nn.log_softmax": _unary(nn.log_softmax_forward, nn.log_softmax_backward, ("dim",)),
    "nn.max_pool2d": _unary(nn.max_pool2d_forward, nn.max_pool2d_backward,
                            ("kernel_size", "stride", "padding", "dilation")),
    "nn.avg_pool2d": _unary(nn.avg_pool2d_forward, nn.avg_pool2d_backward,
                            ("kernel_size", "stride", "padding", "count_include_pad",
                             "divisor_override")),
    "nn.adaptive_avg_pool2d": _unary(nn.adaptive_avg_pool2d_forward,
                                     nn.adaptive_avg_pool2d_backward, ("output_size",)),
    "nn.dropout": _unary(nn.dropout_forward, nn.dropout_backward, ("p", "train")),
    "nn.add": _add,
    "nn.cross_entropy": _loss(nn.cross_entropy_forward, nn.cross_entropy_backward,
                              ("ignore_index", "label_smoothing", "reduction"), True),
    "nn.mse": _loss(nn.mse_forward, nn.mse_backward, ("reduction",)),
    "nn.kl_div": _loss(nn.kl_div_forward, nn.kl_div_backward,
                       ("reduction", "log_target")),
    "optim.sgd": _optim("sgd"),
    "optim.adam": _optim("adam"),
    "optim.adamw": _optim("adamw"),
}

#: required inputs of each op
INPUTS = {op: ("x", "dy") for op in OPS if op.startswith("nn.")}
INPUTS.update({"nn.linear": ("x", "w", "dy"), "nn.conv2d": ("x", "w", "dy"),
               "nn.add": ("a", "b", "dy"), "nn.cross_entropy": ("x", "target", "dy"),
               "nn.mse": ("x", "target", "dy"), "nn.kl_div": ("x", "target", "dy"),
               "optim.sgd": ("param", "grad"),
               "optim.adam": ("param", "grad", "step", "exp_avg", "exp_avg_sq"),
               "optim.adamw": ("param", "grad", "step", "exp_avg", "exp_avg_sq")})

#: inputs each op may take besides (absent: None)
OPTIONAL = {"nn.linear": ("b",), "nn.conv2d": ("b",),
            "nn.batchnorm": ("w", "b", "running_mean", "running_var"),
            "nn.layernorm": ("w", "b"), "nn.cross_entropy": ("weight",),
            "optim.sgd": ("momentum_buffer", "compensation"),
            "optim.adam": ("max_exp_avg_sq", "compensation"),
            "optim.adamw": ("max_exp_avg_sq", "compensation")}
