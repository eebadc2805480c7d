"""Pooling and flatten: forward / backward pairs (NCHW, torch.nn.functional semantics).

Max pooling is exact (it selects); its backward routes each ``dy`` to the first maximum of
its window in (r, s) scan order (torch's CPU kernel keeps the first maximum: it replaces
only on ``val > max``), contributions of overlapping windows summed in float64 and rounded
once.  Average pooling sums its window in float64 and rounds ``sum / divisor`` once
(``divisor = R * S`` with ``count_include_pad``, else the number of input elements in the
window).  ``ceil_mode=True`` is not modelled (ValueError).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _jit
from ..ops.conv import _pair
from ._check import check_array, values
from .policy import Policy, get_policy

__all__ = ["PoolCache", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
           "avg_pool2d_backward", "adaptive_avg_pool2d_forward",
           "adaptive_avg_pool2d_backward", "flatten_forward", "flatten_backward"]


class PoolCache(NamedTuple):
    """What a pooling backward reads."""

    x_shape: tuple
    index: object           # max: flat input index per output (N, C, Ho, Wo); avg: windows
    weight: object          # avg: divisor per output (Ho, Wo); max: windows overlap
    policy: Policy


def _geometry(x, kernel, stride, padding, dilation, ceil_mode, name):
    if ceil_mode:
        raise ValueError(f"{name}: ceil_mode=True is not modelled")
    R, S = _pair(kernel, "kernel_size")
    st = (R, S) if stride is None else _pair(stride, "stride")
    pd, dl = _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(R, S, *st, *dl) < 1 or min(pd) < 0:
        raise ValueError(f"{name}: kernel {kernel!r}, stride {stride!r}, dilation "
                         f"{dilation!r} must be >= 1 and padding {padding!r} >= 0")
    if pd[0] > R // 2 or pd[1] > S // 2:
        raise ValueError(f"{name}: padding {pd} must be at most half the kernel {(R, S)}")
    H, W = x.shape[2], x.shape[3]
    Ho = (H + 2 * pd[0] - dl[0] * (R - 1) - 1) // st[0] + 1
    Wo = (W + 2 * pd[1] - dl[1] * (S - 1) - 1) // st[1] + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{name}: kernel {(R, S)} does not fit the input {x.shape}")
    return R, S, st, pd, dl, Ho, Wo


def _windows(H, W, R, S, st, pd, dl, Ho, Wo):
    """Row and column input indices (Ho, Wo, R, S) of every window element (may be
    outside [0, H) x [0, W): padding)."""
    hi = (np.arange(Ho) * st[0] - pd[0])[:, None] + np.arange(R) * dl[0]      # (Ho, R)
    wi = (np.arange(Wo) * st[1] - pd[1])[:, None] + np.arange(S) * dl[1]      # (Wo, S)
    return (np.broadcast_to(hi[:, None, :, None], (Ho, Wo, R, S)),
            np.broadcast_to(wi[None, :, None, :], (Ho, Wo, R, S)))


def _gather(x, hi, wi, fill):
    """x (N, C, H, W) at (hi, wi) (Ho, Wo, R, S), `fill` outside: (N, C, Ho, Wo, R*S)."""
    N, C, H, W = x.shape
    inside = (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
    flat = np.where(inside, np.clip(hi, 0, H - 1) * W + np.clip(wi, 0, W - 1), 0)
    v = x.reshape(N, C, H * W)[:, :, flat.reshape(-1)].reshape(N, C, *hi.shape)
    v = np.where(inside, v, fill)
    return v.reshape(N, C, hi.shape[0], hi.shape[1], -1), flat.reshape(*hi.shape[:2], -1), \
        inside.reshape(*hi.shape[:2], -1)


def _max_taps(x, R, S, st, dl, pd, Ho, Wo):
    """NumPy twin of the max-pool kernel: window maxima and the flat input index
    ``row * W + col`` of each window's first maximum among its input elements (-1 for a
    window without one)."""
    N, C, H, W = x.shape
    y = np.full((N, C, Ho, Wo), -np.inf, x.dtype)
    k = np.full((N, C, Ho, Wo), -1, np.int64)
    for r in range(R):                              # taps in (r, s) scan order
        hh = np.arange(Ho) * st[0] - pd[0] + r * dl[0]
        for s in range(S):
            ww = np.arange(Wo) * st[1] - pd[1] + s * dl[1]
            inb = ((hh >= 0) & (hh < H))[:, None] & ((ww >= 0) & (ww < W))[None, :]
            v = x[:, :, np.clip(hh, 0, H - 1)][:, :, :, np.clip(ww, 0, W - 1)]
            take = inb & ((k < 0) | (v > y))        # strictly greater: the first max stays
            y = np.where(take, v, y)
            k = np.where(take, hh[:, None] * W + ww[None, :], k)
    return y, k


def max_pool2d_forward(x, policy, kernel_size, stride=None, padding=0, dilation=1,
                       ceil_mode=False, rng=None, name="max_pool2d"):
    """Max over each window's input elements (as torch's CPU kernel: padding is never
    chosen; a window whose elements are all -inf routes its gradient to the first).
    Returns (y (N, C, Ho, Wo), PoolCache).

    >>> import numpy as np
    >>> max_pool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4), "fp32", 2)[0][0, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    p = get_policy(policy)
    x = p.activations.round(check_array(x, name, "x", ndim=4, keep32=True), rng,
                            p.activations.carrier)
    R, S, st, pd, dl, Ho, Wo = _geometry(x, kernel_size, stride, padding, dilation,
                                         ceil_mode, name)
    if _jit.enabled() and (R, S) == st == (2, 2) and pd == (0, 0) and dl == (1, 1):
        from .._jit.nn_kernels import max_pool_2x2
        y, src = max_pool_2x2(np.ascontiguousarray(x))
    elif _jit.enabled():
        from .._jit.nn_kernels import max_pool_taps
        xp = x if pd == (0, 0) else np.pad(x, ((0, 0), (0, 0), (pd[0], pd[0]),
                                               (pd[1], pd[1])), constant_values=-np.inf)
        y, src = max_pool_taps(np.ascontiguousarray(xp), R, S, st[0], st[1], dl[0], dl[1],
                               pd[0], pd[1], x.shape[2], x.shape[3], Ho, Wo)
    else:
        y, src = _max_taps(x, R, S, st, dl, pd, Ho, Wo)
    if src.size and src.min() < 0:
        raise ValueError(f"{name}: a window of kernel {(R, S)}, dilation {dl}, padding {pd} "
                         f"holds no element of the input {x.shape}")
    overlap = st[0] < dl[0] * (R - 1) + 1 or st[1] < dl[1] * (S - 1) + 1
    return y, PoolCache(x.shape, src, overlap, p)


def max_pool2d_backward(dy, cache: PoolCache, rng=None):
    """dx: each dy routed to its window's first maximum (disjoint windows: a copy, in dy's
    carrier; overlapping windows: contributions summed in float64 and rounded once)."""
    N, C, H, W = cache.x_shape
    dy = values(dy)
    acc = bool(cache.weight)                        # overlapping windows: accumulate
    if acc:
        dy = dy.astype(np.float64, copy=False)
    dx = np.zeros((N * C, H * W), dy.dtype)
    idx = cache.index.reshape(N * C, -1)
    d2 = dy.reshape(N * C, -1)
    if _jit.enabled():
        from .._jit.nn_kernels import scatter_rows
        scatter_rows(dx, np.ascontiguousarray(idx), np.ascontiguousarray(d2), acc)
    elif acc:
        rows = np.repeat(np.arange(N * C), idx.shape[1])
        np.add.at(dx, (rows, idx.reshape(-1)), d2.reshape(-1))
    else:                                           # disjoint windows: one value each
        np.put_along_axis(dx, idx, d2, axis=1)
    g = cache.policy.gradients
    return g.round(dx.reshape(N, C, H, W), rng, g.carrier), ()


def avg_pool2d_forward(x, policy, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, rng=None,
                       name="avg_pool2d"):
    """Mean over each window: ``rnd_act(sum / divisor)``.  Returns (y, PoolCache)."""
    p = get_policy(policy)
    x = p.activations.round(check_array(x, name, "x", ndim=4), rng)
    R, S, st, pd, dl, Ho, Wo = _geometry(x, kernel_size, stride, padding, 1, ceil_mode, name)
    hi, wi = _windows(x.shape[2], x.shape[3], R, S, st, pd, dl, Ho, Wo)
    v, flat, inside = _gather(x, hi, wi, 0.0)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, int) or \
                divisor_override < 1:
            raise ValueError(f"{name}: divisor_override={divisor_override!r} must be a "
                             "positive integer")
        div = np.full((Ho, Wo), float(divisor_override))
    elif count_include_pad:
        div = np.full((Ho, Wo), float(R * S))
    else:
        div = inside.sum(axis=-1).astype(np.float64)
    y = p.activations.round(v.sum(axis=-1) / div, rng)
    return y, PoolCache(x.shape, (flat, inside), div, p)


