"""Gradient check of a forward / backward pair against central differences (float64).

``gradcheck(f, inputs, backward)`` projects the output on a fixed random direction
``R`` (``L = sum(f(**inputs) * R)``), takes the analytic gradients ``backward(R)`` of every
input, and compares each with the central difference ``(L(x + h e_i) - L(x - h e_i)) / 2h``
element by element.  The difference of an analytic and a numerical gradient is at most
``h**2 / 6 * max|L'''|`` (truncation) plus ``2 eps |L| / h`` (evaluation error), so with
h = 1e-6 in float64 a correct gradient agrees to about 1e-9 relative; the default
tolerances (torch.autograd.gradcheck's: atol 1e-5, rtol 1e-3) are loose enough for
functions with large third derivatives and tight enough to catch any wrong formula.
Functions with kinks (relu, max pooling) must be checked away from them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gradcheck", "numerical_gradient"]


def numerical_gradient(loss, x, h=1e-6) -> np.ndarray:
    """Central differences of a scalar function ``loss(x)`` at x (float64 array)."""
    x = np.array(x, np.float64)
    g = np.empty_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        v = flat[i]
        flat[i] = v + h
        up = loss(x)
        flat[i] = v - h
        down = loss(x)
        flat[i] = v
        gf[i] = (up - down) / (2 * h)
    return g


def gradcheck(f, inputs: dict, backward, *, rng, h=1e-6, atol=1e-5, rtol=1e-3) -> dict:
    """Check analytic gradients against central differences.

    Parameters
    ----------
    f : callable
        ``f(**inputs) -> y`` (float64 array).
    inputs : dict of name -> float64 array
        The inputs to differentiate with respect to (other arguments go into f).
    backward : callable
        ``backward(dy) -> dict`` of name -> gradient for (a subset of) the inputs, for the
        forward evaluated at `inputs`.
    rng : numpy.random.Generator
        Draws the projection direction.

    Returns
    -------
    dict of name -> max |analytic - numerical|; raises AssertionError naming the input and
    the worst element when ``|a - n| > atol + rtol |n|`` somewhere.

    Examples
    --------
    >>> import numpy as np
    >>> r = gradcheck(lambda x: np.sin(x), {"x": np.array([0.3, 1.2])},
    ...               lambda dy: {"x": dy * np.cos(np.array([0.3, 1.2]))},
    ...               rng=np.random.default_rng(0))
    >>> r["x"] < 1e-8
    True
    """
    y = np.asarray(f(**inputs), np.float64)
    R = rng.standard_normal(y.shape)
    grads = backward(R)
    out = {}
    for name, g in grads.items():
        if g is None:
            continue

        def loss(v, name=name):
            return float(np.sum(np.asarray(f(**{**inputs, name: v}), np.float64) * R))
        num = numerical_gradient(loss, inputs[name], h)
        g = np.asarray(g, np.float64)
        if g.shape != num.shape:
            raise AssertionError(f"gradient of {name}: shape {g.shape} != {num.shape}")
        err = np.abs(g - num)
        bad = err > atol + rtol * np.abs(num)
        if bad.any():
            i = np.unravel_index(int(np.argmax(err - rtol * np.abs(num))), err.shape)
            raise AssertionError(f"gradient of {name} at {i}: analytic {g[i]!r}, numerical "
                                 f"{num[i]!r} ({int(bad.sum())} of {bad.size} elements off)")
        out[name] = float(err.max(initial=0.0))
    return out
