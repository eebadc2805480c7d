"""Derived elementwise error bounds for dot products and GEMMs under an accumulation model.

Every bound ``E`` satisfies ``|computed - exact| <= E`` elementwise, where ``exact`` is the
real ``A @ B + C`` (block scales applied) and ``computed`` what the model returns.

Deterministic (:func:`deterministic`), for an :class:`~refcomp.ops.AccumulationModel`:
the classical rounding-error analysis of recursive summation (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., 2002, sec. 3.1 and Lemma 3.1, where
``gamma_n = n u / (1 - n u) >= (1 + u)**n - 1``), written with ``(1 + u)**n - 1`` itself
and with the absolute underflow term of the model ``fl(x) = x (1 + d) + e``,
``|d| <= u``, ``|e| <= eta`` (Higham sec. 2.1, eq. (2.8)).  Each term ``a_k b_k`` (and
``c``) takes part in at most ``n`` roundings of the accumulator, so

    E = ((1 + u_p)(1 + u)**n - 1) * (|c| + sum |a_k b_k|) + r * eta * (1 + u)**n + ...

with ``n = K`` (sequential), ``ceil(log2 K) + 1`` (pairwise), ``L`` inner plus ``ceil(K/L)``
outer roundings (blocked, split-K, block-scaled), ``r`` the number of roundings, ``u_p``
and ``eta_p`` the product rounding's, and a final output rounding
``u_o (|s| + E) + eta_o``.  ``u`` is the unit roundoff of the accumulator in its rounding
mode: ``2**-p`` to nearest, one ulp ``2**(1-p)`` for the directed modes, round-to-odd and
stochastic rounding; ``eta`` half the smallest subnormal (nearest) or all of it (others).
The bound holds for ANY order of the additions with at most ``n`` roundings on each
term's path, which is why it also bounds a BLAS whose order is unknown (order ``blas``:
``n = K + 1``, the products counted as rounded unless the accumulator holds them exactly).

Probabilistic (:func:`probabilistic`): Higham and Mary, "A new approach to probabilistic
rounding error analysis", SIAM J. Sci. Comput. 41(5), A2815-A2835, 2019, Theorem 3.1:
``|s_hat - s| <= gamma~_n(lambda) sum |a_k b_k|`` with
``gamma~_n(lambda) = exp(lambda sqrt(n) u + n u**2 / (1 - u)) - 1`` holds with probability
at least ``Q(lambda, n) = 1 - n (1 - P(lambda))``, ``P(lambda) = 1 - 2 exp(-lambda**2
(1 - u)**2 / 2)``, under their model of independent mean-zero rounding errors (an
assumption for round-to-nearest); for stochastic rounding the errors are mean-independent
by construction and the same statement holds rigorously (Connolly, Higham and Mary,
"Stochastic rounding and its probabilistic backward error analysis", SIAM J. Sci. Comput.
43(1), A566-A585, 2021, Theorem 4.6 with Lemma 4.4), with ``u = 2**(1-p)``.  Directed,
odd and truncating roundings are biased: no such bound, ValueError.

Tensor cores (:func:`deterministic` given a :class:`~refcomp.ops.TensorCoreModel`): a
fused step of ``g`` products and ``c`` truncates each of its ``g + 1`` terms toward zero to
a multiple of ``2**(emax - f)`` (error below that quantum each), then rounds the exact sum
to the output (float32 or e8m13 toward zero: relative ``2**-23`` / ``2**-13``; float16 to
nearest: ``2**-11``).  ``2**emax`` is at most the largest of ``2**e_c`` and
``2**(e_a + e_b)``, with ``2**e_x <= |x|`` for normal ``x``, the format's ``2**emin`` for
subnormal ``x`` and ``2**-126`` for zeros (MMA-Sim's rule; see
:mod:`refcomp.ops.tensorcore`).  The per-step errors are accumulated along the chain of
``K / g`` steps, each step's ``|c|`` bounded by the exact partial sum plus the error so far.

All bounds are evaluated in float64 and then enlarged by a relative ``2**-40`` plus the
float64 evaluation error of ``|A| @ |B|`` (``gamma_K(2**-53)``), so that they are not
under-estimated by their own rounding.  An element whose bound, or whose intermediate
magnitudes, reach the largest finite value of a format of the model is given an infinite
bound (overflow is not bounded).
"""

