"""Optimizers: SGD, Adam and AdamW as pure steps ``(param, grad, state) -> (param, state)``.

The steps replay torch 2.13's single-tensor path (``foreach=False, fused=False``:
``_single_tensor_sgd`` / ``_single_tensor_adam`` in torch/optim/sgd.py, adam.py) one ATen
CPU kernel at a time, in torch's order: each op is computed exactly, rounded into its
"opmath" format (float32; float64 for formats wider than float32), then into the output
tensor's format.  Python scalars (``1 - beta1``, ``lr / (1 - beta1**step)``, ...) are
computed as torch computes them, in double; Adam's ``step`` is a float32 counter.  Kernel
rules (ATen sources, confirmed bit for bit against torch 2.13 CPU, AVX2 / AVX512 builds by
GCC 13, which contracts ``a * b + c`` into an fma; see :class:`TorchCPU` for the rest):

``x.add(y, alpha=a)`` (native/ufunc/add.h: ``vec::fmadd(y, a, x)``, scalar ``x + a * y``)
    ``fma(a, y, x)``, ``a = alpha.to<scalar_t>()``: double -> float32 -> tensor format.
``x.mul(s)``, ``x.div(s)``, Python scalar ``s`` (native/cpu/BinaryOpsKernel.cpp)
    ``x * float32(s)``, ``x / float32(s)`` (16-bit formats: ``original_scalar_value``).
``x.add(s)``
    ``x + s_t``, ``s_t`` = s rounded to float32, then to the tensor's format.
``x.lerp(y, w)`` (native/cpu/LerpKernel.cpp ``lerp_vec``)
    ``fma(w, y - x, x)`` if ``|w| < 0.5`` else ``fma(w - 1, y - x, y)``, w in float32.
``x.addcmul(t1, t2, value=c)``, ``x.addcdiv(t1, t2, value=c)`` (PointwiseOpsKernel.cpp)
    ``fma(c * t1, t2, x)``; ``x + (c * t1) / t2`` (three roundings).
``maximum``, negation: exact.  ``sqrt``: correctly rounded -- but torch's float32 /
    float64 sqrt is MKL ``vsSqrt`` / ``vdSqrt`` with ``VML_HA`` (ATen/cpu/vml.h
    ``IMPLEMENT_VML_MKL(sqrt, Sqrt)``), faithful, not correctly rounded: with torch 2.13's
    MKL 2024.2 about 20% of random float32 inputs (exact root within 1/4 ulp of a
    midpoint) get the other neighbour.  MKL's algorithm is unpublished and CPU-dependent,
    so float32 / float64 Adam matches torch bit for bit where the roots agree, and
    elsewhere equals this step with that root rounded the other way (tests check both).
    bfloat16 / float16 sqrt is ATen's own float32 ``_mm256_sqrt_ps``: exact.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import ops
from ..formats import catalog
from ..rounding.cast import cast
from ._aten import TorchCPU, _check_range, _Kernels, _opmath, _update, _write

__all__ = ["TorchCPU", "SGDState", "AdamState", "sgd_init", "adam_init", "sgd_step",
           "adam_step", "adamw_step", "SGD", "Adam", "AdamW"]

_F32 = catalog.get("float32")
_F64 = catalog.get("float64")


def _carriers(param, k):
    """The dtypes a step returns (param, state): float32 for a float32 `param` array of a
    float32 format (the engine's carrier, :attr:`refcomp.nn.TensorSpec.carrier`; the state
    too when float32 holds its format), float64 otherwise."""
    if np.asarray(param).dtype != np.float32 or k.fmt != _F32:
        return np.float64, np.float64
    return np.float32, (np.float32 if _opmath(k.state) == _F32 else np.float64)


def _out(x, dtype):
    """A step's result as `dtype` values (exact; None stays None)."""
    return None if x is None else np.asarray(x, dtype)


class SGDState(NamedTuple):
    """SGD state: torch's ``momentum_buffer`` (None until the first step with momentum) and
    the Kahan compensation (None unless ``update="kahan"``), in their formats."""

    momentum_buffer: np.ndarray | None = None
    compensation: np.ndarray | None = None


class AdamState(NamedTuple):
    """Adam / AdamW state: the float32 step counter and the moments (state format)."""

    step: float
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    max_exp_avg_sq: np.ndarray | None = None
    compensation: np.ndarray | None = None


def sgd_init(param) -> SGDState:
    """Initial SGD state (torch creates the momentum buffer at the first step).

    Examples
    --------
    >>> sgd_init([1.0, 2.0])
    SGDState(momentum_buffer=None, compensation=None)
    """
    return SGDState()


