"""Numeric policies: the format and rounding of every tensor role of a training step.

A :class:`Policy` names, for one network, the format of each tensor role (STYLE rule 5):

``weights``
    the copy of every parameter the forward and backward passes read (rounded from the
    master copy at each forward pass);
``activations``
    the output of every layer (and the network input);
``gradients``
    every gradient a backward pass produces (with respect to inputs and parameters);
``forward``, ``grad_input``, ``grad_weight``
    the :class:`~refcomp.ops.AccumulationModel` of the three matmuls of every linear and
    conv layer: ``y = x w^T``, ``dx = dy w``, ``dw = dy^T x`` (bias gradients are the
    ``grad_weight`` reduction of ``dy`` against ones);
``master``
    the format the optimizer updates (None: the weights are their own master copy);
``optimizer_state``
    momentum / Adam moments;
``update``
    how the master update rounds: ``nearest``, ``stochastic`` or ``kahan`` (compensated);
``scaling``
    ``none``, or ``per_tensor``: each matmul operand is multiplied by a power of two
    ``2**floor(log2(max / amax))`` before its rounding to the model's input format and
    the product divided by both scales afterwards (exact), "current" fp8 scaling;
``loss_scale``
    a static loss scale (1.0: none); dynamic scaling is a training-loop hook.

Elementwise and normalisation layers evaluate their formula in float64 on their (rounded)
inputs and round the result once into the role's format; see each layer's Notes.

Carriers: a role whose format is float32 keeps its tensors in float32 arrays
(:attr:`TensorSpec.carrier`) on the engine's fast path -- the outputs and gradients of
linear, conv2d, relu, max-pool and flatten, the parameters after :func:`~refcomp.nn.prepare`
and the optimizer's results -- as torch keeps a float32 model; every other layer converts
its inputs to float64 (exact) before it computes, so no value depends on the carrier.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..formats import catalog
from ..formats.floatformat import FloatFormat
from ..ops.accum_model import AccumulationModel, accumulation_model
from ..rounding.cast import cast
from ..rounding.modes import Overflow, Rounding, _Choice, _parse, as_overflow, as_rounding

__all__ = ["TensorSpec", "Update", "Scaling", "Policy", "POLICIES", "get_policy", "round_to"]

_F32 = catalog.get("float32")
_F64 = catalog.get("float64")


class Update(_Choice):
    """How the optimizer's final write ``param + delta`` rounds into the master format."""

    NEAREST = "nearest"
    STOCHASTIC = "stochastic"
    KAHAN = "kahan"


class Scaling(_Choice):
    """Scaling of matmul operands before their rounding to the model's input formats."""

    NONE = "none"
    PER_TENSOR = "per_tensor"


def _fmt(value, what):
    if isinstance(value, FloatFormat):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a FloatFormat or a format name, got {value!r}")
    try:
        return catalog.get(value)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{what}: unknown format {value!r} ({e})") from None


@dataclass(frozen=True)
class TensorSpec:
    """A role's format, rounding mode and overflow rule."""

    format: FloatFormat
    rounding: Rounding = Rounding.NEAREST_EVEN
    overflow: Overflow | None = None

    def __post_init__(self):
        object.__setattr__(self, "format", _fmt(self.format, "format"))
        object.__setattr__(self, "rounding", as_rounding(self.rounding))
        if self.overflow is not None:
            object.__setattr__(self, "overflow", as_overflow(self.overflow))

    @property
    def carrier(self):
        """The NumPy dtype the fast path keeps this role's tensors in: float32 when the
        format is float32 (its values are exactly the float32 values), else float64."""
        return np.float32 if self.format == _F32 else np.float64

    def round(self, x, rng=None, dtype=np.float64) -> np.ndarray:
        """x rounded into this spec (as a `dtype` array: float64, or float32 for formats
        whose values float32 holds)."""
        return round_to(x, self.format, self.rounding, self.overflow, rng, dtype)

    def describe(self) -> str:
        s = self.format.name
        if self.rounding is not Rounding.NEAREST_EVEN:
            s += f" ({self.rounding.value})"
        if self.overflow is not None:
            s += f" ({self.overflow.value} overflow)"
        return s


