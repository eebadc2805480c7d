"""Backend profiles: registry, rules stated by the OCP specs, and rule plumbing.

Bit-for-bit agreement of the torch and ml_dtypes profiles with the real backends is in
test_peers.py; here the OCP profiles are checked against the rules the OCP OFP8 1.0 and
MX 1.0 specifications state, and the registry against its own description."""

import math

import numpy as np
import pytest

import refcomp as rc

E4M3_MAX, E5M2_MAX = 448.0, 57344.0


@pytest.mark.parametrize("profile,e4m3,e5m2", [
    ("ocp-saturating", (E4M3_MAX, E4M3_MAX, math.nan), (E5M2_MAX, E5M2_MAX, math.nan)),
    ("ocp-nonsaturating", (math.nan, math.nan, math.nan), (math.inf, math.inf, math.nan)),
])
def test_ocp_overflow_infinity_nan(profile, e4m3, e5m2):
    x = [1e9, math.inf, math.nan]
    for name, want in (("float8_e4m3fn", e4m3), ("float8_e5m2", e5m2)):
        got = rc.cast(x, name, profile=profile)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(rc.cast(np.negative(x), name, profile=profile)[:2],
                                      np.negative(want[:2]))


@pytest.mark.parametrize("profile", ["ocp-saturating", "ocp-nonsaturating"])
@pytest.mark.parametrize("name,mx", [("float6_e2m3fn", 7.5), ("float6_e3m2fn", 28.0),
                                     ("float4_e2m1fn", 6.0)])
def test_mx_elements_clamp_in_both_modes(profile, name, mx):
    got, fl = rc.cast([100.0, -math.inf, math.nan], name, profile=profile, flags=True)
    assert got[0] == mx and got[1] == -mx and got[2] == 0.0
    assert fl[2] == rc.Flag.INVALID


def test_ocp_profiles_round_like_the_default_inside_the_range():
    x = np.random.default_rng(0).uniform(-400, 400, 10000)
    for profile in ("ocp-saturating", "ocp-nonsaturating"):
        for mode in ("nearest_even", "toward_zero", "stochastic"):
            g = lambda: np.random.default_rng(1)                         # noqa: E731
            assert np.array_equal(rc.cast_bits(x, "float8_e4m3fn", mode, rng=g(),
                                               profile=profile),
                                  rc.cast_bits(x, "float8_e4m3fn", mode, rng=g()))


def test_registry_and_descriptions():
    assert {"softfloat-3e-8086-sse", "torch-2.13-cpu", "ml_dtypes-0.6", "ocp-saturating",
            "ocp-nonsaturating"} <= set(rc.PROFILES)
    for p in rc.PROFILES.values():
        text = p.describe()
        assert p.name in text and p.sources
        for name in p.rules:
            assert name in text
    assert rc.get_profile(None).name == "softfloat-3e-8086-sse"


def test_torch_passthrough_keeps_signalling_nans():
    snan32 = np.array([0x7F800001], dtype=np.uint32).view(np.float32)
    assert rc.cast_bits(snan32, "float32", profile="torch-2.13-cpu")[0] == 0x7F800001
    # the default conversion quiets it, as x86 does
    assert rc.cast_bits(snan32, "float32")[0] == 0x7FC00001
