"""refcomp.amp.GradScaler against torch.amp.GradScaler (torch 2.13, CPU), and the named
extensions of ExtendedGradScaler against the rules they cite (issue 9, sections 1 and 5)."""

import numpy as np
import pytest

from refcomp import nn
from refcomp.amp import ExtendedGradScaler, GradScaler, skip_groups
from refcomp.nn.optim import SGD

torch = pytest.importorskip("torch")

INF, NAN = float("inf"), float("nan")


# --- a real torch scaler driven by a real optimizer ---------------------------------------
class TorchDriver:
    """torch.amp.GradScaler("cpu") stepping torch.optim.SGD over two parameters whose grads
    are set to finite values, or to inf / NaN when a step should overflow."""

    def __init__(self, **kw):
        self.p = torch.nn.Parameter(torch.zeros(3))
        self.q = torch.nn.Parameter(torch.zeros(2))
        self.opt = torch.optim.SGD([self.p, self.q], lr=1.0)
        self.sc = torch.amp.GradScaler("cpu", **kw)
        self.sc.scale(torch.ones(()))              # creates the scale / tracker tensors
        self.n = 0

    def step(self, found):
        with torch.no_grad():
            self.p.zero_()
            self.q.zero_()
        self.p.grad = torch.ones(3)
        self.q.grad = torch.ones(2)
        if found:                                  # alternate inf, -inf, NaN
            self.q.grad[1] = (INF, -INF, NAN)[self.n % 3]
        self.n += 1
        self.sc.step(self.opt)
        self.sc.update()
        skipped = bool(torch.all(self.p.detach() == 0))     # optimizer.step() not run
        return self.sc.get_scale(), self.sc._get_growth_tracker(), skipped


def ours_run(scaler, founds):
    rows = []
    for f in founds:
        scaler.update(bool(f))
        rows.append((scaler.scale, scaler.get_growth_tracker(), bool(f)))
    return rows


CONFIGS = [  # (kwargs, probability of an overflowing step, steps)
    (dict(growth_interval=1), 0.3, 600),
    (dict(growth_interval=2), 0.3, 600),
    (dict(growth_interval=3), 0.2, 600),
    (dict(growth_interval=4), 0.15, 600),
    (dict(growth_interval=5), 0.1, 600),
    (dict(), 0.0005, 5000),                                     # torch defaults, long
    (dict(init_scale=3.0, growth_factor=1.7, backoff_factor=0.3, growth_interval=2),
     0.35, 1500),                                               # non-power-of-two factors
    (dict(init_scale=0.1, growth_factor=1.1, backoff_factor=0.9, growth_interval=3),
     0.25, 1500),
    (dict(init_scale=2.0**120, growth_factor=2.0, growth_interval=1), 0.1, 300),
    (dict(init_scale=2e38, growth_factor=3.0, growth_interval=2), 0.05, 300),
    (dict(init_scale=2.0**-140, backoff_factor=0.5, growth_interval=5), 0.9, 300),
]


