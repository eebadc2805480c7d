"""refcomp.prune against torch 2.13's torch.nn.utils.prune (masks, state_dict keys and
values bit for bit, repeated pruning, global pruning, remove, training through the
reparametrization) and property tests (random pruning counts and reproducibility, the tie
rule, N:M groups, CSR round trip, sizes against direct counting)."""

import itertools
import math

import numpy as np
import pytest

from refcomp import nn, prune
from refcomp.prune import methods as M

torch = pytest.importorskip("torch")
from torch.nn.utils import prune as tprune  # noqa: E402

SHAPES = [(7,), (5, 6), (4, 3, 5), (6, 3, 2, 2)]
AMOUNTS = [0, 1, 5, 0.0, 0.3, 0.5, 0.77, 1.0]
NORMS = [1, 2, 3, 0.5, -1, -2.5, math.inf, -math.inf, "fro", None, True]


# ----------------------------------------------------------------------------- helpers
def _weights(shape, seed):
    """Tie-free float32 weights (distinct magnitudes)."""
    r = np.random.default_rng(seed)
    size = math.prod(shape)
    mags = r.permutation(size).astype(np.float32) / size + np.float32(0.01)
    return (mags * r.choice([-1, 1], size).astype(np.float32)).reshape(shape)


def _pair(w):
    """The same tensor as a torch module and a refcomp module (parameter "weight")."""
    tm = torch.nn.Module()
    tm.weight = torch.nn.Parameter(torch.tensor(w))
    em = nn.Module()
    em.params["weight"] = np.array(w)
    return tm, em


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.dtype(f"uint{a.dtype.itemsize * 8}"))


def _same_state(tm, em):
    """state_dict keys (in order) and values equal bit for bit, and torch's module.weight
    equal to refcomp's pruned_tensor (bit for bit, -0.0 included)."""
    ts = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    es = em.state_dict()
    assert list(ts) == list(es)
    for k in ts:
        want = ts[k]
        got = np.asarray(es[k]).astype(want.dtype)
        assert np.array_equal(_bits(got), _bits(want)), k
    for name in ("weight", "bias"):
        if hasattr(tm, name + "_orig"):
            want = getattr(tm, name).detach().numpy()
            got = np.asarray(prune.pruned_tensor(em, name)).astype(want.dtype)
            assert np.array_equal(_bits(got), _bits(want)), name


def _engine_linear(w, b):
    lin = nn.Linear(w.shape[1], w.shape[0], rng=np.random.default_rng(0))
    lin.params["weight"], lin.params["bias"] = np.array(w, np.float64), np.array(b,
                                                                                np.float64)
    return lin


# ----------------------------------------------------------------------------- single methods
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("amount", AMOUNTS, ids=repr)
def test_l1_unstructured_matches_torch(shape, amount):
    w = _weights(shape, 1)
    tm, em = _pair(w)
    tprune.l1_unstructured(tm, "weight", amount)
    prune.l1_unstructured(em, "weight", amount)
    _same_state(tm, em)
    assert tprune.is_pruned(tm) and prune.is_pruned(em)


@pytest.mark.parametrize("shape,n", [(s, n) for s in SHAPES[1:] for n in NORMS
                                     if not (n == "fro" and len(s) > 3)], ids=repr)
def test_ln_structured_matches_torch(shape, n):
    """Every norm order torch accepts (n='fro' over 3 dims is torch's error: tested in
    test_errors_name_the_value), every dim, several amounts."""
    w = _weights(shape, 2)
    for dim in range(-len(shape), len(shape)):
        for amount in (0, 1, 0.5, 0.34, 1.0):
            tm, em = _pair(w)
            tprune.ln_structured(tm, "weight", amount, n=n, dim=dim)
            prune.ln_structured(em, "weight", amount, n=n, dim=dim)
            _same_state(tm, em)


def test_ln_structured_nuclear_and_zero_norm_match_torch():
    w = _weights((4, 3, 5), 3)
    for dim in (0, 1, 2, -1):
        tm, em = _pair(w)
        tprune.ln_structured(tm, "weight", 0.5, n="nuc", dim=dim)
        prune.ln_structured(em, "weight", 0.5, n="nuc", dim=dim)
        _same_state(tm, em)
    # n = 0 counts nonzeros: make the counts distinct (row i has i zeros)
    w = _weights((6, 7), 4)
    for i in range(6):
        w[i, :i] = 0
    for dim, amount in ((0, 3), (0, 0.5)):
        tm, em = _pair(w)
        tprune.ln_structured(tm, "weight", amount, n=0, dim=dim)
        prune.ln_structured(em, "weight", amount, n=0, dim=dim)
        _same_state(tm, em)


