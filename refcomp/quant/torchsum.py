"""torch 2.13's float32 ``torch.sum`` on CPU, one thread (``aten/src/ATen/native/cpu/
SumKernel.cpp``: ``cascade_sum`` with ``multi_row_sum`` over vectors of `width` lanes),
emulated exactly: the LSQ scale and zero-point gradients are such sums.  Above 32768
elements torch splits the sum by its thread count; the emulation is that of one thread.
Every addition is an IEEE float32 addition (NumPy float32 arithmetic)."""

from __future__ import annotations

import numpy as np

from .fake_quant import F32, _x

__all__ = ["torch_sum_f32"]


def _multi_row_sum(rows):
    """``multi_row_sum`` of SumKernel.cpp on (size, nrows, W) float32: 4 cascade levels."""
    size, levels = rows.shape[0], 4
    power = max(4, (0 if size <= 1 else (size - 1).bit_length()) // levels)
    step, mask = 1 << power, (1 << power) - 1
    acc = np.zeros((levels,) + rows.shape[1:], F32)
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] = acc[0] + rows[i]                  # float32 adds
            i += 1
        for j in range(1, levels):
            acc[j] = acc[j] + acc[j - 1]
            acc[j - 1] = 0
            if i & (mask << (j * power)):
                break
    while i < size:
        acc[0] = acc[0] + rows[i]
        i += 1
    for j in range(1, levels):
        acc[0] = acc[0] + acc[j]
    return acc[0]


def _row_sum(items):
    """``row_sum`` with ilp_factor 4 on (n, W) float32 items."""
    n = items.shape[0]
    k = n // 4
    ps = _multi_row_sum(items[:4 * k].reshape(k, 4, items.shape[1])).copy()
    for i in range(4 * k, n):
        ps[0] = ps[0] + items[i]
    for j in range(1, 4):
        ps[0] = ps[0] + ps[j]
    return ps[0]


def torch_sum_f32(v, width=8):
    """torch's float32 ``sum`` of a contiguous vector on ONE thread (``cascade_sum``).

    Parameters
    ----------
    v : array_like of float32, summed in C order
    width : int
        ``Vectorized<float>::size()``: 8 for AVX2 and DEFAULT builds, 16 for AVX-512.

    Notes
    -----
    ``aten/src/ATen/native/cpu/SumKernel.cpp``: below `width` elements a scalar
    ``row_sum``; else ``n // width`` vectors through ``row_sum`` (4 interleaved cascades of
    4 levels), then the scalar tail and the lanes added in order; the result is added to a
    zero-filled output (``-0.0`` becomes ``+0.0``).  Above GRAIN_SIZE = 32768 elements torch
    splits the sum over its threads and the result depends on ``torch.get_num_threads()``;
    this is the one-thread result (``torch.set_num_threads(1)``).

    >>> float(torch_sum_f32(np.float32([1e8, 1, -1e8, 1])))
    1.0
    """
    x = np.ascontiguousarray(_x(v, "v")).reshape(-1)
    n = x.size
    if n == 0:
        return F32(0)
    if n < width:
        return F32(F32(0) + _row_sum(x.reshape(n, 1))[0])
    k = n // width
    lanes = _row_sum(x[:k * width].reshape(k, width))
    acc = F32(0)
    for t in x[k * width:]:
        acc = F32(acc + t)
    for t in lanes:
        acc = F32(acc + t)
    return F32(F32(0) + acc)


def _sum_except(v, axis, width):
    """``v.sum(all dims but axis)``: each channel's elements, in C order, by torch_sum_f32."""
    rows = np.moveaxis(v, axis, 0).reshape(v.shape[axis], -1)
    return np.array([torch_sum_f32(r, width) for r in rows], F32)
