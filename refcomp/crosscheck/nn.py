"""Cross-check of the NN engine's fp32 policy against torch 2.13 CPU float32, layer by layer.

Every layer of :mod:`refcomp.nn` -- linear, conv2d, batch norm (train / eval, running
statistics), layer norm, relu, leaky relu, GELU (erf / tanh), sigmoid, tanh, softmax,
log-softmax, max / average / adaptive-average pooling, flatten, dropout, residual add,
cross-entropy, MSE, KL divergence -- forward AND backward, in several configurations, on
seeded float32 inputs (:mod:`refcomp.crosscheck.nn_cases`).  For every output tensor:

``exact``     our float32 result and torch's are bit-identical;
``within``    not identical, and ``|ours - torch| <= B`` elementwise, and each side lies
              within its own bound around the exact value;
``mismatch``  anything else -- including any difference where bit-exactness is claimed
              (relu, max pooling forward and its indices, non-overlapping max-pool backward,
              flatten, add, dropout whose scale is exact in float32).

``B = (E_torch + E_ours)(1 + 2**-20)`` is DERIVED, never fitted (STYLE rule 6): by the
triangle inequality ``|ours - torch| <= |ours - exact| + |torch - exact|``.  ``E_ours``:
refcomp evaluates the layer's formula in float64 and rounds once to float32 (half an ulp
plus the float64 evaluation error), or a NumPy sgemm for matmuls.  ``E_torch``: the ATen
CPU kernel's float32 expression transcribed operation by operation into a running forward
error bound (:mod:`refcomp.crosscheck.nn_err`: ``u = 2**-24`` per operation, library
transcendentals within 2 ulps, ``gamma_{n-1}`` times the magnitudes of the terms for an
n-term sum in any order, the subnormal spacing ``2**-149`` terms, propagation with the
actual magnitudes of the intermediates so that cancellation is covered); matmuls and
convolutions use :func:`refcomp.bounds.deterministic` (model ``fp32-blas``: any order).
The one-line derivation of every layer is :data:`DERIVATIONS` and is printed in the report.

Run ``python -m refcomp.crosscheck.nn --out DIR``: writes ``nn-torch-cpu.md`` and
``nn-torch-cpu.json``; exit status 1 when a tensor mismatches.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..testing.ulp import ulp_distance
from .nn_err import SAFETY

__all__ = ["TensorCheck", "DERIVATIONS", "compare", "run", "markdown", "main"]

#: one line per layer: how E_torch and E_ours are derived (details next to the code)
DERIVATIONS = {
    "linear": "both sides float32 GEMMs of unspecified order (addmm / sgemm; bias added in "
              "the GEMM or once after): bounds.deterministic fp32-blas, "
              "((1+u)^(K+2)-1)|A||B| + underflow, for y, dx = dy W, dW = dy^T x, db = 1^T dy",
    "conv2d": "the same GEMM bound per group on im2col patches (y, dW), on the zero-dilated "
              "dy patches times the flipped weight (dx: every nonzero term of the backward-"
              "data sum is a product of it), and 1^T dy (db)",
    "batchnorm": "torch: float sums in any order (gamma_{n-1}), mean = s/n, var_sum = "
                 "sum fl((x-mean)^2), invstd = 1/sqrt(var_sum/n + eps) (double, stored "
                 "float), y = x*alpha + (b - mean*alpha); dx = (dy - sum dy/n - (x-mean) "
                 "dotp invstd^2/n) invstd w; running = m mean + (1-m) r, m = float(momentum);"
                 " ours: float64 two-pass formula, one rounding",
    "layernorm": "torch: RowwiseMoments replayed (Welford per lane in chunks of 16, cascade "
                 "merges, scalar tail, lanes merged; mean updates with their exact (1-c) "
                 "sensitivity), rstd = 1/sqrt(var + float(eps)), y = (x-mean) rstd g + b; "
                 "dx = a dy g + b x + c with b = (db mean - ds) a^3/N, c = -b mean - db a/N;"
                 " ours: float64 two-pass, one rounding",
    "relu": "bit-exact: selection (threshold_backward on the output)",
    "leaky_relu": "torch: x * float(slope) (slope rounded to float, one product rounding); "
                  "ours: x * slope in float64, one rounding",
    "gelu": "erf: torch's vectorised erf is A&S 7.1.26 (|error| <= 1.5e-7) evaluated with "
            "FMAs + Sleef expf, plus every float rounding of x*0.5*(1+erf(x/sqrt2)) and of "
            "dy*(cdf + x*pdf); tanh form: the float expression with float constants kBeta, "
            "kKappa and library tanh (<= 2 ulp); ours: float64 formula, one rounding",
    "sigmoid": "torch: 1/(1+exp(-x)) (exp <= 2 ulp, 2 roundings); backward dy*(1-y)*y on "
               "OUR y (3 roundings); ours: float64, one rounding",
    "tanh": "torch: library tanh <= 2 ulp; backward dy*(1-y*y) on OUR y (3 roundings, "
            "cancellation in 1-y*y kept absolute); ours: float64, one rounding",
    "softmax": "torch: exp(x-max) (<= 2 ulp after the rounded subtraction), sum in any order,"
               " times 1/s (last dim) or / s; backward y*(dy - sum dy*y) on OUR y; ours: "
               "float64, one rounding",
    "log_softmax": "torch: (x-max) - log(sum exp(x-max)) left to right; backward dy - "
                   "exp(y) sum dy on OUR y; ours: float64, one rounding",
    "max_pool2d": "bit-exact forward and indices (first maximum); backward bit-exact without "
                  "overlap, else k contributions added in float (gamma_{k-1} sum|dy|) vs "
                  "float64 then one rounding",
    "avg_pool2d": "torch: window sum in float (gamma_{k-1}), / divisor; backward += "
                  "dy/divisor per window (gamma_{k-1}); ours: float64, one rounding",
    "adaptive_avg_pool2d": "torch: cell sum in float, / kh / kw (two roundings; the 1x1 "
                           "mean path one); backward += dy/kh/kw; ours: float64 / (kh kw),"
                           " one rounding",
    "flatten": "bit-exact: reshape",
    "dropout": "our mask fed to torch's _dropout_impl (noise = mask / float(1-p), y = x * "
               "noise): bit-exact when 1/float(1-p) is exactly 1/(1-p) (p = 0.5, 0.75), "
               "else the rounding of the float noise plus one product rounding",
    "add": "bit-exact: one correctly rounded addition on both sides; backward identity",
    "cross_entropy": "torch: log_softmax chain, nll cascade sum of -logp_t w_t (any order) "
                     "over float weight sum, smoothing (1-eps) nll + ret (eps/C) with float "
                     "constants; backward: autograd's roundings (scalar products, divisions "
                     "by the weight sum, one add of the two logp gradients) then "
                     "_log_softmax_backward_data on torch's own logp; ours: float64, one "
                     "rounding",
    "mse": "torch: (x-t)^2, sum in any order, mean as sum*float(1/n); backward "
           "float(2/n)*(x-t)*g; ours: float64, one rounding",
    "kl_div": "torch: xlogy(t,t) - t*x or exp(t)*(t-x), sum / mean / batchmean; backward "
              "-(g/n * t) or -(g/n * exp(t)); ours: float64, one rounding",
}


@dataclass
class TensorCheck:
    layer: str
    config: str
    tensor: str
    claim: str                       # "bit-exact" or "derived bound"
    elements: int
    exact_rate: float
    max_err_over_bound: float        # max |ours - torch| / B (0 / inf for exact claims)
    max_ulp: float | None            # max ULP distance in float32 (None for indices)
    ours_over_bound: float | None    # max |ours - exact| / E_ours
    torch_over_bound: float | None   # max |torch - exact| / E_torch
    bound_over_magnitude: float | None   # max B / max |exact|: the bound is not vacuous
    status: str

    def to_json(self) -> dict:
        """The fields, with a non-finite ratio written as a string (valid JSON)."""
        return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def _float32_bits(a, what):
    a = np.asarray(a, np.float64)
    b = a.astype(np.float32)
    if not np.array_equal(b.astype(np.float64), a, equal_nan=True):
        i = int(np.argmax(b.astype(np.float64) != a))
        raise ValueError(f"{what}: element {i} = {a.ravel()[i]!r} is not a float32 value")
    return b.view(np.uint32)


def _ratio(err, bnd):
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(bnd > 0, err / np.where(bnd > 0, bnd, 1.0), np.where(err == 0, 0.0, np.inf))
    return float(np.max(r, initial=0.0))


def compare(rec) -> TensorCheck:
    """Classify one output tensor.

    Parameters
    ----------
    rec : refcomp.crosscheck.nn_cases.Record
        our and torch's values (float32 values, or integer indices) and the two derived
        bounds around the exact value (None: bit-exactness claimed)

    Returns
    -------
    TensorCheck
        ``exact`` when the float32 bit patterns agree; ``within`` when ``|ours - torch|
        <= B`` and each side is within its own bound; ``mismatch`` otherwise.
    """
    what = f"{rec.layer} [{rec.config}] {rec.tensor}"
    ours, th = np.asarray(rec.ours), np.asarray(rec.torch)
    if ours.shape != th.shape:
        raise ValueError(f"{what}: shapes differ, ours {ours.shape} vs torch {th.shape}")
    n = int(ours.size)
    claim = "bit-exact" if rec.bt is None else "derived bound"
    if ours.dtype.kind in "iu":                               # indices
        same = ours == th
        rate = float(same.mean()) if n else 1.0
        status = "exact" if same.all() else "mismatch"
        return TensorCheck(rec.layer, rec.config, rec.tensor, claim, n, rate,
                           0.0 if same.all() else float("inf"), None, None, None, None, status)
    ob, tb = _float32_bits(ours, what + " (ours)"), _float32_bits(th, what + " (torch)")
    same = ob == tb
    rate = float(same.mean()) if n else 1.0
    ulp = float(np.max(ulp_distance(ob, tb, "float32"), initial=0.0))
    o64, t64 = ob.view(np.float32).astype(np.float64), tb.view(np.float32).astype(np.float64)
    err = np.abs(o64 - t64)
    if rec.bt is None:
        ok = bool(same.all())
        return TensorCheck(rec.layer, rec.config, rec.tensor, claim, n, rate,
                           0.0 if ok else _ratio(err, np.zeros_like(err)), ulp, None, None,
                           None, "exact" if ok else "mismatch")
    v = np.broadcast_to(rec.bt.v, ours.shape)
    et = np.broadcast_to(rec.bt.e, ours.shape)
    eo = np.broadcast_to(rec.bo.e, ours.shape)
    bound = (et + eo) * SAFETY
    assert np.all(np.abs(v - np.broadcast_to(rec.bo.v, ours.shape)) <= 2.0 ** -10 * bound), \
        f"{what}: the two transcriptions compute different exact values"
    r = _ratio(err, bound)
    r_o = _ratio(np.abs(o64 - v), eo * SAFETY)
    r_t = _ratio(np.abs(t64 - v), et * SAFETY)
    mag = float(np.max(np.abs(v), initial=0.0))
    rel = float(np.max(bound, initial=0.0)) / mag if mag > 0 else float("inf")
    if same.all():
        status = "exact"
    else:
        status = "within" if max(r, r_o, r_t) <= 1.0 else "mismatch"
    return TensorCheck(rec.layer, rec.config, rec.tensor, claim, n, rate, r, ulp, r_o, r_t,
                       rel, status)


def _pin(torch):
    """Pin and record every flag that changes torch's CPU float32 numerics."""
    torch.set_float32_matmul_precision("highest")
    b = torch.backends
    b.mkldnn.matmul.fp32_precision = "ieee"
    b.mkldnn.conv.fp32_precision = "ieee"
    flush = torch.set_flush_denormal(False)
    return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "mkldnn.matmul.fp32_precision": b.mkldnn.matmul.fp32_precision,
            "mkldnn.conv.fp32_precision": b.mkldnn.conv.fp32_precision,
            "flush_denormal": False if flush else "not supported (denormals kept)",
            "mkldnn.enabled": b.mkldnn.enabled,
            "cpu_capability": b.cpu.get_cpu_capability(),
            "num_threads": torch.get_num_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}


