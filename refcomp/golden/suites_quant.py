"""Golden suites of the integer, fixed-point and quantization primitives (issue 4).

integer   rounding into integer formats (int2..int64, unsigned, narrow) in every mode with
          saturate and wrap, at several scale exponents, seeded stochastic rounding;
          fixed-point conversion and exact add/sub/mul/div with one rounding; sub-byte
          packing (1, 2, 4 and 6 bits)
requant   gemmlowp SRDHM and RoundingDivideByPOT, TFLite MultiplyByQuantizedMultiplier
          (double and single rounding, int32 and int64 inputs), QuantizeMultiplier
affine    torch 2.13 quantize_per_tensor / fake-quant and torchao 0.18 quantize_affine,
          dequantize_affine, choose_qparams_affine conventions
"""

from __future__ import annotations

import numpy as np

from ..formats.intformat import FixedFormat, int_format
from .compute_quant import int_operand
from .suites import DETERMINISTIC, _seed, into, make, pow10, suite

__all__ = ["integer_suite", "requant_suite", "affine_suite"]

INT_FORMATS = ["int2", "int4", "uint4", "int8", "int8_narrow", "uint8", "int16", "int32",
               "uint32", "int64", "uint64"]


def _quant_inputs(rng, fmt, scale_exp):
    """float64 inputs around the format's range at quantum 2**scale_exp: ties, halfway
    points, range ends, huge and tiny values, signed zeros."""
    lo, hi = fmt.min, fmt.max
    step = 2.0 ** scale_exp
    k = rng.integers(max(lo, -(1 << 60)), min(hi, 1 << 60), 48, endpoint=True).astype(np.float64)
    near = np.concatenate([k + 0.5, k - 0.5, k + 0.25, k + 0.75, k])
    ends = np.array([lo - 0.5, lo - 1.0, lo, lo + 0.5, hi - 0.5, hi, hi + 0.5, hi + 1.0,
                     2.0 * hi + 7], dtype=np.float64)
    rand = rng.normal(size=48) * max(min(hi, 1 << 60), 1) * 0.7
    special = np.array([0.0, -0.0, 1e300, -1e300, 5e-324, -5e-324, 2.0 ** 70, -(2.0 ** 70)])
    return np.concatenate([near, ends, rand]) * step, special


def _fx(f: FixedFormat):
    return [f.total_bits, f.frac_bits, f.signed, f.narrow]


FIXED = [FixedFormat(8, 4), FixedFormat(16, 15), FixedFormat(8, 8, False), FixedFormat(6, -2),
         FixedFormat(32, 16), FixedFormat(16, 12, narrow=True), FixedFormat(64, 40)]


@suite("integer")
def integer_suite():
    cases = []
    for name in INT_FORMATS:
        fmt = int_format(name)
        for scale_exp in (0, -3, 5):
            rng = np.random.default_rng(_seed("integer", name, scale_exp))
            body, special = _quant_inputs(rng, fmt, scale_exp)
            x = into(np.concatenate([body, special]), "float64")
            x32 = into(body[np.abs(body) < 3e38], "float32")
            for mode in DETERMINISTIC:
                for ovf in ("saturate",) + (() if fmt.narrow else ("wrap",)):
                    cases.append(make(f"integer/quantize/{name}/q{scale_exp}/{mode}/{ovf}",
                                      "quantize_int", {"fmt": name, "rounding": mode,
                                                       "overflow": ovf,
                                                       "scale_exp": scale_exp}, {"x": x}))
            cases.append(make(f"integer/quantize/{name}/q{scale_exp}/float32/nearest_even",
                              "quantize_int", {"fmt": name, "rounding": "nearest_even",
                                               "scale_exp": scale_exp}, {"x": x32}))
            for seed, rbits in ((1, None), (2, 8)):
                cases.append(make(f"integer/quantize/{name}/q{scale_exp}/stochastic/{seed}",
                                  "quantize_int", {"fmt": name, "rounding": "stochastic",
                                                   "scale_exp": scale_exp, "seed": seed,
                                                   "random_bits": rbits}, {"x": x}))
    # fixed point: conversions and arithmetic between a few Q formats
    for i, fa in enumerate(FIXED):
        rng = np.random.default_rng(_seed("fixed", i))
        ia = fa.integer
        edge = [ia.min, ia.min + 1, -1 if ia.signed else 2, 0, 1, ia.max - 1, ia.max]
        qa = np.array(edge + rng.integers(ia.min, ia.max, 57, endpoint=True).tolist(),
                      dtype=ia.value_dtype)
        fb = FIXED[(i + 1) % len(FIXED)]
        ib = fb.integer
        edge_b = [ib.max, ib.max - 1, 1, 0, -1 if ib.signed else 2, ib.min + 1, ib.min]
        qb = np.array(edge_b + rng.integers(ib.min, ib.max, 57, endpoint=True).tolist(),
                      dtype=ib.value_dtype)
        a, b = int_operand(qa, ia.name), int_operand(qb, ib.name)
        for out in (FIXED[(i + 2) % len(FIXED)], fa):
            for mode in DETERMINISTIC:
                ovfs = ("saturate",) + (() if out.narrow else ("wrap",))
                for ovf in ovfs:
                    p = {"src": _fx(fa), "dst": _fx(out), "rounding": mode, "overflow": ovf}
                    cases.append(make(f"integer/fixed_convert/{fa.name}->{out.name}/{mode}/"
                                      f"{ovf}", "fixed_convert", p, {"q": a}))
                    for op in ("add", "sub", "mul", "div"):
                        bb = b
                        if op == "div":
                            bb = int_operand(np.where(qb == 0, 1, qb), ib.name)
                        p = {"fa": _fx(fa), "fb": _fx(fb), "out": _fx(out), "rounding": mode,
                             "overflow": ovf}
                        cases.append(make(f"integer/fixed_{op}/{fa.name}+{fb.name}->"
                                          f"{out.name}/{mode}/{ovf}", f"fixed_{op}", p,
                                          {"a": a, "b": bb}))
            p = {"fa": _fx(fa), "fb": _fx(fb), "out": _fx(out), "rounding": "stochastic",
                 "seed": 3}
            cases.append(make(f"integer/fixed_mul/{fa.name}+{fb.name}->{out.name}/stochastic",
                              "fixed_mul", p, {"a": a, "b": b}))
    for bits in (1, 2, 4, 6):
        rng = np.random.default_rng(_seed("pack", bits))
        codes = rng.integers(0, 1 << bits, (8, 32)).astype(np.uint64)
        cases.append(make(f"integer/pack/{bits}", "pack", {"bits": bits},
                          {"codes": int_operand(codes, f"uint{bits}")}))
    return cases


