"""Quantization-aware training (refcomp.quant.qat) against torch 2.13's eager QAT
(torch.ao.quantization.prepare_qat / convert, fbgemm engine).

(1) Structure: the QAT module kinds and the fake quants (where, range, dtype, scheme)
    equal torch's prepared model, for the x86 and the default QAT qconfigs.
(2) One QAT module at a time (Linear, LinearReLU, Conv2d, ConvReLU2d, ConvBn2d,
    ConvBnReLU2d in train mode and with frozen BN, LinearBn1d): forward output, input
    gradient, every parameter gradient and every fake-quant state bit-exact with torch's
    module and autograd.  The data are built so that every sum of the forward and backward
    is exact (dyadic inputs, weights whose fake-quant scale is a power of two, a batch norm
    whose batch variance and running variance are powers of four, eps 2**-100), so any summation order gives
    the same bits and any formula difference shows; the batch norms' running statistics
    go through torch's float32 n / (n - 1) and momentum products and are compared within
    2 ulp (the engine's one-rounding rule, golden/reports/nn-torch-cpu.md).
(3) convert, both ways: torch's QAT model is trained for a few steps (its own float32 arithmetic);
    its state (weights, batch-norm statistics, fake-quant buffers) is loaded into
    refcomp's prepared model; both convert; every weight code, scale, zero point, bias,
    output qparams and the integer model's outputs must be equal bit for bit -- with the
    observers still enabled (convert's extra weight-observer step) and disabled.  And
    refcomp's model trained on the engine, loaded into torch's prepared model, converts to
    the same integer model in both.
"""

import numpy as np
import pytest

from refcomp import nn
from refcomp.quant import qat
from refcomp.quant.fuse import fuse_modules_qat

torch = pytest.importorskip("torch")
from quant_torch import avx2_without_vnni, use_fbgemm  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
              pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]
tq = torch.ao.quantization
_fbgemm = pytest.fixture(autouse=True)(use_fbgemm)


def _tqconfig(name):
    return tq.get_default_qat_qconfig("x86") if name == "x86" else tq.default_qat_qconfig


def _np(t):
    return t.detach().numpy().copy()


def _bits_equal(a, b, what):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), \
        (what, np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))[:5], a.ravel()[:6],
         b.ravel()[:6])


def _ulps(a, b):
    a = np.asarray(a, np.float32).astype(np.float64)
    b = np.asarray(b, np.float32).astype(np.float64)
    return np.max(np.abs(a - b) / np.spacing(np.abs(b).astype(np.float32)).astype(np.float64))


def _fq_state(fq):
    """refcomp fake quant -> (scale, zero_point, min, max)."""
    return fq.scale, fq.zero_point, np.asarray(fq.min_val), np.asarray(fq.max_val)


def _tfq_state(fq):
    o = fq.activation_post_process
    return _np(fq.scale), _np(fq.zero_point), _np(o.min_val), _np(o.max_val)


def _compare_fq(ours, theirs, what):
    for n, a, b in zip(("scale", "zero_point", "min", "max"), _fq_state(ours),
                       _tfq_state(theirs)):
        a, b = np.asarray(a), np.asarray(b)
        if n == "zero_point":
            assert np.array_equal(a.astype(np.int64).reshape(-1), b.astype(np.int64).reshape(-1)), \
                (what, n, a, b)
        else:
            _bits_equal(a.reshape(-1), b.reshape(-1), f"{what} {n}")


# ------------------------------------------------------------------ exact-data modules
def _codes_weight(rng, shape):
    """Weights j / 64 (|j| <= 100) with each output row holding 127/64 and -127.5/64: the
    fake-quant scale is 2**-6 under both fbgemm's symmetric rule (max(|min|/128, max/127))
    and the observers' (max(|min|, max) / 127.5), per channel and per tensor."""
    w = rng.integers(-100, 101, shape).astype(np.float64) / 64
    flat = w.reshape(shape[0], -1)
    flat[:, 0], flat[:, 1] = 127 / 64, -127.5 / 64
    return flat.reshape(shape).astype(np.float32)