from __future__ import annotations

import math

import numpy as np

from .formats.floatformat import FloatFormat
from .ops.accum_model import Order
from .ops.tensorcore import _EMIN, TensorCoreModel
from .rounding.modes import Rounding

__all__ = ["gamma", "unit_roundoff", "deterministic", "probabilistic", "tightness"]

_SAFETY = 1.0 + 2.0 ** -40


def gamma(n, u):
    """gamma_n = n u / (1 - n u) (Higham 2002, Lemma 3.1); ValueError when n u >= 1."""
    if n * u >= 1:
        raise ValueError(f"gamma_n undefined: n u = {n} * {u} >= 1")
    return n * u / (1 - n * u)


def unit_roundoff(fmt: FloatFormat, rounding) -> tuple[float, float]:
    """(u, eta): relative and absolute (underflow) error bounds of one rounding into fmt."""
    r = Rounding(rounding) if not isinstance(rounding, Rounding) else rounding
    nearest = r in (Rounding.NEAREST_EVEN, Rounding.NEAREST_AWAY)
    u = 2.0 ** -fmt.precision if nearest else 2.0 ** (1 - fmt.precision)
    sub = fmt.min_subnormal
    return u, (sub / 2 if nearest else sub)


def _grow(u, n):
    """(1 + u)**n - 1, rounded up."""
    return math.expm1(n * math.log1p(u)) * _SAFETY if n else 0.0


def _abs_gemm(A, B):
    """|A| @ |B| in float64, enlarged by its own evaluation error bound."""
    K = A.shape[-1]
    P = np.abs(A) @ np.abs(B)
    return P * (1 + gamma(K + 2, 2.0 ** -53)) + K * 2.0 ** -1074


def _shapes(A, B, C):
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(f"bounds take A (M, K) and B (K, N); got A {A.shape}, B {B.shape}")
    M, N = A.shape[0], B.shape[1]
    C = np.zeros((M, N)) if C is None else np.broadcast_to(np.asarray(C, np.float64), (M, N))
    return A, B, C


def _scaled(A, B, sa, sb, L):
    """A and B with the block scales applied per element (exact: powers of two or short
    significands), for the magnitudes of the bound."""
    return A * np.repeat(np.asarray(sa, np.float64), L, axis=1), \
        B * np.repeat(np.asarray(sb, np.float64), L, axis=0)


