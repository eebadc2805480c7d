"""The ``qt.*`` golden ops (suite ``qtorch``) on torch 2.13's own torch.ao.quantization code.

Called by :class:`refcomp.crosscheck.torch_backend.TorchBackend` for CPU runs: each function
takes the torch module, the case and its input tensors (built from the golden bits) and
returns output tensors named as the golden outputs.  Nothing here is refcomp arithmetic:
the observers are ``torch.ao.quantization.observer``'s classes, fake quantization and LSQ
run torch's autograd, the fused QAT step is ``FusedMovingAvgObsFakeQuantize`` (i.e.
``torch.fused_moving_avg_obs_fake_quant``), dynamic Linear is
``torch.ao.quantization.quantize_dynamic``, static Linear / Conv2d are
``torch.ops.quantized.linear`` / ``conv2d`` (``_relu``) on prepacked weights, and fusion is
``torch.nn.utils.fusion``.  Every call runs on one thread with the fbgemm engine and torch's
deprecation / observer warnings silenced (:func:`torch_settings`).

Machine dependence is a question for :func:`machine_reason`: capability-dependent cases
(``capability``: FMA contraction and the width of torch's float32 sums) run only on that
ATen CPU build, and static integer cases whose codes differ between fbgemm's AVX2 kernel
(int16 pair saturation, ``int16_pairs: true``) and the VNNI one (``false``) run only on a
CPU with that kernel (``kernel_dependent: true``).
"""

from __future__ import annotations

import contextlib
import functools
import warnings

__all__ = ["OPS", "machine_reason", "int16_pairs_here", "torch_settings"]


@functools.lru_cache(maxsize=1)
def int16_pairs_here():
    """True if fbgemm's u8 x s8 kernel on this CPU saturates product pairs to int16 (x86
    without AVX512-VNNI / AVX-VNNI), False with VNNI, None if it cannot be told."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return None
    if " avx2" not in flags:
        return None
    return "avx512_vnni" not in flags and "avx_vnni" not in flags


def machine_reason(torch, case):
    """None if this machine's torch computes what `case` models, else why not."""
    cap = case.params.get("capability")
    here = torch.backends.cpu.get_cpu_capability().lower()
    if cap is not None and not here.startswith(str(cap).lower()):
        return (f"the case models ATen's {cap} CPU build (FMA contraction, float32 sum "
                f"lanes); this torch runs the {here} kernels")
    if case.params.get("kernel_dependent"):
        want, have = case.params["int16_pairs"], int16_pairs_here()
        if have is None:
            return "cannot tell whether this CPU's fbgemm kernel saturates int16 pairs"
        if want != have:
            return ("the codes depend on fbgemm's u8 x s8 kernel: this case models the "
                    + ("AVX2 kernel without VNNI (int16 pair saturation)" if want else
                       "VNNI kernel (exact products)")
                    + "; this CPU " + ("has no VNNI" if have else "has VNNI"))
    return None


@contextlib.contextmanager
def torch_settings(torch):
    """One thread, the fbgemm engine, warnings silenced; restored afterwards."""
    n, engine = torch.get_num_threads(), torch.backends.quantized.engine
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "fbgemm"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_num_threads(n)
        torch.backends.quantized.engine = engine


def _qdtype(torch, name):
    return getattr(torch, name)


# ---------------------------------------------------------------- observers
def _observer(torch, case, ins):
    from torch.ao.quantization import observer as O
    p = case.params
    kw = {k: p[k] for k in ("reduce_range", "quant_min", "quant_max", "eps",
                            "averaging_constant", "ch_axis", "bins") if p.get(k) is not None}
    obs = getattr(O, p["observer"])(dtype=getattr(torch, p["dtype"]),
                                    qscheme=getattr(torch, p["qscheme"]), **kw)
    x = ins["x"]
    lengths = ins.get("lengths")
    out = {k: [] for k in ("min_val", "max_val", "scale", "zero_point")}
    for b in range(x.shape[0]):
        xb = x[b] if lengths is None else x[b].reshape(-1)[:int(lengths[b])]
        obs(xb.clone())
        s, z = obs.calculate_qparams()
        per_tensor = obs.min_val.dim() == 0
        shape = () if per_tensor else (-1,)
        out["min_val"].append(obs.min_val.detach().clone().reshape(shape))
        out["max_val"].append(obs.max_val.detach().clone().reshape(shape))
        out["scale"].append(s.to(torch.float32).reshape(shape))
        zf = p["qscheme"].endswith("float_qparams")
        out["zero_point"].append(z.to(torch.float32 if zf else torch.int64).reshape(shape))
    res = {k: torch.stack(v) for k, v in out.items()}
    if p["observer"] == "HistogramObserver":
        res["histogram"] = obs.histogram.detach().clone()
    return res


