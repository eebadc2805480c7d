"""Scale and zero point from a running min / max: torch.ao's observer rule, bit for bit.

Mirrors torch 2.13 ``torch/ao/quantization/observer.py``
(``UniformQuantizationObserverBase._calculate_qparams``) and ``torch/ao/quantization/utils.py``
(``calculate_qmin_qmax``, ``validate_qmin_qmax``, ``check_min_max_valid``).  Every float32
operation torch performs as a separate tensor op is one IEEE float32 operation here: NumPy
float32 arithmetic (``+ - * /`` on float32 operands and the float64 -> float32 conversion
of a Python scalar are correctly rounded, nearest even), and ``torch.round(...).to(int)``
is :func:`refcomp.ops.to_int` (half to even, x86's ``INT32_MIN`` for NaN and overflow).

>>> import numpy as np
>>> from refcomp.quant.qparams import qparams_spec, calculate_qparams
>>> spec = qparams_spec("quint8", "per_tensor_affine")
>>> s, z = calculate_qparams(np.float32(-1.0), np.float32(3.0), spec)
>>> s.tolist(), z.tolist(), z.dtype.name
([0.01568627543747425], [64], 'int32')
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass

import numpy as np

from ..ops.convert import to_int

__all__ = ["QScheme", "QDtype", "QParamsSpec", "qparams_spec", "quant_range",
           "calculate_qparams", "check_min_max_valid", "FLOAT32_EPS", "UNCALIBRATED_WARNING"]

#: ``torch.finfo(torch.float32).eps`` = 2**-23, torch's default observer ``eps``
FLOAT32_EPS = 2.0 ** -23
#: the UserWarning text of ``check_min_max_valid`` (utils.py)
UNCALIBRATED_WARNING = ("must run observer before calling calculate_qparams. "
                        "Returning default values.")

_f32 = np.float32     # float64 -> float32 and float32 arithmetic: IEEE, round to nearest even


class QScheme(enum.Enum):
    """torch's quantization schemes (``torch.per_tensor_affine`` ...)."""

    PER_TENSOR_AFFINE = "per_tensor_affine"
    PER_TENSOR_SYMMETRIC = "per_tensor_symmetric"
    PER_CHANNEL_AFFINE = "per_channel_affine"
    PER_CHANNEL_SYMMETRIC = "per_channel_symmetric"
    PER_CHANNEL_AFFINE_FLOAT_QPARAMS = "per_channel_affine_float_qparams"

    @property
    def per_channel(self) -> bool:
        return self.value.startswith("per_channel")

    @property
    def symmetric(self) -> bool:
        return self.value.endswith("symmetric")


class QDtype(enum.Enum):
    """The observer dtypes torch 2.13 accepts (``_ALLOWED_DTYPES`` in observer.py)."""

    QUINT8 = "quint8"
    QINT8 = "qint8"
    QUINT4X2 = "quint4x2"
    QINT32 = "qint32"
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    INT32 = "int32"
    FLOAT8_E5M2 = "float8_e5m2"
    FLOAT8_E4M3FN = "float8_e4m3fn"
    UINT16 = "uint16"


def _enum(cls, value, what):
    if isinstance(value, cls):
        return value
    try:                                     # "qint8", "torch.qint8", str(torch.qint8)
        return cls(str(value).rsplit(".", 1)[-1])
    except ValueError:
        raise ValueError(f"unknown {what} {value!r}; expected one of "
                         f"{[m.value for m in cls]}") from None


@dataclass(frozen=True)
class QParamsSpec:
    """Everything ``_calculate_qparams`` reads from an observer.

    Attributes
    ----------
    dtype : QDtype
    qscheme : QScheme
    quant_min, quant_max : int
        The final quantization range (after ``reduce_range``).
    has_customized_qrange : bool
        Both ``quant_min`` and ``quant_max`` were given (changes the symmetric uint8 zero
        point to the range's midpoint).
    eps : numpy.float32
        The scale floor (torch's float32 ``eps`` buffer).
    """

    dtype: QDtype
    qscheme: QScheme
    quant_min: int
    quant_max: int
    has_customized_qrange: bool
    eps: np.float32


