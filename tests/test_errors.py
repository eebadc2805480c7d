"""Bad input: every public entry point rejects it with the right exception type and a message
that names the offending value (and, for misspelt names, suggests the intended one).

Also checks the edges that must NOT be errors: Python ints, uint64 extremes, scalars,
0-d arrays and empty arrays.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import refcomp as rc
from refcomp._jit import use_jit
from refcomp.formats import FloatFormat


def _m(text: str) -> str:
    """A `match=` pattern for a literal piece of text."""
    return re.escape(text)


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize("name, suggestion", [
    ("float8_e4m3fm", "float8_e4m3fn"),
    ("float8e4m3fn", "float8_e4m3fn"),
    ("bfloat61", "bfloat16"),
    ("flaot16", "float16"),
    ("float6_e2m3", "float6_e2m3fn"),
])
def test_unknown_format_suggests_closest(name, suggestion):
    with pytest.raises(ValueError, match=_m(repr(name))) as info:
        rc.formats.get(name)
    msg = str(info.value)
    assert "did you mean" in msg
    # the closest candidate is offered first
    assert msg.split("did you mean", 1)[1].lstrip().startswith(repr(suggestion))


def test_unknown_format_without_close_match_lists_catalog():
    with pytest.raises(ValueError, match="unknown format 'bogus'") as info:
        rc.formats.get("bogus")
    msg = str(info.value)
    assert "did you mean" not in msg
    for name in rc.formats.names():
        assert name in msg


@pytest.mark.parametrize("call", [
    lambda: rc.cast(1.0, "float8_e4m3fm"),
    lambda: rc.cast_bits(1.0, "float8_e4m3fm"),
    lambda: rc.ops.add(1.0, 2.0, "float8_e4m3fm"),
    lambda: rc.ops.next_up(1.0, "float8_e4m3fm"),
    lambda: rc.ops.ulp(1.0, "float8_e4m3fm"),
    lambda: rc.formats.decode(0, "float8_e4m3fm"),
    lambda: rc.formats.encode(1.0, "float8_e4m3fm"),
], ids=["cast", "cast_bits", "add", "next_up", "ulp", "decode", "encode"])
def test_unknown_format_everywhere(call):
    with pytest.raises(ValueError, match=r"unknown format 'float8_e4m3fm'; did you mean "
                                         r"'float8_e4m3fn'"):
        call()


@pytest.mark.parametrize("fmt", [None, 16, 1.5, np.float16])
def test_format_of_wrong_type(fmt):
    with pytest.raises(TypeError, match=_m(repr(fmt))):
        rc.cast(1.0, fmt)


@pytest.mark.parametrize("kwargs, exc, text", [
    (dict(exp_bits=0, man_bits=3), ValueError, "exp_bits=0"),
    (dict(exp_bits=12, man_bits=3), ValueError, "exp_bits=12"),
    (dict(exp_bits=-1, man_bits=3), ValueError, "exp_bits=-1"),
    (dict(exp_bits=5, man_bits=53), ValueError, "man_bits=53"),
    (dict(exp_bits=5, man_bits=-1), ValueError, "man_bits=-1"),
    (dict(exp_bits=4.0, man_bits=3), TypeError, "exp_bits must be an integer, got 4.0"),
    (dict(exp_bits=2.5, man_bits=3), TypeError, "got 2.5"),
    (dict(exp_bits="4", man_bits=3), TypeError, "got '4'"),
    (dict(exp_bits=True, man_bits=3), TypeError, "exp_bits must be an integer, got True"),
    (dict(exp_bits=4, man_bits=False), TypeError, "man_bits must be an integer, got False"),
    (dict(exp_bits=4, man_bits=3, bias=7.0), TypeError, "bias must be an integer, got 7.0"),
    (dict(exp_bits=4, man_bits=3, bias=2 ** 30), ValueError, f"bias={2 ** 30}"),
    (dict(exp_bits=4, man_bits=3, specials="fnz"), ValueError, "specials='fnz'"),
    (dict(exp_bits=4, man_bits=3, subnormals=1), TypeError, "subnormals must be a bool, got 1"),
    (dict(exp_bits=4, man_bits=3, signed="yes"), TypeError, "signed must be a bool, got 'yes'"),
    (dict(exp_bits=4, man_bits=3, name=""), TypeError, "got ''"),
    (dict(exp_bits=4, man_bits=3, name=7), TypeError, "got 7"),
])
def test_floatformat_impossible_fields(kwargs, exc, text):
    with pytest.raises(exc, match=_m(text)):
        FloatFormat(**kwargs)


def test_floatformat_range_message_gives_the_limits():
    with pytest.raises(ValueError, match=_m("exp_bits=12 is out of range: it must be in [1, 11]")):
        FloatFormat(12, 3)
    with pytest.raises(ValueError, match=_m("man_bits=53 is out of range: it must be in [0, 52]")):
        FloatFormat(5, 53)


@pytest.mark.parametrize("name, text", [
    ("e12m3", "exp_bits=12"),
    ("e0m3", "exp_bits=0"),
    ("e5m53", "man_bits=53"),
    ("e5m0", "man_bits >= 1"),
])
def test_custom_name_with_impossible_fields(name, text):
    with pytest.raises(ValueError, match=_m(text)):
        rc.formats.get(name)


def test_widest_format_is_64_bits():
    # sign + 11 + 52 = 64 bits: the field limits make a wider format unconstructible
    f = FloatFormat(11, 52)
    assert f.width == 64 and f.storage_dtype == np.uint64
    assert f.max_finite == np.finfo(np.float64).max
    for e, m in ((12, 52), (11, 53)):
        with pytest.raises(ValueError, match="out of range"):
            FloatFormat(e, m)


def test_ieee_without_mantissa():
    with pytest.raises(ValueError, match=_m("specials='ieee' needs man_bits >= 1")):
        FloatFormat(4, 0)


def test_fnuz_unsigned():
    with pytest.raises(ValueError, match=_m("specials='fnuz' needs a sign bit")):
        FloatFormat(4, 3, specials="fnuz", signed=False)


def test_no_zero_with_subnormals():
    with pytest.raises(ValueError, match=_m("has_zero=False needs subnormals=False")):
        FloatFormat(8, 0, specials="fn", signed=False, has_zero=False)   # subnormals=True
    # the E8M0 layout itself is fine
    f = FloatFormat(8, 0, 127, "fn", subnormals=False, signed=False, has_zero=False)
    assert f.min_normal == 2.0 ** -127


def test_format_without_positive_value():
    with pytest.raises(ValueError, match=_m("e1m0 with specials='fn' has no positive finite")):
        FloatFormat(1, 0, specials="fn")


@pytest.mark.parametrize("bias, text", [
    (0, "bias=0"),            # emax = 2046: beyond float64's 1023
    (-200, "bias=-200"),
    (2000, "bias=2000"),      # quantum 2**-2051: below float64's 2**-1074
])
def test_bias_not_exact_in_float64(bias, text):
    with pytest.raises(ValueError, match=_m(text)) as info:
        FloatFormat(11, 52, bias=bias)
    assert "float64" in str(info.value)


# -------------------------------------------------------------------- option strings
@pytest.mark.parametrize("kwargs, what, bad, suggestion", [
    (dict(rounding="nearest_evn"), "rounding mode", "nearest_evn", "nearest_even"),
    (dict(rounding="toward_zer0"), "rounding mode", "toward_zer0", "toward_zero"),
    (dict(overflow="saturat"), "overflow rule", "saturat", "saturate"),
    (dict(subnormals="flsh"), "subnormal mode", "flsh", "flush"),
    (dict(tininess="befor"), "tininess", "befor", "before"),
])
def test_unknown_option_string_suggests(kwargs, what, bad, suggestion):
    pattern = _m(f"unknown {what} {bad!r}; did you mean {suggestion!r}?")
    with pytest.raises(ValueError, match=pattern):
        rc.cast(1.0, "float16", **kwargs)
    with pytest.raises(ValueError, match=pattern):
        rc.ops.add(1.0, 1.0, "float16", **kwargs)


def test_unknown_option_without_close_match_lists_valid():
    with pytest.raises(ValueError, match=_m("unknown rounding mode 'banana'")) as info:
        rc.cast(1.0, "float16", "banana")
    for r in rc.Rounding:
        assert r.value in str(info.value)


@pytest.mark.parametrize("kwargs, text", [
    (dict(rounding=3), "rounding mode must be a string or Rounding, got 3"),
    (dict(rounding=None), "got None"),
    (dict(overflow=1), "overflow rule must be a string or Overflow, got 1"),
    (dict(subnormals=True), "got True"),
    (dict(tininess=0), "got 0"),
])
def test_option_of_wrong_type(kwargs, text):
    with pytest.raises(TypeError, match=_m(text)):
        rc.cast(1.0, "float16", **kwargs)


def test_option_spellings_are_normalised():
    assert rc.cast(1.0, "float16", "Nearest-Even") == 1.0
    assert rc.cast(1.0, "float16", rc.Rounding.TOWARD_ZERO, subnormals="FLUSH-DAZ") == 1.0


# ------------------------------------------------------------- stochastic rounding
def _sr_calls(**kw):
    return {
        "cast": lambda: rc.cast(1.0 / 3.0, "float16", "stochastic", **kw),
        "cast_bits": lambda: rc.cast_bits(1.0 / 3.0, "float16", "stochastic", **kw),
        "div": lambda: rc.ops.div(1.0, 3.0, "float16", "stochastic", **kw),
        "sqrt": lambda: rc.ops.sqrt(2.0, "float16", "stochastic", **kw),
        "round_to_integral": lambda: rc.ops.round_to_integral(2.5, "float16", "stochastic",
                                                              **kw),
        "to_int": lambda: rc.ops.to_int(2.5, rounding="stochastic", **kw),
    }


@pytest.mark.parametrize("name", list(_sr_calls()))
def test_stochastic_without_rng(name):
    with pytest.raises(ValueError, match=r"rounding='stochastic' needs .*rng="):
        _sr_calls()[name]()


@pytest.mark.parametrize("rng, tname", [(42, "int"), (np.random.RandomState(0), "RandomState"),
                                        ("seed", "str")])
@pytest.mark.parametrize("name", list(_sr_calls()))
def test_stochastic_rng_of_wrong_type(name, rng, tname):
    with pytest.raises(TypeError, match=_m(f"rng must be a numpy.random.Generator, got {tname}")):
        _sr_calls(rng=rng)[name]()


def test_rng_of_wrong_type_rejected_even_when_unused():
    with pytest.raises(TypeError, match="got int"):
        rc.cast(1.0, "float16", rng=42)
    # a Generator with a deterministic mode is harmless
    assert rc.cast(1.0, "float16", rng=np.random.default_rng(0)) == 1.0


@pytest.mark.parametrize("bits", [0, -1, 65, 1000])
def test_random_bits_out_of_range(bits):
    g = np.random.default_rng(0)
    text = f"random_bits={bits} is out of range: it must be in [1, 64]"
    with pytest.raises(ValueError, match=_m(text)):
        rc.cast(0.1, "float16", "stochastic", rng=g, random_bits=bits)
    with pytest.raises(ValueError, match=_m(text)):
        rc.ops.add(0.1, 0.2, "float16", "stochastic", rng=g, random_bits=bits)
    with pytest.raises(ValueError, match=_m(text)):
        rc.ops.to_int(0.5, rounding="stochastic", rng=g, random_bits=bits)


@pytest.mark.parametrize("bits", [8.0, True, "8"])
def test_random_bits_not_an_integer(bits):
    with pytest.raises(TypeError, match=_m(f"random_bits must be an integer, got {bits!r}")):
        rc.cast(0.1, "float16", "stochastic", rng=np.random.default_rng(0), random_bits=bits)


@pytest.mark.parametrize("bits", [1, 64, np.int8(12)])
def test_random_bits_limits_accepted(bits):
    v = rc.cast(0.1, "float16", "stochastic", rng=np.random.default_rng(0), random_bits=bits)
    lo = rc.cast(0.1, "float16", "toward_zero")
    hi = rc.cast(0.1, "float16", "toward_positive")
    assert v in (lo, hi)


@pytest.mark.parametrize("mode", ["nearest_even", "toward_zero", "odd"])
def test_random_bits_with_deterministic_mode(mode):
    text = f"random_bits=8 only applies to rounding='stochastic', not {mode!r}"
    with pytest.raises(ValueError, match=_m(text)):
        rc.cast(0.1, "float16", mode, random_bits=8)
    with pytest.raises(ValueError, match=_m(text)):
        rc.ops.mul(0.1, 3.0, "float16", mode, random_bits=8)
    with pytest.raises(ValueError, match=_m(text)):
        rc.ops.to_int(0.1, rounding=mode, random_bits=8)


# ------------------------------------------------------------------- bad inputs
_CASTS = {
    "cast": lambda x: rc.cast(x, "float16"),
    "cast_bits": lambda x: rc.cast_bits(x, "float16"),
}
_OPS = {
    "add": lambda x: rc.ops.add(x, 1.0, "float16"),
    "sub.b": lambda x: rc.ops.sub(1.0, x, "float16"),
    "mul": lambda x: rc.ops.mul(x, 1.0, "float16"),
    "div.b": lambda x: rc.ops.div(1.0, x, "float16"),
    "sqrt": lambda x: rc.ops.sqrt(x, "float16"),
    "fma.c": lambda x: rc.ops.fma(1.0, 1.0, x, "float16"),
    "round_to_integral": lambda x: rc.ops.round_to_integral(x, "float16"),
    "to_int": lambda x: rc.ops.to_int(x),
    "lt.b": lambda x: rc.ops.lt(1.0, x),
    "eq": lambda x: rc.ops.eq(x, 1.0),
    "next_up": lambda x: rc.ops.next_up(x, "float16"),
    "next_down": lambda x: rc.ops.next_down(x, "float16"),
    "ulp": lambda x: rc.ops.ulp(x, "float16"),
}
_ALL = {**_CASTS, **_OPS}


def _operand_name(fn_name: str) -> str:
    return {"sub.b": "b", "div.b": "b", "fma.c": "c", "lt.b": "b"}.get(fn_name, "a") \
        if fn_name in _OPS else "x"


@pytest.mark.parametrize("fn", list(_ALL))
@pytest.mark.parametrize("bad, text", [
    (np.array([1.5, None], dtype=object), "has dtype object (element None)"),
    (np.array([2.0, 3.0], dtype=object), "has dtype object"),
    ({"a": 1}, "has dtype object (element {'a': 1})"),
    (None, "has dtype object (element None)"),
    ("1.5", "holds strings (e.g. '1.5')"),
    (["1.0", "2.0"], "holds strings (e.g. '1.0')"),
    (b"1", "holds strings (e.g. b'1')"),
    (1 + 2j, "has dtype complex128"),
    (np.array([1 + 0j]), "has dtype complex128"),
    pytest.param(np.array([1.0], dtype=np.longdouble),
                 f"has dtype {np.dtype(np.longdouble)}",
                 marks=pytest.mark.skipif(np.dtype(np.longdouble).itemsize == 8,
                                          reason="long double is float64 here")),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), "has dtype datetime64[D]"),
], ids=["obj-None", "obj-floats", "dict", "None", "str", "str-list", "bytes", "complex",
        "complex-array", "longdouble", "datetime"])
def test_non_numeric_input(fn, bad, text):
    what = _operand_name(fn)
    with pytest.raises(TypeError, match=_m(f"{what} {text}")):
        _ALL[fn](bad)


@pytest.mark.parametrize("fn", list(_ALL))
@pytest.mark.parametrize("bad, text", [
    (True, "is a bool (True)"),
    (np.bool_(False), "is a bool ("),
    (np.array([True, False]), "is a bool array"),
    ([True, False], "is a bool array"),
])
def test_bool_input(fn, bad, text):
    what = _operand_name(fn)
    with pytest.raises(TypeError, match=_m(f"{what} {text}")):
        _ALL[fn](bad)


@pytest.mark.parametrize("fn", list(_ALL))
@pytest.mark.parametrize("dtype_name", ["bfloat16", "float8_e4m3fn", "float8_e5m2",
                                        "float8_e8m0fnu", "float6_e2m3fn", "float4_e2m1fn"])
def test_ml_dtypes_input_suggests_astype(fn, dtype_name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.ones(3, dtype=getattr(ml_dtypes, dtype_name))
    what = _operand_name(fn)
    with pytest.raises(TypeError, match=_m(f"{what} has dtype {dtype_name}")) as info:
        _ALL[fn](x)
    assert ".astype(numpy.float32)" in str(info.value)
    # ... and the suggested conversion works
    if fn in _CASTS:
        _ALL[fn](x.astype(np.float32))


def test_ml_dtypes_scalar_input_suggests_astype():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match=r"x has dtype bfloat16.*astype\(numpy\.float32\)"):
        rc.cast(ml_dtypes.bfloat16(1.0), "float16")


@pytest.mark.parametrize("fn", list(_CASTS))
@pytest.mark.parametrize("big", [2 ** 70, -2 ** 70, 2 ** 64, -2 ** 63 - 1])
def test_integer_beyond_64_bits(fn, big):
    with pytest.raises(TypeError, match=_m(str(big))):
        _CASTS[fn](big)
    with pytest.raises(TypeError, match=_m(str(big))):
        _CASTS[fn]([big, 1])
    with pytest.raises(TypeError, match=_m(str(big))):
        _CASTS[fn](np.array([big], dtype=object))


@pytest.mark.parametrize("fn", list(_OPS))
@pytest.mark.parametrize("x, dt", [
    (np.array([1, 2]), "int64"),
    (np.array([1], dtype=np.uint8), "uint8"),
    (np.array([1], dtype=np.uint64), "uint64"),
    (3, "int64"),
], ids=["int64", "uint8", "uint64", "pyint"])
def test_ops_reject_integers(fn, x, dt):
    what = _operand_name(fn)
    with pytest.raises(TypeError, match=_m(f"{what} has dtype {dt}, not a float16/32/64 array")):
        _OPS[fn](x)


def test_ops_accept_floats_of_mixed_widths():
    # float16 + float32 operands: promoted without loss, then rounded once
    v = rc.ops.add(np.float16(1.0), np.float32(2.0 ** -20), "float32")
    assert v == 1.0 + 2.0 ** -20


_BINARY = {
    "add": lambda a, b: rc.ops.add(a, b, "float16"),
    "div": lambda a, b: rc.ops.div(a, b, "float16"),
    "fma": lambda a, b: rc.ops.fma(a, b, 1.0, "float16"),
    "lt": lambda a, b: rc.ops.lt(a, b),
    "ne": lambda a, b: rc.ops.ne(a, b),
}


@pytest.mark.parametrize("fn", list(_BINARY))
def test_ops_shape_mismatch(fn):
    with pytest.raises(ValueError, match=r"shape mismatch.*\(3,\).*\(4,\)"):
        _BINARY[fn](np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2,\)"):
        _BINARY[fn](np.ones((2, 3)), np.ones(2))


def test_fma_third_operand_shape_mismatch():
    with pytest.raises(ValueError, match=r"shape mismatch.*\(5,\)"):
        rc.ops.fma(np.ones((2, 3)), np.ones(3), np.ones(5), "float16")


@pytest.mark.parametrize("fn", list(_BINARY))
def test_ops_broadcast(fn):
    a, b = np.ones((3, 1)), np.full(4, 2.0)
    assert _BINARY[fn](a, b).shape == (3, 4)
    assert _BINARY[fn](a, 2.0).shape == (3, 1)
    assert _BINARY[fn](np.ones((2, 0, 1)), np.ones(5)).shape == (2, 0, 5)


def test_fma_broadcasts_three_operands():
    out = rc.ops.fma(np.full((2, 1, 1), 3.0), np.full((3, 1), 0.5), np.arange(4.0), "float16")
    assert out.shape == (2, 3, 4)
    assert out[1, 2].tolist() == [1.5, 2.5, 3.5, 4.5]
    v, fl = rc.ops.add(np.ones((3, 1)), np.ones(4), "float16", flags=True)
    assert v.shape == fl.shape == (3, 4)


def test_ragged_list_is_numpys_error():
    with pytest.raises(ValueError, match="inhomogeneous"):
        rc.cast([[1.0], [1.0, 2.0]], "float16")


# ------------------------------------------------------------------ decode/encode
@pytest.mark.parametrize("bits, fmt, text", [
    (256, "float8_e4m3fn", "bit pattern 0x100 does not fit float8_e4m3fn"),
    ([1, 300], "float8_e4m3fn", "bit pattern 0x12c"),
    (np.array([5, 2 ** 8], dtype=np.uint16), "float8_e5m2", "bit pattern 0x100"),
    (16, "float4_e2m1fn", "bit pattern 0x10 does not fit float4_e2m1fn: codes have 4 bits"),
    (64, "float6_e3m2fn", "bit pattern 0x40"),
    (2 ** 16, "float16", "bit pattern 0x10000"),
    (2 ** 19, "tfloat32", "bit pattern 0x80000"),
])
def test_decode_bits_too_wide(bits, fmt, text):
    with pytest.raises(ValueError, match=_m(text)):
        rc.formats.decode(bits, fmt)
    with pytest.raises(ValueError, match=_m(text)):
        rc.formats.get(fmt).decode(bits)


@pytest.mark.parametrize("bits, text", [
    (-1, "bit pattern -1 is negative"),
    ([3, -5], "bit pattern -5 is negative"),
    (np.array([-128], dtype=np.int8), "bit pattern -128 is negative"),
])
def test_decode_negative_bits(bits, text):
    with pytest.raises(ValueError, match=_m(text)):
        rc.formats.decode(bits, "float8_e4m3fn")


@pytest.mark.parametrize("bits, text", [
    (np.array([1.0, 2.0]), "got dtype float64"),
    (1.5, "got dtype float64"),
    (np.array([1], dtype=np.float32), "got dtype float32"),
    (np.array([True]), "got dtype bool"),
    ("0x7e", "got dtype <U4"),
    ([None], "got dtype object (e.g. None)"),
])
def test_decode_non_integer_bits(bits, text):
    with pytest.raises(TypeError, match=_m(text)):
        rc.formats.decode(bits, "float8_e4m3fn")


def test_decode_integer_beyond_uint64_names_it():
    # (the exception type is TypeError today while a merely too-wide code gives
    # ValueError; the message names the value either way)
    with pytest.raises((TypeError, ValueError), match=_m(str(2 ** 70))):
        rc.formats.decode(2 ** 70, "float8_e4m3fn")


def test_decode_accepts_full_range():
    assert rc.formats.decode(np.uint64(2 ** 64 - 1), "float64").dtype == np.float64
    assert np.isnan(rc.formats.decode(0xFF, "float8_e4m3fn"))    # S.1111.111 is NaN (OFP8)
    out = rc.formats.decode(np.zeros((0, 2), dtype=np.uint8), "float8_e4m3fn")
    assert out.shape == (0, 2) and out.dtype == np.float64


@pytest.mark.parametrize("value, fmt, text", [
    (0.1, "float8_e4m3fn", "value 0.1 cannot be encoded: float8_e4m3fn cannot represent it"),
    ([1.0, 0.1], "float8_e4m3fn", "value 0.1 "),
    (480.0, "float8_e4m3fn", "value 480.0 "),        # beyond 448 = 1.75 * 2**8
    (2.0 ** -10, "float8_e4m3fn", "value 0.0009765625 "),   # below 2**-9
    (np.inf, "float8_e4m3fn", "value inf cannot be encoded: float8_e4m3fn has no infinity"),
    ([-np.inf], "float8_e4m3fnuz", "value -inf cannot be encoded: float8_e4m3fnuz has no inf"),
    (np.nan, "float4_e2m1fn", "value nan cannot be encoded: float4_e2m1fn has no NaN"),
    (np.inf, "float6_e3m2fn", "value inf cannot be encoded: float6_e3m2fn has no infinity"),
    (-2.0, "float8_e8m0fnu", "value -2.0 cannot be encoded: float8_e8m0fnu is unsigned"),
    (0.0, "float8_e8m0fnu", "value 0.0 cannot be encoded: float8_e8m0fnu has no zero"),
    (-0.0, "float8_e8m0fnu", "value -0.0 cannot be encoded: float8_e8m0fnu has no zero"),
    (3.0, "float8_e8m0fnu", "value 3.0 cannot be encoded: float8_e8m0fnu cannot represent"),
    (5e-324, "float32", "value 5e-324 "),
    (np.float32(0.1), "bfloat16", "value 0.10000000149011612 "),
])
def test_encode_not_representable(value, fmt, text):
    with pytest.raises(ValueError, match=_m(text)) as info:
        rc.formats.encode(value, fmt)
    assert "cast_bits" in str(info.value)        # points at the rounding function


def test_encode_integer_not_exact_in_float64():
    with pytest.raises(ValueError, match=_m(f"integer {2 ** 53 + 1} is not exact in float64")):
        rc.formats.encode(2 ** 53 + 1, "float64")


@pytest.mark.parametrize("value, text", [
    ("1.0", "holds strings (e.g. '1.0')"),
    ([None], "has dtype object (element None)"),
    (True, "is a bool (True)"),
    (np.array([1 + 1j]), "got dtype complex128"),
])
def test_encode_non_numeric(value, text):
    with pytest.raises(TypeError, match=_m(text)):
        rc.formats.encode(value, "float8_e4m3fn")


def test_encode_ml_dtypes_array():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match="got dtype bfloat16"):
        rc.formats.encode(np.ones(2, dtype=ml_dtypes.bfloat16), "bfloat16")


def test_encode_edges_that_are_fine():
    assert rc.formats.encode(448.0, "float8_e4m3fn") == 0x7E
    assert rc.formats.encode(-0.0, "float8_e4m3fnuz") == 0          # no -0: encodes as +0
    assert rc.formats.encode(2.0 ** -127, "float8_e8m0fnu") == 0
    assert rc.formats.encode(np.int64(2 ** 62), "float64") == np.float64(2.0 ** 62).view(
        np.uint64)
    out = rc.formats.encode(np.zeros((0, 2)), "float8_e4m3fn")
    assert out.shape == (0, 2) and out.dtype == np.uint8


# -------------------------------------------------------------------- profiles
@pytest.mark.parametrize("name, suggestion", [
    ("torch-2.13-gpu", "torch-2.13-cpu"),
    ("torch-2.13", "torch-2.13-cpu"),
    ("ml_dtypes-0.5", "ml_dtypes-0.6"),
])
def test_unknown_profile_suggests(name, suggestion):
    pattern = _m(f"unknown profile {name!r}; did you mean {suggestion!r}")
    with pytest.raises(ValueError, match=pattern):
        rc.cast(1.0, "float16", profile=name)
    with pytest.raises(ValueError, match=pattern):
        rc.get_profile(name)


def test_unknown_profile_lists_known():
    with pytest.raises(ValueError, match="unknown profile 'zzz'") as info:
        rc.get_profile("zzz")
    for name in rc.PROFILES:
        assert name in str(info.value)


def test_profile_of_wrong_type():
    with pytest.raises(TypeError, match="got 3"):
        rc.cast(1.0, "float16", profile=3)


@pytest.mark.parametrize("profile, fmt", [
    ("torch-2.13-cpu", "float6_e2m3fn"),
    ("torch-2.13-cpu", "float4_e2m1fn"),
    ("torch-2.13-cpu", "e5m7"),
    ("ml_dtypes-0.6", "float16"),
])
def test_profile_lacks_format(profile, fmt):
    pattern = _m(f"profile {profile!r} has no {fmt!r}")
    with pytest.raises(ValueError, match=pattern):
        rc.cast(1.0, fmt, profile=profile)
    with pytest.raises(ValueError, match=pattern):
        rc.cast_bits(1.0, fmt, profile=profile)
    with pytest.raises(ValueError, match=pattern):
        rc.ops.add(1.0, 1.0, fmt, profile=profile)


@pytest.mark.parametrize("mode", ["toward_zero", "odd", "nearest_away"])
def test_profile_unsupported_rounding(mode):
    pattern = _m(f"profile 'torch-2.13-cpu': PyTorch (CPU) 2.13.0 casts with nearest_even "
                 f"only, not {mode!r}")
    with pytest.raises(ValueError, match=pattern):
        rc.cast(1.0, "bfloat16", mode, profile="torch-2.13-cpu")


def test_profile_unsupported_stochastic():
    with pytest.raises(ValueError, match="not 'stochastic'"):
        rc.cast(1.0, "float8_e4m3fn", "stochastic", rng=np.random.default_rng(0),
                profile="ml_dtypes-0.6")


@pytest.mark.parametrize("fmt, fixed, passed", [
    ("float8_e4m3fn", "saturate", "ieee"),
    ("float16", "ieee", "saturate"),
])
def test_profile_overflow_conflict(fmt, fixed, passed):
    pattern = _m(f"profile 'torch-2.13-cpu' fixes overflow={fixed!r} for {fmt}; do not pass "
                 f"overflow={passed!r}")
    with pytest.raises(ValueError, match=pattern):
        rc.cast(1e9, fmt, overflow=passed, profile="torch-2.13-cpu")


def test_profile_overflow_agreeing_is_fine():
    # torch saturates float8_e4m3fn: max finite 448 = 1.75 * 2**8
    v = rc.cast(1e9, "float8_e4m3fn", overflow="saturate", profile="torch-2.13-cpu")
    assert v == 1.75 * 2 ** 8


# ------------------------------------------------------------------------ dtype=
@pytest.mark.parametrize("fmt, dtype", [
    ("bfloat16", np.float16),        # 8 exponent bits do not fit float16's 5
    ("float32", np.float16),
    ("float64", np.float32),
    ("tfloat32", np.float16),
    ("float8_e8m0fnu", np.float16),  # 2**127 > float16 max
    ("e8m24", np.float32),           # one mantissa bit too many
])
def test_dtype_cannot_hold_format(fmt, dtype):
    name = np.dtype(dtype).name
    pattern = _m(f"dtype={name} cannot hold every value of {rc.formats.get(fmt).name} exactly")
    with pytest.raises(ValueError, match=pattern):
        rc.cast(1.0, fmt, dtype=dtype)
    with pytest.raises(ValueError, match=pattern):
        rc.ops.add(1.0, 1.0, fmt, dtype=dtype)
    with pytest.raises(ValueError, match=pattern):
        rc.ops.round_to_integral(1.0, fmt, dtype=dtype)


@pytest.mark.parametrize("dtype, exc, text", [
    (np.int32, TypeError, "dtype=int32 is not float64, float32 or float16"),
    (np.uint8, TypeError, "dtype=uint8"),
    (np.complex128, TypeError, "dtype=complex128"),
    ("floaty", TypeError, "'floaty'"),
    (3.5, TypeError, "3.5"),
])
def test_invalid_dtype(dtype, exc, text):
    with pytest.raises(exc, match=_m(text)):
        rc.cast(1.0, "bfloat16", dtype=dtype)
    with pytest.raises(exc, match=_m(text)):
        rc.ops.mul(1.0, 1.0, "bfloat16", dtype=dtype)


def test_ml_dtypes_dtype_is_not_a_value_dtype():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match="dtype=bfloat16 is not float64, float32 or float16"):
        rc.cast(1.0, "bfloat16", dtype=ml_dtypes.bfloat16)


@pytest.mark.parametrize("fmt, dtype", [
    ("bfloat16", np.float32), ("tfloat32", np.float32), ("float8_e8m0fnu", np.float32),
    ("float8_e4m3fn", np.float16), ("float8_e5m2", np.float16), ("float4_e2m1fn", np.float16),
    ("float16", np.float16),
])
def test_dtype_that_holds_format(fmt, dtype):
    v = rc.cast(0.1, fmt, dtype=dtype)
    assert isinstance(v, np.generic) and v.dtype == dtype
    assert float(v) == float(rc.cast(0.1, fmt))


def test_cast_bits_has_no_dtype():
    with pytest.raises(TypeError, match="dtype"):
        rc.cast_bits(1.0, "bfloat16", dtype=np.float32)


# ------------------------------------------------------------------------- to_int
@pytest.mark.parametrize("bits, exc, text", [
    (0, ValueError, "bits=0 is out of range: it must be in [1, 64]"),
    (65, ValueError, "bits=65 is out of range"),
    (-8, ValueError, "bits=-8"),
    (32.0, TypeError, "bits must be an integer, got 32.0"),
    (True, TypeError, "got True"),
    ("32", TypeError, "got '32'"),
    (None, TypeError, "got None"),
])
def test_to_int_bad_bits(bits, exc, text):
    with pytest.raises(exc, match=_m(text)):
        rc.ops.to_int(1.0, bits=bits)


def test_to_int_width_limits_are_fine():
    assert rc.ops.to_int(-1.0, bits=1) == -1
    assert rc.ops.to_int(2.0 ** 63, bits=64, signed=False) == 2 ** 63
    assert rc.ops.to_int(2.5, bits=np.int8(8)) == 2


def test_to_int_unknown_rounding():
    with pytest.raises(ValueError, match="unknown rounding mode 'up'"):
        rc.ops.to_int(1.5, rounding="up")


# ------------------------------------------------------------------- NOT errors
@pytest.fixture(params=[True, False], ids=["jit", "numpy"])
def backend(request):
    with use_jit(request.param):
        yield request.param


def test_python_int_input(backend):
    v = rc.cast(5, "float16")
    assert v == 5.0 and isinstance(v, np.float64)
    assert rc.cast_bits(5, "float16") == 0x4500       # 5 = 1.25 * 2**2: 0 10001 0100000000


def test_uint64_max(backend):
    # 2**64 - 1 is within half an ulp (2**40 / 2) of 2**64 in float32: rounds up, inexact
    v, fl = rc.cast(np.uint64(2 ** 64 - 1), "float32", flags=True)
    assert v == 2.0 ** 64 and fl == rc.Flag.INEXACT
    assert rc.cast(2 ** 64 - 1, "float32") == 2.0 ** 64     # Python int: becomes uint64
    assert rc.cast(np.uint64(2 ** 64 - 1), "float64", "toward_zero") == 2.0 ** 64 - 2.0 ** 11


def test_int64_extremes(backend):
    assert rc.cast(np.int64(-2 ** 63), "float32") == -(2.0 ** 63)
    assert rc.cast(-2 ** 63, "float64") == -(2.0 ** 63)
    # exact beyond 2**53: 2**63 + 1 rounds up to the next float64 above 2**63
    assert rc.cast(2 ** 63 + 1, "float64", "toward_positive") == 2.0 ** 63 + 2.0 ** 11


@pytest.mark.parametrize("x", [0.1, np.float32(0.1), np.float16(0.1), np.array(0.1),
                               np.array(0.1, dtype=np.float32), 7, np.int8(7)])
def test_scalar_and_0d_give_numpy_scalars(x, backend):
    v = rc.cast(x, "bfloat16")
    assert isinstance(v, np.float64) and not isinstance(v, np.ndarray)
    b = rc.cast_bits(x, "bfloat16")
    assert isinstance(b, np.uint16)
    v2, fl = rc.cast(x, "bfloat16", flags=True)
    assert isinstance(v2, np.float64) and isinstance(fl, np.uint8)


def test_ops_scalar_and_0d_give_numpy_scalars(backend):
    for a in (0.1, np.array(0.1), np.float32(0.1)):
        assert isinstance(rc.ops.add(a, 1.0, "bfloat16"), np.float64)
        assert isinstance(rc.ops.sqrt(a, "bfloat16"), np.float64)
        assert isinstance(rc.ops.fma(a, a, a, "bfloat16"), np.float64)
        v, fl = rc.ops.mul(a, 3.0, "bfloat16", flags=True)
        assert isinstance(v, np.float64) and isinstance(fl, np.uint8)
        assert isinstance(rc.ops.round_to_integral(a, "bfloat16"), np.float64)
        assert isinstance(rc.ops.to_int(a), np.int64)
        assert isinstance(rc.ops.to_int(a, signed=False), np.uint64)
        assert isinstance(rc.ops.lt(a, 1.0), np.bool_)
        assert isinstance(rc.ops.next_up(a, "bfloat16"), np.float64)
        assert isinstance(rc.ops.ulp(a, "bfloat16"), np.float64)
    assert isinstance(rc.ops.add(1.0, 1.0, "bfloat16", dtype=np.float32), np.float32)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 1)])
@pytest.mark.parametrize("in_dtype", [np.float64, np.float32, np.float16, np.int64, np.uint64])
def test_empty_cast(shape, in_dtype, backend):
    x = np.zeros(shape, dtype=in_dtype)
    v = rc.cast(x, "bfloat16")
    assert v.shape == shape and v.dtype == np.float64
    b = rc.cast_bits(x, "float8_e4m3fn")
    assert b.shape == shape and b.dtype == np.uint8
    v, fl = rc.cast(x, "float32", flags=True, dtype=np.float32)
    assert v.shape == fl.shape == shape and v.dtype == np.float32 and fl.dtype == np.uint8
    s = rc.cast(x, "float16", "stochastic", rng=np.random.default_rng(0))
    assert s.shape == shape and s.dtype == np.float64
    assert rc.cast_bits(x, "float64").dtype == np.uint64


@pytest.mark.parametrize("shape", [(0,), (0, 3)])
def test_empty_ops(shape, backend):
    x = np.zeros(shape)
    for out in (rc.ops.add(x, 1.0, "float16"), rc.ops.sqrt(x, "float16"),
                rc.ops.fma(x, x, 1.0, "float16"), rc.ops.div(1.0, x, "float16"),
                rc.ops.round_to_integral(x, "float16"), rc.ops.next_up(x, "float16"),
                rc.ops.next_down(x, "float16"), rc.ops.ulp(x, "float16")):
        assert out.shape == shape and out.dtype == np.float64
    v, fl = rc.ops.add(x, 1.0, "float16", flags=True)
    assert v.shape == fl.shape == shape and fl.dtype == np.uint8
    assert rc.ops.add(x.astype(np.float32), 1.0, "bfloat16", dtype=np.float32).dtype == \
        np.float32
    assert rc.ops.to_int(x).dtype == np.int64 and rc.ops.to_int(x).shape == shape
    assert rc.ops.to_int(x, signed=False).dtype == np.uint64
    assert rc.ops.lt(x, 1.0).dtype == np.bool_ and rc.ops.lt(x, 1.0).shape == shape


def test_non_contiguous_input(backend):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2] * 0.1
    assert rc.cast(x, "bfloat16").tolist() == rc.cast(np.ascontiguousarray(x),
                                                      "bfloat16").tolist()
    assert rc.ops.add(x, x, "bfloat16").tolist() == rc.cast(2 * x, "bfloat16").tolist()


# --- regressions: deficiencies found by review, fixed ------------------------------------

def test_list_of_big_ints_is_not_silently_rounded():
    # NumPy turns [2**63 + 1, -1] into float64, which would round 2**63 + 1
    with pytest.raises(ValueError, match=_m(str(2 ** 63 + 1))):
        rc.cast([2 ** 63 + 1, -1], "float64")
    # as an explicit uint64 / int64 array it is exact
    got, fl = rc.cast(np.array([2 ** 63 + 1], dtype=np.uint64), "float64", "toward_positive",
                      flags=True)
    assert got[0] == 2.0 ** 63 + 2048 and fl[0] == 1


def test_empty_object_array_is_a_type_error():
    with pytest.raises(TypeError, match="dtype object"):
        rc.cast(np.array([], dtype=object), "float16")
    with pytest.raises(TypeError, match="dtype object"):
        rc.ops.add(np.array([], dtype=object), 1.0, "float16")


@pytest.mark.parametrize("value", [np.uint64(2 ** 63), np.int64(-2 ** 63),
                                   np.uint64(2 ** 64 - 2048)])
def test_encode_integers_exact_in_float64(value):
    bits = rc.formats.encode(value, "float64")
    assert rc.formats.float64.decode(bits) == float(int(value))


@pytest.mark.parametrize("value", [np.int64(2 ** 63 - 1), np.uint64(2 ** 64 - 1)])
def test_encode_inexact_integer_raises_without_warning(value):
    with pytest.raises(ValueError, match=_m(str(int(value)))):
        rc.formats.encode(value, "float64")


@pytest.mark.parametrize("text,value", [("-1e9", -1e9), ("-inf", -math.inf),
                                        ("-0x1p-2", -0.25)])
def test_cli_cast_accepts_negative_values(capsys, text, value):
    from refcomp.cli import main
    assert main(["cast", text, "float32"]) == 0
    assert f"value {value!r}" in capsys.readouterr().out


@pytest.mark.parametrize("call", [
    lambda: rc.ops.to_int(-1.5, signed="no"),
    lambda: rc.ops.to_int(1.5, exact=1),
    lambda: rc.ops.round_to_integral(1.5, "float16", exact="yes"),
    lambda: rc.ops.lt(1.0, 2.0, signaling="loud"),
    lambda: rc.cast(1.0, "float16", flags=1),
    lambda: rc.ops.add(1.0, 2.0, "float16", flags="true"),
    lambda: rc.ops.next_up(1.0, "float16", flags=None),
])
def test_flag_arguments_must_be_bools(call):
    with pytest.raises(TypeError, match="must be True or False"):
        call()


def test_formats_attribute_suggests():
    with pytest.raises(AttributeError, match="float8_e4m3fn"):
        rc.formats.float8_e4m3fm
