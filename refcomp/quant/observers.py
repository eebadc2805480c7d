"""Min / max observers of torch.ao.quantization, bit for bit (torch 2.13 CPU).

Small stateful objects: ``forward(x)`` records statistics of a batch and returns ``x``
unchanged; ``calculate_qparams()`` turns them into ``(scale, zero_point)`` with
:func:`refcomp.quant.qparams.calculate_qparams`.  Mirrors ``torch/ao/quantization/
observer.py`` of torch 2.13: ``MinMaxObserver.forward``, ``MovingAverageMinMaxObserver.
forward``, ``PerChannelMinMaxObserver._forward`` and ``MovingAveragePerChannelMinMaxObserver.
forward``.  All arithmetic is IEEE float32 (NumPy float32 operations are correctly rounded,
nearest even); the minima and maxima themselves are exact.

Inputs are converted to float32 first, as torch's ``x.to(min_val.dtype)``: float16 and
float32 exactly, float64 and integers rounded to nearest even by
:func:`refcomp.cast` (only the batch extremes are rounded: rounding is monotone, so
``f32(min(x)) == min(f32(x))``).  An empty batch changes nothing.  NaN propagates: a NaN
anywhere in a batch makes the running min and max NaN for good (``torch.min`` /
``torch.max`` / ``aminmax`` propagate NaN) and the qparams follow IEEE rules (scale NaN; an
affine zero point then comes from x86's ``INT32_MIN`` conversion, see
:func:`~refcomp.quant.qparams.calculate_qparams`).  The sign of a zero extreme is not
specified: torch's vectorised ``aminmax`` may return +0.0 or -0.0 when a batch's extreme is
a zero of either sign; it matters only for the sign of a float_qparams zero point of 0.

Not mirrored: ``is_dynamic`` (metadata without numeric effect) and torch's
``reduce_range`` deprecation warning.  Argument errors that torch reports as
AssertionError, NotImplementedError, IndexError or RuntimeError are ValueError here.

>>> import numpy as np
>>> obs = MinMaxObserver(dtype="qint8", qscheme="per_tensor_symmetric")
>>> _ = obs.forward(np.float32([-0.5, 2.0]))
>>> s, z = obs.calculate_qparams()
>>> s.tolist(), z.tolist()
([0.01568627543747425], [0])
"""

from __future__ import annotations

import numpy as np

from .._inputs import to_array
from ..rounding import cast
from .qparams import FLOAT32_EPS, QDtype, calculate_qparams, qparams_spec

__all__ = ["MinMaxObserver", "MovingAverageMinMaxObserver", "PerChannelMinMaxObserver",
           "MovingAveragePerChannelMinMaxObserver"]

_f32 = np.float32     # float32 arithmetic below is IEEE, round to nearest even


def _to_f32(v):
    """Values rounded to float32 as torch's ``.to(torch.float32)`` (nearest even)."""
    v = np.asarray(v)
    if v.dtype in (np.float32, np.float16):
        return v.astype(np.float32)          # exact
    return cast(v, "float32", dtype=np.float32)


def _batch(x, what="x"):
    arr = to_array(x, what)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must hold numbers (float or int), got dtype {arr.dtype}")
    return arr


def _extremes(y, axis=None):
    """Exact min and max (NaN propagates), rounded to float32 afterwards."""
    return _to_f32(np.min(y, axis=axis)), _to_f32(np.max(y, axis=axis))


def _moving_average(run, cur, c):
    """``run + c * (cur - run)``, three float32 roundings, no fused multiply-add."""
    with np.errstate(all="ignore"):          # inf - inf etc.: IEEE results, as torch
        return (run + c * (cur - run)).astype(np.float32)


