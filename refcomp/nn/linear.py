"""Linear and 2-D convolution layers: forward / backward pairs under a policy.

Every matmul goes through the policy's accumulation models (``forward``, ``grad_input``,
``grad_weight``); operands are rounded (and scaled, with per-tensor scaling) into the
model's input formats; results are rounded once into the activation or gradient format.
A convolution is one GEMM per group over im2col patches (K ordered (c, r, s), as
:func:`refcomp.ops.conv2d`); its input gradient is the transposed convolution written as
one GEMM per group over patches of the zero-dilated, padded ``dy`` (K ordered (o, r, s)),
so that every gradient element is a single reduction of the ``grad_input`` model.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np

from ..ops.conv import _pair, im2col
from ._check import check_array, check_shape, values
from ._mm import _holds, carrier, mm, operand
from .policy import Policy, get_policy

__all__ = ["LinearCache", "linear_forward", "linear_backward", "Conv2dCache",
           "conv2d_forward", "conv2d_backward", "conv_output_size"]


class LinearCache(NamedTuple):
    """What :func:`linear_backward` reads: the rounded operands of the forward matmul."""

    xq: np.ndarray          # (N, D_in) x as the forward matmul's operand (scaled)
    sx: float               # its scale (1 without scaling)
    wq: np.ndarray          # (D_out, D_in) w as the forward operand (scaled)
    sw: float
    lead: tuple             # leading shape of x
    has_bias: bool
    policy: Policy


def linear_forward(x, w, b, policy, rng=None, name="linear"):
    """y = x w^T + b.

    Parameters
    ----------
    x : (..., D_in) input, rounded into ``policy.activations`` (a no-op on activation values)
    w : (D_out, D_in) parameter (master or weights values); rounded to ``policy.weights``
    b : (D_out,) or None
    policy : Policy or preset name
    rng : numpy.random.Generator, for stochastic roundings
    name : str, the layer's name in error messages

    Returns
    -------
    y : (..., D_out) values of ``policy.activations``
    cache : LinearCache

    Notes
    -----
    ``y = rnd_act(model_fwd(x, w^T, C = b))``: with unscaled operands the bias (rounded to
    the weights format) is the GEMM's initial accumulator; with per-tensor scaling
    ``rnd_act(D / (s_x s_w) + b)`` (float64 sum).  torch's CPU ``addmm`` (MKL / oneDNN) also
    adds the bias inside the GEMM, in an unspecified order.

    Examples
    --------
    >>> import numpy as np
    >>> y, cache = linear_forward(np.ones((2, 3)), np.full((4, 3), 0.5), np.zeros(4), "fp32")
    >>> y.tolist()[0]
    [1.5, 1.5, 1.5, 1.5]
    """
    p = get_policy(policy)
    x = check_array(x, name, "x", min_ndim=1, keep32=True)
    w = check_array(w, name, "weight", ndim=2, keep32=True)
    check_shape(x.shape[-1], w.shape[1], name, "x features vs weight in_features")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])                                   # (N, D_in)
    m = p.forward
    # operands: x rounded into the activation format, w into the weights format, then
    # into the model's input formats (one conversion each on the float32 BLAS path)
    xq, sx = operand(x2, p.activations, m.inputs, p, rng, carrier(m))
    wq, sw = operand(w, p.weights, m.inputs_b, p, rng, carrier(m))
    C = None
    if b is not None:
        b = check_array(b, name, "bias", ndim=1)
        check_shape(b.shape[0], w.shape[0], name, "bias vs weight out_features")
        C = np.broadcast_to(p.weights.round(b, rng, p.weights.carrier),
                            (x2.shape[0], w.shape[0]))
    y = mm(xq, wq.T, m, C=C, c_fmt=p.weights.format, scale=sx * sw, rng=rng)
    y = p.activations.round(y, rng, p.activations.carrier).reshape(lead + (w.shape[0],))
    return y, LinearCache(xq, sx, wq, sw, lead, b is not None, p)


def linear_backward(dy, cache: LinearCache, rng=None, need_dx=True):
    """Gradients of :func:`linear_forward`.

    Returns
    -------
    dx : (..., D_in) values of ``policy.gradients`` (None when need_dx is False: the
        layer's input needs no gradient, as torch skips it for a leaf input)
    grads : (dw (D_out, D_in), db (D_out,) or None), values of ``policy.gradients``

    Notes
    -----
    ``dx = rnd_g(model_gi(dy, w))``, ``dw = rnd_g(model_gw(dy^T, x))``,
    ``db = rnd_g(model_gw(1^T, dy))`` (the bias reduction in the grad_weight model, the
    sum over the batch in its order), with ``dy`` prepared as an operand of each model
    (scaled per tensor when the policy says so) and the forward's cached operands.
    """
    p = cache.policy
    dy = values(dy)
    D_out = cache.wq.shape[0]
    dy2 = dy.reshape(-1, D_out)                                       # (N, D_out)
    gi, gw = p.grad_input, p.grad_weight
    dx = None
    d = None
    if need_dx:
        w_op, s_w = _reoperand(cache.wq, cache.sw, gi, p.weights, p, rng)
        d, sd = operand(dy2, p.gradients, gi.inputs, p, rng, carrier(gi))
        dx = mm(d, w_op, gi, scale=sd * s_w, rng=rng)
        dx = p.gradients.round(dx, rng, p.gradients.carrier).reshape(
            cache.lead + (w_op.shape[1],))
    if d is None or (gw.inputs, carrier(gw)) != (gi.inputs, carrier(gi)):
        d, sd = operand(dy2, p.gradients, gw.inputs, p, rng, carrier(gw))
    x_op, s_x = _reoperand(cache.xq, cache.sx, gw, p.activations, p, rng)
    g32 = p.gradients.carrier
    dw = p.gradients.round(mm(d.T, x_op, gw, scale=sd * s_x, rng=rng), rng, g32)
    db = None
    if cache.has_bias:
        ones = np.ones((1, d.shape[0]))
        db = p.gradients.round(mm(ones, d, _ones_model(gw), scale=sd, rng=rng)[0], rng, g32)
    return dx, (dw, db)


def _ones_model(model):
    """The grad_weight model with dy as its B operand (the ones are exact anywhere)."""
    if model.inputs == model.inputs_b:
        return model
    return replace(model, name=model.name + "-bias", inputs=model.inputs_b,
                   inputs_b=model.inputs)


def _reoperand(q, s, model, role, p, rng):
    """A cached forward operand (x or w, of `role`) as the B operand of a backward model:
    kept (with its scale) when the model's B format holds the forward operands' values,
    else re-rounded from its value q / s."""
    if _forward_fits(p, model.inputs_b):
        return q, s
    return operand(np.asarray(q, np.float64) / s, role, model.inputs_b, p, rng,
                   carrier(model))


# --------------------------------------------------------------------------- conv2d
def conv_output_size(h, k, stride, padding, dilation):
    """Output length along one axis (torch's formula, floor division)."""
    return (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1


class Conv2dCache(NamedTuple):
    """What :func:`conv2d_backward` reads."""

    cols: np.ndarray        # (G, N, Ho*Wo, C/G*R*S) patches of the x operand (scaled)
    sx: float
    wq: np.ndarray          # (O, C/G, R, S) w as the forward operand (scaled)
    sw: float
    x_shape: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    has_bias: bool
    policy: Policy


def conv2d_forward(x, w, b, policy, stride=1, padding=0, dilation=1, groups=1, rng=None,
                   name="conv2d"):
    """2-D cross-correlation (torch.nn.functional.conv2d semantics), NCHW.

    Parameters
    ----------
    x : (N, C, H, W) input, rounded into ``policy.activations``
    w : (O, C / groups, R, S) parameter values
    b : (O,) or None
    stride, padding, dilation : int or pair; groups : int dividing C and O

    Returns
    -------
    y : (N, O, Ho, Wo) values of ``policy.activations``; cache : Conv2dCache

    Notes
    -----
    Per group g: ``Y_g = rnd_act(model_fwd(cols_g, W_g^T, C = b_g))`` with
    ``cols_g`` (N * Ho * Wo, C/G * R * S) the zero-padded patches, K ordered (c, r, s).

    Examples
    --------
    >>> import numpy as np
    >>> y, _ = conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), None, "fp32")
    >>> y[0, 0].tolist()
    [[4.0, 4.0], [4.0, 4.0]]
    """
    p = get_policy(policy)
    x = check_array(x, name, "x", ndim=4, keep32=True)
    w = check_array(w, name, "weight", ndim=4, keep32=True)
    st, pd, dl = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{name}: groups={groups!r} must be a positive integer")
    N, C, H, W = x.shape
    O, Cg, R, S = w.shape
    if C % groups or O % groups:
        raise ValueError(f"{name}: groups={groups} must divide in_channels {C} and "
                         f"out_channels {O}")
    check_shape(C // groups, Cg, name, "x channels / groups vs weight in_channels")
    m = p.forward
    xq, sx = operand(x, p.activations, m.inputs, p, rng, carrier(m))
    wq, sw = operand(w, p.weights, m.inputs_b, p, rng, carrier(m))
    parts = [im2col(xq[:, g * Cg:(g + 1) * Cg], (R, S), st, pd, dl) for g in range(groups)]
    Ho, Wo = parts[0][1]
    cols = parts[0][0][None] if groups == 1 else \
        np.stack([c for c, _ in parts])                       # (G, N, Ho*Wo, Cg*R*S)
    Og = O // groups
    bq = None if b is None else p.weights.round(check_array(b, name, "bias", ndim=1),
                                                rng, p.weights.carrier)
    if bq is not None:
        check_shape(bq.shape[0], O, name, "bias vs out_channels")
    out = None
    for g in range(groups):
        A = cols[g].reshape(N * Ho * Wo, -1)                  # (N*Ho*Wo, Cg*R*S)
        Bm = wq[g * Og:(g + 1) * Og].reshape(Og, -1).T        # (Cg*R*S, Og)
        Cb = None if bq is None else np.broadcast_to(bq[g * Og:(g + 1) * Og], (A.shape[0], Og))
        Y = mm(A, Bm, m, C=Cb, c_fmt=p.weights.format, scale=sx * sw, rng=rng)
        if out is None:
            out = np.empty((N, O, Ho * Wo), Y.dtype)
        out[:, g * Og:(g + 1) * Og] = Y.reshape(N, Ho * Wo, Og).transpose(0, 2, 1)
    y = p.activations.round(out, rng, p.activations.carrier).reshape(N, O, Ho, Wo)
    return y, Conv2dCache(cols, sx, wq, sw, x.shape, st, pd, dl, groups, b is not None, p)


def _dilated_dy(dy, H, W, R, S, st, pd, dl):
    """dy (N, O, Ho, Wo) zero-dilated by the stride and shifted so that
    ``dx[h, w] = sum_{o, r', s'} Z[o, h + r' dl_h, w + s' dl_w] * w[o, c, R-1-r', S-1-s']``
    (Z of size (H + (R-1) dl_h, W + (S-1) dl_w))."""
    N, O, Ho, Wo = dy.shape
    Z = np.zeros((N, O, H + (R - 1) * dl[0], W + (S - 1) * dl[1]), dy.dtype)
    # position i of Z holds dy[j / st] for j = i - ((R-1) dl - pd), j % st == 0
    off_h = (R - 1) * dl[0] - pd[0]
    off_w = (S - 1) * dl[1] - pd[1]
    hi = off_h + st[0] * np.arange(Ho)
    wi = off_w + st[1] * np.arange(Wo)
    kh = (hi >= 0) & (hi < Z.shape[2])
    kw = (wi >= 0) & (wi < Z.shape[3])
    Z[:, :, hi[kh][:, None], wi[kw][None, :]] = dy[:, :, kh][:, :, :, kw]
    return Z


def conv2d_backward(dy, cache: Conv2dCache, rng=None, need_dx=True):
    """Gradients of :func:`conv2d_forward`: (dx (N, C, H, W), (dw, db)), gradient values
    (dx None when need_dx is False).

    Notes
    -----
    ``dw_g = rnd_g(model_gw(dy_g^T, cols_g))`` (K = N * Ho * Wo ordered (n, ho, wo)),
    ``db = rnd_g(model_gw(1^T, dy))`` over (n, ho, wo), and
    ``dx_g = rnd_g(model_gi(patches(Z_g), Wt_g))`` where Z is dy zero-dilated by the
    stride and padded (transposed convolution) and ``Wt[(o, r', s'), c] =
    w[o, c, R-1-r', S-1-s']``: each dx element is one reduction of length O/G * R * S
    (the inserted zeros add exact zeros).
    """
    p = cache.policy
    dy = values(dy)
    N, C, H, W = cache.x_shape
    O, Cg, R, S = cache.wq.shape
    G = cache.groups
    Og = O // G
    gi, gw = p.grad_input, p.grad_weight
    # weight gradient and bias gradient (dy as an operand of each model: once when the
    # two backward models take the same operand format)
    d, sd = operand(dy, p.gradients, gw.inputs, p, rng, carrier(gw))
    d_gw = (d, sd)
    cols, s_x = _reoperand(cache.cols, cache.sx, gw, p.activations, p, rng)
    Dall = d.transpose(0, 2, 3, 1).reshape(-1, O)              # dy (N*Ho*Wo, O)
    dw = [mm(Dall[:, g * Og:(g + 1) * Og].T, cols[g].reshape(-1, Cg * R * S), gw,
             scale=sd * s_x, rng=rng) for g in range(G)]
    g32 = p.gradients.carrier
    dw = p.gradients.round(np.concatenate(dw), rng, g32).reshape(O, Cg, R, S)
    db = None
    if cache.has_bias:
        db = p.gradients.round(mm(np.ones((1, Dall.shape[0])), Dall, _ones_model(gw),
                                  scale=sd, rng=rng)[0], rng, g32)
    if not need_dx:
        return None, (dw, db)
    # input gradient: transposed convolution as one GEMM per group
    d, sd = d_gw if (gw.inputs, carrier(gw)) == (gi.inputs, carrier(gi)) else \
        operand(dy, p.gradients, gi.inputs, p, rng, carrier(gi))
    wq, s_w = _reoperand(cache.wq, cache.sw, gi, p.weights, p, rng)
    Z = _dilated_dy(d, H, W, R, S, cache.stride, cache.padding, cache.dilation)
    wt = wq[:, :, ::-1, ::-1]                                   # (O, Cg, R, S) flipped
    dx = None
    for g in range(G):
        zc, _ = im2col(Z[:, g * Og:(g + 1) * Og], (R, S), 1, 0, cache.dilation)
        A = zc.reshape(N * H * W, Og * R * S)                   # K ordered (o, r', s')
        Bm = wt[g * Og:(g + 1) * Og].transpose(0, 2, 3, 1).reshape(Og * R * S, Cg)
        X = mm(A, Bm, gi, scale=sd * s_w, rng=rng)              # (N*H*W, Cg)
        if dx is None:
            dx = np.empty((N, C, H * W), X.dtype)
        dx[:, g * Cg:(g + 1) * Cg] = X.reshape(N, H * W, Cg).transpose(0, 2, 1)
    dx = p.gradients.round(dx, rng, g32).reshape(N, C, H, W)
    return dx, (dw, db)


def _forward_fits(p, fmt):
    """Whether fmt holds the values of both forward operand formats."""
    return _holds(p.forward.inputs, fmt) and _holds(p.forward.inputs_b, fmt)
