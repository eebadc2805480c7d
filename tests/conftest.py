"""Shared fixtures: the format catalog and the mode lists, parameterised by name."""

import sys
from pathlib import Path

import numpy as np
import pytest

import refcomp as rc

sys.path.insert(0, str(Path(__file__).parent))

CATALOG = [rc.formats.get(n) for n in rc.formats.names()]
SMALL = [f for f in CATALOG if f.width <= 16]
NARROW = [f for f in CATALOG if f.width <= 8]
#: user-defined formats that exercise the other corners of FloatFormat
CUSTOM = [
    rc.FloatFormat(3, 3),                                        # tiny IEEE
    rc.FloatFormat(5, 7),                                        # e5m7
    rc.FloatFormat(4, 2, bias=3, specials="fn"),
    rc.FloatFormat(4, 3, subnormals=False),                      # no subnormals
    rc.FloatFormat(3, 2, signed=False, specials="finite"),       # unsigned
    rc.FloatFormat(6, 1, bias=40, specials="fnuz"),
    rc.FloatFormat(11, 40),                                      # wide custom
    rc.FloatFormat(11, 3, bias=1060),                            # values in float64 subnormals
]
DETERMINISTIC = ["nearest_even", "nearest_away", "toward_zero", "toward_positive",
                 "toward_negative", "odd"]


def fmt_id(f):
    return f.name


@pytest.fixture(params=CATALOG, ids=fmt_id)
def catalog_fmt(request):
    return request.param


@pytest.fixture(params=SMALL + [f for f in CUSTOM if f.width <= 16], ids=fmt_id)
def small_fmt(request):
    return request.param


@pytest.fixture(params=DETERMINISTIC)
def mode(request):
    return request.param


def all_codes(fmt):
    return np.arange(1 << fmt.width, dtype=np.uint64)
