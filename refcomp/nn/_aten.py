"""How torch 2.13's CPU kernels evaluate the optimizer's elementwise ops (see the rules in
:mod:`refcomp.nn.optim`): the fused-or-not model, the vector / scalar loop split of the
16-bit types, one op at a time through refcomp's correctly rounded arithmetic."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import _jit, ops
from ..formats import catalog
from ..formats.floatformat import FloatFormat
from ..rounding.cast import cast
from ..rounding.modes import _parse
from .policy import Update, round_to

__all__ = ["TorchCPU"]

_F32 = catalog.get("float32")
_F64 = catalog.get("float64")


@dataclass(frozen=True)
class TorchCPU:
    """How torch's CPU kernels evaluate: fused or not, and the scalar / vector loop split.

    Parameters
    ----------
    fma : bool
        True for the AVX2 / AVX512 kernels; False for ``ATEN_CPU_CAPABILITY=default`` (no
        FMA: each fused op of the module notes is a product rounded to opmath, then a sum).
    block : int
        Elements per iteration of ATen's ``vectorized_loop`` (cpu/Loops.h) for 16-bit types,
        ``2 * Vectorized<BFloat16>::size()``: 32 (AVX2), 64 (AVX512); the last
        ``n % block`` elements of each chunk go through the scalar lambda.
    threads, grain_size : int
        TensorIterator splits ``n >= grain_size`` elements into ``min(threads,
        ceil(n / grain_size))`` chunks of ``ceil(n / chunks)`` (at::parallel_for, OpenMP).

    Notes
    -----
    Only ``add`` with ``alpha != 1`` on bfloat16 / float16 depends on the split: its scalar
    lambda computes in the 16-bit type, ``x + round16(alpha * y)`` (so does every element
    without FMA).  ``cpu=None`` in the steps: fused, vector path everywhere.

    Examples
    --------
    >>> TorchCPU(block=32).scalar_mask(35).nonzero()[0]
    array([32, 33, 34])
    >>> TorchCPU.for_capability("AVX512", threads=4).block
    64
    """

    fma: bool = True
    block: int = 32
    threads: int = 1
    grain_size: int = 32768

    def __post_init__(self):
        if not isinstance(self.fma, (bool, np.bool_)):
            raise TypeError(f"TorchCPU: fma={self.fma!r} must be a bool")
        for name in ("block", "threads", "grain_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"TorchCPU: {name}={v!r} must be a positive integer")

    @classmethod
    def for_capability(cls, capability: str, threads: int = 1) -> "TorchCPU":
        """The model of ``torch.backends.cpu.get_cpu_capability()`` (DEFAULT/AVX2/AVX512)."""
        cap = str(capability).upper()
        if cap not in ("DEFAULT", "AVX2", "AVX512"):
            raise ValueError(f"unknown torch CPU capability {capability!r} "
                             "(known: DEFAULT, AVX2, AVX512)")
        return cls(cap != "DEFAULT", 64 if cap == "AVX512" else 32, threads)

    def scalar_mask(self, n: int) -> np.ndarray:
        """Boolean mask (length n, C order) of the elements the scalar lambda computes."""
        mask = np.ones(n, bool) if not self.fma else np.zeros(n, bool)
        size = n
        if n >= self.grain_size and self.threads > 1:
            size = -(-n // min(self.threads, -(-n // self.grain_size)))
        for b in range(0, n, max(size, 1)):
            e = min(n, b + size)
            mask[b + (e - b) // self.block * self.block:e] = True
        return mask


@lru_cache(maxsize=256)
def _opmath(*fmts: FloatFormat) -> FloatFormat:
    """float32, or float64 when a format has values float32 lacks."""
    fits = all(f.precision <= 24 and f.emax <= 127 and f.min_subnormal >= 2.0 ** -149
               for f in fmts)
    return _F32 if fits else _F64


def _native(fmt) -> bool:
    """Whether the float32 native path applies: NumPy's float32 +, -, *, /, sqrt are the
    IEEE operations rounded to nearest-even (the x86 SSE instructions refcomp's default
    profile models) and the fused multiply-add is the FMA instruction; with JIT disabled
    every op runs refcomp.ops, the specification (tests compare the two bit for bit).
    Native ops take and return float32 arrays, so a step converts its tensors once; the
    steps return float64."""
    return fmt == _F32 and _jit.enabled()


def _f32(x):
    """x as float32 (values of float32: exact); float32 arrays pass through."""
    x = np.asarray(x)
    return x if x.dtype == np.float32 else \
        x.astype(np.float64, copy=False).astype(np.float32)


def _binary(name, a, b, fmt):
    if not _native(fmt):
        return getattr(ops, name)(a, b, fmt)
    with np.errstate(all="ignore"):                   # IEEE results: inf, NaN, underflow
        return getattr(np, {"add": "add", "sub": "subtract", "mul": "multiply",
                            "div": "divide"}[name])(_f32(a), _f32(b))


def _sqrt(a, fmt):
    if not _native(fmt):
        return ops.sqrt(a, fmt)
    with np.errstate(all="ignore"):
        return np.sqrt(_f32(a))


def _fma(a, b, c, fmt):
    if not _native(fmt):
        return ops.fma(a, b, c, fmt)
    from .._jit.nn_kernels import fma32_flat
    a, b, c = _f32(a), _f32(b), _f32(c)
    if a.ndim == 0 and b.shape == c.shape:            # the usual x.add(y, alpha=a)
        from .._jit.nn_kernels import fma32_scalar_flat
        return fma32_scalar_flat(a[()], np.ascontiguousarray(b).reshape(-1),
                                 np.ascontiguousarray(c).reshape(-1)).reshape(c.shape)
    shape = np.broadcast_shapes(a.shape, b.shape, c.shape)
    flat = [np.ascontiguousarray(np.broadcast_to(v, shape)).reshape(-1) for v in (a, b, c)]
    return fma32_flat(*flat).reshape(shape)


def _scalar(x: float, fmt: FloatFormat) -> float:
    """A Python float rounded to nearest-even into fmt (cached: the optimizers'
    hyper-parameters repeat from step to step; the sign keys the cache too, as
    ``-0.0 == 0.0``)."""
    return _scalar_cached(x, math.copysign(1.0, x), fmt)


@lru_cache(maxsize=4096)
def _scalar_cached(x: float, sign: float, fmt: FloatFormat) -> float:
    return float(round_to(x, fmt))


@dataclass(frozen=True)
class _Kernels:
    """The emulated ATen kernels for one parameter format, state format and CPU model."""

    fmt: FloatFormat
    state: FloatFormat
    op: FloatFormat
    cpu: TorchCPU | None

    @property
    def mix(self):                  # torch's promoted dtype of a (fmt, state) pair
        return self.fmt if self.state == self.fmt else _opmath(self.fmt, self.state)

    @classmethod
    def make(cls, fmt, state_fmt, cpu):
        if cpu is not None and not isinstance(cpu, TorchCPU):
            raise TypeError(f"cpu must be a TorchCPU or None, got {cpu!r}")
        f = catalog.get(fmt)
        s = f if state_fmt is None else catalog.get(state_fmt)
        return _kernels(cls, f, s, cpu)

    def r(self, v, out):                              # opmath value -> out format
        if out == self.op:                            # (float32 arrays on the native path)
            return np.asarray(v)
        return np.asarray(cast(np.asarray(v, np.float64), out), np.float64)

    def s(self, x) -> float:                          # Python scalar -> opmath
        return _scalar(float(x), self.op)

    def s_t(self, x, out) -> float:                   # Scalar.to<scalar_t>()
        return float(self.r(self.s(x), out))

    def fma(self, a, b, c):                           # a * b + c, fused unless DEFAULT
        if self.cpu is None or self.cpu.fma:
            return _fma(a, b, c, self.op)
        return _binary("add", _binary("mul", a, b, self.op), c, self.op)

    def add_alpha(self, x, y, alpha, out, common=None):
        """``x.add(y, alpha)`` into `out`, computed in `common` (torch's promoted dtype of
        x and y, default `out`)."""
        c = out if common is None else common
        a = self.s_t(alpha, c)
        if a == 1.0:
            return self.r(_binary("add", x, y, self.op), out)
        v = self.r(self.fma(a, y, x), out)
        if self.cpu is not None and c != self.op and c.width <= 16:
            m = self.cpu.scalar_mask(v.size).reshape(v.shape)
            if m.any():                               # x + round16(a * y), in the 16-bit type
                v[m] = self.r(ops.add(x[m], self.r(_binary("mul", a, y[m], self.op), c),
                                      self.op), out)
        return v

    def mul_s(self, x, c, out):
        return self.r(_binary("mul", x, self.s(c), self.op), out)

    def div_s(self, x, c, out):
        return self.r(_binary("div", x, self.s(c), self.op), out)

    def add_s(self, x, c, out):
        return self.r(_binary("add", x, self.s_t(c, out), self.op), out)

    def lerp(self, x, y, w, out):
        w = self.s(w)
        d = _binary("sub", y, x, self.op)
        if abs(w) < 0.5:
            return self.r(self.fma(w, d, x), out)
        return self.r(self.fma(float(_binary("sub", w, 1.0, self.op)), d, y), out)

    def addcmul(self, x, t1, t2, c, out):
        return self.r(self.fma(_binary("mul", self.s(c), t1, self.op), t2, x), out)

    def sqrt(self, x, out):
        return self.r(_sqrt(x, self.op), out)

    def check(self, param, grad):
        p, g = (_values(a, self.fmt, w) for a, w in ((param, "param"), (grad, "grad")))
        if p.shape != g.shape:
            raise ValueError(f"grad shape {g.shape} != param shape {p.shape}")
        return p, g


@lru_cache(maxsize=256)
def _kernels(cls, f, s, cpu):
    return cls(f, s, _opmath(f, s), cpu)


def _values(x, fmt, what) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{what} must hold real numbers, got dtype {a.dtype}")
    if _native(fmt):                                  # keep float32 through the step
        if a.dtype == np.float32:                     # float32 values by construction
            return a
        a32 = _f32(a)
        bad = (a32 != a) & ~np.isnan(a)
        a = a32
    else:
        a = a.astype(np.float64)
        bad = (round_to(a, fmt) != a) & ~np.isnan(a)
    if bad.any():
        i = tuple(int(j) for j in np.argwhere(bad)[0])
        raise ValueError(f"{what}[{i}] = {float(a[i])!r} is not a {fmt.name} value")
    return a


def _check_range(name, v, lo, hi=None):
    """ValueError in torch's wording unless ``lo <= v`` (and ``v < hi``); NaN fails."""
    real = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    if not (real and lo <= v and (hi is None or v < hi)):
        raise ValueError(f"Invalid {name}: {v!r}" + ("" if hi is None else
                                                     f" (must be in [{lo}, {hi}))"))


