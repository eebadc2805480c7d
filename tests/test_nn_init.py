"""refcomp.nn.init against torch 2.13: fans, gains, and the exact bounds / standard
deviations torch passes to ``uniform_`` / ``normal_`` (captured by patching those two
methods), plus Kolmogorov-Smirnov checks of our samples against the distributions with
torch's parameters."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refcomp.nn import init  # noqa: E402

SHAPES = [(3, 5), (1, 1), (7, 1), (64, 9), (16, 3, 5, 5), (8, 2, 3, 3), (4, 4, 1, 7),
          (2, 3, 4, 5, 6), (10, 1, 3), (1, 300)]
NONLINS = [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
           ("relu", None), ("selu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
           ("leaky_relu", 0), ("leaky_relu", 3), ("leaky_relu", math.sqrt(5)),
           ("conv_transpose3d", None)]


@pytest.fixture
def capture(monkeypatch):
    """Record the arguments of torch's Tensor.uniform_ / normal_ (and skip sampling)."""
    calls = []

    def uniform_(self, a=0.0, b=1.0, *, generator=None):
        calls.append(("uniform", tuple(self.shape), a, b))
        return self

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        calls.append(("normal", tuple(self.shape), mean, std))
        return self
    monkeypatch.setattr(torch.Tensor, "uniform_", uniform_)
    monkeypatch.setattr(torch.Tensor, "normal_", normal_)
    return calls


def ks_stat(x, cdf):
    x = np.sort(np.ravel(x))
    n = x.size
    f = cdf(x)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


def ks_ok(x, cdf):
    """KS test at level 0.001 (critical value 1.95 / sqrt(n))."""
    return ks_stat(x, cdf) < 1.95 / math.sqrt(np.size(x))


def u_cdf(b):
    return lambda x: np.clip((x + b) / (2 * b), 0, 1)


def n_cdf(std):
    return lambda x: 0.5 * (1 + np.vectorize(math.erf)(x / (std * math.sqrt(2))))


@pytest.mark.parametrize("nonlin,param", NONLINS)
def test_gain(nonlin, param):
    assert init.calculate_gain(nonlin, param) == torch.nn.init.calculate_gain(nonlin, param)


@pytest.mark.parametrize("nonlin,param", [("swish", None), ("leaky_relu", "x"),
                                          ("leaky_relu", True)])
def test_gain_errors(nonlin, param):
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain(nonlin, param)
    with pytest.raises(ValueError):
        init.calculate_gain(nonlin, param)


@pytest.mark.parametrize("shape", SHAPES)
def test_fans(shape):
    assert init.fan_in_and_fan_out(shape) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("shape", [(), (5,)])