@pytest.mark.parametrize("kw,prob,n", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
@pytest.mark.parametrize("seed", [0, 1])
def test_sequence_matches_torch(kw, prob, n, seed):
    founds = np.random.default_rng(seed).random(n) < prob
    drv = TorchDriver(**kw)
    theirs = [drv.step(bool(f)) for f in founds]
    ours = ours_run(GradScaler(**kw), founds)
    assert ours == theirs
    ext = ours_run(ExtendedGradScaler(**kw), founds)   # the defaults are torch's rule
    assert ext == theirs


def test_sequences_reach_the_float32_edges():
    """The configs above do exercise the guarded growth at the top of float32 and the
    backoff down to subnormals and zero."""
    s = GradScaler(init_scale=2.0**120, growth_interval=1)
    for _ in range(20):
        s.update(False)
    assert s.scale == 2.0**127                    # 2**128 would be inf: growth refused
    s = GradScaler(init_scale=2e38, growth_factor=3.0, growth_interval=1)
    s.update(False)
    assert s.scale == float(np.float32(2e38))     # 6e38 > float32 max: refused
    s = GradScaler(init_scale=2.0**-140)
    for _ in range(20):
        s.update(True)
    assert s.scale == 0.0
    assert s.inv_scale() == INF


def test_update_new_scale_matches_torch():
    drv = TorchDriver(growth_interval=3)
    s = GradScaler(growth_interval=3)
    drv.step(False)
    s.update(False)
    drv.sc.update(new_scale=0.3)
    s.update(True, new_scale=0.3)
    assert (s.scale, s.get_growth_tracker()) == (drv.sc.get_scale(),
                                                 drv.sc._get_growth_tracker())


# --- unscaling ----------------------------------------------------------------------------
def _grads(rng, n, dtype=np.float32):
    g = (rng.standard_normal(n) * 2.0 ** rng.integers(-140, 120, n)).astype(dtype)
    g[:4] = [0.0, -0.0, 3.0e38, 1.0e-45]
    return g


def _scales(rng):
    pow2 = [2.0 ** k for k in (-20, -1, 0, 1, 16, 24, 100)]
    odd = [3.0, 0.1, 1000.0, 65535.0, 7.0e-5, 1.0e30]
    rand = list(np.float32(2.0 ** rng.uniform(-30, 60, 20)).astype(float))
    return pow2 + odd + rand


def _torch_unscale(scale, grads):
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype))
              for g in grads]
    opt = torch.optim.SGD(params, lr=0.0)
    sc = torch.amp.GradScaler("cpu", init_scale=scale)
    sc.scale(torch.ones(()))
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g.copy())
    sc.unscale_(opt)
    found = sum(v.item() for v in sc._found_inf_per_device(opt).values())
    return [p.grad.numpy() for p in params], bool(found)


def _same_bits(a, b):
    u = np.uint32 if a.dtype == np.float32 else np.uint64
    return a.dtype == b.dtype and np.array_equal(a.view(u), b.view(u))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unscale_bit_exact_with_torch(dtype):
    rng = np.random.default_rng(7)
    for i, scale in enumerate(_scales(rng)):
        grads = [_grads(rng, 257, dtype), _grads(rng, 64, dtype)]
        if i % 3 == 1:
            grads[1][5] = (INF, -INF, NAN)[i % 9 // 3]
        theirs, tfound = _torch_unscale(scale, grads)
        s = GradScaler(init_scale=scale)
        ours, found = s.unscale({"a": grads[0], "b": grads[1]})
        assert found == tfound == (i % 3 == 1)
        for o, t in zip((ours["a"], ours["b"]), theirs):
            assert _same_bits(o, t), scale
        # the input is left alone (torch unscales in place; ours is out of place)
        assert ours["a"] is not grads[0]


def test_inv_scale_is_torchs_double_reciprocal():
    rng = np.random.default_rng(3)
    for scale in _scales(rng):
        t = torch.full((), scale, dtype=torch.float32).double().reciprocal().float().item()
        assert GradScaler(init_scale=scale).inv_scale() == t


def test_double_reciprocal_equals_float32_reciprocal_exhaustively():
    """torch computes 1/scale in double and rounds to float (grad_scaler.py: "FP32 division
    can be imprecise for certain compile options").  With IEEE division the two agree for
    every float32 scale (double rounding of a quotient is innocuous because 53 >= 2*24 + 2,
    Figueroa 1995): all 2**23 mantissas of [1, 2) and of the two top binades, whose
    reciprocals are float32 subnormals, show no difference -- there is no case where a
    correctly rounded float32 reciprocal differs; the double reciprocal guards against
    approximate (fast-math) float32 division only."""
    m = torch.arange(2**23, dtype=torch.int32)
    for exp_bits in (127, 253, 254):               # [1, 2), [2**126, 2**127), [2**127, ...)
        s = (m | (exp_bits << 23)).view(torch.float32)
        assert torch.equal(s.double().reciprocal().float(), s.reciprocal())


def test_multiply_by_inv_is_not_divide_by_scale():
    """What the reciprocal does change: torch multiplies by inv = 1/scale, it does not
    divide by the scale; for a non-power-of-two scale g * inv and g / scale differ."""
    g = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    for scale in (3.0, 10.0, 0.1, 1000.0):
        ours, _ = GradScaler(init_scale=scale).unscale({"g": g})
        theirs, _ = _torch_unscale(scale, [g])
        assert _same_bits(ours["g"], theirs[0])
        divided = (torch.from_numpy(g) / scale).numpy()
        assert np.count_nonzero(ours["g"] != divided) > 50, scale


def test_fp16_gradients_refused_like_torch():
    g16 = np.ones(3, np.float16)
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients"):
        GradScaler().unscale({"w": g16})
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients"):
        _torch_unscale(2.0, [g16])
    with pytest.raises(TypeError, match="int64"):
        GradScaler().unscale({"w": np.ones(3, np.int64)})
    with pytest.raises(TypeError, match="list"):
        GradScaler().unscale({"w": [1.0]})


# --- disabled -----------------------------------------------------------------------------
def test_disabled_behaves_as_torch():
    t = torch.amp.GradScaler("cpu", enabled=False)
    s = GradScaler(enabled=False)
    assert s.scale == s.get_scale() == t.get_scale() == 1.0
    assert s.state_dict() == t.state_dict() == {}
    assert s.get_growth_tracker() == t._get_growth_tracker() == 0
    s.update(True)
    s.load_state_dict({})
    t.load_state_dict({})
    assert s.scale == 1.0 and not s.is_enabled()
    g = {"w": np.array([np.inf, 2.0], np.float16)}       # not checked, not refused
    out, found = s.unscale(g)
    assert found is False and _same_bits(out["w"].view(np.uint16).astype(np.uint32),
                                         g["w"].view(np.uint16).astype(np.uint32))
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))
    p.grad = torch.tensor([INF, 2.0], dtype=torch.float16)
    t.unscale_(torch.optim.SGD([p], lr=0.1))             # a no-op in torch too
    assert p.grad.tolist() == [INF, 2.0]


