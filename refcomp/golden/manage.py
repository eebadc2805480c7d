"""generate, verify and list golden suites (the ``refcomp golden ...`` commands)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._version import __version__
from .compute import compute
from .schema import SCHEMA_VERSION, GoldenError
from .store import (MANIFEST, json_bytes, load_manifest, read_suite, sha256, suite_bytes,
                    write_atomic)
from .suites import SUITES, build

__all__ = ["generate", "verify", "GenerateResult", "Problem", "default_dir", "diff_cases"]


def default_dir() -> Path:
    """``golden/`` of the source checkout refcomp was imported from, else ``./golden``."""
    here = Path(__file__).resolve().parents[2] / "golden"
    return here if here.is_dir() else Path("golden")


@dataclass
class GenerateResult:
    written: list = field(default_factory=list)      # suites whose files were (re)written
    unchanged: list = field(default_factory=list)
    refused: dict = field(default_factory=dict)      # suite -> diff lines (needs --force)


def _first_diff(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"{a.dtype}{list(a.shape)} -> {b.dtype}{list(b.shape)}"
    idx = np.flatnonzero(a.ravel() != b.ravel())
    if not idx.size:
        return ""
    i = int(idx[0])
    return (f"{idx.size} element(s) differ, first at {i}: {int(a.ravel()[i]):#x} -> "
            f"{int(b.ravel()[i]):#x}")


def diff_cases(old: list, new: list) -> list[str]:
    """Human-readable differences between two versions of a suite."""
    o = {c.name: c for c in old}
    n = {c.name: c for c in new}
    lines = [f"  + {k} (new case)" for k in n if k not in o]
    lines += [f"  - {k} (removed)" for k in o if k not in n]
    for k in n:
        if k not in o:
            continue
        a, b = o[k], n[k]
        if (a.op, a.params, a.tolerance, a.nan_bits) != (b.op, b.params, b.tolerance,
                                                         b.nan_bits):
            lines.append(f"  ~ {k}: op/params/tolerance changed")
        for side in ("inputs", "outputs"):
            da, db = getattr(a, side), getattr(b, side)
            for name in sorted(set(da) | set(db)):
                if name not in da or name not in db:
                    lines.append(f"  ~ {k}: {side[:-1]} {name!r} added or removed")
                    continue
                d = _first_diff(da[name].bits, db[name].bits)
                if d:
                    lines.append(f"  ~ {k}: {side[:-1]} {name!r}: {d}")
    return lines


def generate(suites=None, out=None, force: bool = False) -> GenerateResult:
    """Write the named suites (default all) into `out`; never overwrite changed content
    unless `force` (the diff is returned in ``refused``).  Each suite records the command
    that regenerates it, so the manifest does not depend on how it was invoked."""
    out = Path(out) if out is not None else default_dir()
    out.mkdir(parents=True, exist_ok=True)
    names = list(SUITES) if not suites else list(suites)
    for s in names:
        if s not in SUITES:
            raise GoldenError(f"unknown suite {s!r} (known: {', '.join(SUITES)})")
    try:
        manifest = load_manifest(out)
    except GoldenError:
        if (out / MANIFEST).exists() and not force:
            raise
        manifest = {"schema_version": SCHEMA_VERSION, "suites": {}}
    res = GenerateResult()
    for s in names:
        cases = build(s)
        data, metas = suite_bytes(cases)
        entry = {"file": f"{s}.npz", "sha256": sha256(data), "refcomp_version": __version__,
                 "command": f"refcomp golden generate --suite {s}",
                 "cases": metas}
        old = manifest["suites"].get(s)
        path = out / entry["file"]
        same_file = path.is_file() and path.read_bytes() == data
        if old is not None and same_file and old.get("sha256") == entry["sha256"] \
                and old.get("cases") == json.loads(json_bytes(metas)):
            res.unchanged.append(s)
            continue
        if (old is not None or path.exists()) and not force:
            try:
                lines = diff_cases(read_suite(out, s, manifest, check_file_hash=False), cases)
            except GoldenError as e:
                lines = [f"  the existing files cannot be read: {e}"]
            res.refused[s] = lines or ["  the manifest entry differs (metadata only)"]
            continue
        write_atomic(path, data)
        manifest["suites"][s] = entry
        res.written.append(s)
    manifest["schema_version"] = SCHEMA_VERSION
    if res.written:
        write_atomic(out / MANIFEST, json_bytes(manifest))
    return res


@dataclass
class Problem:
    suite: str
    case: str | None
    message: str

    def __str__(self):
        where = f"{self.suite}" + (f" / {self.case}" if self.case else "")
        return f"{where}: {self.message}"


def verify(directory=None, suites=None) -> tuple[int, list[Problem]]:
    """Recompute every case and check every hash.  Returns (cases checked, problems)."""
    directory = Path(directory) if directory is not None else default_dir()
    try:
        manifest = load_manifest(directory)
    except GoldenError as e:
        return 0, [Problem("manifest", None, str(e))]
    problems, checked = [], 0
    names = list(manifest["suites"]) if not suites else list(suites)
    listed = {e["file"] for e in manifest["suites"].values()}
    for f in sorted(directory.glob("*.npz")):
        if f.name not in listed:
            problems.append(Problem(f.name, None, "foreign file: not in the manifest"))
    for s in names:
        if s not in manifest["suites"]:
            problems.append(Problem(s, None, "no such suite in the manifest"))
            continue
        entry = manifest["suites"][s]
        path = directory / entry["file"]
        if path.is_file() and sha256(path.read_bytes()) != entry["sha256"]:
            problems.append(Problem(s, None, f"{entry['file']} does not match the manifest's "
                                             "sha256 (edited, truncated or replaced)"))
        try:
            cases = read_suite(directory, s, manifest, check_file_hash=False)
        except GoldenError as e:
            problems.append(Problem(s, _case_of(str(e)), str(e)))
            continue
        for case in cases:
            checked += 1
            try:
                got = compute(case.op, case.inputs, case.params)
            except GoldenError as e:
                problems.append(Problem(s, case.name, f"cannot recompute: {e}"))
                continue
            if set(got) != set(case.outputs):
                problems.append(Problem(s, case.name, f"outputs {sorted(case.outputs)} but "
                                                      f"refcomp gives {sorted(got)}"))
                continue
            for k, op in got.items():
                d = _first_diff(case.outputs[k].bits, op.bits)
                if d or case.outputs[k].kind != op.kind:
                    problems.append(Problem(s, case.name, f"output {k!r} differs from "
                                                          f"refcomp {__version__}: {d}"))
    return checked, problems


def _case_of(msg: str):
    if ", case " in msg:
        return msg.split(", case ", 1)[1].split(":", 1)[0]
    return None