# ---------------------------------------------------------------- quantize / fake quant
def _quantize(torch, case, ins):
    p = case.params
    if p.get("axis") is None:
        q = torch.quantize_per_tensor(ins["x"], float(ins["scale"]), int(ins["zero_point"]),
                                      _qdtype(torch, p["dtype"]))
    else:
        q = torch.quantize_per_channel(ins["x"], ins["scale"].to(torch.float64),
                                       ins["zero_point"].to(torch.int64), p["axis"],
                                       _qdtype(torch, p["dtype"]))
    return {"y": q.int_repr().to(torch.int32)}


def _fake_quantize(torch, case, ins):
    p = case.params
    x, qmin, qmax, axis = ins["x"], p["qmin"], p["qmax"], p.get("axis")
    X = x.clone().requires_grad_(True)
    if axis is None:
        s, z = float(ins["scale"]), int(ins["zero_point"])
        Y = torch.fake_quantize_per_tensor_affine(X, s, z, qmin, qmax)
        mask = torch.ops.aten.fake_quantize_per_tensor_affine_cachemask(x, s, z, qmin, qmax)[1]
    else:
        s, z = ins["scale"], ins["zero_point"]
        Y = torch.fake_quantize_per_channel_affine(X, s, z, axis, qmin, qmax)
        mask = torch.ops.aten.fake_quantize_per_channel_affine_cachemask(x, s, z, axis, qmin,
                                                                         qmax)[1]
    Y.backward(ins["dy"])
    return {"y": Y.detach(), "mask": mask, "dx": X.grad}


def _lsq(torch, case, ins):
    p = case.params
    X, S, Z = (ins[k].clone().requires_grad_(True) for k in ("x", "scale", "zero_point"))
    gf = p.get("grad_factor", 1.0)
    if p.get("axis") is None:
        Y = torch._fake_quantize_learnable_per_tensor_affine(X, S, Z, p["qmin"], p["qmax"], gf)
    else:
        Y = torch._fake_quantize_learnable_per_channel_affine(X, S, Z, p["axis"], p["qmin"],
                                                              p["qmax"], gf)
    Y.backward(ins["dy"])
    return {"y": Y.detach(), "dx": X.grad, "dscale": S.grad, "dzero_point": Z.grad}


def _fused(torch, case, ins):
    from torch.ao.quantization import fake_quantize as tfq
    from torch.ao.quantization import observer as O
    p = case.params
    qmin, qmax, pc, sym = p["quant_min"], p["quant_max"], p["per_channel"], p["symmetric"]
    kind = "per_channel" if pc else "per_tensor"
    qscheme = getattr(torch, f"{kind}_{'symmetric' if sym else 'affine'}")
    kw = {"ch_axis": 0} if pc else {}
    m = tfq.FusedMovingAvgObsFakeQuantize(
        observer=O.MovingAveragePerChannelMinMaxObserver if pc else O.MovingAverageMinMaxObserver,
        quant_min=qmin, quant_max=qmax, dtype=torch.qint8 if qmin < 0 else torch.quint8,
        qscheme=qscheme, averaging_constant=p["averaging_constant"], **kw)
    obs = m.activation_post_process
    out = {k: [] for k in ("y", "dx", "running_min", "running_max", "scale", "zero_point")}
    shape = (-1,) if pc else ()
    for t in range(ins["x"].shape[0]):
        if t == p.get("observer_off"):
            m.disable_observer()
        if t == p.get("fake_quant_off"):
            m.disable_fake_quant()
        X = ins["x"][t].clone().requires_grad_(True)
        Y = m(X)
        Y.backward(ins["dy"][t])
        out["y"].append(Y.detach())
        out["dx"].append(X.grad)
        out["running_min"].append(obs.min_val.detach().clone().reshape(shape))
        out["running_max"].append(obs.max_val.detach().clone().reshape(shape))
        out["scale"].append(m.scale.detach().clone().reshape(shape))
        out["zero_point"].append(m.zero_point.detach().clone().to(torch.int32).reshape(shape))
    return {k: torch.stack(v) for k, v in out.items()}


