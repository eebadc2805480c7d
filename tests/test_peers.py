"""Cross-checks of refcomp against the real backends it emulates: NumPy, ml_dtypes 0.6 and
torch 2.13 (CPU).

Every expected value here comes from the peer itself, computed on the same inputs; nothing
is copied from refcomp.  The peers are imported directly (not ``importorskip``): CI installs
them, and a missing peer must fail loudly instead of silently skipping the cross-checks.

Inputs are bit patterns chosen to reach every rounding decision: every exponent field with
mantissas at, just below and just above the rounding boundary of every narrower target
(exact values, ties, tie +- 1 ulp of the source), powers of two, subnormals, the largest
finite values, +-0, +-inf and quiet and signalling NaNs with many payloads, plus random bit
patterns.  float64 inputs add values a hair (2**-40 relative) off a target midpoint and
values on float32 midpoints, which expose the peers' double rounding through float32.

NaN results are compared bit for bit where the backend's NaN bits are deterministic (the
profile's ``FormatRule.nan_bits``; ml_dtypes always, and NumPy's float64 -> float32
conversion), else by NaN-ness only.
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import pytest
import torch

import refcomp as rc
from refcomp.rounding.profiles import PROFILES

TORCH_PROFILE = "torch-2.13-cpu"
ML_PROFILE = "ml_dtypes-0.6"

UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
TORCH_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
NP_LAYOUT = {np.dtype(np.float16): (5, 10), np.dtype(np.float32): (8, 23),
             np.dtype(np.float64): (11, 52)}

#: the ml_dtypes float types refcomp must cover (ml_dtypes 0.6's own list, checked below)
ML_NAMES = ["bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3", "float8_e4m3b11fnuz",
            "float8_e5m2", "float8_e5m2fnuz", "float8_e3m4", "float8_e8m0fnu", "float6_e2m3fn",
            "float6_e3m2fn", "float4_e2m1fn"]
#: every target of the torch profile (float64 included: .to(float64) is a cast too)
TORCH_NAMES = list(PROFILES[TORCH_PROFILE].rules)

U64 = np.uint64


# -------------------- inputs
def _u(x) -> np.uint64:
    return U64(int(x))


def compose(sign, field, man, ebits: int, mbits: int) -> np.ndarray:
    """Bit patterns (uint64) of an IEEE-like layout from sign, exponent field, mantissa."""
    sign = np.asarray(sign).astype(U64)
    field = np.asarray(field).astype(U64)
    man = np.asarray(man).astype(U64)
    return (sign << _u(ebits + mbits)) | (field << _u(mbits)) | man


def boundary_mantissas(mbits: int, rng, n_hi: int = 2) -> np.ndarray:
    """Mantissas at and around the rounding boundaries of every narrower target.

    For each kept width k (0..mbits): kept bits 0, all ones and `n_hi` random values, each
    with the dropped bits exact (0), 1, a tie, a tie -+ 1 and all ones.
    """
    pats = set()
    for k in range(mbits + 1):
        drop = mbits - k
        his = {0, (1 << k) - 1} | {int(v) for v in rng.integers(0, 1 << k, n_hi)}
        for hi in his:
            base = hi << drop
            pats.update((base, base | ((1 << drop) - 1), base + 1))
            if drop >= 1:
                tie = base | (1 << (drop - 1))
                pats.update((tie, tie - 1, tie + 1))
    mask = (1 << mbits) - 1
    return np.array(sorted(p & mask for p in pats), dtype=U64)


def structured_bits(ebits: int, mbits: int, rng, n_hi: int = 2) -> np.ndarray:
    """Both signs x every exponent field x :func:`boundary_mantissas` (uint64 bits)."""
    man = boundary_mantissas(mbits, rng, n_hi)
    field = np.arange(1 << ebits, dtype=U64)
    pos = compose(0, field[:, None], man[None, :], ebits, mbits).ravel()
    return np.concatenate([pos, pos | (U64(1) << _u(ebits + mbits))])


def special_bits(ebits: int, mbits: int) -> np.ndarray:
    """A small set of the extreme and special encodings of a layout, both signs."""
    ones = (1 << ebits) - 1
    bias = ones >> 1
    fields = sorted({0, 1, 2, bias - 1, bias, bias + 1, ones - 2, ones - 1, ones})
    half = 1 << (mbits - 1)
    mans = sorted({0, 1, 2, half - 1, half, half + 1, (1 << mbits) - 2, (1 << mbits) - 1})
    s, f, m = np.meshgrid([0, 1], fields, mans, indexing="ij")
    return compose(s.ravel(), f.ravel(), m.ravel(), ebits, mbits)


def random_bits(width: int, n: int, rng) -> np.ndarray:
    return rng.integers(0, 1 << width, n, dtype=U64, endpoint=False) if width < 64 \
        else rng.integers(0, np.iinfo(U64).max, n, dtype=U64, endpoint=True)


def pair_bits(ebits: int, mbits: int, rng, n: int = 100_000):
    """Operand pairs (uint64 bits) for binary operations in an IEEE-like layout.

    * every pair of :func:`special_bits`
    * random bit patterns
    * close pairs: exponents within mbits + 3 of each other (alignment, cancellation and
      ties of + and -: a power-of-two b at half an ulp of a is a tie)
    * product ties: (1 + 2**-j) * (1 + 2**-k) with j + k = mbits + 1 is a midpoint
    * range pairs: exponents whose sum (product) or difference (quotient) lands near the
      underflow and overflow thresholds
    """
    ones = (1 << ebits) - 1
    bias = ones >> 1
    emin, emax = 1 - bias, ones - 1 - bias
    width = 1 + ebits + mbits
    mlim = 1 << mbits
    a_parts, b_parts = [], []
    s = special_bits(ebits, mbits)
    a_parts.append(np.repeat(s, s.size))
    b_parts.append(np.tile(s, s.size))
    a_parts.append(random_bits(width, n, rng))
    b_parts.append(random_bits(width, n, rng))

    def man(size):
        pick = rng.integers(0, 4, size)
        r = rng.integers(0, mlim, size, dtype=U64)
        return np.select([pick == 0, pick == 1], [U64(0), U64(mlim - 1)], r).astype(U64)

    def sign(size):
        return rng.integers(0, 2, size)

    # close pairs
    fa = rng.integers(0, ones, n)
    fb = np.clip(fa + rng.integers(-(mbits + 3), mbits + 4, n), 0, ones - 1)
    a_parts.append(compose(sign(n), fa, man(n), ebits, mbits))
    b_parts.append(compose(sign(n), fb, man(n), ebits, mbits))
    # product ties and near ties
    m = n // 4
    j = rng.integers(1, mbits + 1, m)
    k = np.clip(mbits + 1 - j + rng.integers(-1, 2, m), 1, mbits)
    ma = (U64(1) << (U64(mbits) - j.astype(U64)))
    mb = (U64(1) << (U64(mbits) - k.astype(U64))) + rng.integers(0, 2, m).astype(U64)
    mb = np.minimum(mb, U64(mlim - 1))
    fa = rng.integers(1, ones, m)
    fb = np.clip(rng.integers(-8, 9, m) + bias, 1, ones - 1)
    a_parts.append(compose(sign(m), fa, ma, ebits, mbits))
    b_parts.append(compose(sign(m), fb, mb, ebits, mbits))
    # range pairs: result exponents near the underflow and overflow thresholds
    targets = np.concatenate([np.arange(emin - mbits - 3, emin + 2),
                              np.arange(emax - 1, emax + 2)])
    t = rng.choice(targets, n)
    ea = rng.integers(emin, emax + 1, n)
    for eb in (t - ea, ea - t):             # a * b and a / b land near 2**t
        fb = np.clip(eb + bias, 0, ones - 1)
        a_parts.append(compose(sign(n), ea + bias, man(n), ebits, mbits))
        b_parts.append(compose(sign(n), fb, man(n), ebits, mbits))
    return np.concatenate(a_parts), np.concatenate(b_parts)


def as_float(bits: np.ndarray, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    return bits.astype(UINT[dt.itemsize]).view(dt)


@functools.lru_cache(maxsize=None)
def f32_inputs(kind: str) -> np.ndarray:
    """float32 input sets: every float16 value, structured patterns, random patterns."""
    rng = np.random.default_rng({"f16_all": 1, "structured": 2, "random": 3}[kind])
    if kind == "f16_all":
        return np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    if kind == "structured":
        return as_float(structured_bits(8, 23, rng), np.float32)
    return as_float(random_bits(32, 200_000, rng), np.float32)


@functools.lru_cache(maxsize=None)
def f64_inputs() -> np.ndarray:
    with np.errstate(all="ignore"):       # float32 signalling NaNs -> float64 warn
        return _f64_inputs()


def _f64_inputs() -> np.ndarray:
    """float64 inputs aimed at single vs double (via float32) rounding, plus specials."""
    rng = np.random.default_rng(4)
    base32 = as_float(structured_bits(8, 23, rng, n_hi=1), np.float32)
    base32 = base32[rng.permutation(base32.size)[:80_000]]
    base = base32.astype(np.float64)               # exact: every target's ties are here
    fin = base[np.isfinite(base) & (base != 0)]
    bits = base.view(U64)
    parts = [base,
             fin * (1 + 2.0 ** -40), fin * (1 - 2.0 ** -40),    # a hair off a midpoint
             fin * (1 + 2.0 ** -26), fin * (1 - 2.0 ** -26)]
    # float32 midpoints (bit 28 of a float64 mantissa is half a float32 ulp) and neighbours
    # (the low 29 bits of `bits` are zero, so adding stays inside the mantissa)
    for delta in (1 << 28, (1 << 28) - 1, (1 << 28) + 1, 1, (1 << 29) - 1):
        parts.append((bits + U64(delta)).view(np.float64))
    # every float64 exponent field with a few mantissas (NaN payloads below float32's too)
    mans = np.unique(np.concatenate([
        np.array([0, 1, 2, (1 << 28), (1 << 29) - 1, (1 << 29), (1 << 51), (1 << 51) + 1,
                  (1 << 52) - 1, (1 << 51) - 1, 1 << 50], dtype=U64),
        random_bits(52, 24, rng)]))
    field = np.arange(2048, dtype=U64)
    pos = compose(0, field[:, None], mans[None, :], 11, 52).ravel()
    parts += [pos.view(np.float64), (pos | (U64(1) << U64(63))).view(np.float64)]
    # random patterns, and random values over (and a little beyond) float32's range
    parts.append(random_bits(64, 100_000, rng).view(np.float64))
    e = rng.integers(-160, 140, 100_000)
    sgn = np.where(rng.integers(0, 2, e.size) == 1, -1.0, 1.0)
    parts.append(sgn * np.ldexp(1 + rng.random(e.size), e))
    f32max = float(np.finfo(np.float32).max)
    parts.append(np.array([f32max, f32max * (1 + 2.0 ** -25), f32max * (1 + 2.0 ** -24),
                           2.0 ** 128, 2.0 ** -150, 2.0 ** -150 * (1 + 2.0 ** -30),
                           2.0 ** -149 * 1.5, 1e300, 1e-300, -431.99999999999994]))
    x = np.concatenate(parts)
    return np.concatenate([x, -x])


INPUT_SETS = ["f16_all", "structured", "random", "float64"]


def inputs(kind: str) -> np.ndarray:
    return f64_inputs() if kind == "float64" else f32_inputs(kind)


def in_bits(x: np.ndarray) -> np.ndarray:
    return x.view(UINT[x.dtype.itemsize])


# -------------------- comparison
def assert_same(what, got, want, got_nan, want_nan, nan_bits: bool, shown=None):
    """Bits equal everywhere, NaN-ness equal, NaN bits equal only when `nan_bits`.

    `shown`: list of input arrays (shown as bits) to print for the first mismatches.
    """
    got = np.asarray(got).astype(U64).ravel()
    want = np.asarray(want).astype(U64).ravel()
    got_nan = np.asarray(got_nan, dtype=bool).ravel()
    want_nan = np.asarray(want_nan, dtype=bool).ravel()
    same = got == want
    if not nan_bits:
        same |= got_nan & want_nan
    same &= got_nan == want_nan
    bad = np.flatnonzero(~same)
    if bad.size:
        lines = []
        for i in bad[:8]:
            ins = " ".join(f"{int(in_bits(s.ravel())[i]):#x}({s.ravel()[i]!r})"
                           for s in (shown or []))
            lines.append(f"  input {ins}: refcomp {int(got[i]):#x} peer {int(want[i]):#x}")
        raise AssertionError(f"{what}: {bad.size} of {got.size} differ\n" + "\n".join(lines))


def rc_is_nan(codes, fmt) -> np.ndarray:
    return np.isnan(rc.formats.get(fmt).decode(codes))


def torch_bits(t: torch.Tensor) -> np.ndarray:
    n = t.element_size()
    return t.view(TORCH_BITS[n]).numpy().view(UINT[n])


def torch_is_nan(t: torch.Tensor) -> np.ndarray:
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return torch.isnan(t).numpy()


def quiet(fn, *args):
    with np.errstate(all="ignore"):
        return fn(*args)


# -------------------- sanity of the lists
def test_ml_dtypes_float_types_are_all_covered():
    """Every float type ml_dtypes offers is in refcomp's catalog and its ml_dtypes profile."""
    floats = {n for n in ml_dtypes.__all__ if n.startswith(("float", "bfloat"))
              and np.dtype(getattr(ml_dtypes, n)).itemsize <= 2}
    assert floats == set(ML_NAMES)
    assert floats <= set(rc.formats.catalog.names())
    assert floats == set(PROFILES[ML_PROFILE].rules)


