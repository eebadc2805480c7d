"""Golden suite ``qtorch``: the torch.ao.quantization references of issue 7
(:mod:`refcomp.quant`), cross-checked on torch 2.13 CPU by ``--backend torch-cpu``.

qtorch  observers over many batches (MinMax, MovingAverage, per channel, Histogram; affine /
        symmetric / float qparams, reduce_range, custom ranges, quint8 / qint8 / qint32,
        empty, constant, zero, NaN and inf batches); quantize_per_channel codes;
        fake quant forward / mask / backward per tensor and per channel (int and float zero
        points); LSQ forward and gradients; the fused moving-average observer + fake quant
        over several steps; dynamic int8 Linear; static quantized Linear and Conv2d (both
        fbgemm kernel models: AVX2 pair saturation and exact VNNI); conv / linear +
        batch-norm weight fusion

Ops and their inputs / outputs: :mod:`refcomp.golden.compute_qtorch`.  Cases whose result
depends on ATen's CPU build record it in ``capability`` (``"avx2"``: FMA contraction, 8-lane
float sums); static integer cases record the kernel model in ``int16_pairs`` and whether
the other model gives other codes in ``kernel_dependent``.

>>> from refcomp.golden import build
>>> cases = build("qtorch")
>>> len(cases) > 100, len({c.op for c in cases})
(True, 10)
"""

from __future__ import annotations

import numpy as np

from .compute import compute
from .compute_quant import int_operand
from .compute_qtorch import QDTYPES
from .schema import Operand, Tolerance
from .suites import _seed, into, make, suite

__all__ = ["qtorch_suite", "CAPABILITY", "LSQ_SUM_SOURCE"]

#: the ATen CPU build the capability-dependent cases model
CAPABILITY = "avx2"
F32 = np.float32
LSQ_SUM_SOURCE = ("torch 2.13 _fake_quantize_learnable_per_channel_affine_backward reduces "
                  "the per-element scale / zero-point gradients over every dim but axis; for "
                  "axis != 0 the float32 sum runs in an order refcomp does not model. Any "
                  "order of a float32 recursive or tree sum of n terms t_i is within "
                  "gamma_(n-1) * sum|t_i| of the exact sum (Higham, Accuracy and Stability of "
                  "Numerical Algorithms, 2nd ed., section 4.2, eq. (4.4))")


def f32(values) -> Operand:
    return into(np.asarray(values, np.float64), "float32")


def ints(values, kind) -> Operand:
    return int_operand(np.asarray(values).astype(np.int64), kind)


def _regime(rng, kind, shape):
    """One float32 batch of a regime (no -0.0: torch's aminmax leaves a zero's sign open)."""
    n = int(np.prod(shape))
    if kind == "normal":
        x = rng.standard_normal(n) * 2.0 ** rng.integers(-8, 8) + rng.uniform(-3, 3)
    elif kind == "positive":
        x = rng.uniform(0.5, 1, n) * 2.0 ** rng.integers(-10, 10)
    elif kind == "negative":
        x = -rng.uniform(0.5, 1, n) * 2.0 ** rng.integers(-10, 10)
    elif kind == "zero":
        x = np.zeros(n)
    elif kind == "tiny":
        x = rng.uniform(-1e-9, 1e-9, n)
    elif kind == "large":
        x = rng.uniform(-1, 1, n) * 2.0 ** rng.integers(100, 126)
    elif kind == "constant":
        x = np.full(n, rng.standard_normal())
    else:
        raise ValueError(kind)
    x = np.asarray(x, F32)
    x[x == 0] = F32(0)                                     # +0.0 only
    return x.reshape(shape)


PT_REGIMES = ["normal", "positive", "normal", "negative", "zero", "tiny", "large",
              "constant", "normal"]

