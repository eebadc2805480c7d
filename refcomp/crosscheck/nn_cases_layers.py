"""Cases of the layers with parameters or windows: linear, conv2d, batch norm, layer norm,
max / average / adaptive-average pooling.  Each case runs refcomp.nn under the fp32 policy
and torch 2.13 (autograd on our rounded inputs with our dy, or the aten op) and yields
``Record`` rows (:mod:`refcomp.crosscheck.nn_cases`) with the derived bounds.

Matmuls (linear, conv2d, their three gradients, the bias gradient): torch's oneDNN / MKL
kernels and our NumPy sgemm are both float32 GEMMs of unspecified order, so each side is
within :func:`refcomp.bounds.deterministic` (model ``fp32-blas``: any order, K + 1 roundings
of every term, products possibly rounded) of the exact GEMM; a convolution's input gradient
is the GEMM of the zero-dilated ``dy`` patches with the flipped weight (every nonzero term
of torch's backward-data sum is one of its products, the other terms are exact zeros).
The convolution batches here (1 or 2 images, gradients required) do not meet NNPACK's
batch condition (16 or more); a Winograd / FFT convolution is not a sum of the products and
would be outside this bound.
"""

from __future__ import annotations

import numpy as np

from .. import bounds, nn
from ..nn.policy import get_policy
from ..ops.conv import im2col
from . import nn_bounds_norm as NB
from .nn_cases import f32, rec_pair, record
from .nn_err import Bnd

__all__ = ["linear_cases", "conv_cases", "batchnorm_cases", "layernorm_cases",
           "pool_cases"]

_P = "fp32"


def _gemm(A, B, C=None) -> Bnd:
    """Exact GEMM (float64, with its own error added) and the fp32-blas bound."""
    model = get_policy(_P).forward
    E = bounds.deterministic(A, B, model, C=C)
    K = A.shape[1]
    absC = 0.0 if C is None else np.abs(C)
    v = A @ B + (0.0 if C is None else C)
    slack = bounds.gamma(K + 1, 2.0 ** -53) * (np.abs(A) @ np.abs(B) + absC) + K * 2.0 ** -1074
    return Bnd(v, E + slack)


def _t(torch, a, grad=False):
    return torch.from_numpy(np.asarray(a, np.float64)).float().requires_grad_(grad)


def _np(t):
    return t.detach().double().numpy()


def linear_cases(torch, rng):
    for lead, din, dout, bias in (((7,), 33, 10, True), ((3, 5), 64, 17, True),
                                  ((6,), 9, 4, False), ((), 12, 5, True)):
        x = f32(rng.standard_normal(lead + (din,)))
        w = f32(rng.standard_normal((dout, din)) / np.sqrt(din))
        b = f32(rng.standard_normal(dout)) if bias else None
        y, cache = nn.linear_forward(x, w, b, _P)
        dy = f32(rng.standard_normal(y.shape))
        dx, (dw, db) = nn.linear_backward(dy, cache)
        tx, tw = _t(torch, x, True), _t(torch, w, True)
        tb = _t(torch, b, True) if bias else None
        ty = torch.nn.functional.linear(tx, tw, tb)
        ty.backward(_t(torch, dy))
        cfg = f"x {'x'.join(map(str, lead + (din,)))}, out {dout}, bias {bias}"
        x2, dy2 = x.reshape(-1, din), dy.reshape(-1, dout)
        g = _gemm(x2, w.T, b)
        yield rec_pair("linear", cfg, "y", y, _np(ty), g.v.reshape(y.shape),
                       g.e.reshape(y.shape))
        g = _gemm(dy2, w)
        yield rec_pair("linear", cfg, "dx", dx, _np(tx.grad), g.v.reshape(x.shape),
                       g.e.reshape(x.shape))
        g = _gemm(dy2.T, x2)
        yield rec_pair("linear", cfg, "dw", dw, _np(tw.grad), g.v, g.e)
        if bias:
            g = _gemm(np.ones((1, dy2.shape[0])), dy2)
            yield rec_pair("linear", cfg, "db", db, _np(tb.grad), g.v[0], g.e[0])