# --- the engine: a real overflowing fp16-mixed training run --------------------------------
def test_fp16_training_run_scale_sequence_matches_torch():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(8, 16, rng=rng), nn.ReLU(), nn.Linear(16, 4, rng=rng))
    nn.prepare(model, "fp16-mixed")
    opt = nn.make_optimizer("sgd", "fp16-mixed", lr=0.1)
    loss = (nn.cross_entropy_forward, nn.cross_entropy_backward)
    scaler = GradScaler(init_scale=2.0**20, growth_interval=3)
    x = rng.standard_normal((32, 8)) * 4
    y = rng.integers(0, 4, 32)
    used, founds, after = [], [], []
    for _ in range(40):
        before = {k: v.copy() for k, v in model.named_parameters().items()}
        r = nn.train_step(model, x, y, loss, opt, "fp16-mixed", scaler=scaler)
        used.append(r.scale)
        founds.append(r.found_inf)
        after.append(scaler.scale)
        same = all(np.array_equal(before[k], v)
                   for k, v in model.named_parameters().items())
        assert same == r.found_inf                  # skipped exactly on overflow
    assert founds[0] and any(founds[5:]) and not all(founds)   # overflows, early and later
    assert max(after) > min(after[5:])              # and grows back between them
    drv = TorchDriver(init_scale=2.0**20, growth_interval=3)
    tscales = [drv.sc.get_scale()]
    for f in founds:
        tscales.append(drv.step(f)[0])
    assert used == tscales[:-1]
    assert after == tscales[1:]


# --- checkpoints --------------------------------------------------------------------------
def _continue(torch_drv, ours, founds):
    return [torch_drv.step(bool(f)) for f in founds], ours_run(ours, founds)


def test_state_dict_torch_to_ours_and_back():
    rng = np.random.default_rng(11)
    kw = dict(init_scale=3.0, growth_factor=1.5, backoff_factor=0.25, growth_interval=4)
    drv = TorchDriver(**kw)
    for f in rng.random(50) < 0.2:
        drv.step(bool(f))
    ours = GradScaler()                            # other settings: all come from the dict
    ours.load_state_dict(drv.sc.state_dict())
    assert ours.state_dict() == drv.sc.state_dict()
    theirs, mine = _continue(drv, ours, rng.random(200) < 0.2)
    assert mine == theirs
    # ours -> a fresh torch scaler
    fresh = torch.amp.GradScaler("cpu")
    fresh.load_state_dict(ours.state_dict())
    drv2 = TorchDriver()
    drv2.sc = fresh
    fresh.scale(torch.ones(()))
    assert fresh.state_dict() == ours.state_dict()
    theirs, mine = _continue(drv2, ours, rng.random(200) < 0.2)
    assert mine == theirs


