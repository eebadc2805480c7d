"""Thin layer objects: they hold parameters and buffers and call the functional pairs.

A module's ``forward(x, policy, rng=None, train=True)`` returns ``(y, cache)`` and its
``backward(dy, cache, rng=None, need_dx=True)`` returns ``(dx, grads)`` (dx may be None
when need_dx is False: a training step does not need the input's gradient) with ``grads`` a dict of
gradients keyed by parameter name (dotted, as torch names them: ``"0.weight"``).
Parameters and buffers are float64 arrays of values (of the master format once a
training step has rounded them); ``state_dict`` / ``load_state_dict`` use torch's names and
layouts, so ``load_state_dict({k: v.numpy() for k, v in torch_model.state_dict().items()})``
loads a torch model's weights (convert tensors to NumPy first: the core never imports
torch).
"""

from __future__ import annotations

import numpy as np

from . import activation as A
from . import init
from . import linear as L
from . import norm as Nm
from . import pool as P

__all__ = ["Module", "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "ReLU",
           "LeakyReLU", "GELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Dropout",
           "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Sequential",
           "Residual"]


def _need_rng(rng, what):
    if rng is None:
        raise ValueError(f"{what}: parameter initialisation needs rng (a numpy Generator); "
                         "no unseeded randomness")


def _named(grads):
    """A functional backward's (weight, bias) gradients under torch's parameter names
    (absent ones -- no bias, no affine -- left out)."""
    return {k: g for k, g in zip(("weight", "bias"), grads) if g is not None}


class Module:
    """Base class: parameters, buffers, children, state_dict."""

    def __init__(self):
        self.params: dict = {}
        self.buffers: dict = {}
        self.name = type(self).__name__

    # -- structure
    def children(self):
        """(name, module) pairs of direct submodules."""
        return []

    def named_parameters(self, prefix="") -> dict:
        """Every parameter, keyed by its dotted torch name."""
        out = {prefix + k: v for k, v in self.params.items()}
        for n, c in self.children():
            out.update(c.named_parameters(f"{prefix}{n}."))
        return out

    def set_parameters(self, values: dict, prefix=""):
        """Replace parameters from a dict keyed like :meth:`named_parameters` (float32
        arrays are kept, the carrier of float32 master weights; others become float64)."""
        for k in self.params:
            v = np.asarray(values[prefix + k])
            self.params[k] = v if v.dtype == np.float32 else v.astype(np.float64)
        for n, c in self.children():
            c.set_parameters(values, f"{prefix}{n}.")

    def state_dict(self, prefix="") -> dict:
        """Parameters and buffers under torch's names (NumPy arrays / ints)."""
        out = {}
        for k, v in self.params.items():
            out[prefix + k] = v.copy()
        for k, v in self.buffers.items():
            out[prefix + k] = v.copy() if isinstance(v, np.ndarray) else v
        for n, c in self.children():
            out.update(c.state_dict(f"{prefix}{n}."))
        return out

    def load_state_dict(self, state: dict):
        """Load parameters and buffers; missing or unexpected keys and wrong shapes raise
        ValueError naming them (values converted to float64 exactly)."""
        mine = self.state_dict()
        missing = sorted(set(mine) - set(state))
        extra = sorted(set(state) - set(mine))
        if missing or extra:
            raise ValueError(f"{self.name}.load_state_dict: missing keys {missing}, "
                             f"unexpected keys {extra}")
        for k, v in mine.items():
            got = np.asarray(state[k])
            want = np.shape(v)
            if got.shape != want:
                raise ValueError(f"{self.name}.load_state_dict: {k} has shape {got.shape}, "
                                 f"expected {want}")
            if got.dtype.kind not in "fiub":
                raise TypeError(f"{self.name}.load_state_dict: {k} has dtype {got.dtype}")
        self._load(state, "")

    def _load(self, state, prefix):
        for k in self.params:
            self.params[k] = np.asarray(state[prefix + k], np.float64).copy()
        for k, v in self.buffers.items():
            s = state[prefix + k]
            self.buffers[k] = int(np.asarray(s)) if not isinstance(v, np.ndarray) \
                else np.asarray(s, np.float64).copy()
        for n, c in self.children():
            c._load(state, f"{prefix}{n}.")

    def __call__(self, x, policy, rng=None, train=True):
        return self.forward(x, policy, rng=rng, train=train)

    def forward(self, x, policy, rng=None, train=True):
        raise NotImplementedError

    def backward(self, dy, cache, rng=None, need_dx=True):
        raise NotImplementedError


class _Stateless(Module):
    """A parameter-free layer around a functional pair (f, b) with fixed keyword args."""

    f = b = None

    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, x, policy, rng=None, train=True):
        return type(self).f(x, policy, rng=rng, name=self.name, **self.kw)

    def backward(self, dy, cache, rng=None, need_dx=True):
        return type(self).b(dy, cache, rng=rng)[0], {}


