"""The fake-quantization modules of torch 2.13's QAT: ``FakeQuantize`` (an observer, then
fake quantization; ``torch/ao/quantization/fake_quantize.py``) and
``FusedMovingAvgObsFakeQuantize`` (``torch.fused_moving_avg_obs_fake_quant``,
``aten/src/ATen/native/quantized/cpu/fused_obs_fake_quant.cpp``; qparams from
:func:`refcomp.quant.choose.choose_qparams_fbgemm`)."""

from __future__ import annotations

import numpy as np

from .choose import choose_qparams_fbgemm
from .qparams import FLOAT32_EPS, calculate_qparams, qparams_spec
from .fake_quant import (F32, FakeQuantCache, _along, _f32, _fq_channel_int, _fq_tensor,
                         _int_zp, _qrange, _x, fake_quantize_per_channel_forward,
                         fake_quantize_per_tensor_backward)

__all__ = ["FakeQuantize", "FusedMovingAvgObsFakeQuantize"]


class FakeQuantize:
    """``torch.ao.quantization.FakeQuantize``: an observer, then fake quantization.

    Parameters
    ----------
    observer : object with ``forward(x)`` (updates its statistics), ``calculate_qparams()
        -> (scale, zero_point)`` and, unless given here, ``quant_min``/``quant_max``
        (e.g. :mod:`refcomp.quant.observers`).  Its qparams are copied as torch copies them
        into its float32 ``scale`` / int32 (or float32, for float qparams) ``zero_point``.
    quant_min, quant_max : int, optional (the observer's, already reduced, by default)
    per_channel : bool; ch_axis : int
    fma : bool   float zero points only (:func:`fake_quantize_per_channel_forward`)

    Notes
    -----
    fake_quantize.py ``FakeQuantize.forward`` (torch 2.13): if the observer is enabled,
    ``observer(x)`` then ``calculate_qparams()`` into the buffers; if fake quant is
    enabled, ``fake_quantize_per_channel_affine(x, scale, zp, ch_axis, ...)`` or the
    tensor-qparams per-tensor overload (no zero-point range check; a float zero point is
    truncated, ``.item().toInt()``), else ``y = x`` with an all-True mask.  Backward is
    ``dy * mask``.
    """

    def __init__(self, observer, *, quant_min=None, quant_max=None, per_channel=False,
                 ch_axis=0, fma=True):
        for m in ("forward", "calculate_qparams"):
            if not callable(getattr(observer, m, None)):
                raise TypeError(f"observer {observer!r} has no method {m}()")
        qmin = observer.quant_min if quant_min is None else quant_min
        qmax = observer.quant_max if quant_max is None else quant_max
        self.quant_min, self.quant_max = _qrange(qmin, qmax)
        self.observer, self.per_channel, self.ch_axis = observer, bool(per_channel), ch_axis
        self.fma = bool(fma)
        self.scale, self.zero_point = np.ones(1, F32), np.zeros(1, np.int32)
        self.observer_enabled = self.fake_quant_enabled = True

    def enable_observer(self, enabled=True):
        self.observer_enabled = bool(enabled)

    def disable_observer(self):
        self.enable_observer(False)

    def enable_fake_quant(self, enabled=True):
        self.fake_quant_enabled = bool(enabled)

    def disable_fake_quant(self):
        self.enable_fake_quant(False)

    def calculate_qparams(self):
        return self.observer.calculate_qparams()

    # the observer's, as torch's FakeQuantize copies them (used by convert)
    dtype = property(lambda self: self.observer.dtype)
    qscheme = property(lambda self: self.observer.qscheme)
    min_val = property(lambda self: self.observer.min_val)
    max_val = property(lambda self: self.observer.max_val)

    def forward(self, x):
        """``(y, cache)``; updates the observer and ``scale``/``zero_point`` when enabled."""
        xa = _x(x)
        if self.observer_enabled:
            self.observer.forward(xa)
            s, z = self.observer.calculate_qparams()
            z = np.asarray(z).reshape(-1)
            self.scale = _x(s, "scale").reshape(-1).copy()
            self.zero_point = _f32(z) if z.dtype.kind == "f" else z.astype(np.int32)
        if not self.fake_quant_enabled:
            return xa.copy(), FakeQuantCache(np.ones(xa.shape, bool))
        qmin, qmax, zp = self.quant_min, self.quant_max, self.zero_point
        if self.per_channel:
            return fake_quantize_per_channel_forward(xa, self.scale, zp, self.ch_axis, qmin,
                                                     qmax, fma=self.fma)
        y, mask = _fq_tensor(xa, self.scale[0], int(zp[0]), qmin, qmax)   # int(): truncation
        return y, FakeQuantCache(mask)

    def backward(self, dy, cache):
        return fake_quantize_per_tensor_backward(dy, cache)