def _dilated(dy, H, W, R, S, st, pd, dl):
    """dy zero-dilated by the stride and shifted: the input gradient is the stride-1
    convolution of it with the flipped weight (dilation dl, no padding)."""
    N, O, Ho, Wo = dy.shape
    Z = np.zeros((N, O, H + (R - 1) * dl[0], W + (S - 1) * dl[1]))
    hi = (R - 1) * dl[0] - pd[0] + st[0] * np.arange(Ho)
    wi = (S - 1) * dl[1] - pd[1] + st[1] * np.arange(Wo)
    kh, kw = (hi >= 0) & (hi < Z.shape[2]), (wi >= 0) & (wi < Z.shape[3])
    Z[:, :, hi[kh][:, None], wi[kw][None, :]] = dy[:, :, kh][:, :, :, kw]
    return Z


def _conv_bounds(x, w, b, dy, st, pd, dl, G):
    """Bnd of y, dx, dw, db (exact value and fp32-blas bound) by GEMMs per group."""
    N, C, H, W = x.shape
    O, Cg, R, S = w.shape
    Og = O // G
    Ho, Wo = dy.shape[2:]
    ys, dxs, dws = [], [], []
    Z = _dilated(dy, H, W, R, S, st, pd, dl)
    for g in range(G):
        cols, _ = im2col(x[:, g * Cg:(g + 1) * Cg], (R, S), st, pd, dl)
        A = cols.reshape(N * Ho * Wo, -1)
        bg = None if b is None else np.broadcast_to(b[g * Og:(g + 1) * Og], (A.shape[0], Og))
        ys.append(_gemm(A, w[g * Og:(g + 1) * Og].reshape(Og, -1).T, bg))
        dyg = dy[:, g * Og:(g + 1) * Og].transpose(1, 0, 2, 3).reshape(Og, -1)
        dws.append(_gemm(dyg, A))
        zc, _ = im2col(Z[:, g * Og:(g + 1) * Og], (R, S), 1, 0, dl)
        wt = w[g * Og:(g + 1) * Og, :, ::-1, ::-1].transpose(0, 2, 3, 1).reshape(-1, Cg)
        dxs.append(_gemm(zc.reshape(N * H * W, -1), wt))

    def nchw(parts, n, c, h, wd):
        return [np.concatenate([p[i].reshape(n, h * wd, -1) for p in parts], axis=2)
                .transpose(0, 2, 1).reshape(n, c, h, wd) for i in (0, 1)]

    y = Bnd(*nchw(ys, N, O, Ho, Wo))
    dx = Bnd(*nchw(dxs, N, C, H, W))
    dw = Bnd(np.concatenate([p.v for p in dws]).reshape(w.shape),
             np.concatenate([p.e for p in dws]).reshape(w.shape))
    db = _gemm(np.ones((1, N * Ho * Wo)), dy.transpose(0, 2, 3, 1).reshape(-1, O))
    return y, dx, dw, Bnd(db.v[0], db.e[0])


