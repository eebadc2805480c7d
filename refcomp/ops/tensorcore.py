"""Bit-accurate models of NVIDIA tensor-core matrix multiply-accumulate (NumPy specification).

One *fused step* adds ``g`` products and an accumulator in one go (Fasi, Higham, Mikaitis,
Pranesh, PeerJ CS 2021; Khattak & Mikaitis 2025; Xie et al., "MMA-Sim", arXiv:2511.10909,
whose executable models -- microsoft/MMA-Sim ``mmasim/simulator/arithmetic.py``
``fused_dot_add``/``fused_sum``/``nv_fused_dot_add`` and ``nv_ptx.py`` -- this module
reproduces bit for bit, checked against vectors it generated, tests/data/mmasim/):

1. every input's exponent is ``floor(log2 |x|)``, clamped below to its format's minimum
   normal exponent (subnormals), and **-126 for a zero of any format**; a product's
   exponent is the sum of its operands' (the product itself is exact, unnormalised);
2. ``emax`` is the largest exponent among the accumulator ``c`` and all ``g`` products,
   zeros included;
3. each term ``v`` (c and every product) is truncated toward zero to ``f`` fraction bits
   relative to ``emax``: ``trunc(v * 2**(f - emax))``, no guard or sticky bit;
4. the truncated terms are added exactly, then rounded once to the output: float32 toward
   zero (or to 13 fraction bits, "e8m13", for fp8 on Ada/Hopper), float16 to nearest even;
   gradual underflow, no flushing; a result beyond float32's range is infinite even under
   truncation; a zero result is +0;
5. NaN/inf: if the float64 sum of the exact products and c is NaN the result is the
   canonical NaN (0x7FFFFFFF / 0x7FFF), if it is infinite, that infinity.

An instruction of depth ``k`` is ``k / g`` such steps in sequence, each rounded to the
output format and used as the next step's ``c`` (Ampere/Ada "split-k"); a whole GEMM is the
sequence of its instructions along K, each instruction's D the next one's C -- so a GEMM
is ``K / g`` chained fused steps.  TF32 inputs are float32 with the low 13 bits cleared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _jit
from ..formats import catalog
from ..rounding.cast import cast

__all__ = ["TensorCoreModel", "TENSOR_CORES", "fused_step", "tc_matmul", "tc_matmul_scaled",
           "tensor_core", "tc_output_bits"]

_ZERO_EXP = -126                  # MMA-Sim: a zero's exponent, whatever its format
_EMIN = {"float16": -14, "bfloat16": -126, "float32": -126, "tfloat32": -126,
         "float8_e4m3fn": -6, "float8_e5m2": -14, "float4_e2m1fn": 0,
         "float8_e8m0fnu": -127}
_OUT = ("float32", "float16", "e8m13")


@dataclass(frozen=True)
class TensorCoreModel:
    """One tensor-core datapath: inputs, products per fused step, fraction bits, output.

    Attributes
    ----------
    name : str
    inputs : str        float16, bfloat16, tfloat32, float8_e4m3fn, float8_e5m2
    group : int         products added per fused step
    frac_bits : int     fraction bits kept relative to the largest exponent
    output : str        float32 (truncation), float16 (nearest even), e8m13 (truncation to
                        13 fraction bits, stored as float32)
    k : int             instruction depth (a multiple of `group`)
    source : str
    """

    name: str
    inputs: str
    group: int
    frac_bits: int
    output: str
    k: int
    source: str
    scaled: str = ""                  # "", "mxf8f6f4" or "mxf4nvf4" (block-scaled kinds)
    scale_fmt: str = ""               # float8_e8m0fnu or float8_e4m3fn (ue4m3)
    block: int = 0                    # elements per scale along K

    def __post_init__(self):
        if self.scaled not in ("", "mxf8f6f4", "mxf4nvf4"):
            raise ValueError(f"scaled={self.scaled!r} is not '', 'mxf8f6f4' or 'mxf4nvf4'")
        if self.inputs not in _EMIN:
            raise ValueError(f"tensor-core inputs {self.inputs!r} not modelled (known: "
                             f"{', '.join(_EMIN)})")
        if self.output not in _OUT:
            raise ValueError(f"output {self.output!r} is not one of {', '.join(_OUT)}")
        if self.group < 1 or self.k % self.group:
            raise ValueError(f"k={self.k} is not a multiple of group={self.group}")

    @property
    def c_format(self) -> str:
        return "float16" if self.output == "float16" else "float32"


def _models():
    src = "microsoft/MMA-Sim mmasim/simulator/nv_ptx.py (arch table, split-k rule)"
    rows = []
    for arch, f in (("volta", 23), ("turing", 24), ("ampere", 24), ("hopper", 25),
                    ("blackwell", 25)):
        for out in ("float32", "float16"):
            if arch == "volta":
                rows.append((f"{arch}-mma-m8n8k4-f16-{out}", "float16", 4, f, out, 4))
            elif arch == "turing":
                rows.append((f"{arch}-mma-m16n8k8-f16-{out}", "float16", 8, f, out, 8))
            elif arch == "ampere":
                for t in ("float16", "bfloat16"):
                    if t == "bfloat16" and out == "float16":
                        continue
                    rows.append((f"{arch}-mma-m16n8k16-{t}-{out}", t, 8, f, out, 16))
            else:
                for t in ("float16", "bfloat16"):
                    if t == "bfloat16" and out == "float16":
                        continue
                    name = "wgmma-m64nNk16" if arch == "hopper" else "tcgen05-k16"
                    rows.append((f"{arch}-{name}-{t}-{out}", t, 16, f, out, 16))
    rows.append(("ampere-mma-m16n8k8-tf32-float32", "tfloat32", 4, 24, "float32", 8))
    rows.append(("hopper-wgmma-m64nNk8-tf32-float32", "tfloat32", 8, 25, "float32", 8))
    rows.append(("blackwell-tcgen05-k8-tf32-float32", "tfloat32", 8, 25, "float32", 8))
    for t in ("float8_e4m3fn", "float8_e5m2"):
        rows.append((f"ada-mma-m16n8k32-{t}-float32", t, 16, 13, "e8m13", 32))
        rows.append((f"ada-mma-m16n8k32-{t}-float16", t, 16, 13, "float16", 32))
        rows.append((f"hopper-wgmma-m64nNk32-{t}-float32", t, 32, 13, "e8m13", 32))
        rows.append((f"hopper-wgmma-m64nNk32-{t}-float16", t, 32, 13, "float16", 32))
        rows.append((f"blackwell-tcgen05-k32-{t}-float32", t, 32, 25, "float32", 32))
    models = {r[0]: TensorCoreModel(*r, source=src) for r in rows}
    bsrc = "microsoft/MMA-Sim mmasim/simulator/nv_ptx.py tcgen05mma_block_scale"
    for t in ("float8_e4m3fn", "float8_e5m2"):
        name = f"blackwell-tcgen05-mxf8f6f4-k32-{t}-ue8m0"
        models[name] = TensorCoreModel(name, t, 32, 25, "float32", 32, bsrc, "mxf8f6f4",
                                       "float8_e8m0fnu", 32)
    for block, sf in ((32, "float8_e8m0fnu"), (16, "float8_e8m0fnu"), (16, "float8_e4m3fn")):
        tag = "ue8m0" if sf == "float8_e8m0fnu" else "ue4m3"
        name = f"blackwell-tcgen05-mxf4nvf4-k64-block{block}-{tag}"
        models[name] = TensorCoreModel(name, "float4_e2m1fn", 16, 35, "float32", 64, bsrc,
                                       "mxf4nvf4", sf, block)
    return models


#: the modelled instructions by name (``refcomp.ops.TENSOR_CORES``)
TENSOR_CORES = _models()


def tensor_core(name) -> TensorCoreModel:
    if isinstance(name, TensorCoreModel):
        return name
    try:
        return TENSOR_CORES[name]
    except KeyError:
        raise ValueError(f"unknown tensor-core model {name!r} (known: "
                         f"{', '.join(sorted(TENSOR_CORES))})") from None


def _exponent(x, emin):
    """MMA-Sim's exponent of exact values: floor(log2|x|) clamped to emin, -126 for 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.frexp(x)[1].astype(np.int64) - 1
    e = np.maximum(e, emin)
    return np.where(x == 0, _ZERO_EXP, e)


