"""Weight initialisation with torch 2.13's rules and defaults, from an explicit NumPy Generator.

The *distributions* are torch's (torch/nn/init.py and the ``reset_parameters`` of
nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.LayerNorm): the same fans, gains, bounds and
standard deviations, computed with the same Python-double formulas, so a bound here is
the very float torch passes to ``uniform_``.  The random *streams* are NumPy's (torch's
generator is not reproduced): values are drawn in float64 by ``rng.uniform`` /
``rng.normal`` and rounded once into `fmt` (default float32) by :func:`refcomp.cast`.

Every function takes the generator first; there is no unseeded randomness.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..formats import catalog
from ..rounding.cast import cast

__all__ = ["calculate_gain", "fan_in_and_fan_out", "kaiming_std", "xavier_std", "uniform",
           "normal", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal",
           "linear_init", "conv2d_init", "batchnorm_init", "layernorm_init", "LayerInit",
           "BatchNormInit"]

_LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
               "conv_transpose2d", "conv_transpose3d")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """torch.nn.init.calculate_gain: 1 (linear, conv*, sigmoid), 5/3 (tanh), sqrt(2)
    (relu), ``sqrt(2 / (1 + slope**2))`` (leaky_relu, slope `param`, default 0.01), 3/4
    (selu).

    Examples
    --------
    >>> calculate_gain("relu"), calculate_gain("leaky_relu", 0.2)
    (1.4142135623730951, 1.3867504905630728)
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param!r} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity!r}")


def _shape(shape) -> tuple:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"shape {shape!r}: every size must be an integer >= 0, got {s!r}")
    return tuple(int(s) for s in shape)


def fan_in_and_fan_out(shape) -> tuple[int, int]:
    """torch's ``_calculate_fan_in_and_fan_out`` for a weight of `shape` (out, in, *k):
    ``fan_in = in * prod(k)``, ``fan_out = out * prod(k)``.

    Examples
    --------
    >>> fan_in_and_fan_out((16, 3, 5, 5))
    (75, 400)
    """
    shape = _shape(shape)
    if len(shape) < 2:
        raise ValueError(f"Fan in and fan out can not be computed for a shape with fewer "
                         f"than 2 dimensions, got {shape!r}")
    receptive = 1
    for s in shape[2:]:
        receptive *= s
    return shape[1] * receptive, shape[0] * receptive


def kaiming_std(shape, a=0, mode="fan_in", nonlinearity="leaky_relu") -> float:
    """``gain / sqrt(fan)`` of torch's kaiming_uniform_ / kaiming_normal_.

    Examples
    --------
    >>> kaiming_std((10, 4), nonlinearity="relu")     # sqrt(2) / sqrt(4)
    0.7071067811865476
    """
    if not isinstance(mode, str) or mode.lower() not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode!r} not supported, please use one of "
                         "['fan_in', 'fan_out']")
    fan_in, fan_out = fan_in_and_fan_out(shape)
    fan = fan_in if mode.lower() == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def xavier_std(shape, gain=1.0) -> float:
    """``gain * sqrt(2 / (fan_in + fan_out))`` of torch's xavier_uniform_ / xavier_normal_.

    Examples
    --------
    >>> xavier_std((3, 5))
    0.5
    """
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def _rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (no unseeded randomness), "
                        f"got {rng!r}")
    return rng


def _round(x, fmt) -> np.ndarray:
    return np.asarray(cast(np.asarray(x, np.float64), catalog.get(fmt)), np.float64)


def uniform(rng, shape, low=0.0, high=1.0, fmt="float32") -> np.ndarray:
    """Samples of U(low, high) (float64 draws) rounded into `fmt`.

    Examples
    --------
    >>> import numpy as np
    >>> x = uniform(np.random.default_rng(0), (2, 3), -1.0, 1.0, fmt="bfloat16")
    >>> x.shape, bool(np.all(np.abs(x) <= 1.0))
    ((2, 3), True)
    """
    shape = _shape(shape)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"uniform needs finite low <= high, got low={low!r}, high={high!r}")
    return _round(_rng(rng).uniform(low, high, shape), fmt)


def normal(rng, shape, mean=0.0, std=1.0, fmt="float32") -> np.ndarray:
    """Samples of N(mean, std**2) (float64 draws) rounded into `fmt`.

    Examples
    --------
    >>> import numpy as np
    >>> normal(np.random.default_rng(0), 4, std=0.0)
    array([0., 0., 0., 0.])
    """
    shape = _shape(shape)
    if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
        raise ValueError(f"normal needs a finite mean and std >= 0, got mean={mean!r}, "
                         f"std={std!r}")
    return _round(_rng(rng).normal(mean, std, shape), fmt)


def _empty(shape):                 # torch: "Initializing zero-element tensors is a no-op"
    return np.zeros(_shape(shape)) if 0 in _shape(shape) else None


def kaiming_uniform(rng, shape, a=0, mode="fan_in", nonlinearity="leaky_relu",
                    fmt="float32") -> np.ndarray:
    """torch.nn.init.kaiming_uniform_: U(-b, b), ``b = sqrt(3) * kaiming_std``.

    Examples
    --------
    >>> import numpy as np
    >>> w = kaiming_uniform(np.random.default_rng(0), (64, 9), nonlinearity="relu")
    >>> bool(np.abs(w).max() <= np.sqrt(3.0) * kaiming_std((64, 9), nonlinearity="relu"))
    True
    """
    e = _empty(shape)
    if e is not None:
        return e
    bound = math.sqrt(3.0) * kaiming_std(shape, a, mode, nonlinearity)
    return uniform(rng, shape, -bound, bound, fmt)


