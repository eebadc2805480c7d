"""Module fusion (refcomp.quant.fuse) bit for bit against torch 2.13's own fusion code."""

import copy

import numpy as np
import pytest

from refcomp import nn
from refcomp.quant.fuse import (BNReLU2d, ConvReLU2d, Identity, LinearReLU,
                                fuse_conv_bn_weights, fuse_linear_bn_weights, fuse_modules)

torch = pytest.importorskip("torch")
tnn = torch.nn


def bits(a):
    """float32 bit patterns (the values are float32 values: the cast is exact)."""
    return np.asarray(a, np.float64).astype(np.float32).view(np.uint32)


def tbits(t):
    return t.detach().numpy().astype(np.float32).view(np.uint32)


def np_(t):
    return None if t is None else t.detach().numpy()


def random_bn(rng, bn, spread=3.0):
    """Random affine parameters and running statistics (positive variances of many
    magnitudes, some tiny so that eps matters)."""
    C = bn.num_features
    with torch.no_grad():
        if bn.affine:
            bn.weight.copy_(torch.from_numpy(rng.standard_normal(C).astype(np.float32)))
            bn.bias.copy_(torch.from_numpy(rng.standard_normal(C).astype(np.float32)))
        bn.running_mean.copy_(torch.from_numpy((rng.standard_normal(C) * spread)
                                               .astype(np.float32)))
        rv = np.exp(rng.uniform(-12, 4, C)).astype(np.float32)
        bn.running_var.copy_(torch.from_numpy(rv))
    return bn.eval()


def random_weights(rng, mod):
    with torch.no_grad():
        mod.weight.mul_(float(rng.uniform(0.1, 10)))
    return mod.eval()


EPS = [1e-5, 1e-3, 0.1, 1e-7]


@pytest.mark.parametrize("trial", range(24))
def test_conv_bn_weights_bit_exact(trial):
    rng = np.random.default_rng(100 + trial)
    C, O, k = int(rng.integers(1, 6)), int(rng.integers(1, 40)), int(rng.integers(1, 4))
    affine = trial % 5 != 4
    conv = random_weights(rng, tnn.Conv2d(C, O, k, bias=bool(trial % 2)))
    bn = random_bn(rng, tnn.BatchNorm2d(O, eps=EPS[trial % 4], affine=affine))
    ref = tnn.utils.fuse_conv_bn_eval(conv, bn)
    w, b = fuse_conv_bn_weights(np_(conv.weight), np_(conv.bias), np_(bn.running_mean),
                                np_(bn.running_var), bn.eps, np_(bn.weight), np_(bn.bias))
    assert np.array_equal(bits(w), tbits(ref.weight))
    assert np.array_equal(bits(b), tbits(ref.bias))


def test_conv_bn_transpose_bit_exact():
    rng = np.random.default_rng(7)
    convt = random_weights(rng, tnn.ConvTranspose2d(5, 12, 3))
    bn = random_bn(rng, tnn.BatchNorm2d(12))
    ref = tnn.utils.fuse_conv_bn_eval(convt, bn, transpose=True)
    w, b = fuse_conv_bn_weights(np_(convt.weight), np_(convt.bias), np_(bn.running_mean),
                                np_(bn.running_var), bn.eps, np_(bn.weight), np_(bn.bias),
                                transpose=True)
    assert np.array_equal(bits(w), tbits(ref.weight))
    assert np.array_equal(bits(b), tbits(ref.bias))


def test_conv_bn_many_channels_discriminates_order():
    """4096 channels: the association of the bias and the rsqrt rule matter here (a
    correctly rounded rsqrt or (b - rm) * (r * g) disagree with torch on hundreds)."""
    rng = np.random.default_rng(3)
    conv = random_weights(rng, tnn.Conv2d(3, 4096, 1))
    bn = random_bn(rng, tnn.BatchNorm2d(4096))
    ref = tnn.utils.fuse_conv_bn_eval(conv, bn)
    w, b = fuse_conv_bn_weights(np_(conv.weight), np_(conv.bias), np_(bn.running_mean),
                                np_(bn.running_var), bn.eps, np_(bn.weight), np_(bn.bias))
    assert np.array_equal(bits(w), tbits(ref.weight))
    assert np.array_equal(bits(b), tbits(ref.bias))
    # the independent oracle of a wrong association differs: the test can tell them apart
    f = np.float32
    r = f(1) / np.sqrt(np_(bn.running_var) + f(bn.eps))
    wrong = (np_(conv.bias) - np_(bn.running_mean)) * (r * np_(bn.weight)) + np_(bn.bias)
    assert (wrong.view(np.uint32) != tbits(ref.bias)).sum() > 50


