"""Golden files on disk: one ``.npz`` per suite and one JSON manifest.

Layout of a golden directory (schema version 1; readable without refcomp)::

    manifest.json      {"schema_version": 1, "suites": {SUITE: {...}}}
    SUITE.npz          a zip of .npy arrays (stored, not compressed), one per operand

``manifest.json["suites"][SUITE]`` holds ``file`` (the npz name), ``sha256`` (of the npz
bytes), ``refcomp_version`` and ``command`` (what generated it), and ``cases``: a list of
``{"name", "op", "params", "inputs", "outputs", "tolerance", "nan_bits", "notes"}`` where
every input and output is ``{"kind", "key", "dtype", "shape", "sha256"}``: `key` is the
array's name inside the npz (``np.load(path, allow_pickle=False)[key]``), `dtype` its unsigned
dtype, `sha256` the hash of its C-order bytes.  `kind` says how to read the bits (see
:mod:`refcomp.golden.schema`).

Determinism: arrays are written as .npy version 1.0 into a zip with fixed timestamps
(1980-01-01), fixed attributes and no compression, in case order; JSON is written with sorted
keys.  The same suite gives the same bytes on every machine.  Writes go to a temporary file
that replaces the target atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .._version import __version__
from .schema import SCHEMA_VERSION, Case, GoldenError, Operand, Tolerance, kind_dtype

__all__ = ["MANIFEST", "npz_bytes", "suite_bytes", "load_manifest", "read_suite", "write_atomic",
           "sha256", "case_meta"]

MANIFEST = "manifest.json"
_DATE = (1980, 1, 1, 0, 0, 0)
_MAX_ELEMENTS = 1 << 28


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr, order="C"), version=(1, 0),
                              allow_pickle=False)
    return buf.getvalue()


def _key(i: int, side: str, name: str) -> str:
    return f"{i:04d}.{side}.{name}"


def case_meta(i: int, case: Case) -> dict:
    """The manifest entry of case number `i`."""
    def arrays(side, ops):
        return {k: {"kind": v.kind, "key": _key(i, side, k), "dtype": v.bits.dtype.name,
                    "shape": list(v.bits.shape),
                    "sha256": sha256(np.asarray(v.bits, order="C").tobytes())}
                for k, v in sorted(ops.items())}
    return {"name": case.name, "op": case.op, "params": case.params,
            "inputs": arrays("in", case.inputs), "outputs": arrays("out", case.outputs),
            "tolerance": case.tolerance.to_json() if case.tolerance else None,
            "nan_bits": case.nan_bits, "notes": case.notes}


def npz_bytes(entries) -> bytes:
    """A deterministic npz (stored, fixed timestamps and attributes) of (key, array) pairs
    in the given order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for key, arr in entries:
            info = zipfile.ZipInfo(key + ".npy", date_time=_DATE)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            z.writestr(info, _npy(arr))
    return buf.getvalue()