def adam_init(param) -> AdamState:
    """Initial Adam state: step 0, zero moments shaped like `param`.

    Examples
    --------
    >>> adam_init([1.0, 2.0]).exp_avg
    array([0., 0.])
    """
    p = np.asarray(param, np.float64)
    return AdamState(0.0, np.zeros_like(p), np.zeros_like(p))


_COMMON = """fmt : str or FloatFormat
        Format of `param` and `grad` (their values must belong to it).
    state_fmt : str or FloatFormat, optional
        Format of the state tensors (default `fmt`); an op mixing the two formats computes
        as torch on the promoted dtype (bfloat16 with float32: float32).
    update : {"nearest", "stochastic", "kahan"}
        Rounding of the final write ``param + increment`` into `fmt`: torch's
        round-to-nearest (bit-exact), stochastic rounding of the exact sum (needs `rng`), or
        Kahan-compensated summation (Zamirai et al. 2020, "Revisiting BFloat16 Training",
        arXiv:2010.06192): ``u = fmt(increment); y = fmt(u - c); s = fmt(p + y);
        c = fmt(fmt(s - p) - y); p = s``, each difference / sum computed in opmath, the
        compensation ``c`` kept in the state in `fmt`.
    rng : numpy.random.Generator, optional
        Random source of ``update="stochastic"``.
    cpu : TorchCPU, optional
        torch's CPU evaluation model; None: fused (AVX2 / AVX512), vector path everywhere."""


def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, maximize=False, fmt="float32", state_fmt=None,
             update="nearest", rng=None, cpu=None):
    k = _Kernels.make(fmt, state_fmt, cpu)
    for name, v in (("learning rate", lr), ("momentum value", momentum),
                    ("weight_decay value", weight_decay)):
        _check_range(name, v, 0.0)
    _check_range("dampening", dampening, -np.inf)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"Nesterov momentum requires a momentum and zero dampening, got "
                         f"momentum={momentum!r}, dampening={dampening!r}")
    u = _update(update, rng)
    dt, st = _carriers(param, k)
    p, g = k.check(param, grad)
    if maximize:
        g = -g
    if weight_decay != 0:
        g = k.add_alpha(g, p, weight_decay, k.fmt)
    buf = state.momentum_buffer
    if buf is not None and np.shape(buf) != p.shape:
        raise ValueError(f"momentum_buffer shape {np.shape(buf)} != param shape {p.shape}")
    if momentum != 0:
        if buf is None:
            buf = k.r(g, k.state)                                  # grad.clone()
        else:
            buf = k.add_alpha(k.mul_s(buf, momentum, k.state), g, 1 - dampening, k.state,
                              k.mix)
        g = k.add_alpha(g, buf, momentum, k.mix) if nesterov else buf
    p, comp = _write(k, p, state.compensation, u, rng, alpha=-lr, g=g,
                     common=k.fmt if momentum == 0 else k.mix)
    return _out(p, dt), SGDState(_out(buf, st), _out(comp, dt))


sgd_step.__doc__ = f"""One SGD step, torch 2.13 ``_single_tensor_sgd``.

    ``g = -grad if maximize``; ``g = g.add(p, alpha=weight_decay)``; momentum buffer
    ``b = g`` at the first step, else ``b = b.mul(momentum).add(g, alpha=1 - dampening)``;
    ``g = g.add(b, alpha=momentum)`` (nesterov) or ``b``; ``p = p.add(g, alpha=-lr)``.

    Parameters
    ----------
    param, grad : array_like, same shape
        Parameter and gradient values in `fmt`.
    state : SGDState
        From :func:`sgd_init` or the previous step.
    lr, momentum, dampening, nesterov, weight_decay, maximize
        As torch.optim.SGD (``lr >= 0``, ``momentum >= 0``, ``weight_decay >= 0``).
    {_COMMON}

    Returns
    -------
    param : ndarray, values in `fmt` (float64; float32 when `param` is a float32 array
        and `fmt` is float32, the state too where float32 holds its format)
    state : SGDState

    Examples
    --------
    >>> import numpy as np
    >>> p, s = sgd_step(np.array([1.0]), np.array([0.5]), sgd_init([1.0]), lr=0.1,
    ...                 momentum=0.9)
    >>> float(p[0]), float(s.momentum_buffer[0])
    (0.949999988079071, 0.5)
    """