class FusedMovingAvgObsFakeQuantize:
    """``FusedMovingAvgObsFakeQuantize`` (``torch.fused_moving_avg_obs_fake_quant``).

    The default x86 QAT fake quant: activations ``(0, 127)`` affine (``quint8`` with
    reduce_range), weights ``(-128, 127)`` per-channel symmetric, ``averaging_constant
    0.01``.

    Parameters
    ----------
    quant_min, quant_max : int, the final range (pass the reduced one for reduce_range)
    averaging_constant : float, narrowed to float32
    per_channel : bool (channels along axis 0 only, as torch); symmetric : bool
        (``preserve_sparsity`` of :func:`choose_qparams_fbgemm`)
    dtype : str, the observer's dtype (``"quint8"`` by default when ``quant_min >= 0``,
        else ``"qint8"``); eps : float, the observer's eps.  Both only matter to
        :meth:`calculate_qparams`.

    Notes
    -----
    ``fused_moving_avg_obs_fake_quant_cpu`` (fused_obs_fake_quant.cpp).  Observer step,
    float32, no FMA, per element and per buffer: ``m = isinf(m) ? cur : f32(m + f32(c *
    f32(cur - m)))`` with ``cur`` the batch min (max) per tensor or per channel (NaN
    propagates).  Fake-quant step: ``scale, zero_point = choose_qparams_fbgemm(running_min,
    running_max, qmin, qmax, preserve_sparsity=symmetric)`` (scale floor 6.1e-5, NOT the
    Python observers' ``calculate_qparams``), then the per-tensor (tensor-qparams, no zp
    check) or per-channel int fake quant.  With fake quant disabled, ``y = x`` and
    scale/zero point are not updated.  An empty x returns a copy with no update.

    :meth:`calculate_qparams` (what ``convert`` reads) is NOT that rule: torch's module
    returns its ``MovingAverage(PerChannel)MinMaxObserver``'s ``calculate_qparams()`` on the
    same running min / max (:func:`refcomp.quant.qparams.calculate_qparams`: float32 eps
    floor, the observer's symmetric / affine formulas), so a converted model's qparams can
    differ from the last fake-quant step's.
    """

    def __init__(self, quant_min=0, quant_max=255, *, averaging_constant=0.01,
                 per_channel=False, ch_axis=0, symmetric=False, dtype=None,
                 eps=FLOAT32_EPS):
        self.quant_min, self.quant_max = _qrange(quant_min, quant_max)
        scheme = ("per_channel_" if per_channel else "per_tensor_") + \
            ("symmetric" if symmetric else "affine")
        dtype = ("quint8" if self.quant_min >= 0 else "qint8") if dtype is None else dtype
        self.spec = qparams_spec(dtype, scheme, False, self.quant_min, self.quant_max, eps)
        if per_channel and ch_axis != 0:
            raise ValueError(f"ch_axis={ch_axis}: per-channel FakeQuant in "
                             f"fused_moving_avg_obs_fake_quant is only supported on axis == 0")
        self.ch_axis = int(ch_axis)
        self.c = _f32(float(averaging_constant))      # (float) averaging_const
        self.per_channel, self.symmetric = bool(per_channel), bool(symmetric)
        shape = (0,) if per_channel else ()
        self.running_min = np.full(shape, np.inf, F32)
        self.running_max = np.full(shape, -np.inf, F32)
        self.scale, self.zero_point = np.ones(1, F32), np.zeros(1, np.int32)
        self.observer_enabled = self.fake_quant_enabled = True

    enable_observer, disable_observer = FakeQuantize.enable_observer, FakeQuantize.disable_observer
    enable_fake_quant = FakeQuantize.enable_fake_quant
    disable_fake_quant = FakeQuantize.disable_fake_quant
    dtype = property(lambda self: self.spec.dtype)
    qscheme = property(lambda self: self.spec.qscheme)
    min_val = property(lambda self: self.running_min)
    max_val = property(lambda self: self.running_max)

    def calculate_qparams(self):
        """The observer's ``(scale, zero_point)`` from the running min / max (class notes;
        uncalibrated: torch's warning and ``([1.0], [0])``)."""
        return calculate_qparams(self.running_min, self.running_max, self.spec, stacklevel=3)

    def _observe(self, xa):
        if self.per_channel:
            rows = xa.reshape(xa.shape[0], -1)
            cur = (rows.min(axis=1), rows.max(axis=1))          # aminmax(dim=1); NaN kept
        else:
            cur = (np.min(xa), np.max(xa))
        out = []
        with np.errstate(invalid="ignore", over="ignore"):
            for m, v in zip((self.running_min, self.running_max), cur):
                out.append(np.where(np.isinf(m), v, m + self.c * (v - m)).astype(F32))
        self.running_min, self.running_max = out

    def forward(self, x):
        """``(y, cache)``; updates the running min/max, scale and zero point."""
        xa = _x(x)
        if xa.size == 0:
            return xa.copy(), FakeQuantCache(np.ones(xa.shape, bool))
        if self.per_channel and self.running_min.size == 0:
            c = xa.shape[0]
            self.running_min, self.running_max = (np.full(c, v, F32) for v in (np.inf, -np.inf))
            self.scale, self.zero_point = np.ones(c, F32), np.zeros(c, np.int32)
        if self.observer_enabled:
            self._observe(xa)
        if not self.fake_quant_enabled:
            return xa.copy(), FakeQuantCache(np.ones(xa.shape, bool))
        s, z = choose_qparams_fbgemm(self.running_min.reshape(-1), self.running_max.reshape(-1),
                                     self.quant_min, self.quant_max,
                                     preserve_sparsity=self.symmetric)
        self.scale, self.zero_point = s.astype(F32), z.astype(np.int32)
        if self.per_channel:
            zp = _int_zp(self.zero_point, self.quant_min, self.quant_max)
            y, mask = _fq_channel_int(xa, _along(self.scale, 0, xa.ndim), _along(zp, 0, xa.ndim),
                                      self.quant_min, self.quant_max)
        else:
            y, mask = _fq_tensor(xa, self.scale[0], int(self.zero_point[0]), self.quant_min,
                                 self.quant_max)
        return y, FakeQuantCache(mask)

    def backward(self, dy, cache):
        return fake_quantize_per_tensor_backward(dy, cache)