def avg_pool2d_backward(dy, cache: PoolCache, rng=None):
    """dx: ``dy / divisor`` added to every input element of the window (float64, one
    rounding)."""
    N, C, H, W = cache.x_shape
    flat, inside = cache.index
    dy = np.asarray(dy, np.float64) / cache.weight                 # (N, C, Ho, Wo)
    Ho, Wo, RS = flat.shape
    dx = np.zeros((N * C, H * W))
    contrib = np.broadcast_to(dy.reshape(N * C, Ho, Wo, 1), (N * C, Ho, Wo, RS))
    cols = np.broadcast_to(flat, (N * C, Ho, Wo, RS))
    mask = np.broadcast_to(inside, (N * C, Ho, Wo, RS))
    rows = np.broadcast_to(np.arange(N * C)[:, None, None, None], cols.shape)
    np.add.at(dx, (rows[mask], cols[mask]), contrib[mask])
    return cache.policy.gradients.round(dx.reshape(N, C, H, W), rng), ()


def adaptive_avg_pool2d_forward(x, policy, output_size, rng=None,
                                name="adaptive_avg_pool2d"):
    """Adaptive average pooling: output cell i covers input rows
    ``floor(i H / Ho) .. ceil((i + 1) H / Ho) - 1`` (torch's start/end index rule), and
    likewise for columns.  Returns (y (N, C, Ho, Wo), PoolCache)."""
    p = get_policy(policy)
    x = p.activations.round(check_array(x, name, "x", ndim=4), rng)
    Ho, Wo = _pair(output_size, "output_size")
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{name}: output_size={output_size!r} must be positive")
    H, W = x.shape[2], x.shape[3]
    rows = [((i * H) // Ho, -((-(i + 1) * H) // Ho)) for i in range(Ho)]
    cols = [((j * W) // Wo, -((-(j + 1) * W) // Wo)) for j in range(Wo)]
    y = np.empty(x.shape[:2] + (Ho, Wo))
    for i, (a, b) in enumerate(rows):
        for j, (c, d) in enumerate(cols):
            y[:, :, i, j] = x[:, :, a:b, c:d].sum(axis=(2, 3)) / ((b - a) * (d - c))
    return p.activations.round(y, rng), PoolCache(x.shape, (rows, cols), None, p)


def adaptive_avg_pool2d_backward(dy, cache: PoolCache, rng=None):
    """dx: ``dy / cell size`` added over each cell (float64, one rounding)."""
    dy = np.asarray(dy, np.float64)
    rows, cols = cache.index
    dx = np.zeros(cache.x_shape)
    for i, (a, b) in enumerate(rows):
        for j, (c, d) in enumerate(cols):
            dx[:, :, a:b, c:d] += (dy[:, :, i, j] / ((b - a) * (d - c)))[:, :, None, None]
    return cache.policy.gradients.round(dx, rng), ()


def flatten_forward(x, policy, start_dim=1, end_dim=-1, rng=None, name="flatten"):
    """Reshape dims start_dim..end_dim into one (exact).  Returns (y, PoolCache)."""
    p = get_policy(policy)
    x = p.activations.round(check_array(x, name, "x", min_ndim=1, keep32=True), rng,
                            p.activations.carrier)
    s, e = start_dim % x.ndim, end_dim % x.ndim
    if s > e:
        raise ValueError(f"{name}: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return x.reshape(shape), PoolCache(x.shape, None, None, p)


def flatten_backward(dy, cache: PoolCache, rng=None):
    """dx = dy reshaped back."""
    return values(dy).reshape(cache.x_shape), ()