# ---------------------------------------------------------------- integer kernels
def _dynamic_linear(torch, case, ins):
    from torch.ao.nn import intrinsic as nni
    from torch.ao.quantization.qconfig import default_dynamic_qconfig, per_channel_dynamic_qconfig
    p = case.params
    w, b = ins["w"], ins.get("b")
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(w)
        if b is not None:
            lin.bias.copy_(b)
    qconfig = per_channel_dynamic_qconfig if p.get("per_channel") else default_dynamic_qconfig
    if p.get("relu"):
        model, spec = torch.nn.Sequential(nni.LinearReLU(lin, torch.nn.ReLU())), \
            {nni.LinearReLU: qconfig}
    else:
        model, spec = torch.nn.Sequential(lin), {torch.nn.Linear: qconfig}
    q = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)[0]
    with torch.no_grad():
        y = q(ins["x"])
    wt = q.weight()
    if wt.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        ws = wt.q_per_channel_scales()
    else:
        ws = torch.tensor([wt.q_scale()], dtype=torch.float64)
    if not bool((ws.to(torch.float32).to(torch.float64) == ws).all()):
        raise ValueError("torch's weight scale is not a float32 value: the golden w_scale "
                         "(float32) cannot represent it")
    return {"y": y, "wq": wt.int_repr(), "w_scale": ws.to(torch.float32)}


def _qx(torch, ins):
    return torch._make_per_tensor_quantized_tensor(ins["xq"].to(torch.uint8),
                                                   float(ins["x_scale"]),
                                                   int(ins["x_zero_point"]))


def _qw(torch, ins):
    wq, ws, wz = ins["wq"].to(torch.int8), ins["w_scale"], ins["w_zero_point"]
    if ws.numel() == 1:
        return torch._make_per_tensor_quantized_tensor(wq, float(ws.reshape(-1)[0]),
                                                       int(wz.reshape(-1)[0]))
    return torch._make_per_channel_quantized_tensor(wq, ws.to(torch.float64),
                                                    wz.to(torch.int64), 0)


def _linear(torch, case, ins):
    packed = torch.ops.quantized.linear_prepack(_qw(torch, ins), ins.get("bias"))
    fn = torch.ops.quantized.linear_relu if case.params.get("relu") else \
        torch.ops.quantized.linear
    y = fn(_qx(torch, ins), packed, float(ins["out_scale"]), int(ins["out_zero_point"]))
    return {"y": y.int_repr()}


def _pair(v):
    return [v, v] if isinstance(v, int) else list(v)


def _conv2d(torch, case, ins):
    p = case.params
    packed = torch.ops.quantized.conv2d_prepack(
        _qw(torch, ins), ins.get("bias"), _pair(p.get("stride", 1)), _pair(p.get("padding", 0)),
        _pair(p.get("dilation", 1)), p.get("groups", 1))
    fn = torch.ops.quantized.conv2d_relu if p.get("relu") else torch.ops.quantized.conv2d
    y = fn(_qx(torch, ins), packed, float(ins["out_scale"]), int(ins["out_zero_point"]))
    return {"y": y.int_repr()}


# ---------------------------------------------------------------- fusion
def _fuse_conv_bn(torch, case, ins):
    from torch.nn.utils.fusion import fuse_conv_bn_weights
    w, b = fuse_conv_bn_weights(ins["conv_w"], ins.get("conv_b"), ins["bn_rm"], ins["bn_rv"],
                                case.params["eps"], ins.get("bn_w"), ins.get("bn_b"),
                                transpose=bool(case.params.get("transpose")))
    return {"w": w.detach(), "b": b.detach()}


def _fuse_linear_bn(torch, case, ins):
    from torch.nn.utils.fusion import fuse_linear_bn_weights
    w, b = fuse_linear_bn_weights(ins["linear_w"], ins.get("linear_b"), ins["bn_rm"],
                                  ins["bn_rv"], case.params["eps"], ins["bn_w"], ins["bn_b"])
    return {"w": w.detach(), "b": b.detach()}


OPS = {"qt.observer": _observer, "qt.quantize": _quantize, "qt.fake_quantize": _fake_quantize,
       "qt.lsq": _lsq, "qt.fused_obs_fq": _fused, "qt.dynamic_linear": _dynamic_linear,
       "qt.linear": _linear, "qt.conv2d": _conv2d, "qt.fuse_conv_bn": _fuse_conv_bn,
       "qt.fuse_linear_bn": _fuse_linear_bn}