def test_channel_norm_matches_torch_norm():
    w = _weights((3, 4, 5), 5)
    tw = torch.tensor(w, dtype=torch.float64)
    for n in NORMS + [0, "nuc"]:
        for dim in range(3):
            dims = [d for d in range(3) if d != dim]
            want = torch.norm(tw, p=n, dim=dims).numpy()
            got = M.channel_norm(w, n, dim)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_amount_rounding_matches_torch(shape):
    """round(amount * size), ties to even, and torch's count for every amount."""
    size = math.prod(shape)
    for amount in [i / 20 for i in range(21)] + [0.5, 0.25, 0.125, 0.375]:
        assert M.compute_nparams_toprune(amount, size) == round(amount * size)
        tm, em = _pair(_weights(shape, 6))
        tprune.random_unstructured(tm, "weight", amount)
        prune.random_unstructured(em, "weight", amount, np.random.default_rng(0))
        assert int((tm.weight_mask == 0).sum()) == int((em.buffers["weight_mask"] == 0).sum())
    assert M.compute_nparams_toprune(0.5, 5) == 2          # round(2.5) == 2
    assert M.compute_nparams_toprune(0.5, 7) == 4          # round(3.5) == 4
    assert M.compute_nparams_toprune(np.float32(0.3), 10) == 3


# ----------------------------------------------------------------------------- repeated
SEQUENCES = [
    [("l1", 0.3), ("l1", 0.5), ("l1", 2)],
    [("ln", 1, 2, 0), ("l1", 0.4), ("ln", 0.5, 1, 1)],
    [("l1", 0.6), ("ln", 0.5, 2, 0), ("ln", 1, math.inf, -1), ("l1", 3)],
    [("ln", 0.25, -math.inf, 1), ("ln", 0.5, "fro", 1), ("l1", 0.5), ("ln", 1, 1, 0)],
    [("ln", 2, 2, 0), ("ln", 1, 2, 0), ("ln", 0.5, 2, 0)],
]


def _step(lib, module, op):
    if op[0] == "l1":
        lib.l1_unstructured(module, "weight", op[1])
    else:
        lib.ln_structured(module, "weight", op[1], n=op[2], dim=op[3])


@pytest.mark.parametrize("shape", [(6, 8), (5, 4, 3), (6, 4, 3, 3)], ids=str)
@pytest.mark.parametrize("seq", range(len(SEQUENCES)))
def test_repeated_pruning_matches_torch(shape, seq):
    ops = [op for op in SEQUENCES[seq]
           if not (op[0] == "ln" and op[2] == "fro" and len(shape) > 3)]
    tm, em = _pair(_weights(shape, 10 + seq))
    for op in ops:
        _step(tprune, tm, op)
        _step(prune, em, op)
        _same_state(tm, em)


def test_repeated_random_prunes_only_live_entries():
    em = nn.Module()
    em.params["weight"] = _weights((10, 10), 0).astype(np.float64)
    rng = np.random.default_rng(3)
    prune.random_unstructured(em, "weight", 0.5, rng)
    first = em.buffers["weight_mask"].copy()
    prune.random_unstructured(em, "weight", 0.5, rng)            # half of the 50 left
    second = em.buffers["weight_mask"]
    assert first.sum() == 50 and second.sum() == 25
    assert np.all(second <= first)


def test_repeated_pruning_uses_stale_tensor_like_torch():
    """torch ranks a repeated pruning by module.<name> as of the last forward, not by the
    weight_orig an optimizer step has changed since."""
    w = _weights((4, 6), 11)
    tm, em = _pair(w)
    tprune.l1_unstructured(tm, "weight", 0.25)
    prune.l1_unstructured(em, "weight", 0.25)
    new = _weights((4, 6), 12)
    with torch.no_grad():
        tm.weight_orig.copy_(torch.tensor(new))
    em.params["weight_orig"] = np.array(new)
    tprune.l1_unstructured(tm, "weight", 0.5)
    prune.l1_unstructured(em, "weight", 0.5)
    _same_state(tm, em)


