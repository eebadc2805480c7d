"""Observers (refcomp.quant.qparams / observers / histogram) against the real torch 2.13:
quant ranges, qparams bits for every scheme / dtype / range, running min / max over batch
sequences, HistogramObserver state and qparams, warnings and errors."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from refcomp.quant import histogram as H
from refcomp.quant.histogram import HistogramObserver
from refcomp.quant.observers import (MinMaxObserver, MovingAverageMinMaxObserver,
                                     MovingAveragePerChannelMinMaxObserver,
                                     PerChannelMinMaxObserver)
from refcomp.quant.qparams import (QDtype, QScheme, calculate_qparams, qparams_spec,
                                   quant_range)

torch = pytest.importorskip("torch")
O = pytest.importorskip("torch.ao.quantization.observer")

# torch's own deprecation note for reduce_range, raised by its constructors
pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min:UserWarning")

CAP = torch.backends.cpu.get_cpu_capability().lower()      # "avx2", "avx512", "default"
f32 = np.float32


def tdt(name):
    return getattr(torch, name)


def same_f32(ours, theirs, zeros_by_value=False):
    """Bit equality of float32 arrays; any NaN matches any NaN; with zeros_by_value, +0.0
    and -0.0 match (the sign of a zero extreme is unspecified in torch's aminmax)."""
    a = np.atleast_1d(np.asarray(ours, f32))
    b = np.atleast_1d(np.asarray(theirs.detach().numpy() if hasattr(theirs, "numpy")
                                 else theirs, f32))
    if a.shape != b.shape:
        return False
    eq = a.view(np.uint32) == b.view(np.uint32)
    eq |= np.isnan(a) & np.isnan(b)
    if zeros_by_value:
        eq |= (a == 0) & (b == 0)
    return bool(eq.all())


def torch_call(fn):
    """Run fn with torch's warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def check_qparams(ours, theirs, float_zp=False):
    (s, z), (ts, tz) = ours, theirs
    assert same_f32(s, ts), (s, ts)
    assert z.dtype == tz.numpy().dtype, (z.dtype, tz.dtype)
    if float_zp:
        assert same_f32(z, tz, zeros_by_value=True), (z, tz)
    else:
        assert z.tolist() == tz.tolist(), (z, tz)


# ---------------------------------------------------------------- quant range ----------

RANGE_DTYPES = ["quint8", "qint8", "qint32", "uint8", "int8", "int16", "int32", "uint16",
                "quint4x2"]
CUSTOM = [None, (0, 15), (-8, 7), (0, 127), (-127, 127), (0, 255), (-128, 127), (0, 300),
          (-7, 7), (1, 10), (0, 0), (-200, 100), (-2 ** 31, 2 ** 31 - 1), (-2 ** 31, 2 ** 31),
          (0, None)]


@pytest.mark.parametrize("dtype", RANGE_DTYPES)
def test_quant_range_matches_torch(dtype):
    for rr in (False, True):
        for custom in CUSTOM:
            qmin, qmax = custom or (None, None)
            try:
                t = torch_call(lambda: O.MinMaxObserver(dtype=tdt(dtype), reduce_range=rr,
                                                        quant_min=qmin, quant_max=qmax))
            except AssertionError as e:
                with pytest.raises(ValueError, match=str(e).split("(")[0][:40]):
                    quant_range(dtype, rr, qmin, qmax)
                continue
            assert quant_range(dtype, rr, qmin, qmax) == (t.quant_min, t.quant_max,
                                                          t.has_customized_qrange)


def test_spec_and_constructor_errors():
    with pytest.raises(ValueError, match="unknown dtype 'qint4'"):
        qparams_spec("qint4")
    with pytest.raises(ValueError, match="unknown qscheme"):
        qparams_spec("qint8", "per_group")
    assert qparams_spec(torch.qint8, torch.per_channel_symmetric).qscheme \
        is QScheme.PER_CHANNEL_SYMMETRIC
    assert qparams_spec(QDtype.QINT8).dtype is QDtype.QINT8
    with pytest.raises(TypeError, match="quant_min must be an integer"):
        quant_range("qint8", False, -1.5, 7)
    # torch raises NotImplementedError for these; refcomp ValueError naming the value
    for ours, theirs in [
        (lambda: MinMaxObserver(qscheme="per_channel_affine"),
         lambda: O.MinMaxObserver(qscheme=torch.per_channel_affine)),
        (lambda: MinMaxObserver(qscheme="per_tensor_symmetric", reduce_range=True),
         lambda: O.MinMaxObserver(qscheme=torch.per_tensor_symmetric, reduce_range=True)),
        (lambda: PerChannelMinMaxObserver(qscheme="per_channel_symmetric", reduce_range=True),
         lambda: O.PerChannelMinMaxObserver(qscheme=torch.per_channel_symmetric,
                                            reduce_range=True)),
        (lambda: PerChannelMinMaxObserver(qscheme="per_tensor_affine"),
         lambda: O.PerChannelMinMaxObserver(qscheme=torch.per_tensor_affine)),
        (lambda: HistogramObserver(qscheme="per_channel_affine"),
         lambda: O.HistogramObserver(qscheme=torch.per_channel_affine)),
    ]:
        with pytest.raises(NotImplementedError):
            torch_call(theirs)
        with pytest.raises(ValueError):
            ours()
    with pytest.raises(TypeError):
        O.HistogramObserver(dtype=torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="float8_e4m3fn"):
        HistogramObserver(dtype="float8_e4m3fn")
    # HistogramObserver accepts symmetric quint8 with reduce_range, as torch does
    t = torch_call(lambda: O.HistogramObserver(qscheme=torch.per_tensor_symmetric,
                                               reduce_range=True))
    assert HistogramObserver(qscheme="per_tensor_symmetric", reduce_range=True).quant_max \
        == t.quant_max == 127


# ---------------------------------------------------------------- qparams rule ---------

def minmax_pairs(rng, n=600):
    """(min, max) float32 pairs with min <= max (or NaN) over every regime."""
    a = (rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)).astype(f32)
    b = (rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)).astype(f32)
    mn, mx = np.minimum(a, b), np.maximum(a, b)
    k = n // 12
    mn[:k], mx[:k] = np.abs(mn[:k]), np.abs(mx[:k]) + np.abs(mn[:k])           # positive
    mn[k:2 * k], mx[k:2 * k] = -np.abs(mn[k:2 * k]) - np.abs(mx[k:2 * k]), \
        -np.abs(mx[k:2 * k])                                                   # negative
    mn[2 * k:3 * k] = mx[2 * k:3 * k] = 0                                      # all-zero
    mx[3 * k:4 * k] = mn[3 * k:4 * k] = rng.standard_normal(k).astype(f32)     # constant
    mn[4 * k:5 * k] = -rng.uniform(0, 1e-6, k).astype(f32)                     # tiny: eps
    mx[4 * k:5 * k] = rng.uniform(0, 1e-6, k).astype(f32)
    mn[5 * k:6 * k] = -rng.uniform(1e30, 3e38, k).astype(f32)                  # huge
    mx[5 * k:6 * k] = rng.uniform(1e30, 3e38, k).astype(f32)
    ties = np.arange(k) % 7
    mn[6 * k:7 * k] = -(ties + f32(0.5))            # zero point ties: -2.5 -> (|2.5|)
    mx[6 * k:7 * k] = f32(255) - ties - f32(0.5)
    specials = [(-np.inf, 1), (-1, np.inf), (-np.inf, np.inf), (np.nan, np.nan),
                (np.nan, 1), (-1, np.nan), (-0.0, 0.0), (-3e38, 3e38), (1e-45, 2e-45),
                (-2.5, 252.5), (-3.5, 251.5), (-1, 1), (0.5, 1)]
    sp = np.array(specials, f32)
    mn[7 * k:7 * k + len(sp)], mx[7 * k:7 * k + len(sp)] = sp[:, 0], sp[:, 1]
    return mn.astype(f32), mx.astype(f32)


QP_DTYPES = ["quint8", "qint8", "qint32", "uint16", "int16"]
QP_CUSTOM = {"quint8": [(0, 15), (0, 127)], "qint8": [(-8, 7), (-127, 127)],
             "qint32": [(-2 ** 31, 2 ** 31 - 1)], "uint16": [(0, 1023)],
             "int16": [(-512, 511)]}


@pytest.mark.parametrize("qscheme", [s.value for s in QScheme])
@pytest.mark.parametrize("dtype", QP_DTYPES)
def test_calculate_qparams_bits_match_torch(qscheme, dtype):
    rng = np.random.default_rng(abs(hash((qscheme, dtype))) % 2 ** 32)
    mn, mx = minmax_pairs(rng)
    per_channel = qscheme.startswith("per_channel")
    cls = O.PerChannelMinMaxObserver if per_channel else O.MinMaxObserver
    n = 0
    for rr in (False, True):
        for custom in [None] + QP_CUSTOM[dtype]:
            if rr and dtype == "quint8" and "symmetric" in qscheme:
                continue
            qmin, qmax = custom or (None, None)
            for eps in (2.0 ** -23, 2.0 ** -12):
                obs = torch_call(lambda: cls(dtype=tdt(dtype), qscheme=tdt(qscheme),
                                             reduce_range=rr, quant_min=qmin,
                                             quant_max=qmax, eps=eps))
                theirs = obs._calculate_qparams(torch.from_numpy(mn), torch.from_numpy(mx))
                spec = qparams_spec(dtype, qscheme, rr, qmin, qmax, eps)
                check_qparams(calculate_qparams(mn, mx, spec), theirs,
                              float_zp=qscheme.endswith("float_qparams"))
                n += mn.size
    assert n >= 2 * mn.size


def test_calculate_qparams_known_values():
    """Values quoted in the docs: ties round half to even, eps floor, the NaN zero points."""
    aff = qparams_spec("quint8")
    assert calculate_qparams(f32(-2.5), f32(252.5), aff)[1].tolist() == [2]
    assert calculate_qparams(f32(-3.5), f32(251.5), aff)[1].tolist() == [4]
    assert calculate_qparams(f32(0), f32(0), aff)[0].tolist() == [2.0 ** -23]
    nan = f32(np.nan)
    assert calculate_qparams(nan, nan, aff)[1].tolist() == [0]
    assert calculate_qparams(nan, nan, qparams_spec("qint8"))[1].tolist() == [127]
    fq = qparams_spec("quint8", "per_channel_affine_float_qparams")
    s, z = calculate_qparams(f32([1, -2, 0]), f32([1, 3, 0]), fq)
    assert s.tolist() == [1.0, f32(5 / 255), 1.0] and z.tolist() == [-1.0, 102.0, 0.0]
    with pytest.raises(TypeError, match="float32"):
        calculate_qparams(np.array(["a"]), f32(1), aff)
    with pytest.raises(ValueError, match="not a float32 value"):
        calculate_qparams(0.1, 1.0, aff)
    assert calculate_qparams(0.5, 1.0, aff)[0].tolist() == [f32(1) / f32(255)]


# ---------------------------------------------------------------- observers ------------

def batch(rng, kind, shape):
    """One batch of a regime; float32 unless the regime is about input dtypes."""
    if kind == "normal":
        x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3) + rng.uniform(-3, 3)
    elif kind == "positive":
        x = rng.uniform(0.5, 1, shape) * 10.0 ** rng.uniform(-3, 3)
    elif kind == "negative":
        x = -rng.uniform(0.5, 1, shape) * 10.0 ** rng.uniform(-3, 3)
    elif kind == "zero":
        x = np.zeros(shape)
    elif kind == "tiny":
        x = rng.uniform(-1e-9, 1e-9, shape)
    elif kind == "large":
        x = rng.uniform(-1, 1, shape) * 10.0 ** rng.uniform(30, 38.4)
    elif kind == "constant":
        x = np.full(shape, rng.standard_normal())
    elif kind == "float64":
        return rng.standard_normal(shape) * 3                    # rounded by both
    elif kind == "float16":
        return (rng.standard_normal(shape) * 3).astype(np.float16)
    else:
        raise AssertionError(kind)
    return x.astype(f32)


KINDS = ["normal", "positive", "negative", "zero", "tiny", "large", "constant", "float64",
         "float16"]


def run_sequence(ours, theirs, rng, shape, nbatch, float_zp=False):
    for b in range(nbatch):
        x = batch(rng, KINDS[rng.integers(len(KINDS))] if b else KINDS[b % len(KINDS)],
                  shape)
        out = ours.forward(x)
        assert out is x
        torch_call(lambda: theirs(torch.from_numpy(x)))
        assert same_f32(ours.min_val, theirs.min_val, zeros_by_value=True)
        assert same_f32(ours.max_val, theirs.max_val, zeros_by_value=True)
        # continue from torch's state so a sign-of-zero choice cannot diverge later
        ours.min_val = theirs.min_val.numpy().copy()
        ours.max_val = theirs.max_val.numpy().copy()
        check_qparams(ours.calculate_qparams(), theirs.calculate_qparams(), float_zp)


PT_CONFIGS = [(d, s, rr, c) for d in ("quint8", "qint8", "qint32")
              for s in ("per_tensor_affine", "per_tensor_symmetric")
              for rr in (False, True) for c in (None, "custom")
              if not (s.endswith("symmetric") and rr and d == "quint8")
              and not (d == "qint32" and (rr or c))]


@pytest.mark.parametrize("avg", [None, 0.01, 0.3, 1.0])
@pytest.mark.parametrize("dtype,qscheme,rr,custom", PT_CONFIGS)
def test_per_tensor_observers_match_torch(dtype, qscheme, rr, custom, avg):
    custom = {"quint8": (0, 15), "qint8": (-127, 127)}.get(dtype) if custom else None
    qmin, qmax = custom or (None, None)
    kw = dict(dtype=dtype, qscheme=qscheme, reduce_range=rr, quant_min=qmin, quant_max=qmax)
    tkw = dict(kw, dtype=tdt(dtype), qscheme=tdt(qscheme))
    for seed in range(2):
        rng = np.random.default_rng([seed, len(PT_CONFIGS), int((avg or 0) * 100)])
        if avg is None:
            ours, theirs = MinMaxObserver(**kw), torch_call(lambda: O.MinMaxObserver(**tkw))
        else:
            ours = MovingAverageMinMaxObserver(averaging_constant=avg, **kw)
            theirs = torch_call(lambda: O.MovingAverageMinMaxObserver(
                averaging_constant=avg, **tkw))
        run_sequence(ours, theirs, rng, [(7, 9), (2, 3, 17)][seed], 6)


@pytest.mark.parametrize("avg", [None, 0.01, 1.0])
@pytest.mark.parametrize("qscheme,dtype", [("per_channel_affine", "quint8"),
                                           ("per_channel_affine", "qint8"),
                                           ("per_channel_symmetric", "qint8"),
                                           ("per_channel_symmetric", "quint8"),
                                           ("per_channel_affine_float_qparams", "quint8")])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_per_channel_observers_match_torch(axis, qscheme, dtype, avg):
    rng = np.random.default_rng([axis + 5, len(qscheme), int((avg or 0) * 100)])
    kw = dict(ch_axis=axis, dtype=dtype, qscheme=qscheme)
    tkw = dict(kw, dtype=tdt(dtype), qscheme=tdt(qscheme))
    if avg is None:
        ours = PerChannelMinMaxObserver(**kw)
        theirs = torch_call(lambda: O.PerChannelMinMaxObserver(**tkw))
    else:
        ours = MovingAveragePerChannelMinMaxObserver(averaging_constant=avg, **kw)
        theirs = torch_call(lambda: O.MovingAveragePerChannelMinMaxObserver(
            averaging_constant=avg, **tkw))
    # channels of very different scales, some all-positive / all-negative / zero
    for b in range(5):
        x = batch(rng, KINDS[b % 3] if b < 3 else "normal", (4, 6, 5))
        x = (x * np.float32(10.0) ** rng.integers(-6, 6, (1, 6, 1))).astype(x.dtype)
        x[:, 0] = np.abs(x[:, 0])
        x[:, 1] = -np.abs(x[:, 1])
        x[:, 2] = 0
        ours.forward(x)
        theirs(torch.from_numpy(x))
        assert same_f32(ours.min_val, theirs.min_val, zeros_by_value=True)
        assert same_f32(ours.max_val, theirs.max_val, zeros_by_value=True)
        ours.min_val = theirs.min_val.numpy().copy()
        ours.max_val = theirs.max_val.numpy().copy()
        check_qparams(ours.calculate_qparams(), theirs.calculate_qparams(),
                      float_zp=qscheme.endswith("float_qparams"))


def test_moving_average_constant_is_float32():
    """c = 0.01 is used as float32 0.0099999998, and c = 1 is not memoryless."""
    for c in (0.01, 1.0, 0.1):
        o, t = MovingAverageMinMaxObserver(averaging_constant=c), \
            O.MovingAverageMinMaxObserver(averaging_constant=c)
        for x in ([10.291923, 11.0], [-0.060866296, 0.3], [0.1, 0.7]):
            o.forward(f32(x))
            t(torch.tensor(x))
            assert same_f32(o.min_val, t.min_val) and same_f32(o.max_val, t.max_val)
    o = MovingAverageMinMaxObserver(averaging_constant=1.0)
    o.forward(f32([10.291923]))
    o.forward(f32([-0.060866296]))
    assert o.min_val != f32(-0.060866296)


def test_uncalibrated_warnings_and_defaults():
    pairs = [(MinMaxObserver(), O.MinMaxObserver()),
             (MovingAverageMinMaxObserver(), O.MovingAverageMinMaxObserver()),
             (PerChannelMinMaxObserver(), O.PerChannelMinMaxObserver()),
             (MovingAveragePerChannelMinMaxObserver(),
              O.MovingAveragePerChannelMinMaxObserver()),
             (HistogramObserver(), O.HistogramObserver())]
    for ours, theirs in pairs:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ts, tz = theirs.calculate_qparams()
        with pytest.warns(UserWarning) as rec:
            s, z = ours.calculate_qparams()
        assert [str(r.message) for r in rec] == [str(x.message) for x in w]
        assert rec[0].filename == __file__          # stacklevel points at the caller
        check_qparams((s, z), (ts, tz))
    # after reset, uncalibrated again
    o = MinMaxObserver()
    o.forward(f32([1, 2]))
    o.reset_min_max_vals()
    with pytest.warns(UserWarning, match="must run observer"):
        o.calculate_qparams()
    o = PerChannelMinMaxObserver()
    o.forward(f32([[1, 2]]))
    o.reset_min_max_vals()
    assert o.min_val.size == 0


def test_min_greater_than_max_raises_with_torch_wording():
    o, t = MinMaxObserver(), O.MinMaxObserver()
    o.min_val, o.max_val = np.array(f32(2.0)), np.array(f32(1.0))
    t.min_val.fill_(2.0)
    t.max_val.fill_(1.0)
    with pytest.raises(AssertionError) as e:
        t.calculate_qparams()
    with pytest.raises(ValueError) as mine:
        o.calculate_qparams()
    assert str(mine.value) == str(e.value) == "min 2.0 should be less than max 1.0"
    # half-initialised (inf, 5): not "uncalibrated" for torch either
    o.min_val, o.max_val = np.array(f32(np.inf)), np.array(f32(5.0))
    with pytest.raises(ValueError, match="min inf should be less than max 5.0"):
        o.calculate_qparams()
    p = PerChannelMinMaxObserver()
    p.forward(f32([[0, 1], [2, 3]]))
    p.min_val = f32([5, 2])
    with pytest.raises(ValueError, match=r"min \[5. 2.\] should be less than max"):
        p.calculate_qparams()


def test_empty_nan_and_odd_batches_match_torch():
    nan = np.nan
    for cls, tcls in [(MinMaxObserver, O.MinMaxObserver),
                      (MovingAverageMinMaxObserver, O.MovingAverageMinMaxObserver),
                      (PerChannelMinMaxObserver, O.PerChannelMinMaxObserver)]:
        for seq in ([f32([[nan, nan]])], [f32([[1, 2]]), np.zeros((0, 2), f32),
                                          f32([[nan, 3]])],
                    [f32([[np.inf, 1]]), f32([[1, 2]])], [np.zeros((0, 2), f32)]):
            ours, theirs = cls(), tcls()
            for x in seq:
                assert ours.forward(x) is x
                theirs(torch.from_numpy(x))
                assert same_f32(ours.min_val, theirs.min_val)
                assert same_f32(ours.max_val, theirs.max_val)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check_qparams(ours.calculate_qparams(), theirs.calculate_qparams())
    # 0-d input per tensor; integer input is rounded to float32 like x.to(float32)
    o, t = MinMaxObserver(), O.MinMaxObserver()
    o.forward(f32(3.0))
    t(torch.tensor(3.0))
    o.forward(np.array([2 ** 24 + 1, -(2 ** 30) - 3], np.int64))
    t(torch.tensor([2 ** 24 + 1, -(2 ** 30) - 3]))
    assert same_f32(o.min_val, t.min_val) and same_f32(o.max_val, t.max_val)
    assert isinstance(o.min_val, np.ndarray) and o.min_val.shape == () \
        and o.min_val.dtype == f32
    # per-channel shape errors: torch IndexError / RuntimeError, refcomp ValueError
    p = PerChannelMinMaxObserver(ch_axis=2)
    with pytest.raises(ValueError, match="ch_axis 2 is out of range"):
        p.forward(f32([[1, 2]]))
    with pytest.raises(ValueError, match="ch_axis 2"):
        p.forward(f32(1.0))
    p = PerChannelMinMaxObserver()
    p.forward(f32([[1, 2], [3, 4], [5, 6]]))
    with pytest.raises(ValueError, match="2 channels"):
        p.forward(f32([[1, 2], [3, 4]]))
    with pytest.raises(TypeError, match="strings"):
        p.forward(["a"])
    with pytest.raises(TypeError, match="ch_axis"):
        PerChannelMinMaxObserver(ch_axis=1.0)


# ---------------------------------------------------------------- histogram kernels ----

def test_linspace_histc_sum_divfloor_match_torch():
    rng = np.random.default_rng(11)
    for t in range(60):
        a = f32(rng.standard_normal() * 10 ** rng.uniform(-3, 3))
        b = f32(a + abs(rng.standard_normal()) * 10 ** rng.uniform(-3, 3))
        steps = [2049, 32769, 257, 2, 3][t % 5]
        ref = torch.linspace(float(a), float(b), steps).numpy()
        assert same_f32(H.linspace(a, b, steps, CAP), ref), (a, b, steps)
    for t in range(60):
        x = (rng.standard_normal(3000) * 10 ** rng.uniform(-3, 3)).astype(f32)
        lo, hi = x.min(), x.max()
        if t % 3 == 1:
            lo = f32(lo - abs(lo) * 0.3 - 1e-3)
        if t % 7 == 0:
            x[:] = x[0]
            lo = hi = x[0]
        bins = [2048, 16, 100][t % 3]
        ref = torch.histc(torch.from_numpy(x), bins, min=float(lo), max=float(hi)).numpy()
        assert same_f32(H.histc(x, bins, lo, hi), ref)
    for n in list(range(0, 70)) + list(rng.integers(70, 5000, 40)):
        v = (rng.standard_normal(n) * 10 ** rng.uniform(-3, 3, n)).astype(f32)
        assert same_f32(H.torch_sum(v, CAP), torch.from_numpy(v).sum().numpy()), n
    a = (rng.standard_normal(5000) * 100).astype(f32)
    for d in (0.37, 1e-3, 2.5, 1 / 3):
        ref = torch.div(torch.from_numpy(a), d, rounding_mode="floor").numpy()
        assert same_f32(H._div_floor(a, f32(d)), ref)
    w = rng.uniform(0, 3, 4000).astype(f32)
    idx = np.sort(rng.integers(0, 64, 4000))
    ref = torch.bincount(torch.from_numpy(idx), weights=torch.from_numpy(w), minlength=64)
    assert same_f32(H._bincount(idx, w, 64), ref)


def hist_batch(rng, kind, n=2000):
    if kind == 0:
        x = rng.standard_normal(n) * rng.uniform(0.1, 5)
    elif kind == 1:
        x = rng.laplace(size=n) * rng.uniform(0.1, 5) + rng.uniform(-1, 1)
    elif kind == 2:
        x = np.abs(rng.standard_normal(n)) * 3
    elif kind == 3:
        x = rng.standard_t(2, size=n)
    else:
        x = rng.uniform(-1, 1, n) * rng.uniform(0.5, 8)
    return x.astype(f32)


HIST_CASES = list(range(24))


@pytest.mark.parametrize("case", HIST_CASES)
def test_histogram_observer_matches_torch(case):
    rng = np.random.default_rng([case, 7])
    bins = [2048, 256, 64, 100][case % 4]
    qscheme = "per_tensor_symmetric" if case % 3 == 2 else "per_tensor_affine"
    dtype = ["quint8", "qint8", "quint8", "qint8", "qint32"][case % 5] \
        if case % 11 != 10 else "quint8"
    kw = dict(bins=bins, dtype=dtype, qscheme=qscheme)
    if case % 6 == 1 and dtype != "qint32":
        kw.update(quant_min=0 if dtype == "quint8" else -64,
                  quant_max=127 if dtype == "quint8" else 63)
    if case % 7 == 3 and dtype != "qint32" and not (qscheme.endswith("symmetric")
                                                    and dtype == "quint8"):
        kw.update(reduce_range=True)
    ours = HistogramObserver(capability=CAP, **kw)
    theirs = torch_call(lambda: O.HistogramObserver(**dict(kw, dtype=tdt(dtype),
                                                           qscheme=tdt(qscheme))))
    assert (ours.quant_min, ours.quant_max, ours.dst_nbins) == \
        (theirs.quant_min, theirs.quant_max, theirs.dst_nbins)
    for b in range(1 + case % 4):
        x = hist_batch(rng, (case + b) % 5)
        if case % 8 == 5 and b == 0:
            x = np.full(100, f32(1.25))                 # constant first batch
        if case % 9 == 4 and b == 1:
            x = x * f32(20)                             # the range grows a lot
        ours.forward(x)
        theirs(torch.from_numpy(x))
        assert same_f32(ours.min_val, theirs.min_val)
        assert same_f32(ours.max_val, theirs.max_val)
        assert same_f32(ours.histogram, theirs.histogram)
        check_qparams(ours.calculate_qparams(), theirs.calculate_qparams())


def test_histogram_observer_special_inputs():
    seqs = [
        [[1.25] * 10],                                   # constant: edges [0.25, 2.25]
        [[0.0] * 10],                                    # all zero -> scale eps
        [[1.25] * 10, [-1.0, 2.0]],                      # constant then wider
        [[1.25] * 10, [1.25] * 3],                       # constant twice
        [[-1.0, 2.0], [0.5, 0.5]],                       # same range: plain sum
        [[-3e38, 3e38]],                                 # width overflows: NaN edges
        [[], [1.0, 2.0]],                                # empty batch ignored
        [[1e-30, 2e-30], [-1e-30, 5e-30]],               # tiny
    ]
    for seq in seqs:
        ours, theirs = HistogramObserver(bins=256, capability=CAP), O.HistogramObserver(bins=256)
        for x in seq:
            x = np.array(x, f32)
            ours.forward(x)
            theirs(torch.from_numpy(x))
            assert same_f32(ours.histogram, theirs.histogram), seq
            assert same_f32(ours.min_val, theirs.min_val)
            assert same_f32(ours.max_val, theirs.max_val)
        check_qparams(ours.calculate_qparams(), theirs.calculate_qparams())
    # +-inf: warned and dropped; all-inf: warned, still uncalibrated
    for seq in ([[1.0, np.inf, -2.0]], [[np.inf, -np.inf]], [[0.5, 1.0], [-np.inf, 3.0]]):
        ours, theirs = HistogramObserver(bins=64, capability=CAP), O.HistogramObserver(bins=64)
        for x in seq:
            x = np.array(x, f32)
            if not np.isinf(x).any():
                ours.forward(x)
                theirs(torch.from_numpy(x))
                continue
            with pytest.warns(UserWarning, match="torch.inf detected"):
                theirs(torch.from_numpy(x))
            with pytest.warns(UserWarning, match="torch.inf detected") as rec:
                ours.forward(x)
            assert rec[0].filename == __file__
        assert same_f32(ours.histogram, theirs.histogram)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_qparams(ours.calculate_qparams(), theirs.calculate_qparams())
    # NaN: torch's histc raises RuntimeError; refcomp refuses before changing state
    ours, theirs = HistogramObserver(bins=64), O.HistogramObserver(bins=64)
    with pytest.raises(RuntimeError, match="not finite"):
        theirs(torch.tensor([1.0, np.nan]))
    with pytest.raises(ValueError, match="NaN"):
        ours.forward(f32([1.0, np.nan]))
    assert ours.min_val == np.inf
    with pytest.raises(TypeError, match="float16"):
        ours.forward(np.float16([1.0]))
    with pytest.raises(ValueError, match="not a float32 value"):
        ours.forward([0.1])
    ours.forward([0.5, 1.5])                             # exact float32 values are fine
    ours.forward(np.array([-3, 2], np.int64))
    assert (float(ours.min_val), float(ours.max_val)) == (-3.0, 2.0)
    assert isinstance(ours.min_val, np.ndarray) and ours.min_val.dtype == f32
    with pytest.raises(ValueError, match="16777217"):
        ours.forward(np.array([2 ** 24 + 1]))
    with pytest.raises(ValueError, match="capability"):
        HistogramObserver(capability="neon")


DEFAULT_SCRIPT = r"""
import sys, numpy as np, torch, warnings
from torch.ao.quantization.observer import HistogramObserver
warnings.simplefilter("ignore")
assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
rng = np.random.default_rng(3)
o = HistogramObserver(bins=2048)
xs = [(rng.standard_normal(3000) * (2 + 3 * i)).astype(np.float32) for i in range(3)]
for x in xs: o(torch.from_numpy(x))
s, z = o.calculate_qparams()
ls = torch.linspace(-1.7, 2.9, 32769).numpy()
np.savez(sys.argv[1], xs=np.stack(xs), hist=o.histogram.numpy(), s=s.numpy(), z=z.numpy(),
         ls=ls)
"""


def test_default_capability_without_fma(tmp_path):
    """ATEN_CPU_CAPABILITY=default (no FMA): the capability="default" rule matches it, and
    the FMA choice does change linspace and the upscaled histogram."""
    out = tmp_path / "r.npz"
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", DEFAULT_SCRIPT, str(out)], env=env, check=True,
                   cwd=tmp_path, timeout=120)
    r = np.load(out)
    assert same_f32(H.linspace(f32(-1.7), f32(2.9), 32769, "default"), r["ls"])
    assert not same_f32(H.linspace(f32(-1.7), f32(2.9), 32769, "avx2"), r["ls"])
    ours, fused = HistogramObserver(capability="default"), HistogramObserver(capability="avx2")
    for x in r["xs"]:
        ours.forward(x)
        fused.forward(x)
    assert same_f32(ours.histogram, r["hist"])
    assert not same_f32(fused.histogram, r["hist"])
    s, z = ours.calculate_qparams()
    assert same_f32(s, r["s"]) and z.tolist() == r["z"].tolist()
