"""Eager-mode module fusion: fold an eval-mode BatchNorm into the preceding Conv2d / Linear.

Mirrors torch 2.13 ``torch/nn/utils/fusion.py`` (``fuse_conv_bn_weights``,
``fuse_linear_bn_weights``) and ``torch/ao/quantization/fuse_modules.py`` with
``fuser_method_mappings.py`` (``fuse_known_modules``, ``fuse_conv_bn``,
``fuse_conv_bn_relu``, ``fuse_linear_bn``) for post-training (``is_qat=False``) fusion.

The folding is computed in float32, one IEEE rounding per torch tensor operation, in torch's
order (every operation is :mod:`refcomp.ops` with ``fmt="float32"``):

``r = 1 / sqrt(running_var + f32(eps))``
    the Python float ``eps`` is rounded to float32 first (the CPU kernel takes the wrapped
    scalar as ``opmath_t = float``); ``torch.rsqrt`` on a CPU float32 tensor is
    ``1.0f / sqrtf(x)`` -- two roundings, NOT a correctly rounded reciprocal square root.
conv: ``W' = W * (g * r)`` and ``b' = ((b - rm) * r) * g + beta``
    note the two different associations (``g * r`` rounded first for the weight, left to
    right for the bias); missing conv bias / BN weight / BN bias are 0 / 1 / 0.
linear: ``s = g * r``; ``W' = W * s`` and ``b' = (b - rm) * s + beta``.

These rules were measured bit-exact against torch 2.13.0+cpu (tests/test_quant_fuse.py);
``(w * g) * r`` or a correctly rounded rsqrt differ in a large fraction of the elements.

Modes.  refcomp modules carry no train / eval flag (the mode is the ``train`` argument of
``forward``), so :func:`fuse_modules` always performs torch's eval-mode fusion, which is
only meaningful when the fused model is then run with ``train=False``.  A BatchNorm that
tracks no running statistics (``track_running_stats=False``: it always normalises with
batch statistics) cannot be folded and raises, as ``fuse_conv_bn_eval`` does.

Fused ReLU.  As torch's ``ConvReLU2d`` / ``LinearReLU`` / ``BNReLU2d`` (``nni`` containers
holding the two modules), a fused group ending in ReLU becomes a :class:`ConvReLU2d` /
:class:`LinearReLU` / :class:`BNReLU2d`: a refcomp Sequential of the (folded) module and
the ReLU, so parameter names match torch's (``"0.0.weight"``); the remaining positions of
the group become :class:`Identity`, as in torch.
"""

from __future__ import annotations

import copy

import numpy as np

from ..nn.modules import (BatchNorm1d, BatchNorm2d, Conv2d, Linear, Module, ReLU,
                          Sequential)
from ..ops.arith import add, div, mul, sqrt, sub
from ..rounding import cast

__all__ = ["fuse_conv_bn_weights", "fuse_linear_bn_weights", "fuse_modules",
           "fuse_modules_qat", "Identity", "ConvReLU2d", "LinearReLU", "BNReLU2d", "ConvBn2d",
           "ConvBnReLU2d", "LinearBn1d"]

F32 = "float32"


class Identity(Module):
    """torch.nn.Identity: the placeholder torch puts in the fused positions of a group."""

    def forward(self, x, policy, rng=None, train=True):
        return x, None

    def backward(self, dy, cache, rng=None, need_dx=True):
        return dy, {}


class _Fused(Sequential):
    """A fused container (torch ``nni._FusedModule``): a Sequential of its parts."""

    parts: tuple = ()

    def __init__(self, *mods):
        kinds = tuple(type(m) for m in mods)
        if kinds != self.parts:
            raise TypeError(f"{type(self).__name__}: incorrect types for input modules: "
                            f"{', '.join(k.__name__ for k in kinds)} (expected "
                            f"{', '.join(k.__name__ for k in self.parts)})")
        super().__init__(*mods)


class ConvReLU2d(_Fused):
    """torch.ao.nn.intrinsic.ConvReLU2d: children "0" (Conv2d) and "1" (ReLU)."""

    parts = (Conv2d, ReLU)


