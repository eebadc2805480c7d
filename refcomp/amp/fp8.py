"""fp8 training with per-tensor delayed and current scaling, as NVIDIA Transformer Engine.

:class:`DelayedScaling` mirrors TE's recipe of the same name
(``transformer_engine/common/recipe/__init__.py``: ``margin=0``, ``fp8_format=HYBRID``,
``amax_history_len=1024``, ``amax_compute_algo="max"``; ``Format.HYBRID`` is e4m3 in the
forward pass, e5m2 in the backward pass, ``Format.E4M3`` e4m3 in both; pure E5M2 is
refused as TE's ``__post_init__`` does).  :func:`update_amax_and_scale` is the scale
update kernel, :func:`current_scale` the current-scaling one, :class:`Fp8Linear` an engine
Module that quantizes its three matmuls' operands with them, and :func:`fp8_model` swaps
every Linear of a model for one.

Delayed scaling (``delayed_scaling.cu``, ``kernel_bulk``, reached from PyTorch through
``tex.fused_amax_and_scale_update_after_reduction`` in ``transformer_engine/pytorch/
fp8.py``; TE 2.x sources as stored in the NVIDIA/TransformerEngine history).  Each
quantized tensor (a layer's input, weight, and output gradient) has a float32
``amax_history`` of ``amax_history_len`` entries (zeros at start), a float32 ``scale``
(1.0 at start) and ``scale_inv``:

1. a cast quantizes with the CURRENT scale: ``q = sat_fp8(rnd_f32(x * scale))`` and writes
   ``max(history[0], amax(x))`` into ``history[0]`` (an atomic max; ``amax`` of the
   high-precision x, before scaling);
2. after the step's forward (TE: on leaving ``fp8_autocast``) the forward tensors, after its
   backward the backward tensors, are updated; with ``last = history[0]``:

   * if ``last != 0`` the history is rolled by -1 and slot 0 cleared: ``new[i] = old[i+1]``
     for ``1 <= i < L-1``, ``new[L-1] = old[0]``, ``new[0] = 0`` (``old[1]`` drops out);
     if ``last == 0`` (the tensor was not cast this step) nothing is rolled and the scale
     is kept;
   * ``amax = fmax`` over the whole old history (``"max"``; ``fmax`` ignores NaN) or
     ``last`` (``"most_recent"``);
   * ``scale = rnd_f32(scaled_max / amax)`` when amax is finite and positive, else the
     previous scale; ``scaled_max = rnd_f32(fp8_max * 2**-margin)``
     (``fp8_dtype_max(dtype) * std::pow(2.f, -margin)``); an infinite quotient becomes
     FLT_MAX; ``scale_inv = rnd_f32(1 / scale)``.

   So the scale used at step t is computed from the amaxes of steps before t (the first
   step uses 1.0): the recipe's "use scale factor from previous iteration".  TE's older
   unfused ``kernel`` rolled even when ``last == 0``; the fused path, mirrored here, does
   not.

Current scaling (``Float8CurrentScaling``; ``recipe_common.cuh``
``compute_scale_from_amax``, called by ``current_scaling.cu`` with ``value_for_inf =
FLT_MAX``): ``amax`` of the tensor being cast, ``scale = rnd_f32(fp8_max / amax)``
(``__fdiv_rn``, NOT a power of two by default: ``use_power_2_scales`` is
``NVTE_FP8_CURRENT_SCALING_POWER_2_SCALES == "1"``, default off; with it the float32
scale's mantissa bits are cleared, rounding it down to a power of two), ``amax_epsilon``
0; ``amax`` 0, inf or NaN gives ``scale = 1``; an infinite quotient gives FLT_MAX.  No
margin.  This differs from the engine's ``"fp8"`` policy, whose current scaling is always
the power of two ``2**floor(log2(max / amax))``.

Casting.  TE's fp8 types convert with ``__NV_SATFINITE`` (``__nv_fp8_e4m3(float)``):
round to nearest-even, magnitudes above the format's max -- including +-inf -- saturate
to +-max, NaN stays NaN.  Here: the float32 product ``x * scale`` (numpy float32
multiply, IEEE), +-inf and overflows clamped to +-max, then the rounding core
(:func:`refcomp.nn.policy.round_to`).  The inf-saturation detail comes from the CUDA /
PTX documentation of ``satfinite``, not from a TE source read for this module.

Matmuls.  cuBLASLt's fp8 GEMM computes ``D = scale_inv_a * scale_inv_b * sum(a * b)
(+ bias)`` with fp32 accumulation in an unspecified order.  The emulation: every fp8
value is an integer multiple of the format's smallest subnormal, so ``sum(a * b)`` is
computed EXACTLY as an int64 matmul (in K-chunks small enough never to overflow; the
chunk sums -- one chunk for every K met in practice: K <= 2**12 for e5m2 x e4m3, 2**26 for
e4m3 x e4m3 -- are added in float64), then, in float64,
``(D * (scale_inv_a * scale_inv_b)) + bias`` (the pair product exact) and one rounding
to float32.  The bias gradient is, as TE's fused cast + dbias, the float64 sum of the
unquantized ``dy`` over the batch, rounded once to float32.  Outputs and gradients are
then rounded into the policy's activation / gradient formats (no-ops under ``"fp32"``,
the intended policy: the matmul numerics are this module's, not the policy's models).

Not mirrored: amax reduction across data-parallel ranks, callable
``amax_compute_algo`` / ``scaling_factor_compute_algo``, the fp8 weight cache across
micro-batches, fp8 attention.  An eval forward (``train=False``) uses the current scales
and records nothing (TE records amaxes in every forward under ``fp8_autocast``).

>>> import numpy as np
>>> from refcomp.amp.fp8 import DelayedScaling, update_amax_and_scale
>>> r = DelayedScaling(amax_history_len=4)
>>> h, s, si = update_amax_and_scale(np.float32([2, 0, 0, 0]), 1.0, r, "forward")
>>> h.tolist(), s, si
([0.0, 0.0, 0.0, 2.0], 224.0, 0.004464285913854837)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..formats import catalog
from ..nn.modules import Linear, Module, Residual, Sequential
from ..nn.policy import get_policy, round_to

__all__ = ["DelayedScaling", "TensorMeta", "update_amax_and_scale", "current_scale",
           "quantize", "Fp8Linear", "Fp8LinearCache", "fp8_model"]

F32 = np.float32
_FLT_MAX = float(np.finfo(np.float32).max)
_FORMATS = {"HYBRID": ("float8_e4m3fn", "float8_e5m2"),
            "E4M3": ("float8_e4m3fn", "float8_e4m3fn")}
_ALGOS = ("max", "most_recent")
_ROLES = ("forward", "backward")


@dataclass(frozen=True)
class DelayedScaling:
    """TE's ``DelayedScaling`` recipe (module docstring).

    Parameters
    ----------
    fp8_format : {"HYBRID", "E4M3"}
        HYBRID: e4m3 (max 448) forward tensors, e5m2 (max 57344) gradients; E4M3: e4m3
        everywhere.  Case-insensitive; TE refuses E5M2 alone, so does this class.
    margin : int >= 0
        ``scale = (fp8_max / amax) / 2**margin``.
    amax_history_len : int >= 1
    amax_compute_algo : {"max", "most_recent"}

    Examples
    --------
    >>> r = DelayedScaling()
    >>> r.fp8_format, r.format("forward"), r.format("backward"), r.fp8_max("backward")
    ('HYBRID', 'float8_e4m3fn', 'float8_e5m2', 57344.0)
    """

    fp8_format: str = "HYBRID"
    margin: int = 0
    amax_history_len: int = 1024
    amax_compute_algo: str = "max"

    def __post_init__(self):
        f = self.fp8_format.upper() if isinstance(self.fp8_format, str) else self.fp8_format
        if f not in _FORMATS:
            raise ValueError(f"DelayedScaling: fp8_format={self.fp8_format!r}; expected "
                             "'HYBRID' or 'E4M3' (TE does not support pure E5M2 training)")
        object.__setattr__(self, "fp8_format", f)
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, np.integer)) \
                or self.margin < 0:
            raise ValueError(f"DelayedScaling: margin={self.margin!r} must be an integer "
                             ">= 0")
        n = self.amax_history_len
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"DelayedScaling: amax_history_len={n!r} must be an integer "
                             ">= 1")
        if self.amax_compute_algo not in _ALGOS:
            raise ValueError(f"DelayedScaling: amax_compute_algo="
                             f"{self.amax_compute_algo!r}; expected 'max' or 'most_recent' "
                             "(callables are not mirrored)")

    def format(self, role) -> str:
        """The fp8 format name of `role` ("forward": x and W, "backward": dy)."""
        if role not in _ROLES:
            raise ValueError(f"DelayedScaling: role={role!r}; expected 'forward' or "
                             "'backward'")
        return _FORMATS[self.fp8_format][_ROLES.index(role)]

    def fp8_max(self, role) -> float:
        """The largest finite value of `role`'s format (derived from the format)."""
        return float(catalog.get(self.format(role)).max_finite)