def run(seed=0):
    """Run every case of :func:`refcomp.crosscheck.nn_cases.all_cases` against torch.

    Parameters
    ----------
    seed : int
        seed of the input generators

    Returns
    -------
    results : list of TensorCheck
    env : dict
        versions, the pinned numerics flags, the CPU capability and thread count
    """
    import torch
    from .nn_cases import all_cases
    env = {"torch": torch.__version__, "device": "cpu", "policy": "fp32",
           "python": platform.python_version(), "numpy": np.__version__,
           "machine": platform.machine(), "seed": seed}
    env.update(_pin(torch))
    lanes = 16 if str(env["cpu_capability"]).startswith("AVX512") else 8
    env["moments_lanes"] = lanes
    return [compare(r) for r in all_cases(torch, seed, lanes)], env


def _fmt(x, spec=".3g"):
    return "-" if x is None else format(x, spec)


def per_layer(results):
    """layer -> [tensors, exact, within, mismatch, max err / B, max ours / E_ours,
    max torch / E_torch] (the maxima over tensors with derived bounds)."""
    g = defaultdict(lambda: [0, 0, 0, 0, 0.0, 0.0, 0.0])
    for r in results:
        row = g[r.layer]
        row[0] += 1
        row[{"exact": 1, "within": 2, "mismatch": 3}[r.status]] += 1
        if r.claim == "derived bound":
            row[4] = max(row[4], r.max_err_over_bound)
            row[5] = max(row[5], r.ours_over_bound)
            row[6] = max(row[6], r.torch_over_bound)
    return dict(g)


