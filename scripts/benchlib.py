"""Shared set-up of the benchmark scripts: one thread, refcomp importable, best-of timing.

Import it first (``import benchlib``; the scripts' own directory is on ``sys.path``), before
NumPy or Numba, so that the thread variables take effect.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

ROOT = Path(__file__).resolve().parent.parent
try:
    import refcomp  # noqa: F401
except ImportError:                                # running from a checkout
    sys.path.insert(0, str(ROOT))


def best(fn, repeat=7):
    """Shortest of `repeat` timings of fn() after one warm-up call (which also compiles)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def write_table(name, lines):
    """Print the Markdown `lines` and write them to ``bench-results/<name>.md``."""
    md = "\n".join(lines) + "\n"
    print(md)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.md").write_text(md)


def versions(note=""):
    """One line for a results report: date, refcomp version and commit, Python, NumPy,
    Numba, scikit-learn, machine; `note` appended."""
    import datetime
    import platform
    import subprocess

    import numba
    import numpy as np
    import sklearn
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        commit = ""
    from refcomp import __version__
    return (f"{datetime.date.today().isoformat()}; refcomp {__version__} (commit "
            f"{commit or 'unknown'}, working tree), Python {platform.python_version()}, "
            f"numpy {np.__version__}, numba {numba.__version__}, scikit-learn "
            f"{sklearn.__version__}; {platform.machine()} {platform.system()}, one thread."
            + (f"  {note}" if note else ""))