def test_torch_float_dtypes_are_all_covered():
    """Every castable torch float dtype (not the packed float4 x2) is in the torch profile."""
    dtypes = [getattr(torch, n) for n in dir(torch)]
    floats = {str(d).removeprefix("torch.") for d in dtypes
              if isinstance(d, torch.dtype) and d.is_floating_point
              and not str(d).endswith("_x2")}
    assert {"float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
            "float8_e5m2fnuz", "float8_e8m0fnu"} <= floats
    assert floats == set(TORCH_NAMES)


# -------------------- a. NumPy
@pytest.mark.parametrize("kind", INPUT_SETS)
def test_numpy_cast_to_float16(kind):
    """Default refcomp cast to float16 == ndarray.astype(float16) (one correct rounding)."""
    x = inputs(kind)
    got = rc.cast_bits(x, "float16")
    want = quiet(x.astype, np.float16)
    assert_same(f"{x.dtype}->float16", got, want.view(np.uint16), rc_is_nan(got, "float16"),
                np.isnan(want), nan_bits=False, shown=[x])


def test_numpy_cast_float64_to_float32():
    """Default refcomp cast float64 -> float32 == astype(float32), NaN payloads included."""
    x = f64_inputs()
    got = rc.cast_bits(x, "float32")
    want = quiet(x.astype, np.float32)
    assert_same("float64->float32", got, want.view(np.uint32), rc_is_nan(got, "float32"),
                np.isnan(want), nan_bits=True, shown=[x])


