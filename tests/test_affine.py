"""Affine quantization conventions: bit-exact against torch 2.13 CPU and torchao 0.18, and
against a Fraction oracle written from each convention's definition."""

import warnings
from fractions import Fraction

import numpy as np
import pytest

import refcomp as rc

torch = pytest.importorskip("torch")

# torch 2.13 deprecates quantized tensors (still working); the warning is expected here
pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")


def f32(v: Fraction) -> Fraction:
    """Round a rational to float32, nearest even (oracle via the exact float64 path when
    the rational is a float64; tests only feed it products/sums of float32 values)."""
    return Fraction(float(np.float32(float(v)))) if v == Fraction(float(v)) else None


def oracle_quantize(x, s, z, qmin, qmax, before):
    """Per the definitions: inv = f32(1/s); before rounding: t = f32(x*inv + z) rounded once
    (fused); after: t = f32(x*inv); rounding half even."""
    s32 = Fraction(float(np.float32(s)))
    inv = Fraction(float(np.float32(1 / s32)))          # 1/s32 to float32 (numpy divides once)
    out = []
    for v in x.tolist():
        if before:
            exact = Fraction(v) * inv + z                # needs up to 48+ bits: not a float64
            t = f32_exact(exact)
            q = round(t)                                # Python round: half to even
        else:
            t = f32(Fraction(v) * inv)                  # product of two float32: exact in f64
            q = round(t) + z
        out.append(min(max(q, qmin), qmax))
    return out


def f32_exact(v: Fraction) -> Fraction:
    """Round any rational to float32 (normal range), nearest even, with integers only."""
    if v == 0:
        return v
    a = abs(v)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    q = a / Fraction(2) ** (e - 23)                     # in [2**23, 2**24)
    n = q.numerator // q.denominator
    r = q - n
    n += 1 if (r > Fraction(1, 2) or (r == Fraction(1, 2) and n % 2)) else 0
    out = n * Fraction(2) ** (e - 23)
    return -out if v < 0 else out


def near_ties(s, z, n=4000, seed=0):
    """float32 inputs whose scaled value lies on or next to k + 1/2 (- z)."""
    rng = np.random.default_rng(seed)
    inv = np.float32(1) / np.float32(s)
    k = rng.integers(-300, 300, n) + 0.5
    base = ((k - z) / np.float64(inv)).astype(np.float32)
    steps = rng.integers(-3, 4, n).astype(np.int32)
    return (base.view(np.int32) + steps).view(np.float32)


SCALES = [(0.0123, 3), (0.1, 0), (1 / 3, 128), (2.0 ** -7, 7), (37.5, 200)]


@pytest.mark.parametrize("s,z", SCALES)
def test_quantize_per_tensor_and_fake_quant_match_torch(s, z):
    rng = np.random.default_rng(1)
    x = np.concatenate([(rng.normal(size=20000) * 4).astype(np.float32), near_ties(s, z),
                        np.array([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf], np.float32)])
    xt = torch.from_numpy(x)
    q = torch.quantize_per_tensor(xt, s, z, torch.quint8)
    ours = rc.ops.quantize_affine(x, s, z, 0, 255, "torch-2.13-quantize_per_tensor")
    assert (q.int_repr().numpy() == ours).all()
    d = torch.dequantize(q).numpy()
    assert (d == rc.ops.dequantize_affine(ours, s, z).astype(np.float32)).all()
    fq = torch.fake_quantize_per_tensor_affine(xt, s, z, 0, 255).numpy()
    assert (fq.view(np.uint32) == rc.ops.fake_quantize_affine(x, s, z, 0, 255)
            .astype(np.float32).view(np.uint32)).all()
    fin = np.isfinite(x)
    for before, conv in ((True, "torch-2.13-quantize_per_tensor"),
                         (False, "torch-2.13-fake_quantize")):
        assert rc.ops.quantize_affine(x[fin], s, z, 0, 255, conv).tolist() == \
            oracle_quantize(x[fin], s, z, 0, 255, before)


def test_zero_point_before_and_after_rounding_differ_as_documented():
    """x * inv = 2.5 exactly with z = 1: before rounding 3.5 -> 4, after 2 + 1 = 3."""
    x = np.array([0.25], np.float32)
    assert rc.ops.quantize_affine(x, 0.1, 1, 0, 255, "torch-2.13-quantize_per_tensor") == 4
    assert rc.ops.quantize_affine(x, 0.1, 1, 0, 255, "torch-2.13-fake_quantize") == 3
    xt = torch.from_numpy(x)
    assert torch.quantize_per_tensor(xt, 0.1, 1, torch.quint8).int_repr().item() == 4
    assert torch.fake_quantize_per_tensor_affine(xt, 0.1, 1, 0, 255).item() == \
        pytest.approx(float(np.float32(2) * np.float32(0.1)), abs=0)


