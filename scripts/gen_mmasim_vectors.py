"""Generate tensor-core test vectors with Microsoft's MMA-Sim (not shipped with refcomp).

Usage: ``python scripts/gen_mmasim_vectors.py --mmasim PATH [--instructions N]`` where PATH
is a checkout of https://github.com/microsoft/MMA-Sim (MIT; needs torch >= 2.7).  For every
model of :data:`refcomp.ops.tensorcore.TENSOR_CORES` it runs N instructions of MMA-Sim's
model of that instruction on random and adversarial inputs and writes
``tests/data/mmasim/<model>.npz`` with the bit patterns of A (M, k), B (k, N), C and D
(stacked over instructions) and a ``meta.json`` recording MMA-Sim's commit and the call.
Only these outputs are committed, never MMA-Sim's code.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refcomp.ops.tensorcore import TENSOR_CORES  # noqa: E402

_T = {"float16": "f16", "bfloat16": "bf16", "tfloat32": "tf32", "float8_e4m3fn": "e4m3",
      "float8_e5m2": "e5m2"}


def call_for(name, model):
    """(MMA-Sim class name, arch, qualifier, m, n) of a refcomp model name."""
    arch = name.split("-")[0]
    if model.scaled:
        t = {"float8_e4m3fn": "e4m3", "float8_e5m2": "e5m2", "float4_e2m1fn": "e2m1"}
        s = "ue8m0" if model.scale_fmt == "float8_e8m0fnu" else "ue4m3"
        q = (f"m128n16k{model.k}.block{model.block}.f32.{t[model.inputs]}."
             f"{t[model.inputs]}.{s}")
        return "tcgen05mma_block_scale", "Blackwell", q, 128, 16
    t = _T[model.inputs]
    d = "f16" if model.output == "float16" else "f32"
    k = model.k
    if arch in ("volta", "turing", "ampere", "ada"):
        shape = {"volta": "m8n8k4"}.get(arch, f"m16n8k{k}")
        m, n = (8, 8) if arch == "volta" else (16, 8)
        a = {"volta": "Volta", "turing": "Turing", "ampere": "Ampere", "ada": "Ada Lovelace"}
        return "mma", a[arch], f"{shape}.{d}.{t}.{t}.{d}", m, n
    if arch == "hopper":
        return "wgmma", "Hopper", f"m64n8k{k}.{d}.{t}.{t}", 64, 8
    return "tcgen05mma", "Blackwell", f"m64n8k{k}.{d}.{t}.{t}", 64, 8


def operands(rng, shape, fmt, kind):
    """float32 arrays of values of `fmt` (torch rounds them into it), per `kind`."""
    top = {"float16": 65504.0, "bfloat16": 3.3e38, "tfloat32": 3.3e38,
           "float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}[fmt]
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "spread":                         # wide exponent spread
        x = rng.standard_normal(shape) * 2.0 ** rng.integers(-24, 24, shape)
    elif kind == "cancel":                         # pairs that cancel (+x, -x)
        x = rng.standard_normal(shape)
        x[..., 1::2] = -x[..., 0::2] * rng.choice([1.0, 1.0 + 2.0 ** -7], x[..., 1::2].shape)
    elif kind == "tiny":                           # subnormals and zeros
        x = rng.standard_normal(shape) * 2.0 ** rng.integers(-40, -10, shape)
        x[rng.random(shape) < 0.3] = 0.0
    elif kind == "big":
        x = rng.standard_normal(shape) * top / 4
    elif kind == "zeros":                          # signed zeros, a few ones
        x = rng.choice([0.0, -0.0, 0.0, 1.0], shape)
    else:                                          # specials sprinkled in
        x = rng.standard_normal(shape)
        r = rng.random(shape)
        x[r < 0.01] = np.inf
        x[(r >= 0.01) & (r < 0.02)] = -np.inf
        x[(r >= 0.02) & (r < 0.025)] = np.nan
    return np.clip(x, -top, top) if kind != "special" else x


def scaled_case(rng, obj, model, m, n, count, torch):
    """Block-scaled instructions: element codes (fp4 packed two per byte, even k low),
    scale codes (random exponents, a few NaN codes), C with zeros and spreads."""
    k, nb = model.k, model.k // model.block
    out = {"A": [], "B": [], "C": [], "SA": [], "SB": [], "D": []}
    for i in range(count):
        if model.inputs == "float4_e2m1fn":
            ca = rng.integers(0, 16, (m, k)).astype(np.uint8)
            cb = rng.integers(0, 16, (k, n)).astype(np.uint8)
            A = torch.from_numpy(ca[:, 0::2] | (ca[:, 1::2] << 4))
            B = torch.from_numpy((cb[0::2, :] | (cb[1::2, :] << 4)))
        else:
            dt = torch.float8_e4m3fn if model.inputs == "float8_e4m3fn" else torch.float8_e5m2
            A = torch.from_numpy(rng.integers(0, 256, (m, k)).astype(np.uint8)).view(dt)
            B = torch.from_numpy(rng.integers(0, 256, (k, n)).astype(np.uint8)).view(dt)
            if i % 3 == 0:                         # finite elements only
                A = torch.nan_to_num(A.float(), nan=1.0, posinf=2.0, neginf=-2.0).to(dt)
                B = torch.nan_to_num(B.float(), nan=1.0, posinf=2.0, neginf=-2.0).to(dt)
        if model.scale_fmt == "float8_e8m0fnu":
            lo, hi = (100, 150) if i % 2 else (0, 255)
            sa = rng.integers(lo, hi, (m, nb)).astype(np.uint8)
            sb = rng.integers(lo, hi, (nb, n)).astype(np.uint8)
            if i % 4 == 0:
                sa[0, 0] = 0xFF                    # a NaN scale
            SA = torch.from_numpy(sa).view(torch.float8_e8m0fnu)
            SB = torch.from_numpy(sb).view(torch.float8_e8m0fnu)
        else:
            sa = rng.integers(0, 0x7F, (m, nb)).astype(np.uint8) | (
                rng.integers(0, 2, (m, nb)).astype(np.uint8) << 7)
            sb = rng.integers(0, 0x7F, (nb, n)).astype(np.uint8)
            SA = torch.from_numpy(sa).view(torch.float8_e4m3fn)
            SB = torch.from_numpy(sb).view(torch.float8_e4m3fn)
        c = rng.standard_normal((m, n)) * 2.0 ** rng.integers(-30, 30, (m, n))
        c[rng.random((m, n)) < 0.2] = 0.0
        C = torch.from_numpy(c.astype(np.float32))
        D = obj(A, B, C, SA, SB)
        for key, tns in (("A", A), ("B", B), ("C", C), ("SA", SA), ("SB", SB), ("D", D)):
            u = {1: torch.uint8, 4: torch.int32}[tns.element_size()]
            b = tns.view(u).numpy().copy()
            out[key].append(b.view(f"u{b.dtype.itemsize}"))
    return {k: np.stack(v) for k, v in out.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mmasim", required=True, help="path of an MMA-Sim checkout")
    ap.add_argument("--instructions", type=int, default=24)
    ap.add_argument("--commit", help="MMA-Sim commit, when PATH is not a git checkout")
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "mmasim"))
    args = ap.parse_args(argv)
    sys.path.insert(0, args.mmasim)
    import torch
    from mmasim.simulator import nv_ptx
    try:
        commit = args.commit or subprocess.run(
            ["git", "-C", args.mmasim, "rev-parse", "HEAD"], capture_output=True,
            text=True).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tdt = {"float16": torch.float16, "bfloat16": torch.bfloat16, "tfloat32": torch.float32,
           "float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}
    meta = {"mmasim_commit": commit, "torch": torch.__version__, "models": {}}
    kinds = ["normal", "spread", "cancel", "tiny", "big", "special", "zeros"]
    for name, model in sorted(TENSOR_CORES.items()):
        cls, arch, qual, m, n = call_for(name, model)
        obj = getattr(nv_ptx, cls)(arch, qual)
        rng = np.random.default_rng(sum(map(ord, name)))
        cdt = torch.float16 if model.output == "float16" else torch.float32
        As, Bs, Cs, Ds = [], [], [], []
        t0 = time.perf_counter()
        if model.scaled:
            data = scaled_case(rng, obj, model, m, n, args.instructions, torch)
            np.savez(out / f"{name}.npz", **data)
            meta["models"][name] = {"class": cls, "arch": arch, "qualifier": qual,
                                    "instructions": args.instructions}
            print(f"{name}: {cls}({arch!r}, {qual!r}) x {args.instructions} in "
                  f"{time.perf_counter() - t0:.1f}s", flush=True)
            continue
        for i in range(args.instructions):
            kind = kinds[i % len(kinds)]
            A = torch.from_numpy(operands(rng, (m, model.k), model.inputs, kind)
                                 .astype(np.float32)).to(tdt[model.inputs])
            B = torch.from_numpy(operands(rng, (model.k, n), model.inputs, kind)
                                 .astype(np.float32)).to(tdt[model.inputs])
            ck = kind if kind != "big" else "normal"
            c = operands(rng, (m, n), "bfloat16", ck)
            c = c * 0.0 if i % 5 == 4 else -c * 0.0 if i % 5 == 3 and kind == "zeros" else c
            C = torch.from_numpy(np.clip(c, -3e38, 3e38).astype(np.float32)
                                 if kind != "special" else c.astype(np.float32)).to(cdt)
            D = obj(A, B, C)
            u = {1: torch.uint8, 2: torch.int16, 4: torch.int32}
            bits = [t.view(u[t.element_size()]).numpy().copy() for t in (A, B, C, D)]
            for lst, b in zip((As, Bs, Cs, Ds), bits):
                lst.append(b.view(f"u{b.dtype.itemsize}"))
        np.savez(out / f"{name}.npz", A=np.stack(As), B=np.stack(Bs), C=np.stack(Cs),
                 D=np.stack(Ds))
        meta["models"][name] = {"class": cls, "arch": arch, "qualifier": qual,
                                "instructions": args.instructions}
        print(f"{name}: {cls}({arch!r}, {qual!r}) x {args.instructions} in "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