def markdown(results, env) -> str:
    lines = [f"# torch {env['torch']} CPU float32 vs refcomp.nn fp32 policy, layer by layer",
             "", "Environment and pinned flags:", ""]
    lines += [f"- `{k}`: {v}" for k, v in env.items()]
    lines += ["", "Status: `exact` bit-identical; `within` |ours - torch| <= B = (E_torch + "
              "E_ours)(1 + 2^-20) and each side within its own bound of the exact value; "
              "`mismatch` otherwise (any difference where bit-exactness is claimed).", "",
              "## Derivations", ""]
    lines += [f"- **{k}**: {v}" for k, v in DERIVATIONS.items()]
    lines += ["", "## Per layer", "", "| layer | tensors | exact | within | mismatch | "
              "max err / B | max ours / E_ours | max torch / E_torch |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for layer, (n, e, w, m, r, ro, rt) in per_layer(results).items():
        lines.append(f"| {layer} | {n} | {e} | {w} | {m} | {r:.3g} | {ro:.3g} | {rt:.3g} |")
    lines += ["", "## Per tensor", "", "| layer | configuration | tensor | claim | elements | "
              "bit-exact | max err / B | max ulp | ours / E_ours | torch / E_torch | "
              "B / max abs | status |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r.layer} | {r.config} | {r.tensor} | {r.claim} | {r.elements} | "
                     f"{100 * r.exact_rate:.1f}% | {_fmt(r.max_err_over_bound)} | "
                     f"{_fmt(r.max_ulp, '.0f')} | {_fmt(r.ours_over_bound)} | "
                     f"{_fmt(r.torch_over_bound)} | {_fmt(r.bound_over_magnitude)} | "
                     f"{r.status} |")
    n = len(results)
    bad = sum(r.status == "mismatch" for r in results)
    ex = sum(r.status == "exact" for r in results)
    lines += ["", f"{n} tensors: {ex} bit-exact, {n - ex - bad} within the derived bound, "
              f"{bad} mismatched."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="torch CPU float32 vs refcomp.nn fp32, per layer")
    ap.add_argument("--out", default="crosscheck-report", help="directory of the reports")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    results, env = run(args.seed)
    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    md = markdown(results, env)
    (d / "nn-torch-cpu.md").write_text(md)
    (d / "nn-torch-cpu.json").write_text(json.dumps(
        {"environment": env, "derivations": DERIVATIONS,
         "results": [r.to_json() for r in results]}, indent=1) + "\n")
    print(md)
    return int(any(r.status == "mismatch" for r in results))


if __name__ == "__main__":
    raise SystemExit(main())