def adam_step(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
              weight_decay=0.0, amsgrad=False, maximize=False, decoupled=False,
              fmt="float32", state_fmt=None, update="nearest", rng=None, cpu=None):
    k = _Kernels.make(fmt, state_fmt, cpu)
    _check_range("learning rate", lr, 0.0)
    _check_range("epsilon value", eps, 0.0)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = betas
    _check_range("beta parameter at index 0", b1, 0.0, 1.0)
    _check_range("beta parameter at index 1", b2, 0.0, 1.0)
    _check_range("weight_decay value", weight_decay, 0.0)
    u = _update(update, rng)
    dt, st = _carriers(param, k)
    p, g = k.check(param, grad)
    if np.shape(state.exp_avg) != p.shape:
        raise ValueError(f"state shape {np.shape(state.exp_avg)} != param shape {p.shape}")
    if maximize:
        g = -g
    step = float(cast(state.step + 1.0, _F32))                   # float32 step tensor
    if weight_decay != 0:
        if decoupled:
            p = k.mul_s(p, 1 - lr * weight_decay, k.fmt)
        else:
            g = k.add_alpha(g, p, weight_decay, k.fmt)
    m = k.lerp(state.exp_avg, g, 1 - b1, k.state)
    v = k.addcmul(k.mul_s(state.exp_avg_sq, b2, k.state), g, g, 1 - b2, k.state)
    step_size = lr / (1 - b1 ** step)
    bc2_sqrt = (1 - b2 ** step) ** 0.5
    vmax = state.max_exp_avg_sq
    if amsgrad:
        vmax = np.maximum(np.zeros_like(v) if vmax is None else vmax, v)
    denom = k.add_s(k.div_s(k.sqrt(vmax if amsgrad else v, k.state), bc2_sqrt, k.state),
                    eps, k.state)
    t = ops.div(ops.mul(k.s(-step_size), m, k.op), denom, k.op)   # addcdiv's increment
    p, comp = _write(k, p, state.compensation, u, rng, t=np.asarray(t, np.float64))
    return _out(p, dt), AdamState(step, _out(m, st), _out(v, st), _out(vmax, st),
                                  _out(comp, dt))


adam_step.__doc__ = f"""One Adam (``decoupled=True``: AdamW) step, torch 2.13 ``_single_tensor_adam``.

    ``step += 1``; weight decay ``p = p.mul(1 - lr * wd)`` (decoupled) or
    ``g = g.add(p, alpha=wd)``; ``m = m.lerp(g, 1 - beta1)``;
    ``v = v.mul(beta2).addcmul(g, g, value=1 - beta2)``; ``vmax = maximum(vmax, v)``
    (amsgrad); ``denom = (sqrt(v or vmax) / sqrt(1 - beta2**step)).add(eps)``;
    ``p = p.addcdiv(m, denom, value=-lr / (1 - beta1**step))``.

    Parameters
    ----------
    param, grad : array_like, same shape
        Parameter and gradient values in `fmt`.
    state : AdamState
        From :func:`adam_init` or the previous step.
    lr, betas, eps, weight_decay, amsgrad, maximize
        As torch.optim.Adam (``lr >= 0``, ``0 <= beta < 1``, ``eps >= 0``).
    decoupled : bool
        AdamW's decoupled weight decay.
    {_COMMON}

    Returns
    -------
    param : ndarray, values in `fmt` (float64; float32 when `param` is a float32 array
        and `fmt` is float32, the state too where float32 holds its format)
    state : AdamState

    Examples
    --------
    >>> import numpy as np
    >>> p, s = adam_step(np.array([1.0]), np.array([0.5]), adam_init([1.0]), lr=0.1)
    >>> float(p[0]), s.step                      # torch 2.13 gives 0.9000000357627869 too
    (0.9000000357627869, 1.0)
    """


def adamw_step(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
               weight_decay=1e-2, amsgrad=False, maximize=False, fmt="float32",
               state_fmt=None, update="nearest", rng=None, cpu=None):
    """One AdamW step: :func:`adam_step` with ``decoupled=True``, weight_decay 0.01.

    Examples
    --------
    >>> import numpy as np
    >>> p, _ = adamw_step(np.array([1.0]), np.array([0.0]), adam_init([1.0]), lr=0.1)
    >>> float(p[0])                              # decay only: 1 * (1 - 0.1 * 0.01)
    0.9990000128746033
    """
    return adam_step(param, grad, state, lr=lr, betas=betas, eps=eps,
                     weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                     decoupled=True, fmt=fmt, state_fmt=state_fmt, update=update, rng=rng,
                     cpu=cpu)


