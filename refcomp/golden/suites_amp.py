"""Golden suite ``amp``: dynamic loss scaling as :class:`refcomp.amp.GradScaler` computes it
(issue 9), torch 2.13's ``torch.amp.GradScaler``, cross-checked on torch 2.13 CPU by
``--backend torch-cpu`` (a real GradScaler driving an SGD optimizer).

amp.scaler_update  found_inf sequences under torch's defaults (65536, 2, 0.5, 2000: one
                   growth after 2000 clean steps), growth_interval 1..5, non-power-of-two
                   factors (1.5, 0.3, 1.1, 0.9, 3, 0.7, 1.0001, 0.9999) and init scales
                   (3, 0.1 -- rounded to float32 --, 65535), growth up to the float32 maximum
                   (reached exactly, by rounding, and refused when the product rounds to
                   inf), backoff through the subnormals (rounding there, sticking at a
                   subnormal, down to 0)
amp.unscale        float32 gradients (random, subnormals, huge, +-0, inf, NaN with payloads,
                   a signalling NaN) unscaled by power-of-two scales and by 3, 0.1, 65535,
                   1 (no multiplication), the float32 maximum (a subnormal inverse) and a
                   subnormal scale (an infinite inverse)

torch's ``found_inf`` looks at the gradients as given (scaled), before unscaling: a clean
step under a zero or deep subnormal scale (an infinite inverse, unscaled gradients inf /
NaN) is still clean, and the sequences below include such steps.

>>> from refcomp.golden import build
>>> cases = build("amp")
>>> len(cases) > 40, sorted({c.op for c in cases})
(True, ['amp.scaler_update', 'amp.unscale'])
"""

from __future__ import annotations

import math

import numpy as np

from .compute_amp import f32_bits
from .schema import GoldenError, Operand
from .suites import _seed, make, suite

__all__ = ["amp_suite", "FMAX", "SEQUENCES", "UNSCALE"]

F32 = np.float32
FMAX = float(np.finfo(F32).max)


def _found(seq) -> Operand:
    return Operand("bool", np.asarray(seq, bool).astype(np.uint8))


def _f32(x) -> Operand:
    return Operand("float32", f32_bits(np.asarray(x, np.float64)))


def _random(n, p, tag):
    r = np.random.default_rng(_seed("amp", "seq", tag))
    return (r.random(n) < p).tolist()


T, F = True, False

#: (tag, init_scale, growth_factor, backoff_factor, growth_interval, found_inf sequence)
SEQUENCES = [
    ("defaults/growth_after_2000", 2.0**16, 2.0, 0.5, 2000,
     [F] * 1999 + [T] + [F] * 2000 + [F] * 3 + [T, F]),
    *[(f"pot/interval={k}", 2.0**16, 2.0, 0.5, k, _random(40, 0.25, f"pot{k}"))
      for k in (1, 2, 3, 4, 5)],
    ("interval=3/inf_at_tracker_2", 1024.0, 2.0, 0.5, 3,
     [F, F, T, F, F, T, F, F, F, F, F, F, T, T, F]),
    ("odd/3/x1.5/x0.3/interval=1", 3.0, 1.5, 0.3, 1, _random(60, 0.3, "odd1")),
    ("odd/0.1/x1.1/x0.9/interval=2", 0.1, 1.1, 0.9, 2, _random(60, 0.3, "odd2")),
    ("odd/65535/x3/x0.7/interval=3", 65535.0, 3.0, 0.7, 3, _random(60, 0.3, "odd3")),
    ("odd/1000/x1.0001/x0.9999/interval=1", 1000.0, 1.0001, 0.9999, 1,
     _random(80, 0.4, "odd4")),
    ("odd/1/x1.25/x0.8/interval=4", 1.0, 1.25, 0.8, 4, _random(60, 0.2, "odd5")),
    ("max/half_max/x2", FMAX / 2, 2.0, 0.5, 1, [F, F, F, T, F, F, F]),
    ("max/0x1p127/x2/refused", 2.0**127, 2.0, 0.5, 1, [F, F, T, F, F, F]),
    ("max/half_max/x2+0x1p-25/rounds_to_max", FMAX / 2, 2.0 + 2.0**-25, 0.5, 1,
     [F, F, T, F, F]),
    ("max/half_max/x2+0x1p-23/refused", FMAX / 2, 2.0 + 2.0**-23, 0.5, 1,
     [F, F, T, F, F]),
    ("max/3e38/x1.1/interval=2", 3e38, 1.1, 0.5, 2, [F, F, F, F, T, F, F, F, F]),
    ("max/1/x1e6/interval=1", 1.0, 1e6, 0.5, 1, [F] * 8 + [T] + [F] * 3),
    ("max/65536/x2/climb", 2.0**16, 2.0, 0.5, 1, [F] * 115 + [T, F, F]),
    ("sub/0x1p-120/x0.5/down_and_up", 2.0**-120, 2.0, 0.5, 1, [T] * 7 + [F] * 4),
    ("sub/0x1p-120/x0.5/to_zero", 2.0**-120, 2.0, 0.5, 1,
     [T] * 7 + [F] * 2 + [T] * 32 + [F] * 3),
    ("sub/0x1p-140/x2/up", 2.0**-140, 2.0, 0.5, 1, [F] * 20 + [T, F]),
    ("sub/1e-30/x0.3/to_zero", 1e-30, 1.5, 0.3, 1, [T] * 40),
    ("sub/1e-42/x0.9/sticks_at_4_ulp", 1e-42, 2.0, 0.9, 1, [T] * 70),
    ("sub/0x1.8p-127/x1.5/x0.75", 1.5 * 2.0**-127, 1.5, 0.75, 1,
     [F, T, T, F, F, T, F, F, F, F]),
    ("sub/1e-37/x3/x0.7/interval=2", 1e-37, 3.0, 0.7, 2,
     [T] * 12 + [F] * 2 + [T] * 30),
]