# ----------------------------------------------------------------------------- global
@pytest.mark.parametrize("amount", [0, 7, 30, 0.2, 0.5, 0.9], ids=repr)
def test_global_unstructured_matches_torch(amount):
    r = np.random.default_rng(0)
    shapes = [(4, 6), (3, 2, 3, 3), (5,)]
    ws = [_weights(s, 20 + i) * r.uniform(0.5, 2) for i, s in enumerate(shapes)]
    pairs = [_pair(w.astype(np.float32)) for w in ws]
    # the first tensor already pruned, so the global ranking sees its mask
    tprune.l1_unstructured(pairs[0][0], "weight", 0.25)
    prune.l1_unstructured(pairs[0][1], "weight", 0.25)
    tprune.global_unstructured([(t, "weight") for t, _ in pairs],
                               pruning_method=tprune.L1Unstructured, amount=amount)
    prune.global_unstructured([(e, "weight") for _, e in pairs],
                              pruning_method=prune.L1Unstructured, amount=amount)
    for t, e in pairs:
        _same_state(t, e)


def test_global_unstructured_importance_scores_match_torch():
    ws = [_weights((3, 4), 30), _weights((2, 5), 31)]
    ss = [_weights((3, 4), 32), _weights((2, 5), 33)]
    pairs = [_pair(w) for w in ws]
    tprune.global_unstructured(
        [(t, "weight") for t, _ in pairs], tprune.L1Unstructured,
        importance_scores={(t, "weight"): torch.tensor(s) for (t, _), s in zip(pairs, ss)},
        amount=0.5)
    prune.global_unstructured(
        [(e, "weight") for _, e in pairs], prune.L1Unstructured,
        importance_scores={(e, "weight"): s for (_, e), s in zip(pairs, ss)}, amount=0.5)
    for t, e in pairs:
        _same_state(t, e)


def test_global_random_unstructured_count():
    mods = [nn.Linear(6, 4, rng=np.random.default_rng(i)) for i in range(3)]
    prune.global_unstructured([(m, "weight") for m in mods], prune.RandomUnstructured,
                              amount=0.5, rng=np.random.default_rng(0))
    assert sum(int((m.buffers["weight_mask"] == 0).sum()) for m in mods) == 36


def test_importance_scores_match_torch():
    w, s = _weights((5, 6), 40), _weights((5, 6), 41)
    tm, em = _pair(w)
    tprune.l1_unstructured(tm, "weight", 0.4, importance_scores=torch.tensor(s))
    prune.l1_unstructured(em, "weight", 0.4, importance_scores=s)
    _same_state(tm, em)
    tprune.ln_structured(tm, "weight", 1, n=1, dim=1, importance_scores=torch.tensor(s))
    prune.ln_structured(em, "weight", 1, n=1, dim=1, importance_scores=s)
    _same_state(tm, em)


# ----------------------------------------------------------------------------- reparam
def test_linear_state_remove_and_identity_match_torch():
    w, b = _weights((3, 4), 50), _weights((3,), 51)
    tl = torch.nn.Linear(4, 3)
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(w))
        tl.bias.copy_(torch.tensor(b))
    el = _engine_linear(w, b)
    el.params = {k: v.astype(np.float32) for k, v in el.params.items()}
    tprune.l1_unstructured(tl, "weight", 0.5)
    prune.l1_unstructured(el, "weight", 0.5)
    tprune.identity(tl, "bias")
    prune.identity(el, "bias")
    _same_state(tl, el)
    assert list(el.named_parameters()) == [k for k, _ in tl.named_parameters()]
    tprune.remove(tl, "weight")
    prune.remove(el, "weight")
    _same_state(tl, el)                                  # bias pruned, weight permanent
    assert np.any(_bits(el.params["weight"]) == _bits(np.float32(-0.0)))
    tprune.remove(tl, "bias")
    prune.remove(el, "bias")
    _same_state(tl, el)
    assert not prune.is_pruned(el) and "forward" not in vars(el)