I32 = (-(1 << 31), (1 << 31) - 1)


@suite("requant")
def requant_suite():
    cases = []
    rng = np.random.default_rng(_seed("requant"))
    edge = np.array([I32[0], I32[0] + 1, -(1 << 30), -2, -1, 0, 1, 2, 1 << 30, I32[1]])
    a = np.concatenate([np.repeat(edge, edge.size), rng.integers(*I32, 400, endpoint=True)])
    b = np.concatenate([np.tile(edge, edge.size), rng.integers(*I32, 400, endpoint=True)])
    cases.append(make("requant/srdhm", "srdhm", {},
                      {"a": int_operand(a, "int32"), "b": int_operand(b, "int32")}))
    e = np.concatenate([np.repeat(np.arange(32), 12), rng.integers(0, 32, 200)])
    x = np.concatenate([np.tile(edge, 32)[: 32 * 12 - 32 * 2].tolist() + [0] * 64,
                        rng.integers(*I32, 200, endpoint=True)])[: e.size]
    ties = (np.int64(1) << np.maximum(e - 1, 0)) * rng.choice([-3, -1, 1, 3], e.size)
    x = np.where(np.arange(e.size) % 3 == 0, np.clip(ties, *I32), x)
    cases.append(make("requant/rounding_divide_by_pot", "rounding_divide_by_pot", {},
                      {"x": int_operand(x, "int32"), "exponent": int_operand(e, "int32")}))
    for rounding in ("double", "single"):
        n = 600
        shift = rng.integers(-31, 1, n)
        m = rng.integers(1 << 30, 1 << 31, n)
        xs = rng.integers(*I32, n, endpoint=True)
        small = np.arange(n) % 2 == 0
        shift = np.where(small, rng.integers(0, 8, n), shift)
        xs = np.where(small, xs >> 12, xs)
        ok = _requant_ok(xs, m, shift, rounding)
        cases.append(make(f"requant/multiply_by_quantized_multiplier/{rounding}", "requant",
                          {"rounding": rounding},
                          {"x": int_operand(xs[ok], "int32"),
                           "multiplier": int_operand(m[ok], "int32"),
                           "shift": int_operand(shift[ok], "int32")}))
        x64 = rng.integers(-(1 << 47), 1 << 47, n)
        s64 = rng.integers(-31, 8, n)
        ok = _requant_ok(x64, m, s64, rounding, wide=True)
        cases.append(make(f"requant/multiply_by_quantized_multiplier/{rounding}/int64", "requant",
                          {"rounding": rounding, "x_bits": 64},
                          {"x": int_operand(x64[ok], "int64"),
                           "multiplier": int_operand(m[ok], "int32"),
                           "shift": int_operand(s64[ok], "int32")}))
        d = np.concatenate([2.0 ** np.arange(-40, 20, dtype=np.float64),
                            np.nextafter(1.0, 0.0) * 2.0 ** np.arange(-5, 5),
                            (1 + 2.0 ** -32) * 2.0 ** np.arange(-5, 5), [0.0, 5e-324],
                            np.ldexp(rng.uniform(1.0, 2.0, 200), rng.integers(-44, 17, 200))])
        cases.append(make(f"requant/quantize_multiplier/{rounding}", "quantize_multiplier",
                          {"rounding": rounding}, {"d": into(d, "float64")}))
    return cases


