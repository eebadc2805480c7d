"""Benchmark: refcomp's tensor-core models against Microsoft's MMA-Sim and NumPy's matmul.

``python scripts/bench_tensorcore.py --mmasim PATH`` (PATH: an MMA-Sim checkout, not part
of refcomp).  One thread.  Writes ``bench-results/bench_tensorcore.md``.

1. Per instruction: for each model, the same random instruction inputs go through
   MMA-Sim's model (one instruction: it is scalar Python) and through
   ``refcomp.ops.tc_matmul`` (as one batched GEMM of many instructions stacked along M),
   with the Numba kernels (the default) and with the NumPy specification
   (``use_jit(False)``); outputs are checked bit-equal on the shared instruction, and
   throughput is compared per output element.  Target (issue 5): refcomp >= 1000x MMA-Sim.
2. A 512 x 512 x 512 GEMM on the H100 bf16 model (32 chained fused steps per output)
   against NumPy's float32 matmul ``A32 @ B32`` of the same shapes, in the same run.
   Target (issue 5): at most 20x NumPy's time.  The NumPy specification's time is shown
   for reference (one run) and its output checked bit-equal to the kernel's.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from benchlib import ROOT, best  # noqa: E402
from refcomp._jit import use_jit  # noqa: E402
from refcomp.ops.tensorcore import TENSOR_CORES, tc_matmul, tc_output_bits  # noqa: E402

MODELS = ["hopper-wgmma-m64nNk16-bfloat16-float32", "hopper-wgmma-m64nNk16-float16-float16",
          "ampere-mma-m16n8k16-float16-float32",
          "hopper-wgmma-m64nNk32-float8_e4m3fn-float32"]
GEMM_MODEL = "hopper-wgmma-m64nNk16-bfloat16-float32"


def per_instruction(args, torch, nv_ptx, call_for):
    tdt = {"float16": torch.float16, "bfloat16": torch.bfloat16,
           "float8_e4m3fn": torch.float8_e4m3fn}
    lines = ["| model | MMA-Sim us/output | refcomp us/output | ratio | target | "
             "NumPy spec. us/output | NumPy spec. ratio |",
             "|---|---:|---:|---:|---|---:|---:|"]
    missed = 0
    for name in MODELS:
        model = TENSOR_CORES[name]
        cls, arch, qual, m, n = call_for(name, model)
        obj = getattr(nv_ptx, cls)(arch, qual)
        rng = np.random.default_rng(0)
        A = torch.from_numpy(rng.standard_normal((args.rows, model.k)).astype(np.float32)
                             ).to(tdt[model.inputs])
        B = torch.from_numpy(rng.standard_normal((model.k, n)).astype(np.float32)
                             ).to(tdt[model.inputs])
        C = torch.from_numpy(rng.standard_normal((args.rows, n)).astype(np.float32)
                             ).to(torch.float16 if model.output == "float16" else torch.float32)
        D = None
        t_sim = np.inf
        for _ in range(args.sim_repeat):
            t = time.perf_counter()
            D = obj(A[:m], B, C[:m])
            t_sim = min(t_sim, (time.perf_counter() - t) / (m * n))
        a = A.float().numpy().astype(np.float64)
        b = B.float().numpy().astype(np.float64)
        c = C.float().numpy().astype(np.float64)
        u = {2: torch.int16, 4: torch.int32}[D.element_size()]
        want = D.view(u).numpy()
        times = {}
        for jit in (True, False):
            with use_jit(jit):
                ours = tc_output_bits(tc_matmul(a[:m], b, c[:m], model), model)
                assert (ours == want.view(ours.dtype)).all(), \
                    f"{name} (jit={jit}): outputs differ from MMA-Sim"
                times[jit] = best(lambda: tc_matmul(a, b, c, model), 3 if jit else 1)
                times[jit] /= args.rows * n
        r = t_sim / times[True]
        missed += r < 1000
        lines.append(f"| {name} | {t_sim * 1e6:.1f} | {times[True] * 1e6:.4f} | {r:,.0f}x | "
                     f"1000x {'yes' if r >= 1000 else 'NO'} | {times[False] * 1e6:.3f} | "
                     f"{t_sim / times[False]:,.0f}x |")
    return lines, missed


def gemm_512(args):
    n = args.gemm
    model = TENSOR_CORES[GEMM_MODEL]
    rng = np.random.default_rng(1)
    with use_jit(True):
        from refcomp import cast
        A = np.asarray(cast(rng.standard_normal((n, n)), "bfloat16"), np.float64)
        B = np.asarray(cast(rng.standard_normal((n, n)), "bfloat16"), np.float64)
        C = np.asarray(cast(rng.standard_normal((n, n)), "float32"), np.float64)
    A32, B32 = A.astype(np.float32), B.astype(np.float32)
    t_np = best(lambda: A32 @ B32, 20)
    with use_jit(True):
        t_jit = best(lambda: tc_matmul(A, B, C, model), args.gemm_repeat)
        d_jit = tc_matmul(A, B, C, model)
    with use_jit(False):
        t = time.perf_counter()
        d_np = tc_matmul(A, B, C, model)
        t_spec = time.perf_counter() - t
    assert (tc_output_bits(d_jit, model) == tc_output_bits(d_np, model)).all(), \
        "kernel and NumPy specification differ on the GEMM"
    r = t_jit / t_np
    lines = [f"| {n}^3 GEMM | time (ms) | / NumPy float32 matmul | target |",
             "|---|---:|---:|---|",
             f"| NumPy float32 matmul `A32 @ B32` | {t_np * 1e3:.2f} | 1x | |",
             f"| refcomp {GEMM_MODEL} (Numba) | {t_jit * 1e3:.1f} | {r:.1f}x | "
             f"<= 20x {'yes' if r <= 20 else 'NO'} |",
             f"| refcomp {GEMM_MODEL} (NumPy specification, one run) | {t_spec * 1e3:,.0f} | "
             f"{t_spec / t_np:,.0f}x | |"]
    return lines, int(r > 20)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mmasim", required=True)
    ap.add_argument("--rows", type=int, default=4096, help="M of refcomp's batched run")
    ap.add_argument("--sim-repeat", type=int, default=2, help="MMA-Sim runs (best taken)")
    ap.add_argument("--gemm", type=int, default=512, help="M = N = K of the GEMM")
    ap.add_argument("--gemm-repeat", type=int, default=7)
    args = ap.parse_args(argv)
    sys.path.insert(0, args.mmasim)
    import torch
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mmasim.simulator import nv_ptx
    sys.path.insert(0, str(ROOT / "scripts"))
    from gen_mmasim_vectors import call_for
    inst, missed = per_instruction(args, torch, nv_ptx, call_for)
    gemm, missed_gemm = gemm_512(args)
    md = (f"Measured {time.strftime('%Y-%m-%d')}, one thread, {platform.machine()}, Python "
          f"{platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
          f"torch {torch.__version__}.\n\n"
          f"Per instruction: MMA-Sim on one instruction per model (best of "
          f"{args.sim_repeat}), refcomp on {args.rows} rows (Numba kernels: best of 3; "
          f"NumPy specification: one run after a warm-up); outputs bit-equal to MMA-Sim's "
          f"on the shared instruction.\n\n" + "\n".join(inst) + "\n\n"
          f"GEMM: bfloat16 A, B and float32 C, normal random; best of 20 (NumPy) and "
          f"{args.gemm_repeat} (refcomp) after a warm-up; the kernel's and the NumPy "
          f"specification's outputs bit-equal.\n\n" + "\n".join(gemm) + "\n")
    print(md)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench_tensorcore.md").write_text(md)
    return 1 if missed or missed_gemm else 0


if __name__ == "__main__":
    sys.exit(main())