@functools.lru_cache(maxsize=None)
def np_pairs(dt: str):
    dtype = np.dtype(dt)
    e, m = NP_LAYOUT[dtype]
    rng = np.random.default_rng(10 + e)
    a, b = pair_bits(e, m, rng)
    a, b = as_float(a, dtype), as_float(b, dtype)
    if dtype == np.float16:             # every float16 against a few operands
        every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
        ops = np.array([1.0, -1.0, 3.0, 0.1, 2.0 ** -14, 2.0 ** -24, 65504.0, np.inf],
                       dtype=np.float16)
        a = np.concatenate([a, np.repeat(every, ops.size), np.tile(ops, every.size)])
        b = np.concatenate([b, np.tile(ops, every.size), np.repeat(every, ops.size)])
    else:                               # near-exact quotients: a = fl(q * b)
        q = as_float(random_bits(8 * dtype.itemsize, 50_000, rng), dtype)
        bb = as_float(random_bits(8 * dtype.itemsize, 50_000, rng), dtype)
        a = np.concatenate([a, quiet(np.multiply, q, bb)])
        b = np.concatenate([b, bb])
    return a, b


@functools.lru_cache(maxsize=None)
def np_unary(dt: str) -> np.ndarray:
    dtype = np.dtype(dt)
    if dtype == np.float16:
        return np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    with np.errstate(all="ignore"):
        return _np_unary(dtype)


