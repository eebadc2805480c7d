"""The ``file:PATH`` backend: outputs produced elsewhere (an RTL simulation, a C kernel).

PATH is a directory holding, per golden suite, ``SUITE.npz`` with one unsigned-integer
array per produced output, keyed ``"CASE_NAME:OUTPUT"`` (e.g.
``"arith/add/float16/nearest_even:y"``), of the dtype and shape of the golden output, and
optionally ``backend.json`` (``{"name": ..., any versions and settings}``, copied into
reports).  Cases without any array are reported "not supported"; outputs a case lacks
(``flags`` for a backend without flags) are not compared.  Write such a directory with
:func:`write_outputs`; read the inputs from the golden files (``golden/README.md``).
NaN outputs compare bit for bit unless ``backend.json`` sets ``"nan_bits": false``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..golden.schema import GoldenError
from ..golden.store import npz_bytes, write_atomic
from .backend import Backend, register

__all__ = ["FileBackend", "write_outputs"]


def write_outputs(directory, suite: str, outputs: dict) -> Path:
    """Write ``{case_name: {output: bits}}`` as ``directory/suite.npz`` for ``file:``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for case, outs in sorted(outputs.items()):
        for k, bits in sorted(outs.items()):
            arr = np.asarray(bits)
            if arr.dtype.kind != "u":
                raise TypeError(f"{case}:{k}: outputs are unsigned bit patterns, got "
                                f"{arr.dtype}")
            entries.append((f"{case}:{k}", arr))
    path = directory / f"{suite}.npz"
    write_atomic(path, npz_bytes(entries))
    return path


class FileBackend(Backend):
    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"backend file:{path}: not a directory")
        meta = self.path / "backend.json"
        self.meta = {}
        if meta.is_file():
            try:
                self.meta = json.loads(meta.read_text("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"{meta}: not valid JSON ({e})") from e
            if not isinstance(self.meta, dict):
                raise ValueError(f"{meta}: must hold a JSON object")
        self.name = str(self.meta.get("name", f"file:{path}"))
        self._open = {}
        self.suite = None

    def _npz(self, suite):
        if suite not in self._open:
            p = self.path / f"{suite}.npz"
            try:
                self._open[suite] = np.load(p, allow_pickle=False) if p.is_file() else None
            except Exception as e:
                raise GoldenError(f"{p}: not a readable npz file ({type(e).__name__}: {e})") \
                    from e
        return self._open[suite]

    def begin_suite(self, suite: str) -> None:
        self.suite = suite

    def describe(self) -> dict:
        return {"backend": self.name, "path": str(self.path), **self.meta}

    def nan_bits(self, case) -> bool:
        return case.nan_bits and bool(self.meta.get("nan_bits", True))

    def _keys(self, case):
        npz = self._npz(self.suite)
        return [] if npz is None else [k for k in case.outputs if f"{case.name}:{k}" in
                                       npz.files]

    def supports(self, case):
        if not self._keys(case):
            return f"no outputs for this case in {self.path}/{self.suite}.npz"
        return None

    def run(self, case) -> dict:
        npz = self._npz(self.suite)
        return {k: npz[f"{case.name}:{k}"] for k in self._keys(case)}


@register("file")
def _make(arg=None):
    return FileBackend(arg)
