"""HistogramObserver of torch.ao.quantization, bit for bit (torch 2.13 CPU).

``forward`` keeps a float32 histogram of everything observed over a running [min, max],
re-binning the old histogram when the range grows; ``calculate_qparams`` searches the
histogram for the [min, max] that minimises an L2 quantization-error estimate, then applies
the MinMax rule (:func:`refcomp.quant.qparams.calculate_qparams`).  Mirrors
``torch/ao/quantization/observer.py`` (``HistogramObserver``: ``forward``,
``_combine_histograms``, ``_upscale_histogram``, ``_non_linear_param_search``,
``_compute_quantization_error``) and the ATen CPU kernels it calls: ``torch.histc``
(``aten/src/ATen/native/Histogram.cpp`` ``histc_select_outer_bin_edges``,
``native/cpu/HistogramKernel.cpp`` LINEAR_INTERPOLATION), ``torch.linspace``
(``native/cpu/RangeFactoriesKernel.cpp``), ``torch.sum`` (``native/cpu/SumKernel.cpp``
``cascade_sum``), ``torch.cumsum`` (double accumulator), ``torch.bincount`` with float32
weights (sequential float32 accumulation) and ``torch.div(rounding_mode="floor")``
(``c10::div_floor_floating``).

Two results depend on how ATen was compiled for the CPU (``ATEN_CPU_CAPABILITY``), named by
:class:`CpuCapability`: AVX2 / AVX-512 builds contract linspace's ``start + step * i`` into
a fused multiply-add (one rounding; :func:`refcomp.ops.fma`), the ``default`` build rounds
twice; and ``torch.sum`` works in lanes of 8 (default, AVX2) or 16 (AVX-512) floats.  The
capability changes the histogram after a range growth (and so, rarely, the qparams).

Every other float32 operation is NumPy float32 arithmetic, which is IEEE (correctly
rounded, nearest even), as is NumPy's float64 -> float32 conversion of Python floats;
torch compares float32 tensors with Python floats after rounding the float to float32,
and so does this module.  ``torch.sum`` is modelled single-threaded: for ``bins >= 32768``
torch's result depends on its thread count (match it with ``torch.set_num_threads(1)``).

>>> import numpy as np
>>> obs = HistogramObserver(bins=64)
>>> _ = obs.forward(np.linspace(-1, 3, 101, dtype=np.float32))
>>> s, z = obs.calculate_qparams()
>>> s.tolist(), z.tolist()
([0.015441176481544971], [65])
"""

from __future__ import annotations

import enum
import warnings

import numpy as np

from .._inputs import to_array
from ..ops.arith import fma
from .qparams import FLOAT32_EPS, QDtype, calculate_qparams, qparams_spec
from .torchsum import torch_sum_f32

__all__ = ["HistogramObserver", "CpuCapability", "histc", "linspace", "torch_sum"]

_f32 = np.float32     # IEEE float32 arithmetic / float64 -> float32 conversion (RNE)

#: torch's UserWarning (a run of spaces comes from a backslash line continuation)
HISTOGRAM_UNCALIBRATED_WARNING = ("must run observer before calling calculate_qparams."
                                  + " " * 36 + "Returning default scale and zero point ")
INF_WARNING = "torch.inf detected in input tensor, ignoring input"


class CpuCapability(enum.Enum):
    """ATen's CPU kernel build (``torch.backends.cpu.get_cpu_capability()``)."""

    DEFAULT = "default"
    AVX2 = "avx2"
    AVX512 = "avx512"

    @property
    def fma(self) -> bool:
        """Whether ``a * b + c`` in ``native/cpu`` kernels is one fused multiply-add."""
        return self is not CpuCapability.DEFAULT

    @property
    def vector_width(self) -> int:
        """``Vectorized<float>::size()``: 16 on AVX-512, else 8."""
        return 16 if self is CpuCapability.AVX512 else 8


def _capability(value) -> CpuCapability:
    if isinstance(value, CpuCapability):
        return value
    try:
        return CpuCapability(str(value).lower())
    except ValueError:
        raise ValueError(f"unknown CPU capability {value!r}; expected one of "
                         f"{[c.value for c in CpuCapability]}") from None


