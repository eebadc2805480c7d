"""2-D convolution as a GEMM under an accumulation model (im2col).

``conv2d`` lowers the convolution to :func:`refcomp.ops.matmul`: every output pixel is a
dot product along K = (C_in / groups) * kh * kw, in the order (channel, kernel row,
kernel column) -- the row-major order of a weight ``w[c_out, c_in, r, s]`` -- so the
model's order, chunks and block scales apply along that K.  Zero padding adds +0 terms.
The bias, when given, is the initial accumulator value (the GEMM's C), so it is added
first, exactly, and takes part in the accumulator's roundings; it must be a value of the
accumulator format (of the outer accumulator for blocked / split-K models).
"""

from __future__ import annotations

import numpy as np

from .. import _jit
from .accum import matmul

__all__ = ["conv2d", "im2col"]


def _pair(v, what):
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, np.integer))
                          for x in t):
        raise ValueError(f"{what}={v!r} must be an int or a pair of ints")
    return int(t[0]), int(t[1])


def im2col(x, kernel, stride=1, padding=0, dilation=1):
    """Patches of x (N, C, H, W) as (N, H_out * W_out, C * kh * kw), K ordered (c, r, s).

    Values are copied exactly; padding is +0.  A Numba kernel does the copy for float32
    and float64 arrays when JIT is enabled (the NumPy loop below is its twin).
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"conv2d input must be (N, C, H, W), got shape {x.shape}")
    kh, kw = _pair(kernel, "kernel")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"stride {stride!r} and dilation {dilation!r} must be >= 1, "
                         f"padding {padding!r} >= 0")
    n, c, h, w = x.shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel ({kh}, {kw}) with dilation ({dh}, {dw}) does not fit the "
                         f"padded input ({h + 2 * ph}, {w + 2 * pw})")
    xp = x if ph == pw == 0 else np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    if _jit.enabled() and x.dtype in (np.float32, np.float64):
        from .._jit.nn_kernels import im2col_kernel
        cols = im2col_kernel(np.ascontiguousarray(xp), kh, kw, sh, sw, dh, dw, ho, wo)
        return cols, (ho, wo)
    # one strided copy per kernel tap into (n, ho, wo, c, kh, kw): the patch matrix is
    # contiguous with K ordered (c, r, s)
    cols = np.empty((n, ho, wo, c, kh, kw), dtype=xp.dtype)
    for r in range(kh):
        for s in range(kw):
            r0, s0 = r * dh, s * dw
            cols[:, :, :, :, r, s] = xp[:, :, r0:r0 + sh * (ho - 1) + 1:sh,
                                        s0:s0 + sw * (wo - 1) + 1:sw].transpose(0, 2, 3, 1)
    return cols.reshape(n, ho * wo, c * kh * kw), (ho, wo)


def conv2d(x, w, model, *, bias=None, stride=1, padding=0, dilation=1, groups=1,
           rng=None) -> np.ndarray:
    """Cross-correlation as torch.nn.functional.conv2d defines it, computed by `model`.

    Parameters
    ----------
    x : array_like (N, C_in, H, W)       values of ``model.inputs``
    w : array_like (C_out, C_in / groups, kh, kw)   values of ``model.inputs_b``
    model : AccumulationModel, TensorCoreModel or a preset name
    bias : array_like (C_out,), optional  initial accumulator value (see module docstring)
    stride, padding, dilation : int or (int, int)
    groups : int
    rng : numpy.random.Generator, for stochastic models

    Returns
    -------
    (N, C_out, H_out, W_out) float64 values (int64 for integer models).
    """
    x = np.asarray(x)
    w = np.asarray(w)
    if w.ndim != 4:
        raise ValueError(f"conv2d weight must be (C_out, C_in / groups, kh, kw), got shape "
                         f"{w.shape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups={groups!r} must be a positive int")
    if x.ndim != 4:
        raise ValueError(f"conv2d input must be (N, C, H, W), got shape {x.shape}")
    co, cig, kh, kw = w.shape
    if x.shape[1] != cig * groups or co % groups:
        raise ValueError(f"channels do not match: input has {x.shape[1]}, weight expects "
                         f"{cig} x groups={groups}, C_out={co} must divide by groups")
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (co,):
            raise ValueError(f"bias must have shape ({co},), got {bias.shape}")
    cog = co // groups
    outs = []
    for g in range(groups):
        cols, (ho, wo) = im2col(x[:, g * cig:(g + 1) * cig], (kh, kw), stride, padding,
                                dilation)
        wm = w[g * cog:(g + 1) * cog].reshape(cog, -1).T          # (K, C_out / groups)
        C = None if bias is None else np.broadcast_to(bias[g * cog:(g + 1) * cog],
                                                      (cols.shape[1], cog))
        outs.append(matmul(cols, wm, model, C=C, rng=rng))         # (N, HW, cog)
    y = np.concatenate(outs, axis=-1)                              # (N, HW, C_out)
    return y.transpose(0, 2, 1).reshape(x.shape[0], co, ho, wo)