class _Base:
    """Shared constructor and qparams (``UniformQuantizationObserverBase``)."""

    _per_channel = False

    def __init__(self, dtype, qscheme, reduce_range, quant_min, quant_max, eps):
        self.spec = qparams_spec(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.reduce_range = bool(reduce_range)
        if self.spec.qscheme.per_channel != self._per_channel:
            kind = "per_channel" if self._per_channel else "per_tensor"
            raise ValueError(f"{type(self).__name__}'s qscheme must be a {kind} scheme, "
                             f"got {self.spec.qscheme.value!r}")
        if self.spec.qscheme.symmetric and self.reduce_range \
                and self.spec.dtype is QDtype.QUINT8:
            raise ValueError("Cannot reduce range for symmetric quantization for quint8 "
                             f"(qscheme {self.spec.qscheme.value!r}, reduce_range=True)")
        self.reset_min_max_vals()

    @property
    def dtype(self):
        return self.spec.dtype

    @property
    def qscheme(self):
        return self.spec.qscheme

    @property
    def quant_min(self) -> int:
        return self.spec.quant_min

    @property
    def quant_max(self) -> int:
        return self.spec.quant_max

    @property
    def eps(self):
        return self.spec.eps

    def calculate_qparams(self):
        """``(scale, zero_point)`` from the running min / max.

        See :func:`refcomp.quant.qparams.calculate_qparams`: uncalibrated observers warn
        ``"must run observer before calling calculate_qparams. Returning default values."``
        and return ``([1.0], [0])``; ``min_val > max_val`` (possible only after setting
        them by hand) raises ValueError ``"min ... should be less than max ..."``.
        """
        return calculate_qparams(self.min_val, self.max_val, self.spec, stacklevel=3)

    def __call__(self, x):
        return self.forward(x)


class MinMaxObserver(_Base):
    """Running min / max of every batch (``torch.ao.quantization.MinMaxObserver``).

    Parameters
    ----------
    dtype : {"quint8", "qint8", "qint32", ...} or QDtype
    qscheme : {"per_tensor_affine", "per_tensor_symmetric"} or QScheme
    reduce_range : bool
    quant_min, quant_max : int, optional
        Custom range (both or neither); see :func:`refcomp.quant.qparams.quant_range`.
    eps : float
        Scale floor, rounded to float32 (default 2**-23).

    Attributes
    ----------
    min_val, max_val : 0-d float32 arrays
        Start at +inf / -inf (uncalibrated).

    Notes
    -----
    ``forward`` (observer.py ``MinMaxObserver.forward``): ``min_val = min(min(x),
    min_val)``, ``max_val = max(max(x), max_val)``.  A symmetric quint8 scheme with
    ``reduce_range`` is refused (torch: NotImplementedError).

    Examples
    --------
    >>> obs = MinMaxObserver()
    >>> _ = obs.forward(np.float32([0.5, 1.0])); _ = obs.forward(np.float32([-1.0]))
    >>> float(obs.min_val), float(obs.max_val)
    (-1.0, 1.0)
    """

    def __init__(self, dtype="quint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, eps=FLOAT32_EPS):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)

    def reset_min_max_vals(self):
        """Back to the uncalibrated state (+inf, -inf)."""
        self.min_val = np.array(np.inf, np.float32)
        self.max_val = np.array(-np.inf, np.float32)

    def forward(self, x):
        """Record a batch; returns `x` unchanged (any shape; empty: no update)."""
        arr = _batch(x)
        if arr.size == 0:
            return x
        cur_min, cur_max = _extremes(arr)
        self._update(cur_min, cur_max)
        return x

    def _update(self, cur_min, cur_max):
        self.min_val = np.asarray(np.minimum(cur_min, self.min_val))     # NaN propagates
        self.max_val = np.asarray(np.maximum(cur_max, self.max_val))


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of the batch min / max
    (``torch.ao.quantization.MovingAverageMinMaxObserver``).

    Parameters
    ----------
    averaging_constant : float
        ``c``, rounded to float32 (0.01 -> 0.0099999998).
    dtype, qscheme, reduce_range, quant_min, quant_max, eps
        As :class:`MinMaxObserver`.

    Notes
    -----
    observer.py ``MovingAverageMinMaxObserver.forward``: the first batch (``min_val ==
    inf and max_val == -inf``, both) sets ``min_val, max_val = min(x), max(x)``; later
    batches set ``min_val = f32(min_val + f32(c * f32(min(x) - min_val)))`` (same for
    max), three float32 roundings, no fused multiply-add.  ``c = 1`` is therefore NOT
    exactly memoryless (``m + (cur - m)`` need not equal ``cur``).  A batch whose extreme
    is infinite leaves inf in the state and NaN after the next batch, as in torch.

    Examples
    --------
    >>> obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    >>> _ = obs.forward(np.float32([1, 2])); _ = obs.forward(np.float32([3, 6]))
    >>> float(obs.min_val), float(obs.max_val)
    (2.0, 4.0)
    """

    def __init__(self, averaging_constant=0.01, dtype="quint8",
                 qscheme="per_tensor_affine", reduce_range=False, quant_min=None,
                 quant_max=None, eps=FLOAT32_EPS):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.averaging_constant = _constant(averaging_constant)

    def _update(self, cur_min, cur_max):
        if self.min_val == np.inf and self.max_val == -np.inf:
            self.min_val, self.max_val = np.asarray(cur_min), np.asarray(cur_max)
            return
        c = _f32(self.averaging_constant)
        self.min_val = np.asarray(_moving_average(self.min_val, cur_min, c))
        self.max_val = np.asarray(_moving_average(self.max_val, cur_max, c))


def _constant(c):
    if isinstance(c, bool) or not isinstance(c, (int, float, np.integer, np.floating)):
        raise TypeError(f"averaging_constant must be a number, got {c!r}")
    return float(c)


class PerChannelMinMaxObserver(_Base):
    """Running min / max per channel (``torch.ao.quantization.PerChannelMinMaxObserver``).

    Parameters
    ----------
    ch_axis : int
        The channel axis (negative counts from the end).
    dtype : QDtype or str
    qscheme : {"per_channel_affine", "per_channel_symmetric",
               "per_channel_affine_float_qparams"} or QScheme
    reduce_range, quant_min, quant_max, eps
        As :class:`MinMaxObserver`.

    Attributes
    ----------
    min_val, max_val : (C,) float32 arrays
        Empty while uncalibrated.

    Notes
    -----
    observer.py ``PerChannelMinMaxObserver._forward``: the batch is viewed as ``(C, -1)``
    with axis ``ch_axis`` first; the first batch sets the per-channel extremes, later ones
    take element-wise min / max.  A later batch with a different channel count, an input
    without the axis (0-d or ``ch_axis`` out of range) raise ValueError (torch:
    RuntimeError / IndexError).

    Examples
    --------
    >>> obs = PerChannelMinMaxObserver(ch_axis=1, dtype="qint8",
    ...                                qscheme="per_channel_symmetric")
    >>> _ = obs.forward(np.float32([[1, -4], [-2, 0.5]]))
    >>> obs.min_val.tolist(), obs.max_val.tolist()
    ([-2.0, -4.0], [1.0, 0.5])
    """

    _per_channel = True

    def __init__(self, ch_axis=0, dtype="quint8", qscheme="per_channel_affine",
                 reduce_range=False, quant_min=None, quant_max=None, eps=FLOAT32_EPS):
        if isinstance(ch_axis, bool) or not isinstance(ch_axis, (int, np.integer)):
            raise TypeError(f"ch_axis must be an integer, got {ch_axis!r}")
        self.ch_axis = int(ch_axis)
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)

    def reset_min_max_vals(self):
        """Back to the uncalibrated state (empty arrays)."""
        self.min_val = np.zeros(0, np.float32)
        self.max_val = np.zeros(0, np.float32)

    def forward(self, x):
        """Record a batch; returns `x` unchanged (empty: no update)."""
        arr = _batch(x)
        if arr.size == 0:
            return x
        if not -arr.ndim <= self.ch_axis < arr.ndim:
            raise ValueError(f"ch_axis {self.ch_axis} is out of range for an input of "
                             f"shape {arr.shape}")
        rows = np.swapaxes(arr, 0, self.ch_axis).reshape(arr.shape[self.ch_axis], -1)
        cur_min, cur_max = _extremes(rows, axis=1)            # (C,)
        if self.min_val.size and self.min_val.shape != cur_min.shape:
            raise ValueError(f"the input has {cur_min.size} channels along axis "
                             f"{self.ch_axis}, the observer has seen {self.min_val.size}")
        self._update(cur_min, cur_max)
        return x

    def _update(self, cur_min, cur_max):
        if self.min_val.size == 0 or self.max_val.size == 0:
            self.min_val, self.max_val = cur_min, cur_max
            return
        self.min_val = np.minimum(cur_min, self.min_val)
        self.max_val = np.maximum(cur_max, self.max_val)


class MovingAveragePerChannelMinMaxObserver(PerChannelMinMaxObserver):
    """Per-channel moving average of min / max
    (``torch.ao.quantization.MovingAveragePerChannelMinMaxObserver``).

    Parameters
    ----------
    averaging_constant : float
        Rounded to float32.
    ch_axis, dtype, qscheme, reduce_range, quant_min, quant_max, eps
        As :class:`PerChannelMinMaxObserver`.

    Notes
    -----
    observer.py ``MovingAveragePerChannelMinMaxObserver.forward``: the first batch (empty
    state) sets the extremes; later ones apply, per channel, the float32 formula of
    :class:`MovingAverageMinMaxObserver` (no fused multiply-add).

    Examples
    --------
    >>> obs = MovingAveragePerChannelMinMaxObserver(averaging_constant=0.5)
    >>> _ = obs.forward(np.float32([[0, 2], [1, 1]]))
    >>> _ = obs.forward(np.float32([[2, 4], [1, 3]]))
    >>> obs.min_val.tolist(), obs.max_val.tolist()
    ([1.0, 1.0], [3.0, 2.0])
    """

    def __init__(self, averaging_constant=0.01, ch_axis=0, dtype="quint8",
                 qscheme="per_channel_affine", reduce_range=False, quant_min=None,
                 quant_max=None, eps=FLOAT32_EPS):
        super().__init__(ch_axis, dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.averaging_constant = _constant(averaging_constant)

    def _update(self, cur_min, cur_max):
        if self.min_val.size == 0 or self.max_val.size == 0:
            self.min_val, self.max_val = cur_min, cur_max
            return
        c = _f32(self.averaging_constant)
        self.min_val = _moving_average(self.min_val, cur_min, c)
        self.max_val = _moving_average(self.max_val, cur_max, c)