def _balanced_signs(rng, n):
    s = np.array([1.0, -1.0] * (n // 2))
    rng.shuffle(s)
    return s


EPS = 2.0 ** -100
KINDS = ["linear", "linear_relu", "conv", "conv_relu", "convbn", "convbn_relu",
         "convbn_frozen", "linearbn"]


def _module_case(kind, seed):
    """(torch float Sequential (train mode), refcomp float Sequential, fuse groups,
    list of (x, dy)) for one QAT module; exact data (module docstring)."""
    rng = np.random.default_rng(seed)
    tn = torch.nn
    bn_kind = kind.startswith("convbn") or kind == "linearbn"
    relu = kind.endswith("relu")      # convbn_relu, conv_relu, linear_relu
    if kind.startswith("linear"):
        cin, cout = (2, 3) if bn_kind else (6, 4)
        t = [tn.Linear(cin, cout)]
        r = [nn.Linear(cin, cout, rng=rng)]
        w = _codes_weight(rng, (cout, cin))
    else:
        cin, cout = (2, 3) if bn_kind else (2, 3)
        k, pad = (1, 0) if bn_kind else (3, 1)
        t = [tn.Conv2d(cin, cout, k, padding=pad)]
        r = [nn.Conv2d(cin, cout, k, padding=pad, rng=rng)]
        w = _codes_weight(rng, (cout, cin, k, k))
    b = (rng.integers(-16, 17, cout) / 16).astype(np.float32)
    sd = {"weight": w, "bias": b}
    if bn_kind:
        # eps 2**-100 (torch refuses 0 in training; below half an ulp of every variance
        # here even in float64, so the batch invstd is exactly 1 / d) and running var 4:
        # running std 2, scale factors gamma / 2, powers of two;
        # the stored weight is w_scaled / sf so that w * sf is the code-valued weight
        gamma = np.float32([2, 4, 1])
        sf = gamma / 2
        sd["weight"] = (w / sf.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        beta = (rng.integers(-4, 5, cout) / 8).astype(np.float32)
        bn_sd = {"weight": gamma, "bias": beta,
                 "running_mean": (rng.integers(-8, 9, cout) / 8).astype(np.float32),
                 "running_var": np.float32([4, 4, 4]), "num_batches_tracked": np.int64(0)}
        TB = tn.BatchNorm1d if kind == "linearbn" else tn.BatchNorm2d
        RB = nn.BatchNorm1d if kind == "linearbn" else nn.BatchNorm2d
        t.append(TB(cout, eps=EPS))
        r.append(RB(cout, eps=EPS))
    if relu or kind == "convbn_relu":
        t.append(tn.ReLU())
        r.append(nn.ReLU())
    tm = tn.Sequential(*t).train()
    rm = nn.Sequential(*r)
    with torch.no_grad():
        t[0].weight.copy_(torch.from_numpy(sd["weight"]))
        t[0].bias.copy_(torch.from_numpy(sd["bias"]))
        if bn_kind:
            for k2, v in bn_sd.items():
                getattr(t[1], k2).copy_(torch.from_numpy(np.asarray(v)))
    rm.load_state_dict({k2: v.numpy() for k2, v in tm.state_dict().items()})
    groups = [[str(i) for i in range(len(t))]] if len(t) > 1 else []
    steps = []
    for step in range(1 if bn_kind else 3):
        if bn_kind:
            # every input row / pixel is s * (1, 1) with balanced signs: each channel's
            # output is +-d / sf + bias, batch mean = bias, batch variance (d / sf)**2
            n = 8 if kind == "linearbn" else 16
            s = _balanced_signs(rng, n)
            if kind == "linearbn":
                x = np.repeat(s[:, None], 2, axis=1)
            else:
                x = np.repeat(s.reshape(2, 1, 2, 4), 2, axis=1)
        else:
            shape = (5, cin) if kind.startswith("linear") else (2, cin, 5, 5)
            x = rng.integers(-40, 41, shape) / 16
        x = x.astype(np.float32)
        out_shape = (x.shape[0], cout) + x.shape[2:]
        dy = (rng.integers(-8, 9, out_shape) / 16).astype(np.float32)
        steps.append((x, dy))
    return tm, rm, groups, steps


@pytest.mark.parametrize("qname", ["x86", "default"])
@pytest.mark.parametrize("kind", KINDS)
def test_qat_module_bit_exact(kind, qname):
    tm, rm, groups, steps = _module_case(kind, seed=KINDS.index(kind))
    if groups:
        tm = tq.fuse_modules_qat(tm, groups)
        rm = fuse_modules_qat(rm, groups)
    tm.qconfig = _tqconfig(qname)
    tp = tq.prepare_qat(tm)
    ours = qat.prepare_qat(rm, qname).layers[0]
    if kind == "convbn_frozen":
        tp.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
        ours.freeze_bn = True
    tmod = tp[0]
    for step, (x, dy) in enumerate(steps):
        xt = torch.from_numpy(x).requires_grad_(True)
        for p in tmod.parameters():
            p.grad = None
        yt = tmod(xt)
        yt.backward(torch.from_numpy(dy))
        y, cache = ours.forward(x, "fp32", train=True)
        dx, grads = ours.backward(dy, cache)
        what = f"{kind}/{qname}/step {step}"
        _bits_equal(y, _np(yt), f"{what} y")
        _bits_equal(dx, _np(xt.grad), f"{what} dx")
        tgrads = {k: _np(p.grad) for k, p in tmod.named_parameters()}
        assert sorted(grads) == sorted(tgrads), (grads.keys(), tgrads.keys())
        for k in tgrads:
            _bits_equal(grads[k], tgrads[k], f"{what} grad {k}")
        _compare_fq(ours.weight_fake_quant, tmod.weight_fake_quant, f"{what} weight fq")
        _compare_fq(ours.activation_post_process, tmod.activation_post_process,
                    f"{what} output fq")
        if hasattr(tmod, "bn"):
            for k in ("running_mean", "running_var"):
                assert _ulps(ours.bn.buffers[k], _np(getattr(tmod.bn, k))) <= 2, (what, k)


# ------------------------------------------------------------------ structure, errors
def _float_cnn(seed=0):
    tn = torch.nn
    torch.manual_seed(seed)
    body = tn.Sequential(tn.Conv2d(1, 4, 3, padding=1), tn.BatchNorm2d(4), tn.ReLU(),
                         tn.MaxPool2d(2), tn.Conv2d(4, 4, 3), tn.ReLU(), tn.Flatten(),
                         tn.Linear(16, 8), tn.ReLU(), tn.Linear(8, 10))
    rng = np.random.default_rng(seed)
    ours = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(kernel_size=2), nn.Conv2d(4, 4, 3, rng=rng), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16, 8, rng=rng), nn.ReLU(),
                         nn.Linear(8, 10, rng=rng))
    ours.load_state_dict({k: v.numpy() for k, v in body.state_dict().items()})
    return body, ours


CNN_FUSE = [["0", "1", "2"], ["4", "5"], ["7", "8"]]
CNN_WEIGHTED = ["0", "4", "7", "9"]


def _torch_qat_cnn(qname, seed=0):
    body, ours = _float_cnn(seed)
    tm = torch.nn.Sequential(tq.QuantStub(), body, tq.DeQuantStub()).train()
    tm = tq.fuse_modules_qat(tm, [[f"1.{k}" for k in g] for g in CNN_FUSE])
    tm.qconfig = _tqconfig(qname)
    tp = tq.prepare_qat(tm)
    rp = qat.prepare_qat(fuse_modules_qat(ours, CNN_FUSE), qname)
    return tp, rp


@pytest.mark.parametrize("qname", ["x86", "default"])
def test_prepare_qat_structure(qname):
    tp, rp = _torch_qat_cnn(qname)
    names = {"0": "QATConvBn2d", "1": "Identity", "2": "Identity", "3": "MaxPool2d",
             "4": "QATConv2d", "5": "Identity", "6": "Flatten", "7": "QATLinear",
             "8": "Identity", "9": "QATLinear"}
    tnames = {"0": "ConvBnReLU2d", "4": "ConvReLU2d", "7": "LinearReLU", "9": "Linear"}
    for i, m in enumerate(rp.layers):
        assert type(m).__name__ == names[str(i)]
        tmod = tp[1][i]
        if str(i) in tnames:
            assert type(tmod).__name__ == tnames[str(i)]
            assert m.relu == (tnames[str(i)] != "Linear")
        else:
            assert not hasattr(tmod, "weight_fake_quant")
    tfq = {"quant": tp[0].activation_post_process}
    for k in CNN_WEIGHTED:
        tfq[f"{k}.weight_fake_quant"] = tp[1][int(k)].weight_fake_quant
        tfq[f"{k}.activation_post_process"] = tp[1][int(k)].activation_post_process
    ours = rp.fake_quants()
    assert sorted(ours) == sorted(tfq)
    for k, t in tfq.items():
        o = ours[k]
        assert type(o).__name__ == type(t).__name__, k
        assert (o.quant_min, o.quant_max) == (t.activation_post_process.quant_min,
                                              t.activation_post_process.quant_max), k
        assert o.dtype.value == str(t.dtype).split(".")[-1], k
        assert o.qscheme.value == str(t.qscheme).split(".")[-1], k


def test_prepare_qat_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"layer 1 \(BatchNorm2d\).*fuse_modules_qat"):
        qat.prepare_qat(nn.Sequential(nn.Conv2d(1, 2, 3, rng=rng), nn.BatchNorm2d(2)))
    with pytest.raises(ValueError, match=r"layer 1 \(Sigmoid\)"):
        qat.prepare_qat(nn.Sequential(nn.Linear(2, 2, rng=rng), nn.Sigmoid()))
    with pytest.raises(ValueError, match="unknown QAT qconfig 'qnnpack'"):
        qat.prepare_qat(nn.Sequential(nn.Linear(2, 2, rng=rng)), "qnnpack")
    with pytest.raises(TypeError, match="Sequential"):
        qat.prepare_qat(nn.Linear(2, 2, rng=rng))
    m = qat.prepare_qat(nn.Sequential(nn.Linear(2, 2, rng=rng)))
    with pytest.raises(ValueError, match="has seen no data"):
        qat.convert(m)