def _recipe(recipe):
    if not isinstance(recipe, DelayedScaling):
        raise TypeError(f"expected a DelayedScaling recipe, got {type(recipe).__name__}")
    return recipe


def update_amax_and_scale(history, scale, recipe, role):
    """One delayed-scaling update of one tensor (module docstring, step 2).

    Parameters
    ----------
    history : (L,) float32 amax history, ``history[0]`` this step's amax
    scale : float, the current (float32) scale
    recipe : DelayedScaling
    role : {"forward", "backward"}, which fp8 format's max applies

    Returns
    -------
    (new_history (L,) float32, new_scale float, new_scale_inv float); the input is not
    modified.

    Examples
    --------
    >>> r = DelayedScaling(amax_history_len=3, amax_compute_algo="most_recent", margin=1)
    >>> h, s, _ = update_amax_and_scale(np.float32([8, 100, 1]), 1.0, r, "forward")
    >>> h.tolist(), s
    ([0.0, 1.0, 8.0], 28.0)
    >>> update_amax_and_scale(np.float32([0, 100, 1]), 3.0, r, "forward")[1:]
    (3.0, 0.3333333432674408)
    """
    r = _recipe(recipe)
    h = np.array(history, dtype=F32).reshape(-1)
    if h.shape[0] != r.amax_history_len:
        raise ValueError(f"update_amax_and_scale: history has {h.shape[0]} entries, the "
                         f"recipe says amax_history_len={r.amax_history_len}")
    last = h[0]
    amax = F32(0.0)
    if last != 0:                          # NaN != 0 is true: rolled, as the kernel
        amax = np.fmax.reduce(h, initial=F32(0.0))      # fmaxf from 0 over the old history
        h = np.roll(h, -1)
        h[0] = 0.0
    if r.amax_compute_algo == "most_recent":
        amax = last
    scaled_max = F32(F32(r.fp8_max(role)) * F32(2.0 ** -int(r.margin)))
    s = F32(scale)
    if np.isfinite(amax) and amax > 0:
        with np.errstate(over="ignore"):
            s = F32(scaled_max / F32(amax))
    if np.isinf(s):
        s = F32(_FLT_MAX)
    return h, float(s), float(F32(F32(1.0) / s))