def test_state_dict_of_uninitialised_torch_scaler():
    """torch reports init_scale unrounded before its first scale(); both round it to
    float32 when the scale is created."""
    t = torch.amp.GradScaler("cpu", init_scale=0.1)
    ours = GradScaler()
    ours.load_state_dict(t.state_dict())
    t.scale(torch.ones(()))
    assert ours.scale == t.get_scale() == float(np.float32(0.1))


def test_extended_state_dict_round_trip_and_into_torch():
    s = ExtendedGradScaler(init_scale=64.0, growth_interval=3, hysteresis=3, min_scale=2.0,
                           max_scale=2.0**10, consecutive_hysteresis=True)
    for f in [True, False, True, True, False]:
        s.update(f)
    d = s.state_dict()
    r = ExtendedGradScaler()
    r.load_state_dict(d)
    assert r.state_dict() == d
    t = torch.amp.GradScaler("cpu")
    t.load_state_dict(d)                           # torch reads its five keys
    assert t.state_dict() == GradScaler.state_dict(s)


# --- the extensions -----------------------------------------------------------------------
class MegatronReference:
    """megatron/core/optimizer/grad_scaler.py DynamicGradScaler (NVIDIA/Megatron-LM
    00caa53), transcribed with CPU float32 tensors in place of CUDA ones."""

    def __init__(self, initial_scale, min_scale, growth_factor, backoff_factor,
                 growth_interval, hysteresis):
        f = dict(dtype=torch.float)
        self._scale = torch.tensor([initial_scale], **f)
        self.min_scale = torch.tensor([min_scale], **f)
        self.growth_factor = torch.tensor([growth_factor], **f)
        self.backoff_factor = torch.tensor([backoff_factor], **f)
        self.growth_interval = growth_interval
        self.hysteresis = hysteresis
        self._growth_tracker = 0
        self._hysteresis_tracker = self.hysteresis

    def update(self, found_inf):
        if found_inf:
            self._growth_tracker = 0
            self._hysteresis_tracker -= 1
            if self._hysteresis_tracker <= 0:
                self._scale = torch.max(self._scale * self.backoff_factor, self.min_scale)
        else:
            self._growth_tracker += 1
            if self._growth_tracker == self.growth_interval:
                self._growth_tracker = 0
                self._hysteresis_tracker = self.hysteresis
                self._scale = self._scale * self.growth_factor


@pytest.mark.parametrize("hysteresis", [1, 2, 3, 4])
@pytest.mark.parametrize("interval", [1, 3, 7])
def test_hysteresis_and_min_scale_match_megatron(hysteresis, interval):
    rng = np.random.default_rng(100 * hysteresis + interval)
    founds = rng.random(2000) < (0.7 if interval == 1 else 0.45)
    ref = MegatronReference(2.0**12, 2.0**-3, 2.0, 0.5, interval, hysteresis)
    ours = ExtendedGradScaler(2.0**12, 2.0, 0.5, interval, hysteresis=hysteresis,
                              min_scale=2.0**-3)
    hit_min = False
    for step, f in enumerate(founds):
        ref.update(bool(f))
        ours.update(bool(f))
        if ref._scale.item() > 2.0**120:           # Megatron has no growth guard: stop
            assert step > 200                      # before it grows to inf
            break
        assert (ours.scale, ours.get_growth_tracker(), ours.get_hysteresis_tracker()) == \
            (ref._scale.item(), ref._growth_tracker, ref._hysteresis_tracker)
        hit_min |= ours.scale == 2.0**-3
    assert hit_min or interval == 1


