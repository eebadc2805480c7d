"""Derived error bounds of elementwise layers, softmax and dropout: torch 2.13 CPU float32
kernels and refcomp's fp32 policy, each transcribed into :mod:`refcomp.crosscheck.nn_err`.

Every function returns ``(torch, ours)``, two :class:`~refcomp.crosscheck.nn_err.Bnd` with
the same exact value ``v`` (the layer's formula in real arithmetic on the float32 inputs)
and bounds on ``|torch - v|`` and ``|ours - v|``; ``|ours - torch| <= torch.e + ours.e``.

torch: the expression of the ATen kernel, operation by operation, in float32 (sources:
``aten/src/ATen/native/cpu/Activation.cpp`` (GELU, leaky ReLU), ``UnaryOpsKernel.cpp``
(sigmoid), ``BinaryOpsKernel.cpp`` (``sigmoid_backward``, ``tanh_backward``),
``SoftMaxKernel.cpp``, ``aten/src/ATen/native/Dropout.cpp``, and the vectorised erf of
``aten/src/ATen/cpu/vec/vec256/vec256_float.h``; read at pytorch/pytorch commits
02def0cd, 029586da and cyyever/pytorch 4b33b207).  Vectorised bodies and scalar tails
compute the same expression; library calls are bounded by ``F32.fn_ulps``.

ours: refcomp.nn's float64 expression (:mod:`refcomp.nn.activation`) in ``F64``, then one
rounding to float32 (``cast(F32, .)``: half an ulp plus ``2**-150``).
"""

from __future__ import annotations

import math

import numpy as np

from ..nn.activation import erf as erf64
from .nn_err import (F32, F64, Bnd, add, cast, const, div, erf, exact, exp, fma, log, mul,
                     neg, power, sub, sum_, tanh, where)

__all__ = ["leaky_relu", "gelu_erf", "gelu_tanh", "sigmoid", "tanh_", "softmax",
           "log_softmax", "dropout", "torch_erf_vec", "ERF_AS_7_1_26"]

#: Abramowitz & Stegun 7.1.26: |erf(x) - (1 - t (a1 + t (a2 + ... a5 t)) e^{-x^2})| <= 1.5e-7
#: for x >= 0, t = 1 / (1 + p x) (Handbook of Mathematical Functions, 1964, p. 299)
ERF_AS_7_1_26 = 1.5e-7
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_SQRT1_2 = 0.70710678118654752440          # M_SQRT1_2
_SQRT2 = 1.41421356237309504880            # M_SQRT2
_2_SQRTPI = 1.12837916709551257390         # M_2_SQRTPI
_KAPPA = 0.044715


def _one(f=F32):
    return const(f, 1.0)


def _c32(c, held=None, approx=1):
    return const(F32, c, approx=approx, held=held)


def torch_erf_vec(a: Bnd) -> Bnd:
    """``Vectorized<float>::erf`` (vec256_float.h): A&S 7.1.26 with float32 coefficients,
    ``t = 1 / fma(p, |x|, 1)``, Horner by FMAs, ``1 + (-exp(-x*x) t) r`` by one FMA, Sleef
    ``expf_u10``.  Bound: the operations' running bound at the exact argument plus the
    approximation error 1.5e-7 of the formula; v is erf itself."""
    ax = Bnd(np.abs(a.v), a.e)
    one = _one()
    t = div(F32, one, fma(F32, _c32(_AS_P), ax, one))
    r = _c32(_AS_A[4])
    for c in reversed(_AS_A[:4]):
        r = fma(F32, r, t, _c32(c))
    e = exp(F32, neg(mul(F32, ax, ax)))
    res = fma(F32, neg(mul(F32, e, t)), r, one)
    return Bnd(erf64(a.v), res.e + ERF_AS_7_1_26)


def _torch_erf(a: Bnd) -> Bnd:
    """erf of a float32 tensor element: the vectorised body (:func:`torch_erf_vec`) or, for a
    scalar tail, ``std::erf(float)`` within ``fn_ulps``; the larger bound."""
    vec = torch_erf_vec(a)
    lib = erf(F32, a, vec.v)
    return Bnd(vec.v, np.maximum(vec.e, lib.e))


def leaky_relu(x, dy, slope):
    """y = x (x > 0) else x s; dx = dy (x > 0) else dy s.  torch: ``a * blendv(negval, 1)``
    with ``negval = float(slope)`` (one rounding of the slope, one of the product); ours:
    ``rnd(x * s)`` with the float64 slope.  Returns ((y_t, y_o), (dx_t, dx_o))."""
    out = []
    for z in (x, dy):
        z = exact(z)
        pos = x > 0
        t = where(pos, z, mul(F32, z, _c32(slope, approx=0)))
        o = where(pos, z, cast(F32, mul(F64, z, const(F64, slope))))
        out.append((t, o))
    return out