def current_scale(amax, fp8_max, power_2_scales=False) -> float:
    """TE's ``compute_scale_from_amax`` (epsilon 0, ``value_for_inf`` FLT_MAX).

    Examples
    --------
    >>> current_scale(3.0, 448.0), current_scale(3.0, 448.0, power_2_scales=True)
    (149.3333282470703, 128.0)
    >>> current_scale(0.0, 448.0), current_scale(float("inf"), 448.0)
    (1.0, 1.0)
    """
    a = F32(amax)
    if not np.isfinite(a) or a == 0:
        return 1.0
    with np.errstate(over="ignore"):
        s = F32(F32(fp8_max) / a)
    if np.isinf(s):
        s = F32(_FLT_MAX)
    if power_2_scales:                     # scale_bits &= 0xFF800000
        s = np.array([s], F32).view(np.uint32) & np.uint32(0xFF800000)
        s = s.view(F32)[0]
    return float(s)


def quantize(x, scale, fmt) -> np.ndarray:
    """``sat_fp8(rnd_f32(x * scale))`` as float64 values of `fmt` (module docstring,
    Casting); x is read as float32 values.

    Examples
    --------
    >>> quantize(np.array([1.0, 3.0, -1000.0]), 100.0, "float8_e4m3fn").tolist()
    [96.0, 288.0, -448.0]
    """
    f = catalog.get(fmt)
    with np.errstate(over="ignore"):
        v = np.asarray(x, F32) * F32(scale)              # float32 product, IEEE
    m = float(f.max_finite)
    v = np.clip(v.astype(np.float64), -m, m)            # SATFINITE (NaN stays NaN)
    return round_to(v, f, overflow="saturate")


def _amax(x) -> float:
    return float(np.max(np.abs(np.asarray(x, np.float64)), initial=0.0))


def _ulp_exp(fmt) -> int:
    """k with every value of fmt an integer multiple of 2**-k."""
    f = catalog.get(fmt)
    return f.man_bits - f.emin