def test_megatron_float32_factor_differs_for_non_float32_factor():
    """The Notes' caveat: 0.7 is not a float32 value; torch multiplies by the double 0.7,
    Megatron by float32(0.7)."""
    scale = 7.561005592346191                      # a float32 value
    s = ExtendedGradScaler(init_scale=scale, backoff_factor=0.7)
    ref = MegatronReference(scale, 1e-30, 2.0, 0.7, 2000, 1)
    s.update(True)
    ref.update(True)
    t = TorchDriver(init_scale=scale, backoff_factor=0.7)
    assert s.scale == t.step(True)[0] != ref._scale.item()


def test_consecutive_hysteresis_deepspeed():
    """deepspeed/runtime/fp16/loss_scaler.py (consecutive_hysteresis=True): a clean step
    refills the hysteresis, so isolated overflows never back off."""
    s = ExtendedGradScaler(init_scale=2.0**10, growth_interval=100, hysteresis=2,
                           consecutive_hysteresis=True)
    for f in [True, False] * 10:
        s.update(f)
    assert s.scale == 2.0**10
    s.update(True)
    s.update(True)
    assert s.scale == 2.0**9
    m = ExtendedGradScaler(init_scale=2.0**10, growth_interval=100, hysteresis=2)
    for f in [True, False] * 2:                   # Megatron: no refill without growth
        m.update(f)
    assert m.scale == 2.0**9


def test_max_scale_clamp_apex():
    """apex/amp/scaler.py: scale = min(max_loss_scale, scale * 2) at a growth."""
    s = ExtendedGradScaler(init_scale=2.0**22, growth_interval=1, max_scale=2.0**24)
    for _ in range(5):
        s.update(False)
    assert s.scale == 2.0**24
    s = ExtendedGradScaler(init_scale=3.0, growth_interval=1, max_scale=5.0)
    s.update(False)
    assert s.scale == 5.0


def test_per_group_skip_equals_torch_with_one_optimizer_per_group():
    rng = np.random.default_rng(5)
    shapes = {"a": (3,), "b": (2, 2), "c": (4,)}
    groups = {"g0": ["a", "b"], "g1": ["c"]}
    init = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    tp = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    topts = {g: torch.optim.SGD([tp[n] for n in names], lr=0.1, foreach=False)
             for g, names in groups.items()}
    tsc = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=2)
    tsc.scale(torch.ones(()))
    ours = ExtendedGradScaler(init_scale=2.0**8, growth_interval=2)
    opt = SGD(lr=0.1, fmt="float32")
    params = {k: v.copy() for k, v in init.items()}
    seen = set()
    for step in range(60):
        grads = {k: (rng.standard_normal(s) * 2.0**8).astype(np.float32)
                 for k, s in shapes.items()}
        bad = rng.integers(0, 4)                   # 0: none, 1: g0, 2: g1, 3: both
        if bad in (1, 3):
            grads["b"][1, 0] = INF
        if bad in (2, 3):
            grads["c"][2] = NAN
        for k in shapes:
            tp[k].grad = torch.from_numpy(grads[k].copy())
        for o in topts.values():
            tsc.step(o)
        tsc.update()
        unscaled, found = ours.unscale_groups(grads, groups)
        assert found == {"g0": bad in (1, 3), "g1": bad in (2, 3)}
        params = opt.step(params, skip_groups(unscaled, groups, found))
        ours.update(any(found.values()))
        seen.add(int(bad))
        assert ours.scale == tsc.get_scale()
        for k in shapes:
            assert _same_bits(np.asarray(params[k], np.float32), tp[k].detach().numpy()), k
    assert seen == {0, 1, 2, 3}