def gelu_erf(x, dy):
    """GELU, erf form.  torch: ``x * 0.5 * (1 + erf(x * float(M_SQRT1_2)))``; backward
    ``dy * (0.5 (1 + erf(x a)) + x * kBeta * exp(x * x * -0.5))``, kBeta =
    float(M_2_SQRTPI M_SQRT1_2 0.5).  ours: the same in float64 with C99 erf, one rounding.
    Returns ((y_t, y_o), (dx_t, dx_o))."""
    X = exact(x)
    a32 = mul(F32, X, _c32(_SQRT1_2))
    cdf32 = add(F32, _one(), _torch_erf(a32))
    y_t = mul(F32, mul(F32, X, const(F32, 0.5)), cdf32)
    a64 = mul(F64, X, const(F64, _SQRT1_2, approx=1))
    cdf64 = add(F64, _one(F64), erf(F64, a64, erf64(a64.v)))
    y_o = cast(F32, mul(F64, mul(F64, const(F64, 0.5), X), cdf64))
    # backward
    D = exact(dy)
    beta = 1.0 / math.sqrt(2.0 * math.pi)
    pdf32 = mul(F32, _c32(beta, held=np.float32(_2_SQRTPI * _SQRT1_2 * 0.5), approx=4),
                exp(F32, mul(F32, mul(F32, X, X), const(F32, -0.5))))
    d32 = add(F32, mul(F32, const(F32, 0.5), cdf32), mul(F32, X, pdf32))
    dx_t = mul(F32, D, d32)
    pdf64 = mul(F64, mul(F64, X, const(F64, beta, approx=4)),
                exp(F64, mul(F64, mul(F64, const(F64, -0.5), X), X)))
    d64 = add(F64, mul(F64, const(F64, 0.5), cdf64), pdf64)
    dx_o = cast(F32, mul(F64, D, d64))
    return (y_t, y_o), (dx_t, dx_o)


def _inner(f, X, beta, kappa):
    """beta * (x + kappa * x**3) (torch: ``x * x * x``; ours: ``x ** 3`` by pow)."""
    cube = mul(f, mul(f, X, X), X) if f is F32 else power(f, X, 3)
    return mul(f, beta, add(f, X, mul(f, kappa, cube)))


def gelu_tanh(x, dy):
    """GELU, tanh form.  torch: ``0.5 * x * (1 + tanh(kBeta (x + kKappa x*x*x)))`` with
    float constants kBeta = float(M_SQRT2 M_2_SQRTPI 0.5), kKappa = float(0.044715); its
    backward ``dy * (0.5 (1 + t) + 0.5 x (1 - t t) kBeta (1 + 3 kKappa x x))`` in that
    operation order.  ours: the same formula in float64.  Returns ((y_t, y_o), (dx_t, dx_o))."""
    X, D = exact(x), exact(dy)
    k = math.sqrt(2.0 / math.pi)
    beta32 = _c32(k, held=np.float32(_SQRT2 * _2_SQRTPI * 0.5), approx=2)
    kap32 = _c32(_KAPPA)
    t32 = tanh(F32, _inner(F32, X, beta32, kap32))
    half = const(F32, 0.5)
    y_t = mul(F32, mul(F32, half, X), add(F32, _one(), t32))
    beta64, kap64 = const(F64, k, approx=2), const(F64, _KAPPA, approx=1)
    t64 = tanh(F64, _inner(F64, X, beta64, kap64))
    y_o = cast(F32, mul(F64, mul(F64, half, X), add(F64, _one(F64), t64)))
    # backward: left' = 0.5 (1 + t); right' = (0.5 x) (1 - t t) (kBeta (1 + (3 kKappa) x x))
    three_k = mul(F32, const(F32, 3.0), kap32)
    ider = mul(F32, beta32, add(F32, _one(), mul(F32, three_k, mul(F32, X, X))))
    rder = mul(F32, mul(F32, mul(F32, half, X), sub(F32, _one(), mul(F32, t32, t32))), ider)
    dx_t = mul(F32, D, add(F32, mul(F32, half, add(F32, _one(), t32)), rder))
    three_k64 = mul(F64, const(F64, 3.0), kap64)
    ider64 = add(F64, _one(F64), mul(F64, mul(F64, three_k64, X), X))
    rder64 = mul(F64, mul(F64, mul(F64, mul(F64, half, X), sub(F64, _one(F64),
                                                                 mul(F64, t64, t64))),
                          beta64), ider64)
    d64 = add(F64, mul(F64, half, add(F64, _one(F64), t64)), rder64)
    dx_o = cast(F32, mul(F64, D, d64))
    return (y_t, y_o), (dx_t, dx_o)


