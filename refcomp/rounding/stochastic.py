"""Exact stochastic-rounding decisions that 64 random bits cannot settle.

The rule (see :mod:`refcomp.rounding.core`): with ``F`` the exact discarded fraction of an
ulp and ``U = 0.w1 w2 w3 ...`` uniform, round away from zero iff ``F + U >= 1``, so that
``P(away) = F`` exactly.  Element i's first word ``w1`` is the i-th output of SplitMix64
seeded with one key drawn from the caller's generator (:func:`words`); a bijection of a
uniform key, so each ``w1`` is uniform.  The kernels settle an element with ``w1`` unless the
exact fraction has more than 64 significant bits and ``F + w1`` lands within the window
its unknown bits can reach.  Those rare elements are decided here, with exact rational
arithmetic (and exact comparisons for square roots), drawing further 64-bit words from the
caller's generator -- after all the elements' first words, in increasing element order
(C order), one word at a time per element.  This keeps results independent of how the
work is chunked, so the same seed gives the same result everywhere.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = ["Sqrt", "decide", "words", "words_at", "splitmix64"]

_TWO64 = 1 << 64
_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(state):
    """SplitMix64's output function (Steele, Lea, Flood, OOPSLA 2014) on uint64 states."""
    z = np.asarray(state, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def words_at(key: int, idx) -> np.ndarray:
    """The stochastic-rounding words of elements ``idx``: SplitMix64 outputs i+1 of key."""
    idx = np.asarray(idx, dtype=np.uint64)
    return splitmix64(np.uint64(key) + (idx + np.uint64(1)) * _GAMMA)


def words(key: int, start: int, count: int) -> np.ndarray:
    """Words of elements ``start .. start+count-1``."""
    return words_at(key, np.arange(start, start + count, dtype=np.uint64))


class Sqrt:
    """The exact square root of a nonnegative Fraction, comparable with Fractions."""

    __slots__ = ("q",)

    def __init__(self, q: Fraction):
        if q < 0:
            raise ValueError("Sqrt of a negative number")
        self.q = Fraction(q)

    def cmp(self, t: Fraction) -> int:
        """sign(sqrt(q) - t), exactly."""
        if t < 0:
            return 1
        d = self.q - t * t
        return (d > 0) - (d < 0)


def _cmp(x, t: Fraction) -> int:
    if isinstance(x, Sqrt):
        return x.cmp(t)
    d = x - t
    return (d > 0) - (d < 0)


def decide(magnitudes, qes, words, rng: np.random.Generator) -> np.ndarray:
    """Decide ambiguous stochastic roundings exactly.

    Parameters
    ----------
    magnitudes : sequence of Fraction or Sqrt
        Exact magnitudes |x| of the ambiguous elements, in increasing element order.
    qes : sequence of int
        Quantum exponent each is rounded to (the result is a multiple of 2**qe).
    words : sequence of int
        Each element's first random word w1.
    rng : numpy.random.Generator
        Source of the further words (``rng.bit_generator.random_raw``).

    Returns
    -------
    numpy.ndarray of bool: True where the element rounds away from zero.
    """
    out = np.zeros(len(magnitudes), dtype=bool)
    for i, (x, qe, w1) in enumerate(zip(magnitudes, qes, words)):
        quantum = Fraction(2) ** int(qe)
        n = _floor_div(x, quantum)
        # U lies in [lo, lo + width); round up iff x >= (n + 1 - U) * quantum
        lo = Fraction(int(w1), _TWO64)
        width = Fraction(1, _TWO64)
        while True:
            if _cmp(x, (n + 1 - lo) * quantum) >= 0:
                out[i] = True
                break
            if _cmp(x, (n + 1 - lo - width) * quantum) <= 0:
                break
            width /= _TWO64
            lo += int(rng.bit_generator.random_raw()) * width
    return out


def _floor_div(x, quantum: Fraction) -> int:
    """floor(x / quantum) for a Fraction or Sqrt x >= 0."""
    if not isinstance(x, Sqrt):
        return int(x // quantum)
    # floor(sqrt(q) / quantum) = isqrt(floor(q / quantum**2)) for q >= 0
    from math import isqrt
    return isqrt(int(x.q / (quantum * quantum)))