def test_custom_from_mask_and_random_structured():
    em = nn.Module()
    em.params["weight"] = _weights((6, 4), 52).astype(np.float64)
    prune.custom_from_mask(em, "weight", np.tile([1, 0, 1, 1], (6, 1)))
    rng = np.random.default_rng(7)
    prune.random_structured(em, "weight", 2, 0, rng)
    mk = em.buffers["weight_mask"]
    assert (mk.sum(axis=1) == 0).sum() == 2 and np.all(mk[:, 1] == 0)
    prune.random_structured(em, "weight", 0.5, 0, rng)      # half of the 4 live rows
    assert (em.buffers["weight_mask"].sum(axis=1) == 0).sum() == 4


def test_sequential_state_dict_keys_and_load_from_torch():
    r = np.random.default_rng(0)
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    enet = nn.Sequential(nn.Linear(4, 5, rng=r), nn.ReLU(), nn.Linear(5, 3, rng=r))
    tprune.l1_unstructured(tnet[0], "weight", 0.5)
    tprune.ln_structured(tnet[2], "weight", 1, n=2, dim=0)
    prune.l1_unstructured(enet.layers[0], "weight", 0.5)
    prune.ln_structured(enet.layers[2], "weight", 1, n=2, dim=0)
    tsd = {k: v.detach().numpy() for k, v in tnet.state_dict().items()}
    assert list(enet.state_dict()) == list(tsd)
    enet.load_state_dict(tsd)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    y, _ = enet.forward(x.astype(np.float64), "fp64", train=False)
    with torch.no_grad():
        want = tnet.double()(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-13)


def test_gradients_match_torch_exactly():
    """Dyadic small-integer data: every sum is exact, so forward, dW_orig = dW * mask and
    db agree with torch float64 bit for bit."""
    r = np.random.default_rng(5)
    w = r.integers(-8, 9, (4, 6)).astype(np.float64) / 4 + r.permutation(24).reshape(4, 6) / 64
    b = r.integers(-4, 5, 4).astype(np.float64) / 8
    x = r.integers(-4, 5, (3, 6)).astype(np.float64) / 2
    dy = r.integers(-4, 5, (3, 4)).astype(np.float64) / 8
    tl = torch.nn.Linear(6, 4).double()
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(w))
        tl.bias.copy_(torch.tensor(b))
    tprune.l1_unstructured(tl, "weight", 0.5)
    tprune.l1_unstructured(tl, "bias", 1)
    xt = torch.tensor(x, requires_grad=True)
    yt = tl(xt)
    yt.backward(torch.tensor(dy))
    el = _engine_linear(w, b)
    prune.l1_unstructured(el, "weight", 0.5)
    prune.l1_unstructured(el, "bias", 1)
    y, cache = el.forward(x, "fp64")
    dx, grads = el.backward(dy, cache)
    assert np.array_equal(y, yt.detach().numpy())
    assert np.array_equal(dx, xt.grad.numpy())
    assert set(grads) == {"weight_orig", "bias_orig"}
    for k in grads:
        assert np.array_equal(_bits(grads[k]), _bits(getattr(tl, k).grad.numpy())), k


def test_training_a_pruned_model_keeps_pruned_weights_zero():
    pytest.importorskip("sklearn")
    data = nn.data.load_digits(flat=True)
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(64, 32, rng=r), nn.ReLU(), nn.Linear(32, 10, rng=r))
    prune.global_unstructured([(model.layers[0], "weight"), (model.layers[2], "weight")],
                              prune.L1Unstructured, amount=0.5)
    prune.nm_prune(model.layers[2], "weight", 2, 4)
    start = {k: v.copy() for k, v in model.named_parameters().items()}
    assert set(start) == {"0.weight_orig", "0.bias", "2.weight_orig", "2.bias"}
    opt = nn.make_optimizer("sgd", "fp32", lr=0.05, momentum=0.9)
    hist = nn.fit(model, data, "fp32", opt, epochs=4, batch_size=64,
                  rng=np.random.default_rng(1))
    assert hist.test_accuracy[-1] > 0.75
    for i in (0, 2):
        lay = model.layers[i]
        mk = lay.buffers["weight_mask"]
        w0, w1 = start[f"{i}.weight_orig"], lay.params["weight_orig"]
        # pruned entries get a zero gradient: momentum SGD leaves them where they were
        assert np.array_equal(w1[mk == 0], w0[mk == 0])
        assert np.mean(w1[mk == 1] != w0[mk == 1]) > 0.5     # (some inputs are always 0)
        eff = prune.pruned_tensor(lay, "weight")            # as of the last forward
        assert np.all(eff[mk == 0] == 0)
    assert prune.is_nm_sparse(prune.pruned_tensor(model.layers[2], "weight"), 2, 4)


