"""Cross-check golden suites against real backends (the only place torch is imported).

>>> from refcomp import crosscheck
>>> sorted(crosscheck.known_backends())
['file', 'ml_dtypes', 'torch-cpu', 'torch-cuda', 'torchao']
"""

from .backend import BACKENDS, Backend, make_backend, register
from .classify import STATUSES, CaseResult, classify
from .file_backend import write_outputs
from .report import summary_table, write_reports
from .run import CrossCheck, run

__all__ = ["Backend", "BACKENDS", "make_backend", "register", "CaseResult", "classify",
           "STATUSES", "run", "CrossCheck", "summary_table", "write_reports",
           "write_outputs", "known_backends"]


def known_backends():
    from . import mldtypes_backend, torch_backend, torchao_backend  # noqa: F401  (register)
    return list(BACKENDS)
