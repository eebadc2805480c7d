"""Numba kernels (the speed); each has a NumPy twin (the specification) in refcomp/.

``REFCOMP_DISABLE_JIT=1`` in the environment makes every public function run the NumPy
twins instead.  :func:`use_jit` switches per block of code (the tests use it to run both
implementations on the same inputs and compare them bit for bit).
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

__all__ = ["enabled", "use_jit"]

_state = {"enabled": os.environ.get("REFCOMP_DISABLE_JIT", "").strip() in ("", "0")}

#: Numba's on-disk cache of compiled kernels (off with REFCOMP_NUMBA_CACHE=0)
CACHE = os.environ.get("REFCOMP_NUMBA_CACHE", "1").strip() != "0"


def _drop_stale_kernels() -> None:
    """Delete cached kernels compiled from other sources than the present ones.

    Numba invalidates a cached function only when the file that defines it changes, not
    when a function it inlines from another file does; a kernel could then run old
    arithmetic.  The marker holds a hash of every source the kernels are built from.
    """
    here = Path(__file__).resolve().parent
    sources = sorted(here.glob("*.py")) + [here.parent / "rounding" / "params.py"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    cache = here / "__pycache__"
    marker = cache / "refcomp-kernels.sha256"
    try:
        if marker.read_text() == digest:
            return
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink()
        marker.write_text(digest)
    except OSError:            # read-only install: Numba cannot write its cache there either
        pass


if CACHE and not os.environ.get("NUMBA_CACHE_DIR"):
    _drop_stale_kernels()


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