def round_to(x, fmt, rounding=Rounding.NEAREST_EVEN, overflow=None, rng=None,
             dtype=np.float64) -> np.ndarray:
    """Values of x rounded into fmt by the rounding core, as a `dtype` array (float64, or
    float32 when fmt's values are float32 values).

    float64 is the identity on float64 input.  float32 to nearest-even with the IEEE
    overflow rule goes through NumPy's float64 -> float32 conversion, which is IEEE 754
    convertFormat rounding to nearest-even with gradual underflow and overflow to
    infinity, the same operation as :func:`refcomp.cast` (tests compare the two bit for
    bit); every other case calls :func:`refcomp.cast`.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if fmt is _F64 or fmt == _F64:
        return x.astype(dtype, copy=False)
    if (fmt is _F32 or fmt == _F32) and rounding is Rounding.NEAREST_EVEN and \
            overflow in (None, Overflow.IEEE):
        with np.errstate(over="ignore"):                # overflow to inf is the result
            return x.astype(np.float32, copy=False).astype(dtype, copy=False)
    return np.asarray(cast(x, fmt, rounding, overflow=overflow, rng=rng), dtype)


def _spec(value, what):
    if isinstance(value, TensorSpec):
        return value
    if isinstance(value, tuple):
        return TensorSpec(*value)
    return TensorSpec(_fmt(value, what))


@dataclass(frozen=True)
class Policy:
    """Formats of every tensor role (module docstring).  Strings are accepted for formats
    (``"bfloat16"``), (format, rounding[, overflow]) tuples for specs, preset names for the
    accumulation models."""

    name: str
    weights: TensorSpec
    activations: TensorSpec
    gradients: TensorSpec
    forward: AccumulationModel
    grad_input: AccumulationModel
    grad_weight: AccumulationModel
    master: TensorSpec | None = None
    optimizer_state: FloatFormat = field(default=_F32)
    update: Update = Update.NEAREST
    scaling: Scaling = Scaling.NONE
    loss_scale: float = 1.0
    source: str = ""

    def __post_init__(self):
        put = object.__setattr__
        for f in ("weights", "activations", "gradients"):
            put(self, f, _spec(getattr(self, f), f))
        if self.master is not None:
            put(self, "master", _spec(self.master, "master"))
        for f in ("forward", "grad_input", "grad_weight"):
            m = getattr(self, f)
            try:
                m = accumulation_model(m)
            except ValueError as e:
                raise ValueError(f"policy {self.name!r}: {f}: {e}") from None
            if m.integer:
                raise ValueError(f"policy {self.name!r}: {f} model {m.name!r} is an integer "
                                 "GEMM (quantized inference lives in refcomp.quant)")
            put(self, f, m)
        put(self, "optimizer_state", _fmt(self.optimizer_state, "optimizer_state"))
        put(self, "update", _parse(Update, self.update, "update"))
        put(self, "scaling", _parse(Scaling, self.scaling, "scaling"))
        ls = self.loss_scale
        if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not np.isfinite(ls) \
                or ls <= 0:
            raise ValueError(f"policy {self.name!r}: loss_scale={ls!r} must be a positive "
                             "finite number")
        put(self, "loss_scale", float(ls))

    @property
    def master_spec(self) -> TensorSpec:
        """The spec the optimizer writes (the master copy, else the weights)."""
        return self.weights if self.master is None else self.master

    def with_(self, **changes) -> "Policy":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)

    def describe(self) -> str:
        rows = [f"policy {self.name}",
                f"  weights      {self.weights.describe()}",
                f"  activations  {self.activations.describe()}",
                f"  gradients    {self.gradients.describe()}",
                f"  forward      {self.forward.describe()}",
                f"  grad_input   {self.grad_input.describe()}",
                f"  grad_weight  {self.grad_weight.describe()}",
                f"  master       {self.master_spec.describe()}",
                f"  opt. state   {self.optimizer_state.name}",
                f"  update       {self.update.value}",
                f"  scaling      {self.scaling.value}",
                f"  loss scale   {self.loss_scale:g}"]
        return "\n".join(rows)


def _presets():
    bf = TensorSpec("bfloat16")
    pure = Policy("bf16-pure", bf, bf, bf, "bf16-fp32acc-blas", "bf16-fp32acc-blas",
                  "bf16-fp32acc-blas", optimizer_state="bfloat16",
                  source="pure bf16: weights, optimizer state and update in bf16, updates "
                         "rounded to nearest (Zamirai et al., 'Revisiting BFloat16 "
                         "Training', 2020, the baseline)")
    rows = [
        Policy("fp64", "float64", "float64", "float64", "fp64-blas", "fp64-blas", "fp64-blas",
               optimizer_state="float64",
               source="float64 reference (NumPy dgemm, float64 everywhere)"),
        Policy("fp32", "float32", "float32", "float32", "fp32-blas", "fp32-blas", "fp32-blas",
               source="torch 2.13 CPU float32 training (sgemm of unspecified order)"),
        Policy("fp32-sequential", "float32", "float32", "float32", "fp32-sequential-fma",
               "fp32-sequential-fma", "fp32-sequential-fma",
               source="float32 with every matmul a sequential FMA chain (bit-reproducible)"),
        Policy("bf16-mixed", bf, bf, bf, "bf16-fp32acc-blas", "bf16-fp32acc-blas",
               "bf16-fp32acc-blas", master="float32",
               source="bf16 compute with fp32 master weights (torch autocast-style: bf16 "
                      "matmul inputs, fp32 accumulation, bf16 outputs)"),
        Policy("bf16-mixed-sequential", bf, bf, bf, "bf16-fp32acc", "bf16-fp32acc",
               "bf16-fp32acc", master="float32",
               source="bf16-mixed with every matmul the sequential fp32-FMA model that "
                      "torch 2.13 CPU bf16 matmul matched bit for bit "
                      "(golden/reports/gemm-torch-cpu.md); bit-reproducible"),
        Policy("fp16-mixed", "float16", "float16", "float16", "fp16-fp32acc-blas",
               "fp16-fp32acc-blas", "fp16-fp32acc-blas", master="float32",
               loss_scale=1024.0,
               source="fp16 compute with fp32 master weights and a static loss scale of "
                      "2**10 (pass a dynamic scaler to the training step to replace it); "
                      "Micikevicius et al., 'Mixed Precision Training', ICLR 2018"),
        pure,
        pure.with_(name="bf16-pure-sr", update="stochastic",
                   source="pure bf16 with stochastically rounded updates (Zamirai et al. "
                          "2020)"),
        pure.with_(name="bf16-pure-kahan", update="kahan",
                   source="pure bf16 with Kahan-compensated updates (Zamirai et al. 2020)"),
        Policy("fp8", bf, bf, bf, "e4m3-fp32acc-blas", "e5m2xe4m3-fp32acc-blas",
               "e5m2xe4m3-fp32acc-blas", master="float32", scaling="per_tensor",
               source="fp8 matmuls: e4m3 forward operands, e5m2 gradients, per-tensor "
                      "power-of-two current scaling, fp32 accumulation, bf16 elsewhere, "
                      "fp32 master weights (Micikevicius et al., 'FP8 Formats for Deep "
                      "Learning', 2022)"),
    ]
    return {p.name: p for p in rows}


#: preset policies by name
POLICIES = _presets()


def get_policy(policy) -> Policy:
    """A Policy from a preset name or the policy itself."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str) and policy in POLICIES:
        return POLICIES[policy]
    raise ValueError(f"unknown policy {policy!r} (presets: {', '.join(POLICIES)})")