class _Optimizer:
    """Stateful wrapper over named parameters: per-name state, hyper-parameters as settable
    attributes (``lr`` for schedules), torch's ``state_dict`` layout.  Keyword arguments:
    the step's hyper-parameters (defaults in ``_defaults``) and fmt, state_fmt, update, rng,
    cpu as in the step functions."""

    _defaults: dict = {}

    def __init__(self, *, fmt="float32", state_fmt=None, update="nearest", rng=None,
                 cpu=None, **hyper):
        unknown = set(hyper) - set(self._defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown argument(s) {sorted(unknown)}")
        for name, value in dict(self._defaults, **hyper).items():
            setattr(self, name, tuple(value) if name == "betas" else value)
        self.fmt, self.state_fmt, self.update, self.rng, self.cpu = (
            fmt, state_fmt, update, rng, cpu)
        self.initial_lr = None                    # set by refcomp.nn.schedule
        self.names: list[str] = []
        self.state: dict[str, tuple] = {}
        _update(update, rng)                      # check everything now, as torch does
        self._step(np.zeros(1), np.zeros(1), self._init(np.zeros(1)), validate=True)

    def _kw(self, validate=False):
        return dict({h: getattr(self, h) for h in self._defaults}, fmt=self.fmt,
                    state_fmt=self.state_fmt, update="nearest" if validate else self.update,
                    rng=self.rng, cpu=self.cpu)

    def step(self, params: dict, grads: dict) -> dict:
        """New parameters: each name with a gradient (not None) takes one step."""
        out = dict(params)
        self.names += [n for n in params if n not in self.names]
        for name, p in params.items():
            if grads.get(name) is not None:
                s = self.state.get(name) or self._init(p)
                out[name], self.state[name] = self._step(p, grads[name], s)
        return out

    def state_dict(self) -> dict:
        """``{"state": {i: {...}}, "param_groups": [{hyper..., "params": [i...]}]}``, the
        layout of ``torch.optim.Optimizer.state_dict`` (arrays instead of tensors; states
        hold only the entries torch holds, plus ``compensation`` for Kahan updates)."""
        state = {i: {k: v for k, v in self.state[n]._asdict().items() if v is not None}
                 for i, n in enumerate(self.names) if n in self.state}
        group = {h: getattr(self, h) for h in self._defaults}
        if isinstance(self, Adam):
            group["decoupled_weight_decay"] = self._decoupled
        if self.initial_lr is not None:
            group["initial_lr"] = self.initial_lr
        group.update(params=list(range(len(self.names))), param_names=list(self.names))
        return {"state": {i: e for i, e in state.items() if e}, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and per-name state saved by :meth:`state_dict`."""
        (group,) = state_dict["param_groups"]
        for h in self._defaults:
            setattr(self, h, group[h])
        self.initial_lr = group.get("initial_lr")
        self.names = list(group["param_names"])
        cls = type(self._init(np.zeros(1)))
        self.state = {n: cls(**{k: float(v) if k == "step" else np.array(v, np.float64)
                                for k, v in state_dict["state"][i].items()})
                      for i, n in enumerate(self.names) if state_dict["state"].get(i)}


class SGD(_Optimizer):
    """Stateful SGD (torch.optim.SGD, ``foreach=False``): keywords lr=1e-3, momentum=0,
    dampening=0, nesterov=False, weight_decay=0, maximize=False, and fmt, state_fmt,
    update, rng, cpu as :func:`sgd_step`.

    Examples
    --------
    >>> import numpy as np
    >>> opt = SGD(lr=0.5)
    >>> opt.step({"w": np.array([1.0])}, {"w": np.array([0.25])})["w"]
    array([0.875])
    >>> opt.lr = 0.0                             # schedulers set lr between steps
    """

    _defaults = dict(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                     maximize=False)

    def _init(self, p):
        return sgd_init(p)

    def _step(self, p, g, s, validate=False):
        return sgd_step(p, g, s, **self._kw(validate))


class Adam(_Optimizer):
    """Stateful Adam (torch.optim.Adam, ``foreach=False``): keywords lr=1e-3,
    betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False, and fmt,
    state_fmt, update, rng, cpu as :func:`adam_step`.

    Examples
    --------
    >>> import numpy as np
    >>> opt = Adam(lr=0.1)
    >>> p = opt.step({"w": np.array([1.0])}, {"w": np.array([3.0])})
    >>> float(p["w"][0]), sorted(opt.state_dict()["state"][0])
    (0.8999999761581421, ['exp_avg', 'exp_avg_sq', 'step'])
    """

    _defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                     maximize=False)
    _decoupled = False

    def _init(self, p):
        return adam_init(p)

    def _step(self, p, g, s, validate=False):
        return adam_step(p, g, s, decoupled=self._decoupled, **self._kw(validate))


class AdamW(Adam):
    """Stateful AdamW (torch.optim.AdamW, ``foreach=False``): as :class:`Adam` with
    decoupled weight decay, default 0.01.

    Examples
    --------
    >>> AdamW(lr=0.1).weight_decay
    0.01
    """

    _defaults = dict(Adam._defaults, weight_decay=1e-2)
    _decoupled = True