def test_batchnorm_buffers_updated_through_reparam():
    bn = nn.BatchNorm2d(3)
    prune.l1_unstructured(bn, "weight", 1)
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2))
    bn.forward(x, "fp64")
    assert bn.buffers["num_batches_tracked"] == 1
    assert list(bn.buffers) == ["running_mean", "running_var", "num_batches_tracked",
                                "weight_mask"]
    assert not np.all(bn.buffers["running_mean"] == 0)


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("amount", [1, 17, 0.1, 0.5, 0.99, 1.0], ids=repr)
def test_random_unstructured_count_and_reproducibility(amount):
    w = _weights((7, 9), 60).astype(np.float64)
    masks = []
    for seed in (0, 0, 1):
        em = nn.Module()
        em.params["weight"] = w.copy()
        prune.random_unstructured(em, "weight", amount, np.random.default_rng(seed))
        masks.append(em.buffers["weight_mask"])
        assert int((masks[-1] == 0).sum()) == M.compute_nparams_toprune(amount, 63)
    assert np.array_equal(masks[0], masks[1])
    if 0 < M.compute_nparams_toprune(amount, 63) < 63:
        assert not np.array_equal(masks[0], masks[2])


def test_random_unstructured_documented_ranking():
    """The documented draw: u = rng.random(n) over live entries, the k largest pruned."""
    w = _weights((3, 5), 61).astype(np.float64)
    em = nn.Module()
    em.params["weight"] = w
    prune.random_unstructured(em, "weight", 4, np.random.default_rng(9))
    u = np.random.default_rng(9).random(15)
    want = np.ones(15)
    want[np.argsort(-u)[:4]] = 0
    assert np.array_equal(em.buffers["weight_mask"].reshape(-1), want)


def test_tie_rule():
    # unstructured: equal magnitudes (and +-0), lower flat index pruned first, NaN last
    em = nn.Module()
    em.params["weight"] = np.array([[2.0, -1.0, 1.0], [-0.0, 0.0, np.nan]])
    prune.l1_unstructured(em, "weight", 3)
    assert em.buffers["weight_mask"].tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    prune.l1_unstructured(em, "weight", 2)
    assert em.buffers["weight_mask"].tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    # structured: equal norms, lower channel pruned first
    em = nn.Module()
    em.params["weight"] = np.array([[1.0, 2.0], [2.0, 1.0], [-2.0, 1.0], [5.0, 5.0]])
    prune.ln_structured(em, "weight", 2, n=1, dim=0)
    assert em.buffers["weight_mask"].sum(axis=1).tolist() == [0.0, 0.0, 2.0, 2.0]
    # N:M: equal magnitudes in a group, lower positions pruned first
    assert prune.nm_mask([[1.0, -1.0, 1.0, 1.0]], 2, 4).tolist() == [[0.0, 0.0, 1.0, 1.0]]