def _requant_ok(x, m, s, rounding, wide=False):
    """Inputs inside the valid domain (the op raises outside it): result within int32."""
    from fractions import Fraction
    ok = []
    for xi, mi, si in zip(x.tolist(), m.tolist(), s.tolist()):
        if wide:
            rm = (mi + (1 << 15)) >> 16 if mi < 0x7FFF0000 else 0x7FFF
            v = Fraction(xi * rm, 1 << (15 - si))
        else:
            if rounding == "double" and not I32[0] <= xi * (1 << max(si, 0)) <= I32[1]:
                ok.append(False)
                continue
            v = Fraction(xi * mi, 1 << (31 - si))
        ok.append(I32[0] + 2 <= v <= I32[1] - 2)
    return np.array(ok)


@suite("affine")
def affine_suite():
    cases = []
    rng = np.random.default_rng(_seed("affine"))
    for conv in ("torch-2.13-quantize_per_tensor", "torch-2.13-fake_quantize", "torchao-0.18"):
        for s, z, qmin, qmax in ((0.0123, 3, 0, 255), (0.1, 1, 0, 255), (1 / 3, 128, 0, 255),
                                 (2.0 ** -7, 0, -128, 127), (0.05, -5, -128, 127)):
            inv = np.float32(1) / np.float32(s)
            k = rng.integers(qmin - 3, qmax + 3, 200) + 0.5
            tie = ((k - z) / np.float64(inv)).astype(np.float32)
            tie = (tie.view(np.int32) + rng.integers(-2, 3, 200).astype(np.int32)).view(np.float32)
            x = np.concatenate([tie, (rng.normal(size=200) * 3).astype(np.float32),
                                np.array([0.0, -0.0, 1e30, -1e30], np.float32)])
            xs = into(x.astype(np.float64), "float32")
            sc = into(np.array(s), "float32")
            zp = int_operand(np.array(z), "int32")
            tag = f"{conv}/s={float(np.float32(s)):.6g}/z={z}/{qmin}..{qmax}"
            p = {"qmin": qmin, "qmax": qmax, "convention": conv}
            if conv != "torch-2.13-fake_quantize":
                cases.append(make(f"affine/quantize/{tag}", "quantize_affine", p,
                                  {"x": xs, "scale": sc, "zero_point": zp}))
            if conv != "torch-2.13-quantize_per_tensor":
                cases.append(make(f"affine/fake_quantize/{tag}", "fake_quantize_affine", p,
                                  {"x": xs, "scale": sc, "zero_point": zp}))
            q = int_operand(rng.integers(qmin, qmax, 64, endpoint=True), "int32")
            cases.append(make(f"affine/dequantize/{tag}", "dequantize_affine",
                              {"convention": conv}, {"q": q, "scale": sc, "zero_point": zp}))
    for fmt in ("float32", "bfloat16", "float16"):
        x = rng.normal(size=(16, 128)) * rng.uniform(0.01, 10, (16, 1))
        x[0, :32] = 0.0
        xs = into(x, fmt)
        for mapping in ("symmetric", "asymmetric", "symmetric_no_clipping_err"):
            for qmin, qmax in ((-128, 127), (0, 255), (-8, 7)):
                cases.append(make(f"affine/choose_qparams/{fmt}/{mapping}/{qmin}..{qmax}",
                                  "choose_qparams_affine",
                                  {"mapping": mapping, "block_size": [1, 32], "qmin": qmin,
                                   "qmax": qmax, "fmt": fmt}, {"x": xs}))
    return cases


MX_FORMATS = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4"]


def _block_data(rng, top, n=64):
    """float32 rows: several magnitudes, zeros, subnormals, values near the element's max
    times powers of two, amax at and just below powers of two, partial NaN/inf blocks."""
    rows = [rng.standard_normal(n) * s for s in (1.0, 1e-3, 1e3, 1e-30, 1e30, 2.0 ** -130)]
    rows += [np.zeros(n), np.where(rng.random(n) < 0.5, 0.0, rng.standard_normal(n))]
    for e in (-127, -126, -100, -1, 0, 1, 9, 120, 127):
        p = 2.0 ** e
        for v in (p, np.nextafter(np.float32(p), np.float32(0)), p * 1.875, top * 2.0 ** (e - 8)):
            r = rng.standard_normal(n) * p / 3
            r[3], r[40] = v, -v
            rows.append(r)
    for k in (-20, 1, 17):                                # just above top * 2**k (RCEIL)
        for j in (1, 2, 3, 11, 12, 23):
            r = rng.standard_normal(n) * 2.0 ** k
            r[7] = top * 2.0 ** k * (1 + j * 2.0 ** -23)
            rows.append(r)
    with np.errstate(over="ignore"):
        x = np.array(rows, dtype=np.float32)
    x[np.isinf(x)] = np.float32(3.4028235e38)
    sp = np.ones((4, n), dtype=np.float32)
    sp[0, 3] = np.nan
    sp[1, 3], sp[1, 40] = np.nan, np.inf
    sp[2, 33] = -np.inf
    sp[3, :32] = -np.inf
    return x, sp