PT_CONFIGS = [  # dtype, qscheme, reduce_range, (quant_min, quant_max), eps
    ("quint8", "per_tensor_affine", False, None, None),
    ("quint8", "per_tensor_affine", True, None, None),
    ("qint8", "per_tensor_symmetric", False, None, None),
    ("qint8", "per_tensor_affine", False, None, None),
    ("qint8", "per_tensor_symmetric", True, None, None),
    ("quint8", "per_tensor_affine", False, (0, 15), None),
    ("qint8", "per_tensor_symmetric", False, (-127, 127), None),
    ("qint32", "per_tensor_affine", False, None, None),
    ("qint32", "per_tensor_symmetric", False, None, None),
    ("quint8", "per_tensor_symmetric", False, None, 2.0 ** -12),
]


def _obs_params(obs, dtype, qscheme, rr, rng_, eps, **kw):
    qmin, qmax = rng_ or (None, None)
    return {"observer": obs, "dtype": dtype, "qscheme": qscheme, "reduce_range": rr,
            "quant_min": qmin, "quant_max": qmax, "eps": eps, **kw}


def _tag(dtype, qscheme, rr, rng_, eps):
    t = f"{dtype}/{qscheme}" + ("/reduce_range" if rr else "")
    t += f"/q{rng_[0]}..{rng_[1]}" if rng_ else ""
    return t + ("/eps=pow2_-12" if eps else "")