# ----------------------------------------------------------------------------- errors
def test_errors_name_the_value():
    lin = nn.Linear(4, 3, rng=np.random.default_rng(0))
    for bad in (-1, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"amount=.*float in the range \[0, 1\]"):
            prune.l1_unstructured(lin, "weight", bad)
    with pytest.raises(TypeError, match="Invalid type for amount: '0.3'"):
        prune.l1_unstructured(lin, "weight", "0.3")
    with pytest.raises(ValueError, match="amount=13 should be smaller than the number of "
                                         "parameters to prune=12"):
        prune.l1_unstructured(lin, "weight", 13)
    with pytest.raises(ValueError, match="amount=4 .* to prune=3"):
        prune.ln_structured(lin, "weight", 4, n=2, dim=0)
    with pytest.raises(AttributeError, match=r"Linear has no parameter 'wieght'"):
        prune.l1_unstructured(lin, "wieght", 1)
    with pytest.raises(ValueError, match=r"n='abc'.*Order abc not supported"):
        prune.ln_structured(lin, "weight", 1, n="abc", dim=0)
    with pytest.raises(ValueError, match="n=nan"):
        prune.ln_structured(lin, "weight", 1, n=float("nan"), dim=0)
    with pytest.raises(ValueError, match="n='nuc' reduces 1 dims"):
        prune.ln_structured(lin, "weight", 1, n="nuc", dim=0)
    conv = nn.Conv2d(2, 3, 3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="n='fro' reduces 3 dims"):
        prune.ln_structured(conv, "weight", 1, n="fro", dim=0)
    for dim in (2, -3):
        with pytest.raises(IndexError, match=f"Invalid index {dim} for tensor of size"):
            prune.ln_structured(lin, "weight", 1, n=2, dim=dim)
    with pytest.raises(ValueError, match=r"multidimensional tensors.*shape \(3,\)"):
        prune.ln_structured(lin, "bias", 1, n=2, dim=0)
    with pytest.raises(ValueError, match="Parameter 'weight' of module Linear has to be "
                                         "pruned before pruning can be removed"):
        prune.remove(lin, "weight")
    with pytest.raises(ValueError, match="needs rng"):
        prune.random_unstructured(lin, "weight", 1, None)
    with pytest.raises(TypeError, match='Only "unstructured"'):
        prune.global_unstructured([(lin, "weight")], prune.LnStructured, amount=1, n=2, dim=0)
    with pytest.raises(TypeError, match="not an Iterable"):
        prune.global_unstructured(3, prune.L1Unstructured, amount=1)
    assert not prune.is_pruned(lin) and list(lin.params) == ["weight", "bias"]
    prune.l1_unstructured(lin, "weight", 1)
    with pytest.raises(ValueError, match="'weight_orig' is the reparametrization"):
        prune.l1_unstructured(lin, "weight_orig", 1)
    with pytest.raises(ValueError, match=r"importance_scores .* got \(2, 2\) vs \(3, 4\)"):
        prune.l1_unstructured(lin, "weight", 1, importance_scores=np.ones((2, 2)))


def test_torch_agrees_on_what_is_an_error():
    """Where refcomp raises, torch raises too (its messages reused above)."""
    for kw in (dict(n="abc", dim=0), dict(n="nuc", dim=0), dict(n=2, dim=2),
               dict(n=2, dim=0, amount=4)):
        kw = {"amount": 1, **kw}
        with pytest.raises((RuntimeError, ValueError, IndexError)):
            tprune.ln_structured(torch.nn.Linear(4, 3), "weight", **kw)
        with pytest.raises((ValueError, IndexError)):
            prune.ln_structured(nn.Linear(4, 3, rng=np.random.default_rng(0)), "weight",
                                **kw)
    with pytest.raises(RuntimeError):
        tprune.ln_structured(torch.nn.Conv2d(2, 3, 3), "weight", 1, n="fro", dim=0)


