"""Golden vectors: the case schema, deterministic files, suites, generate and verify.

>>> from refcomp import golden
>>> " ".join(sorted(golden.SUITES))
'affine amp arith block cast distill gemm integer nn optim profiles prune qtorch reduce requant stochastic tensorcore'
"""

from .compute import OPS, compute
from .manage import default_dir, generate, verify
from .schema import SCHEMA_VERSION, Case, GoldenError, Operand, Tolerance
from .store import load_manifest, read_suite
from .suites import SUITES, build, suite
from . import suites_gemm, suites_nn, suites_qtorch, suites_quant  # noqa: E402,F401  (register)
from . import suites_distill, suites_prune  # noqa: E402,F401  (register)
from . import suites_amp  # noqa: E402,F401  (register)

__all__ = ["OPS", "compute", "generate", "verify", "default_dir", "SCHEMA_VERSION", "Case",
           "GoldenError", "Operand", "Tolerance", "load_manifest", "read_suite", "SUITES",
           "build", "suite"]
