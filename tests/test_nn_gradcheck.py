"""Every layer's backward against central differences under the fp64 policy (an independent
oracle: the derivative is taken numerically from the forward alone)."""

import numpy as np
import pytest

from refcomp import nn
from refcomp.testing import gradcheck

P = "fp64"


def _away_from_zero(rng, shape, gap=0.05):
    """Values at least `gap` from 0 (kinks of relu / leaky relu)."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < gap, np.sign(x + 1e-300) * gap + x, x)


def _distinct(rng, shape):
    """Pairwise well-separated values (no near-ties inside a max-pool window)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 + rng.uniform(0, 0.01, n)).reshape(shape) - n * 0.05


def _check(f, inputs, b, seed=0):
    gradcheck(f, inputs, b, rng=np.random.default_rng(seed))


def _pair(fwd, bwd, **kw):
    """gradcheck of a parameter-free layer wrt x."""
    x = kw.pop("x")

    def f(x):
        return fwd(x, P, **kw)[0]

    def b(dy):
        return {"x": bwd(dy, fwd(x, P, **kw)[1])[0]}
    _check(f, {"x": x}, b)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((4, 3, 5)), rng.standard_normal((6, 5))
    b = rng.standard_normal(6) if bias else None

    def f(x, w, b=None):
        return nn.linear_forward(x, w, b, P)[0]

    def back(dy):
        dx, (dw, db) = nn.linear_backward(dy, nn.linear_forward(x, w, b, P)[1])
        return {"x": dx, "w": dw, "b": db}
    inputs = {"x": x, "w": w} | ({"b": b} if bias else {})
    _check(f, inputs, back)


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (2, 0, 1, 2), (3, 1, 2, 2), ((2, 1), (0, 1), 1, 1)])
def test_conv2d(stride, padding, dilation, groups):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 4 // groups, 3, 2))
    b = rng.standard_normal(6)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def f(x, w, b):
        return nn.conv2d_forward(x, w, b, P, **kw)[0]

    def back(dy):
        dx, (dw, db) = nn.conv2d_backward(dy, nn.conv2d_forward(x, w, b, P, **kw)[1])
        return {"x": dx, "w": dw, "b": db}
    _check(f, {"x": x, "w": w, "b": b}, back)


@pytest.mark.parametrize("shape", [(6, 3), (5, 3, 4), (4, 3, 3, 2)])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm(shape, train):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    g, b = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)

    def f(x, g, b):
        return nn.batchnorm_forward(x, g, b, rm, rv, P, train=train)[0]

    def back(dy):
        dx, (dg, db) = nn.batchnorm_backward(
            dy, nn.batchnorm_forward(x, g, b, rm, rv, P, train=train)[1])
        return {"x": dx, "g": dg, "b": db}
    _check(f, {"x": x, "g": g, "b": b}, back)


@pytest.mark.parametrize("ns", [(5,), (3, 5)])
def test_layernorm(ns):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 5))
    g, b = rng.uniform(0.5, 1.5, ns), rng.standard_normal(ns)

    def f(x, g, b):
        return nn.layernorm_forward(x, ns, g, b, P)[0]

    def back(dy):
        dx, (dg, db) = nn.layernorm_backward(dy, nn.layernorm_forward(x, ns, g, b, P)[1])
        return {"x": dx, "g": dg, "b": db}
    _check(f, {"x": x, "g": g, "b": b}, back)


@pytest.mark.parametrize("fwd,bwd,kw", [
    (nn.relu_forward, nn.relu_backward, {}),
    (nn.leaky_relu_forward, nn.leaky_relu_backward, {"negative_slope": 0.2}),
    (nn.gelu_forward, nn.gelu_backward, {"approximate": "none"}),
    (nn.gelu_forward, nn.gelu_backward, {"approximate": "tanh"}),
    (nn.sigmoid_forward, nn.sigmoid_backward, {}),
    (nn.tanh_forward, nn.tanh_backward, {}),
    (nn.softmax_forward, nn.softmax_backward, {"dim": 1}),
    (nn.softmax_forward, nn.softmax_backward, {"dim": -1}),
    (nn.log_softmax_forward, nn.log_softmax_backward, {"dim": 0}),
    (nn.log_softmax_forward, nn.log_softmax_backward, {"dim": -1}),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_elementwise(fwd, bwd, kw):
    _pair(fwd, bwd, x=_away_from_zero(np.random.default_rng(6), (3, 4, 5)), **kw)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=1, dilation=2)])