# ----------------------------------------------------------------------------- N:M
def _nm_oracle(w2, n, m):
    """Plain-Python N:M mask of a 2-D array (keep the n largest |w|; lower index pruned
    first among equals)."""
    out = np.zeros(w2.shape)
    for r in range(w2.shape[0]):
        for g in range(0, w2.shape[1], m):
            idx = sorted(range(g, g + m), key=lambda j: (abs(w2[r, j]), j))
            for j in idx[m - n:]:
                out[r, j] = 1
    return out


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (1, 2), (3, 3), (2, 8)])
@pytest.mark.parametrize("shape", [(6, 24), (4, 3, 2, 4), (8, 6, 4, 1)], ids=str)
def test_nm_mask_keeps_n_per_group(n, m, shape):
    r = np.random.default_rng(70)
    w = np.round(r.standard_normal(shape) * 4) / 4           # many ties
    mk = prune.nm_mask(w, n, m)
    w2 = w.reshape(shape[0], -1)
    assert np.all(mk.reshape(shape[0], -1, m).sum(axis=-1) == n)
    assert np.array_equal(mk.reshape(shape[0], -1), _nm_oracle(w2, n, m))
    assert prune.is_nm_sparse(w * mk, n, m)
    c = prune.nm_compress(w, n, m)
    back = prune.nm_decompress(c)
    assert np.array_equal(_bits(back), _bits(np.where(mk == 1, w, 0.0)))
    assert c.values.shape == (shape[0], w2.shape[1] // m * n)


def test_nm_conv_groups_along_c_kh_kw():
    w = np.zeros((1, 2, 2, 2))
    w.reshape(-1)[:] = [1, 8, 2, 7, 3, 6, 4, 5]             # (C, kh, kw) order
    assert prune.nm_mask(w, 2, 4).reshape(-1).tolist() == [0, 1, 0, 1, 0, 1, 0, 1]


def test_nm_prune_composes_with_earlier_pruning():
    em = nn.Module()
    em.params["weight"] = np.array([[4.0, 3.0, 2.0, 1.0, 0.0, 5.0, 6.0, 7.0]])
    prune.custom_from_mask(em, "weight", [[0, 1, 1, 1, 1, 1, 0, 0]])
    prune.nm_prune(em, "weight", 2, 4)
    # live entries only: group 1 keeps 3, 2; group 2 has a single live nonzero (5) and
    # keeps it with the live zero at position 4
    assert em.buffers["weight_mask"].tolist() == [[0, 1, 1, 0, 1, 1, 0, 0]]


def test_nm_errors():
    for args, msg in [(((3, 10), 2, 4), "in_features = 10 of shape \\(3, 10\\) is not a "
                                        "multiple of m=4"),
                      (((3, 3, 3, 3), 2, 4), "C\\*kh\\*kw = 27"),
                      (((4, 8), 5, 4), "n=5 must be in \\[1, m=4\\]"),
                      (((4, 8), 0, 4), "n=0"),
                      (((4, 8), 1, 0), "m=0"),
                      (((8,), 2, 4), "at least 2 dims.*\\(8,\\)")]:
        shape, n, m = args
        with pytest.raises(ValueError, match=msg):
            prune.nm_mask(np.ones(shape), n, m)
    with pytest.raises(TypeError, match="m=4.0"):
        prune.nm_mask(np.ones((4, 8)), 2, 4.0)
    with pytest.raises(ValueError, match="metadata='bits'"):
        prune.nm_nbytes((4, 8), 2, 4, metadata="bits")


def _min_width(count):
    """Bits needed to tell `count` things apart, by counting up."""
    w = 0
    while 2 ** w < count:
        w += 1
    return w


def _packed_nbytes(codes, width):
    """Bytes of the codes written as one stream of `width`-bit fields."""
    bits = [int(b) for c in np.ravel(codes) for b in np.binary_repr(int(c), width)[-width:]] \
        if width else []
    return np.packbits(np.array(bits, np.uint8)).size


def test_nm_sizes_against_direct_counting():
    for shape, n, m, fmt in [((16, 32), 2, 4, "float16"), ((10, 3, 3, 4), 1, 4, "int8"),
                             ((6, 16), 4, 8, "float4_e2m1fn"), ((5, 12), 3, 3, "bfloat16"),
                             ((3, 10), 3, 5, "float32")]:
        w = np.random.default_rng(1).standard_normal(shape)
        c = prune.nm_compress(w, n, m)
        b = prune.value_bits(fmt)
        s = prune.nm_nbytes(shape, n, m, fmt)
        assert s.values == _packed_nbytes(np.zeros(c.values.size, int), b)
        assert s.indices == _packed_nbytes(c.positions, _min_width(m))
        assert s.dense == prune.dense_nbytes(shape, fmt) == _packed_nbytes(
            np.zeros(w.size, int), b)
        subsets = list(itertools.combinations(range(m), n))
        which = [subsets.index(tuple(p)) for p in c.positions.reshape(-1, n).tolist()]
        comb = prune.nm_nbytes(shape, n, m, fmt, metadata="combinatorial")
        assert comb.indices == _packed_nbytes(which, _min_width(len(subsets)))
    assert prune.nm_nbytes((1, 4), 2, 4, 16).indices == 1          # 4 bits -> 1 byte
    assert prune.nm_nbytes((1, 4), 2, 4, 16, metadata="combinatorial").indices == 1


# ----------------------------------------------------------------------------- CSR
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning")
@pytest.mark.parametrize("shape", [(7,), (5, 6), (4, 3, 5), (6, 3, 2, 2), (3, 300)],
                         ids=str)
def test_csr_round_trip_and_torch_layout(shape):
    w = _weights(shape, 80)
    em = nn.Module()
    em.params["weight"] = w
    prune.l1_unstructured(em, "weight", 0.6)
    pw = prune.pruned_tensor(em, "weight")                  # float32, with -0.0
    c = prune.to_csr(pw)
    back = prune.from_csr(c)
    assert back.dtype == pw.dtype and np.array_equal(back, pw)
    nz = pw != 0
    assert np.array_equal(_bits(back[nz]), _bits(pw[nz]))
    w2 = torch.tensor(pw.reshape(c.shape)).to_sparse_csr()
    assert np.array_equal(c.indptr, w2.crow_indices().numpy())
    assert np.array_equal(c.indices, w2.col_indices().numpy())
    assert np.array_equal(_bits(c.values), _bits(w2.values().numpy()))
    # with the mask, kept zeros and the signs of stored entries survive bit for bit
    cm = prune.to_csr(pw, mask=em.buffers["weight_mask"])
    assert cm.nnz == int(em.buffers["weight_mask"].sum())


def test_csr_keeps_signed_zero_with_mask():
    w = np.array([[-0.0, 1.0], [0.0, -2.0]], np.float32)
    c = prune.to_csr(w, mask=[[1, 1], [0, 1]])
    back = prune.from_csr(c)
    assert np.array_equal(_bits(back), _bits(w))


@pytest.mark.parametrize("fmt", ["float32", "bfloat16", "float16", "float8_e4m3fn",
                                 "float8_e5m2", "int8", "float4_e2m1fn", "float6_e3m2fn"])
def test_csr_sizes_against_direct_counting(fmt):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    r = np.random.default_rng(90)
    for shape, density in [((4, 300), 0.01), ((20, 20), 0.3), ((300, 256), 0.05),
                           ((2, 70000), 0.002)]:
        w = r.standard_normal(shape) * (r.random(shape) < density)
        c = prune.to_csr(w)
        s = prune.csr_nbytes(c, fmt)
        assert s.indices == c.indices.nbytes and s.indptr == c.indptr.nbytes
        assert c.indices.dtype == np.min_scalar_type(shape[1] - 1)
        assert c.indptr.dtype == np.min_scalar_type(max(c.nnz, 255))
        np_dtype = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16,
                    "float16": np.float16, "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
                    "float8_e5m2": ml_dtypes.float8_e5m2, "int8": np.int8}.get(fmt)
        if np_dtype is not None:                            # a real array of the format
            assert s.values == np.zeros(c.nnz, np_dtype).nbytes
            assert s.dense == np.zeros(shape, np_dtype).nbytes
        else:                                               # packed sub-byte codes
            b = int(fmt[5])
            assert s.values == np.packbits(np.zeros(c.nnz * b, np.uint8)).size
            assert s.dense == np.packbits(np.zeros(w.size * b, np.uint8)).size
        assert s.total == s.values + s.indices + s.indptr