def torch_sum(x, capability="avx2") -> np.float32:
    """``torch.sum`` of a contiguous float32 vector on one CPU thread (``cascade_sum``).

    Parameters
    ----------
    x : (N,) float32
    capability : CpuCapability or str
        Sets the lane count W (8, or 16 on AVX-512).

    Notes
    -----
    ``N < W``: a scalar cascade; otherwise the first ``(N // W) * W`` values are summed in
    W lanes by a 4-way interleaved, 4-level cascade, then a float32 accumulator starting
    at 0 adds the scalar tail in order, then the W lanes in order.  The result is added to
    0 (so -0.0 becomes +0.0).  Exact for torch only with one thread when N >= 32768.

    Examples
    --------
    >>> float(torch_sum(np.float32([1e8, 1, -1e8, 1])))
    1.0
    """
    x = np.ascontiguousarray(x, np.float32).ravel()
    return torch_sum_f32(x, _capability(capability).vector_width)


def linspace(start, end, steps, capability="avx2"):
    """float32 ``torch.linspace(start, end, steps)`` (RangeFactoriesKernel.cpp).

    ``step = f32(f32(end - start) / f32(steps - 1))``; index ``i < steps // 2`` gives
    ``start + step * i``, the others ``end - step * (steps - 1 - i)``: one fused
    multiply-add on AVX2 / AVX-512 builds, two roundings on the default build.  `start`,
    `end` must be float32 values; ``2 <= steps <= 2**24``.

    Examples
    --------
    >>> linspace(0, 1, 5).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    start, end = _f32(start), _f32(end)
    if not 2 <= steps <= 2 ** 24:
        raise ValueError(f"steps must be in [2, 2**24], got {steps}")
    with np.errstate(all="ignore"):
        step = _f32((end - start) / _f32(steps - 1))
        half = steps // 2
        up = np.arange(half, dtype=np.float32)                  # i < steps // 2
        down = np.arange(steps - 1 - half, -1, -1, dtype=np.float32)   # steps - 1 - i
        if _capability(capability).fma:
            lo = fma(step, up, start, "float32", dtype=np.float32)
            hi = fma(-step, down, end, "float32", dtype=np.float32)
        else:
            lo = start + step * up
            hi = end - step * down
    return np.concatenate([lo, hi]).astype(np.float32)


def histc(x, bins, lo, hi):
    """float32 ``torch.histc(x, bins, min=lo, max=hi)`` (Histogram.cpp, HistogramKernel.cpp).

    If ``lo == hi`` the range is x's [min, max]; if still equal it widens to
    ``[min(nextafter(f32(lo), -inf), lo - 1), max(nextafter(f32(hi), +inf), hi + 1)]`` in
    float64.  The outer edges are the first and last values of the float32 linspace of
    ``bins + 1`` edges (so a range whose width overflows float32 has NaN edges and counts
    nothing).  Elements outside the edges and NaN are skipped; the others go to bin
    ``int(f32(f32(f32(x - left) * f32(bins)) / f32(right - left)))``, ``bins -> bins - 1``.
    Counts are float32.  A non-finite range is a ValueError (torch: RuntimeError).

    Examples
    --------
    >>> histc(np.float32([1.25, 1.25]), 4, 1.25, 1.25).tolist()    # edges [0.25, 2.25]
    [0.0, 0.0, 2.0, 0.0]
    """
    x = np.asarray(x, np.float32).ravel()
    lo, hi = float(lo), float(hi)
    if lo == hi and x.size:
        lo, hi = float(np.min(x)), float(np.max(x))
    if lo == hi:
        lo = min(float(np.nextafter(_f32(lo), _f32(-np.inf))), lo - 1.0)
        hi = max(float(np.nextafter(_f32(hi), _f32(np.inf))), hi + 1.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"torch.histc: range of [{lo}, {hi}] is not finite")
    with np.errstate(all="ignore"):
        left, right = _endpoints(_f32(lo), _f32(hi), bins + 1)
        xv = x[(x >= left) & (x <= right)]
        pos = (((xv - left) * _f32(bins)) / (right - left)).astype(np.int64)  # C truncation
    pos[pos == bins] = bins - 1
    return np.bincount(pos, minlength=bins).astype(np.float32)


def _endpoints(start, end, steps):
    """``linspace(start, end, steps)[0]`` and ``[-1]``: ``start + step * 0`` and
    ``end - step * 0`` (with or without a fused multiply-add: ``step * 0`` is exact)."""
    step = _f32((end - start) / _f32(steps - 1))
    return _f32(start + step * _f32(0)), _f32(end - step * _f32(0))


def _div_floor(a, b):
    """``torch.div(a, b, rounding_mode="floor")`` in float32 (``c10::div_floor_floating``),
    for b > 0: ``mod = fmod(a, b)``, ``div = f32(f32(a - mod) / b)``, minus 1 when ``mod``
    and ``b`` differ in sign, then floor, then +1 if ``div - floor > 0.5``; a zero quotient
    takes the sign of ``a / b``."""
    mod = np.fmod(a, b)                                          # exact
    div = (a - mod) / b
    div = np.where((mod != 0) & ((b < 0) != (mod < 0)), div - _f32(1), div)
    fl = np.floor(div)                                           # exact
    fl = np.where(div - fl > _f32(0.5), fl + _f32(1), fl)
    return np.where(div != 0, fl, np.copysign(_f32(0), a / b)).astype(np.float32)


def _bincount(index, weights, bins):
    """``torch.bincount(index, weights=float32, minlength=bins)``: each bin accumulates its
    weights in index order, one float32 addition at a time, starting from 0."""
    out = np.zeros(bins, np.float32)
    order = np.argsort(index, kind="stable")
    idx, w = index[order], weights[order]
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    ends = np.r_[starts[1:], idx.size]
    for b, e in zip(starts, ends):
        # ufunc.accumulate adds sequentially (NumPy's pairwise summation is reduce-only)
        out[idx[b]] = _f32(0) + np.add.accumulate(w[b:e], dtype=np.float32)[-1]
    return out


def _exact_f32(x):
    """The batch as float32: float32 arrays, or float64 / integer values that are exactly
    float32 values (anything else would be rounded, or computed in another dtype by torch).
    """
    arr = to_array(x, "x")
    if arr.dtype == np.float32:
        return arr.ravel()
    if arr.dtype.kind not in "fiu" or arr.dtype == np.float16:
        raise TypeError(f"HistogramObserver needs float32 input (torch computes the "
                        f"histogram in the input's dtype), got dtype {arr.dtype}")
    flat = arr.ravel()
    if arr.dtype.kind == "f":
        y = flat.astype(np.float32)                             # checked exact below
        bad = (y.astype(arr.dtype) != flat) & ~np.isnan(flat)
    else:                                                       # integers up to 2**24
        bad = (flat > 2 ** 24) | (flat < -2 ** 24)
        y = np.where(bad, 0, flat).astype(np.float32)
    if np.any(bad):
        raise ValueError(f"HistogramObserver input value {flat[bad][0]!r} is not a "
                         "float32 value (integers: |v| <= 2**24); pass float32 data")
    return y


class HistogramObserver:
    """Histogram of all observed values, then an L2-optimal range
    (``torch.ao.quantization.HistogramObserver``, torch 2.13).

    Parameters
    ----------
    bins : int
        Histogram bins (2048).
    dtype : {"quint8", "qint8", "qint32", ...} or QDtype
    qscheme : {"per_tensor_affine", "per_tensor_symmetric"} or QScheme
    reduce_range : bool
    quant_min, quant_max : int, optional
    eps : float
        As :class:`refcomp.quant.observers.MinMaxObserver` (no quint8 symmetric
        reduce_range check here: torch's HistogramObserver accepts it).
    capability : CpuCapability or str
        ATen CPU build to mirror (``"avx2"`` default; ``"avx512"``, ``"default"``).

    Attributes
    ----------
    histogram : (bins,) float32
    min_val, max_val : 0-d float32
        +inf / -inf while uncalibrated.
    upsample_rate : int
        16.
    dst_nbins : int
        ``2 ** bits`` of the dtype's storage (256 for (q)(u)int8 and quint4x2, whatever
        the quant range; 65536 for (u)int16; 2**32 for (q)int32).  float8 dtypes are
        refused (torch: TypeError from ``torch.iinfo``).

    Notes
    -----
    ``forward(x)``: `x` must be float32 (torch computes the histogram in the input's
    dtype; float64 or integer arrays are accepted when every value is a float32 value,
    float16 is refused).  An empty batch is ignored.  If min(x) is -inf or max(x) is +inf, warns
    ``"torch.inf detected in input tensor, ignoring input"`` and drops the infinite
    values (all infinite: ignored).  NaN is a ValueError here, before any state change
    (torch raises RuntimeError from ``histc`` and, on a first batch, has already stored
    NaN as min / max).  First batch (min == inf OR max == -inf): ``min, max = min(x),
    max(x)``, ``histogram = histc(x, bins, min, max)``.  Later: ``new = [min(min_val,
    min(x)), max(max_val, max(x))]``, ``h = histc(x, bins, *new)``; same range: ``histogram
    += h``; else if the old range was one value: ``histc(min_val, bins, *new) *
    torch_sum(histogram) + h``; else ``h + upscale(histogram)``: each old bin split into 16
    equal parts (``h / 16``) placed at the midpoints ``linspace(min, max, 16 bins + 1)[:-1]
    + f32(0.5 * f32(f32(max - min) / f32(16 bins)))``, bucketed among ``linspace(new,
    bins + 1)`` (right-closed search, clamped to [0, bins - 1]), summed by bincount.

    ``calculate_qparams()``: uncalibrated (min == inf AND max == -inf) warns torch's
    message and returns ``([1.0], [0])``; else ``_non_linear_param_search`` then the MinMax
    rule.  The search walks ``alpha, beta`` in Python-double steps of 1e-5 over the
    float32 cumulative histogram (double accumulation, rounded per prefix) against
    ``f32(alpha * total)`` with ``total = torch_sum(histogram)``, scoring each candidate
    bin range with ``_compute_quantization_error`` (a Python-double bin width, float32
    tensor algebra, floor division, a ``torch_sum``), and stops when the error grows;
    ``new_min = f32(min + f32(bw * start))``, ``new_max = f32(min + f32(bw * (end + 1)))``
    with ``bw = f32(f32(max - min) / bins)``.

    Examples
    --------
    >>> obs = HistogramObserver(bins=8)
    >>> _ = obs.forward(np.float32([0, 1, 2, 3])); _ = obs.forward(np.float32([-1, 7]))
    >>> obs.histogram.tolist(), float(obs.min_val), float(obs.max_val)
    ([1.0, 1.6875, 0.625, 1.6875, 0.0, 0.0, 0.0, 1.0], -1.0, 7.0)
    """

    upsample_rate = 16

    def __init__(self, bins=2048, dtype="quint8", qscheme="per_tensor_affine",
                 reduce_range=False, quant_min=None, quant_max=None, eps=FLOAT32_EPS,
                 capability="avx2"):
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        self.spec = qparams_spec(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        if self.spec.qscheme.per_channel:
            raise ValueError("HistogramObserver's qscheme must be per_tensor_affine or "
                             f"per_tensor_symmetric, got {self.spec.qscheme.value!r}")
        bits = {QDtype.QINT32: 32, QDtype.INT32: 32, QDtype.INT16: 16,
                QDtype.UINT16: 16}.get(self.spec.dtype, 8)
        if self.spec.dtype in (QDtype.FLOAT8_E5M2, QDtype.FLOAT8_E4M3FN):
            raise ValueError(f"HistogramObserver needs an integer dtype, got "
                             f"{self.spec.dtype.value!r}")
        self.bins = int(bins)
        self.dst_nbins = 2 ** bits
        self.capability = _capability(capability)
        self.reset_min_max_vals()

    quant_min = property(lambda self: self.spec.quant_min)
    quant_max = property(lambda self: self.spec.quant_max)
    dtype = property(lambda self: self.spec.dtype)
    qscheme = property(lambda self: self.spec.qscheme)

    def reset_min_max_vals(self):
        """Back to the uncalibrated state (a zero histogram, +inf / -inf)."""
        self.histogram = np.zeros(self.bins, np.float32)
        self.min_val = np.array(np.inf, np.float32)
        self.max_val = np.array(-np.inf, np.float32)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        """Add a batch to the histogram; returns `x` unchanged."""
        y = _exact_f32(x)
        if y.size == 0:
            return x
        if np.isnan(y).any():
            raise ValueError(f"HistogramObserver input contains NaN (value {np.nan}); "
                             "torch.histc refuses a NaN range")
        x_min, x_max = np.min(y), np.max(y)
        if x_min == -np.inf or x_max == np.inf:
            warnings.warn(INF_WARNING, UserWarning, stacklevel=2)
            y = y[np.abs(y) != np.inf]
            if y.size == 0:
                return x
            x_min, x_max = np.min(y), np.max(y)
        if self.min_val == np.inf or self.max_val == -np.inf:
            self.min_val, self.max_val = np.array(x_min), np.array(x_max)
            self.histogram = histc(y, self.bins, x_min, x_max)
            return x
        cur_min, cur_max = self.min_val, self.max_val
        new_min, new_max = np.minimum(cur_min, x_min), np.maximum(cur_max, x_max)
        update = histc(y, self.bins, new_min, new_max)
        with np.errstate(all="ignore"):
            if new_min == cur_min and new_max == cur_max:
                self.histogram = self.histogram + update
                return x
            if cur_min == cur_max:
                old = histc(cur_min, self.bins, new_min, new_max) \
                    * torch_sum(self.histogram, self.capability)
            else:
                old = self._upscale(new_min, new_max)
            self.histogram = (update + old).astype(np.float32)
        self.min_val, self.max_val = np.array(new_min), np.array(new_max)
        return x

    def _upscale(self, new_min, new_max):
        """``_upscale_histogram``: the old histogram re-binned onto [new_min, new_max]."""
        up, bins, cap = self.upsample_rate, self.bins, self.capability
        h = np.repeat(self.histogram, up) / _f32(up)
        bin_size = (self.max_val - self.min_val) / _f32(bins * up)
        mids = linspace(self.min_val, self.max_val, bins * up + 1, cap)[:-1] \
            + _f32(0.5) * bin_size
        bounds = linspace(new_min, new_max, bins + 1, cap)
        idx = np.clip(np.searchsorted(bounds, mids, side="right") - 1, 0, bins - 1)
        return _bincount(idx, h, bins)

    def calculate_qparams(self):
        """``(scale, zero_point)`` of the searched range (float32 (1,), int32 or int64 (1,)).
        """
        if self.min_val == np.inf and self.max_val == -np.inf:
            warnings.warn(HISTOGRAM_UNCALIBRATED_WARNING, UserWarning, stacklevel=2)
            return np.array([1.0], np.float32), np.array([0], np.int64)
        with np.errstate(all="ignore"):
            new_min, new_max = self._non_linear_param_search()
        return calculate_qparams(new_min, new_max, self.spec)

    def _compute_quantization_error(self, start: int, end: int) -> float:
        """L2 error estimate of quantizing bins [start, end] to ``dst_nbins`` levels."""
        bins, dst = self.bins, self.dst_nbins
        bw = (float(self.max_val) - float(self.min_val)) / bins      # Python double
        dbw = bw * (end - start + 1) / dst
        if dbw == 0.0:
            return 0.0
        bw32, dbw32, half = _f32(bw), _f32(dbw), _f32(dbw / 2)
        src_begin = (np.arange(bins) - start).astype(np.float32) * bw32
        src_end = src_begin + bw32
        last = _f32(dst - 1)
        dob = np.clip(_div_floor(src_begin, dbw32), _f32(0), last)
        dob_center = (dob + _f32(0.5)) * dbw32
        doe = np.clip(_div_floor(src_end, dbw32), _f32(0), last)
        density = self.histogram / bw32
        norm = np.zeros(bins, np.float32)
        norm = norm + _norm(src_begin - dob_center, np.ones(bins, np.float32) * half, density)
        norm = norm + (doe - dob - _f32(1)) * _norm(_f32(-dbw / 2), half, density)
        doe_center = doe * dbw32 + half
        norm = norm + _norm(_f32(-dbw / 2), src_end - doe_center, density)
        return float(torch_sum(norm, self.capability))

    def _non_linear_param_search(self):
        """The searched (new_min, new_max), 0-d float32."""
        bins = self.bins
        bin_width = (self.max_val - self.min_val) / _f32(bins)
        total = float(torch_sum(self.histogram, self.capability))
        csum = np.cumsum(self.histogram, dtype=np.float64).astype(np.float32)
        alpha, beta, stepsize = 0.0, 1.0, 1e-5
        start, end = 0, bins - 1
        norm_min = float("inf")
        while alpha < beta:
            if start == end:
                break       # torch would only step beta down to alpha: nothing changes
            next_alpha, next_beta = alpha + stepsize, beta - stepsize
            # csum is non-decreasing, so torch's two linear scans are binary searches:
            # l: first index >= start with csum >= f32(next_alpha * total), at most end;
            # r: last index <= end with csum <= f32(next_beta * total), at least start
            t_lo, t_hi = _f32(next_alpha * total), _f32(next_beta * total)
            lo = min(max(int(csum.searchsorted(t_lo, "left")), start), end)
            hi = max(min(int(csum.searchsorted(t_hi, "right")) - 1, end), start)
            next_start, next_end = start, end
            if lo - start > end - hi:
                next_start, alpha = lo, next_alpha
            else:
                next_end, beta = hi, next_beta
            if next_start == start and next_end == end:
                continue
            norm = self._compute_quantization_error(next_start, next_end)
            if norm > norm_min:
                break
            norm_min, start, end = norm, next_start, next_end
        new_min = self.min_val + bin_width * _f32(start)
        new_max = self.min_val + bin_width * _f32(end + 1)
        return np.array(new_min, np.float32), np.array(new_max, np.float32)


def _norm(begin, end, density):
    """``_get_norm``: ``density * f32(f32(end^3 - begin^3) / 3)``, left to right."""
    return density * ((end * end * end - begin * begin * begin) / _f32(3))