# ------------------------------------------------------------------ convert
def _load_torch_state(tp, rp):
    """Copy torch's trained QAT state (parameters, batch-norm buffers, fake quants)."""
    for k, m in enumerate(rp.layers):
        tmod = tp[1][k]
        if not hasattr(tmod, "weight_fake_quant"):
            continue
        m.params["weight"] = _np(tmod.weight)
        m.params["bias"] = _np(tmod.bias)
        if hasattr(tmod, "bn"):
            for n in ("weight", "bias"):
                m.bn.params[n] = _np(getattr(tmod.bn, n))
            for n in ("running_mean", "running_var"):
                m.bn.buffers[n] = _np(getattr(tmod.bn, n)).astype(np.float64)
            m.bn.buffers["num_batches_tracked"] = int(tmod.bn.num_batches_tracked)
    tfq = {"quant": tp[0].activation_post_process}
    for k in CNN_WEIGHTED:
        tfq[f"{k}.weight_fake_quant"] = tp[1][int(k)].weight_fake_quant
        tfq[f"{k}.activation_post_process"] = tp[1][int(k)].activation_post_process
    for k, fq in rp.fake_quants().items():
        t = tfq[k]
        fq.running_min = _np(t.activation_post_process.min_val)
        fq.running_max = _np(t.activation_post_process.max_val)
        fq.scale, fq.zero_point = _np(t.scale), _np(t.zero_point).astype(np.int32)
        fq.enable_observer(bool(t.observer_enabled[0]))