def _round_out(v, output):
    """Round exact float64 sums to the output (step 4 of the module docstring)."""
    if output == "float16":
        y = cast(v, "float16", "nearest_even")
    else:
        y = cast(v, "float32" if output == "float32" else "e8m13", "toward_zero")
        y = np.where(np.abs(v) >= 2.0 ** 128, np.copysign(np.inf, v), y)
    return np.where(y == 0, 0.0, y)                       # a zero result is +0


def fused_step(a, b, c, model, scale_exp=None) -> np.ndarray:
    """One fused step on a batch: a, b (..., g) input values, c (...) accumulator values
    (exact float64 values of their formats); returns the rounded outputs (float64).
    `scale_exp` (broadcastable to a): exponents of power-of-two block scales (mxf8f6f4),
    added to each product's exponent."""
    m = tensor_core(model)
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    c = np.asarray(c, np.float64)
    emin_in = _EMIN[m.inputs]
    emin_c = _EMIN[m.c_format]
    with np.errstate(invalid="ignore", over="ignore"):
        p = a * b                                         # exact (<= 2 x 11-bit significands)
        if scale_exp is not None:
            p = np.ldexp(p, np.broadcast_to(scale_exp, p.shape))
        special = np.sum(p, axis=-1) + c
    ep = _exponent(a, emin_in) + _exponent(b, emin_in)
    if scale_exp is not None:
        ep = ep + scale_exp
    emax = np.maximum(ep.max(axis=-1), _exponent(c, emin_c))
    sh = m.frac_bits - emax
    finite = np.isfinite(special)
    with np.errstate(invalid="ignore"):
        t = np.trunc(np.ldexp(np.where(finite[..., None], p, 0.0), sh[..., None])).sum(axis=-1)
        t = t + np.trunc(np.ldexp(np.where(finite, c, 0.0), sh))
    out = _round_out(np.ldexp(t, -sh), m.output)
    # NaN results: any NaN here (tc_output_bits encodes the canonical pattern)
    return np.where(np.isnan(special), np.nan, np.where(np.isinf(special), special, out))


