"""Numba kernels of the dynamic quantized Linear (speed twins of refcomp.quant.dynamic).

The specification is the float32-BLAS path of :func:`refcomp.quant.dynamic._gemm_u7s8`
(exact integer sums through sgemm in blocks below 2**24); tests/test_quant_dynamic.py runs
this kernel, that path and the integer GEMM model ``u8s8-int32-avx2`` on the same codes
and compares every element.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import CACHE

__all__ = ["gemm_u7s8_int8"]


@njit(cache=CACHE, nogil=True)
def gemm_u7s8_int8(xq, wt8, out):
    """``out[m, n] = sum_k xq[m, k] * wt8[k, n]`` with int32 accumulation.

    ``xq`` (M, K) int32 activation codes, ``wt8`` (K, N) int8 weight codes, ``out`` (M, N)
    int64.  The caller guarantees ``K * 127 * 128 < 2**31`` (codes in [0, 127] and
    [-128, 127]), so no partial sum overflows and the result is the exact integer sum.
    Four weight rows per pass keep the loads of ``wt8`` streaming (the kernel is bound by
    reading one byte per weight; a float32 GEMV reads four).
    """
    M, K = xq.shape
    N = wt8.shape[1]
    acc = np.empty(N, np.int32)
    K4 = K - K % 4
    for m in range(M):
        acc[:] = 0
        for k in range(0, K4, 4):
            x0, x1 = np.int32(xq[m, k]), np.int32(xq[m, k + 1])
            x2, x3 = np.int32(xq[m, k + 2]), np.int32(xq[m, k + 3])
            w0, w1, w2, w3 = wt8[k], wt8[k + 1], wt8[k + 2], wt8[k + 3]
            for n in range(N):
                acc[n] += np.int32(np.int32(x0 * np.int32(w0[n]))
                                   + np.int32(x1 * np.int32(w1[n]))
                                   + np.int32(x2 * np.int32(w2[n]))
                                   + np.int32(x3 * np.int32(w3[n])))
        for k in range(K4, K):
            xk = np.int32(xq[m, k])
            for n in range(N):
                acc[n] += np.int32(xk * np.int32(wt8[k, n]))
        for n in range(N):
            out[m, n] = acc[n]
