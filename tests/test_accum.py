"""Dot / GEMM / conv2d under accumulation models, against an exact Fraction oracle of the
semantics written in refcomp/ops/accum_model.py (sequential, pairwise, blocked, split-K,
rounded products, outer accumulators, block scales, output rounding), against Python
integers for integer GEMMs, and the Numba kernels against the NumPy specification."""

import math
from fractions import Fraction

import numpy as np
import pytest

import refcomp as rc
from oracle import Fmt, round_value
from refcomp._jit import use_jit
from refcomp.ops import AccumulationModel, conv2d, dot, matmul
from refcomp.ops.accum_model import ACCUMULATION_MODELS

MODES = ["nearest_even", "nearest_away", "toward_zero", "toward_positive", "toward_negative",
         "odd"]


# ----------------------------------------------------------------------------- oracle
class V:
    """An exact value with the sign of zero: (Fraction, negative) or inf/nan."""

    def __init__(self, q, neg=None, kind="finite"):
        self.q, self.kind = q, kind
        self.neg = (q < 0) if neg is None else neg

    @staticmethod
    def of(x):
        x = float(x)
        if math.isnan(x):
            return V(None, False, "nan")
        if math.isinf(x):
            return V(None, x < 0, "inf")
        return V(Fraction(x), math.copysign(1.0, x) < 0)

    def value(self):
        if self.kind == "nan":
            return math.nan
        if self.kind == "inf":
            return -math.inf if self.neg else math.inf
        return -0.0 if (self.q == 0 and self.neg) else float(self.q)


def rnd(q: Fraction, fmt, mode, zero_neg=False):
    """Round the exact q into fmt (IEEE 754 semantics, oracle.round_value)."""
    if q == 0:
        return V(Fraction(0), zero_neg)
    kind, val, neg, _ = round_value(abs(q), q < 0, Fmt(fmt), mode)
    return V(None, neg, kind) if kind != "finite" else V(-val if neg else val, neg)


def add(x: V, y: V, fmt, mode):
    if "nan" in (x.kind, y.kind):
        return V(None, False, "nan")
    if x.kind == "inf" or y.kind == "inf":
        if x.kind == y.kind == "inf" and x.neg != y.neg:
            return V(None, False, "nan")
        return x if x.kind == "inf" else y
    s = x.q + y.q
    # IEEE 754-2019 6.3: an exact zero sum is -0 when both are -0, or in roundTowardNegative
    zneg = (x.neg and y.neg) if (x.q == 0 and y.q == 0 and x.neg == y.neg) else \
        mode == "toward_negative"
    return rnd(s, fmt, mode, zneg)


def prod(a: V, b: V):
    if "nan" in (a.kind, b.kind):
        return V(None, False, "nan")
    if a.kind == "inf" or b.kind == "inf":
        other = b if a.kind == "inf" else a
        if other.kind == "finite" and other.q == 0:
            return V(None, False, "nan")
        return V(None, a.neg != b.neg, "inf")
    return V(a.q * b.q, a.neg != b.neg)