@pytest.mark.parametrize("trial", range(24))
def test_linear_bn_weights_bit_exact(trial):
    rng = np.random.default_rng(200 + trial)
    K, N = int(rng.integers(1, 50)), int(rng.integers(1, 60))
    C = 1 if trial % 6 == 5 else N
    lin = random_weights(rng, tnn.Linear(K, N, bias=bool(trial % 2)))
    bn = random_bn(rng, tnn.BatchNorm1d(C, eps=EPS[trial % 4]))
    ref = tnn.utils.fuse_linear_bn_eval(lin, bn)
    w, b = fuse_linear_bn_weights(np_(lin.weight), np_(lin.bias), np_(bn.running_mean),
                                  np_(bn.running_var), bn.eps, np_(bn.weight), np_(bn.bias))
    assert w.shape == tuple(ref.weight.shape) and b.shape == tuple(ref.bias.shape)
    assert np.array_equal(bits(w), tbits(ref.weight))
    assert np.array_equal(bits(b), tbits(ref.bias))


# --------------------------------------------------------------------------- fuse_modules
def load(rmod, tmod):
    rmod.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    return rmod


def conv_bn_relu_models(rng, relu=True):
    tm = tnn.Sequential(random_weights(rng, tnn.Conv2d(3, 8, 3, padding=1)),
                        random_bn(rng, tnn.BatchNorm2d(8)), tnn.ReLU(),
                        random_weights(rng, tnn.Conv2d(8, 4, 1, bias=False)),
                        random_bn(rng, tnn.BatchNorm2d(4)),
                        tnn.Flatten(), random_weights(rng, tnn.Linear(4 * 25, 6)),
                        random_bn(rng, tnn.BatchNorm1d(6)),
                        random_weights(rng, tnn.Linear(6, 5)), tnn.ReLU()).eval()
    r = np.random.default_rng(0)
    rm = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, rng=r), nn.BatchNorm2d(8), nn.ReLU(),
                       nn.Conv2d(8, 4, 1, bias=False, rng=r), nn.BatchNorm2d(4),
                       nn.Flatten(), nn.Linear(100, 6, rng=r), nn.BatchNorm1d(6),
                       nn.Linear(6, 5, rng=r), nn.ReLU())
    return tm, load(rm, tm)


GROUPS = [["0", "1", "2"], ["3", "4"], ["6", "7"], ["8", "9"]]


def test_fuse_modules_matches_torch_structure_and_bits():
    rng = np.random.default_rng(11)
    tm, rm = conv_bn_relu_models(rng)
    tf = torch.ao.quantization.fuse_modules(tm, GROUPS)
    rf = fuse_modules(rm, GROUPS)
    kinds = [type(m).__name__ for m in rf.layers]
    assert kinds == [type(m).__name__ for m in tf]
    assert kinds == ["ConvReLU2d", "Identity", "Identity", "Conv2d", "Identity", "Flatten",
                     "Linear", "Identity", "LinearReLU", "Identity"]
    ts, rs = tf.state_dict(), rf.state_dict()
    assert sorted(ts) == sorted(rs)                      # torch's parameter names
    for k in ts:
        assert np.array_equal(bits(rs[k]), tbits(ts[k])), k
    # the original model is untouched (inplace=False) and the fused one is a new object
    assert type(rm.layers[1]).__name__ == "BatchNorm2d"
    # the fused refcomp model runs (eval mode) and its ReLU containers apply the ReLU
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    y, _ = rf.forward(x, "fp32", train=False)
    assert y.shape == (2, 5) and (y >= 0).all()


def test_fuse_modules_inplace_and_flat_group():
    rng = np.random.default_rng(12)
    tm, rm = conv_bn_relu_models(rng)
    out = fuse_modules(rm, ["3", "4"], inplace=True)
    assert out is rm and isinstance(rm.layers[4], Identity)
    tf = torch.ao.quantization.fuse_modules(tm, ["3", "4"])
    assert np.array_equal(bits(rm.layers[3].params["weight"]), tbits(tf[3].weight))
    assert np.array_equal(bits(rm.layers[3].params["bias"]), tbits(tf[3].bias))


def test_fuse_modules_nested_names():
    rng = np.random.default_rng(13)
    tm = tnn.Sequential(tnn.Sequential(random_weights(rng, tnn.Conv2d(2, 3, 3)),
                                       random_bn(rng, tnn.BatchNorm2d(3)))).eval()
    r = np.random.default_rng(0)
    rm = load(nn.Sequential(nn.Sequential(nn.Conv2d(2, 3, 3, rng=r), nn.BatchNorm2d(3))), tm)
    tf = torch.ao.quantization.fuse_modules(tm, [["0.0", "0.1"]])
    rf = fuse_modules(rm, [["0.0", "0.1"]])
    ts, rs = tf.state_dict(), rf.state_dict()
    assert sorted(ts) == sorted(rs)
    for k in ts:
        assert np.array_equal(bits(rs[k]), tbits(ts[k])), k