def quant_range(dtype="quint8", reduce_range=False, quant_min=None, quant_max=None):
    """The quantization range an observer uses (``utils.calculate_qmin_qmax``).

    Parameters
    ----------
    dtype : QDtype or str
    reduce_range : bool
        Halve the range (Python floor division of a custom range: (-7, 7) -> (-4, 3)).
    quant_min, quant_max : int, optional
        A custom range; used only when BOTH are given (torch silently ignores one alone).

    Returns
    -------
    (quant_min, quant_max, has_customized_qrange)

    Notes
    -----
    Defaults: (q)int8 (-128, 127) or (-64, 63) reduced; (q)uint8 (0, 255) or (0, 127);
    (q)int32 (-2**31, 2**31 - 1) (``reduce_range`` ignored); uint16 (0, 65535); int16
    (-32768, 32767); every other dtype (0, 15).  A custom range must contain 0 and have
    ``quant_min < quant_max`` (``validate_qmin_qmax``); for (q)int8 it may span at most 256
    values, for (q)int32 at most 2**32; (q)uint8 ranges are not bounded.  torch raises
    AssertionError for these; here they are ValueError with the same wording.

    Examples
    --------
    >>> quant_range("qint8", reduce_range=True)
    (-64, 63, False)
    >>> quant_range("qint8", True, -7, 7)
    (-4, 3, True)
    """
    dtype = _enum(QDtype, dtype, "dtype")
    custom = quant_min is not None and quant_max is not None
    if custom:
        for v, name in ((quant_min, "quant_min"), (quant_max, "quant_max")):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, got {v!r}")
        quant_min, quant_max = int(quant_min), int(quant_max)
        if not quant_min <= 0 <= quant_max:
            raise ValueError("Used-specified quantization range must include 0. "
                             f"(got quant_min={quant_min}, quant_max={quant_max})")
        if quant_min >= quant_max:
            raise ValueError("qmin must be strictly less than qmax for user-specified "
                             f"quantization range. (got {quant_min} >= {quant_max})")
        length = quant_max - quant_min + 1
        limit = {QDtype.QINT8: 256, QDtype.INT8: 256,
                 QDtype.QINT32: 2 ** 32, QDtype.INT32: 2 ** 32}.get(dtype)
        if limit is not None and not 0 < length <= limit:
            raise ValueError("quantization range should be positive and not exceed the "
                             f"maximum bit range (={limit}). (got {quant_min}..{quant_max})")
        if reduce_range:
            quant_min, quant_max = quant_min // 2, quant_max // 2
        return quant_min, quant_max, True
    if dtype in (QDtype.QINT8, QDtype.INT8):
        qmin, qmax = (-64, 63) if reduce_range else (-128, 127)
    elif dtype in (QDtype.QUINT8, QDtype.UINT8):
        qmin, qmax = (0, 127) if reduce_range else (0, 255)
    elif dtype in (QDtype.QINT32, QDtype.INT32):
        qmin, qmax = -2 ** 31, 2 ** 31 - 1
    elif dtype is QDtype.UINT16:
        qmin, qmax = 0, 2 ** 16 - 1
    elif dtype is QDtype.INT16:
        qmin, qmax = -2 ** 15, 2 ** 15 - 1
    else:
        qmin, qmax = 0, 15
    return qmin, qmax, False


def qparams_spec(dtype="quint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, eps=FLOAT32_EPS) -> QParamsSpec:
    """Build a :class:`QParamsSpec` the way ``UniformQuantizationObserverBase.__init__`` does.

    Strings (``"qint8"``, ``"per_channel_symmetric"``; torch objects' names also work, e.g.
    ``str(torch.qint8)``) are converted to the enums once here.  ``eps`` is rounded to
    float32 (torch stores it in a float32 buffer).  torch's ``reduce_range`` deprecation
    warning is not repeated.  See :func:`quant_range` for the range rules and errors.

    Examples
    --------
    >>> qparams_spec("qint8", "per_tensor_symmetric", quant_min=-127, quant_max=127)
    ... # doctest: +NORMALIZE_WHITESPACE
    QParamsSpec(dtype=<QDtype.QINT8: 'qint8'>, qscheme=<QScheme.PER_TENSOR_SYMMETRIC:
    'per_tensor_symmetric'>, quant_min=-127, quant_max=127, has_customized_qrange=True,
    eps=np.float32(1.1920929e-07))
    """
    dtype = _enum(QDtype, dtype, "dtype")
    qscheme = _enum(QScheme, qscheme, "qscheme")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"eps must be a number, got {eps!r}")
    qmin, qmax, custom = quant_range(dtype, bool(reduce_range), quant_min, quant_max)
    return QParamsSpec(dtype, qscheme, qmin, qmax, custom, _f32(eps))


def _as_f32(v, what):
    """float32 values; other float / int values must be exactly float32 (no rounding)."""
    a = np.asarray(v)
    if a.dtype == np.float32:
        return a
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{what} must hold float32 values, got dtype {a.dtype}")
    b = a.astype(np.float32)                 # checked exact just below
    bad = (b.astype(a.dtype) != a) & ~np.isnan(a) if a.dtype.kind == "f" else \
        b.astype(np.float64) != a
    if np.any(bad):
        raise ValueError(f"{what} value {a[bad].ravel()[0]!r} is not a float32 value")
    return b


def check_min_max_valid(min_val, max_val, *, stacklevel=2) -> bool:
    """torch's ``utils.check_min_max_valid``: False (with a warning) when uncalibrated.

    Returns False and warns ``UserWarning(UNCALIBRATED_WARNING)`` when either array is
    empty, or, for 0-d values, when ``min_val == inf and max_val == -inf`` (both sentinels;
    ``(inf, 5.0)`` is not uncalibrated but fails the next check).  Raises ValueError
    ``"min {min_val} should be less than max {max_val}"`` (torch: AssertionError) when
    ``min_val > max_val`` anywhere.  NaN passes both checks.  `stacklevel` is the
    warning's, counted from the caller of this function.
    """
    mn, mx = np.asarray(min_val), np.asarray(max_val)
    if mn.size == 0 or mx.size == 0:
        warnings.warn(UNCALIBRATED_WARNING, UserWarning, stacklevel=stacklevel)
        return False
    if mn.ndim == 0 or mx.ndim == 0:
        if mn == np.inf and mx == -np.inf:
            warnings.warn(UNCALIBRATED_WARNING, UserWarning, stacklevel=stacklevel)
            return False
        if mn > mx:       # 0-d tensors print like Python floats in torch's f-string
            raise ValueError(f"min {float(mn)} should be less than max {float(mx)}")
    elif np.any(mn > mx):
        raise ValueError(f"min {mn} should be less than max {mx}")
    return True


