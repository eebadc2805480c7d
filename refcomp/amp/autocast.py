"""An autocast-like op policy: which ops run in low precision, which in float32, which
promote -- torch 2.13's CPU and CUDA lists shipped as data -- and its use on the engine.

torch's autocast (``torch.autocast(device, dtype)``) registers a wrapper for a fixed set of
aten operators under the ``AutocastCPU`` / ``AutocastCUDA`` dispatch keys.  Before the
operator runs, the wrapper casts its floating-point tensor arguments according to the
operator's *cast policy* (``at::autocast::CastPolicy``, ``aten/src/ATen/autocast_mode.h``):

``lower_precision_fp``
    every float32 argument is cast to the autocast dtype (bfloat16 / float16); the op runs
    and returns in that dtype (matmuls, convolutions, ``linear``);
``fp32`` (also ``fp32_set_opt_dtype``, ``fp32_append_dtype``)
    arguments are cast to float32 (the latter two pass ``dtype=float32`` to ops that take
    one: ``softmax``, ``sum``, ``norm``); the op runs and returns in float32 (losses,
    transcendental functions, reductions, linear algebra);
``promote``
    arguments are cast to the widest floating type among them (``cat``, ``stack``,
    ``addcmul``);
``banned``
    the op raises under autocast (CUDA ``binary_cross_entropy``);

and an operator on no list runs in the dtype(s) of its inputs with torch's ordinary type
promotion.  The lists differ by device: on CPU, ``softmax``, ``log_softmax`` and
``layer_norm`` are on no list (they run in their input's dtype); on CUDA they are float32
ops.  ``batch_norm`` is on neither device's lists.

The lists live in ``autocast_ops.json`` next to this module, with their sources: the CUDA
lists are the ``AT_FORALL_*`` macros of ``autocast_mode.h`` as shipped in the torch 2.13.0
wheel (git ``cf30153c4c131c8164ee7798e5022d810682e2cb``); the CPU lists are
``TORCH_LIBRARY_IMPL(aten, AutocastCPU, m)`` of ``aten/src/ATen/autocast_mode.cpp`` read at
pytorch/pytorch commit ``008ec6b1840c94ff6d0f685bc10fbf585167c673`` (the release's own copy
of the .cpp was not reachable), less two named-tensor overloads that 2.13 no longer has.
Both were checked against the 2.13.0 dispatcher: each device's lists together are exactly
its registered autocast kernels (127 CPU, 119 CUDA operators; the tests repeat the check
and run the CPU ops under ``torch.autocast("cpu")``).  This module reads JSON only; it
never imports torch.

On the engine, :func:`autocast_policies` gives each layer of a
:class:`~refcomp.nn.Sequential` the :class:`~refcomp.nn.Policy` torch's autocast would run
it under, and :class:`Autocast` wraps the model so that ``nn.train_step`` trains it
with autocast-like mixed precision (see its Notes for where it differs from torch).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from ..nn import modules as M
from ..nn.policy import Policy, TensorSpec, get_policy, round_to

__all__ = ["DEVICES", "CLASSES", "op_lists", "cast_policy", "op_class", "layer_op",
           "autocast_policies", "Autocast", "AutocastCache"]

#: devices whose lists are shipped
DEVICES = ("cpu", "cuda")

#: the classes :func:`op_class` returns
CLASSES = ("lower", "fp32", "promote", "banned", "none")

_CLASS_OF = {"lower_precision_fp": "lower", "fp32": "fp32", "fp32_set_opt_dtype": "fp32",
             "fp32_append_dtype": "fp32", "promote": "promote", "banned": "banned"}

_DTYPES = ("bfloat16", "float16")


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads((Path(__file__).with_name("autocast_ops.json")).read_text())


def _device(device) -> str:
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"unknown autocast device {device!r} (shipped lists: "
                         f"{', '.join(DEVICES)})")
    return device.lower()


def _dtype(dtype, device) -> str:
    if dtype is None:
        return _data()["default_dtype"][device]
    if dtype not in _DTYPES:
        raise ValueError(f"autocast dtype {dtype!r} must be one of {', '.join(_DTYPES)} "
                         "(torch's lower-precision autocast types)")
    return dtype


def op_lists(device="cpu") -> dict:
    """torch 2.13's autocast lists of `device`: a dict from cast-policy name
    (``"lower_precision_fp"``, ``"fp32"``, ``"promote"``; on CUDA also
    ``"fp32_set_opt_dtype"``, ``"fp32_append_dtype"``, ``"banned"``) to a tuple of aten
    operator names (``"conv2d"``, ``"conv2d.padding"``: the overload after a dot).

    Examples
    --------
    >>> "linear" in op_lists("cpu")["lower_precision_fp"]
    True
    >>> sorted(op_lists("cuda"))[:3]
    ['banned', 'fp32', 'fp32_append_dtype']
    """
    return {k: tuple(v) for k, v in _data()["devices"][_device(device)].items()}


@lru_cache(maxsize=None)
def _index(device) -> dict:
    return {op: pol for pol, ops in _data()["devices"][device].items() for op in ops}


def cast_policy(op, device="cpu"):
    """torch's cast policy for aten operator `op` on `device`, or None when the op is on
    no list.

    `op` is an aten name, with or without the ``aten::`` prefix and the overload
    (``"softmax"``, ``"softmax.int"``, ``"aten::pow.Tensor_Scalar"``).  A name with an
    overload is looked up exactly; a bare name means its registered overloads, which must
    share one policy (they do in torch 2.13) -- the default overload when it is listed.

    Examples
    --------
    >>> cast_policy("softmax", "cuda"), cast_policy("softmax", "cpu")
    ('fp32_set_opt_dtype', None)
    >>> cast_policy("aten::conv2d.padding")
    'lower_precision_fp'
    """
    if not isinstance(op, str):
        raise TypeError(f"op must be an aten operator name (str), got {op!r}")
    idx = _index(_device(device))
    name = op[len("aten::"):] if op.startswith("aten::") else op
    if not name:
        raise ValueError(f"empty operator name {op!r}")
    if "." in name:
        return idx.get(name)
    if name in idx:
        return idx[name]
    found = {p for o, p in idx.items() if o.split(".")[0] == name}
    if len(found) > 1:                      # not the case in torch 2.13; guard the data
        raise ValueError(f"{op!r} has overloads of different cast policies on {device}: "
                         f"{sorted(found)}; name the overload")
    return found.pop() if found else None


def op_class(op, device="cpu") -> str:
    """Which precision `op` runs in under torch 2.13's autocast on `device`: ``"lower"``
    (the autocast dtype), ``"fp32"``, ``"promote"`` (the widest input type), ``"banned"``
    (raises), or ``"none"`` (on no list: the input dtype, ordinary type promotion).

    Parameters
    ----------
    op : str
        aten operator name (see :func:`cast_policy`).
    device : {"cpu", "cuda"}

    Raises
    ------
    ValueError
        for a device without shipped lists (naming it).

    Examples
    --------
    >>> [op_class(o) for o in ("linear", "cross_entropy_loss", "cat", "relu")]
    ['lower', 'fp32', 'promote', 'none']
    >>> op_class("layer_norm", "cpu"), op_class("layer_norm", "cuda")
    ('none', 'fp32')
    >>> op_class("linear", "mps")
    Traceback (most recent call last):
    ...
    ValueError: unknown autocast device 'mps' (shipped lists: cpu, cuda)
    """
    p = cast_policy(op, device)
    return "none" if p is None else _CLASS_OF[p]


# ------------------------------------------------------------------------ engine layers
#: the aten operator each engine layer calls in torch (torch.nn module -> functional ->
#: aten); BatchNorm1d / 2d call ``batch_norm``
_LAYER_OPS = {M.Linear: "linear", M.Conv2d: "conv2d", M.ReLU: "relu",
              M.LeakyReLU: "leaky_relu", M.GELU: "gelu", M.Sigmoid: "sigmoid",
              M.Tanh: "tanh", M.Softmax: "softmax.int", M.LogSoftmax: "log_softmax.int",
              M.Dropout: "dropout", M.MaxPool2d: "max_pool2d", M.AvgPool2d: "avg_pool2d",
              M.AdaptiveAvgPool2d: "adaptive_avg_pool2d", M.Flatten: "flatten",
              M.BatchNorm1d: "batch_norm", M.BatchNorm2d: "batch_norm",
              M.LayerNorm: "layer_norm"}


def layer_op(layer) -> str:
    """The aten operator torch runs for an engine layer (``nn.Linear`` -> ``"linear"``).

    >>> import numpy as np
    >>> from refcomp import nn
    >>> layer_op(nn.Softmax())
    'softmax.int'
    """
    try:
        return _LAYER_OPS[type(layer)]
    except KeyError:
        raise TypeError(f"no autocast rule for layer {getattr(layer, 'name', layer)!r} of "
                        f"type {type(layer).__name__} (known: "
                        f"{', '.join(sorted({t.__name__ for t in _LAYER_OPS}))})") from None


def _layer_policy(base: Policy, cls, fmt, dtype, matmul, tag) -> Policy:
    low = TensorSpec(fmt)
    if cls == "lower":
        model = matmul or {"bfloat16": "bf16", "float16": "fp16"}[dtype] + "-fp32acc-blas"
        return base.with_(name=tag, weights=low, activations=low, gradients=low,
                          forward=model, grad_input=model, grad_weight=model,
                          master=base.master_spec, scaling="none",
                          source=f"{tag}: torch autocast lower_precision_fp op")
    # fp32, promote, none: the op runs in fmt (float32, or its input's format)
    return base.with_(name=tag, activations=low, gradients=low, master=base.master_spec,
                      source=f"{tag}: torch autocast {cls} op, runs in {fmt}")


def autocast_policies(model, device="cpu", dtype=None, base="fp32", matmul=None) -> list:
    """The Policy each layer of `model` runs under with torch's autocast on `device`.

    Parameters
    ----------
    model : refcomp.nn.Sequential
        of engine layers (Linear, Conv2d, activations, norms, pools, Flatten, Dropout).
    device : {"cpu", "cuda"}
    dtype : {"bfloat16", "float16"} or None
        the autocast dtype (None: torch's default, bfloat16 on CPU, float16 on CUDA).
    base : Policy or preset name
        the policy outside autocast: the network input's format (``activations``), the
        master format, optimizer state and loss scale (default ``"fp32"``).
    matmul : accumulation model name or None
        model of the three matmuls of low-precision layers (default
        ``"bf16-fp32acc-blas"`` / ``"fp16-fp32acc-blas"``: dtype operands, float32
        accumulation, dtype output; ``"bf16-fp32acc"`` is the sequential model that torch
        2.13 CPU bf16 matmul matched bit for bit).

    Returns
    -------
    list of Policy, one per layer

    Notes
    -----
    The input of layer 0 has the format of ``base.activations``; the format ``f`` of each
    layer's output is the format of the next one's input.  By :func:`op_class` of the
    layer's operator (:func:`layer_op`):

    ``lower``
        weights, activations and gradients in `dtype`, the matmul model above: the input
        and parameters are rounded (RNE, torch's cast) to `dtype`, the products
        accumulated in float32, the result rounded to `dtype`; ``f = dtype``;
    ``fp32``
        activations and gradients float32 (the input is converted exactly); ``f =
        float32``;
    ``promote`` / ``none``
        activations and gradients in the input's format ``f`` (unchanged);

    the other fields (weights of non-matmul layers, master, optimizer state, loss scale)
    are the base policy's.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> rng = np.random.default_rng(0)
    >>> net = nn.Sequential(nn.Linear(4, 8, rng=rng), nn.ReLU(), nn.Linear(8, 3, rng=rng),
    ...                     nn.LogSoftmax())
    >>> [p.activations.format.name for p in autocast_policies(net, "cpu")]
    ['bfloat16', 'bfloat16', 'bfloat16', 'bfloat16']
    >>> [p.activations.format.name for p in autocast_policies(net, "cuda", "bfloat16")]
    ['bfloat16', 'bfloat16', 'bfloat16', 'float32']
    """
    if not isinstance(model, M.Sequential):
        raise TypeError(f"autocast_policies: model must be an nn.Sequential, got "
                        f"{type(model).__name__}")
    dev = _device(device)
    dt = _dtype(dtype, dev)
    b = get_policy(base)
    fmt = b.activations.format
    cache, out = {}, []
    for layer in model.layers:
        cls = op_class(layer_op(layer), dev)
        if cls == "banned":                 # no engine layer maps to one; guard the data
            raise ValueError(f"{layer.name}: {layer_op(layer)} is banned under "
                             f"{dev} autocast")
        if cls == "lower":
            fmt = dt
        elif cls == "fp32":
            fmt = "float32"
        name = fmt if isinstance(fmt, str) else fmt.name
        key = (cls if cls == "lower" else "same", name)
        if key not in cache:
            tag = f"autocast-{dev}-{dt}/{cls}:{name}"
            cache[key] = _layer_policy(b, cls, name, dt, matmul, tag)
        out.append(cache[key])
    return out


class AutocastCache(NamedTuple):
    """What :meth:`Autocast.backward` reads: each layer's cache and policy."""

    caches: list
    policies: list


class Autocast(M.Module):
    """An engine module that runs a Sequential's layers under torch-autocast-like policies.

    ``Autocast(model, "cpu", "bfloat16")`` holds `model` (its parameters keep their torch
    names: ``"0.weight"``); ``forward(x, policy)`` runs layer i under
    ``autocast_policies(model, device, dtype, base=policy)[i]``, so
    ``nn.train_step(Autocast(model, "cpu"), x, y, loss, opt, "fp32")`` trains with float32
    master weights, low-precision matmuls, and the loss evaluated under the step's policy
    (float32: every torch loss is on the float32 lists of both devices, or -- CUDA
    ``cross_entropy`` -- decomposes into ``log_softmax`` and ``nll_loss`` that are).

    Notes
    -----
    The backward pass runs the layers' backward functions in reverse order; the gradient
    arriving at layer i is first rounded (RNE) into the format of layer i's output: in torch
    the gradient of a tensor has the tensor's dtype, and when the next op cast it (for
    example the float32 loss of bfloat16 logits) the cast's backward (``ToCopyBackward``)
    rounds the gradient back.  Each layer's gradients are rounded into its policy's
    gradient format: the weight and bias gradients of a low-precision layer are bfloat16
    values, as torch's (computed for the bfloat16 copy of the weight, then converted
    exactly to the float32 parameter's ``.grad``).

    Where this differs from torch's autocast:

    * torch casts the float32 weights at every op call (caching the casts of leaf tensors
      inside one autocast region); here the weights are rounded inside each layer's
      forward from the master copy -- the same values;
    * torch's backward runs each op's derivative in the dtypes its forward saw; here each
      engine backward evaluates in float64 and rounds once into the layer's gradient
      format, and the matmuls follow the accumulation model (float32 accumulation in an
      unspecified BLAS order by default), so the gradients agree bit for bit only when the
      float32 sums are exact or the order matches;
    * elementwise / norm layers evaluate in float64 and round once into their format,
      where torch's bfloat16 kernels compute in float32 and round -- the same value unless
      a float32 intermediate rounding changes the final one;
    * layers on no list with float32 parameters (BatchNorm on bfloat16 input) have their
      parameter gradients rounded into the input's format here; torch's mixed-type CPU
      kernels return float32 parameter gradients;
    * only a flat Sequential of the layers :func:`layer_op` knows is supported (no
      Residual: its add would need torch's type promotion of two branches).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> rng = np.random.default_rng(0)
    >>> net = Autocast(nn.Sequential(nn.Linear(4, 8, rng=rng), nn.ReLU(),
    ...                              nn.Linear(8, 3, rng=rng)), "cpu", "bfloat16")
    >>> sorted(net.named_parameters())
    ['0.bias', '0.weight', '2.bias', '2.weight']
    >>> r = nn.train_step(nn.prepare(net, "fp32"), np.ones((2, 4)), np.array([0, 2]),
    ...                   (nn.cross_entropy_forward, nn.cross_entropy_backward),
    ...                   nn.optim.SGD(lr=0.1), "fp32")
    >>> g = r.grads["0.weight"]
    >>> g.dtype.name, bool(np.all(nn.round_to(g, "bfloat16") == g))
    ('float32', True)
    """

    def __init__(self, model, device="cpu", dtype=None, matmul=None):
        super().__init__()
        if not isinstance(model, M.Sequential):
            raise TypeError(f"Autocast: model must be an nn.Sequential, got "
                            f"{type(model).__name__}")
        for layer in model.layers:
            layer_op(layer)                 # unknown layers fail here, naming the layer
        self.device = _device(device)
        self.dtype = _dtype(dtype, self.device)
        self.matmul = matmul
        self.model = model
        self.params, self.buffers = model.params, model.buffers
        self.name = f"Autocast[{self.device}, {self.dtype}]({model.name})"

    def children(self):
        return self.model.children()

    def policies(self, policy="fp32") -> list:
        """The layers' policies under base `policy` (:func:`autocast_policies`)."""
        return autocast_policies(self.model, self.device, self.dtype, policy, self.matmul)

    def forward(self, x, policy, rng=None, train=True):
        pols = self.policies(policy)
        caches = []
        for layer, p in zip(self.model.layers, pols):
            x, c = layer.forward(x, p, rng=rng, train=train)
            caches.append(c)
        return x, AutocastCache(caches, pols)

    def backward(self, dy, cache: AutocastCache, rng=None, need_dx=True):
        grads = {}
        for i in range(len(self.model.layers) - 1, -1, -1):
            spec = cache.policies[i].activations                 # layer i's output format
            dy = round_to(dy, spec.format, dtype=spec.carrier)     # the cast's backward
            dy, g = self.model.layers[i].backward(dy, cache.caches[i], rng=rng,
                                                  need_dx=need_dx or i > 0)
            grads.update({f"{i}.{k}": v for k, v in g.items()})
        return dy, grads