def _update(update, rng):
    u = _parse(Update, update, "update")
    if u is Update.STOCHASTIC and rng is None:
        raise ValueError("update='stochastic' needs rng=numpy.random.default_rng(seed)")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return u


def _write(k, p, comp, u, rng, *, alpha=None, g=None, t=None, common=None):
    """The final ``param + increment``: ``alpha * g`` fused (SGD) or ``t`` (Adam)."""
    f, op = k.fmt, k.op
    a = None if alpha is None else k.s_t(alpha, common or f)
    if u is Update.NEAREST:
        return (k.add_alpha(p, g, alpha, f, common) if t is None
                else k.r(_binary("add", p, t, op), f)), comp
    if u is Update.STOCHASTIC:
        if t is None:
            return np.asarray(ops.fma(a, g, p, f, "stochastic", rng=rng), np.float64), comp
        return np.asarray(ops.add(p, t, f, "stochastic", rng=rng), np.float64), comp
    c = np.zeros_like(p) if comp is None else comp                   # Kahan, all in fmt
    inc = k.r(_binary("mul", a, g, op) if t is None else t, f)
    y = k.r(_binary("sub", inc, c, op), f)
    s = k.r(_binary("add", p, y, op), f)
    c = k.r(_binary("sub", k.r(_binary("sub", s, p, op), f), y, op), f)
    return s, c
