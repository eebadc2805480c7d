"""Running error bounds: a rigorous forward error analysis carried along a transcribed kernel.

A :class:`Bnd` pairs the exact (real-arithmetic) value ``v`` of an intermediate of a
kernel -- evaluated in float64 -- with a bound ``e`` on ``|computed - v|``.  Each operation
below takes the :class:`Fmt` the backend computes it in and returns the bound of its
rounded result, from the bounds of its operands, by the standard model (Higham, *Accuracy
and Stability of Numerical Algorithms*, 2nd ed., 2002, eq. (2.8)):
``fl(x op y) = (x op y)(1 + d) + h``, ``|d| <= u``, ``|h| <= eta`` (``h = 0`` for additions,
exact in the subnormal range), so that for operands ``a = v_a + E_a``, ``b = v_b + E_b``

* ``a + b``: ``E_a + E_b + u (|v_a + v_b| + E_a + E_b)``;
* ``a * b``: ``E_p + u (|v_a v_b| + E_p) + eta``, ``E_p = |v_a| E_b + |v_b| E_a + E_a E_b``;
* ``a / b``: ``E_q + u (|v_a / v_b| + E_q) + eta``, ``E_q = (E_a + |v_a / v_b| E_b) /
  (|v_b| - E_b)`` (infinite when ``E_b >= |v_b|``);
* a library function ``F`` (exp, log, tanh, erf) within ``k`` ulps: the exact propagation
  ``|F(x + E) - F(x)|`` bounded by the function's monotonicity or the largest derivative on
  ``[x - E, x + E]``, plus ``k (2u |F| + s)`` with ``s`` the smallest subnormal (one ulp of a
  normal ``y`` is at most ``2u |y|``, of a subnormal ``s``);
* a sum of ``n`` terms in ANY order: ``sum E_i + gamma_{n-1} sum (|v_i| + E_i)``
  (Higham, Lemma 3.1 and eq. (4.4)), so a blocked, vectorised or cascade summation is covered;
* an expression ``a * b + c`` written as two operations is bounded unfused
  (:func:`muladd`): the unfused bound exceeds the fused one, so it also covers a compiler
  contracting the pair into an FMA (GCC's default ``-ffp-contract=fast``); explicit FMAs
  (``_mm256_fmadd_ps``) use :func:`fma`.

Nothing is first-order: every product of errors is kept, so ``e`` is a bound, not an
estimate.  The only approximation is that the bound's own terms are evaluated in float64
from float64 approximations of the exact intermediates (relative error below ``2**-40``,
far below the ``2**-24`` terms); callers enlarge the final bound by ``1 + 2**-20``.

>>> x = exact(np.array([1.0, 3.0]))
>>> s = add(F32, x, const(F32, 0.1, approx=1))
>>> bool((s.e > 0).all() and (s.e < 2.0 ** -21).all())
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, NamedTuple

import numpy as np

from ..bounds import gamma

__all__ = ["Fmt", "F32", "F64", "Bnd", "exact", "const", "ratio_const", "neg", "add", "sub",
           "mul", "div", "fma", "muladd", "sqrt", "exp", "log", "tanh", "erf", "power", "sum_",
           "cast", "where", "SAFETY"]

#: enlargement of a final bound for its own float64 evaluation (module docstring)
SAFETY = 1.0 + 2.0 ** -20


@dataclass(frozen=True)
class Fmt:
    """An IEEE binary format as a kernel computes in it (round to nearest even)."""

    name: str
    u: float                 # unit roundoff
    eta: float               # underflow error of one product / quotient rounding
    tiny: float              # smallest subnormal (one ulp in the subnormal range)
    fn_ulps: float           # error of one library transcendental, in ulps of its result
    round: Callable          # float64 values -> values of the format (for constants)


def _f32(x):
    return np.asarray(x, np.float64).astype(np.float32).astype(np.float64)


#: float32 with library transcendentals within 2 ulps: Sleef ``*_u10`` (1.0 ulp), MKL VML
#: HA (at most 1 ulp), glibc's float functions used by scalar tails (at most 2 ulps on
#: x86_64, glibc manual "Known Maximum Errors in Math Functions")
F32 = Fmt("float32", 2.0 ** -24, 2.0 ** -150, 2.0 ** -149, 2.0, _f32)
#: float64 as NumPy evaluates refcomp's formulas; transcendentals within 4 ulps (NumPy's
#: SVML / libm float64 kernels; glibc's double functions are within 1-2 ulps)
F64 = Fmt("float64", 2.0 ** -53, 2.0 ** -1075, 2.0 ** -1074, 4.0,
          lambda x: np.asarray(x, np.float64))


class Bnd(NamedTuple):
    """An exact value (float64 evaluation) and a bound on |computed - exact|."""

    v: np.ndarray
    e: np.ndarray


def exact(x) -> Bnd:
    """An input the kernel reads exactly (a value of its format)."""
    x = np.asarray(x, np.float64)
    return Bnd(x, np.zeros_like(x))


def const(f: Fmt, c, approx=0, held=None) -> Bnd:
    """The constant c (a float64, or a Fraction) as the kernel holds it in format f.

    ``held``: the value the kernel actually holds when it is not ``f.round(c)`` (a constant
    computed in double and then converted); ``approx = k`` when c itself is a float64
    approximation of a real constant within ``k 2**-53 |c|`` (1 for a rounded literal)."""
    if isinstance(c, Fraction):
        v = float(c)
        hv = float(f.round(v)) if held is None else float(held)
        err = abs(Fraction(hv) - c)
        return Bnd(np.float64(v), np.float64(math.nextafter(float(err), math.inf)
                                             if err else 0.0))
    v = np.float64(c)
    hv = np.float64(f.round(v) if held is None else held)
    return Bnd(v, np.float64(abs(hv - v) + approx * 2.0 ** -53 * abs(v)))


def ratio_const(f: Fmt, p: int, q: int) -> Bnd:
    """The quotient p / q of two integers as one correctly rounded division in f."""
    return const(f, Fraction(p, q))


def _round(f, v, ei, under=True):
    return ei + f.u * (np.abs(v) + ei) + (f.eta if under else 0.0)


def neg(a: Bnd) -> Bnd:
    return Bnd(-a.v, a.e)


def add(f: Fmt, a: Bnd, b: Bnd) -> Bnd:
    v = a.v + b.v
    return Bnd(v, _round(f, v, a.e + b.e, under=False))


def sub(f: Fmt, a: Bnd, b: Bnd) -> Bnd:
    return add(f, a, neg(b))


def _prod(a, b):
    return a.v * b.v, np.abs(a.v) * b.e + np.abs(b.v) * a.e + a.e * b.e


def mul(f: Fmt, a: Bnd, b: Bnd) -> Bnd:
    v, ei = _prod(a, b)
    return Bnd(v, _round(f, v, ei))


def fma(f: Fmt, a: Bnd, b: Bnd, c: Bnd) -> Bnd:
    """A fused multiply-add: one rounding of a * b + c."""
    p, ei = _prod(a, b)
    v = p + c.v
    return Bnd(v, _round(f, v, ei + c.e))


def muladd(f: Fmt, a: Bnd, b: Bnd, c: Bnd) -> Bnd:
    """``a * b + c`` written as two operations (also bounds their contraction to an FMA)."""
    return add(f, mul(f, a, b), c)


def div(f: Fmt, a: Bnd, b: Bnd) -> Bnd:
    v = a.v / b.v
    den = np.abs(b.v) - b.e
    with np.errstate(divide="ignore", invalid="ignore"):
        ei = np.where(den > 0, (a.e + np.abs(v) * b.e) / np.where(den > 0, den, 1.0), np.inf)
    return Bnd(v, _round(f, v, ei))


def sqrt(f: Fmt, a: Bnd) -> Bnd:
    """Correctly rounded square root of a non-negative value."""
    v = np.sqrt(a.v)
    lo = np.sqrt(np.maximum(a.v - a.e, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ei = np.where(v + lo > 0, a.e / (v + lo), np.sqrt(a.e))
    return Bnd(v, _round(f, v, ei))


def _fn(f, v, ei):
    return Bnd(v, ei + f.fn_ulps * (2.0 * f.u * (np.abs(v) + ei) + f.tiny))


def exp(f: Fmt, a: Bnd) -> Bnd:
    v = np.exp(a.v)
    return _fn(f, v, v * np.expm1(a.e))


def log(f: Fmt, a: Bnd) -> Bnd:
    """Natural logarithm of a positive value."""
    v = np.log(a.v)
    lo = a.v - a.e
    with np.errstate(divide="ignore", invalid="ignore"):
        ei = np.where(lo > 0, np.log(a.v / np.where(lo > 0, lo, 1.0)), np.inf)
    return _fn(f, v, ei)


def tanh(f: Fmt, a: Bnd) -> Bnd:
    v = np.tanh(a.v)
    m = np.maximum(np.abs(a.v) - a.e, 0.0)
    return _fn(f, v, np.minimum(a.e / np.cosh(np.minimum(m, 350.0)) ** 2, 2.0))


def erf(f: Fmt, a: Bnd, erf_values) -> Bnd:
    """A library erf (``erf_values``: exact erf of a.v, from refcomp.nn.erf)."""
    m = np.maximum(np.abs(a.v) - a.e, 0.0)
    return _fn(f, np.asarray(erf_values, np.float64),
               np.minimum(a.e * (2.0 / math.sqrt(math.pi)) * np.exp(-m * m), 2.0))


def power(f: Fmt, a: Bnd, k: int) -> Bnd:
    """``pow(a, k)`` by the library (NumPy's ``x ** 3`` calls pow), k a positive integer."""
    v = a.v ** k
    return _fn(f, v, (np.abs(a.v) + a.e) ** k - np.abs(a.v) ** k)


def sum_(f: Fmt, a: Bnd, axis=None, keepdims=False) -> Bnd:
    """Sum of the terms along axis, in any order and any association."""
    v = np.sum(a.v, axis=axis, keepdims=keepdims)
    n = np.size(a.v) // max(np.size(v), 1)
    mag = np.sum(np.abs(a.v) + a.e, axis=axis, keepdims=keepdims)
    g = gamma(n - 1, f.u) if n > 1 else 0.0
    return Bnd(v, np.sum(a.e, axis=axis, keepdims=keepdims) + g * mag)


def cast(to: Fmt, a: Bnd) -> Bnd:
    """A value rounded into a narrower format (e.g. a float64 accumulator stored as float)."""
    return Bnd(a.v, _round(to, a.v, a.e))


def where(cond, a: Bnd, b: Bnd) -> Bnd:
    """Elementwise selection (exact)."""
    return Bnd(np.where(cond, a.v, b.v), np.where(cond, a.e, b.e))