class LinearReLU(_Fused):
    """torch.ao.nn.intrinsic.LinearReLU: children "0" (Linear) and "1" (ReLU)."""

    parts = (Linear, ReLU)


class BNReLU2d(_Fused):
    """torch.ao.nn.intrinsic.BNReLU2d: children "0" (BatchNorm2d) and "1" (ReLU)."""

    parts = (BatchNorm2d, ReLU)


class ConvBn2d(_Fused):
    """torch.ao.nn.intrinsic.ConvBn2d (QAT fusion, unfolded): "0" Conv2d, "1" BatchNorm2d."""

    parts = (Conv2d, BatchNorm2d)


class ConvBnReLU2d(_Fused):
    """torch.ao.nn.intrinsic.ConvBnReLU2d (QAT fusion, unfolded): Conv2d, BatchNorm2d,
    ReLU."""

    parts = (Conv2d, BatchNorm2d, ReLU)


class LinearBn1d(_Fused):
    """torch.ao.nn.intrinsic.LinearBn1d (QAT fusion, unfolded): "0" Linear, "1"
    BatchNorm1d."""

    parts = (Linear, BatchNorm1d)


# --------------------------------------------------------------------------- weights
def _f32(x, what, ndim=None):
    """Values rounded to float32 (as a torch float32 tensor holds them), float64 carrier."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError(f"{what} must be a numeric array, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimension(s), got shape {a.shape}")
    return np.asarray(cast(a.astype(np.float64), F32), np.float64)


def _eps(eps):
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.floating,
                                                                  np.integer)):
        raise TypeError(f"bn_eps must be a real number, got {eps!r}")
    return float(cast(np.float64(eps), F32))          # torch rounds the scalar to float32


def _rsqrt(rv, eps):
    """torch.rsqrt(rv + eps) on a CPU float32 tensor: 1.0f / sqrtf(fl(rv + fl(eps)))."""
    return div(1.0, sqrt(add(rv, _eps(eps), F32), F32), F32)


def _bn_vectors(bn_rm, bn_rv, bn_w, bn_b, n_out, what):
    rm = _f32(bn_rm, "bn_rm", 1)
    C = rm.shape[0]
    rv = _f32(bn_rv, "bn_rv", 1)
    w = np.ones(C) if bn_w is None else _f32(bn_w, "bn_w", 1)
    b = np.zeros(C) if bn_b is None else _f32(bn_b, "bn_b", 1)
    for n, v in (("bn_rv", rv), ("bn_w", w), ("bn_b", b)):
        if v.shape != (C,):
            raise ValueError(f"{n} has shape {v.shape}, expected ({C},) like bn_rm")
    if C not in (n_out, 1):
        raise ValueError(f"BatchNorm has {C} features but the {what} has {n_out} output "
                         "channels (torch needs them equal, or 1 BatchNorm feature)")
    return rm, rv, w, b


def fuse_conv_bn_weights(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b, transpose=False):
    """Fold an eval-mode BatchNorm into convolution weights and bias.

    Parameters
    ----------
    conv_w : (O, C / groups, R, S) conv weight (any ndim >= 2; (C, O / groups, ...) when
        `transpose`), values rounded to float32
    conv_b : (O,) or None (zeros)
    bn_rm, bn_rv : (O,) or (1,) running mean and variance
    bn_eps : float, rounded to float32
    bn_w, bn_b : (O,) / (1,) or None (ones / zeros: a BatchNorm with ``affine=False``)
    transpose : bool, the scale applies along dim 1 (transposed convolutions)

    Returns
    -------
    w : float64 array of float32 values, `conv_w`'s shape
    b : (O,) float64 array of float32 values (broadcast shape of conv_b and the BN vectors)

    Notes
    -----
    torch 2.13 ``torch/nn/utils/fusion.py::fuse_conv_bn_weights``, every tensor op one
    float32 rounding: ``r = 1 / sqrt(rv + f32(eps))``; ``W' = W * (g * r)``;
    ``b' = ((b - rm) * r) * g + beta`` (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> w, b = fuse_conv_bn_weights(np.ones((2, 1, 1, 1)), None, [0.5, 0.0], [4.0, 1.0],
    ...                             0.0, [2.0, 1.0], None)
    >>> w.ravel().tolist(), b.tolist()
    ([1.0, 1.0], [-0.5, 0.0])
    """
    w = _f32(conv_w, "conv_w")
    if w.ndim < 2:
        raise ValueError(f"conv_w must have at least 2 dimensions, got shape {w.shape}")
    axis = 1 if transpose else 0
    rm, rv, g, beta = _bn_vectors(bn_rm, bn_rv, bn_w, bn_b, w.shape[axis], "convolution")
    b = np.zeros(rm.shape[0]) if conv_b is None else _f32(conv_b, "conv_b", 1)
    if b.shape[0] not in (w.shape[axis], 1):
        raise ValueError(f"conv_b has shape {b.shape}, expected ({w.shape[axis]},)")
    r = _rsqrt(rv, bn_eps)                                          # (C,)
    shape = [1] * w.ndim
    shape[axis] = -1
    fw = mul(w, mul(g, r, F32).reshape(shape), F32)                  # W * (g * r)
    fb = add(mul(mul(sub(b, rm, F32), r, F32), g, F32), beta, F32)   # ((b - rm) * r) * g + beta
    return np.asarray(fw, np.float64), np.asarray(fb, np.float64)


def fuse_linear_bn_weights(linear_w, linear_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b):
    """Fold an eval-mode BatchNorm1d into Linear weights and bias.

    Parameters
    ----------
    linear_w : (D_out, D_in) weight, values rounded to float32
    linear_b : (D_out,) or None (zeros)
    bn_rm, bn_rv, bn_w, bn_b : (D_out,) or (1,) BatchNorm vectors; `bn_w` and `bn_b` are
        required (torch's ``fuse_linear_bn_weights`` has no default for them: a BatchNorm
        with ``affine=False`` fails there too)
    bn_eps : float, rounded to float32

    Returns
    -------
    w : (D_out, D_in) float64 array of float32 values
    b : float64 array of float32 values, the broadcast shape of `linear_b` (zeros of
        `bn_rm`'s shape when None, as torch) and the BN vectors

    Notes
    -----
    torch 2.13 ``torch/nn/utils/fusion.py::fuse_linear_bn_weights``: ``s = g * r`` with
    ``r = 1 / sqrt(rv + f32(eps))``; ``W' = W * s[:, None]``; ``b' = (b - rm) * s + beta``,
    each op one float32 rounding (unlike the conv bias, ``g * r`` is rounded first here).

    Examples
    --------
    >>> import numpy as np
    >>> w, b = fuse_linear_bn_weights(np.ones((1, 2)), [1.0], [0.5], [4.0], 0.0, [2.0], [0.25])
    >>> w.tolist(), b.tolist()
    ([[1.0, 1.0]], [0.75])
    """
    w = _f32(linear_w, "linear_w", 2)
    if bn_w is None or bn_b is None:
        raise ValueError("fuse_linear_bn_weights needs the BatchNorm weight and bias (got "
                         f"bn_w={'None' if bn_w is None else '...'}, bn_b="
                         f"{'None' if bn_b is None else '...'}): torch 2.13 has no default "
                         "for them (a BatchNorm1d with affine=False cannot be fused there)")
    rm, rv, g, beta = _bn_vectors(bn_rm, bn_rv, bn_w, bn_b, w.shape[0], "linear layer")
    b = np.zeros(rm.shape[0]) if linear_b is None else _f32(linear_b, "linear_b", 1)
    if b.shape[0] not in (w.shape[0], 1):
        raise ValueError(f"linear_b has shape {b.shape}, expected ({w.shape[0]},)")
    s = mul(g, _rsqrt(rv, bn_eps), F32)                             # (C,) g * r
    fw = mul(w, s[:, None], F32)                                     # (D_out, D_in)
    fb = add(mul(sub(b, rm, F32), s, F32), beta, F32)                # (b - rm) * s + beta
    return np.asarray(fw, np.float64), np.asarray(fb, np.float64)


# --------------------------------------------------------------------------- modules
def _running(bn, path):
    if "running_mean" not in bn.buffers:
        raise ValueError(f"cannot fuse {path}: the BatchNorm has no running statistics "
                         "(track_running_stats=False); eval-mode fusion needs them")
    return bn.buffers["running_mean"], bn.buffers["running_var"]


def _fold(mod, bn, path):
    """A copy of Conv2d / Linear `mod` with `bn` folded in (torch fuse_*_bn_eval)."""
    rm, rv = _running(bn, path)
    p = bn.params
    out = copy.deepcopy(mod)
    if isinstance(mod, Conv2d):
        w, b = fuse_conv_bn_weights(mod.params["weight"], mod.params.get("bias"), rm, rv,
                                    bn.eps, p.get("weight"), p.get("bias"))
    else:
        n_out, C = mod.params["weight"].shape[0], np.shape(rm)[0]
        if C not in (n_out, 1):
            raise ValueError(f"cannot fuse {path}: linear.out_features={n_out} must equal "
                             f"bn.num_features={C} (or bn.num_features == 1)")
        w, b = fuse_linear_bn_weights(mod.params["weight"], mod.params.get("bias"), rm, rv,
                                      bn.eps, p.get("weight"), p.get("bias"))
        b = np.broadcast_to(b, (n_out,)).copy()      # refcomp's Linear holds a (D_out,) bias
    out.params["weight"] = w
    out.params["bias"] = b
    return out


_QAT_GROUPS = {(Conv2d, BatchNorm2d): ConvBn2d, (Conv2d, BatchNorm2d, ReLU): ConvBnReLU2d,
               (Linear, BatchNorm1d): LinearBn1d}


def _fuse_group(mods, path, qat=False):
    """torch fuse_known_modules: the fused module for a list of modules (eval mode, or
    the unfolded ``is_qat=True`` containers)."""
    kinds = tuple(type(m) for m in mods)
    if qat and kinds in _QAT_GROUPS:
        return _QAT_GROUPS[kinds](*copy.deepcopy(mods))
    if kinds == (Conv2d, BatchNorm2d):
        return _fold(mods[0], mods[1], path)
    if kinds == (Conv2d, BatchNorm2d, ReLU):
        return ConvReLU2d(_fold(mods[0], mods[1], path), copy.deepcopy(mods[2]))
    if kinds == (Linear, BatchNorm1d):
        return _fold(mods[0], mods[1], path)
    if kinds == (Conv2d, ReLU):
        return ConvReLU2d(*copy.deepcopy(mods))
    if kinds == (Linear, ReLU):
        return LinearReLU(*copy.deepcopy(mods))
    if kinds == (BatchNorm2d, ReLU):
        return BNReLU2d(*copy.deepcopy(mods))
    raise ValueError(f"cannot fuse modules {path}: "
                     f"({', '.join(k.__name__ for k in kinds)}); supported: "
                     "(Conv2d, BatchNorm2d), (Conv2d, BatchNorm2d, ReLU), "
                     "(Linear, BatchNorm1d), (Conv2d, ReLU), (Linear, ReLU), "
                     "(BatchNorm2d, ReLU)")


def _parent(model, key):
    *head, last = key.split(".")
    m = model
    for i, part in enumerate(head + [last]):
        kids = dict(m.children())
        if part not in kids:
            raise ValueError(f"fuse_modules: no submodule {'.'.join(head[:i] + [part])!r} "
                             f"in {type(model).__name__} (children of "
                             f"{'.'.join(head[:i]) or 'the model'}: {sorted(kids)})")
        if i == len(head):
            return m, last, kids[part]
        m = kids[part]


def _put(parent, name, module):
    if isinstance(parent, Sequential):
        parent.layers[int(name)] = module
        module.name = f"{type(module).__name__} (layer {name})"
    else:
        setattr(parent, name, module)


def fuse_modules(model, groups, inplace=False, *, _qat=False):
    """Fuse groups of modules of a refcomp model, as torch.ao.quantization.fuse_modules.

    Parameters
    ----------
    model : refcomp.nn.Module (Sequential, Residual, or a tree of them)
    groups : list of str, or list of lists of str
        Dotted torch names of the modules to fuse (``[["0", "1", "2"], ["3", "4"]]``).
        Supported sequences: (Conv2d, BatchNorm2d), (Conv2d, BatchNorm2d, ReLU),
        (Linear, BatchNorm1d), (Conv2d, ReLU), (Linear, ReLU), (BatchNorm2d, ReLU).
    inplace : bool, modify `model` (default: fuse a deep copy)

    Returns
    -------
    the fused model: each group's first position holds the fused module (a folded
    Conv2d / Linear, or a :class:`ConvReLU2d` / :class:`LinearReLU` / :class:`BNReLU2d`
    container), the others :class:`Identity`.

    Notes
    -----
    torch 2.13 ``torch/ao/quantization/fuse_modules.py::fuse_known_modules`` with the
    eval-mode fusers of ``fuser_method_mappings.py``; the folding is
    :func:`fuse_conv_bn_weights` / :func:`fuse_linear_bn_weights`.  refcomp modules have no
    train / eval flag: this is eval-mode fusion (run the result with ``train=False``).
    Unsupported sequences raise ValueError naming the modules and their kinds (torch:
    AssertionError "did not find fuser method"); so does a BatchNorm without running
    statistics (torch: AssertionError from ``fuse_conv_bn_eval``).

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> m = nn.Sequential(nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)),
    ...                   nn.BatchNorm2d(2), nn.ReLU())
    >>> [type(c).__name__ for c in fuse_modules(m, ["0", "1", "2"]).layers]
    ['ConvReLU2d', 'Identity', 'Identity']
    """
    if not isinstance(model, Module):
        raise TypeError(f"fuse_modules: model must be a refcomp.nn Module, got "
                        f"{type(model).__name__}")
    if isinstance(groups, (list, tuple)) and groups and all(isinstance(g, str) for g in groups):
        groups = [groups]
    if not isinstance(groups, (list, tuple)) or not all(
            isinstance(g, (list, tuple)) and len(g) >= 2 and all(isinstance(k, str) for k in g)
            for g in groups):
        raise TypeError(f"fuse_modules: groups must be a list of module names or a list of "
                        f"such lists (two or more names each), got {groups!r}")
    if not inplace:
        model = copy.deepcopy(model)
    for g in groups:
        found = [_parent(model, k) for k in g]
        path = f"[{', '.join(repr(k) for k in g)}]"
        fused = _fuse_group([m for _, _, m in found], path, _qat)
        for i, (parent, name, _) in enumerate(found):
            _put(parent, name, fused if i == 0 else Identity())
    return model


def fuse_modules_qat(model, groups, inplace=False):
    """``torch.ao.quantization.fuse_modules_qat``: fusion for quantization-aware training.

    As :func:`fuse_modules`, except that a BatchNorm is NOT folded: (Conv2d, BatchNorm2d),
    (Conv2d, BatchNorm2d, ReLU) and (Linear, BatchNorm1d) become the containers
    :class:`ConvBn2d`, :class:`ConvBnReLU2d`, :class:`LinearBn1d` (torch's ``fuse_conv_bn``
    / ``fuse_conv_bn_relu`` / ``fuse_linear_bn`` with ``is_qat=True``), which
    :func:`refcomp.quant.qat.prepare_qat` turns into the QAT modules that fold the batch
    norm into the fake-quantized weight.  The other groups fuse as in :func:`fuse_modules`.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> m = nn.Sequential(nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)),
    ...                   nn.BatchNorm2d(2), nn.ReLU())
    >>> [type(c).__name__ for c in fuse_modules_qat(m, ["0", "1", "2"]).layers]
    ['ConvBnReLU2d', 'Identity', 'Identity']
    """
    return fuse_modules(model, groups, inplace, _qat=True)