def _observer_cases():
    cases = []
    n = 48
    for i, (dtype, qs, rr, qr, eps) in enumerate(PT_CONFIGS):
        for obs, c in (("MinMaxObserver", None), ("MovingAverageMinMaxObserver", 0.01)):
            rng = np.random.default_rng(_seed("qtorch", "obs", i, obs))
            order = [PT_REGIMES[(i + b) % len(PT_REGIMES)] for b in range(6)]
            x = np.stack([_regime(rng, k, (n,)) for k in order])
            lengths = np.full(6, n)
            lengths[2], lengths[4] = 0, 5                   # an empty and a short batch
            p = _obs_params(obs, dtype, qs, rr, qr, eps, averaging_constant=c)
            cases.append(make(f"qtorch/observer/{obs}/{_tag(dtype, qs, rr, qr, eps)}",
                              "qt.observer", p, {"x": f32(x), "lengths": ints(lengths, "int64")},
                              notes="regimes " + ", ".join(order)))
    rng = np.random.default_rng(_seed("qtorch", "obs", "avg"))
    for c in (0.3, 1.0):
        x = np.stack([_regime(rng, "normal", (32,)) for _ in range(8)])
        p = _obs_params("MovingAverageMinMaxObserver", "quint8", "per_tensor_affine", False,
                        None, None, averaging_constant=c)
        cases.append(make(f"qtorch/observer/MovingAverageMinMaxObserver/c={c}", "qt.observer",
                          p, {"x": f32(x)}))
    # NaN, inf, empty first batch, zeros only (torch defines all of these)
    nan, inf = np.nan, np.inf
    specials = {
        "nan": [[1.0, 2.0, -0.5, 3.0], [0.5, nan, 1.0, 2.0], [4.0, -4.0, 1.0, 1.0]],
        "inf": [[1.0, 2.0, -0.5, 3.0], [0.5, inf, 1.0, 2.0], [4.0, -4.0, 1.0, 1.0]],
        "neg_inf_first": [[-inf, 1.0, 2.0, 0.5], [1.0, 2.0, 3.0, 4.0]],
        "empty_first": [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.25, 0.5, 2.0]],
        "zeros": [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        "range_ends": [[-3e38, 3e38, 1.0, 0.0], [1e-45, 2e-45, 0.0, 1e-45]],
    }
    for label, rows in specials.items():
        x = np.array(rows, F32)
        extra = {}
        if label == "empty_first":
            extra["lengths"] = ints([0, 4], "int64")
        for obs, c in (("MinMaxObserver", None), ("MovingAverageMinMaxObserver", 0.5)):
            for dtype, qs in (("quint8", "per_tensor_affine"), ("qint8", "per_tensor_symmetric")):
                p = _obs_params(obs, dtype, qs, False, None, None, averaging_constant=c)
                cases.append(make(f"qtorch/observer/{obs}/{dtype}/{qs}/{label}", "qt.observer",
                                  p, {"x": f32(x), **extra}, nan_bits=False))
    # per channel: channels of different magnitudes, all-positive, all-negative, zero
    pc_configs = [("per_channel_affine", "quint8", 0), ("per_channel_affine", "qint8", 1),
                  ("per_channel_symmetric", "qint8", -1), ("per_channel_symmetric", "quint8", 1),
                  ("per_channel_affine_float_qparams", "quint8", 0)]
    for j, (qs, dtype, axis) in enumerate(pc_configs):
        for obs, c in (("PerChannelMinMaxObserver", None),
                       ("MovingAveragePerChannelMinMaxObserver", 0.01)):
            rng = np.random.default_rng(_seed("qtorch", "obs-pc", j, obs))
            xs = []
            for b in range(4):
                xb = _regime(rng, ["normal", "positive", "negative", "normal"][b], (4, 6, 5))
                xb = np.moveaxis(xb, axis, 0)               # channels first
                xb = xb * (F32(2.0) ** rng.integers(-12, 12, (xb.shape[0],) + (1,) * 2)
                           ).astype(F32)
                xb[0] = np.abs(xb[0])
                xb[1] = -np.abs(xb[1]) - F32(2 ** -20)
                if not qs.endswith("float_qparams"):
                    xb[2] = 0
                xs.append(np.moveaxis(xb, 0, axis))
            p = _obs_params(obs, dtype, qs, False, None, None, averaging_constant=c,
                            ch_axis=axis)
            cases.append(make(f"qtorch/observer/{obs}/{dtype}/{qs}/axis{axis}", "qt.observer",
                              p, {"x": f32(np.stack(xs))}))
    p = _obs_params("PerChannelMinMaxObserver", "qint8", "per_channel_symmetric", True, None,
                    None, ch_axis=0)
    rng = np.random.default_rng(_seed("qtorch", "obs-pc-rr"))
    x = np.stack([_regime(rng, "normal", (8, 16)) for _ in range(3)])
    cases.append(make("qtorch/observer/PerChannelMinMaxObserver/qint8/per_channel_affine/"
                      "reduce_range", "qt.observer",
                      dict(p, qscheme="per_channel_affine"), {"x": f32(x)}))
    # histogram
    hist = [(256, "quint8", "per_tensor_affine", False, None, "normal"),
            (2048, "qint8", "per_tensor_symmetric", False, None, "grow"),
            (256, "quint8", "per_tensor_affine", True, None, "constant_first"),
            (100, "qint8", "per_tensor_affine", False, (-64, 63), "inf"),
            (64, "qint32", "per_tensor_affine", False, None, "normal"),
            (128, "quint8", "per_tensor_symmetric", False, None, "empty")]
    for k, (bins, dtype, qs, rr, qr, kind) in enumerate(hist):
        rng = np.random.default_rng(_seed("qtorch", "hist", k))
        x = np.stack([(rng.standard_normal(600) * rng.uniform(0.5, 3) + rng.uniform(-1, 1))
                      .astype(F32) for _ in range(3)])
        extra = {}
        if kind == "grow":
            x[1] *= F32(20)
            x[2] = np.abs(x[2])
        elif kind == "constant_first":
            x[0] = F32(1.25)
        elif kind == "inf":
            x[1, 7], x[1, 100] = np.inf, -np.inf
        elif kind == "empty":
            extra["lengths"] = ints([600, 0, 300], "int64")
        p = _obs_params("HistogramObserver", dtype, qs, rr, qr, None, bins=bins,
                        capability=CAPABILITY)
        cases.append(make(f"qtorch/observer/HistogramObserver/bins={bins}/"
                          f"{_tag(dtype, qs, rr, qr, None)}/{kind}", "qt.observer", p,
                          {"x": f32(x), **extra}))
    return cases


