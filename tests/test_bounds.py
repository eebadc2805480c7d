"""refcomp.bounds: each bound holds against the exact result (Python Fractions) on
adversarial inputs -- same-sign long sums, cancellation, wide exponent spread, underflow --
for every order, rounded products, output rounding, stochastic accumulation and tensor
cores; and the bounds are not vacuous (observed error / bound above a derived floor)."""

import math
from fractions import Fraction

import numpy as np
import pytest

import refcomp as rc
from refcomp import bounds
from refcomp.ops import AccumulationModel, matmul, tc_matmul
from refcomp.ops.accum_model import ACCUMULATION_MODELS


def _exact(A, B, C=None):
    M, K = A.shape
    N = B.shape[1]
    out = np.empty((M, N))
    fa = [[Fraction(float(v)) for v in row] for row in A]
    fb = [[Fraction(float(B[k, j])) for k in range(K)] for j in range(N)]
    for i in range(M):
        for j in range(N):
            s = sum(x * y for x, y in zip(fa[i], fb[j]))
            if C is not None:
                s += Fraction(float(C[i, j]))
            out[i, j] = float(s)               # one rounding of the exact value: <= 2**-53
    return out


def _inputs(kind, fmt, M, K, N, rng):
    f = rc.formats.get(fmt)
    e = 4 if f.emax < 20 else 20
    if kind == "same-sign":
        A, B = np.abs(rng.standard_normal((M, K))) + 0.5, np.abs(rng.standard_normal((K, N))) + .5
    elif kind == "cancellation":
        A = rng.standard_normal((M, K)) * 0.01 + np.where(np.arange(K) % 2 == 0, 3.0, -3.0)
        B = np.abs(rng.standard_normal((K, N))) + 1
    elif kind == "spread":
        A = rng.standard_normal((M, K)) * np.exp2(rng.integers(-e, e + 1, (M, K)))
        B = rng.standard_normal((K, N)) * np.exp2(rng.integers(-e, e + 1, (K, N)))
    else:                                       # underflow: products below min normal
        t = f.emin // 2
        A = rng.standard_normal((M, K)) * 2.0 ** t
        B = rng.standard_normal((K, N)) * 2.0 ** (t - 2)
    return np.asarray(rc.cast(A, fmt)), np.asarray(rc.cast(B, fmt))


def _slack(A, B):
    """The exact result's own float64 rounding (one rounding of the exact sum)."""
    return 2.0 ** -53 * (np.abs(A) @ np.abs(B)) + 2.0 ** -1074


