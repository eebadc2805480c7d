"""Sub-byte packing: against a bit-stream oracle written from the documented rule, and
against torchao 0.18's pack_uint4/unpack_uint4 and its fp4 encoding (torch's
float4_e2m1fn_x2 bytes)."""

import warnings

import numpy as np
import pytest

import refcomp as rc
from refcomp.ops import pack, unpack


def oracle_pack(codes, b):
    """Little-endian bit stream: element i at stream bits i*b.., stream bit j in byte j//8."""
    stream = 0
    for i, c in enumerate(codes):
        stream |= int(c) << (i * b)
    nbytes = len(codes) * b // 8
    return [(stream >> (8 * k)) & 0xFF for k in range(nbytes)]


@pytest.mark.parametrize("b", range(1, 9))
def test_pack_matches_bit_stream_oracle(b):
    rng = np.random.default_rng(b)
    per = 8 // np.gcd(b, 8)
    for n in (per, 3 * per, 40 * per):
        c = rng.integers(0, 1 << b, n).astype(np.uint8)
        got = pack(c, b)
        assert got.dtype == np.uint8 and got.tolist() == oracle_pack(c.tolist(), b)
        assert unpack(got, b).tolist() == c.tolist()


@pytest.mark.parametrize("b", [1, 2, 4, 6])
def test_axes_and_shapes(b):
    rng = np.random.default_rng(0)
    per = 8 // np.gcd(b, 8)
    c = rng.integers(0, 1 << b, (3, 2 * per, 5)).astype(np.uint8)
    p = pack(c, 1 * b, axis=1)
    assert p.shape == (3, 2 * per * b // 8, 5)
    for i in range(3):
        for k in range(5):
            assert p[i, :, k].tolist() == oracle_pack(c[i, :, k].tolist(), b)
    assert (unpack(p, b, axis=1) == c).all()
    assert (unpack(pack(c, b, axis=-2), b, axis=-2) == c).all()


def test_exhaustive_nibble_pairs_and_int4_values():
    a, b = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    c = np.stack([a.ravel(), b.ravel()], axis=-1).astype(np.uint8)     # (256, 2)
    assert pack(c, 4).ravel().tolist() == [x | (y << 4) for x, y in c.tolist()]
    int4 = rc.formats.int_format("int4")
    vals = np.arange(-8, 8)
    assert (int4.decode(unpack(pack(int4.encode(vals), 4), 4)) == vals).all()


def _torchao_kernels():
    pytest.importorskip("torch")
    pytest.importorskip("torchao")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.prototype.mx_formats import kernels
    return kernels


def test_matches_torchao_pack_uint4():
    import torch
    k = _torchao_kernels()
    c = np.random.default_rng(1).integers(0, 16, (7, 64)).astype(np.uint8)
    theirs = k.pack_uint4(torch.from_numpy(c)).numpy()
    assert (pack(c, 4) == theirs).all()
    assert (unpack(theirs, 4) == k.unpack_uint4(torch.from_numpy(theirs)).numpy()).all()


def test_fp4_bytes_match_torchao_and_view_as_torch_float4_x2():
    """refcomp's E2M1 codes, packed, equal torchao's f32 -> fp4 -> pack_uint4 bytes, and
    survive a round trip through torch.float4_e2m1fn_x2."""
    import torch
    k = _torchao_kernels()
    x = np.random.default_rng(2).normal(size=(16, 32)).astype(np.float32) * 3
    x[0, :8] = [0.25, 0.75, 1.25, 2.5, 3.5, 5.0, 7.0, -6.5]            # ties and overflow
    ours = pack(rc.cast_bits(x, "float4_e2m1fn", overflow="saturate"), 4)
    theirs = k.pack_uint4(k.f32_to_f4_unpacked(torch.from_numpy(x)))
    assert (ours == theirs.numpy()).all()
    t = torch.from_numpy(ours).view(torch.float4_e2m1fn_x2)
    assert t.dtype.itemsize == 1 and (t.view(torch.uint8).numpy() == ours).all()


def test_pack_errors_name_the_value():
    with pytest.raises(ValueError, match="bits=9"):
        pack(np.zeros(8, np.uint8), 9)
    with pytest.raises(ValueError, match="do not fill whole bytes"):
        pack(np.zeros(3, np.uint8), 4)
    with pytest.raises(ValueError, match="code 16 at index 1 does not fit in 4 bits"):
        pack(np.array([1, 16], np.uint8), 4)
    with pytest.raises(ValueError, match="code -1"):
        pack(np.array([1, -1], np.int8), 4)
    with pytest.raises(ValueError, match="axis=2"):
        pack(np.zeros((2, 2), np.uint8), 4, axis=2)
    with pytest.raises(TypeError, match="uint8"):
        unpack(np.zeros(2, np.int16), 4)
    with pytest.raises(ValueError, match="whole number"):
        unpack(np.zeros(1, np.uint8), 6)
    with pytest.raises(TypeError, match="integer array"):
        pack(np.zeros(2), 4)


@pytest.mark.parametrize("name", ["int4", "uint4", "int2", "uint2", "int4_narrow"])
def test_pack_int_jit_and_twin_agree_with_the_oracle(name):
    from refcomp._jit import use_jit
    fmt = rc.formats.int_format(name)
    rng = np.random.default_rng(4)
    v = rng.integers(fmt.min, fmt.max, (5, 64), endpoint=True)
    for dtype in (np.int8, np.int16, np.int64) if fmt.signed else (np.uint8, np.int32):
        vv = v.astype(dtype)
        want = [oracle_pack([x & ((1 << fmt.bits) - 1) for x in row], fmt.bits)
                for row in v.tolist()]
        for jit in (True, False):
            with use_jit(jit):
                p = rc.ops.pack_int(vv, fmt)
                assert p.tolist() == want
                back = rc.ops.unpack_int(p, fmt)
                assert back.dtype == np.int64 and (back == v).all()
    with pytest.raises(ValueError, match="outside"):
        bad = v.astype(np.int64)
        bad[2, 7] = fmt.max + 1
        rc.ops.pack_int(bad, fmt)


def test_pack_int_matches_ml_dtypes_int4_storage():
    ml = pytest.importorskip("ml_dtypes")
    v = np.random.default_rng(5).integers(-8, 8, 1000).astype(np.int8)
    codes = v.astype(ml.int4).view(np.uint8) & 0xF
    assert (rc.ops.pack_int(v, "int4") == (codes[0::2] | (codes[1::2] << 4))).all()
