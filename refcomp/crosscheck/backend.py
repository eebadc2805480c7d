"""The backend interface: what a cross-check target implements.

A backend receives golden cases and returns output bit patterns; it never judges them
(:mod:`refcomp.crosscheck.classify` does).  To check your own kernel, accelerator or RTL
simulation, subclass :class:`Backend`::

    class MyBackend(Backend):
        name = "my-kernel"

        def describe(self):                 # versions and every setting that changes numerics
            return {"kernel": "v3", "ftz": False}

        def supports(self, case):           # None, or the reason it cannot run the case
            return None if case.op == "add" else f"op {case.op!r} not implemented"

        def run(self, case):                # output name -> unsigned bit patterns
            a, b = (case.inputs[k].values() for k in "ab")
            return {"y": my_add(a, b)}      # same kind/dtype as case.outputs["y"]

Outputs a backend leaves out (``flags`` for most) are not compared; the report says so.
Pass an instance to :func:`refcomp.crosscheck.run` or register a factory in
:data:`BACKENDS` to reach it from ``refcomp crosscheck --backend NAME``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["Backend", "BACKENDS", "make_backend", "register"]


class Backend(ABC):
    """One implementation under test."""

    #: short name used in reports
    name: str = "backend"

    def describe(self) -> dict:
        """Versions and numerics settings, recorded in every report."""
        return {}

    def supports(self, case) -> str | None:
        """None when the backend can run `case`, else a one-line reason."""
        return None

    def begin_suite(self, suite: str) -> None:
        """Called before the cases of each suite run (optional)."""

    def tolerance(self, case):
        """The Tolerance `case` is judged with: the case's own (None: bit-exact), unless the
        backend documents a looser accuracy for the op (then it must cite the source)."""
        return case.tolerance

    def nan_bits(self, case) -> bool:
        """Whether NaN outputs of `case` are comparable bit for bit on this backend."""
        return case.nan_bits

    @abstractmethod
    def run(self, case) -> dict:
        """Outputs of `case`: a dict of output name -> unsigned integer bit patterns."""


#: name -> factory(argument or None) -> Backend
BACKENDS: dict = {}


def register(name: str):
    def deco(factory):
        BACKENDS[name] = factory
        return factory
    return deco


def make_backend(spec) -> Backend:
    """A Backend from a name (``torch-cpu``, ``torch-cuda``, ``ml_dtypes``, ``torchao``,
    ``file:PATH``)."""
    if isinstance(spec, Backend):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"backend must be a name or a Backend, got {spec!r}")
    from . import file_backend, mldtypes_backend, torch_backend, torchao_backend  # noqa: F401
    name, _, arg = spec.partition(":")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {spec!r} (known: "
                         f"{', '.join(k + (':PATH' if k == 'file' else '') for k in BACKENDS)})")
    if name == "file" and not arg:
        raise ValueError("backend 'file' needs a path: file:PATH")
    return BACKENDS[name](arg or None)
