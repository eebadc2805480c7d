"""Named backend profiles: the conventions of one backend, pinned to a version.

A profile fixes, per target format, what IEEE 754 leaves open or what a backend does
differently (a :class:`~refcomp.rounding.params.FormatRule`), and which rounding modes the
backend offers.  ``cast(x, fmt, profile="torch-2.13-cpu")`` then reproduces
``torch.from_numpy(x).to(dtype)`` bit for bit (NaN payload bits aside where the backend's
own NaN bits are not deterministic; see ``FormatRule.nan_bits``).  Every rule below was
measured against the installed backend and is re-checked by ``tests/test_peers.py``
and ``scripts/sweep_float32.py``; the source of each is cited in its profile's `sources`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .modes import Overflow, Rounding
from .params import DEFAULT_RULE, FormatRule

__all__ = ["Profile", "PROFILES", "get_profile", "DEFAULT_PROFILE"]


@dataclass(frozen=True)
class Profile:
    """Conventions of a backend.

    Attributes
    ----------
    name : str             e.g. ``"torch-2.13-cpu"``
    backend, version : str the backend and the version whose behaviour this pins
    sources : tuple[str]   where each rule comes from
    roundings : frozenset  rounding modes the backend offers
    rules : dict           format name -> FormatRule; formats not listed are unsupported
                           unless `default` is given
    default : FormatRule or None
    """

    name: str
    backend: str
    version: str
    sources: tuple
    roundings: frozenset
    rules: dict = field(default_factory=dict)
    default: FormatRule | None = None

    def rule_for(self, fmt) -> FormatRule:
        """The FormatRule for a format, or ValueError if the backend lacks the format."""
        rule = self.rules.get(fmt.name, self.default)
        if rule is None:
            raise ValueError(f"profile {self.name!r} has no {fmt.name!r}: {self.backend} "
                             f"{self.version} supports {', '.join(sorted(self.rules))}")
        return rule

    def check_rounding(self, rounding: Rounding) -> None:
        if rounding not in self.roundings:
            raise ValueError(f"profile {self.name!r}: {self.backend} {self.version} casts with "
                             f"{', '.join(sorted(r.value for r in self.roundings))} only, "
                             f"not {rounding.value!r}")

    def describe(self) -> str:
        lines = [f"{self.name}: {self.backend} {self.version}",
                 f"  roundings: {', '.join(sorted(r.value for r in self.roundings))}"]
        for name, rule in sorted(self.rules.items()):
            lines.append(f"  {name}: {_rule_text(rule)}")
        if self.default is not None:
            lines.append(f"  any other format: {_rule_text(self.default)}")
        lines += [f"  source: {s}" for s in self.sources]
        return "\n".join(lines)


def _rule_text(rule: FormatRule) -> str:
    parts = [f"overflow={rule.overflow.value if rule.overflow else 'caller (default ieee)'}",
             f"inf->{rule.inf}", f"nan={rule.nan}"]
    if rule.via_float32:
        parts.append("float64 inputs rounded to float32 first")
    if rule.negative != "nan":
        parts.append(f"negative->{rule.negative}")
    if rule.zero != "nan":
        parts.append(f"zero->{rule.zero}")
    if rule.passthrough:
        parts.append("inputs of this dtype pass through unchanged")
    if rule.e8m0_c10:
        parts.append("float32 subnormals: 2**-126 iff x > 2**-127")
    if not rule.nan_bits:
        parts.append("NaN bits not deterministic (compare NaN-ness)")
    return ", ".join(parts)


_ALL = frozenset(Rounding)
_DET = frozenset(r for r in Rounding if r.deterministic)
_RNE = frozenset({Rounding.NEAREST_EVEN})
_SAT, _IEEE = Overflow.SATURATE, Overflow.IEEE

#: refcomp's own conventions (used when no profile is given)
DEFAULT_PROFILE = Profile(
    name="softfloat-3e-8086-sse", backend="IEEE 754-2019 with x86 SSE conventions",
    version="Berkeley SoftFloat 3e, 8086-SSE specialisation",
    sources=(
        "IEEE 754-2019 sections 4.3 (rounding), 5.4.2 (conversions), 6.2 (NaNs), "
        "7 (exceptions)",
        "Berkeley SoftFloat 3e, source/8086-SSE/specialize.h and s_propagateNaNF*UI.c "
        "(default NaN, NaN propagation, integer results of invalid conversions)",
        "Intel SDM vol. 1 section 4.8.3.5 and 11.5.2 (QNaN floating-point indefinite, "
        "SNaN quieting on conversion)",
    ),
    roundings=_ALL, default=DEFAULT_RULE)

_TORCH_SOURCES = (
    "measured: torch 2.13.0+cpu Tensor.to(dtype) on x86-64 (tests/test_peers.py, "
    "scripts/sweep_float32.py)",
    "c10/util/Float8_e4m3fn.h fp8e4m3fn_from_fp32_value and its saturating CPU cast kernel",
    "c10/util/Float8_e5m2.h, Float8_e4m3fnuz.h, Float8_e5m2fnuz.h: fp32 -> fp8 by RNE on "
    "the float32 bits; fnuz overflow, inf and NaN give 0x80",
    "c10/util/Float8_e8m0fnu.h fp8e8m0fnu_from_fp32_value: exponent-domain RNE on the "
    "float32 bits (guard/round/sticky, implicit bit as LSB), sign ignored, NaN/inf -> 0xFF",
    "aten CPU copy kernels convert float64 to reduced-precision types through float32; "
    "Tensor.to(its own dtype) returns the tensor itself (no conversion, sNaNs kept)",
)

PROFILES: dict[str, Profile] = {}


def _register(p: Profile) -> Profile:
    PROFILES[p.name] = p
    return p


_register(DEFAULT_PROFILE)

_register(Profile(
    name="torch-2.13-cpu", backend="PyTorch (CPU)", version="2.13.0",
    sources=_TORCH_SOURCES, roundings=_RNE,
    rules={
        "float64": FormatRule(overflow=_IEEE, passthrough=True),
        "float32": FormatRule(overflow=_IEEE, passthrough=True),
        "float16": FormatRule(overflow=_IEEE, via_float32=True, nan_bits=False,
                              passthrough=True),
        "bfloat16": FormatRule(overflow=_IEEE, via_float32=True, nan_bits=False),
        "float8_e4m3fn": FormatRule(overflow=_SAT, inf="max", via_float32=True),
        "float8_e4m3fnuz": FormatRule(overflow=_IEEE, via_float32=True),
        "float8_e5m2": FormatRule(overflow=_IEEE, nan="all_ones", via_float32=True),
        "float8_e5m2fnuz": FormatRule(overflow=_IEEE, via_float32=True),
        "float8_e8m0fnu": FormatRule(overflow=_IEEE, negative="abs", zero="min",
                                     e8m0_c10=True, via_float32=True),
    }))

_register(Profile(
    name="ml_dtypes-0.6", backend="ml_dtypes", version="0.6.0",
    sources=(
        "measured: ml_dtypes 0.6.0 ndarray.astype on x86-64 (tests/test_peers.py, "
        "scripts/sweep_float32.py)",
        "ml_dtypes/include/float8.h ConvertImpl: RNE, float64 sources go through float32; "
        "non-saturating: overflow gives inf or NaN; NaN gives the canonical quiet NaN",
        "ml_dtypes/include/mxfloat.h (float6/float4): overflow and infinity saturate; a "
        "NaN becomes a zero with the opposite sign",
        "ml_dtypes float8_e8m0fnu: zero and negative values give NaN; float32 subnormals "
        "round in the exponent domain as torch's",
    ),
    roundings=_RNE,
    rules={
        "bfloat16": FormatRule(overflow=_IEEE, nan="canonical", via_float32=True),
        "float8_e4m3fn": FormatRule(overflow=_IEEE, via_float32=True),
        "float8_e4m3fnuz": FormatRule(overflow=_IEEE, via_float32=True),
        "float8_e4m3": FormatRule(overflow=_IEEE, nan="canonical", via_float32=True),
        "float8_e4m3b11fnuz": FormatRule(overflow=_IEEE, via_float32=True),
        "float8_e5m2": FormatRule(overflow=_IEEE, nan="canonical", via_float32=True),
        "float8_e5m2fnuz": FormatRule(overflow=_IEEE, via_float32=True),
        "float8_e3m4": FormatRule(overflow=_IEEE, nan="canonical", via_float32=True),
        "float8_e8m0fnu": FormatRule(overflow=_IEEE, e8m0_c10=True, via_float32=True),
        "float6_e2m3fn": FormatRule(overflow=_SAT, inf="max", nan="zero_flipped",
                                    via_float32=True),
        "float6_e3m2fn": FormatRule(overflow=_SAT, inf="max", nan="zero_flipped",
                                    via_float32=True),
        "float4_e2m1fn": FormatRule(overflow=_SAT, inf="max", nan="zero_flipped",
                                    via_float32=True),
    }))


_OCP_SOURCES = (
    "OCP 8-bit Floating Point Specification (OFP8) rev 1.0 (2023), conversion rules: round "
    "to nearest even first, then compare with the largest normal; saturating mode clamps "
    "overflow and +-Inf to +-max normal, non-saturating mode gives Inf (E5M2) or NaN (E4M3); "
    "NaN stays NaN (its encoding is implementation-defined: refcomp keeps x86 payload rules)",
    "OCP Microscaling Formats (MX) v1.0 section 6.3: FP6/FP4 element conversions clamp to "
    "the max normal, keeping the sign (they have no Inf or NaN; a NaN input is "
    "implementation-defined: refcomp gives a zero of its sign and raises invalid); section "
    "5.4.1 E8M0 (conversion into E8M0 is not specified: refcomp's default rules)",
    "confirmed against secondary sources (ONNX PR #4805 discussion, QEMU's OFP8 softfloat "
    "patch); the spec text itself was not available to check section numbers",
)
_MX = {"float6_e2m3fn": FormatRule(overflow=_SAT, inf="max"),
       "float6_e3m2fn": FormatRule(overflow=_SAT, inf="max"),
       "float4_e2m1fn": FormatRule(overflow=_SAT, inf="max"),
       "float8_e8m0fnu": DEFAULT_RULE}

_register(Profile(
    name="ocp-saturating", backend="OCP OFP8 / MX", version="OFP8 1.0, MX 1.0",
    sources=_OCP_SOURCES, roundings=_ALL,
    rules={"float8_e4m3fn": FormatRule(overflow=_SAT, inf="max"),
           "float8_e5m2": FormatRule(overflow=_SAT, inf="max"), **_MX}))

_register(Profile(
    name="ocp-nonsaturating", backend="OCP OFP8 / MX", version="OFP8 1.0, MX 1.0",
    sources=_OCP_SOURCES, roundings=_ALL,
    rules={"float8_e4m3fn": FormatRule(overflow=_IEEE),
           "float8_e5m2": FormatRule(overflow=_IEEE), **_MX}))


def get_profile(profile) -> Profile:
    """A Profile by name (or the Profile itself); None gives the default conventions."""
    if profile is None:
        return DEFAULT_PROFILE
    if isinstance(profile, Profile):
        return profile
    if not isinstance(profile, str):
        raise TypeError(f"profile must be a name or a Profile, got {profile!r}")
    if profile in PROFILES:
        return PROFILES[profile]
    close = difflib.get_close_matches(profile, list(PROFILES), n=2, cutoff=0.4)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown profile {profile!r}{hint} (known: {', '.join(PROFILES)})")
