"""The cases of the NN cross-check: every layer of :mod:`refcomp.nn`, several configurations
each, run through refcomp's fp32 policy and torch 2.13 CPU float32 on the same seeded
float32 inputs.  A case yields one :class:`Record` per output tensor: our result, torch's,
and either two derived bounds (:mod:`refcomp.crosscheck.nn_bounds_act`, ``nn_bounds_loss``,
``nn_bounds_norm``, fp32-blas GEMM bounds) or none, a claim of bit-exactness.

Layers whose backward reads the forward OUTPUT (sigmoid, tanh, softmax, log_softmax) are
compared layer-locally: torch's aten backward op is fed OUR cached output.  Dropout feeds
torch our mask through torch's own formula (Dropout.cpp ``_dropout_impl``:
``noise = mask.div_(1 - p)``, ``y = x * noise``).  The other backward passes are torch
autograd on our rounded inputs with our ``dy``.
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from .. import nn
from ..rounding.cast import cast
from . import nn_bounds_act as BA
from . import nn_bounds_loss as BL
from .nn_err import Bnd

__all__ = ["Record", "record", "rec_pair", "f32", "all_cases"]

_P = "fp32"


class Record(NamedTuple):
    """One output tensor of one case; ``bt`` / ``bo`` bound torch / ours around the exact
    value (both None: bit-exactness is claimed)."""

    layer: str
    config: str
    tensor: str
    ours: np.ndarray
    torch: np.ndarray
    bt: Bnd | None
    bo: Bnd | None


def record(layer, config, tensor, ours, torch, bt, bo) -> Record:
    return Record(layer, config, tensor, np.asarray(ours), np.asarray(torch), bt, bo)


def rec_pair(layer, config, tensor, ours, torch, v, e) -> Record:
    """A record whose two sides share one bound (both are fp32-blas GEMMs)."""
    b = Bnd(np.asarray(v, np.float64), np.asarray(e, np.float64))
    return record(layer, config, tensor, ours, torch, b, b)


def f32(x) -> np.ndarray:
    """float32 values (as float64) of x, rounded by the rounding core."""
    return np.asarray(cast(np.asarray(x, np.float64), "float32"), np.float64)


def _t(torch, a, grad=False):
    return torch.from_numpy(np.asarray(a, np.float64)).float().requires_grad_(grad)


def _np(t):
    return t.detach().double().numpy()


def _shape(s):
    return "x".join(map(str, s))


def activation_cases(torch, rng):
    F = torch.nn.functional
    shapes = ((13, 37), (4, 3, 5, 7))
    for shape in shapes:
        x = f32(rng.standard_normal(shape) * 3)
        dy = f32(rng.standard_normal(shape))
        tx = _t(torch, x, True)
        cfg = f"x {_shape(shape)}"
        # relu: exact both ways (threshold_backward on the output)
        y, c = nn.relu_forward(x, _P)
        dx, _ = nn.relu_backward(dy, c)
        ty = torch.relu(tx)
        ty.backward(_t(torch, dy))
        yield record("relu", cfg, "y", y, _np(ty), None, None)
        yield record("relu", cfg, "dx", dx, _np(tx.grad), None, None)
        for slope in (0.01, 0.2):
            y, c = nn.leaky_relu_forward(x, _P, slope)
            dx, _ = nn.leaky_relu_backward(dy, c)
            tx = _t(torch, x, True)
            ty = F.leaky_relu(tx, slope)
            ty.backward(_t(torch, dy))
            (yb, dxb) = BA.leaky_relu(x, dy, slope)
            yield record("leaky_relu", f"{cfg}, slope {slope}", "y", y, _np(ty), *yb)
            yield record("leaky_relu", f"{cfg}, slope {slope}", "dx", dx, _np(tx.grad), *dxb)
        for appr in ("none", "tanh"):
            y, c = nn.gelu_forward(x, _P, approximate=appr)
            dx, _ = nn.gelu_backward(dy, c)
            tx = _t(torch, x, True)
            ty = F.gelu(tx, approximate=appr)
            ty.backward(_t(torch, dy))
            yb, dxb = (BA.gelu_erf if appr == "none" else BA.gelu_tanh)(x, dy)
            yield record("gelu", f"{cfg}, approximate {appr}", "y", y, _np(ty), *yb)
            yield record("gelu", f"{cfg}, approximate {appr}", "dx", dx, _np(tx.grad), *dxb)
        xs = f32(rng.standard_normal(shape) * 6)
        for name, fwd, bwd, aten, bnd in (
                ("sigmoid", nn.sigmoid_forward, nn.sigmoid_backward,
                 torch.ops.aten.sigmoid_backward, BA.sigmoid),
                ("tanh", nn.tanh_forward, nn.tanh_backward, torch.ops.aten.tanh_backward,
                 BA.tanh_)):
            y, c = fwd(xs, _P)
            dx, _ = bwd(dy, c)
            ty = getattr(torch, name)(_t(torch, xs))
            tdx = aten(_t(torch, dy), _t(torch, y))
            yb, dxb = bnd(xs, dy, y)
            yield record(name, f"{cfg}, x scale 6", "y", y, _np(ty), *yb)
            yield record(name, f"{cfg}, x scale 6", "dx", dx, _np(tdx), *dxb)


def softmax_cases(torch, rng):
    aten = torch.ops.aten
    for shape, dim, scale in (((13, 10), -1, 3.0), ((5, 100), -1, 8.0), ((9, 7, 6), 1, 3.0),
                              ((12, 11), 0, 20.0)):
        x = f32(rng.standard_normal(shape) * scale)
        dy = f32(rng.standard_normal(shape))
        cfg = f"x {_shape(shape)} (scale {scale:g}), dim {dim}"
        last = dim in (-1, len(shape) - 1)
        y, c = nn.softmax_forward(x, _P, dim=dim)
        dx, _ = nn.softmax_backward(dy, c)
        ty = torch.softmax(_t(torch, x), dim)
        tdx = aten._softmax_backward_data(_t(torch, dy), _t(torch, y), dim, torch.float32)
        yb, dxb = BA.softmax(x, dy, y, dim, last)
        yield record("softmax", cfg, "y", y, _np(ty), *yb)
        yield record("softmax", cfg, "dx", dx, _np(tdx), *dxb)
        y, c = nn.log_softmax_forward(x, _P, dim=dim)
        dx, _ = nn.log_softmax_backward(dy, c)
        ty = torch.log_softmax(_t(torch, x), dim)
        tdx = aten._log_softmax_backward_data(_t(torch, dy), _t(torch, y), dim, torch.float32)
        yb, dxb = BA.log_softmax(x, dy, y, dim)
        yield record("log_softmax", cfg, "y", y, _np(ty), *yb)
        yield record("log_softmax", cfg, "dx", dx, _np(tdx), *dxb)


def _dropout_exact(p) -> bool:
    """Whether torch's float noise ``1 / float(1 - p)`` is exactly 1 / (1 - p) and our
    float64 scale too (then both round ``x * scale`` once: bit-exact)."""
    q = np.float32(1.0 - p)
    noise = np.float32(1.0) / q
    s = 1 / (1 - Fraction(p))
    return Fraction(float(noise)) == s and Fraction(1.0 / (1.0 - p)) == s


def misc_cases(torch, rng):
    x = f32(rng.standard_normal((4, 3, 5, 6)))
    dy = f32(rng.standard_normal((4, 3, 5, 6)))
    y, c = nn.flatten_forward(x, _P, 1, -1)
    dyf = dy.reshape(y.shape)
    dx, _ = nn.flatten_backward(dyf, c)
    tx = _t(torch, x, True)
    ty = torch.flatten(tx, 1, -1)
    ty.backward(_t(torch, dyf))
    yield record("flatten", "x 4x3x5x6, dims 1..-1", "y", y, _np(ty), None, None)
    yield record("flatten", "x 4x3x5x6, dims 1..-1", "dx", dx, _np(tx.grad), None, None)
    for p in (0.5, 0.75, 0.1, 0.3):
        y, c = nn.dropout_forward(x, _P, p=p, rng=rng)
        dx, _ = nn.dropout_backward(dy, c)
        keep = c.saved != 0
        tx = _t(torch, x, True)
        noise = torch.from_numpy(keep.astype(np.float32)).div_(1 - p)
        ty = tx * noise
        ty.backward(_t(torch, dy))
        cfg = f"x 4x3x5x6, p {p}, our mask"
        b = (None, None) if _dropout_exact(p) else None
        yb, dxb = BA.dropout(x, dy, keep, p) if b is None else (b, b)
        yield record("dropout", cfg, "y", y, _np(ty), *yb)
        yield record("dropout", cfg, "dx", dx, _np(tx.grad), *dxb)
    b2 = f32(rng.standard_normal(x.shape))
    y, c = nn.add_forward(x, b2, _P)
    (da, db), _ = nn.add_backward(dy, c)
    ta, tb = _t(torch, x, True), _t(torch, b2, True)
    ty = ta + tb
    ty.backward(_t(torch, dy))
    for name, o, t in (("y", y, ty), ("da", da, ta.grad), ("db", db, tb.grad)):
        yield record("add", "a, b 4x3x5x6", name, o, _np(t), None, None)


def loss_cases(torch, rng):
    F = torch.nn.functional
    N, C = 17, 11
    z = f32(rng.standard_normal((N, C)) * 3)
    t = rng.integers(0, C, N)
    t_ign = t.copy()
    t_ign[[3, 5, 11]] = 2
    w = f32(rng.uniform(0.25, 2.0, C))
    for tgt, wt, ign, eps, red in ((t, None, -100, 0.0, "mean"), (t, None, -100, 0.1, "mean"),
                                   (t_ign, w, 2, 0.0, "mean"), (t_ign, w, 2, 0.2, "sum"),
                                   (t, w, -100, 0.1, "mean"), (t_ign, None, 2, 0.1, "none"),
                                   (t, None, -100, 0.0, "none")):
        dl = f32(rng.standard_normal(N)) if red == "none" else f32(0.75)
        loss, c = nn.cross_entropy_forward(z, tgt, _P, weight=wt, ignore_index=ign,
                                           label_smoothing=eps, reduction=red)
        dz, _ = nn.cross_entropy_backward(dl, c)
        tz = _t(torch, z, True)
        tl = F.cross_entropy(tz, torch.from_numpy(tgt), weight=None if wt is None else
                             _t(torch, wt), ignore_index=ign, label_smoothing=eps,
                             reduction=red)
        tl.backward(_t(torch, dl))
        cfg = (f"logits {N}x{C}, weights {wt is not None}, ignore_index {ign}, "
               f"label_smoothing {eps}, {red}")
        lb, db = BL.cross_entropy(z, tgt, dl, wt, ign, eps, red)
        yield record("cross_entropy", cfg, "loss", loss, _np(tl), *lb)
        yield record("cross_entropy", cfg, "dlogits", dz, _np(tz.grad), *db)
    x, y = f32(rng.standard_normal((6, 7))), f32(rng.standard_normal((6, 7)))
    for red in ("mean", "sum", "none"):
        dl = f32(rng.standard_normal(x.shape)) if red == "none" else f32(0.75)
        loss, c = nn.mse_forward(x, y, _P, reduction=red)
        dx, _ = nn.mse_backward(dl, c)
        tx = _t(torch, x, True)
        tl = F.mse_loss(tx, _t(torch, y), reduction=red)
        tl.backward(_t(torch, dl))
        lb, db = BL.mse(x, y, dl, red)
        yield record("mse", f"x 6x7, {red}", "loss", loss, _np(tl), *lb)
        yield record("mse", f"x 6x7, {red}", "dx", dx, _np(tx.grad), *db)
    logp = f32(np.log(np.abs(rng.standard_normal((6, 7))) + 0.1))
    prob = f32(np.abs(rng.standard_normal((6, 7))))
    prob[0, 0] = prob[2, 3] = 0.0
    for log_target in (False, True):
        tg = f32(np.log(prob + 0.05)) if log_target else prob
        for red in ("mean", "batchmean", "sum", "none"):
            dl = f32(rng.standard_normal(x.shape)) if red == "none" else f32(0.75)
            loss, c = nn.kl_div_forward(logp, tg, _P, reduction=red, log_target=log_target)
            dx, _ = nn.kl_div_backward(dl, c)
            tx = _t(torch, logp, True)
            with warnings.catch_warnings():     # torch warns that 'mean' is not batchmean
                warnings.simplefilter("ignore", UserWarning)
                tl = F.kl_div(tx, _t(torch, tg), reduction=red, log_target=log_target)
            tl.backward(_t(torch, dl))
            lb, db = BL.kl_div(logp, tg, dl, red, log_target)
            cfg = f"x 6x7, {red}, log_target {log_target}"
            yield record("kl_div", cfg, "loss", loss, _np(tl), *lb)
            yield record("kl_div", cfg, "dx", dx, _np(tx.grad), *db)


def all_cases(torch, seed=0, lanes=8):
    """Every record of the suite, in a fixed order.

    Parameters
    ----------
    torch : the imported torch module (imported lazily by the caller)
    seed : int, one ``numpy.random.default_rng([seed, group])`` per group of layers
    lanes : int, float lanes of torch's vector kernels (for layer norm's moments)

    Yields
    ------
    Record
    """
    from . import nn_cases_layers as CL
    groups = (CL.linear_cases, CL.conv_cases, CL.batchnorm_cases,
              lambda t, r: CL.layernorm_cases(t, r, lanes), activation_cases, softmax_cases,
              CL.pool_cases, misc_cases, loss_cases)
    for i, g in enumerate(groups):
        yield from g(torch, np.random.default_rng([seed, i]))
