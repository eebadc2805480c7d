"""Golden suites of dot products / GEMMs (issue 5).

gemm        every preset of refcomp.ops.ACCUMULATION_MODELS (except the machine-dependent
            'blas' order) and custom models covering
            each order (sequential, pairwise, blocked, split-K), rounded products, output
            rounding and every deterministic accumulator rounding, one seeded stochastic
            accumulation; rows of random, same-sign, cancelling, exponent-spread and
            underflowing data, specials where the format has them, a non-zero C
tensorcore  every model of refcomp.ops.TENSOR_CORES on one and two instructions of depth,
            the same kinds of rows, block scales for the block-scaled instructions
"""

from __future__ import annotations

import numpy as np

from ..formats import catalog
from ..ops.accum_model import ACCUMULATION_MODELS, AccumulationModel, Order
from ..ops.tensorcore import TENSOR_CORES, _EMIN
from .compute_gemm import model_params, tc_params
from .compute_quant import int_operand
from .suites import DETERMINISTIC, _seed, into, make, suite

__all__ = ["gemm_suite", "tensorcore_suite"]


def _rows(fmt, M, K, rng, specials=True):
    """(M, K) float64 inputs, row by row: random, same-sign, cancellation, exponent spread,
    near the underflow threshold; then inf/NaN/-0 in the last row if the format has them."""
    f = catalog.get(fmt)
    e = max(1, min(12, (f.emax - 1) // 2))
    kinds = [rng.standard_normal(K),
             np.abs(rng.standard_normal(K)) + 0.5,
             rng.standard_normal(K) * 0.01 + np.where(np.arange(K) % 2 == 0, 2.0, -2.0),
             rng.standard_normal(K) * np.exp2(rng.integers(-e, e + 1, K)),
             rng.standard_normal(K) * 2.0 ** max(f.emin // 2, -60)]
    x = np.stack([kinds[i % len(kinds)] for i in range(M)])
    x = np.asarray(x, np.float64)
    if specials:
        x[-1, 0] = -0.0
        if f.has_inf:
            x[-1, 1] = np.inf
        if f.has_nan and K > 3:
            x[-1, 3] = np.nan
    return x


def _custom_models():
    out = []
    for mode in DETERMINISTIC:
        out += [
            AccumulationModel(f"bf16-fp16acc-{mode}", "bfloat16", "float16",
                              acc_rounding=mode),
            AccumulationModel(f"fp16-prod-bf16acc-{mode}", "float16", "bfloat16",
                              product="float16", product_rounding=mode, acc_rounding=mode),
            AccumulationModel(f"fp16-pairwise-{mode}", "float16", "float16",
                              acc_rounding=mode, order="pairwise"),
            AccumulationModel(f"bf16-blocked8-fp32-bf16out-{mode}", "bfloat16", "bfloat16",
                              acc_rounding=mode, order="blocked", block=8, outer="float32",
                              outer_rounding=mode, output="bfloat16", output_rounding=mode),
            AccumulationModel(f"e5m2-splitk3-{mode}", "float8_e5m2", "float8_e5m2",
                              acc_rounding=mode, order="split_k", splits=3, outer="float16",
                              outer_rounding=mode),
        ]
    return out


def _int_inputs(m, M, K, N, rng):
    a = rng.integers(m.inputs.min, m.inputs.max + 1, (M, K))
    b = rng.integers(m.inputs_b.min, m.inputs_b.max + 1, (K, N))
    a[0] = m.inputs.max if m.inputs.min == 0 else m.inputs.min   # saturating pairs
    b[:, 0] = m.inputs_b.min
    c = rng.integers(-1000, 1000, (M, N))
    c[1] = m.acc.max - 5000                                     # int32 overflow
    return a, b, c


@suite("gemm")
def gemm_suite():
    cases = []
    M, N, K = 6, 3, 40
    # the 'blas' order is the machine's BLAS: not reproducible, so not golden
    models = [m for m in ACCUMULATION_MODELS.values() if m.order is not Order.BLAS] + \
        _custom_models()
    models.append(AccumulationModel("bf16-fp16acc-stochastic", "bfloat16", "float16",
                                    acc_rounding="stochastic"))
    for m in models:
        rng = np.random.default_rng(_seed("gemm", m.name))
        params = {"model": model_params(m)}
        if m.stochastic:
            params["seed"] = _seed("gemm-seed", m.name) % (1 << 32)
        if m.integer:
            a, b, c = _int_inputs(m, M, K, N, rng)
            ins = {"a": int_operand(a, m.inputs.name), "b": int_operand(b, m.inputs_b.name),
                   "c": int_operand(c, m.acc.name)}
            cases.append(make(f"gemm/{m.name}", "matmul", params, ins))
            continue
        kk = 3 * m.scale_block if m.scale_block else K
        a = _rows(m.inputs.name, M, kk, rng)
        b = _rows(m.inputs_b.name, N, kk, rng, specials=False).T.copy()
        cfmt = m.outer_format if m.chunked else m.acc
        c = np.asarray(rng.standard_normal((M, N)), np.float64)
        ins = {"a": into(a, m.inputs.name), "b": into(b, m.inputs_b.name),
               "c": into(c, cfmt.name)}
        op = "matmul"
        if m.scale_block:
            sf = m.scale_format
            if sf.name == "float8_e8m0fnu":
                sa = np.exp2(rng.integers(-10, 11, (M, 3))).astype(np.float64)
                sb = np.exp2(rng.integers(-10, 11, (3, N))).astype(np.float64)
            else:
                sa = np.abs(rng.standard_normal((M, 3))) * 4
                sb = np.abs(rng.standard_normal((3, N))) * 4
            ins.update(scale_a=into(sa, sf.name), scale_b=into(sb, sf.name))
            op = "matmul_scaled"
        cases.append(make(f"gemm/{m.name}", op, params, ins, nan_bits=False,
                          notes="NaN outputs compared by NaN-ness (payload rules are the "
                                "operations' x86 SSE ones)"))
    return cases


@suite("tensorcore")
def tensorcore_suite():
    cases = []
    M, N = 6, 3
    for name, m in TENSOR_CORES.items():
        fin = "float32" if m.inputs == "tfloat32" else m.inputs
        for depth in (1, 2):
            if m.scaled and depth == 2:
                continue
            K = m.k * depth
            rng = np.random.default_rng(_seed("tensorcore", name, depth))
            a = _rows(fin, M, K, rng)
            b = _rows(fin, N, K, rng, specials=False).T.copy()
            c = rng.standard_normal((M, N)) * 4
            ins = {"a": into(a, fin), "b": into(b, fin), "c": into(c, m.c_format)}
            op = "tc_matmul"
            if m.scaled:
                nb = m.k // m.block
                if m.scale_fmt == "float8_e8m0fnu":
                    sa = np.exp2(rng.integers(-8, 9, (M, nb))).astype(np.float64)
                    sb = np.exp2(rng.integers(-8, 9, (nb, N))).astype(np.float64)
                else:
                    lo = 2.0 ** _EMIN["float8_e4m3fn"]
                    sa = np.abs(rng.standard_normal((M, nb))) * 8 + lo
                    sb = np.abs(rng.standard_normal((nb, N))) * 8 + lo
                ins.update(scale_a=into(sa, m.scale_fmt), scale_b=into(sb, m.scale_fmt))
                op = "tc_matmul_scaled"
                if m.scaled == "mxf4nvf4":              # MMA-Sim raises on an infinite C
                    ins["c"] = into(c, "float32")
            cases.append(make(f"tensorcore/{name}/k{K}", op, {"model": tc_params(m)}, ins))
    return cases
