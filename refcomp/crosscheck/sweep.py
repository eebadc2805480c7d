"""Exhaustive sweeps: every input of a cast or every operand pair of a 16-bit binary op.

``refcomp sweep --op cast --from float32 --to bfloat16 --backend torch-cpu`` walks all 2**32
float32 bit patterns in chunks (constant memory: a chunk of inputs and outputs per worker),
on all local cores by default (one process per core, one thread each) or on a Dask cluster
(``--dask ADDRESS``).  refcomp computes each chunk under the backend's profile
(``torch-2.13-cpu`` / ``ml_dtypes-0.6`` for casts, refcomp's own conventions for
arithmetic); outputs are compared bit for bit (NaN by NaN-ness where the convention leaves
NaN bits unspecified).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..formats import catalog
from ..rounding import cast_bits
from ..rounding.profiles import PROFILES

__all__ = ["SweepSpec", "SweepResult", "sweep", "run_chunk"]

_PROFILE = {"torch-cpu": "torch-2.13-cpu", "torch-cuda": "torch-2.13-cpu",
            "ml_dtypes": "ml_dtypes-0.6"}
BINARY = ("add", "sub", "mul", "div")
_TORCH_OPS = {"add": "add", "sub": "sub", "mul": "mul", "div": "div"}
_NP_OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


@dataclass(frozen=True)
class SweepSpec:
    op: str                 # "cast" or a binary op
    src: str                # input format (cast) or operand format (binary)
    dst: str                # output format
    backend: str
    chunk_bits: int = 22

    def __post_init__(self):
        if self.backend not in _PROFILE:
            raise ValueError(f"sweep backend {self.backend!r} is not one of "
                             f"{', '.join(_PROFILE)}")
        src, dst = catalog.get(self.src), catalog.get(self.dst)
        if self.op == "cast":
            if src.name not in ("float32", "float16", "bfloat16"):
                raise ValueError(f"sweep casts from float32, float16 or bfloat16, not "
                                 f"{self.src!r}")
            PROFILES[_PROFILE[self.backend]].rule_for(dst)
        elif self.op in BINARY:
            if src.width != 16 or dst.name != src.name:
                raise ValueError(f"binary sweeps take a 16-bit format in and out "
                                 f"(--from X --to X), got {self.src!r} -> {self.dst!r}")
        else:
            raise ValueError(f"sweep op must be cast or one of {', '.join(BINARY)}, "
                             f"not {self.op!r}")
        if not 10 <= self.chunk_bits <= 26:
            raise ValueError(f"chunk_bits must be in 10..26, got {self.chunk_bits}")

    @property
    def total(self) -> int:
        w = catalog.get(self.src).width
        return 1 << (w if self.op == "cast" else 2 * w)

    @property
    def chunks(self) -> int:
        return max(1, self.total >> self.chunk_bits)

    @property
    def nan_bits(self) -> bool:
        if self.op != "cast":
            return False
        return PROFILES[_PROFILE[self.backend]].rule_for(catalog.get(self.dst)).nan_bits


@dataclass
class SweepResult:
    spec: SweepSpec
    checked: int = 0
    mismatches: int = 0
    examples: list = field(default_factory=list)    # (input bits, refcomp bits, backend bits)
    seconds: float = 0.0
    workers: int = 1


_PEERS = {}


def _peer(backend):
    if backend not in _PEERS:
        if backend.startswith("torch"):
            import torch
            torch.set_num_threads(1)
            _PEERS[backend] = torch
        else:
            import ml_dtypes
            _PEERS[backend] = ml_dtypes
    return _PEERS[backend]


def _np_dtype(name):
    if name in ("float16", "float32", "float64"):
        return np.dtype(name)
    return np.dtype(getattr(_peer("ml_dtypes"), name))


def _backend_out(spec: SweepSpec, ins: list) -> np.ndarray:
    dst = catalog.get(spec.dst)
    u = f"u{dst.storage_dtype.itemsize}"
    if spec.backend.startswith("torch"):
        torch = _peer(spec.backend)
        dev = "cuda" if spec.backend == "torch-cuda" else "cpu"
        i = {1: torch.int8, 2: torch.int16, 4: torch.int32}
        ts = [torch.from_numpy(b.view(f"i{b.dtype.itemsize}")).view(getattr(torch, spec.src))
              .to(dev) for b in ins]
        y = (ts[0].to(getattr(torch, spec.dst)) if spec.op == "cast"
             else getattr(torch, _TORCH_OPS[spec.op])(ts[0], ts[1]))
        return y.cpu().view(i[dst.storage_dtype.itemsize]).numpy().view(u)
    vs = [b.view(_np_dtype(spec.src)) for b in ins]
    with np.errstate(all="ignore"):
        y = (vs[0].astype(_np_dtype(spec.dst)) if spec.op == "cast"
             else _NP_OPS[spec.op](vs[0], vs[1]))
    return y.view(u)


def run_chunk(spec: SweepSpec, index: int, keep: int = 5):
    """(checked, mismatches, examples) for chunk `index` of the sweep."""
    src, dst = catalog.get(spec.src), catalog.get(spec.dst)
    size = min(spec.total, 1 << spec.chunk_bits)
    flat = np.arange(index * size, (index + 1) * size, dtype=np.uint64)
    if spec.op == "cast":
        ins = [flat.astype(src.storage_dtype)]
        x = ins[0].view(np.float32) if src.name == "float32" else src.decode(ins[0])
        ours = cast_bits(x, dst, profile=_PROFILE[spec.backend])
    else:
        ins = [(flat >> np.uint64(16)).astype(np.uint16), (flat & np.uint64(0xFFFF))
               .astype(np.uint16)]
        a, b = src.decode(ins[0]), src.decode(ins[1])
        from .. import ops
        ours = dst.encode(getattr(ops, spec.op)(a, b, dst))
    ours = np.asarray(ours, dst.storage_dtype)
    theirs = _backend_out(spec, ins)
    bad = np.flatnonzero(ours != theirs)
    if not spec.nan_bits and bad.size:              # NaN against NaN by NaN-ness only
        bad = bad[~(np.isnan(dst.decode(ours[bad])) & np.isnan(dst.decode(theirs[bad])))]
    ex = [(int(flat[i]), int(ours[i]), int(theirs[i])) for i in bad[:keep]]
    return size, int(bad.size), ex


def _bar(done, total, t0, bad, out):
    frac = done / total
    el = time.perf_counter() - t0
    eta = el / frac - el if frac else 0.0
    n = int(30 * frac)
    out.write(f"\r[{'#' * n}{'.' * (30 - n)}] {done}/{total} chunks  {el:6.1f}s  "
              f"eta {eta:6.1f}s  mismatches {bad}")
    out.flush()


def sweep(spec: SweepSpec, workers: int | None = None, dask: str | None = None,
          limit: int | None = None, out=sys.stderr, progress: bool = True) -> SweepResult:
    """Run the sweep (the first `limit` chunks only, if given)."""
    n = spec.chunks if limit is None else min(spec.chunks, limit)
    res = SweepResult(spec)
    t0 = time.perf_counter()

    def take(r):
        res.checked += r[0]
        res.mismatches += r[1]
        res.examples.extend(r[2][:max(0, 5 - len(res.examples))])

    if dask:
        from dask.distributed import Client, as_completed
        with Client(dask) as client:
            res.workers = sum(client.nthreads().values())
            futs = client.map(run_chunk, [spec] * n, range(n), pure=False)
            for i, f in enumerate(as_completed(futs), 1):
                take(f.result())
                if progress:
                    _bar(i, n, t0, res.mismatches, out)
    else:
        workers = workers or os.cpu_count() or 1
        res.workers = min(workers, n)
        if res.workers == 1:
            for i in range(n):
                take(run_chunk(spec, i))
                if progress:
                    _bar(i + 1, n, t0, res.mismatches, out)
        else:
            import multiprocessing as mp
            ctx = mp.get_context("spawn")
            with ctx.Pool(res.workers) as pool:
                it = pool.imap_unordered(_star, [(spec, i) for i in range(n)])
                for i, r in enumerate(it, 1):
                    take(r)
                    if progress:
                        _bar(i, n, t0, res.mismatches, out)
    if progress:
        out.write("\n")
    res.seconds = time.perf_counter() - t0
    return res


def _star(args):
    return run_chunk(*args)