def sigmoid(x, dy, y):
    """torch: ``(1 + exp(-x)).reciprocal()``; backward ``dy * (1 - y) * y`` on OUR cached y.
    ours: ``1 / (1 + e)`` or ``e / (1 + e)``, e = exp(-|x|); ``dy (1 - y) y``.
    Returns ((y_t, y_o), (dx_t, dx_o))."""
    X, D, Y = exact(x), exact(dy), exact(y)
    one = _one()
    y_t = div(F32, one, add(F32, one, exp(F32, neg(X))))
    e = exp(F64, Bnd(-np.abs(X.v), X.e))
    den = add(F64, _one(F64), e)
    y_o = cast(F32, where(x >= 0, div(F64, _one(F64), den), div(F64, e, den)))
    dx_t = mul(F32, mul(F32, D, sub(F32, one, Y)), Y)
    dx_o = cast(F32, mul(F64, mul(F64, D, sub(F64, _one(F64), Y)), Y))
    return (y_t, y_o), (dx_t, dx_o)


def tanh_(x, dy, y):
    """torch: library tanh (Sleef / MKL VML); backward ``dy * (1 - y * y)`` on OUR y.
    ours: np.tanh, ``dy (1 - y y)``.  Returns ((y_t, y_o), (dx_t, dx_o))."""
    X, D, Y = exact(x), exact(dy), exact(y)
    y_t, y_o = tanh(F32, X), cast(F32, tanh(F64, X))
    dx_t = mul(F32, D, sub(F32, _one(), mul(F32, Y, Y)))
    dx_o = cast(F32, mul(F64, D, sub(F64, _one(F64), mul(F64, Y, Y))))
    return (y_t, y_o), (dx_t, dx_o)


def _shift(x, axis):
    return exact(x - np.max(x, axis=axis, keepdims=True))     # x - max, rounded below


def softmax(x, dy, y, axis, lastdim):
    """torch, last dim: ``e = exp(x - max)``, ``s = sum e``, ``y = e * (1 / s)``; other dims:
    ``y = e / s``.  Backward (``_softmax_backward_data`` on OUR y): ``y * (dy - sum(dy * y))``.
    ours: ``e / sum(e)``; ``y * (dy - sum(dy * y))``.  Returns ((y_t, y_o), (dx_t, dx_o))."""
    X = exact(x)
    mx = exact(np.max(x, axis=axis, keepdims=True))
    out = []
    for f in (F32, F64):
        e = exp(f, sub(f, X, mx))
        s = sum_(f, e, axis=axis, keepdims=True)
        if f is F32 and lastdim:
            out.append(mul(f, e, div(f, _one(f), s)))
        else:
            out.append(div(f, e, s))
    D, Y = exact(dy), exact(y)
    dx = []
    for f in (F32, F64):
        s = sum_(f, mul(f, D, Y), axis=axis, keepdims=True)
        dx.append(mul(f, Y, sub(f, D, s)))
    return (out[0], cast(F32, out[1])), (dx[0], cast(F32, dx[1]))


def log_softmax(x, dy, y, axis):
    """torch: ``x - max - log(sum exp(x - max))`` (left to right, as the kernel insists);
    backward (``_log_softmax_backward_data`` on OUR y): ``dy - exp(y) * sum(dy)``.
    ours: ``z - log(sum exp z)``, z = x - max; ``dy - exp(y) sum(dy)``.
    Returns ((y_t, y_o), (dx_t, dx_o))."""
    X = exact(x)
    mx = exact(np.max(x, axis=axis, keepdims=True))
    D, Y = exact(dy), exact(y)
    out, dx = [], []
    for f in (F32, F64):
        z = sub(f, X, mx)
        lse = log(f, sum_(f, exp(f, z), axis=axis, keepdims=True))
        out.append(sub(f, z, lse))
        dx.append(sub(f, D, mul(f, exp(f, Y), sum_(f, D, axis=axis, keepdims=True))))
    return (out[0], cast(F32, out[1])), (dx[0], cast(F32, dx[1]))


def dropout(x, dy, keep, p):
    """torch (Dropout.cpp ``_dropout_impl``): ``noise = mask.div_(1 - p)`` (the divisor the
    double 1 - p converted to float, one rounding of the quotient), ``y = x * noise``,
    ``dx = dy * noise``.  ours: ``rnd(x * s)`` with s = 1 / (1 - p) in float64.  Exact when
    torch's noise equals 1 / (1 - p) and ours holds it exactly.
    Returns ((y_t, y_o), (dx_t, dx_o))."""
    q = 1.0 - p
    s_exact = 1.0 / q
    noise = div(F32, _one(), const(F32, q, approx=1))             # q: double 1 - p
    noise = Bnd(np.float64(s_exact), noise.e + 2.0 * 2.0 ** -53 * s_exact)
    s64 = const(F64, s_exact, approx=2)                              # two float64 roundings
    out = []
    for z in (x, dy):
        Z = exact(z)
        zero = exact(np.zeros_like(Z.v))
        out.append((where(keep, mul(F32, Z, noise), zero),
                    where(keep, cast(F32, mul(F64, Z, s64)), zero)))
    return out