def _wrap_int32(v):
    """Two's-complement int32 wrap of int64 values (torch's int32 tensor arithmetic)."""
    return ((v + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)


def calculate_qparams(min_val, max_val, spec: QParamsSpec, *, stacklevel=2):
    """Scale and zero point from min / max (``_calculate_qparams``, observer.py, torch 2.13).

    Parameters
    ----------
    min_val, max_val : float32 array, 0-d (per tensor) or (C,) (per channel)
        Running minimum and maximum.
    spec : QParamsSpec
    stacklevel : int
        Of the uncalibrated warning (2: the caller of this function).

    Returns
    -------
    scale : float32 array (1,) or (C,)
    zero_point : array (1,) or (C,)
        int32 for the affine schemes, int64 for the symmetric schemes, float32 for
        ``per_channel_affine_float_qparams``.  Uncalibrated: ``([1.0] float32, [0] int64)``
        after a UserWarning (:func:`check_min_max_valid`).

    Notes
    -----
    With ``min_neg = min(min_val, 0)``, ``max_pos = max(max_val, 0)`` (NaN propagates),
    ``R = f32(quant_max - quant_min)`` and every step rounded to float32:

    * symmetric: ``scale = max(f32(max(-min_neg, max_pos) / f32(R / 2)), eps)``; zero point
      128 for (q)uint8 (``(quant_min + quant_max) // 2`` with a custom range), 2**15 for
      uint16, else 0.
    * affine: ``scale = max(f32(f32(max_pos - min_neg) / R), eps)``;
      ``zp = clamp(quant_min - int32(round_half_even(f32(min_neg / scale))), quant_min,
      quant_max)``, where the int32 conversion of NaN / out-of-range values is
      ``INT32_MIN`` (x86) and the subtraction wraps in int32, as torch's int32 tensors do
      (an all-NaN quint8 range gives zp 0, qint8 gives 127).
    * float_qparams: the raw min / max: ``scale = f32(f32(max - min) / R)``, replaced by
      1.0 unless ``scale > eps`` (so NaN -> 1.0); ``zp = f32(-min / scale)``, unrounded.

    Examples
    --------
    >>> spec = qparams_spec("qint8", "per_channel_symmetric")
    >>> s, z = calculate_qparams(np.float32([-1, 0]), np.float32([2, 0]), spec)
    >>> s.tolist(), z.tolist(), z.dtype.name
    ([0.01568627543747425, 1.1920928955078125e-07], [0, 0], 'int64')
    """
    mn, mx = _as_f32(min_val, "min_val"), _as_f32(max_val, "max_val")
    if not check_min_max_valid(mn, mx, stacklevel=stacklevel + 1):
        return np.array([1.0], np.float32), np.array([0], np.int64)
    shape = np.broadcast_shapes(mn.shape, mx.shape) or (1,)
    mn = np.broadcast_to(mn, shape).astype(np.float32)
    mx = np.broadcast_to(mx, shape).astype(np.float32)
    with np.errstate(all="ignore"):          # IEEE specials are results, not errors
        return _qparams(mn, mx, spec, shape)


def _qparams(mn, mx, spec, shape):
    qmin, qmax = spec.quant_min, spec.quant_max
    zero = _f32(0)
    min_neg = np.minimum(mn, zero)           # torch.min / torch.max: NaN propagates
    max_pos = np.maximum(mx, zero)
    if spec.qscheme.symmetric:
        m = np.maximum(-min_neg, max_pos)
        scale = np.maximum(m / _f32((qmax - qmin) / 2), spec.eps)
        if spec.dtype in (QDtype.QUINT8, QDtype.UINT8):
            z = (qmin + qmax) // 2 if spec.has_customized_qrange else 128
        else:
            z = 2 ** 15 if spec.dtype is QDtype.UINT16 else 0
        return scale, np.full(shape, z, np.int64)
    if spec.qscheme is QScheme.PER_CHANNEL_AFFINE_FLOAT_QPARAMS:
        scale = (mx - mn) / _f32(qmax - qmin)
        scale = np.where(scale > spec.eps, scale, _f32(1)).astype(np.float32)
        return scale, (-mn) / scale          # -1 * min_val is an exact negation
    scale = np.maximum((max_pos - min_neg) / _f32(qmax - qmin), spec.eps)
    q = to_int(min_neg / scale, bits=32, rounding="nearest_even", exact=False)
    zp = _wrap_int32(qmin - q.astype(np.int64))
    return scale, np.clip(zp, qmin, qmax).astype(np.int32)
