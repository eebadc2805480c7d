"""Structured shrinking (refcomp.prune.structured) and iterative magnitude pruning
(refcomp.prune.iterative).

Oracles: the unshrunk model itself (bit-for-bit outputs when the removed units are exactly
zero), torch 2.13 running both models on data whose sums are exact, hand-computed slices
and counts, exact rational schedule values (fractions.Fraction), and an independently
replayed training run for weight rewinding."""

import copy
import math
from fractions import Fraction

import numpy as np
import pytest

from refcomp import nn, prune
from refcomp.nn.data import Dataset
from refcomp.prune import iterative as I
from refcomp.prune import structured as S


# ----------------------------------------------------------------------------- models
def _convnet(seed=1, eps=1e-5):
    r = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, rng=r), nn.BatchNorm2d(6, eps=eps), nn.ReLU(),
        nn.MaxPool2d(kernel_size=2), nn.Conv2d(6, 8, 3, padding=1, rng=r), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 12, rng=r), nn.ReLU(), nn.Linear(12, 5, rng=r))


def _set_bn(bn, r, dead, exact=False):
    """Random BatchNorm state whose `dead` channels map zero to zero."""
    C = bn.params["weight"].shape[0]
    if exact:                                     # dyadic values, invstd exactly 1/2
        bn.buffers["running_mean"] = r.integers(-4, 5, C) / 8.0
        bn.buffers["running_var"] = np.full(C, 4.0)
        bn.params["weight"] = r.integers(1, 3, C) / 4.0
        bn.params["bias"] = r.integers(-2, 3, C) / 8.0
    else:
        bn.buffers["running_mean"] = r.standard_normal(C) * 0.1
        bn.buffers["running_var"] = r.random(C) + 0.5
        bn.params["weight"] = r.random(C) + 0.5
        bn.params["bias"] = r.standard_normal(C) * 0.1
    bn.params["weight"][dead] = 0.0
    bn.params["bias"][dead] = 0.0


def _prune_rows(layer, amount):
    """ln_structured along dim 0 and the bias pruned with the same rows: the removed
    units are exactly zero."""
    prune.ln_structured(layer, "weight", amount, n=1, dim=0)
    m = layer.buffers["weight_mask"]
    prune.custom_from_mask(layer, "bias", m.reshape(m.shape[0], -1).any(axis=1))
    return m.reshape(m.shape[0], -1).any(axis=1)


def _pruned_convnet(exact=False):
    net = _convnet(eps=0.0 if exact else 1e-5)
    r = np.random.default_rng(7)
    if exact:
        for j in (0, 4, 7, 9):
            w = net.layers[j].params["weight"]
            net.layers[j].params["weight"] = r.integers(-2, 3, w.shape) / 8.0
            net.layers[j].params["bias"] = r.integers(-2, 3, w.shape[0]) / 8.0
    alive = {j: _prune_rows(net.layers[j], a) for j, a in ((0, 2), (4, 3), (7, 0.4))}
    _set_bn(net.layers[1], r, ~alive[0], exact)
    return net, alive


def _x(n=16, exact=False, seed=3):
    r = np.random.default_rng(seed)
    return r.integers(0, 9, (n, 1, 8, 8)) / 8.0 if exact else r.random((n, 1, 8, 8))


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and \
        np.array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))


