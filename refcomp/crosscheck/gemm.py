"""Cross-check of torch matmul / conv2d against refcomp's accumulation and tensor-core models.

For every case the same inputs (values of the input format) go through torch and through
the matching refcomp model; each output element is then

``exact``     bit-identical to the model's result;
``within``    not identical, but ``|torch - exact| <= bound``, the model's derived
              deterministic bound (:func:`refcomp.bounds.deterministic`);
``mismatch``  outside the bound.

A BLAS does not promise an order of summation, so torch CPU is not expected to be
bit-exact with the sequential model; the deterministic bound ``gamma_n |A||B|`` (plus
underflow terms) holds for any order with the same accumulator, and that is the claim
checked.  The exact result is the float64 GEMM of the (exact) products, whose own error is
at most ``gamma_K(2**-53) |A||B|`` and is added to the bound.  Every row also reports the
largest observed error as a fraction of the bound (how tight the bound is) and the median
ratio of torch.testing.assert_close's default allowance (``atol + rtol |expected|``) to the
bound (how much tighter than assert_close the derived bound is).

Every numerics-changing torch flag is pinned before the run and recorded in the report.
On CUDA the suite also runs tensor-core paths (fp16/bf16/tf32 GEMMs against the Hopper
models, fp8 ``torch._scaled_mm`` with and without fast accumulation); it runs only where a
GPU is present (``python -m refcomp.crosscheck.gemm --device cuda``).
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..rounding.cast import cast

__all__ = ["GemmResult", "run", "cpu_cases", "markdown", "main"]

#: torch.testing.assert_close defaults (rtol, atol) per dtype (torch/testing/_comparison.py)
ASSERT_CLOSE = {"float32": (1.3e-6, 1e-5), "bfloat16": (1.6e-2, 1e-5),
                "float16": (1e-3, 1e-5)}
#: the refcomp model of torch 2.13 on the CPU, per input dtype
CPU_MODELS = {"float32": "fp32-sequential-fma", "bfloat16": "bf16-fp32acc",
              "float16": "fp16-fp32acc"}


@dataclass
class GemmResult:
    op: str
    dtype: str
    case: str
    shape: str
    model: str
    status: str
    elements: int
    exact_rate: float
    max_err_over_bound: float
    assert_close_over_bound: float

    def to_json(self) -> dict:
        return asdict(self)


def _inputs(kind, shape, fmt, rng):
    """Values of `fmt` for an adversarial kind: random, same-sign (long positive sums),
    cancellation (alternating signs, large terms, small result), spread (exponents
    -20..20; -6..6 for float16, whose sums would otherwise overflow)."""
    half = fmt == "float16"
    x = rng.standard_normal(shape)
    if kind == "same-sign":
        x = np.abs(x) + 0.5
    elif kind == "cancellation":
        big = 8.0 if half else 100.0
        x = x * 0.01 + np.where(np.indices(shape)[-1] % 2 == 0, big, -big)
    elif kind == "spread":
        e = 6 if half else 20
        x = x * np.exp2(rng.integers(-e, e + 1, shape))
    return np.asarray(cast(x, fmt), np.float64)


def cpu_cases(quick=False):
    """(op, kind, shape) of the CPU suite; shape (M, K, N) for matmul, (N, C, H, W, C_out,
    kh, kw) for conv2d."""
    mm = [(8, 64, 8), (33, 1000, 17)] if quick else [(8, 64, 8), (64, 256, 32),
                                                       (33, 1000, 17), (4, 4096, 4)]
    cv = [(2, 8, 9, 9, 6, 3, 3)] if quick else [(2, 8, 9, 9, 6, 3, 3), (1, 32, 12, 12, 8, 5, 5)]
    kinds = ["random", "same-sign", "cancellation", "spread"]
    return [("matmul", k, s) for s in mm for k in kinds] + \
        [("conv2d", k, s) for s in cv for k in kinds]


def _exact(A, B):
    """float64 GEMM of exact products, and its error bound gamma_K(2**-53) |A||B|."""
    K = A.shape[-1]
    u = 2.0 ** -53
    g = K * u / (1 - K * u)
    return A @ B, g * (np.abs(A) @ np.abs(B)) * (1 + 4 * u) + K * 2.0 ** -1074


def _pin(torch):
    """Pin and record every flag that changes torch's matmul numerics."""
    flags = {}
    torch.set_float32_matmul_precision("highest")
    flags["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    b = torch.backends
    if hasattr(b, "cuda") and hasattr(b.cuda, "matmul"):
        b.cuda.matmul.allow_tf32 = False
        b.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        b.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        for k in ("allow_tf32", "allow_fp16_reduced_precision_reduction",
                  "allow_bf16_reduced_precision_reduction"):
            flags[f"cuda.matmul.{k}"] = getattr(b.cuda.matmul, k)
    b.cudnn.allow_tf32 = False
    b.cudnn.deterministic = True
    flags["cudnn.allow_tf32"] = b.cudnn.allow_tf32
    flags["cudnn.deterministic"] = b.cudnn.deterministic
    flags["mkldnn.enabled"] = b.mkldnn.enabled
    flags["cpu_capability"] = b.cpu.get_cpu_capability()
    flags["num_threads"] = torch.get_num_threads()
    flags["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    return flags


def _compare(got, model_out, exact, slack, bound, dtype):
    gb = got.view(np.uint64)
    mb = model_out.view(np.uint64)
    same = gb == mb
    bnd = bound + slack
    err = np.abs(got - exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bnd > 0, err / bnd, np.where(err == 0, 0.0, np.inf))
    ok = np.isfinite(got) & (err <= bnd)
    rtol, atol = ASSERT_CLOSE[dtype]
    allowance = atol + rtol * np.abs(exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        ac = np.median(allowance / np.maximum(bnd, 1e-300))
    status = "exact" if same.all() else ("within" if (ok | same).all() else "mismatch")
    return status, float(same.mean()), float(np.max(ratio, initial=0.0)), float(ac)


def run(device="cpu", quick=False, seed=0):
    """Run the suite on torch (`device` "cpu" or "cuda"); returns (results, environment)."""
    import torch
    from .. import bounds
    from ..ops import conv2d, matmul
    from ..ops.accum import _model
    env = {"torch": torch.__version__, "device": device, "python": platform.python_version(),
           "machine": platform.machine(), "processor": platform.processor()}
    env.update(_pin(torch))
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["driver"] = _driver()
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    rng = np.random.default_rng(seed)
    out = []
    for dtype, mname in CPU_MODELS.items():
        model = _model(mname)
        for op, kind, shape in cpu_cases(quick):
            if op == "matmul":
                M, K, N = shape
                A = _inputs(kind, (M, K), dtype, rng)
                B = _inputs(kind, (K, N), dtype, rng)
                ta = torch.from_numpy(A).to(tdt[dtype]).to(device)
                tb = torch.from_numpy(B).to(tdt[dtype]).to(device)
                got = (ta @ tb).to("cpu").double().numpy()
                mine = matmul(A, B, model)
                exact, slack = _exact(A, B)
                bound = bounds.deterministic(A, B, model)
            else:
                n, c, h, w, co, kh, kw = shape
                x = _inputs(kind, (n, c, h, w), dtype, rng)
                wt = _inputs(kind, (co, c, kh, kw), dtype, rng)
                tx = torch.from_numpy(x).to(tdt[dtype]).to(device)
                tw = torch.from_numpy(wt).to(tdt[dtype]).to(device)
                got = torch.nn.functional.conv2d(tx, tw).to("cpu").double().numpy()
                mine = conv2d(x, wt, model)
                from ..ops.conv import im2col
                cols, _ = im2col(x, (kh, kw))
                wm = wt.reshape(co, -1).T
                exact, slack = _exact(cols, wm)
                bound = bounds.deterministic(cols.reshape(-1, cols.shape[-1]), wm,
                                             model).reshape(exact.shape)
                to_nchw = (lambda y: y.transpose(0, 2, 1).reshape(n, co, *got.shape[2:]))
                exact, slack, bound = to_nchw(exact), to_nchw(slack), to_nchw(bound)
            status, rate, r, ac = _compare(got, mine, exact, slack, bound, dtype)
            out.append(GemmResult(op, dtype, kind, "x".join(map(str, shape)), mname, status,
                                  int(got.size), rate, r, ac))
    if device == "cuda":
        out += _cuda_tensor_cores(torch, rng, quick)
    return out, env


#: (torch dtype name, refcomp tensor-core model, output rounding) of the CUDA suite: one
#: instruction deep (K = the model's k) for the bit-exact rows, K = 4096 for the bound rows
CUDA_MODELS = [
    ("float16", "hopper-wgmma-m64nNk16-float16-float32", "float16"),
    ("bfloat16", "hopper-wgmma-m64nNk16-bfloat16-float32", "bfloat16"),
    ("tf32", "hopper-wgmma-m64nNk8-tf32-float32", "float32"),
    ("float8_e4m3fn", "hopper-wgmma-m64nNk32-float8_e4m3fn-float32", "float32"),
]


def _cuda_tensor_cores(torch, rng, quick):
    """Tensor-core paths on CUDA: fp16/bf16 matmul (reduced-precision reductions off), tf32
    (allow_tf32 on for these rows only), fp8 torch._scaled_mm with unit scales, with and
    without use_fast_accum.  Single-instruction problems are compared bit for bit with the
    Hopper model (its float32 result rounded to the output dtype to nearest even, as
    cuBLAS's epilogue does); K = 4096 problems against the model's derived bound."""
    from .. import bounds
    from ..ops import tc_matmul
    from ..ops.tensorcore import tensor_core
    out = []
    for dtype, name, out_fmt in CUDA_MODELS:
        model = tensor_core(name)
        fast_modes = (False, True) if dtype.startswith("float8") else (None,)
        for K in ((model.k,) if quick else (model.k, 4096)):
            for fast in fast_modes:
                M, N = 64, 32
                fin = "float32" if dtype == "tf32" else dtype
                A = _inputs("random", (M, K), fin, rng)
                B = _inputs("random", (K, N), fin, rng)
                if dtype == "tf32":
                    torch.backends.cuda.matmul.allow_tf32 = True
                try:
                    got = _cuda_gemm(torch, A, B, dtype, fast)
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = False
                mine = tc_matmul(A, B, np.zeros((M, N)), model)
                if out_fmt != "float32":
                    mine = np.asarray(cast(mine, out_fmt), np.float64)
                exact, slack = _exact(A, B)
                bound = bounds.deterministic(A, B, model)
                if out_fmt != "float32":                  # the final rounding to fp16/bf16
                    from ..formats import catalog
                    f = catalog.get(out_fmt)
                    bound = bound + (np.abs(exact) + bound) * f.unit_roundoff + f.min_subnormal
                status, rate, r, ac = _compare(got, mine, exact, slack, bound,
                                               "float32" if fin.startswith("float8") or
                                               dtype == "tf32" else fin)
                tag = "" if fast is None else (" fast_accum" if fast else " no fast_accum")
                out.append(GemmResult("matmul" if fast is None else "_scaled_mm",
                                      dtype + tag, "random", f"{M}x{K}x{N}", name, status,
                                      int(got.size), rate, r, ac))
    return out


def _cuda_gemm(torch, A, B, dtype, fast):
    dev = "cuda"
    if dtype.startswith("float8"):
        ta = torch.from_numpy(A).float().to(dev).to(torch.float8_e4m3fn)
        tb = torch.from_numpy(B).float().to(dev).to(torch.float8_e4m3fn)
        tb = tb.t().contiguous().t()                      # column-major B, as cuBLASLt wants
        one = torch.ones((), device=dev)
        y = torch._scaled_mm(ta, tb, scale_a=one, scale_b=one, out_dtype=torch.float32,
                             use_fast_accum=bool(fast))
    else:
        tdt = {"float16": torch.float16, "bfloat16": torch.bfloat16, "tf32": torch.float32}
        y = torch.from_numpy(A).to(dev).to(tdt[dtype]) @ \
            torch.from_numpy(B).to(dev).to(tdt[dtype])
    torch.cuda.synchronize()
    return y.to("cpu").double().numpy()


def _driver():
    import subprocess
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def markdown(results, env) -> str:
    lines = [f"# torch {env['torch']} {env['device']} GEMM / conv2d cross-check", "",
             "Environment and pinned flags:", ""]
    lines += [f"- `{k}`: {v}" for k, v in env.items()]
    lines += ["", "| op | dtype | inputs | shape | model | status | bit-exact | "
              "max err / bound | assert_close / bound (median) |",
              "|---|---|---|---|---|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.op} | {r.dtype} | {r.case} | {r.shape} | {r.model} | {r.status} "
                     f"| {100 * r.exact_rate:.1f}% | {r.max_err_over_bound:.3g} | "
                     f"{r.assert_close_over_bound:.3g} |")
    n = len(results)
    bad = sum(r.status == "mismatch" for r in results)
    lines += ["", f"{n} cases, {n - bad} within the derived bound, {bad} outside."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="torch matmul/conv2d vs refcomp models")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="crosscheck-report", help="directory of the reports")
    args = ap.parse_args(argv)
    results, env = run(args.device, args.quick)
    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    stem = f"gemm-torch-{args.device}"
    (d / f"{stem}.md").write_text(markdown(results, env))
    (d / f"{stem}.json").write_text(json.dumps({"environment": env, "results": [
        r.to_json() for r in results]}, indent=1) + "\n")
    print(markdown(results, env))
    return int(any(r.status == "mismatch" for r in results))


if __name__ == "__main__":
    raise SystemExit(main())
