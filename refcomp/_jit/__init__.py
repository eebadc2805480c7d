"""Numba kernels (the speed); each has a NumPy twin (the specification) in refcomp/.

``REFCOMP_DISABLE_JIT=1`` in the environment makes every public function run the NumPy
twins instead.  :func:`use_jit` switches per block of code (the tests use it to run both
implementations on the same inputs and compare them bit for bit).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

__all__ = ["enabled", "use_jit"]

_state = {"enabled": os.environ.get("REFCOMP_DISABLE_JIT", "").strip() in ("", "0")}

#: Numba's on-disk cache of compiled kernels (off with REFCOMP_NUMBA_CACHE=0)
CACHE = os.environ.get("REFCOMP_NUMBA_CACHE", "1").strip() != "0"


def enabled() -> bool:
    """Whether the Numba kernels are used."""
    return _state["enabled"]


@contextmanager
def use_jit(flag: bool):
    """Run the enclosed code with the Numba kernels on (True) or the NumPy twins (False)."""
    old = _state["enabled"]
    _state["enabled"] = bool(flag)
    try:
        yield
    finally:
        _state["enabled"] = old
