"""pytest plugin (registered as ``refcomp`` in the ``pytest11`` entry point).

Fixture ``refcomp_golden``: a function ``check(fn, suite, **filters)`` that runs
:func:`refcomp.testing.check_against_golden` with ``--refcomp-golden DIR`` (default: the
``golden/`` directory beside the installed refcomp) and fails the test on any mismatch::

    def test_my_kernel(refcomp_golden):
        refcomp_golden(my_kernel_backend_fn, "arith", op="add", fmt="bfloat16")
"""

from __future__ import annotations

import functools

import pytest


def pytest_addoption(parser):
    parser.addoption("--refcomp-golden", default=None,
                     help="golden directory for the refcomp_golden fixture")


@pytest.fixture
def refcomp_golden(request):
    from .golden_check import check_against_golden
    return functools.partial(check_against_golden,
                             golden_dir=request.config.getoption("--refcomp-golden"))