def conv_cases(torch, rng):
    confs = [(2, 4, 7, 7, 6, 3, 1, 0, 1, 1, True), (2, 4, 9, 8, 6, 3, 2, 1, 1, 1, True),
             (1, 3, 10, 9, 5, 3, 1, 2, 2, 1, False), (2, 4, 9, 9, 6, 3, 2, 1, 1, 2, True),
             (1, 6, 8, 8, 6, 3, 1, 1, 1, 6, True), (2, 2, 11, 10, 4, 5, 3, 2, 2, 2, True),
             (1, 2, 6, 7, 3, 3, 2, 3, 1, 1, True)]
    for N, C, H, W, O, K, s, p, d, G, bias in confs:
        x = f32(rng.standard_normal((N, C, H, W)))
        w = f32(rng.standard_normal((O, C // G, K, K)) / np.sqrt(C // G * K * K))
        b = f32(rng.standard_normal(O)) if bias else None
        y, cache = nn.conv2d_forward(x, w, b, _P, stride=s, padding=p, dilation=d, groups=G)
        dy = f32(rng.standard_normal(y.shape))
        dx, (dw, db) = nn.conv2d_backward(dy, cache)
        tx, tw = _t(torch, x, True), _t(torch, w, True)
        tb = _t(torch, b, True) if bias else None
        ty = torch.nn.functional.conv2d(tx, tw, tb, s, p, d, G)
        ty.backward(_t(torch, dy))
        cfg = (f"x {N}x{C}x{H}x{W}, w {O}x{C // G}x{K}x{K}, stride {s}, padding {p}, "
               f"dilation {d}, groups {G}, bias {bias}")
        by, bdx, bdw, bdb = _conv_bounds(x, w, b, dy, (s, s), (p, p), (d, d), G)
        yield rec_pair("conv2d", cfg, "y", y, _np(ty), by.v, by.e)
        yield rec_pair("conv2d", cfg, "dx", dx, _np(tx.grad), bdx.v, bdx.e)
        yield rec_pair("conv2d", cfg, "dw", dw, _np(tw.grad), bdw.v, bdw.e)
        if bias:
            yield rec_pair("conv2d", cfg, "db", db, _np(tb.grad), bdb.v, bdb.e)


def batchnorm_cases(torch, rng):
    """momentum None is torch's cumulative average: BatchNorm with num_batches_tracked k
    passes momentum 1 / (k + 1) to the functional form (torch/nn/modules/batchnorm.py)."""
    confs = [((6, 5, 4, 3), True, True, 3.0, 0.1), ((33, 7), True, True, 0.0, 0.1),
             ((4, 3, 5), True, False, -2.0, 0.1), ((8, 3), True, True, 1.0, None),
             ((6, 5, 4, 3), False, True, 1.0, 0.1), ((33, 7), False, True, 0.0, 0.1)]
    nbt = 2                                       # batches tracked before, for momentum None
    for shape, train, affine, shift, mom in confs:
        C = shape[1]
        m = 1.0 / (nbt + 1) if mom is None else mom
        x = f32(rng.standard_normal(shape) * 2 + shift)
        dy = f32(rng.standard_normal(shape))
        w = f32(rng.standard_normal(C)) if affine else np.ones(C)
        b = f32(rng.standard_normal(C)) if affine else np.zeros(C)
        rm, rv = f32(rng.standard_normal(C)), f32(rng.uniform(0.5, 2.0, C))
        y, cache, run = nn.batchnorm_forward(x, w if affine else None, b if affine else None,
                                             rm, rv, _P, train=train, momentum=mom, eps=1e-5,
                                             num_batches_tracked=nbt)
        dx, (dg, dbt) = nn.batchnorm_backward(dy, cache)
        tx = _t(torch, x, True)
        tw, tb = (_t(torch, w, True), _t(torch, b, True)) if affine else (None, None)
        trm, trv = _t(torch, rm), _t(torch, rv)
        ty = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=train,
                                            momentum=m, eps=1e-5)
        ty.backward(_t(torch, dy))
        cfg = f"x {'x'.join(map(str, shape))}, {'train' if train else 'eval'}, " \
              f"affine {affine}, mean {shift:g}, momentum {mom}"
        bd = NB.batchnorm(x, dy, w, b, rm, rv, train, momentum=m)
        yield record("batchnorm", cfg, "y", y, _np(ty), *bd["y"])
        yield record("batchnorm", cfg, "dx", dx, _np(tx.grad), *bd["dx"])
        if affine:
            yield record("batchnorm", cfg, "dgamma", dg, _np(tw.grad), *bd["dgamma"])
            yield record("batchnorm", cfg, "dbeta", dbt, _np(tb.grad), *bd["dbeta"])
        if train:
            yield record("batchnorm", cfg, "running_mean", run[0], _np(trm),
                         *bd["running_mean"])
            yield record("batchnorm", cfg, "running_var", run[1], _np(trv),
                         *bd["running_var"])


def layernorm_cases(torch, rng, lanes):
    for shape, nd, affine in (((9, 64), 1, True), ((9, 37), 1, True), ((3, 5, 200), 1, False),
                              ((4, 6, 7), 2, True), ((5, 300), 1, True)):
        ns = shape[-nd:]
        x = f32(rng.standard_normal(shape) * 2 + 3)
        dy = f32(rng.standard_normal(shape))
        g = f32(rng.standard_normal(ns)) if affine else np.ones(ns)
        b = f32(rng.standard_normal(ns)) if affine else np.zeros(ns)
        y, cache = nn.layernorm_forward(x, ns, g if affine else None, b if affine else None,
                                        _P, eps=1e-5)
        dx, (dg, dbt) = nn.layernorm_backward(dy, cache)
        tx = _t(torch, x, True)
        tg, tb = (_t(torch, g, True), _t(torch, b, True)) if affine else (None, None)
        ty = torch.nn.functional.layer_norm(tx, ns, tg, tb, 1e-5)
        ty.backward(_t(torch, dy))
        cfg = f"x {'x'.join(map(str, shape))}, normalized {ns}, affine {affine}"
        bd = NB.layernorm(x, dy, g, b, nd, lanes=lanes)
        yield record("layernorm", cfg, "y", y, _np(ty), *bd["y"])
        yield record("layernorm", cfg, "dx", dx, _np(tx.grad), *bd["dx"])
        if affine:
            yield record("layernorm", cfg, "dgamma", dg, _np(tg.grad), *bd["dgamma"])
            yield record("layernorm", cfg, "dbeta", dbt, _np(tb.grad), *bd["dbeta"])


def pool_cases(torch, rng):
    F = torch.nn.functional
    x = f32(rng.standard_normal((2, 3, 9, 11)))
    ties = f32(rng.integers(-2, 3, (2, 3, 8, 8)))            # many equal maxima
    for name, xx, k, s, p, d in (("k2 s2", x, 2, 2, 0, 1), ("k3 s2 p1", x, 3, 2, 1, 1),
                                 ("k3 s1 p1 d2", x, 3, 1, 1, 2), ("k2 s2 ties", ties, 2, 2, 0, 1),
                                 ("k3 s1 p1 ties", ties, 3, 1, 1, 1)):
        y, cache = nn.max_pool2d_forward(xx, _P, k, s, p, d)
        dy = f32(rng.standard_normal(y.shape))
        dx, _ = nn.max_pool2d_backward(dy, cache)
        tx = _t(torch, xx, True)
        ty, ti = F.max_pool2d(tx, k, s, p, d, return_indices=True)
        ty.backward(_t(torch, dy))
        cfg = f"x {'x'.join(map(str, xx.shape))}, {name}"
        yield record("max_pool2d", cfg, "y", y, _np(ty), None, None)
        yield record("max_pool2d", cfg, "argmax", cache.index, ti.numpy(), None, None)
        if s >= k:                                           # windows do not overlap
            yield record("max_pool2d", cfg, "dx", dx, _np(tx.grad), None, None)
        else:
            yield record("max_pool2d", cfg, "dx", dx, _np(tx.grad),
                         *NB.max_pool_backward(dy, ti.numpy(), xx.shape))
    for k, s, p, cip, dv in (((2, 2), (2, 2), (0, 0), True, None),
                             ((3, 3), (2, 2), (1, 1), True, None),
                             ((3, 3), (2, 2), (1, 1), False, None),
                             ((3, 2), (1, 2), (1, 0), True, 5)):
        y, cache = nn.avg_pool2d_forward(x, _P, k, s, p, count_include_pad=cip,
                                         divisor_override=dv)
        dy = f32(rng.standard_normal(y.shape))
        dx, _ = nn.avg_pool2d_backward(dy, cache)
        tx = _t(torch, x, True)
        ty = F.avg_pool2d(tx, k, s, p, count_include_pad=cip, divisor_override=dv)
        ty.backward(_t(torch, dy))
        cfg = f"kernel {k}, stride {s}, padding {p}, count_include_pad {cip}, divisor {dv}"
        (yt, yo), (dt, do) = NB.avg_pool(x, dy, k, s, p, cip, dv)
        yield record("avg_pool2d", cfg, "y", y, _np(ty), yt, yo)
        yield record("avg_pool2d", cfg, "dx", dx, _np(tx.grad), dt, do)
    for out in ((3, 4), (4, 5), (1, 1), (9, 11)):
        y, cache = nn.adaptive_avg_pool2d_forward(x, _P, out)
        dy = f32(rng.standard_normal(y.shape))
        dx, _ = nn.adaptive_avg_pool2d_backward(dy, cache)
        tx = _t(torch, x, True)
        ty = F.adaptive_avg_pool2d(tx, out)
        ty.backward(_t(torch, dy))
        cfg = f"x 2x3x9x11 -> {out[0]}x{out[1]}"
        (yt, yo), (dt, do) = NB.adaptive_avg_pool(x, dy, out)
        yield record("adaptive_avg_pool2d", cfg, "y", y, _np(ty), yt, yo)
        yield record("adaptive_avg_pool2d", cfg, "dx", dx, _np(tx.grad), dt, do)