def deterministic(A, B, model, C=None, scale_a=None, scale_b=None) -> np.ndarray:
    """Elementwise bound on |computed - exact| for A (M, K) @ B (K, N) (+ C) under `model`
    (an AccumulationModel, a TensorCoreModel, or a preset / tensor-core name).

    Returns (M, N) float64 (inf where overflow is possible; 0 for integer GEMMs that
    cannot overflow -- nor saturate an int16 pair, for the AVX2 model -- and inf where
    they can)."""
    from .ops.accum import _model
    m = _model(model)
    A, B, C = _shapes(A, B, C)
    if isinstance(m, TensorCoreModel):
        return _tensor_core(A, B, C, m)
    if m.integer:
        T = _abs_gemm(A, B) + np.abs(C)
        ok = T <= m.acc.max
        if m.int16_pairs:                       # a pair sum may saturate to int16
            pair = 2 * np.abs(A).max(axis=1, initial=0)[:, None] * \
                np.abs(B).max(axis=0, initial=0)[None, :]
            ok &= pair <= 32767
        return np.where(ok, 0.0, np.inf)
    K, L, T, (ua, ea), (up, ep) = _common(A, B, C, m, scale_a, scale_b)
    if m.chunked:
        nc = max(1, math.ceil(K / L))
        uo, eo = unit_roundoff(m.outer_format, m.outer_rounding)
        grow = (1 + up) * (1 + _grow(ua, L)) * (1 + _grow(uo, nc)) - 1
        # inner underflow happens before the (exact) scaling: scale it by sa * sb
        sab = np.asarray(scale_a, np.float64) @ np.asarray(scale_b, np.float64) \
            if m.scale_block else nc
        absolute = L * (ep + ea) * (1 + _grow(ua, L)) * (1 + _grow(uo, nc)) * sab \
            + nc * eo * (1 + _grow(uo, nc))
        fmts = (m.acc, m.outer_format)
    else:
        n = math.ceil(math.log2(K)) + 1 if (m.order is Order.PAIRWISE and K > 1) else K
        if m.order is Order.BLAS:               # any order, C added last, maybe unfused
            n, up, ep = K + 1, *_blas_product(m)
        grow = (1 + up) * (1 + _grow(ua, n)) - 1
        absolute = K * (ep + ea) * (1 + _grow(ua, n))
        fmts = (m.acc,)
    E = (grow * T + absolute) * _SAFETY
    if m.output is not None and m.output != m.result_format:
        uo, eo = unit_roundoff(m.output, m.output_rounding)
        E = (E + uo * (T + E) + eo) * _SAFETY
        fmts = fmts + (m.output,)
    if m.product is not None:
        fmts = fmts + (m.product,)
    big = min(f.max_finite for f in fmts)
    return np.where(T + E < big, E, np.inf)


def _common(A, B, C, m, scale_a, scale_b):
    """K, the chunk length, T = |A||B| + |C| (scales applied), and the (u, eta) of the
    accumulator and of the product rounding (0, 0 for exact products)."""
    K = A.shape[1]
    L = m.chunk(K)
    if m.scale_block:
        A, B = _scaled(A, B, scale_a, scale_b, L)
    T = _abs_gemm(A, B) + np.abs(C)
    prod = unit_roundoff(m.product, m.product_rounding) if m.product is not None \
        else (0.0, 0.0)
    return K, L, T, unit_roundoff(m.acc, m.acc_rounding), prod


def _blas_product(m):
    """(u, eta) of a BLAS product: exact when the accumulator holds every product of two
    inputs (bf16 / fp16 / fp8 into float32), else possibly rounded (the BLAS may not fuse)."""
    if m.inputs.precision + m.inputs_b.precision <= m.acc.precision:
        return 0.0, 0.0
    return unit_roundoff(m.acc, m.acc_rounding)


def _out_error(output):
    """(relative, absolute, overflow threshold) of a tensor-core output rounding."""
    if output == "float16":
        return 2.0 ** -11, 2.0 ** -25, 65504.0
    if output == "e8m13":
        return 2.0 ** -13, 2.0 ** -139, 2.0 ** 128 * (1 - 2.0 ** -14)
    return 2.0 ** -23, 2.0 ** -149, 2.0 ** 128 * (1 - 2.0 ** -24)


