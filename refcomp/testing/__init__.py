"""Public helpers for users' tests: ULP distances and assertions, hypothesis strategies,
and a check of a user's function against a golden suite.

The strategies need hypothesis (``pip install 'refcomp[test]'``); they load on first use.

>>> import numpy as np, refcomp as rc
>>> rc.testing.ulp_distance(np.uint16([0x3f80]), np.uint16([0x3f82]), "bfloat16").tolist()
[2.0]
"""

from .gradcheck import gradcheck, numerical_gradient
from .ulp import (as_bits, assert_bits_equal, assert_ulp_within, describe_bits, ordinal,
                  ulp_distance)

__all__ = ["ulp_distance", "assert_bits_equal", "assert_ulp_within", "ordinal", "as_bits",
           "describe_bits", "values", "bit_patterns", "near_ties", "value_arrays",
           "bit_arrays", "check_against_golden", "gradcheck", "numerical_gradient"]

_LAZY = {"values", "bit_patterns", "near_ties", "value_arrays", "bit_arrays"}


def __getattr__(name):
    if name in _LAZY:
        from . import strategies
        return getattr(strategies, name)
    if name == "check_against_golden":
        from .golden_check import check_against_golden
        return check_against_golden
    raise AttributeError(f"module 'refcomp.testing' has no attribute {name!r}")
