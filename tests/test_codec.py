"""encode / decode: exhaustive for every format of 16 bits or fewer."""

import numpy as np
import pytest

import refcomp as rc
from conftest import all_codes
from table_oracle import field_values

F64_QUIET = np.uint64(1 << 51)


def test_decode_matches_field_formula(small_fmt):
    codes = all_codes(small_fmt)
    got = small_fmt.decode(codes)
    want = field_values(small_fmt)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan], want[~nan])
    assert np.array_equal(np.signbit(got[~nan]), np.signbit(want[~nan]))


def test_every_code_round_trips(small_fmt):
    codes = all_codes(small_fmt)
    values = small_fmt.decode(codes)
    back = small_fmt.encode(values).astype(np.uint64)
    canonical = codes.copy()
    if small_fmt.has_zero and not small_fmt.subnormals:
        # exponent-zero codes with a mantissa are non-canonical zeros
        mag = codes & np.uint64((1 << (small_fmt.exp_bits + small_fmt.man_bits)) - 1)
        noncanon = (mag >> np.uint64(small_fmt.man_bits)) == 0
        canonical = np.where(noncanon, codes & np.uint64(small_fmt.sign_bit), codes)
    assert np.array_equal(back, canonical)


def test_nan_payloads_survive_float64():
    f = rc.formats.float16
    codes = np.array([0x7C01, 0x7E00, 0xFD23, 0x7FFF], dtype=np.uint16)
    v = f.decode(codes)
    bits = v.view(np.uint64)
    # payload aligned at the top of the float64 mantissa, signalling bit kept
    assert [int(b) >> 42 & 0x3FF for b in bits] == [0x001, 0x200, 0x123, 0x3FF]
    assert [(int(b) & int(F64_QUIET)) != 0 for b in bits] == [False, True, False, True]
    assert np.array_equal(f.encode(v), codes)


def test_wide_formats_round_trip_random_codes():
    rng = np.random.default_rng(1)
    for name in ("tfloat32", "float32", "float64"):
        f = rc.formats.get(name)
        codes = rng.integers(0, 1 << min(f.width, 63), 50000, dtype=np.uint64)
        if f.width == 64:
            codes |= rng.integers(0, 2, codes.size, dtype=np.uint64) << np.uint64(63)
        assert np.array_equal(f.encode(f.decode(codes)).astype(np.uint64), codes)


def test_float32_decode_is_numpy_view():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 1 << 32, 100000, dtype=np.uint64).astype(np.uint32)
    got = rc.formats.float32.decode(codes)
    with np.errstate(invalid="ignore"):                 # signalling NaNs
        want = codes.view(np.float32).astype(np.float64)
    nan = np.isnan(want)
    assert np.array_equal(got[~nan], want[~nan]) and np.array_equal(np.isnan(got), nan)


def test_cast_bits_equals_encode_of_cast(catalog_fmt):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(20000) * np.exp2(rng.integers(-40, 40, 20000))
    x = np.concatenate([x, [0.0, -0.0, np.inf, -np.inf, np.nan]])
    if not catalog_fmt.signed:
        x = np.abs(x) + catalog_fmt.min_normal
    values = rc.cast(x, catalog_fmt)
    bits = rc.cast_bits(x, catalog_fmt)
    assert bits.dtype == catalog_fmt.storage_dtype
    enc = catalog_fmt.encode(values)
    nan = np.isnan(values)
    assert np.array_equal(enc[~nan], bits[~nan])
    assert np.all(np.isnan(catalog_fmt.decode(bits[nan])))


def test_decode_accepts_lists_and_keeps_shape():
    f = rc.formats.float8_e4m3fn
    assert f.decode([[0x38, 0xB8]]).shape == (1, 2)
    assert f.decode(np.uint8(0x38)) == 1.0
    assert f.decode(np.array([0x38], dtype=np.int64))[0] == 1.0