# ---------------------------------------------------------------- quantize / fake quant
def _tie_inputs(rng, shape, scale, zp, qmin, qmax, specials=True):
    """float32 values: exact ties of x * f32(1/s), range ends, outliers (+ NaN / inf)."""
    s = np.max(scale)
    x = (rng.standard_normal(shape) * s * (qmax - qmin) * 0.6).astype(F32)
    flat = x.reshape(-1)
    n = flat.size
    inv = F32(1) / F32(s)
    k = rng.integers(qmin - 4, qmax + 4, n // 3) + 0.5 - np.mean(zp)
    ties = (k / np.float64(inv)).astype(F32)
    ok = (ties * inv).astype(F32) == k.astype(F32)
    flat[:n // 3] = np.where(ok, ties, flat[:n // 3])
    ends = np.array([qmin - np.mean(zp), qmax - np.mean(zp), qmin - 0.5 - np.mean(zp),
                     qmax + 0.5 - np.mean(zp)]) * s
    flat[n // 3:n // 3 + 4] = ends.astype(F32)
    tail = [1e38, -1e38, 3e-41, 0.0]
    if specials:
        tail = [np.nan, np.inf, -np.inf] + tail
    flat[-len(tail):] = tail
    return x


def _quant_cases():
    cases = []
    for i, (dtype, axis, shape) in enumerate([("quint8", 0, (4, 50)), ("qint8", 1, (6, 5, 9)),
                                              ("quint8", 2, (3, 4, 8)), ("qint8", 0, (1, 64))]):
        rng = np.random.default_rng(_seed("qtorch", "quantize", i))
        qmin, qmax = QDTYPES[dtype]
        C = shape[axis]
        s = (rng.uniform(0.01, 0.2, C)).astype(F32)
        z = rng.integers(qmin, qmax // 2, C)
        x = _tie_inputs(rng, shape, s, z, qmin, qmax, specials=False)
        x.reshape(-1)[-5:-3] = [np.inf, -np.inf]
        cases.append(make(f"qtorch/quantize_per_channel/{dtype}/axis{axis}", "qt.quantize",
                          {"dtype": dtype, "axis": axis},
                          {"x": f32(x), "scale": f32(s), "zero_point": ints(z, "int64")}))
    return cases


def _fake_quant_cases():
    cases = []
    for i, (qmin, qmax, s, z) in enumerate([(0, 255, 0.0123, 3), (-128, 127, 2.0 ** -7, 0),
                                            (0, 15, 0.37, 8), (-8, 7, 0.05, -2),
                                            (0, 255, 1 / 3, 255)]):
        rng = np.random.default_rng(_seed("qtorch", "fq", i))
        x = _tie_inputs(rng, (300,), F32(s), z, qmin, qmax)
        dy = rng.standard_normal(300).astype(F32)
        dy[-7], dy[-1] = np.nan, np.nan                     # x NaN (mask 0) and x 0.0
        cases.append(make(f"qtorch/fake_quantize/per_tensor/{qmin}..{qmax}/z={z}",
                          "qt.fake_quantize", {"qmin": qmin, "qmax": qmax, "axis": None},
                          {"x": f32(x), "dy": f32(dy), "scale": f32(F32(s)),
                           "zero_point": ints(z, "int32")}, nan_bits=False))
    for i, (qmin, qmax, axis, shape) in enumerate([(0, 255, 0, (5, 40)), (-128, 127, 1, (4, 6, 7)),
                                                   (0, 15, 2, (3, 5, 6)), (-8, 7, 0, (2, 30))]):
        rng = np.random.default_rng(_seed("qtorch", "fq-pc", i))
        C = shape[axis]
        s = np.exp(rng.uniform(np.log(1e-3), np.log(0.5), C)).astype(F32)
        z = rng.integers(qmin, qmax, C, endpoint=True)
        x = _tie_inputs(rng, shape, s, z, qmin, qmax)
        dy = rng.standard_normal(shape).astype(F32)
        cases.append(make(f"qtorch/fake_quantize/per_channel/{qmin}..{qmax}/axis{axis}",
                          "qt.fake_quantize", {"qmin": qmin, "qmax": qmax, "axis": axis},
                          {"x": f32(x), "dy": f32(dy), "scale": f32(s),
                           "zero_point": ints(z, "int32")}, nan_bits=False))
        if i < 2:                                          # float zero points
            zf = rng.uniform(qmin, qmax, C).astype(F32)
            zf[::2] = np.floor(zf[::2]) + F32(0.5)
            xf = np.where(np.isnan(x), F32(0.25), x)       # ATen's float-zp kernel: lrintf
            cases.append(make(f"qtorch/fake_quantize/per_channel_float_zp/{qmin}..{qmax}/"
                              f"axis{axis}", "qt.fake_quantize",
                              {"qmin": qmin, "qmax": qmax, "axis": axis,
                               "float_zero_point": True, "capability": CAPABILITY},
                              {"x": f32(xf), "dy": f32(dy), "scale": f32(s),
                               "zero_point": f32(zf)}, nan_bits=False))
    return cases


def _lsq_cases():
    cases = []
    for i, (qmin, qmax, n, gf) in enumerate([(0, 255, 300, 1.0), (-128, 127, 257, 0.01),
                                             (-8, 7, 100, None), (0, 15, 7, 1.0),
                                             (0, 255, 2000, None)]):
        rng = np.random.default_rng(_seed("qtorch", "lsq", i))
        s = F32(np.exp(rng.uniform(np.log(1e-3), np.log(0.5))))
        zp = F32(np.floor(rng.uniform(qmin, qmax)) + 0.5) if i % 2 == 0 else \
            F32(rng.uniform(qmin, qmax))
        x = _tie_inputs(rng, (n,), s, np.rint(zp), qmin, qmax, specials=False) if n >= 16 \
            else (rng.standard_normal(n) * s * 20).astype(F32)
        dy = rng.standard_normal(n).astype(F32)
        gf = float(F32(1 / np.sqrt(n * qmax))) if gf is None else gf
        cases.append(make(f"qtorch/lsq/per_tensor/{qmin}..{qmax}/n={n}", "qt.lsq",
                          {"qmin": qmin, "qmax": qmax, "axis": None, "grad_factor": gf,
                           "capability": CAPABILITY},
                          {"x": f32(x), "dy": f32(dy), "scale": f32([s]),
                           "zero_point": f32([zp])}))
    for i, (qmin, qmax, axis, shape) in enumerate([(0, 255, 0, (16, 50)), (-128, 127, 0, (6, 5, 7)),
                                                   (-8, 7, 0, (40, 1)), (0, 255, 1, (50, 16)),
                                                   (-128, 127, 2, (30, 4, 5))]):
        rng = np.random.default_rng(_seed("qtorch", "lsq-pc", i))
        C = shape[axis]
        s = np.exp(rng.uniform(np.log(1e-3), np.log(0.5), C)).astype(F32)
        zp = rng.uniform(qmin, qmax, C).astype(F32)
        zp[::3] = np.floor(zp[::3]) + F32(0.5)
        x = _tie_inputs(rng, shape, s, np.rint(zp), qmin, qmax, specials=False)
        bshape = [1] * len(shape)
        bshape[axis] = -1
        x = (x * (s / s.max()).reshape(bshape)).astype(F32)
        dy = rng.standard_normal(shape).astype(F32)
        tol = None
        if axis != 0:
            tol = Tolerance("sum_terms", LSQ_SUM_SOURCE, accumulator="float32",
                            outputs=("dscale", "dzero_point"))
        cases.append(make(f"qtorch/lsq/per_channel/{qmin}..{qmax}/axis{axis}", "qt.lsq",
                          {"qmin": qmin, "qmax": qmax, "axis": axis, "grad_factor": 0.5,
                           "capability": CAPABILITY},
                          {"x": f32(x), "dy": f32(dy), "scale": f32(s), "zero_point": f32(zp)},
                          tolerance=tol,
                          notes="dscale / dzero_point bounded, not bit-exact: torch sums "
                                "them in another order for axis != 0" if tol else ""))
    return cases


FUSED = [  # name, quant_min, quant_max, per_channel, symmetric, averaging_constant
    ("act_quint8", 0, 255, False, False, 0.01),
    ("act_quint8_reduced", 0, 127, False, False, 0.01),
    ("wt_qint8_symmetric", -128, 127, False, True, 0.01),
    ("wt_per_channel_symmetric", -128, 127, True, True, 0.01),
    ("wt_-127..127_symmetric", -127, 127, False, True, 0.5),
    ("wt_per_channel_-127..127", -127, 127, True, True, 1.0),
]


def _fused_cases():
    cases = []
    for i, (name, qmin, qmax, pc, sym, c) in enumerate(FUSED):
        rng = np.random.default_rng(_seed("qtorch", "fused", i))
        S = 8
        shape = (6, 5, 3) if pc else (7, 11)
        xs = []
        for t in range(S):
            x = rng.standard_normal(shape) * 2.0 ** rng.integers(-12, 2) \
                + rng.uniform(-.5, .5) * (t % 3 == 0)
            if t % 4 == 3:
                x = np.abs(x)
            xs.append(x.astype(F32))
        dy = rng.standard_normal((S,) + shape).astype(F32)
        p = {"quant_min": qmin, "quant_max": qmax, "per_channel": pc, "symmetric": sym,
             "averaging_constant": c, "observer_off": 5, "fake_quant_off": 7}
        cases.append(make(f"qtorch/fused_obs_fake_quant/{name}", "qt.fused_obs_fq", p,
                          {"x": f32(np.stack(xs)), "dy": f32(dy)}))
    return cases


# ---------------------------------------------------------------- integer kernels
def _dynamic_cases():
    cases = []
    rng = np.random.default_rng(_seed("qtorch", "dynamic"))
    shapes = [((3, 16), 8), ((2, 5, 33), 12), ((4, 1024), 6), ((1, 7), 3)]
    for i, (xs, N) in enumerate(shapes):
        K = xs[-1]
        for pc in (False, True):
            w = (rng.standard_normal((N, K)) * rng.uniform(0.05, 1, (N, 1))).astype(F32)
            b = rng.standard_normal(N).astype(F32) if (i + pc) % 2 == 0 else None
            x = (rng.standard_normal(xs) * 2.0 ** rng.integers(-4, 4)
                 + rng.uniform(-1, 1)).astype(F32)
            ins = {"x": f32(x), "w": f32(w)}
            if b is not None:
                ins["b"] = f32(b)
            relu = i == 1
            cases.append(make(f"qtorch/dynamic_linear/{'x'.join(map(str, xs))}->{N}/"
                              f"{'per_channel' if pc else 'per_tensor'}"
                              + ("/relu" if relu else "") + ("/bias" if b is not None else ""),
                              "qt.dynamic_linear", {"per_channel": pc, "relu": relu}, ins))
    edges = {"zeros": np.zeros((2, 6)), "constant_pos": np.full((2, 6), 3.25),
             "constant_neg": np.full((2, 6), -0.75),
             "tiny_range": 1e-3 + np.arange(12).reshape(2, 6) * 1e-7,
             "huge": np.array([[1e6, -3e5, 7.5, 0, 2e6, -1e6]] * 2),
             "subnormal": np.array([[1e-40, -2e-41, 0, 3e-39, 1e-45, 0]] * 2)}
    w = rng.standard_normal((4, 6)).astype(F32)
    w[3] = 0                                                 # an all-zero weight row
    b = rng.standard_normal(4).astype(F32)
    for label, x in edges.items():
        cases.append(make(f"qtorch/dynamic_linear/edge/{label}", "qt.dynamic_linear",
                          {"per_channel": label == "huge", "relu": False},
                          {"x": f32(x), "w": f32(w), "b": f32(b)}))
    return cases


def _static(op, params, ins):
    """A static integer case under both kernel models; kernel_dependent records whether
    they differ (then each model's case runs only on a machine with that kernel)."""
    other = compute(op, ins, dict(params, int16_pairs=False))
    base = compute(op, ins, dict(params, int16_pairs=True))
    dep = not np.array_equal(other["y"].bits, base["y"].bits)
    models = (True, False) if dep else (True,)
    return [(dict(params, int16_pairs=m, kernel_dependent=dep), m) for m in models]


def _static_ins(rng, xshape, wshape, per_channel, bias, sat=False):
    O = wshape[0]
    xq = rng.integers(0, 256, xshape)
    wq = rng.integers(-128, 128, wshape)
    if sat:
        xq = rng.integers(240, 256, xshape)
        wq = np.where(rng.random(wshape) < 0.8, -128, wq)
    ins = {"xq": ints(xq, "uint8"), "x_scale": f32(F32(rng.uniform(0.005, 0.05))),
           "x_zero_point": ints(rng.integers(0, 256), "int32"), "wq": ints(wq, "int8"),
           "out_scale": f32(F32(rng.uniform(0.05, 2.0) * (40 if sat else 1))),
           "out_zero_point": ints(rng.integers(0, 256), "int32")}
    if per_channel:
        ins["w_scale"] = f32(rng.uniform(0.002, 0.01, O).astype(F32))
        ins["w_zero_point"] = ints(np.zeros(O, int) if sat else rng.integers(-3, 4, O), "int32")
    else:
        ins["w_scale"] = f32([F32(rng.uniform(0.002, 0.01))])
        ins["w_zero_point"] = ints([0 if sat else rng.integers(-3, 4)], "int32")
    if sat:
        ins["x_zero_point"] = ints(0, "int32")
    if bias:
        ins["bias"] = f32(rng.standard_normal(O).astype(F32))
    return ins


def _static_cases():
    cases = []
    rng = np.random.default_rng(_seed("qtorch", "linear"))
    for i, (M, K, N) in enumerate([(4, 16, 8), (3, 67, 5), (1, 1, 3), (8, 40, 33)]):
        for pc in (False, True):
            relu = (i + pc) % 2 == 1
            ins = _static_ins(rng, (M, K), (N, K), pc, bias=i != 2)
            for p, m in _static("qt.linear", {"relu": relu}, ins):
                cases.append(make(f"qtorch/linear/{M}x{K}->{N}/"
                                  f"{'per_channel' if pc else 'per_tensor'}"
                                  + ("/relu" if relu else "") + f"/int16_pairs={m}",
                                  "qt.linear", p, ins))
    for pc in (False, True):
        ins = _static_ins(rng, (3, 32), (4, 32), pc, bias=True, sat=True)
        for p, m in _static("qt.linear", {"relu": False}, ins):
            cases.append(make(f"qtorch/linear/saturating/{'per_channel' if pc else 'per_tensor'}"
                              f"/int16_pairs={m}", "qt.linear", p, ins,
                              notes="activations near 255 against weights of -128: AVX2's "
                                    "vpmaddubsw saturates product pairs to int16"))
    geoms = [dict(k=3, stride=1, padding=1, groups=1), dict(k=3, stride=2, padding=0, groups=1),
             dict(k=3, stride=1, padding=2, groups=1, dilation=2),
             dict(k=1, stride=1, padding=0, groups=1), dict(k=3, stride=1, padding=1, groups=8),
             dict(k=3, stride=1, padding=1, groups=2)]
    C = O = 8
    for i, g in enumerate(geoms):
        pc, relu = i % 2 == 1, i % 3 == 2
        k = g["k"]
        ins = _static_ins(rng, (2, C, 7, 6), (O, C // g["groups"], k, k), pc, bias=True)
        prm = {"stride": g["stride"], "padding": g["padding"], "dilation": g.get("dilation", 1),
               "groups": g["groups"], "relu": relu}
        for p, m in _static("qt.conv2d", prm, ins):
            cases.append(make(f"qtorch/conv2d/k{k}_s{g['stride']}_p{g['padding']}_"
                              f"d{g.get('dilation', 1)}_g{g['groups']}/"
                              f"{'per_channel' if pc else 'per_tensor'}"
                              + ("/relu" if relu else "") + f"/int16_pairs={m}",
                              "qt.conv2d", p, ins))
    ins = _static_ins(rng, (1, C, 5, 5), (O, C, 3, 3), False, bias=True, sat=True)
    prm = {"stride": 1, "padding": 1, "dilation": 1, "groups": 1, "relu": False}
    for p, m in _static("qt.conv2d", prm, ins):
        cases.append(make(f"qtorch/conv2d/saturating/int16_pairs={m}", "qt.conv2d", p, ins))
    return cases


def _fuse_cases():
    cases = []
    rng = np.random.default_rng(_seed("qtorch", "fuse"))
    for i, (wshape, conv_b, affine, eps, transpose) in enumerate([
            ((8, 3, 3, 3), True, True, 1e-5, False), ((6, 4, 1, 1), False, True, 1e-3, False),
            ((5, 2, 3, 3), True, False, 1e-5, False), ((3, 6, 2, 2), True, True, 1e-5, True),
            ((4, 4, 3), True, True, 0.1, False)]):
        O = wshape[1] if transpose else wshape[0]
        ins = {"conv_w": f32(rng.standard_normal(wshape).astype(F32)),
               "bn_rm": f32(rng.standard_normal(O).astype(F32)),
               "bn_rv": f32(np.abs(rng.standard_normal(O)).astype(F32)
                            * F32(2.0) ** rng.integers(-20, 4, O).astype(F32))}
        ins["bn_rv"] = f32(np.where(np.arange(O) == 0, 0.0, ins["bn_rv"].values()))
        if conv_b:
            ins["conv_b"] = f32(rng.standard_normal(O).astype(F32))
        if affine:
            ins["bn_w"] = f32(rng.uniform(0.5, 1.5, O).astype(F32))
            ins["bn_b"] = f32(rng.standard_normal(O).astype(F32))
        cases.append(make(f"qtorch/fuse_conv_bn/{'x'.join(map(str, wshape))}"
                          + ("/bias" if conv_b else "") + ("" if affine else "/no_affine")
                          + ("/transpose" if transpose else "") + f"/eps={eps}",
                          "qt.fuse_conv_bn", {"eps": eps, "transpose": transpose}, ins))
    for i, (shape, lb, eps) in enumerate([((8, 12), True, 1e-5), ((5, 3), False, 1e-3),
                                          ((1, 9), True, 0.0)]):
        O = shape[0]
        rv = np.abs(rng.standard_normal(O)).astype(F32) + F32(i == 2)
        ins = {"linear_w": f32(rng.standard_normal(shape).astype(F32)),
               "bn_rm": f32(rng.standard_normal(O).astype(F32)), "bn_rv": f32(rv),
               "bn_w": f32(rng.uniform(0.5, 1.5, O).astype(F32)),
               "bn_b": f32(rng.standard_normal(O).astype(F32))}
        if lb:
            ins["linear_b"] = f32(rng.standard_normal(O).astype(F32))
        cases.append(make(f"qtorch/fuse_linear_bn/{shape[0]}x{shape[1]}"
                          + ("/bias" if lb else "") + f"/eps={eps}", "qt.fuse_linear_bn",
                          {"eps": eps}, ins))
    return cases


@suite("qtorch")
def qtorch_suite():
    """torch.ao.quantization references (issue 7): see the module docstring."""
    return (_observer_cases() + _quant_cases() + _fake_quant_cases() + _lsq_cases()
            + _fused_cases() + _dynamic_cases() + _static_cases() + _fuse_cases())