def tc_matmul(A, B, C, model) -> np.ndarray:
    """D = A @ B + C as the tensor core computes it: K / group fused steps along K, each
    rounded to the output format and fed to the next as its accumulator.

    Parameters
    ----------
    A : (M, K) values of the input format (exact float64 or float32/float16 arrays)
    B : (K, N)
    C : (M, N) values of the accumulator format (float32, or float16 for float16 output)
    model : str or TensorCoreModel

    Returns
    -------
    (M, N) float64 array of output values (NaN results are the canonical NaN of the
    output format when encoded with :func:`tc_output_bits`).

    Notes
    -----
    The code below is the specification; with the Numba kernels on
    (:func:`refcomp._jit.enabled`) the whole chain runs in
    :func:`refcomp._jit.tc_kernels.tc_chain`, its twin, equal bit for bit
    (tests/test_tensorcore.py).
    """
    m = tensor_core(model)
    if m.scaled:
        raise ValueError(f"{m.name} is block-scaled; use tc_matmul_scaled with its scales")
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    C = np.asarray(C, np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0] or C.shape != (A.shape[0],
                                                                              B.shape[1]):
        raise ValueError(f"shapes do not chain: A {A.shape}, B {B.shape}, C {C.shape}")
    K = A.shape[1]
    if K % m.k:
        raise ValueError(f"K={K} is not a multiple of the instruction's k={m.k} ({m.name})")
    if m.inputs == "tfloat32":
        A, B = _tf32(A), _tf32(B)
    if _jit.enabled():
        from .._jit.tc_kernels import tc_chain
        d = tc_chain(A, B, C, m.group, m.frac_bits, _limits(m.inputs), _limits(m.c_format),
                     m.output)
        if d is not None:
            return d
    _check_values(A, m.inputs, "A")
    _check_values(B, m.inputs, "B")
    _check_values(C, m.c_format, "C")
    assert not _jit.enabled(), "tc_chain rejected values that the check accepts"
    d = C
    g = m.group
    for k0 in range(0, K, g):
        a = A[:, None, k0:k0 + g]                         # (M, 1, g)
        b = B[k0:k0 + g, :].T[None, :, :]                 # (1, N, g)
        d = fused_step(a, b, d, m)
    return d