def test_per_channel_matches_torch():
    """quantize_per_channel does NOT fuse the zero-point addition (unlike per-tensor):
    near-tie inputs tell the two apart."""
    rng = np.random.default_rng(2)
    s = np.array([0.0123, 1 / 3, 37.5, 0.05, 0.1, 2.0 ** -7])
    z = np.array([3, 100, 120, -5, 1, 7]) - 60
    ties = np.stack([near_ties(si, zi, n=600, seed=i) for i, (si, zi) in enumerate(zip(s, z))])
    x = np.concatenate([ties, (rng.normal(size=(6, 300)) * 3).astype(np.float32)], axis=1)
    q = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(s),
                                   torch.from_numpy(z), 0, torch.qint8).int_repr().numpy()
    ours = rc.ops.quantize_affine(x, s[:, None], z[:, None], -128, 127,
                                  "torch-2.13-quantize_per_channel")
    assert (q == ours).all()
    fused = rc.ops.quantize_affine(x, s[:, None], z[:, None], -128, 127,
                                   "torch-2.13-quantize_per_tensor")
    assert (fused != q).any()                        # the inputs do distinguish them
    x1 = np.array([[0.17834997] * 9] * 2, np.float32)            # the documented example
    q1 = torch.quantize_per_channel(torch.from_numpy(x1), torch.tensor([0.0123, 0.0123],
                                    dtype=torch.float64), torch.tensor([3, 3]), 0,
                                    torch.quint8).int_repr().numpy()
    assert (q1 == 18).all()
    assert (rc.ops.quantize_affine(x1, 0.0123, 3, 0, 255,
                                   "torch-2.13-quantize_per_channel") == 18).all()
    fq = torch.fake_quantize_per_channel_affine(torch.from_numpy(x),
                                                torch.from_numpy(s.astype(np.float32)),
                                                torch.from_numpy(z.astype(np.int32)), 0,
                                                -128, 127).numpy()
    assert (fq == rc.ops.fake_quantize_affine(x, s[:, None], z[:, None], -128, 127)
            .astype(np.float32)).all()


def _torchao():
    pytest.importorskip("torchao")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.quantization import quant_primitives as qp
    return qp


@pytest.mark.parametrize("dtype,fmt", [("float32", "float32"), ("bfloat16", "bfloat16"),
                                       ("float16", "float16")])
@pytest.mark.parametrize("mapping", ["symmetric", "asymmetric", "symmetric_no_clipping_err"])
@pytest.mark.parametrize("target,qmin,qmax", [("int8", -128, 127), ("uint8", 0, 255),
                                              ("int8", -8, 7)])
def test_torchao_choose_quantize_dequantize(dtype, fmt, mapping, target, qmin, qmax):
    qp = _torchao()
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(32, 128)) * rng.uniform(0.01, 10, (32, 1))).astype(np.float32)
    x[0, :32] = 0.0                                     # an all-zero block: scale = eps
    xt = torch.from_numpy(x).to(getattr(torch, dtype))
    xv = xt.float().numpy()
    bs = (1, 32)
    tdt = getattr(torch, target)
    s, z = qp.choose_qparams_affine(xt, getattr(qp.MappingType, mapping.upper()), bs, tdt,
                                    qmin, qmax)
    os_, oz = rc.ops.choose_qparams_affine(xv, mapping, bs, qmin, qmax, fmt=fmt)
    assert (s.float().numpy().view(np.uint32) == os_.astype(np.float32).view(np.uint32)).all()
    assert (z.numpy().astype(np.int64) == oz).all()
    q = qp.quantize_affine(xt, bs, s, z, tdt, qmin, qmax)
    se, ze = np.repeat(os_, 32, axis=1), np.repeat(oz, 32, axis=1)
    oq = rc.ops.quantize_affine(xv, se, ze, qmin, qmax, "torchao-0.18", fmt=fmt)
    assert (q.numpy().astype(np.int64) == oq).all()
    d = qp.dequantize_affine(q, bs, s, z, tdt, qmin, qmax, output_dtype=torch.float32).numpy()
    assert (d == rc.ops.dequantize_affine(oq, se, ze).astype(np.float32)).all()


def test_errors_name_the_value():
    with pytest.raises(ValueError, match=r"x\[1\] is NaN"):
        rc.ops.quantize_affine([1.0, np.nan], 0.1, 0, 0, 255)
    with pytest.raises(ValueError, match=r"scale\[0\] = 0.0 is not a positive"):
        rc.ops.quantize_affine([1.0], 0.0, 0, 0, 255)
    with pytest.raises(ValueError, match="qmin=5 is above qmax=4"):
        rc.ops.quantize_affine([1.0], 0.1, 0, 5, 4)
    with pytest.raises(ValueError, match="unknown affine convention 'tflite'"):
        rc.ops.quantize_affine([1.0], 0.1, 0, 0, 255, "tflite")
    with pytest.raises(ValueError, match="not divisible by block_size"):
        rc.ops.choose_qparams_affine(np.zeros((2, 30)), "symmetric", (1, 32), -128, 127)
    with pytest.raises(ValueError, match="unknown mapping"):
        rc.ops.choose_qparams_affine(np.zeros((2, 32)), "sym", (1, 32), -128, 127)
    with pytest.raises(ValueError, match=r"zero_point\[0\] = 0.5 is not an integer"):
        rc.ops.quantize_affine([1.0], 0.1, 0.5, 0, 255)
    with pytest.raises(ValueError, match=r"zero_point\[0\] = inf"):
        rc.ops.dequantize_affine([1, 2], 0.1, float("inf"))
    with pytest.raises(TypeError, match="got None"):
        rc.ops.quantize_affine([1.0], 0.1, None, 0, 255)