def test_fan_errors(shape):
    with pytest.raises(ValueError):
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ValueError, match="fewer than 2"):
        init.fan_in_and_fan_out(shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nonlin,param", NONLINS)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "FAN_OUT"])
def test_kaiming_parameters_equal_torch(shape, nonlin, param, mode, capture):
    torch.nn.init.kaiming_uniform_(torch.empty(shape), a=param or 0, mode=mode,
                                   nonlinearity=nonlin)
    torch.nn.init.kaiming_normal_(torch.empty(shape), a=param or 0, mode=mode,
                                  nonlinearity=nonlin)
    (_, _, lo, hi), (_, _, mean, std) = capture
    ours = init.kaiming_std(shape, param or 0, mode, nonlin)
    assert ours == std and -lo == hi == math.sqrt(3.0) * ours and mean == 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gain", [1.0, 0.5, 5.0 / 3, math.sqrt(2.0)])
def test_xavier_parameters_equal_torch(shape, gain, capture):
    torch.nn.init.xavier_uniform_(torch.empty(shape), gain=gain)
    torch.nn.init.xavier_normal_(torch.empty(shape), gain=gain)
    (_, _, lo, hi), (_, _, mean, std) = capture
    ours = init.xavier_std(shape, gain)
    assert ours == std and -lo == hi == math.sqrt(3.0) * ours and mean == 0


@pytest.mark.parametrize("inf,outf,bias", [(1, 1, True), (4, 3, True), (300, 7, False),
                                           (1000, 2, True), (9, 64, True)])
def test_linear_default_bounds(inf, outf, bias, capture):
    torch.nn.Linear(inf, outf, bias=bias)
    calls = list(capture)
    w_call = calls[0]
    assert w_call[1] == (outf, inf)
    bound = math.sqrt(3.0) * init.kaiming_std((outf, inf), a=math.sqrt(5))
    assert -w_call[2] == w_call[3] == bound
    rng = np.random.default_rng(inf)
    w, b = init.linear_init(rng, inf, outf, bias=bias)
    assert w.shape == (outf, inf) and np.abs(w).max() <= np.float32(bound)
    if bias:
        assert calls[1][1] == (outf,) and calls[1][3] == 1 / math.sqrt(inf)
        assert b.shape == (outf,) and np.abs(b).max() <= np.float32(calls[1][3])
    else:
        assert len(calls) == 1 and b is None


@pytest.mark.parametrize("cin,cout,k,groups", [(3, 16, 5, 1), (4, 8, (3, 1), 2),
                                               (8, 8, 3, 8), (1, 2, 1, 1)])
def test_conv2d_default_bounds(cin, cout, k, groups, capture):
    m = torch.nn.Conv2d(cin, cout, k, groups=groups)
    (_, wshape, lo, hi), (_, bshape, blo, bhi) = capture
    w, b = init.conv2d_init(np.random.default_rng(0), cin, cout, k, groups=groups)
    assert w.shape == wshape == tuple(m.weight.shape) and b.shape == bshape
    assert -lo == hi == math.sqrt(3.0) * init.kaiming_std(wshape, a=math.sqrt(5))
    fan_in = init.fan_in_and_fan_out(wshape)[0]
    assert -blo == bhi == 1 / math.sqrt(fan_in)


def test_distributions_ks():
    """Our samples follow U(-b, b) / N(0, s^2) with torch's b and s (KS at 0.001), for
    float32 and for bfloat16 (rounding moves each sample by < 2**-8 of itself)."""
    shape = (256, 64)
    b = math.sqrt(3.0) * init.kaiming_std(shape, a=math.sqrt(5))
    s = init.kaiming_std(shape, nonlinearity="relu")
    xs = init.xavier_std(shape)
    for fmt in ("float32", "bfloat16"):
        rng = np.random.default_rng(11)
        assert ks_ok(init.kaiming_uniform(rng, shape, a=math.sqrt(5), fmt=fmt), u_cdf(b))
        assert ks_ok(init.kaiming_normal(rng, shape, nonlinearity="relu", fmt=fmt),
                     n_cdf(s))
        assert ks_ok(init.xavier_uniform(rng, shape, fmt=fmt), u_cdf(math.sqrt(3) * xs))
        assert ks_ok(init.xavier_normal(rng, shape, fmt=fmt), n_cdf(xs))
        w, bias = init.linear_init(rng, 64, 256, fmt=fmt)
        assert ks_ok(w, u_cdf(b))
    # non-vacuity: a wrong bound (e.g. 1 / sqrt(fan_in) * sqrt(3)) is rejected
    w = init.kaiming_uniform(np.random.default_rng(1), shape, a=math.sqrt(5))
    assert not ks_ok(w, u_cdf(b * 1.1))


@pytest.mark.parametrize("fmt", ["float32", "bfloat16", "float16"])
def test_values_belong_to_format(fmt):
    """torch's own conversion leaves our values unchanged."""
    rng = np.random.default_rng(2)
    w, b = init.conv2d_init(rng, 3, 4, 3, fmt=fmt)
    for x in (w, b, init.xavier_normal(rng, (5, 6), fmt=fmt)):
        t = torch.tensor(x).to(getattr(torch, fmt)).double().numpy()
        assert np.array_equal(t, x)


def test_norm_defaults_equal_torch():
    bn = torch.nn.BatchNorm2d(5)
    ours = init.batchnorm_init(5)
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert np.array_equal(getattr(ours, name), getattr(bn, name).detach().double().numpy())
    ln = torch.nn.LayerNorm((2, 3))
    ours = init.layernorm_init((2, 3))
    assert np.array_equal(ours.weight, ln.weight.detach().double().numpy())
    assert np.array_equal(ours.bias, ln.bias.detach().double().numpy())
    assert init.layernorm_init(4, bias=False).bias is None


def test_seeded_and_reproducible():
    a = init.kaiming_uniform(np.random.default_rng(5), (4, 4))
    b = init.kaiming_uniform(np.random.default_rng(5), (4, 4))
    assert np.array_equal(a, b)
    assert init.kaiming_uniform(np.random.default_rng(5), (0, 4)).shape == (0, 4)


def test_errors():
    with pytest.raises(TypeError, match="Generator"):
        init.kaiming_uniform(None, (3, 3))
    with pytest.raises(TypeError, match="Generator"):
        init.linear_init(0, 3, 3)
    with pytest.raises(ValueError):
        torch.nn.init.kaiming_uniform_(torch.empty(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="fan_avg"):
        init.kaiming_uniform(np.random.default_rng(0), (3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="fewer than 2"):
        init.xavier_uniform(np.random.default_rng(0), (5,))
    with pytest.raises(ValueError, match="groups"):
        init.conv2d_init(np.random.default_rng(0), 3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="low <= high"):
        init.uniform(np.random.default_rng(0), 3, 1.0, -1.0)
    with pytest.raises(ValueError, match="std"):
        init.normal(np.random.default_rng(0), 3, std=-1.0)
    with pytest.raises(ValueError, match="size"):
        init.uniform(np.random.default_rng(0), (3, -1))
    with pytest.raises(ValueError, match="bfloat17"):
        init.uniform(np.random.default_rng(0), 3, fmt="bfloat17")