def _seq_cases():
    cases = []
    for tag, init, gf, bf, gi, seq in SEQUENCES:
        cases.append(make(f"amp/scaler_update/{tag}", "amp.scaler_update",
                          {"init_scale": init, "growth_factor": gf, "backoff_factor": bf,
                           "growth_interval": gi}, {"found_inf": _found(seq)}))
    return cases


def _grads(kind, shape, tag):
    r = np.random.default_rng(_seed("amp", "grad", kind, shape, tag))
    n = math.prod(shape)
    if kind == "random":
        g = r.standard_normal(n) * 2.0 ** r.integers(-20, 20, n)
    elif kind == "subnormal":
        bits = r.integers(1, 0x800000, n, dtype=np.uint32) | \
            (r.integers(0, 2, n, dtype=np.uint32) << np.uint32(31))
        g = bits.view(F32).astype(np.float64)
    elif kind == "huge":
        g = r.choice([-1.0, 1.0], n) * FMAX * r.uniform(0.05, 1.0, n)
        g[:2] = [FMAX, -FMAX]
    elif kind == "special":                 # NaN bit patterns (signalling ones too) set below
        base = [0.0, -0.0, np.inf, -np.inf, 1.0, -3.0, 2.0**-149, FMAX, 0.1]
        g = np.concatenate([base, np.zeros(len(_NANS)),
                            r.standard_normal(n - len(base) - len(_NANS))])
    elif kind == "finite_edges":
        base = [0.0, -0.0, 2.0**-149, -2.0**-149, 2.0**-126, FMAX, -FMAX, 1.0, 3.0, 0.1]
        g = np.concatenate([base, r.standard_normal(n - len(base))])
    else:
        raise GoldenError(f"unknown gradient kind {kind!r}")
    bits = np.asarray(g, F32).view(np.uint32).copy()
    if kind == "special":
        bits[9:9 + len(_NANS)] = _NANS
    return bits.reshape(shape)


#: quiet NaNs of either sign, payloads, signalling NaNs (x86 quiets them when multiplying)
_NANS = np.array([0x7FC00000, 0xFFC00000, 0x7FC12345, 0xFF812345, 0x7F800001], np.uint32)


_SCALES = {"0x1p16": 2.0**16, "1": 1.0, "3": 3.0, "0.1": 0.1, "65535": 65535.0,
           "0x1p-10": 2.0**-10, "0x1p24": 2.0**24, "7": 7.0, "max": FMAX,
           "0x1p-140": 2.0**-140, "1e-30": 1e-30}

#: (gradient kind, shape, scale names)
UNSCALE = [
    ("random", (4, 6), ("0x1p16", "1", "3", "0.1", "65535", "0x1p-10", "0x1p24", "7")),
    ("random", (), ("3", "0.1")),
    ("random", (37,), ("65535", "max")),
    ("subnormal", (24,), ("3", "0.1", "0x1p16", "0x1p-10", "1", "max")),
    ("huge", (16,), ("0.1", "3", "65535", "0x1p-10", "1")),
    ("finite_edges", (20,), ("3", "0.1", "0x1p-140", "1e-30", "max", "1")),
    ("special", (4, 5), ("0x1p16", "1", "3", "0.1", "65535", "0x1p-140")),
]


def _unscale_cases():
    cases = []
    for kind, shape, scales in UNSCALE:
        g = _grads(kind, shape, "x".join(map(str, shape)))
        for name in scales:
            sc = np.float64(F32(_SCALES[name]))
            shp = "x".join(map(str, shape)) or "scalar"
            cases.append(make(f"amp/unscale/{kind}/{shp}/scale={name}", "amp.unscale", {},
                              {"g": Operand("float32", g.copy()), "scale": _f32(sc)}))
    return cases


@suite("amp")
def amp_suite():
    """Dynamic loss scaling (issue 9): see the module docstring."""
    return _seq_cases() + _unscale_cases()