def test_relu_only_groups_keep_weights():
    r = np.random.default_rng(0)
    rm = nn.Sequential(nn.Conv2d(1, 2, 3, rng=r), nn.ReLU(), nn.BatchNorm2d(2), nn.ReLU(),
                       nn.Flatten(), nn.Linear(2, 2, rng=r), nn.ReLU())
    rf = fuse_modules(rm, [["0", "1"], ["2", "3"], ["5", "6"]])
    assert [type(m) for m in rf.layers[:4]] == [ConvReLU2d, Identity, BNReLU2d, Identity]
    assert isinstance(rf.layers[5], LinearReLU)
    assert np.array_equal(rf.layers[0].layers[0].params["weight"], rm.layers[0].params["weight"])
    x = np.random.default_rng(2).standard_normal((1, 1, 3, 3))
    assert np.array_equal(rf.forward(x, "fp32", train=False)[0],
                          rm.forward(x, "fp32", train=False)[0])


# --------------------------------------------------------------------------- errors
def test_incompatible_kinds_raise_like_torch():
    r = np.random.default_rng(0)
    rm = nn.Sequential(nn.Conv2d(1, 2, 3, rng=r), nn.BatchNorm1d(2), nn.Linear(2, 2, rng=r),
                       nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match=r"cannot fuse modules \['0', '1'\]: "
                                                  r"\(Conv2d, BatchNorm1d\)"):
        fuse_modules(rm, ["0", "1"])
    with pytest.raises(ValueError, match=r"\(Linear, BatchNorm2d\)"):
        fuse_modules(rm, ["2", "3"])
    tm = tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.BatchNorm1d(2)).eval()
    with pytest.raises(AssertionError, match="did not find fuser method"):
        torch.ao.quantization.fuse_modules(tm, ["0", "1"])


def test_bn_without_running_stats_raises_like_torch():
    r = np.random.default_rng(0)
    rm = nn.Sequential(nn.Conv2d(1, 2, 3, rng=r), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(ValueError, match=r"cannot fuse \['0', '1'\].*running statistics"):
        fuse_modules(rm, ["0", "1"])
    tm = tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(AssertionError, match="running_mean"):
        torch.ao.quantization.fuse_modules(tm.eval(), ["0", "1"])


def test_torch_refuses_train_mode():
    """torch refuses eval fusion of train-mode modules; refcomp modules have no mode
    (documented): fuse_modules is eval-mode fusion only."""
    tm = tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.BatchNorm2d(2)).train()
    with pytest.raises(AssertionError, match="Fusion only for eval"):
        torch.ao.quantization.fuse_modules(tm, ["0", "1"])


def test_linear_bn_feature_mismatch_and_affine_false():
    r = np.random.default_rng(0)
    rm = nn.Sequential(nn.Linear(3, 4, rng=r), nn.BatchNorm1d(5))
    with pytest.raises(ValueError, match="out_features=4 must equal bn.num_features=5"):
        fuse_modules(rm, ["0", "1"])
    rm = nn.Sequential(nn.Linear(3, 4, rng=r), nn.BatchNorm1d(4, affine=False))
    with pytest.raises(ValueError, match="affine=False"):
        fuse_modules(rm, ["0", "1"])
    tm = tnn.Sequential(tnn.Linear(3, 4), tnn.BatchNorm1d(4, affine=False)).eval()
    with pytest.raises(TypeError):                        # torch fails too (None * tensor)
        torch.ao.quantization.fuse_modules(tm, ["0", "1"])


def test_bad_arguments():
    r = np.random.default_rng(0)
    rm = nn.Sequential(nn.Conv2d(1, 2, 3, rng=r), nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match=r"no submodule '7'"):
        fuse_modules(rm, ["0", "7"])
    with pytest.raises(TypeError, match="groups must be"):
        fuse_modules(rm, [["0"]])
    with pytest.raises(TypeError, match="refcomp.nn Module"):
        fuse_modules(object(), ["0", "1"])
    with pytest.raises(ValueError, match="BatchNorm has 3 features but the convolution has 2"):
        fuse_conv_bn_weights(np.ones((2, 1, 1, 1)), None, np.zeros(3), np.ones(3), 1e-5,
                             None, None)
    with pytest.raises(ValueError, match=r"bn_rv has shape \(2,\)"):
        fuse_conv_bn_weights(np.ones((3, 1, 1, 1)), None, np.zeros(3), np.ones(2), 1e-5,
                             None, None)
    with pytest.raises(TypeError, match="bn_eps must be a real number, got '1e-5'"):
        fuse_conv_bn_weights(np.ones((2, 1, 1, 1)), None, np.zeros(2), np.ones(2), "1e-5",
                             None, None)
    with pytest.raises(ValueError, match="linear_w must have 2 dimension"):
        fuse_linear_bn_weights(np.ones(3), None, np.zeros(3), np.ones(3), 1e-5,
                               np.ones(3), np.zeros(3))
    with pytest.raises(TypeError, match="ConvReLU2d: incorrect types"):
        ConvReLU2d(nn.ReLU(), nn.ReLU())
    assert copy.deepcopy(Identity()).forward(1.5, "fp32") == (1.5, None)