def test_max_pool(kw):
    _pair(nn.max_pool2d_forward, nn.max_pool2d_backward,
          x=_distinct(np.random.default_rng(7), (2, 3, 7, 8)), **kw)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=2, padding=1,
                                     count_include_pad=False),
                                dict(kernel_size=2, divisor_override=3)])
def test_avg_pool(kw):
    _pair(nn.avg_pool2d_forward, nn.avg_pool2d_backward,
          x=np.random.default_rng(8).standard_normal((2, 3, 7, 8)), **kw)


@pytest.mark.parametrize("out", [1, (3, 2), (5, 7)])
def test_adaptive_avg_pool(out):
    _pair(nn.adaptive_avg_pool2d_forward, nn.adaptive_avg_pool2d_backward,
          x=np.random.default_rng(9).standard_normal((2, 3, 7, 5)), output_size=out)


def test_flatten_and_dropout():
    rng = np.random.default_rng(10)
    _pair(nn.flatten_forward, nn.flatten_backward, x=rng.standard_normal((2, 3, 4)))
    x = rng.standard_normal((4, 6))

    def f(x):       # same mask at every evaluation: a fresh generator with a fixed seed
        return nn.dropout_forward(x, P, p=0.3, rng=np.random.default_rng(11))[0]

    def back(dy):
        c = nn.dropout_forward(x, P, p=0.3, rng=np.random.default_rng(11))[1]
        return {"x": nn.dropout_backward(dy, c)[0]}
    _check(f, {"x": x}, back)


def test_add():
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))

    def back(dy):
        (da, db), _ = nn.add_backward(dy, nn.add_forward(a, b, P)[1])
        return {"a": da, "b": db}
    _check(lambda a, b: nn.add_forward(a, b, P)[0], {"a": a, "b": b}, back)


@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.2}, {"reduction": "sum"},
                                {"ignore_index": 2}, {"weight": [0.5, 1.0, 2.0, 1.5]},
                                {"weight": [0.5, 1.0, 2.0, 1.5], "label_smoothing": 0.1},
                                {"reduction": "none", "label_smoothing": 0.3}])
def test_cross_entropy(kw):
    rng = np.random.default_rng(13)
    z, t = rng.standard_normal((6, 4)), np.array([0, 2, 3, 1, 2, 0])

    def back(dy):
        return {"z": nn.cross_entropy_backward(dy, nn.cross_entropy_forward(z, t, P, **kw)[1])[0]}
    _check(lambda z: np.asarray(nn.cross_entropy_forward(z, t, P, **kw)[0]), {"z": z}, back)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse(reduction):
    rng = np.random.default_rng(14)
    x, y = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))

    def back(dy):
        return {"x": nn.mse_backward(dy, nn.mse_forward(x, y, P, reduction=reduction)[1])[0]}
    _check(lambda x: np.asarray(nn.mse_forward(x, y, P, reduction=reduction)[0]), {"x": x}, back)


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    rng = np.random.default_rng(15)
    x = np.log(rng.dirichlet(np.ones(5), 4))
    t = rng.dirichlet(np.ones(5), 4)
    t[0, 1] = 0.0
    t = np.log(t + 1e-3) if log_target else t
    kw = dict(reduction=reduction, log_target=log_target)

    def back(dy):
        return {"x": nn.kl_div_backward(dy, nn.kl_div_forward(x, t, P, **kw)[1])[0]}
    _check(lambda x: np.asarray(nn.kl_div_forward(x, t, P, **kw)[0]), {"x": x}, back)


def test_sequential_residual_model():
    """A whole model (conv, bn, residual, pool, flatten, linear) against central
    differences of its parameters through the module API."""
    rng = np.random.default_rng(16)
    block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, rng=rng), nn.BatchNorm2d(3), nn.Tanh())
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng), nn.Residual(block),
                          nn.AvgPool2d(kernel_size=2), nn.Flatten(),
                          nn.Linear(12, 4, rng=rng), nn.GELU())
    x = rng.standard_normal((3, 2, 4, 4))
    names = list(model.named_parameters())

    def f(**params):
        model.set_parameters(params)
        return model.forward(x, P, train=False)[0]

    params = model.named_parameters()
    for k in ["1.block.1.running_mean", "1.block.1.running_var"]:
        assert k in model.state_dict()

    def back(dy):
        model.set_parameters(params)
        y, cache = model.forward(x, P, train=False)
        return model.backward(dy, cache)[1]
    _check(f, dict(params), back)
    assert set(back(np.zeros((3, 4)))) == set(names)