@suite("block")
def block_suite():
    """OCP MX (every element type, scale rules floor/ceil/even/rceil) under the OCP and
    torchao-0.18 conventions, MXINT8, NVFP4 (three per-tensor levels), BFP (OCP and
    QPyTorch conventions), partial blocks, another axis, seeded stochastic rounding."""
    from ..formats.block import get_block_format
    cases = []
    for name in MX_FORMATS:
        fmt = get_block_format(name)
        rng = np.random.default_rng(_seed("block", name))
        finite, specials = _block_data(rng, float(fmt.max_elem))
        x = into(finite.astype(np.float64), "float32")
        xs = into(specials.astype(np.float64), "float32")
        xp = into(finite[:8, :40].astype(np.float64), "float32")          # partial block
        for rule in ("floor", "ceil", "even", "rceil"):
            for conv in ("ocp-mx-1.0", "torchao-0.18"):
                p = {"fmt": name, "scale_rule": rule, "convention": conv}
                cases.append(make(f"block/{name}/{rule}/{conv}", "quantize_block", p,
                                  {"x": x}))
                cases.append(make(f"block/{name}/{rule}/{conv}/specials", "quantize_block", p,
                                  {"x": xs}))
            cases.append(make(f"block/{name}/{rule}/ocp-mx-1.0/partial", "quantize_block",
                              {"fmt": name, "scale_rule": rule}, {"x": xp}))
        for mode in ("toward_zero", "toward_positive", "odd"):
            cases.append(make(f"block/{name}/floor/ocp-mx-1.0/{mode}", "quantize_block",
                              {"fmt": name, "rounding": mode}, {"x": x}))
        cases.append(make(f"block/{name}/floor/ocp-mx-1.0/axis0", "quantize_block",
                          {"fmt": name, "axis": 0}, {"x": x}))
        cases.append(make(f"block/{name}/floor/ocp-mx-1.0/stochastic", "quantize_block",
                          {"fmt": name, "rounding": "stochastic", "seed": 4}, {"x": x}))
        x64 = into(rng.standard_normal((4, 64)) * pow10(rng.integers(-300, 300, (4, 1))),
                   "float64")
        cases.append(make(f"block/{name}/floor/ocp-mx-1.0/float64", "quantize_block",
                          {"fmt": name}, {"x": x64}))
    rng = np.random.default_rng(_seed("block", "int"))
    finite, specials = _block_data(rng, 127 / 64)
    x = into(finite.astype(np.float64), "float32")
    for mode in ("nearest_even", "toward_zero", "nearest_away"):
        cases.append(make(f"block/mxint8/{mode}", "quantize_block",
                          {"fmt": "mxint8", "rounding": mode}, {"x": x}))
    bam = np.abs(finite).reshape(finite.shape[0], -1, 16).max(axis=2)
    keep = ((bam == 0) | ((bam >= 2.0 ** -126) & (bam < 2.0 ** 126))).all(axis=1)
    xq = into(finite[keep].astype(np.float64), "float32")      # QPyTorch's domain
    for bits in (4, 8, 12):
        cases.append(make(f"block/bfp{bits}/nearest_even", "quantize_block",
                          {"fmt": f"bfp{bits}", "block_size": 16}, {"x": x}))
        cases.append(make(f"block/bfp{bits}/qpytorch-0.2/nearest", "quantize_block",
                          {"fmt": f"bfp{bits}", "block_size": 16, "rounding": "nearest",
                           "convention": "qpytorch-0.2"}, {"x": xq}))
    rng = np.random.default_rng(_seed("block", "nvfp4"))
    nv = (rng.standard_normal((16, 64)) * pow10(rng.integers(-6, 6, (16, 1))))
    nv[3, :16] = 0.0
    x = into(nv, "float32")
    for level in ("amax", "none", 0.1875):
        cases.append(make(f"block/nvfp4/tensor_scale={level}", "quantize_block",
                          {"fmt": "nvfp4", "tensor_scale": level, "convention": "torchao-0.18"},
                          {"x": x}))
    return cases