def oracle_dot(a, b, m, c=0.0, sa=None, sb=None):
    """One output element of the model, with exact rationals."""
    K = len(a)
    prods = [prod(V.of(x), V.of(y)) for x, y in zip(a, b)]
    if m.product is not None:
        prods = [p if p.kind != "finite" else rnd(p.q, m.product, m.product_rounding.value,
                                                  p.neg) for p in prods]
    acc, mode = m.acc, m.acc_rounding.value
    if m.order.value == "pairwise":
        T = prods
        while len(T) > 1:
            nxt = [add(T[2 * i], T[2 * i + 1], acc, mode) for i in range(len(T) // 2)]
            T = nxt + ([T[-1]] if len(T) % 2 else [])
        r = add(V.of(c), T[0], acc, mode) if T else V.of(c)
    else:
        L = m.chunk(K)
        chunked = m.chunked
        o = V.of(c)
        for j, k0 in enumerate(range(0, K, L)):
            s = V(Fraction(0), False) if chunked else o
            for p in prods[k0:k0 + L]:
                s = add(s, p, acc, mode)
            if not chunked:
                o = s
            elif m.scale_block:
                o = add(o, prod(s, V(Fraction(float(sa[j])) * Fraction(float(sb[j])))),
                        m.outer_format, m.outer_rounding.value)
            else:
                o = add(o, s, m.outer_format, m.outer_rounding.value)
        r = o
    if m.output is not None and r.kind == "finite":
        r = rnd(r.q, m.output, m.output_rounding.value, r.neg)
    return r.value()


def _bits(x):
    """Bits for comparison, with every NaN alike (the oracle does not track payloads)."""
    x = np.asarray(x, np.float64)
    return np.where(np.isnan(x), np.uint64(0x7FF8000000000000), x.view(np.uint64))


def _values(fmt, shape, rng, spread=12):
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-spread, spread, shape))
    return np.asarray(rc.cast(x, fmt), np.float64)


def _check(A, B, m, C=None, sa=None, sb=None, jit_modes=(True, False)):
    M, N = A.shape[0], B.shape[1]
    want = np.array([[oracle_dot(A[i], B[:, j], m, 0.0 if C is None else C[i, j],
                                 None if sa is None else sa[i],
                                 None if sb is None else sb[:, j]) for j in range(N)]
                     for i in range(M)])
    for jit in jit_modes:
        with use_jit(jit):
            got = matmul(A, B, m, C=C, scale_a=sa, scale_b=sb)
        bad = np.argwhere(_bits(got) != _bits(want))
        assert bad.size == 0, (f"{m.describe()} jit={jit}: element {tuple(bad[0])} got "
                               f"{got[tuple(bad[0])]!r}, oracle {want[tuple(bad[0])]!r}")


# ------------------------------------------------------------------------ float models
def _models():
    # the 'blas' order is the machine's BLAS, not a sequence the oracle can replay: its
    # presets are checked against their bound in tests/test_nn_engine.py
    out = [m for m in ACCUMULATION_MODELS.values()
           if not m.integer and not m.scale_block and m.order.value != "blas"]
    for mode in MODES:
        out += [
            AccumulationModel(f"f16acc-{mode}", "bfloat16", "float16", acc_rounding=mode),
            AccumulationModel(f"sep-{mode}", "float16", "bfloat16", product="float16",
                              product_rounding=mode, acc_rounding=mode),
            AccumulationModel(f"blk-{mode}", "float16", "float8_e5m2", acc_rounding=mode,
                              order="blocked", block=5, outer="float16",
                              outer_rounding=mode, output="bfloat16",
                              output_rounding=mode),
            AccumulationModel(f"split-{mode}", "bfloat16", "bfloat16", acc_rounding=mode,
                              order="split_k", splits=3, outer="float32",
                              outer_rounding=mode),
            AccumulationModel(f"pair-{mode}", "float16", "float16", acc_rounding=mode,
                              order="pairwise"),
            AccumulationModel(f"e4m3-{mode}", "float8_e4m3fn", "float8_e4m3fn",
                              acc_rounding=mode, order="pairwise", product="float16",
                              product_rounding=mode),
        ]
    return out


@pytest.mark.parametrize("m", _models(), ids=lambda m: m.name)
def test_float_models_against_oracle(m):
    rng = np.random.default_rng(abs(hash(m.name)) % 2 ** 32)
    K = 23
    A = _values(m.inputs, (4, K), rng, 6)
    B = _values(m.inputs_b, (K, 3), rng, 6)
    A[1] = np.abs(A[1])                                   # same-sign run
    B[:, 1] = np.abs(B[:, 1])
    A[2, ::2] *= -1                                       # cancellation pattern
    A[3, :] = np.asarray(rc.cast(A[3, :] * 2.0 ** -10, m.inputs))   # underflow region
    fc = m.outer_format if m.order.value in ("blocked", "split_k") else m.acc
    C = _values(fc, (4, 3), rng, 3)
    _check(A, B, m)
    _check(A, B, m, C=C)