def _tensor_core(A, B, C, m: TensorCoreModel) -> np.ndarray:
    if m.scaled:
        raise ValueError(f"{m.name}: bounds for block-scaled instructions are not derived "
                         "(use the instruction's bit-exact model)")
    M, K = A.shape
    N = B.shape[1]
    if K % m.k:
        raise ValueError(f"K={K} is not a multiple of the instruction's k={m.k} ({m.name})")
    emin = 2.0 ** _EMIN[m.inputs]
    z = 2.0 ** -126

    def bar(x):                                   # 2**e_x bounded as the docstring says
        return np.where(x == 0, z, np.maximum(np.abs(x), emin))

    Ab, Bb = bar(A), bar(B)
    tf32 = 2.0 ** -9 + 2.0 ** -20 if m.inputs == "tfloat32" else 0.0   # input truncation
    uo, eo, big = _out_error(m.output)
    q = (m.group + 1) * 2.0 ** -m.frac_bits
    T = np.abs(C).copy()
    E = np.zeros((M, N))
    over = np.zeros((M, N), bool)
    g = m.group
    for k0 in range(0, K, g):
        P = _abs_gemm(A[:, k0:k0 + g], B[k0:k0 + g])
        Pb = _abs_gemm(Ab[:, k0:k0 + g], Bb[k0:k0 + g])
        cabs = T + E
        tr = q * (cabs + z + Pb) + tf32 * P
        V = cabs + P + tr
        E = (E + tr + uo * V + eo) * _SAFETY
        T = T + P
        over |= V >= big
    return np.where(over | (T + E >= big), np.inf, E)


def probabilistic(A, B, model, lam=5.0, C=None, scale_a=None, scale_b=None):
    """(bound (M, N), confidence): Higham-Mary probabilistic bound (module docstring) for
    sequential / pairwise / blocked models rounding to nearest or stochastically.

    Each element's bound holds with probability at least `confidence` (Q(lambda, n) of
    Higham and Mary 2019, Theorem 3.1, n the number of roundings on a term's path; a
    statement per element, not jointly).  Underflow and output-rounding terms are added
    as in the deterministic bound."""
    from .ops.accum import _model
    m = _model(model)
    if isinstance(m, TensorCoreModel):
        raise ValueError(f"{m.name}: tensor cores truncate (biased errors); no probabilistic "
                         "bound -- use deterministic()")
    if m.integer:
        raise ValueError(f"{m.name}: integer GEMMs are exact (no probabilistic bound)")
    unbiased = (Rounding.NEAREST_EVEN, Rounding.NEAREST_AWAY, Rounding.STOCHASTIC)
    for f in ("acc_rounding", "outer_rounding", "product_rounding"):
        r = getattr(m, f)
        if r not in unbiased and (f != "outer_rounding" or m.chunked) and \
                (f != "product_rounding" or m.product is not None):
            raise ValueError(f"{m.name}: {f}={r.value!r} is biased; the probabilistic bound "
                             "needs rounding to nearest or stochastic rounding")
    A, B, C = _shapes(A, B, C)
    K, L, T, (ua, ea), (up, ep) = _common(A, B, C, m, scale_a, scale_b)
    if m.chunked:
        uo, eo = unit_roundoff(m.outer_format, m.outer_rounding)
        n = L + max(1, math.ceil(K / L))
        u = max(ua, uo)
    elif m.order is Order.PAIRWISE and K > 1:
        n, u = math.ceil(math.log2(K)) + 1, ua
    else:
        n, u = K + (m.order is Order.BLAS), ua
    n += m.product is not None or (m.order is Order.BLAS and _blas_product(m)[0] > 0)
    u = max(u, up)
    gt = math.expm1(lam * math.sqrt(n) * u + n * u * u / (1 - u)) * _SAFETY
    conf = max(0.0, 1.0 - 2.0 * n * math.exp(-lam * lam * (1 - u) ** 2 / 2))
    r = K * 2 + max(1, math.ceil(K / L))
    E = gt * T + r * max(ea, ep) * (1 + _grow(u, n))
    if m.output is not None and m.output != m.result_format:
        uo, eo = unit_roundoff(m.output, m.output_rounding)
        E = E + uo * (T + E) + eo
    return E * _SAFETY, conf


def tightness(computed, exact, bound) -> float:
    """Largest observed |computed - exact| / bound (0 where both are 0)."""
    err = np.abs(np.asarray(computed, np.float64) - np.asarray(exact, np.float64))
    b = np.asarray(bound, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(b > 0, err / b, np.where(err == 0, 0.0, np.inf))
    return float(np.max(r, initial=0.0))