def _np_unary(dtype) -> np.ndarray:
    e, m = NP_LAYOUT[dtype]
    rng = np.random.default_rng(20 + e)
    r = as_float(random_bits(8 * dtype.itemsize, 200_000, rng), dtype)
    sq = quiet(np.multiply, r, r)                # sqrt of these is (nearly) exact
    ub = UINT[dtype.itemsize]
    parts = [as_float(special_bits(e, m), dtype), r, sq,
             (sq.view(ub) + ub(1)).view(dtype), (sq.view(ub) - ub(1)).view(dtype)]
    if dtype == np.float32:
        parts.append(f32_inputs("structured"))
    else:
        parts.append(f64_inputs())
    return np.concatenate(parts)


NP_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


@pytest.mark.parametrize("dt", ["float16", "float32", "float64"])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "sqrt"])
def test_numpy_arithmetic(op, dt):
    """NumPy's IEEE arithmetic == rc.ops.* in the same format, nearest_even."""
    dtype = np.dtype(dt)
    if op == "sqrt":
        args = (np_unary(dt),)
        want = quiet(np.sqrt, args[0])
    else:
        args = np_pairs(dt)
        want = quiet(NP_BINARY[op], *args)
    got = getattr(rc.ops, op)(*args, dt, "nearest_even", dtype=dtype)
    assert got.dtype == dtype
    ub = UINT[dtype.itemsize]
    assert_same(f"numpy {op} {dt}", got.view(ub), want.view(ub), np.isnan(got), np.isnan(want),
                nan_bits=False, shown=list(args))