KINDS = ["same-sign", "cancellation", "spread", "underflow"]
MODELS = [ACCUMULATION_MODELS[n] for n in ("fp16-fp16acc", "bf16-bf16acc", "fp32-pairwise",
                                            "fp8-fp16acc-fp32outer-128", "bf16-fp32acc",
                                            "fp32-sequential-separate")] + [
    AccumulationModel("rz-split", "bfloat16", "bfloat16", acc_rounding="toward_zero",
                      order="split_k", splits=4, outer="float32", outer_rounding="toward_zero"),
    AccumulationModel("ru-prod", "float16", "float16", product="bfloat16",
                      product_rounding="toward_positive", acc_rounding="toward_positive"),
    AccumulationModel("odd-pair", "bfloat16", "bfloat16", acc_rounding="odd",
                      order="pairwise"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.name)
def test_deterministic_bound_holds(m, kind):
    rng = np.random.default_rng(len(m.name) + len(kind))
    A, B = _inputs(kind, m.inputs.name, 3, 300, 2, rng)
    got = matmul(A, B, m)
    ex = _exact(A, B)
    E = bounds.deterministic(A, B, m)
    assert np.all(np.abs(got - ex) <= E + _slack(A, B)), bounds.tightness(got, ex, E)


@pytest.mark.parametrize("name", ["fp16-fp16acc", "bf16-bf16acc", "fp32-pairwise",
                                  "bf16-fp32acc"])
def test_probabilistic_bound_holds_on_random_data(name):
    m = ACCUMULATION_MODELS[name]
    rng = np.random.default_rng(11)
    A, B = _inputs("spread", m.inputs.name, 4, 400, 3, rng)
    E, conf = bounds.probabilistic(A, B, m, lam=5.0)
    assert 0.99 < conf <= 1.0
    assert np.all(np.abs(matmul(A, B, m) - _exact(A, B)) <= E + _slack(A, B))
    # probabilistic bounds grow like lambda sqrt(n), deterministic ones like n: for the
    # sequential models n = 400 > lambda**2 = 25, so the probabilistic one is smaller
    if m.order.value == "sequential":
        assert np.all(E <= bounds.deterministic(A, B, m))


def test_stochastic_accumulation_bounds_over_seeds():
    m = AccumulationModel("sr", "bfloat16", "bfloat16", acc_rounding="stochastic")
    rng = np.random.default_rng(12)
    A, B = _inputs("same-sign", "bfloat16", 2, 500, 2, rng)
    ex = _exact(A, B)
    D = bounds.deterministic(A, B, m)
    P, conf = bounds.probabilistic(A, B, m, lam=5.0)
    misses = 0
    for seed in range(8):
        got = matmul(A, B, m, rng=np.random.default_rng(seed))
        err = np.abs(got - ex)
        assert np.all(err <= D + _slack(A, B))
        misses += int(np.sum(err > P))
    # each element fails with probability <= 1 - conf; 32 draws
    assert conf > 0.99 and misses <= 2


def test_same_sign_bound_is_not_vacuous():
    """float16 accumulation of 2048 terms near 1.5: the sum passes 2048, where float16's
    spacing is 2 and each addition of ~1.5 loses up to half of it; the error grows to a
    sizeable fraction of n u T (here T ~ 4600, n u = 1): observed / bound > 1e-3."""
    m = ACCUMULATION_MODELS["fp16-fp16acc"]
    A = np.full((1, 2048), 1.5)
    B = np.asarray(rc.cast(np.full((2048, 1), 1.5), "float16"))
    got = matmul(A, B, m)
    ex = _exact(A, B)
    E = bounds.deterministic(A, B, m)
    r = bounds.tightness(got, ex, E)
    assert 1e-3 < r <= 1.0


TC = ["hopper-wgmma-m64nNk16-bfloat16-float32", "hopper-wgmma-m64nNk32-float8_e4m3fn-float32",
      "hopper-wgmma-m64nNk16-float16-float16", "ampere-mma-m16n8k8-tf32-float32",
      "volta-mma-m8n8k4-f16-float32", "ada-mma-m16n8k32-float8_e5m2-float16"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", TC)
def test_tensor_core_bound_holds(name, kind):
    m = rc.ops.TENSOR_CORES[name]
    fin = "float32" if m.inputs == "tfloat32" else m.inputs
    rng = np.random.default_rng(len(name) + len(kind))
    A, B = _inputs(kind, fin, 3, m.k * 16, 2, rng)
    C = np.zeros((3, 2))
    got = tc_matmul(A, B, C, m)
    ex = _exact(A, B)
    E = bounds.deterministic(A, B, m)
    assert np.all(np.abs(got - ex) <= E + _slack(A, B)), bounds.tightness(got, ex, E)


def test_tensor_core_bound_is_not_vacuous():
    """bf16 on Hopper, same-sign values in [1, 2): every fused step truncates 17 terms to
    2**-25 of the max (truncation error ~ 2**-25 of each term on average), and the float32
    result is truncated: the error is a steady fraction of the bound, > 1e-2."""
    m = rc.ops.TENSOR_CORES["hopper-wgmma-m64nNk16-bfloat16-float32"]
    rng = np.random.default_rng(5)
    A = np.asarray(rc.cast(1 + rng.random((2, 1024)), "bfloat16"))
    B = np.asarray(rc.cast(1 + rng.random((1024, 2)), "bfloat16"))
    got = tc_matmul(A, B, np.zeros((2, 2)), m)
    r = bounds.tightness(got, _exact(A, B), bounds.deterministic(A, B, m))
    assert 1e-2 < r <= 1.0


def test_integer_bound_and_overflow():
    A = np.full((1, 4), 127)
    assert bounds.deterministic(A, A.T, "int8-int32-wrap")[0, 0] == 0.0
    big = np.full((1, 200_000), -128)
    assert math.isinf(bounds.deterministic(big, big.T, "int8-int32-wrap")[0, 0])
    # AVX2 pairs: 255 * 127 * 2 > 32767 may saturate (the result is then not A @ B)
    u = np.array([[255, 255], [1, 1]])
    b = np.array([[127], [127]])
    e = bounds.deterministic(u, b, "u8s8-int32-avx2")
    assert math.isinf(e[0, 0]) and e[1, 0] == 0.0
    assert rc.ops.matmul(u, b, "u8s8-int32-avx2")[0, 0] != (u @ b)[0, 0]


def test_overflow_gives_infinite_bound():
    A = np.full((1, 8), 60000.0)
    B = np.ones((8, 1))
    assert math.isinf(bounds.deterministic(A, B, "fp16-fp16acc")[0, 0])


def test_gamma_and_errors():
    assert bounds.gamma(10, 2.0 ** -24) == pytest.approx(10 * 2.0 ** -24, rel=1e-6)
    with pytest.raises(ValueError, match="n u"):
        bounds.gamma(2 ** 24, 2.0 ** -24)
    m = AccumulationModel("rz", "float16", "float16", acc_rounding="toward_zero")
    with pytest.raises(ValueError, match="toward_zero.*biased"):
        bounds.probabilistic(np.ones((1, 2)), np.ones((2, 1)), m)
    with pytest.raises(ValueError, match="truncate"):
        bounds.probabilistic(np.ones((1, 16)), np.ones((16, 1)), TC[0])
    with pytest.raises(ValueError, match=r"bounds take A \(M, K\)"):
        bounds.deterministic(np.ones((2, 3)), np.ones((4, 2)), "fp32-sequential-fma")