def _exact_mm(A, fa, B, fb) -> np.ndarray:
    """float64 of the exact A @ B of fp8 values (formats fa, fb): an int64 matmul of the
    values times 2**k, in K-chunks that cannot overflow (module docstring)."""
    ka, kb = _ulp_exp(fa), _ulp_exp(fb)
    Ai = np.asarray(A, np.float64) * 2.0 ** ka                 # integers, exact
    Bi = np.asarray(B, np.float64) * 2.0 ** kb
    bits = math.ceil(math.log2(catalog.get(fa).max_finite)) + ka + \
        math.ceil(math.log2(catalog.get(fb).max_finite)) + kb
    chunk = max(1, 2 ** max(0, 62 - bits))
    K = Ai.shape[1]
    D = np.zeros((Ai.shape[0], Bi.shape[1]))
    for k0 in range(0, K, chunk):
        part = Ai[:, k0:k0 + chunk].astype(np.int64) @ Bi[k0:k0 + chunk].astype(np.int64)
        D = D + part.astype(np.float64)
    return D * 2.0 ** -(ka + kb)


def _gemm_out(D, sinv_a, sinv_b, bias=None) -> np.ndarray:
    """rnd_f32((D * (sinv_a * sinv_b)) + bias), evaluated in float64."""
    y = D * (float(sinv_a) * float(sinv_b))
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    with np.errstate(over="ignore"):
        return y.astype(F32)


class TensorMeta:
    """Per-tensor delayed-scaling state: float32 ``history`` (L,), ``scale``,
    ``scale_inv`` (TE's ``fp8_meta`` entries of one tensor)."""

    def __init__(self, length):
        self.history = np.zeros(length, F32)
        self.scale = 1.0
        self.scale_inv = 1.0

    def record(self, amax):
        """history[0] = max(history[0], amax) (the cast kernel's atomic max)."""
        self.history[0] = np.fmax(self.history[0], F32(amax))

    def update(self, recipe, role):
        """The delayed-scaling update (:func:`update_amax_and_scale`), in place."""
        self.history, self.scale, self.scale_inv = update_amax_and_scale(
            self.history, self.scale, recipe, role)

    def __repr__(self):
        return f"TensorMeta(scale={self.scale!r}, history[:4]={self.history[:4].tolist()})"


class Fp8LinearCache(NamedTuple):
    """What :meth:`Fp8Linear.backward` reads: the fp8 operands of the forward matmul."""

    xq: np.ndarray          # (N, D_in) x quantized (values of the forward format, scaled)
    sinv_x: float           # its scale_inv
    wq: np.ndarray          # (D_out, D_in) W quantized
    sinv_w: float
    lead: tuple             # leading shape of x
    has_bias: bool
    policy: object