def kaiming_normal(rng, shape, a=0, mode="fan_in", nonlinearity="leaky_relu",
                   fmt="float32") -> np.ndarray:
    """torch.nn.init.kaiming_normal_: N(0, kaiming_std**2).

    Examples
    --------
    >>> import numpy as np
    >>> kaiming_normal(np.random.default_rng(0), (3, 4)).shape
    (3, 4)
    """
    e = _empty(shape)
    if e is not None:
        return e
    return normal(rng, shape, 0.0, kaiming_std(shape, a, mode, nonlinearity), fmt)


def xavier_uniform(rng, shape, gain=1.0, fmt="float32") -> np.ndarray:
    """torch.nn.init.xavier_uniform_: U(-a, a), ``a = sqrt(3) * xavier_std``.

    Examples
    --------
    >>> import numpy as np
    >>> bool(np.abs(xavier_uniform(np.random.default_rng(0), (3, 5))).max() <= 0.5 * 3 ** .5)
    True
    """
    a = math.sqrt(3.0) * xavier_std(shape, gain)
    return uniform(rng, shape, -a, a, fmt)


def xavier_normal(rng, shape, gain=1.0, fmt="float32") -> np.ndarray:
    """torch.nn.init.xavier_normal_: N(0, xavier_std**2).

    Examples
    --------
    >>> import numpy as np
    >>> xavier_normal(np.random.default_rng(0), (2, 2), fmt="float16").dtype
    dtype('float64')
    """
    return normal(rng, shape, 0.0, xavier_std(shape, gain), fmt)


class LayerInit(NamedTuple):
    """Initial ``weight`` and ``bias`` (None without bias) of a layer, float64 values."""

    weight: np.ndarray
    bias: np.ndarray | None


class BatchNormInit(NamedTuple):
    """Initial affine parameters and running statistics of a batch-norm layer."""

    weight: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray


def _bias_bound(weight_shape) -> float:
    fan_in, _ = fan_in_and_fan_out(weight_shape)
    return 1 / math.sqrt(fan_in) if fan_in > 0 else 0


def _default_layer(rng, wshape, bias, fmt) -> LayerInit:
    _rng(rng)
    w = kaiming_uniform(rng, wshape, a=math.sqrt(5), fmt=fmt)
    if not bias:
        return LayerInit(w, None)
    b = _bias_bound(wshape)
    return LayerInit(w, uniform(rng, wshape[0], -b, b, fmt))


def linear_init(rng, in_features: int, out_features: int, bias: bool = True,
                fmt="float32") -> LayerInit:
    """nn.Linear's reset_parameters: weight (out, in) from kaiming_uniform with
    ``a = sqrt(5)`` (bound ``sqrt(6 / ((1 + 5) * in))``, about ``1 / sqrt(in)``), bias from
    U(-1/sqrt(in), 1/sqrt(in)).

    Examples
    --------
    >>> import numpy as np
    >>> w, b = linear_init(np.random.default_rng(0), 4, 3)
    >>> w.shape, b.shape, bool(np.abs(b).max() <= 0.5)
    ((3, 4), (3,), True)
    """
    return _default_layer(rng, _shape((out_features, in_features)), bias, fmt)


def conv2d_init(rng, in_channels: int, out_channels: int, kernel_size, groups: int = 1,
                bias: bool = True, fmt="float32") -> LayerInit:
    """nn.Conv2d's reset_parameters: weight (out, in / groups, kh, kw) as
    :func:`linear_init` with ``fan_in = in / groups * kh * kw``.

    Examples
    --------
    >>> import numpy as np
    >>> w, b = conv2d_init(np.random.default_rng(0), 4, 8, 3, groups=2)
    >>> w.shape, b.shape
    ((8, 2, 3, 3), (8,))
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, (int, np.integer)) \
        else tuple(kernel_size)
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups <= 0:
        raise ValueError(f"groups={groups!r} must be a positive integer")
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0 \
                or v % groups:
            raise ValueError(f"{name}={v!r} must be a positive multiple of groups={groups!r}")
    return _default_layer(rng, _shape((out_channels, in_channels // groups, kh, kw)), bias,
                          fmt)


def batchnorm_init(num_features: int, fmt="float32") -> BatchNormInit:
    """nn.BatchNorm*d defaults: weight 1, bias 0, running_mean 0, running_var 1.

    Examples
    --------
    >>> batchnorm_init(2).running_var
    array([1., 1.])
    """
    (n,) = _shape((num_features,))
    one, zero = _round(np.ones(n), fmt), _round(np.zeros(n), fmt)
    return BatchNormInit(one, zero, zero.copy(), one.copy())


def layernorm_init(normalized_shape, bias: bool = True, fmt="float32") -> LayerInit:
    """nn.LayerNorm defaults: weight 1, bias 0, of `normalized_shape`.

    Examples
    --------
    >>> layernorm_init((2, 3)).weight.shape
    (2, 3)
    """
    shape = _shape(normalized_shape)
    return LayerInit(_round(np.ones(shape), fmt), _round(np.zeros(shape), fmt) if bias
                     else None)