class Linear(Module):
    """torch.nn.Linear: weight (out, in), bias (out,); torch's default initialisation
    (:func:`refcomp.nn.init.linear_init`) from `rng`, rounded into `fmt`."""

    def __init__(self, in_features, out_features, bias=True, rng=None, fmt="float32"):
        super().__init__()
        _need_rng(rng, "Linear")
        w, b = init.linear_init(rng, in_features, out_features, bias, fmt)
        self.params["weight"] = w
        if bias:
            self.params["bias"] = b

    def forward(self, x, policy, rng=None, train=True):
        return L.linear_forward(x, self.params["weight"], self.params.get("bias"), policy,
                                rng=rng, name=self.name)

    def backward(self, dy, cache, rng=None, need_dx=True):
        dx, grads = L.linear_backward(dy, cache, rng=rng, need_dx=need_dx)
        return dx, _named(grads)


class Conv2d(Module):
    """torch.nn.Conv2d (zero padding): weight (O, C / groups, R, S), bias (O,); torch's
    default initialisation (:func:`refcomp.nn.init.conv2d_init`) from `rng`."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, rng=None, fmt="float32"):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels "
                             f"{in_channels} and out_channels {out_channels}")
        _need_rng(rng, "Conv2d")
        w, b = init.conv2d_init(rng, in_channels, out_channels, kernel_size, groups, bias, fmt)
        self.params["weight"] = w
        if bias:
            self.params["bias"] = b
        self.conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def forward(self, x, policy, rng=None, train=True):
        return L.conv2d_forward(x, self.params["weight"], self.params.get("bias"), policy,
                                rng=rng, name=self.name, **self.conv)

    def backward(self, dy, cache, rng=None, need_dx=True):
        dx, grads = L.conv2d_backward(dy, cache, rng=rng, need_dx=need_dx)
        return dx, _named(grads)


class BatchNorm2d(Module):
    """torch.nn.BatchNorm2d: weight 1, bias 0, running_mean 0, running_var 1,
    num_batches_tracked 0; train mode normalises with batch statistics and updates the
    running ones."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        if affine:
            self.params["weight"] = np.ones(num_features)
            self.params["bias"] = np.zeros(num_features)
        if track_running_stats:
            self.buffers["running_mean"] = np.zeros(num_features)
            self.buffers["running_var"] = np.ones(num_features)
            self.buffers["num_batches_tracked"] = 0
        self.eps, self.momentum = eps, momentum

    def forward(self, x, policy, rng=None, train=True):
        bf = self.buffers
        y, cache, (rm, rv) = Nm.batchnorm_forward(
            x, self.params.get("weight"), self.params.get("bias"), bf.get("running_mean"),
            bf.get("running_var"), policy, train=train, momentum=self.momentum, eps=self.eps,
            num_batches_tracked=bf.get("num_batches_tracked", 0), rng=rng, name=self.name)
        if train and bf:
            bf["running_mean"], bf["running_var"] = rm, rv
            bf["num_batches_tracked"] += 1
        return y, cache

    def backward(self, dy, cache, rng=None, need_dx=True):
        dx, grads = Nm.batchnorm_backward(dy, cache, rng=rng)
        return dx, _named(grads)


class BatchNorm1d(BatchNorm2d):
    """torch.nn.BatchNorm1d: input (N, C) or (N, C, L)."""