@pytest.mark.parametrize("mode", MODES)
def test_overflow_and_specials_against_oracle(mode):
    """Accumulator overflow (inf or the largest finite value, by mode), inf and NaN inputs,
    inf - inf, and inf * 0: the special-value rules of the operations."""
    m = AccumulationModel("ovf", "bfloat16", "float16", acc_rounding=mode)
    A = np.array([[30000.0, 30000.0, 30000.0, -30000.0, 1.0],
                  [np.inf, 1.0, 2.0, 3.0, 4.0],
                  [np.inf, 1.0, -np.inf, 3.0, 4.0],
                  [np.nan, 1.0, 2.0, 3.0, 4.0],
                  [np.inf, 0.0, 0.0, 0.0, 0.0],
                  [-0.0, -0.0, 0.0, 1.0, -1.0]])
    A = np.asarray(rc.cast(A, "bfloat16"), np.float64)
    B = np.array([[1.0, -1.0], [1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [1.0, 1.0]])
    B[:, 1] = [0.0, 1.0, 1.0, -1.0, 2.0]
    _check(A, B, m)


def test_sequential_fp32_matches_numpy_float32_loop():
    """A second oracle: NumPy float32 scalar arithmetic (IEEE binary32, round to nearest
    even) reproduces "fp32-sequential-separate" exactly."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((5, 64)).astype(np.float32)
    B = rng.standard_normal((64, 4)).astype(np.float32)
    want = np.zeros((5, 4), np.float32)
    for k in range(64):
        want = want + np.outer(A[:, k], B[k, :]).astype(np.float32)
    for jit in (True, False):
        with use_jit(jit):
            got = matmul(A, B, "fp32-sequential-separate")
        np.testing.assert_array_equal(got, want.astype(np.float64))


# --------------------------------------------------------------------- block scales
@pytest.mark.parametrize("name", ["mxfp8-e4m3-fp32", "nvfp4-fp32"])
def test_block_scaled_against_oracle(name):
    m = ACCUMULATION_MODELS[name]
    rng = np.random.default_rng(4)
    L = m.scale_block
    K = 3 * L
    A = _values(m.inputs, (3, K), rng, 3)
    B = _values(m.inputs, (K, 2), rng, 3)
    if m.scale_format.name == "float8_e8m0fnu":
        sa = np.exp2(rng.integers(-20, 20, (3, 3))).astype(np.float64)
        sb = np.exp2(rng.integers(-20, 20, (3, 2))).astype(np.float64)
    else:
        sa = np.abs(_values(m.scale_format, (3, 3), rng, 4))
        sb = np.abs(_values(m.scale_format, (3, 2), rng, 4))
    _check(A, B, m, sa=sa, sb=sb)


# ---------------------------------------------------------------------------- integers
def _int_oracle(A, B, m, C=None):
    M, K = A.shape
    N = B.shape[1]
    lo, hi, bits = m.acc.min, m.acc.max, m.acc.bits
    out = np.zeros((M, N), dtype=object)
    for i in range(M):
        for j in range(N):
            s = 0 if C is None else int(C[i, j])
            terms = [int(A[i, k]) * int(B[k, j]) for k in range(K)]
            if m.int16_pairs:
                terms = terms + [0] * (len(terms) % 2)
                terms = [max(-32768, min(32767, terms[t] + terms[t + 1]))
                         for t in range(0, len(terms), 2)]
            for t in terms:
                s += t
                if m.int_overflow.value == "saturate":
                    s = max(lo, min(hi, s))
                else:
                    s = (s - lo) % (1 << bits) + lo
            out[i, j] = s
    return out.astype(np.int64)


@pytest.mark.parametrize("name", ["int8-int32-wrap", "int8-int32-saturate", "u8s8-int32-wrap",
                                  "u8s8-int32-avx2"])
@pytest.mark.parametrize("big", [False, True])
def test_integer_gemm_against_python_ints(name, big):
    m = ACCUMULATION_MODELS[name]
    rng = np.random.default_rng(5)
    K = 37
    lo_a, hi_a = m.inputs.min, m.inputs.max
    A = rng.integers(lo_a, hi_a + 1, (4, K))
    B = rng.integers(-128, 128, (K, 3))
    if big:                      # pairs that saturate int16, sums that leave int32
        A[0] = hi_a
        B[:, 0] = 127 if lo_a == 0 else -128
        C = np.full((4, 3), 2 ** 31 - 100_000)
        C[1] = -(2 ** 31)
    else:
        C = None
    want = _int_oracle(A, B, m, C)
    for jit in (True, False):
        with use_jit(jit):
            got = matmul(A, B, m, C=C)
        np.testing.assert_array_equal(got, want)


def test_integer_avx2_pair_saturation_is_visible():
    """255 * 127 + 255 * 127 = 64770 saturates to 32767 on vpmaddubsw; VNNI does not."""
    A = np.array([[255, 255]])
    B = np.array([[127], [127]])
    assert matmul(A, B, "u8s8-int32-avx2")[0, 0] == 32767
    assert matmul(A, B, "u8s8-int32-wrap")[0, 0] == 64770


# ------------------------------------------------------------------ twins, batch, dot
@pytest.mark.parametrize("m", _models()[:12], ids=lambda m: m.name)
def test_kernels_match_specification_large(m):
    """Numba kernels vs NumPy specification on a GEMM big enough for the kernels' tiles,
    with finite data (the lean path, including accumulator overflow) and with specials."""
    rng = np.random.default_rng(6)
    A = _values(m.inputs, (7, 200), rng, 10)
    B = _values(m.inputs_b, (200, 150), rng, 10)
    for data in ("finite", "specials"):
        if data == "specials":
            inf = np.inf if m.inputs.has_inf else np.nan
            A[0, 5], A[1, 7], B[9, 3] = inf, np.nan, -inf
        with use_jit(True):
            x = matmul(A, B, m)
        with use_jit(False):
            y = matmul(A, B, m)
        np.testing.assert_array_equal(x.view(np.uint64), y.view(np.uint64))


def test_batched_and_dot_agree_with_2d():
    rng = np.random.default_rng(7)
    m = AccumulationModel("b", "bfloat16", "float16", order="blocked", block=4,
                          outer="float32")
    A = _values("bfloat16", (2, 3, 5, 16), rng)
    B = _values("bfloat16", (16, 4), rng)
    got = matmul(A, B, m)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(got[i, j], matmul(A[i, j], B, m))
    d = dot(A[0, 0], B[:, 1], m)
    np.testing.assert_array_equal(d, matmul(A[0, 0], B, m)[:, 1])


def test_tensor_core_model_through_matmul():
    rng = np.random.default_rng(8)
    name = "hopper-wgmma-m64nNk16-bfloat16-float32"
    A = _values("bfloat16", (4, 32), rng)
    B = _values("bfloat16", (32, 3), rng)
    np.testing.assert_array_equal(matmul(A, B, name),
                                  rc.ops.tc_matmul(A, B, np.zeros((4, 3)), name))


def test_stochastic_accumulation_is_unbiased_and_seeded():
    """Stochastic accumulation: same seed, same result; across seeds the mean error of a
    long same-sign float16 sum is far below round-to-nearest's systematic error (which
    stagnates: 4096 terms of 1 + 2**-8 * u in float16 round-to-nearest stop growing at 2048)."""
    m = AccumulationModel("sr", "float16", "float16", acc_rounding="stochastic")
    x = np.ones((1, 4096))
    y = np.ones((4096, 1))
    a = matmul(x, y, m, rng=np.random.default_rng(1))
    b = matmul(x, y, m, rng=np.random.default_rng(1))
    assert a[0, 0] == b[0, 0]
    vals = [matmul(x, y, m, rng=np.random.default_rng(s))[0, 0] for s in range(20)]
    rn = matmul(x, y, AccumulationModel("rn", "float16", "float16"))[0, 0]
    assert rn == 2048.0                                   # stagnation, exact analysis
    # SR: each step is exact or off by one spacing (2 or 4) with mean 0; 20 runs
    assert abs(np.mean(vals) - 4096.0) < 64
    with pytest.raises(ValueError, match="generator"):
        matmul(x, y, m)


# ----------------------------------------------------------------------------- conv2d
def test_conv2d_equals_loop_of_dots():
    """Every output pixel is the model's dot product of the patch (c, r, s order) and the
    filter, with the bias as initial value (oracle: explicit loops over dot)."""
    rng = np.random.default_rng(9)
    m = AccumulationModel("c", "bfloat16", "bfloat16", order="blocked", block=3,
                          outer="float32")
    x = _values("bfloat16", (1, 4, 5, 5), rng, 4)
    w = _values("bfloat16", (4, 2, 3, 2), rng, 4)
    bias = _values("float32", (4,), rng, 2)
    y = conv2d(x, w, m, bias=bias, stride=(2, 1), padding=1, groups=2)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for co in range(4):
        g = co // 2
        for i in range(y.shape[2]):
            for j in range(y.shape[3]):
                patch = xp[0, 2 * g:2 * g + 2, 2 * i:2 * i + 3, j:j + 2].reshape(-1)
                want = dot(patch, w[co].reshape(-1), m, c=bias[co])
                assert y[0, co, i, j] == want


# ----------------------------------------------------------------------------- errors
def test_bad_input_errors():
    A = np.ones((2, 3))
    with pytest.raises(ValueError, match="do not chain"):
        matmul(A, np.ones((4, 2)), "fp32-sequential-fma")
    with pytest.raises(ValueError, match=r"A\[0, 0\] = 0.1 is not a bfloat16 value"):
        matmul(np.full((2, 3), 0.1), np.ones((3, 2)), "bf16-fp32acc")
    with pytest.raises(ValueError, match="unknown accumulation model"):
        matmul(A, A.T, "fp32-seqential")
    with pytest.raises(ValueError, match="multiple of the scale block"):
        matmul(np.ones((1, 20)), np.ones((20, 1)), "mxfp8-e4m3-fp32",
               scale_a=np.ones((1, 1)), scale_b=np.ones((1, 1)))
    with pytest.raises(ValueError, match="pass scale_a and scale_b"):
        matmul(np.ones((1, 32)), np.ones((32, 1)), "mxfp8-e4m3-fp32")
    with pytest.raises(ValueError, match="not block-scaled"):
        matmul(A, A.T, "fp32-sequential-fma", scale_a=np.ones((2, 1)))
    with pytest.raises(ValueError, match="int16_pairs"):
        AccumulationModel("x", "int8", "int32", int16_pairs=True)
    with pytest.raises(ValueError, match="needs block >= 1"):
        AccumulationModel("x", "float16", "float32", order="blocked")
    with pytest.raises(ValueError, match="unknown accumulation order"):
        AccumulationModel("x", "float16", "float32", order="seqential")
    with pytest.raises(ValueError, match="multiple of the instruction's k"):
        matmul(np.ones((2, 8)), np.ones((8, 2)), "hopper-wgmma-m64nNk16-bfloat16-float32")
    with pytest.raises(ValueError, match="float8_e4m3fn value"):
        matmul(np.full((2, 32), 1.1), np.ones((32, 2)),
               "hopper-wgmma-m64nNk32-float8_e4m3fn-float32")
    with pytest.raises(ValueError, match="int8"):
        matmul(np.full((1, 2), 200), np.ones((2, 1), int), "int8-int32-wrap")
    with pytest.raises(ValueError, match="channels do not match"):
        conv2d(np.ones((1, 3, 4, 4)), np.ones((2, 2, 1, 1)), "fp32-sequential-fma")
