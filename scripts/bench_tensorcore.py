"""Benchmark: refcomp's tensor-core models against Microsoft's MMA-Sim, in one run.

``python scripts/bench_tensorcore.py --mmasim PATH`` (PATH: an MMA-Sim checkout, not part
of refcomp).  For each model, the same random instruction inputs go through MMA-Sim's model
(a few instructions: it is scalar Python) and through ``refcomp.ops.tc_matmul`` (as one
batched GEMM of many instructions stacked along M); outputs are checked bit-equal on the
shared instructions, and throughput is compared per output element.  Target (issue 5):
refcomp >= 1000x MMA-Sim.  One thread.  Writes ``bench-results/bench_tensorcore.md``.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (first: one thread, refcomp importable)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import ROOT, best  # noqa: E402
from refcomp.ops.tensorcore import TENSOR_CORES, tc_matmul, tc_output_bits  # noqa: E402

MODELS = ["hopper-wgmma-m64nNk16-bfloat16-float32", "hopper-wgmma-m64nNk16-float16-float16",
          "ampere-mma-m16n8k16-float16-float32",
          "hopper-wgmma-m64nNk32-float8_e4m3fn-float32"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mmasim", required=True)
    ap.add_argument("--rows", type=int, default=4096, help="M of refcomp's batched run")
    args = ap.parse_args(argv)
    sys.path.insert(0, args.mmasim)
    import torch
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mmasim.simulator import nv_ptx
    sys.path.insert(0, str(ROOT / "scripts"))
    from gen_mmasim_vectors import call_for
    tdt = {"float16": torch.float16, "bfloat16": torch.bfloat16,
           "float8_e4m3fn": torch.float8_e4m3fn}
    lines = ["| model | MMA-Sim us/output | refcomp us/output | ratio | target |",
             "|---|---:|---:|---:|---|"]
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
        t = time.perf_counter()
        D = obj(A[:m], B, C[:m])
        t_sim = (time.perf_counter() - t) / (m * n)
        a = A.float().numpy().astype(np.float64)
        b = B.float().numpy().astype(np.float64)
        c = C.float().numpy().astype(np.float64)
        ours = tc_output_bits(tc_matmul(a[:m], b, c[:m], model), model)
        u = {2: torch.int16, 4: torch.int32}[D.element_size()]
        want = D.view(u).numpy().view(ours.dtype)
        assert (ours == want).all(), f"{name}: outputs differ from MMA-Sim"
        t_ours = best(lambda: tc_matmul(a, b, c, model), 3) / (args.rows * n)
        r = t_sim / t_ours
        missed += r < 1000
        lines.append(f"| {name} | {t_sim * 1e6:.1f} | {t_ours * 1e6:.3f} | {r:,.0f}x | "
                     f"1000x {'yes' if r >= 1000 else 'NO'} |")
    md = (f"Measured {time.strftime('%Y-%m-%d')}, one thread, torch {torch.__version__}: "
          f"MMA-Sim on one instruction per model, refcomp on {args.rows} rows; outputs "
          f"bit-equal on the shared instruction.\n\n" + "\n".join(lines) + "\n")
    print(md)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench_tensorcore.md").write_text(md)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