class LayerNorm(Module):
    """torch.nn.LayerNorm over the trailing normalized_shape (weight 1, bias 0)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
        super().__init__()
        ns = (normalized_shape,) if isinstance(normalized_shape, int) else \
            tuple(normalized_shape)
        self.shape, self.eps = ns, eps
        if elementwise_affine:
            self.params["weight"] = np.ones(ns)
            self.params["bias"] = np.zeros(ns)

    def forward(self, x, policy, rng=None, train=True):
        return Nm.layernorm_forward(x, self.shape, self.params.get("weight"),
                                    self.params.get("bias"), policy, eps=self.eps, rng=rng,
                                    name=self.name)

    def backward(self, dy, cache, rng=None, need_dx=True):
        dx, grads = Nm.layernorm_backward(dy, cache, rng=rng)
        return dx, _named(grads)


def _stateless(fname, f, b, doc, **defaults):
    def init(self, **kw):
        bad = set(kw) - set(defaults)
        if bad:
            raise TypeError(f"{fname}: unexpected arguments {sorted(bad)}")
        _Stateless.__init__(self, **{**defaults, **kw})
    return type(fname, (_Stateless,), {"f": staticmethod(f), "b": staticmethod(b),
                                       "__init__": init, "__doc__": doc})


ReLU = _stateless("ReLU", A.relu_forward, A.relu_backward, "torch.nn.ReLU")
LeakyReLU = _stateless("LeakyReLU", A.leaky_relu_forward, A.leaky_relu_backward,
                       "torch.nn.LeakyReLU(negative_slope)", negative_slope=0.01)
GELU = _stateless("GELU", A.gelu_forward, A.gelu_backward, "torch.nn.GELU(approximate)",
                  approximate="none")
Sigmoid = _stateless("Sigmoid", A.sigmoid_forward, A.sigmoid_backward, "torch.nn.Sigmoid")
Tanh = _stateless("Tanh", A.tanh_forward, A.tanh_backward, "torch.nn.Tanh")
Softmax = _stateless("Softmax", A.softmax_forward, A.softmax_backward, "torch.nn.Softmax(dim)",
                     dim=-1)
LogSoftmax = _stateless("LogSoftmax", A.log_softmax_forward, A.log_softmax_backward,
                        "torch.nn.LogSoftmax(dim)", dim=-1)
MaxPool2d = _stateless("MaxPool2d", P.max_pool2d_forward, P.max_pool2d_backward,
                       "torch.nn.MaxPool2d", kernel_size=2, stride=None, padding=0,
                       dilation=1)
AvgPool2d = _stateless("AvgPool2d", P.avg_pool2d_forward, P.avg_pool2d_backward,
                       "torch.nn.AvgPool2d", kernel_size=2, stride=None, padding=0,
                       count_include_pad=True, divisor_override=None)
AdaptiveAvgPool2d = _stateless("AdaptiveAvgPool2d", P.adaptive_avg_pool2d_forward,
                               P.adaptive_avg_pool2d_backward, "torch.nn.AdaptiveAvgPool2d",
                               output_size=1)
Flatten = _stateless("Flatten", P.flatten_forward, P.flatten_backward, "torch.nn.Flatten",
                     start_dim=1, end_dim=-1)


class Dropout(Module):
    """torch.nn.Dropout(p) with refcomp's seeded mask (train mode needs rng)."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x, policy, rng=None, train=True):
        return A.dropout_forward(x, policy, p=self.p, train=train, rng=rng, name=self.name)

    def backward(self, dy, cache, rng=None, need_dx=True):
        return A.dropout_backward(dy, cache, rng=rng)[0], {}


class Sequential(Module):
    """torch.nn.Sequential: children named "0", "1", ..."""

    def __init__(self, *layers):
        super().__init__()
        for i, m in enumerate(layers):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: layer {i} is {type(m).__name__}, not a Module")
            m.name = f"{type(m).__name__} (layer {i})"
        self.layers = list(layers)

    def children(self):
        return [(str(i), m) for i, m in enumerate(self.layers)]

    def forward(self, x, policy, rng=None, train=True):
        caches = []
        for m in self.layers:
            x, c = m.forward(x, policy, rng=rng, train=train)
            caches.append(c)
        return x, caches

    def backward(self, dy, cache, rng=None, need_dx=True):
        grads = {}
        for i in range(len(self.layers) - 1, -1, -1):
            dy, g = self.layers[i].backward(dy, cache[i], rng=rng, need_dx=need_dx or i > 0)
            grads.update({f"{i}.{k}": v for k, v in g.items()})
        return dy, grads


class Residual(Module):
    """y = rnd_act(block(x) + shortcut(x)) (shortcut: identity when None); children named
    "block" and "shortcut"."""

    def __init__(self, block: Module, shortcut: Module | None = None):
        super().__init__()
        self.block, self.shortcut = block, shortcut

    def children(self):
        c = [("block", self.block)]
        return c + ([("shortcut", self.shortcut)] if self.shortcut is not None else [])

    def forward(self, x, policy, rng=None, train=True):
        yb, cb = self.block.forward(x, policy, rng=rng, train=train)
        if self.shortcut is None:
            ys, cs = x, None
        else:
            ys, cs = self.shortcut.forward(x, policy, rng=rng, train=train)
        y, ca = A.add_forward(yb, ys, policy, rng=rng, name=self.name)
        return y, (cb, cs, ca)

    def backward(self, dy, cache, rng=None, need_dx=True):
        cb, cs, _ = cache
        dxb, gb = self.block.backward(dy, cb, rng=rng)
        grads = {f"block.{k}": v for k, v in gb.items()}
        if self.shortcut is None:
            dxs = dy
        else:
            dxs, gs = self.shortcut.backward(dy, cs, rng=rng)
            grads.update({f"shortcut.{k}": v for k, v in gs.items()})
        p = cache[2].policy
        return p.gradients.round(np.asarray(dxb, np.float64) + np.asarray(dxs, np.float64),
                                 rng), grads
