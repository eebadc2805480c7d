"""Golden suite ``distill``: the distillation losses of :mod:`refcomp.distill` (issue 8),
value and gradients, cross-checked against torch 2.13's autograd by ``--backend
torch-cpu`` within derived bounds.

distill  KD loss (Hinton et al.) and its gradient wrt the student logits for several
         temperatures, weights alpha (0 and 1 included), KL reductions (batchmean, mean,
         sum) and log_target; the FitNets hint loss through a Linear regressor (loss, the
         regressor's weight and bias gradients, the student features' gradient; mean and
         sum); the RKD distance loss and its gradient (several beta, mean and sum)

All under the ``fp32-sequential`` policy (float32 activations and gradients, the hint
regressor's matmuls as sequential FMA chains: bit-reproducible).  refcomp evaluates each
loss in float64 and rounds once; torch evaluates in float32 in its own order, so every case
carries the ``derived`` tolerance on all its outputs: ``|torch - golden| <= (E_torch +
E_ours)(1 + 2**-20)`` element by element (:mod:`refcomp.crosscheck.distill_bounds`).

>>> from refcomp.golden import build
>>> cases = build("distill")
>>> len(cases) > 20, sorted({c.op for c in cases})
(True, ['distill.hint', 'distill.kd', 'distill.rkd'])
"""

from __future__ import annotations

import numpy as np

from ..nn import POLICIES
from .compute_distill import OUTPUTS
from .compute_nn import policy_params
from .schema import Operand, Tolerance
from .suites import _seed, make, suite

__all__ = ["distill_suite", "POLICY", "DERIVED_SOURCE"]

#: the policy of every case
POLICY = "fp32-sequential"
DERIVED_SOURCE = (
    "torch 2.13 CPU autograd of the loss as refcomp.crosscheck.torch_distill evaluates it "
    "(float32, sums and GEMMs in any order, exp / log within 2 ulps), transcribed op by op "
    "into running error bounds E_torch (refcomp.crosscheck.distill_bounds, Higham 2002 "
    "standard model and eq. (4.4)); refcomp's float64 evaluation and its one rounding "
    "likewise E_ours; |torch - golden| <= (E_torch + E_ours)(1 + 2**-20) per element")
F32 = np.float32


def f32(x) -> Operand:
    return Operand("float32", np.ascontiguousarray(np.asarray(x, F32)).view(np.uint32).copy())


def _tol(op):
    return Tolerance("derived", DERIVED_SOURCE, outputs=OUTPUTS[op])


def _pp():
    return policy_params(POLICIES[POLICY])


KD = [  # N, C, T, alpha, reduction, log_target
    (6, 5, 4.0, 0.9, "batchmean", False), (6, 5, 1.0, 0.5, "batchmean", False),
    (6, 5, 3.0, 0.7, "mean", False), (6, 5, 2.0, 0.25, "sum", False),
    (6, 5, 4.0, 1.0, "batchmean", False), (6, 5, 2.0, 0.0, "mean", False),
    (6, 5, 3.0, 0.6, "batchmean", True), (6, 5, 2.0, 0.9, "sum", True),
    (16, 10, 2.5, 0.9, "batchmean", False), (16, 10, 0.5, 0.5, "batchmean", True),
    (4, 100, 2.5, 0.75, "batchmean", False), (4, 100, 1.5, 0.3, "mean", True),
    (1, 3, 5.0, 1.0, "sum", False), (32, 7, 5.0, 0.95, "batchmean", False),
]

HINT = [(6, 7, 5, "mean"), (6, 7, 5, "sum"), (16, 32, 24, "mean"), (3, 1, 4, "mean"),
        (12, 20, 8, "sum")]

RKD = [(6, 4, 7, 1.0, "mean"), (6, 4, 7, 0.25, "mean"), (8, 16, 32, 1.0, "mean"),
       (2, 3, 3, 1.0, "mean"), (12, 8, 4, 2.0, "sum"), (10, 5, 5, 0.5, "sum")]


def _kd_cases():
    cases = []
    for i, (N, C, T, a, red, lt) in enumerate(KD):
        r = np.random.default_rng(_seed("distill", "kd", i))
        s = (2.0 * r.standard_normal((N, C))).astype(F32)
        t = (2.0 * r.standard_normal((N, C))).astype(F32)
        y = r.integers(0, C, N)
        p = {"policy": _pp(), "temperature": T, "alpha": a, "reduction": red,
             "log_target": lt}
        cases.append(make(f"distill/kd/{N}x{C}/T={T}/alpha={a}/{red}"
                          + ("/log_target" if lt else ""), "distill.kd", p,
                          {"s": f32(s), "t": f32(t),
                           "target": Operand("int64", y.astype(np.int64).view(np.uint64))},
                          tolerance=_tol("distill.kd")))
    return cases


def _hint_cases():
    cases = []
    for i, (N, Ds, Dt, red) in enumerate(HINT):
        r = np.random.default_rng(_seed("distill", "hint", i))
        bound = 1.0 / np.sqrt(Ds)                 # torch's Linear init range
        w = r.uniform(-bound, bound, (Dt, Ds)).astype(F32)
        b = r.uniform(-bound, bound, Dt).astype(F32)
        fs = r.standard_normal((N, Ds)).astype(F32)
        ft = r.standard_normal((N, Dt)).astype(F32)
        cases.append(make(f"distill/hint/linear/{N}x{Ds}->{Dt}/{red}", "distill.hint",
                          {"policy": _pp(), "reduction": red},
                          {"fs": f32(fs), "ft": f32(ft), "w": f32(w), "b": f32(b)},
                          tolerance=_tol("distill.hint")))
    return cases


def _rkd_cases():
    cases = []
    for i, (N, Ds, Dt, beta, red) in enumerate(RKD):
        r = np.random.default_rng(_seed("distill", "rkd", i))
        es = r.standard_normal((N, Ds)).astype(F32)
        et = (3.0 * r.standard_normal((N, Dt))).astype(F32)
        cases.append(make(f"distill/rkd/{N}x{Ds}_vs_{Dt}/beta={beta}/{red}", "distill.rkd",
                          {"policy": _pp(), "beta": beta, "eps": 1e-12, "reduction": red},
                          {"es": f32(es), "et": f32(et)}, tolerance=_tol("distill.rkd")))
    return cases


@suite("distill")
def distill_suite():
    """Distillation losses and gradients (issue 8): see the module docstring."""
    return _kd_cases() + _hint_cases() + _rkd_cases()