def suite_bytes(cases: list[Case]) -> tuple[bytes, list[dict]]:
    """The npz bytes of a suite and its manifest case entries."""
    names = [c.name for c in cases]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GoldenError(f"duplicate case names: {', '.join(dup)}")
    metas = [case_meta(i, case) for i, case in enumerate(cases)]
    data = npz_bytes((_key(i, side, k), v.bits)
                     for i, case in enumerate(cases)
                     for side, ops in (("in", case.inputs), ("out", case.outputs))
                     for k, v in sorted(ops.items()))
    json.dumps(metas, sort_keys=True, allow_nan=False)       # params must be plain JSON
    return data, metas


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def write_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_manifest(directory) -> dict:
    """Parse and validate ``manifest.json`` (GoldenError with a clear message otherwise)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise GoldenError(f"{path}: no golden manifest here (run `refcomp golden generate`)")
    try:
        m = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GoldenError(f"{path}: not a valid JSON manifest ({e})") from e
    if not isinstance(m, dict) or not isinstance(m.get("suites"), dict):
        raise GoldenError(f"{path}: a manifest is an object with a 'suites' object")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise GoldenError(f"{path}: schema_version {m.get('schema_version')!r}; this refcomp "
                          f"({__version__}) reads version {SCHEMA_VERSION}")
    for s, entry in m["suites"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("cases"), list) \
                or not isinstance(entry.get("file"), str) \
                or not isinstance(entry.get("sha256"), str):
            raise GoldenError(f"{path}: suite {s!r}: needs 'file', 'sha256' and a 'cases' list")
        if Path(entry["file"]).name != entry["file"] or not entry["file"].endswith(".npz"):
            raise GoldenError(f"{path}: suite {s!r}: file {entry['file']!r} must be a plain "
                              ".npz name in the same directory")
    return m


def _operand(where: str, meta, arrays) -> Operand:
    if not isinstance(meta, dict) or set(meta) != {"kind", "key", "dtype", "shape", "sha256"}:
        raise GoldenError(f"{where}: malformed array entry {meta!r}")
    key = meta["key"]
    if key not in arrays:
        raise GoldenError(f"{where}: array {key!r} is missing from the npz file")
    try:
        arr = arrays[key]
    except Exception as e:            # zip/npy errors of every kind: truncated, corrupt
        raise GoldenError(f"{where}: array {key!r} cannot be read ({type(e).__name__}: "
                          f"{e})") from e
    want = kind_dtype(str(meta["kind"]))
    if arr.dtype != want or meta["dtype"] != want.name:
        raise GoldenError(f"{where}: array {key!r} has dtype {arr.dtype} (manifest says "
                          f"{meta['dtype']!r}); kind {meta['kind']!r} is stored as {want}")
    if list(arr.shape) != meta["shape"]:
        raise GoldenError(f"{where}: array {key!r} has shape {list(arr.shape)}, the manifest "
                          f"says {meta['shape']}")
    if sha256(np.asarray(arr, order="C").tobytes()) != meta["sha256"]:
        raise GoldenError(f"{where}: array {key!r} does not match its sha256 (edited?)")
    return Operand(meta["kind"], arr)


def read_suite(directory, suite: str, manifest: dict | None = None,
               check_file_hash: bool = True) -> list[Case]:
    """Read every case of a suite, validating it against the manifest.

    Raises GoldenError naming the suite and case for anything missing, edited, truncated,
    of the wrong dtype or shape.
    """
    directory = Path(directory)
    m = manifest if manifest is not None else load_manifest(directory)
    if suite not in m["suites"]:
        raise GoldenError(f"no suite {suite!r} in {directory / MANIFEST} (has: "
                          f"{', '.join(sorted(m['suites'])) or 'none'})")
    entry = m["suites"][suite]
    path = directory / entry["file"]
    if not path.is_file():
        raise GoldenError(f"suite {suite}: file {path} is missing")
    data = path.read_bytes()
    if check_file_hash and sha256(data) != entry["sha256"]:
        raise GoldenError(f"suite {suite}: {path.name} does not match the manifest's sha256 "
                          f"(edited, truncated or replaced)")
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:
        raise GoldenError(f"suite {suite}: {path.name} is not a readable npz file "
                          f"({type(e).__name__}: {e})") from e
    with npz:
        class _Arrays:
            files = set(npz.files)

            def __contains__(self, k):
                return k in self.files

            def __getitem__(self, k):
                a = npz[k]
                if a.size > _MAX_ELEMENTS:
                    raise GoldenError(f"array {k!r} has {a.size} elements")
                return a
        arrays = _Arrays()
        cases, keys = [], set()
        for i, meta in enumerate(entry["cases"]):
            name = meta.get("name") if isinstance(meta, dict) else None
            where = f"suite {suite}, case {name or i}"
            if not isinstance(meta, dict) or not {"name", "op", "params", "inputs",
                                                  "outputs"} <= set(meta):
                raise GoldenError(f"{where}: malformed case entry")
            try:
                ins = {k: _operand(where, v, arrays) for k, v in meta["inputs"].items()}
                outs = {k: _operand(where, v, arrays) for k, v in meta["outputs"].items()}
                tol = meta.get("tolerance")
                case = Case(name=name, op=meta["op"], params=meta["params"], inputs=ins,
                            outputs=outs,
                            tolerance=Tolerance.from_json(tol) if tol is not None else None,
                            nan_bits=bool(meta.get("nan_bits", True)),
                            notes=str(meta.get("notes", "")))
            except GoldenError as e:
                msg = str(e)
                raise GoldenError(msg if msg.startswith(where) else f"{where}: {msg}") from e
            except (AttributeError, TypeError) as e:
                raise GoldenError(f"{where}: malformed case entry ({e})") from e
            keys |= {v["key"] + ".npy" for v in (*meta["inputs"].values(),
                                                  *meta["outputs"].values())}
            cases.append(case)
        extra = {f + ".npy" for f in npz.files} - keys
        if extra:
            raise GoldenError(f"suite {suite}: {path.name} holds arrays the manifest does not "
                              f"list: {', '.join(sorted(extra)[:5])}")
    return cases