# --- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,exc,match", [
    (dict(init_scale=0.0), ValueError, "init_scale=0.0"),
    (dict(init_scale=-1.0), ValueError, "init_scale=-1.0"),
    (dict(init_scale=INF), ValueError, "init_scale=inf"),
    (dict(init_scale=NAN), ValueError, "init_scale=nan"),
    (dict(init_scale=1e39), ValueError, "init_scale=1e\\+39 is inf in float32"),
    (dict(init_scale=1e-50), ValueError, "init_scale=1e-50 is 0.0 in float32"),
    (dict(init_scale="big"), TypeError, "init_scale='big'"),
    (dict(growth_factor=1.0), ValueError, "growth_factor=1.0"),
    (dict(growth_factor=0.5), ValueError, "growth_factor=0.5"),
    (dict(growth_factor=INF), ValueError, "growth_factor=inf"),
    (dict(backoff_factor=1.0), ValueError, "backoff_factor=1.0"),
    (dict(backoff_factor=0.0), ValueError, "backoff_factor=0.0"),
    (dict(backoff_factor=-0.5), ValueError, "backoff_factor=-0.5"),
    (dict(backoff_factor=NAN), ValueError, "backoff_factor=nan"),
    (dict(growth_interval=0), ValueError, "growth_interval=0"),
    (dict(growth_interval=-3), ValueError, "growth_interval=-3"),
    (dict(growth_interval=2**31), ValueError, "growth_interval=2147483648"),
    (dict(growth_interval=2.5), TypeError, "growth_interval=2.5"),
    (dict(growth_interval=2.0), TypeError, "growth_interval=2.0"),
    (dict(growth_interval=True), TypeError, "growth_interval=True"),
    (dict(enabled="yes"), TypeError, "enabled='yes'"),
])
def test_constructor_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        GradScaler(**kw)


def test_torch_refuses_the_same_factors():
    for kw in (dict(growth_factor=1.0), dict(backoff_factor=1.0)):
        with pytest.raises(AssertionError, match="factor must be"):
            torch.amp.GradScaler("cpu", **kw)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(min_scale=0.0), ValueError, "min_scale=0.0"),
    (dict(min_scale=2.0**20), ValueError, "below min_scale=1048576.0"),
    (dict(max_scale=1.0), ValueError, "above max_scale=1.0"),
    (dict(max_scale=INF), ValueError, "max_scale=inf"),
    (dict(hysteresis=0), ValueError, "hysteresis=0"),
    (dict(hysteresis=1.5), TypeError, "hysteresis=1.5"),
    (dict(consecutive_hysteresis=1), TypeError, "consecutive_hysteresis=1"),
])
def test_extension_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        ExtendedGradScaler(**kw)


def test_update_and_group_errors():
    with pytest.raises(TypeError, match="found_inf=1.0"):
        GradScaler().update(1.0)
    s = ExtendedGradScaler()
    g = {"a": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match=r"\['a'\] belong to no group"):
        s.unscale_groups(g, {"g": ["b"]})
    with pytest.raises(ValueError, match="'a' is in groups 'g' and 'h'"):
        s.unscale_groups(g, {"g": ["a"], "h": ["a"]})
    with pytest.raises(ValueError, match=r"no found_inf for groups \['g'\]"):
        skip_groups(g, {"g": ["a"]}, {})


@pytest.mark.parametrize("sd,exc,match", [
    ({}, ValueError, "empty"),
    ({"scale": 2.0}, ValueError, r"missing key\(s\) \['growth_factor', 'backoff_factor', "
                                 r"'growth_interval', '_growth_tracker'\]"),
    ({"scale": -2.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 3,
      "_growth_tracker": 0}, ValueError, "scale=-2.0"),
    ({"scale": 2.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 3,
      "_growth_tracker": 3}, ValueError, "_growth_tracker=3"),
    ({"scale": 2.0, "growth_factor": 2.0, "backoff_factor": 1.5, "growth_interval": 3,
      "_growth_tracker": 0}, ValueError, "backoff_factor=1.5"),
    ([1], TypeError, "expected a dict, got list"),
])
def test_load_state_dict_errors(sd, exc, match):
    s = GradScaler(init_scale=8.0)
    with pytest.raises(exc, match=match):
        s.load_state_dict(sd)
    assert s.state_dict()["scale"] == 8.0          # untouched


def test_extended_load_error_leaves_state():
    s = ExtendedGradScaler(init_scale=8.0, hysteresis=2)
    d = dict(GradScaler(init_scale=4.0).state_dict(), hysteresis=2, _hysteresis_tracker=5)
    with pytest.raises(ValueError, match="_hysteresis_tracker=5"):
        s.load_state_dict(d)
    assert s.scale == 8.0