@pytest.mark.parametrize("observers", ["enabled", "disabled"])
def test_convert_of_torch_trained_state(observers):
    tp, rp = _torch_qat_cnn("x86", seed=3)
    rng = np.random.default_rng(3)
    opt = torch.optim.SGD(tp.parameters(), lr=0.05, momentum=0.9)
    for step in range(4):
        x = torch.from_numpy((rng.standard_normal((8, 1, 8, 8)) * 1.5).astype(np.float32))
        target = torch.from_numpy(rng.integers(0, 10, 8))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(tp(x), target).backward()
        opt.step()
        if step == 2:
            tp.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
    if observers == "disabled":
        tp.apply(tq.disable_observer)
    tp.eval()
    _load_torch_state(tp, rp)
    tc = tq.convert(tp)
    rc = qat.convert(rp, int16_pairs=avx2_without_vnni())
    assert rc.quant.scale == tc[0].scale.item() and rc.quant.zero_point == tc[0].zero_point.item()
    for k in CNN_WEIGHTED:
        i = int(k)
        ours, theirs = rc.layers[i], tc[1][i]
        w = theirs.weight()
        assert np.array_equal(ours.weight, w.int_repr().numpy()), k
        _bits_equal(ours.w_scale, w.q_per_channel_scales().numpy(), f"{k} w_scale")
        assert np.array_equal(ours.w_zero_point, w.q_per_channel_zero_points().numpy()), k
        _bits_equal(ours.bias, _np(theirs.bias()), f"{k} bias")
        assert ours.scale == theirs.scale and ours.zero_point == theirs.zero_point, k
    x = (rng.standard_normal((16, 1, 8, 8)) * 2).astype(np.float32)
    with torch.no_grad():
        yt = tc(torch.from_numpy(x)).numpy()
    _bits_equal(rc.forward(x), yt, "converted output")