def test_uint_bits_and_value_bits():
    for v in (0, 1, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1):
        assert prune.uint_bits(v) == np.min_scalar_type(max(v, 1)).itemsize * 8
    with pytest.raises(ValueError, match="max_value=-1"):
        prune.uint_bits(-1)
    assert [prune.value_bits(f) for f in ("float32", "bf16", "fp8_e4m3", "uint4",
                                          "float6_e2m3fn", "tfloat32")] == \
        [32, 16, 8, 4, 6, 19]
    with pytest.raises(ValueError, match="float33"):
        prune.value_bits("float33")


def test_pruned_model_deepcopies_and_pickles():
    import copy
    import pickle
    r = np.random.default_rng(0)
    net = nn.Sequential(nn.Linear(4, 6, rng=r), nn.ReLU(), nn.Linear(6, 2, rng=r))
    prune.l1_unstructured(net.layers[0], "weight", 0.5)
    x = r.standard_normal((3, 4))
    y = net.forward(x, "fp64")[0]
    for c in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert np.array_equal(c.forward(x, "fp64")[0], y)
        c.layers[0].params["weight_orig"][:] = 0            # the copy is independent
        assert not np.array_equal(c.forward(x, "fp64")[0], y)
        assert np.array_equal(net.forward(x, "fp64")[0], y)
        prune.remove(c.layers[0], "weight")
        assert prune.is_pruned(net) and not prune.is_pruned(c)