class Fp8Linear(Module):
    """A Linear whose matmuls run in fp8 with per-tensor scaling (module docstring).

    Parameters
    ----------
    linear : refcomp.nn.Linear
        Its parameter dict is shared (torch names ``weight``, ``bias``), not copied.
    recipe : DelayedScaling
        Formats (HYBRID / E4M3) and, for ``mode="delayed"``, margin, history length and
        amax algorithm.
    mode : {"delayed", "current"}
    power_2_scales : bool
        Current scaling only: TE's ``NVTE_FP8_CURRENT_SCALING_POWER_2_SCALES``.

    Attributes
    ----------
    meta : dict of TensorMeta, keys ``"input"``, ``"weight"``, ``"grad_output"``
        (delayed scaling state; in current mode only ``history[0]`` of the last step is
        kept, the scales are recomputed per cast)
    amaxes : dict, the amax of each tensor at its last training cast

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> lin = nn.Linear(2, 1, rng=np.random.default_rng(0))
    >>> lin.params["weight"][:] = [[0.5, 0.25]]; lin.params["bias"][:] = 0
    >>> f = Fp8Linear(lin, DelayedScaling(amax_history_len=2))
    >>> y, c = f.forward(np.array([[1.0, 2.0]]), "fp32")
    >>> y.tolist(), f.meta["input"].scale, f.meta["weight"].scale
    ([[1.0]], 224.0, 896.0)
    """

    def __init__(self, linear, recipe, mode="delayed", power_2_scales=False):
        super().__init__()
        if not isinstance(linear, Linear):
            raise TypeError(f"Fp8Linear: expected a refcomp.nn.Linear, got "
                            f"{type(linear).__name__}")
        if mode not in ("delayed", "current"):
            raise ValueError(f"Fp8Linear: mode={mode!r}; expected 'delayed' or 'current'")
        self.recipe = _recipe(recipe)
        self.mode = mode
        self.power_2_scales = bool(power_2_scales)
        self.params = linear.params
        L = recipe.amax_history_len if mode == "delayed" else 1
        self.meta = {k: TensorMeta(L) for k in ("input", "weight", "grad_output")}
        self.amaxes = {}

    def _cast(self, key, x, role, train):
        """(q, scale_inv) of one tensor; records its amax when training."""
        fmt = self.recipe.format(role)
        m = self.meta[key]
        if self.mode == "current":
            a = _amax(np.asarray(x, F32))
            s = current_scale(a, self.recipe.fp8_max(role), self.power_2_scales)
            sinv = float(F32(F32(1.0) / F32(s)))
        else:
            a = _amax(np.asarray(x, F32))
            s, sinv = m.scale, m.scale_inv
        if train:
            self.amaxes[key] = float(F32(a))
            if self.mode == "current":
                m.history[0] = F32(a)
            else:
                m.record(a)
        return quantize(x, s, fmt), sinv

    def forward(self, x, policy, rng=None, train=True):
        """y = x W^T + b with fp8 operands (module docstring); then the delayed update of
        the input and weight scales (training only)."""
        p = get_policy(policy)
        w = p.weights.round(self.params["weight"], rng)               # (D_out, D_in)
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[-1] != w.shape[1]:
            raise ValueError(f"{self.name}: x has shape {x.shape}, expected (..., "
                             f"{w.shape[1]})")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, w.shape[1])                                 # (N, D_in)
        xq, sx = self._cast("input", x2, "forward", train)
        wq, sw = self._cast("weight", w, "forward", train)
        if train and self.mode == "delayed":
            for k in ("input", "weight"):
                self.meta[k].update(self.recipe, "forward")
        b = self.params.get("bias")
        if b is not None:
            b = p.weights.round(b, rng)
        f = self.recipe.format("forward")
        y = _gemm_out(_exact_mm(xq, f, wq.T, f), sx, sw, b)            # (N, D_out)
        y = p.activations.round(y, rng, p.activations.carrier).reshape(lead + (w.shape[0],))
        return y, Fp8LinearCache(xq, sx, wq, sw, lead, b is not None, p)

    def backward(self, dy, cache, rng=None, need_dx=True):
        """dx = dy_q W_q, dW = dy_q^T x_q (fp8 operands, exact sums, one float32
        rounding), db = sum of the unquantized dy; then the delayed update of the
        grad_output scale."""
        p = cache.policy
        D_out = cache.wq.shape[0]
        dy2 = np.asarray(dy).reshape(-1, D_out)                       # (N, D_out)
        dq, sd = self._cast("grad_output", dy2, "backward", True)
        if self.mode == "delayed":
            self.meta["grad_output"].update(self.recipe, "backward")
        fb, ff = self.recipe.format("backward"), self.recipe.format("forward")
        g = p.gradients
        dx = None
        if need_dx:
            dx = _gemm_out(_exact_mm(dq, fb, cache.wq, ff), sd, cache.sinv_w)
            dx = g.round(dx, rng, g.carrier).reshape(cache.lead + (cache.wq.shape[1],))
        grads = {"weight": g.round(_gemm_out(_exact_mm(dq.T, fb, cache.xq, ff), sd,
                                             cache.sinv_x), rng, g.carrier)}
        if cache.has_bias:
            db = np.sum(np.asarray(dy2, np.float64), axis=0).astype(F32)
            grads["bias"] = g.round(db, rng, g.carrier)
        return dx, grads


def fp8_model(model, recipe, mode="delayed", power_2_scales=False):
    """A deep copy of `model` with every :class:`refcomp.nn.Linear` (inside Sequential
    and Residual containers, at any depth) replaced by an :class:`Fp8Linear`; other
    layers are kept.  Parameter names are unchanged, so ``nn.train_step(wrapped, ...,
    policy="fp32")`` trains it with float32 master weights.

    Examples
    --------
    >>> import numpy as np
    >>> from refcomp import nn
    >>> rng = np.random.default_rng(0)
    >>> m = nn.Sequential(nn.Linear(4, 3, rng=rng), nn.ReLU(), nn.Linear(3, 2, rng=rng))
    >>> f = fp8_model(m, DelayedScaling())
    >>> [type(l).__name__ for l in f.layers], sorted(f.named_parameters())
    (['Fp8Linear', 'ReLU', 'Fp8Linear'], ['0.bias', '0.weight', '2.bias', '2.weight'])
    """
    _recipe(recipe)
    if not isinstance(model, Module):
        raise TypeError(f"fp8_model: expected a refcomp Module, got {type(model).__name__}")

    def swap(m):
        if isinstance(m, Linear):
            return Fp8Linear(m, recipe, mode, power_2_scales)
        if isinstance(m, Sequential):
            return Sequential(*[swap(c) for c in m.layers])
        if isinstance(m, Residual):
            m.block = swap(m.block)
            if m.shortcut is not None:
                m.shortcut = swap(m.shortcut)
        return m

    return swap(copy.deepcopy(model))