def _load_state_into_torch(rp, tp):
    """Copy refcomp's QAT state into torch's prepared model (the inverse of
    :func:`_load_torch_state`)."""
    with torch.no_grad():
        for k, m in enumerate(rp.layers):
            tmod = tp[1][k]
            if not hasattr(tmod, "weight_fake_quant"):
                continue
            tmod.weight.copy_(torch.from_numpy(np.asarray(m.params["weight"], np.float32)))
            tmod.bias.copy_(torch.from_numpy(np.asarray(m.params["bias"], np.float32)))
            if hasattr(tmod, "bn"):
                for n in ("weight", "bias"):
                    getattr(tmod.bn, n).copy_(torch.from_numpy(
                        np.asarray(m.bn.params[n], np.float32)))
                for n in ("running_mean", "running_var"):
                    getattr(tmod.bn, n).copy_(torch.from_numpy(
                        np.asarray(m.bn.buffers[n], np.float32)))
        tfq = {"quant": tp[0].activation_post_process}
        for k in CNN_WEIGHTED:
            tfq[f"{k}.weight_fake_quant"] = tp[1][int(k)].weight_fake_quant
            tfq[f"{k}.activation_post_process"] = tp[1][int(k)].activation_post_process
        for k, fq in rp.fake_quants().items():
            t, o = tfq[k], tfq[k].activation_post_process
            o.min_val.resize_(fq.running_min.shape).copy_(torch.from_numpy(fq.running_min))
            o.max_val.resize_(fq.running_max.shape).copy_(torch.from_numpy(fq.running_max))
            t.scale.resize_(fq.scale.shape).copy_(torch.from_numpy(fq.scale))
            t.zero_point.resize_(fq.zero_point.shape).copy_(torch.from_numpy(fq.zero_point))
            t.observer_enabled.fill_(int(fq.observer_enabled))


def test_engine_trained_qat_converts_as_torch():
    """fit() trains the prepared model on the engine (the loss falls); torch's convert of
    the engine-trained state (loaded into torch's prepared model) equals refcomp's convert
    bit for bit, weights, qparams and integer outputs."""
    rng = np.random.default_rng(1)
    tp, rp = _torch_qat_cnn("x86", seed=1)
    nn.prepare(rp, "fp32")
    x = (rng.standard_normal((64, 1, 8, 8))).astype(np.float32)
    t = (x[:, 0, :4, :4].sum(axis=(1, 2)) > 0).astype(np.int64) + \
        2 * (x[:, 0, 4:, 4:].sum(axis=(1, 2)) > 0)
    opt = nn.make_optimizer("sgd", "fp32", lr=0.05, momentum=0.9)
    loss = (nn.cross_entropy_forward, nn.cross_entropy_backward)
    losses = [nn.train_step(rp, x, t, loss, opt, "fp32").loss for _ in range(12)]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])
    rp.freeze_bn_stats()
    _load_state_into_torch(rp, tp)
    tp.eval()
    tc = tq.convert(tp)
    rc = qat.convert(rp, int16_pairs=avx2_without_vnni())
    for k in CNN_WEIGHTED:
        ours, theirs = rc.layers[int(k)], tc[1][int(k)]
        assert np.array_equal(ours.weight, theirs.weight().int_repr().numpy()), k
        _bits_equal(ours.bias, _np(theirs.bias()), f"{k} bias")
        assert ours.scale == theirs.scale and ours.zero_point == theirs.zero_point, k
    with torch.no_grad():
        yt = tc(torch.from_numpy(x)).numpy()
    _bits_equal(rc.forward(x), yt, "converted output")
