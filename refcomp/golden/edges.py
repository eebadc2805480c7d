"""Edge-heavy input values for a target format (used to build golden suites).

For a target format the interesting inputs sit where rounding decides something: the
values of the format themselves, the midpoints between neighbours (ties), one float64 step
either side of each midpoint, the subnormal and normal boundaries, the overflow threshold
(max finite plus half an ulp) and its neighbours, signed zeros, infinities and NaNs.
Everything is derived from the format's codes with exact float64 arithmetic; no value is
rounded here (the core rounds them later, into the case's source format).
"""

from __future__ import annotations

import numpy as np

from ..formats.floatformat import FloatFormat

__all__ = ["edge_values", "special_values"]


def _codes(fmt: FloatFormat, rng: np.random.Generator, n_random: int) -> np.ndarray:
    top = fmt.max_code
    one = (fmt.bias << fmt.man_bits) if fmt.bias >= 0 else 0
    normal = 1 << fmt.man_bits
    picks = [0, 1, 2, 3, normal - 2, normal - 1, normal, normal + 1, one - 1, one, one + 1,
             top - 3, top - 2, top - 1, top]
    picks += rng.integers(0, top + 1, n_random, dtype=np.uint64).tolist()
    return np.unique(np.array([c for c in picks if 0 <= c <= top], dtype=np.uint64))


def special_values() -> np.ndarray:
    """±0, ±inf, a quiet NaN of each sign and a signalling NaN, as float64."""
    bits = np.array([0x7FF8000000000000, 0xFFF8000000000000, 0x7FF4000000000000],
                    dtype=np.uint64)
    return np.concatenate([[0.0, -0.0, np.inf, -np.inf], bits.view(np.float64)])


def edge_values(fmt: FloatFormat, rng: np.random.Generator, n_random: int = 8) -> np.ndarray:
    """Both signs of: codes, midpoints, midpoints ± one float64 step, overflow threshold."""
    codes = _codes(fmt, rng, n_random)
    v = fmt.decode(codes)
    nxt = codes + np.uint64(1)
    has_next = nxt <= np.uint64(fmt.max_code)
    w = fmt.decode(np.where(has_next, nxt, codes))
    out = [v]
    if fmt.precision < 53:
        mid = np.where(has_next, v + (w - v) / 2, v)            # exact: precision < 53
        # the overflow threshold: half an ulp above max finite
        ulp_max = fmt.max_finite - float(fmt.decode(np.uint64(fmt.max_code - 1)))
        mid = np.append(mid, fmt.max_finite + ulp_max / 2)
        out += [mid, np.nextafter(mid, np.inf), np.nextafter(mid, -np.inf)]
        if fmt.has_zero:
            out.append(np.array([fmt.min_subnormal / 2, fmt.min_subnormal / 4,
                                 fmt.min_normal / 2]))
    else:
        with np.errstate(over="ignore"):
            out += [np.nextafter(v, np.inf), np.nextafter(v, -np.inf)]
    out.append(np.array([2 * fmt.max_finite, 1e300, 1e-300, 5e-324]))
    mag = np.concatenate(out)
    mag = mag[np.isfinite(mag) & (mag >= 0)]
    vals = np.concatenate([mag, -mag, special_values()])
    _, idx = np.unique(vals.view(np.uint64), return_index=True)
    return vals[np.sort(idx)]