def tc_matmul_scaled(A, B, C, scale_A, scale_B, model) -> np.ndarray:
    """D = (A * scale_A) @ (B * scale_B) + C on a block-scaled tensor core instruction
    (K = the instruction's k; chain instructions for a longer K, each D the next C).

    ``mxf8f6f4`` (k = 32, one E8M0 scale per row of A / column of B): the fused step of the
    module docstring with each product's exponent raised by the two scales' exponents.
    ``mxf4nvf4`` (k = 64, E2M1 elements): groups of 16 products are summed exactly (as
    float32 in MMA-Sim, exact for E2M1), each group times its two block scales is one term
    whose exponent is the sum of the scales' exponents only (ue4m3 scales by magnitude);
    the terms and C are fused with 35 fraction bits and truncated to float32.  A NaN scale
    or C gives the canonical NaN (MMA-Sim ``nv_fused_dot_add_with_block_scale``); an
    infinite C is not modelled there (it raises) and is a ValueError here.

    Shapes: A (M, k), B (k, N), C (M, N), scale_A (M, k / block), scale_B (k / block, N),
    all as exact values (scales decoded from their formats).  With the Numba kernels on,
    ``mxf8f6f4`` runs in :func:`refcomp._jit.tc_kernels.tc_chain` (the scales' exponents
    as per-row / per-column offsets), equal bit for bit to the code below.
    """
    m = tensor_core(model)
    if not m.scaled:
        raise ValueError(f"{m.name} is not a block-scaled instruction; use tc_matmul")
    A, B, C = (np.asarray(v, np.float64) for v in (A, B, C))
    sA, sB = np.asarray(scale_A, np.float64), np.asarray(scale_B, np.float64)
    M, K = A.shape
    N = B.shape[1]
    nb = m.k // m.block
    if (K != m.k or B.shape[0] != K or C.shape != (M, N) or sA.shape != (M, nb)
            or sB.shape != (nb, N)):
        raise ValueError(f"{m.name} takes A (M, {m.k}), B ({m.k}, N), C (M, N), scales "
                         f"(M, {nb}) and ({nb}, N); got A {A.shape}, B {B.shape}, C "
                         f"{C.shape}, scale_A {sA.shape}, scale_B {sB.shape}")
    _check_values(A, m.inputs, "A")
    _check_values(B, m.inputs, "B")
    _check_values(C, "float32", "C")
    for v, what in ((sA, "scale_A"), (sB, "scale_B")):
        _check_values(v, m.scale_fmt, what)
    es = _EMIN[m.scale_fmt] if m.scale_fmt == "float8_e8m0fnu" else _EMIN["float8_e4m3fn"]
    if m.scaled == "mxf8f6f4":
        nan_a, nan_b = np.isnan(sA[:, 0]), np.isnan(sB[0, :])
        ea = np.where(nan_a, 0, _exponent(sA[:, 0], es))  # (M,)
        eb = np.where(nan_b, 0, _exponent(sB[0, :], es))  # (N,)
        if _jit.enabled():
            from .._jit.tc_kernels import tc_chain
            d = tc_chain(A, B, C, m.group, m.frac_bits, _limits(m.inputs),
                         _limits("float32"), m.output, ea, eb)
            assert d is not None, "tc_chain rejected values that the check accepts"
        else:
            d = fused_step(A[:, None, :], B.T[None, :, :], C, m,
                           ea[:, None, None] + eb[None, :, None])
        return np.where(nan_a[:, None] | nan_b[None, :], np.nan, d)
    if np.isinf(C).any():
        raise ValueError("an infinite C on an mxf4nvf4 instruction is not modelled "
                         "(MMA-Sim raises)")
    sA, sB = np.abs(sA), np.abs(sB)
    groups = m.k // 16
    gs = (A.reshape(M, 1, groups, 16) * B.T.reshape(1, N, groups, 16)).sum(axis=-1)
    idx = np.arange(groups) * 16 // m.block
    sa = sA[:, idx][:, None, :]                           # (M, 1, groups)
    sb = sB[idx, :].T[None, :, :]                         # (1, N, groups)
    terms = gs * sa * sb                                  # exact: <= 12 + 4 + 4 bits
    e = _exponent(sa, es) + _exponent(sb, es)
    emax = np.maximum(e.max(axis=-1), _exponent(C, -126))
    sh = m.frac_bits - emax
    with np.errstate(invalid="ignore"):
        tot = np.trunc(np.ldexp(np.nan_to_num(terms), sh[..., None])).sum(axis=-1)
        tot = tot + np.trunc(np.ldexp(np.nan_to_num(C), sh))
    out = _round_out(np.ldexp(tot, -sh), "float32")
    nan = np.isnan(C) | np.isnan(sa).any(axis=-1) | np.isnan(sb).any(axis=-1)
    return np.where(nan, np.nan, out)


def _tf32(x):
    """float32 values with the low 13 significand bits cleared (the instruction's input)."""
    u = x.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)
    return u.view(np.float32).astype(np.float64)


def _limits(fmt):
    """(precision, emin, largest finite value) of a format, for the kernels' own check."""
    f = catalog.get("float32" if fmt == "tfloat32" else fmt)
    return f.precision, f.emin, f.max_finite


def _check_values(x, fmt, what):
    name = "float32" if fmt == "tfloat32" else fmt
    f = catalog.get(name)
    fin = np.isfinite(x)
    y = np.where(fin, x, 1.0)                              # 1 is in every format (E8M0 too)
    ok = np.asarray(cast(y, f)) == y
    if not ok.all():
        i = tuple(int(j) for j in np.unravel_index(int(np.flatnonzero(~ok)[0]), x.shape))
        raise ValueError(f"{what}{list(i)} = {float(x[i])!r} is not a {name} value")


def tc_output_bits(d, model) -> np.ndarray:
    """Bit patterns of tensor-core outputs, NaN as the canonical 0x7FFFFFFF / 0x7FFF."""
    m = tensor_core(model)
    if m.output == "float16":
        bits = np.asarray(d, np.float16).view(np.uint16)
        return np.where(np.isnan(d), np.uint16(0x7FFF), bits)
    bits = np.asarray(d, np.float32).view(np.uint32)
    return np.where(np.isnan(d), np.uint32(0x7FFFFFFF), bits)