# -------------------- b. ml_dtypes
@pytest.mark.parametrize("kind", INPUT_SETS)
@pytest.mark.parametrize("name", ML_NAMES)
def test_ml_dtypes_cast(name, kind):
    """cast_bits(x, name, profile=ml_dtypes-0.6) == x.astype(ml_dtype), NaN bits included."""
    x = inputs(kind)
    dt = np.dtype(getattr(ml_dtypes, name))
    peer = quiet(x.astype, dt)
    want = peer.view(UINT[dt.itemsize])
    got = rc.cast_bits(x, name, profile=ML_PROFILE)
    assert got.dtype == rc.formats.get(name).storage_dtype
    assert_same(f"{x.dtype}->{name}", got, want, rc_is_nan(got, name),
                np.isnan(peer.astype(np.float32)), nan_bits=True, shown=[x])


@pytest.mark.parametrize("name", ML_NAMES)
def test_ml_dtypes_decode(name):
    """decode(every code) == codes.view(ml_dtype).astype(float64)."""
    fmt = rc.formats.get(name)
    dt = np.dtype(getattr(ml_dtypes, name))
    codes = np.arange(1 << fmt.width, dtype=UINT[dt.itemsize])
    want = quiet(codes.view(dt).astype, np.float64)
    got = fmt.decode(codes)
    assert_same(f"decode {name}", got.view(U64), want.view(U64), np.isnan(got), np.isnan(want),
                nan_bits=False, shown=[codes])