# ----------------------------------------------------------------------------- shapes
def test_shrink_slices_and_counts():
    net = _convnet()
    r = np.random.default_rng(0)
    for j in (1,):
        _set_bn(net.layers[j], r, np.zeros(6, bool))
    before = copy.deepcopy(net.state_dict())
    keep0, keep4, keep7 = [0, 2, 5], [1, 2, 6, 7], list(range(0, 12, 2))
    small = S.shrink(net, {4: keep4, 0: [5, 0, 2], 7: keep7})
    for k, v in net.state_dict().items():                 # the original is untouched
        assert np.array_equal(v, before[k])
    sd, ss = net.state_dict(), small.state_dict()
    assert np.array_equal(ss["0.weight"], sd["0.weight"][keep0])
    assert np.array_equal(ss["0.bias"], sd["0.bias"][keep0])
    for k in ("weight", "bias", "running_mean", "running_var"):
        assert np.array_equal(ss[f"1.{k}"], sd[f"1.{k}"][keep0])
    assert ss["1.num_batches_tracked"] == sd["1.num_batches_tracked"]
    assert np.array_equal(ss["4.weight"], sd["4.weight"][keep4][:, keep0])
    # Linear after Flatten: the 4*4 block of columns of each kept channel
    blocks = sd["7.weight"].reshape(12, 8, 4, 4)[keep7][:, keep4].reshape(len(keep7), -1)
    assert np.array_equal(ss["7.weight"], blocks)
    assert np.array_equal(ss["9.weight"], sd["9.weight"][:, keep7])
    assert np.array_equal(ss["9.bias"], sd["9.bias"])
    # counts by hand: conv (O*C*9 + O), bn 2C, linear (O*I + O)
    full = 6 * 9 + 6 + 12 + 8 * 6 * 9 + 8 + 12 * 128 + 12 + 5 * 12 + 5
    shrunk = 3 * 9 + 3 + 6 + 4 * 3 * 9 + 4 + 6 * 64 + 6 + 5 * 6 + 5
    assert (S.parameter_count(net), S.parameter_count(small)) == (full, shrunk)
    assert S.model_nbytes(small, buffers=False) == 4 * shrunk
    assert S.model_nbytes(net) == 4 * (full + 12) + 8
    assert small(_x(), "fp64", train=False)[0].shape == (16, 5)


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("policy", ["fp32-sequential", "bf16-mixed-sequential"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_shrink_pruned_bit_exact_sequential(policy, train):
    """Sequential accumulation: dropping exact zeros leaves every float sum unchanged."""
    net, alive = _pruned_convnet()
    small = S.shrink_pruned(net)
    assert [small.layers[j].params["weight_orig"].shape[0] for j in (0, 4, 7)] == \
        [int(alive[j].sum()) for j in (0, 4, 7)]
    x = _x()
    a = net(x, policy, train=train)[0]
    b = small(x, policy, train=train)[0]
    assert _same_bits(a, b)
    if train:                       # batch-norm statistics of the kept channels agree
        keep = np.flatnonzero(alive[0])
        for k in ("running_mean", "running_var"):
            assert _same_bits(small.layers[1].buffers[k], net.layers[1].buffers[k][keep])


@pytest.mark.parametrize("policy", ["fp32", "fp64"])
def test_shrink_pruned_bit_exact_blas_on_exact_data(policy):
    """BLAS order is unspecified (OpenBLAS picks kernels by shape): on data whose every sum
    is exact, any order gives the same bits."""
    net, _ = _pruned_convnet(exact=True)
    small = S.shrink_pruned(net)
    x = _x(exact=True)
    a = net(x, policy, train=False)[0]
    assert np.array_equal(a, net(x, "fp64", train=False)[0])    # the sums are exact
    assert _same_bits(a, small(x, policy, train=False)[0])


def test_shrink_matches_torch_on_exact_data():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    net, _ = _pruned_convnet(exact=True)
    small = S.shrink_pruned(net)

    def to_torch(model):
        m = copy.deepcopy(model)
        for layer in m.layers:
            for name in [k for k in ("weight", "bias") if f"{k}_mask" in layer.buffers]:
                prune.remove(layer, name)
        sd = m.state_dict()
        c0, c4, l7 = (sd[f"{j}.weight"].shape[0] for j in (0, 4, 7))
        t = tnn.Sequential(tnn.Conv2d(1, c0, 3, padding=1), tnn.BatchNorm2d(c0, eps=0.0),
                           tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(c0, c4, 3, padding=1),
                           tnn.ReLU(), tnn.Flatten(), tnn.Linear(c4 * 16, l7), tnn.ReLU(),
                           tnn.Linear(l7, 5))
        t.load_state_dict({k: torch.tensor(np.asarray(v, np.float32)) if k[-7:] !=
                           "tracked" else torch.tensor(v) for k, v in sd.items()})
        return t.eval()

    x = _x(exact=True)
    with torch.no_grad():
        tx = torch.tensor(x, dtype=torch.float32)
        ya, yb = to_torch(net)(tx).numpy(), to_torch(small)(tx).numpy()
    assert _same_bits(ya, yb)
    assert _same_bits(ya, small(x, "fp32", train=False)[0])


def test_shrunk_pruned_model_trains():
    net, _ = _pruned_convnet()
    small = S.shrink_pruned(net)
    assert prune.is_pruned(small)
    opt = nn.make_optimizer("sgd", "fp64", lr=0.1)
    nn.prepare(small, "fp64")
    loss = (nn.cross_entropy_forward, nn.cross_entropy_backward)
    res = nn.train_step(small, _x(), np.arange(16) % 5, loss, opt, "fp64")
    assert math.isfinite(res.loss)
    m = small.layers[0].buffers["weight_mask"]
    assert np.all(res.grads["0.weight_orig"][m == 0] == 0)



def _flat_bn_net():
    """Conv2d(1, 3, 3) on 1x4x4 gives 3x2x2: after Flatten, BatchNorm1d(12) feature f
    belongs to channel f // 4.  Channel 2 (features 8..11) is exactly zero."""
    r = np.random.default_rng(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, rng=r), nn.ReLU(), nn.Flatten(),
                        nn.BatchNorm1d(12), nn.Linear(12, 2, rng=r))
    net.layers[0].params["weight"][2] = 0.0
    net.layers[0].params["bias"][2] = 0.0
    return net


@pytest.mark.parametrize("feature", [8, 9, 11])
def test_shrink_strict_batchnorm_after_flatten_checks_the_removed_block(feature):
    """A nonzero BatchNorm1d bias at any feature of the removed channel's block is a real
    change of function: strict rejects it, naming the channel."""
    net = _flat_bn_net()
    x = np.random.default_rng(5).random((4, 1, 4, 4))
    loose = S.shrink(net, {0: [0, 1]})
    assert _same_bits(loose(x, "fp32-sequential", train=False)[0],
                      net(x, "fp32-sequential", train=False)[0])
    net.layers[3].params["bias"][feature] = 0.5
    assert not _same_bits(S.shrink(net, {0: [0, 1]})(x, "fp64", train=False)[0],
                          net(x, "fp64", train=False)[0])
    with pytest.raises(ValueError, match=r"BatchNorm1d \(layer 3\) maps zero to nonzero "
                                         r"for units \[2\]"):
        S.shrink(net, {0: [0, 1]}, strict=True)


def test_shrink_strict_batchnorm_after_flatten_running_mean_block():
    """running_mean != 0 in the removed block is a problem unless the weight there is 0."""
    net = _flat_bn_net()
    bn = net.layers[3]
    bn.buffers["running_mean"][10] = 0.25
    with pytest.raises(ValueError, match=r"for units \[2\]"):
        S.shrink(net, {0: [0, 1]}, strict=True)
    bn.params["weight"][10] = 0.0
    S.shrink(net, {0: [0, 1]}, strict=True)


def test_shrink_strict_batchnorm_after_flatten_accepts_kept_features():
    """Nonzero BatchNorm1d entries at features of kept channels (0 .. 7) are no problem:
    the shrunk model computes the same function, bit for bit."""
    net = _flat_bn_net()
    bn = net.layers[3]
    bn.params["bias"][2] = 0.5                   # features 0..3: channel 0, kept
    bn.buffers["running_mean"][1] = 0.25         # channel 0
    bn.params["bias"][6] = -0.125                # channel 1
    bn.buffers["running_mean"][5] = 0.5          # channel 1
    small = S.shrink(net, {0: [0, 1]}, strict=True)
    assert small.layers[3].params["bias"].tolist() == bn.params["bias"][:8].tolist()
    x = np.random.default_rng(5).random((4, 1, 4, 4))
    assert _same_bits(small(x, "fp32-sequential", train=False)[0],
                      net(x, "fp32-sequential", train=False)[0])


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize("n", [1, 2, math.inf])
@pytest.mark.parametrize("amount", [1, 3, 0.5])
def test_select_channels_is_ln_structured(n, amount):
    net = _convnet()
    keep = S.select_channels(net, 4, amount, n)
    layer = prune.ln_structured(copy.deepcopy(net.layers[4]), "weight", amount, n, 0)
    m = layer.buffers["weight_mask"]
    assert keep.tolist() == np.flatnonzero(m.reshape(8, -1).any(axis=1)).tolist()
    # a second selection on the pruned layer ranks only its live channels
    prune.ln_structured(net.layers[4], "weight", amount, n, 0)
    again = S.select_channels(net, 4, 2, n)
    prune.ln_structured(net.layers[4], "weight", 2, n, 0)
    m = net.layers[4].buffers["weight_mask"]
    assert again.tolist() == np.flatnonzero(m.reshape(8, -1).any(axis=1)).tolist()
    small = S.shrink(net, {4: again})
    assert small.layers[7].params["weight"].shape == (12, 16 * again.size)


def test_select_channels_ranks_the_tensor_of_the_last_pruning():
    """Like ln_structured (and torch), select_channels ranks the pruned tensor saved at
    the last pruning or forward call, not the current mask * weight_orig: an update of
    weight_orig without a forward does not change the ranking until the next forward."""
    net = _convnet()
    layer = net.layers[4]
    prune.ln_structured(layer, "weight", 2, 1, 0)
    live = np.flatnonzero(layer.buffers["weight_mask"].reshape(8, -1).any(axis=1))
    saved = prune.pruned_tensor(layer, "weight").reshape(8, -1)
    top = live[np.argmax(np.abs(saved[live]).sum(axis=1))]
    layer.params["weight_orig"][top] *= 1e-6       # now the smallest, but not yet seen
    for what in ("stale", "after forward"):
        keep = S.select_channels(net, 4, 1, 1)
        ref = prune.ln_structured(copy.deepcopy(layer), "weight", 1, 1, 0)
        m = ref.buffers["weight_mask"].reshape(8, -1)
        assert keep.tolist() == np.flatnonzero(m.any(axis=1)).tolist()
        assert (top in keep.tolist()) == (what == "stale")
        net(_x(2), "fp64", train=False)             # refreshes the saved tensor


def test_select_then_shrink_is_not_strict():
    net = _convnet()
    keep = S.select_channels(net, 7, 0.5, 2)
    with pytest.raises(ValueError, match=r"Linear \(layer 7\).*weight rows"):
        S.shrink(net, {7: keep}, strict=True)
    assert S.shrink(net, {7: keep}).layers[9].params["weight"].shape == (5, 6)


# ----------------------------------------------------------------------------- errors
def test_shrink_errors():
    net = _convnet()
    with pytest.raises(ValueError, match=r"keeping zero units of Conv2d \(layer 0\)"):
        S.shrink(net, {0: []})
    with pytest.raises(ValueError, match=r"units \[6, -1\] are out of range"):
        S.shrink(net, {0: [0, 6, -1]})
    with pytest.raises(ValueError, match=r"units \[2\] of layer 0 are listed twice"):
        S.shrink(net, {0: [2, 2]})
    with pytest.raises(ValueError, match=r"Linear \(layer 9\) is the last weighted"):
        S.shrink(net, {9: [0]})
    with pytest.raises(ValueError, match=r"ReLU \(layer 2\) has no output units"):
        S.shrink(net, {2: [0]})
    with pytest.raises(ValueError, match=r"layer=10 is not a layer index"):
        S.shrink(net, {10: [0]})
    with pytest.raises(ValueError, match="1-D sequence of integers"):
        S.shrink(net, {0: [0.5]})
    with pytest.raises(TypeError, match="Sequential"):
        S.shrink(net.layers[0], {0: [0]})
    r = np.random.default_rng(0)
    ln = nn.Sequential(nn.Linear(4, 6, rng=r), nn.LayerNorm(6), nn.Linear(6, 2, rng=r))
    with pytest.raises(ValueError, match=r"through LayerNorm \(layer 1\)"):
        S.shrink(ln, {0: [0, 1]})
    bad = nn.Sequential(nn.Conv2d(1, 4, 3, rng=r), nn.Flatten(), nn.Linear(10, 2, rng=r))
    with pytest.raises(ValueError, match=r"shape mismatch after Flatten: Linear \(layer 2\) "
                                         r"takes 10 features, not a multiple of the 4"):
        S.shrink(bad, {0: [0, 1]})
    grouped = nn.Sequential(nn.Conv2d(2, 4, 1, groups=2, rng=r), nn.Conv2d(4, 2, 1, rng=r))
    with pytest.raises(ValueError, match="grouped convolution"):
        S.shrink(grouped, {0: [0]})
    sig = nn.Sequential(nn.Linear(3, 4, rng=r), nn.Sigmoid(), nn.Linear(4, 2, rng=r))
    sig.layers[0].params["weight"][1] = 0.0
    sig.layers[0].params["bias"][1] = 0.0
    with pytest.raises(ValueError, match=r"Sigmoid \(layer 1\) maps zero to 0.5"):
        S.shrink(sig, {0: [0, 2, 3]}, strict=True)


def test_shrink_pruned_strict_names_bias_and_batchnorm():
    net = _convnet()
    prune.ln_structured(net.layers[0], "weight", 2, n=1, dim=0)
    with pytest.raises(ValueError, match=r"Conv2d \(layer 0\).*bias entries"):
        S.shrink_pruned(net)
    m = net.layers[0].buffers["weight_mask"]
    prune.custom_from_mask(net.layers[0], "bias", m.reshape(6, -1).any(axis=1))
    net.layers[1].buffers["running_mean"] = np.full(6, 0.5)
    with pytest.raises(ValueError, match=r"BatchNorm2d \(layer 1\) maps zero to nonzero"):
        S.shrink_pruned(net)
    assert S.shrink_pruned(net, strict=False).layers[1].params["weight"].shape == (4,)
    prune.ln_structured(net.layers[4], "weight", 8, n=1, dim=0)   # every unit pruned
    with pytest.raises(ValueError, match=r"keeping zero units of Conv2d \(layer 4\)"):
        S.shrink_pruned(net, strict=False)


# ----------------------------------------------------------------------------- schedules
def _cubic(si, sf, t, n):
    """Zhu & Gupta eq. (1), exact."""
    return Fraction(sf) + (Fraction(si) - Fraction(sf)) * (1 - Fraction(t, n)) ** 3


@pytest.mark.parametrize("si,sf,n", [(0.0, 0.875, 4), (0.0, 0.9, 5), (0.1, 0.95, 7),
                                     (0.25, 0.5, 1), (0.0, 1.0, 3)])
def test_cubic_and_linear_schedules_exact(si, sf, n):
    cubic = I.sparsity_schedule("cubic", sf, n, initial=si)
    assert cubic == [float(_cubic(si, sf, t, n)) for t in range(1, n + 1)]
    lin = I.sparsity_schedule("linear", sf, n, initial=si)
    assert lin == [float(Fraction(si) + (Fraction(sf) - Fraction(si)) * t / n)
                   for t in range(1, n + 1)]
    geo = I.sparsity_schedule("geometric", sf, n, initial=si)
    assert geo[-1] == sf and all(a <= b for a, b in zip(geo, geo[1:]))
    if sf < 1:                      # a constant fraction of the remaining weights per round
        keep = [1 - si] + [1 - s for s in geo]
        ratios = [b / a for a, b in zip(keep, keep[1:])]
        assert max(ratios) - min(ratios) < 1e-12
    assert all(a <= b for a, b in zip(cubic, cubic[1:]))


def test_schedule_hand_values_and_errors():
    assert I.sparsity_schedule("cubic", 0.875, 4) == [0.505859375, 0.765625, 0.861328125,
                                                      0.875]
    assert I.sparsity_schedule("linear", 0.5, 4) == [0.125, 0.25, 0.375, 0.5]
    assert I.sparsity_schedule("one_shot", 0.3) == [0.3]
    with pytest.raises(ValueError, match="one_shot schedule has one round"):
        I.sparsity_schedule("one_shot", 0.3, 2)
    with pytest.raises(ValueError, match="initial=0.5 is above final=0.25"):
        I.sparsity_schedule("cubic", 0.25, 3, initial=0.5)
    with pytest.raises(ValueError, match="kind='exp'"):
        I.sparsity_schedule("exp", 0.25, 3)
    with pytest.raises(ValueError, match="final=1.5"):
        I.sparsity_schedule("linear", 1.5, 3)


# ----------------------------------------------------------------------------- iterative
@pytest.fixture(scope="module")
def digits():
    d = nn.data.load_digits(flat=True)
    return Dataset(d.x_train[:240], d.y_train[:240], d.x_test[:120], d.y_test[:120])


def _mlp(seed=0):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, 16, rng=r), nn.ReLU(), nn.Linear(16, 10, rng=r))