# -------------------- c. torch CPU
@pytest.mark.parametrize("kind", ["all_float32", "float64"])
@pytest.mark.parametrize("name", TORCH_NAMES)
def test_torch_cast(name, kind):
    """cast_bits(x, name, profile=torch-2.13-cpu) == torch.from_numpy(x).to(dtype)."""
    if kind == "float64":
        x = f64_inputs()
    else:
        x = np.concatenate([f32_inputs(k) for k in ("f16_all", "structured", "random")])
    t = torch.from_numpy(x).to(getattr(torch, name))
    rule = PROFILES[TORCH_PROFILE].rules[name]
    got = rc.cast_bits(x, name, profile=TORCH_PROFILE)
    assert_same(f"{x.dtype}->{name}", got, torch_bits(t), rc_is_nan(got, name), torch_is_nan(t),
                nan_bits=rule.nan_bits, shown=[x])


@pytest.mark.parametrize("name", [n for n in TORCH_NAMES if n not in ("float32", "float64")])
def test_torch_decode(name):
    """decode(every code) == torch.from_numpy(codes).view(dtype).to(float64)."""
    fmt = rc.formats.get(name)
    n = fmt.storage_dtype.itemsize
    codes = np.arange(1 << fmt.width, dtype=UINT[n])
    t = torch.from_numpy(codes.view(np.int16) if n == 2 else codes).view(getattr(torch, name))
    want = t.to(torch.float64).numpy()
    got = fmt.decode(codes)
    assert_same(f"decode {name}", got.view(U64), want.view(U64), np.isnan(got), np.isnan(want),
                nan_bits=False, shown=[codes])


@functools.lru_cache(maxsize=None)
def torch_pairs(name: str):
    fmt = rc.formats.get(name)
    a, b = pair_bits(fmt.exp_bits, fmt.man_bits, np.random.default_rng(30 + fmt.man_bits))
    dtype = getattr(torch, name)
    ta = torch.from_numpy(a.astype(np.uint16).view(np.int16)).view(dtype)
    tb = torch.from_numpy(b.astype(np.uint16).view(np.int16)).view(dtype)
    return ta, tb


TORCH_BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
                "mul": lambda a, b: a * b, "div": lambda a, b: a / b}


@pytest.mark.parametrize("op", list(TORCH_BINARY))
@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_torch_arithmetic(name, op):
    """torch CPU a op b on bfloat16/float16 tensors == rc.ops.op in that format."""
    ta, tb = torch_pairs(name)
    tr = TORCH_BINARY[op](ta, tb)
    assert tr.dtype == getattr(torch, name)
    a64, b64 = ta.to(torch.float64).numpy(), tb.to(torch.float64).numpy()
    vals = getattr(rc.ops, op)(a64, b64, name, "nearest_even")
    got = rc.formats.get(name).encode(vals)
    assert_same(f"torch {name} {op}", got, torch_bits(tr), np.isnan(vals), torch_is_nan(tr),
                nan_bits=False, shown=[a64, b64])


# -------------------- d. regression
def test_peer_double_rounding_regression():
    """ml_dtypes and torch round float64 through float32: -431.99999999999994 is just above
    the e4m3fn midpoint -432 between -416 and -448, float32 rounds it onto the midpoint, and
    ties-to-even then gives -448; one correct rounding gives -416."""
    x = -431.99999999999994
    assert float(np.float32(x)) == -432.0 and x > -432.0
    arr = np.array([x])
    ml = float(arr.astype(ml_dtypes.float8_e4m3fn).astype(np.float64)[0])
    th = float(torch.from_numpy(arr).to(torch.float8_e4m3fn).to(torch.float64)[0])
    assert ml == th == -448.0
    assert float(rc.cast(x, "float8_e4m3fn")) == -416.0
    assert float(rc.cast(x, "float8_e4m3fn", profile=ML_PROFILE)) == ml
    assert float(rc.cast(x, "float8_e4m3fn", profile=TORCH_PROFILE)) == th
    # the same through cast_bits, against the peers' bits
    assert int(rc.cast_bits(arr, "float8_e4m3fn", profile=ML_PROFILE)[0]) == \
        int(arr.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)[0])
    assert int(rc.cast_bits(arr, "float8_e4m3fn", profile=TORCH_PROFILE)[0]) == \
        int(torch.from_numpy(arr).to(torch.float8_e4m3fn).view(torch.uint8)[0])