def _cosine(opt):
    return nn.schedule.CosineAnnealingLR(opt, T_max=3)


KW = dict(epochs=3, batch_size=32, seed=5, hyper={"lr": 0.2, "momentum": 0.9},
          lr_schedule=_cosine)


@pytest.mark.parametrize("rewind", ["none", "lr", "weights"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_iterative_masks_nested_and_counts_exact(digits, rewind, scope):
    targets = I.sparsity_schedule("cubic", 0.8, 3)
    net = _mlp()
    h = I.iterative_prune(net, digits, "fp32", sparsities=targets, rewind=rewind,
                          rewind_epoch=1, scope=scope, **KW)
    assert [r.round for r in h.rounds] == [0, 1, 2, 3]
    sizes = {"0.weight": 64 * 16, "2.weight": 16 * 10}
    for prev, cur in zip(h.rounds, h.rounds[1:]):
        for k, m in cur.masks.items():
            assert set(np.unique(m)) <= {0.0, 1.0}
            assert np.all(m <= prev.masks[k])                   # nested
        if scope == "global":
            assert cur.pruned == round(cur.target * sum(sizes.values()))
        else:
            for k, m in cur.masks.items():
                assert np.count_nonzero(m == 0) == round(cur.target * sizes[k])
        assert cur.sparsity == cur.pruned / sum(sizes.values())
    for k, m in h.rounds[-1].masks.items():                   # the model holds the masks
        assert np.array_equal(net.layers[int(k[0])].buffers["weight_mask"], m)
        eff = net.layers[int(k[0])].params["weight_orig"] * m
        assert np.all(eff[m == 0] == 0)
    dense = h.rounds[0]
    assert dense.lr == nn.schedule.lr_sequence(_cosine(nn.schedule.LR(0.2)), 2)
    for r in h.rounds[1:]:
        assert r.lr == ([dense.lr[-1]] * 2 if rewind == "none" else dense.lr[1:])
        assert 0.0 <= r.test_accuracy <= 1.0
    assert dense.test_accuracy > 0.5                           # it learned something
    assert (h.rewind_state is not None) == (rewind == "weights")


def test_iterative_deterministic_per_seed(digits):
    runs = [I.iterative_prune(_mlp(), digits, "fp32", sparsities=[0.5, 0.7],
                              rewind="lr", **KW) for _ in range(2)]
    for a, b in zip(*(h.rounds for h in runs)):
        assert a.test_accuracy == b.test_accuracy and a.train_loss == b.train_loss
        for k in a.masks:
            assert np.array_equal(a.masks[k], b.masks[k])


def _replay(digits, rewind, k, targets, policy="fp64"):
    """The whole procedure written out again with nn.fit and torch-style prune calls
    (default importance: torch's module.weight after the last forward)."""
    E, hyper = KW["epochs"], KW["hyper"]
    net = _mlp()
    rng = np.random.default_rng(KW["seed"])
    nn.prepare(net, policy)
    opt = nn.make_optimizer("sgd", policy, rng=rng, **hyper)
    sched = _cosine(opt)
    lrs = []
    for _ in range(E):
        if len(lrs) == k:
            record = net.state_dict()
        lrs.append(opt.lr)
        nn.fit(net, digits, policy, opt, epochs=1, batch_size=32, rng=rng, schedule=sched)
    params = [(net.layers[0], "weight"), (net.layers[2], "weight")]
    for s in targets:
        zeros = sum(int(np.sum(m.buffers.get("weight_mask", 1) == 0)) for m, _ in params)
        prune.global_unstructured(params, prune.L1Unstructured,
                                  amount=round(s * (64 * 16 + 160)) - zeros)
        opt = nn.make_optimizer("sgd", policy, rng=rng, **hyper)
        if rewind == "none":
            opt.lr, sched, epochs = lrs[-1], None, E - k
        else:
            if rewind == "weights":
                for j in (0, 2):
                    p = net.layers[j].params
                    p["weight_orig"] = record[f"{j}.weight"].copy()
                    p["bias"] = record[f"{j}.bias"].copy()
            sched, epochs = _cosine(opt), E - k
            for _ in range(k):
                sched.step()
                opt.lr = sched.lr
        nn.fit(net, digits, policy, opt, epochs=epochs, batch_size=32, rng=rng,
               schedule=sched)
    return net, record


@pytest.mark.parametrize("rewind,k", [("none", 1), ("lr", 1), ("weights", 0),
                                      ("weights", 2)])
def test_iterative_equals_independent_replay(digits, rewind, k):
    targets = [0.4, 0.7]
    net = _mlp()
    h = I.iterative_prune(net, digits, "fp64", sparsities=targets, rewind=rewind,
                          rewind_epoch=k, **KW)
    ref, record = _replay(digits, rewind, k, targets)
    got, want = net.state_dict(), ref.state_dict()
    assert sorted(got) == sorted(want)
    for key in want:
        assert _same_bits(np.asarray(got[key]), np.asarray(want[key])), key
    if rewind == "weights":
        assert sorted(h.rewind_state) == sorted(record)
        for key, v in record.items():
            assert _same_bits(np.asarray(h.rewind_state[key]), np.asarray(v)), key


def test_rewind_weights_restores_recorded_values(digits):
    net = _mlp()
    nn.prepare(net, "fp32")
    record = net.state_dict()
    rng = np.random.default_rng(0)
    opt = nn.make_optimizer("sgd", "fp32", rng=rng, lr=0.2)
    nn.fit(net, digits, "fp32", opt, epochs=1, batch_size=32, rng=rng)
    prune.global_unstructured(I.prunable_weights(net), prune.L1Unstructured, amount=0.6)
    nn.fit(net, digits, "fp32", opt, epochs=1, batch_size=32, rng=rng)
    masks = {j: net.layers[j].buffers["weight_mask"].copy() for j in (0, 2)}
    trained = net.layers[0].params["weight_orig"].copy()
    assert not np.array_equal(trained, record["0.weight"])
    I.rewind_weights(net, record)
    for j in (0, 2):
        m = net.layers[j]
        assert np.array_equal(m.buffers["weight_mask"], masks[j])
        eff = prune.pruned_tensor(m, "weight")
        assert _same_bits(eff[masks[j] == 1], record[f"{j}.weight"][masks[j] == 1])
        assert np.all(eff[masks[j] == 0] == 0)
        assert _same_bits(m.params["bias"], record[f"{j}.bias"])


def test_iterative_errors(digits):
    kw = dict(KW)
    with pytest.raises(ValueError, match="must not decrease: 0.2 follows 0.5"):
        I.iterative_prune(_mlp(), digits, "fp32", sparsities=[0.5, 0.2], **kw)
    with pytest.raises(ValueError, match="rewind_epoch=3 must be below epochs=3"):
        I.iterative_prune(_mlp(), digits, "fp32", sparsities=[0.5], rewind_epoch=3, **kw)
    with pytest.raises(ValueError, match=r"rewind='late' is not one of"):
        I.iterative_prune(_mlp(), digits, "fp32", sparsities=[0.5], rewind="late", **kw)
    with pytest.raises(ValueError, match=r"sparsity=1.2 must be a number in \[0, 1\]"):
        I.iterative_prune(_mlp(), digits, "fp32", sparsities=[1.2], **kw)
    other = _mlp(1)
    with pytest.raises(ValueError, match="is not a module of the model"):
        I.iterative_prune(_mlp(), digits, "fp32", sparsities=[0.5],
                          parameters=[(other.layers[0], "weight")], **kw)
