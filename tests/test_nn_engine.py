"""The NN engine's plumbing: policies, rounding into roles, the BLAS accumulation order,
erf, modules and state dicts (torch names and layouts), bad input."""

from fractions import Fraction

import numpy as np
import pytest

import refcomp as rc
from refcomp import _jit, nn
from refcomp.bounds import deterministic
from refcomp.ops import matmul

torch = pytest.importorskip("torch")


# ----------------------------------------------------------------------------- policies
@pytest.mark.parametrize("name", list(nn.POLICIES))
def test_presets_describe_every_role(name):
    p = nn.get_policy(name)
    text = p.describe()
    for role in ("weights", "activations", "gradients", "forward", "grad_input",
                 "grad_weight", "master", "update", "scaling"):
        assert role in text
    assert p.source
    # the forward model takes the activation and weight formats (unless scaled to fp8)
    if p.scaling is nn.Scaling.NONE:
        assert p.forward.inputs == p.activations.format
        assert p.forward.inputs_b == p.weights.format


def test_policy_errors_name_the_value():
    with pytest.raises(ValueError, match="nosuchfloat"):
        nn.Policy("x", "nosuchfloat", "float32", "float32", "fp32-blas", "fp32-blas",
                  "fp32-blas")
    with pytest.raises(ValueError, match="not-a-model"):
        nn.Policy("x", "float32", "float32", "float32", "not-a-model", "fp32-blas",
                  "fp32-blas")
    with pytest.raises(ValueError, match="int8-int32-wrap"):
        nn.Policy("x", "float32", "float32", "float32", "int8-int32-wrap", "fp32-blas",
                  "fp32-blas")
    with pytest.raises(ValueError, match="-2"):
        nn.POLICIES["fp32"].with_(loss_scale=-2.0)
    with pytest.raises(ValueError, match="sideways"):
        nn.POLICIES["fp32"].with_(update="sideways")
    with pytest.raises(ValueError, match="fp33"):
        nn.get_policy("fp33")


def test_round_to_float32_fast_path_equals_the_rounding_core():
    """The float64 -> float32 conversion nn uses is the rounding core's RNE (bits)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.standard_normal(20000) * 2.0 ** rng.integers(-160, 130, 20000),
        # ties and near-ties at float32 precision, subnormal and overflow boundaries
        (rng.integers(1, 2 ** 24, 5000) + 0.5) * 2.0 ** rng.integers(-170, 105, 5000),
        [0.0, -0.0, np.inf, -np.inf, 2.0 ** -150, 2.0 ** -149 * 1.5, 3.4028235677973366e38,
         3.4028235677973366e38 * (1 + 2 ** -25), 2.0 ** 128]])
    fast = nn.round_to(x, rc.formats.get("float32"))
    core = rc.cast(x, "float32")
    assert np.array_equal(fast.view(np.uint64), core.view(np.uint64))


def test_role_rounding_modes():
    spec = nn.TensorSpec("bfloat16", "toward_zero")
    x = np.array([1.0 + 2 ** -8 * 0.99, -1.0 - 2 ** -8 * 0.99])
    assert spec.round(x).tolist() == [1.0, -1.0]
    sr = nn.TensorSpec("bfloat16", "stochastic")
    with pytest.raises(ValueError):
        sr.round(x)
    v = sr.round(np.full(4000, 1.0 + 2 ** -9), rng=np.random.default_rng(1))
    assert set(v.tolist()) == {1.0, 1.0 + 2 ** -7}
    assert abs(np.mean(v == 1.0) - 0.75) < 0.03         # 2**-9 is a quarter of a bf16 ulp


# --------------------------------------------------------------------- BLAS order
@pytest.mark.parametrize("name", ["fp32-blas", "fp64-blas", "bf16-fp32acc-blas",
                                  "fp16-fp32acc-blas", "e4m3-fp32acc-blas",
                                  "e5m2xe4m3-fp32acc-blas"])
def test_blas_order_within_its_bound(name):
    """Exact rational results against the BLAS model's any-order bound."""
    m = rc.ops.accumulation_model(name)
    rng = np.random.default_rng(2)
    A = rc.cast(rng.standard_normal((6, 70)), m.inputs, overflow="saturate")
    B = rc.cast(rng.standard_normal((70, 5)), m.inputs_b, overflow="saturate")
    C = rc.cast(rng.standard_normal((6, 5)), m.acc)
    D = matmul(A, B, name, C=C)
    E = deterministic(A, B, name, C=C)
    for i in range(6):
        for j in range(5):
            ex = sum(Fraction(a) * Fraction(b) for a, b in zip(A[i], B[:, j])) + Fraction(C[i, j])
            assert abs(Fraction(D[i, j]) - ex) <= Fraction(E[i, j])
    out = m.output_format
    assert np.array_equal(rc.cast(D, out), D)


def test_blas_order_rejects_what_it_cannot_model():
    with pytest.raises(ValueError, match="blas"):
        rc.ops.AccumulationModel("x", "float32", "bfloat16", order="blas")
    with pytest.raises(ValueError, match="blas"):
        rc.ops.AccumulationModel("x", "float64", "float32", order="blas")
    with pytest.raises(ValueError, match="blas"):
        rc.ops.AccumulationModel("x", "float32", "float32", order="blas",
                                 acc_rounding="toward_zero")


# ---------------------------------------------------------------------------- erf
def test_erf_twin_and_jit_agree_and_match_torch_float64():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, np.inf, -np.inf, 1e-300]])
    with _jit.use_jit(False):
        spec = nn.erf(x)
    fast = nn.erf(x)
    assert np.array_equal(spec.view(np.uint64), fast.view(np.uint64))
    t = torch.erf(torch.tensor(x, dtype=torch.float64)).numpy()
    ulp = np.spacing(np.abs(t))
    assert np.all(np.abs(fast - t) <= 2 * ulp)          # two libm erfs: <= 1 ulp each


# ------------------------------------------------------------------ modules / state
def _torch_mlp_and_cnn():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 2 * 2, 3))
    return mlp, cnn


def _ours():
    rng = np.random.default_rng(3)
    mlp = nn.Sequential(nn.Linear(8, 16, rng=rng), nn.ReLU(), nn.Linear(16, 4, rng=rng))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(kernel_size=2), nn.Flatten(), nn.Linear(16, 3, rng=rng))
    return mlp, cnn


def test_state_dict_round_trip_with_torch():
    """torch's state_dict loads into ours (same keys, shapes), and ours loads into torch;
    the values survive both ways bit for bit."""
    for tm, om in zip(_torch_mlp_and_cnn(), _ours()):
        sd = {k: v.numpy() for k, v in tm.state_dict().items()}
        assert set(sd) == set(om.state_dict())
        om.load_state_dict(sd)
        back = {k: torch.tensor(v) if isinstance(v, np.ndarray) else torch.tensor(v)
                for k, v in om.state_dict().items()}
        back = {k: v.to(tm.state_dict()[k].dtype) for k, v in back.items()}
        tm.load_state_dict(back)
        for k, v in tm.state_dict().items():
            assert np.array_equal(v.numpy().astype(np.float64), np.asarray(sd[k], np.float64)), k


def test_loaded_torch_model_predicts_like_torch():
    """Forward of a loaded torch model under the fp64 policy equals torch's float64
    forward to float64 rounding (an independent implementation of every layer)."""
    tm, _ = _torch_mlp_and_cnn()
    _, om = _ours()
    _, tcnn = _torch_mlp_and_cnn()
    tcnn = tcnn.double().eval()
    om.load_state_dict({k: v.numpy() for k, v in tcnn.state_dict().items()})
    x = np.random.default_rng(4).standard_normal((5, 1, 4, 4))
    ours = nn.predict(om, x, "fp64")
    ref = tcnn(torch.tensor(x)).detach().numpy()
    assert np.allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_state_dict_errors_name_the_keys():
    mlp, _ = _ours()
    sd = mlp.state_dict()
    bad = dict(sd)
    del bad["0.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['0.bias'\]"):
        mlp.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"unexpected keys \['9.weight'\]"):
        mlp.load_state_dict({**sd, "9.weight": np.zeros(3)})
    with pytest.raises(ValueError, match=r"2.weight has shape \(4, 15\)"):
        mlp.load_state_dict({**sd, "2.weight": np.zeros((4, 15))})


def test_bad_input_names_layer_and_tensor():
    mlp, cnn = _ours()
    with pytest.raises(ValueError, match=r"Linear \(layer 0\).*x features vs weight"):
        mlp.forward(np.zeros((2, 7)), "fp32")
    x = np.zeros((2, 8))
    x[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"Linear \(layer 0\): x contains NaN .*\(1, 3\)"):
        mlp.forward(x, "fp32")
    with pytest.raises(ValueError, match=r"Conv2d \(layer 0\): x must have 4 dimensions"):
        cnn.forward(np.zeros((2, 16)), "fp32")
    with pytest.raises(ValueError, match="unknown policy"):
        mlp.forward(np.zeros((2, 8)), "fp7")
    with pytest.raises(TypeError, match="dtype <U1"):
        nn.relu_forward(np.array(["a"]), "fp32")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.batchnorm_forward(np.zeros((1, 3)), None, None, None, None, "fp32")
    with pytest.raises(ValueError, match="target 7 out of range"):
        nn.cross_entropy_forward(np.zeros((2, 3)), np.array([0, 7]), "fp32")
    with pytest.raises(ValueError, match="needs rng"):
        nn.dropout_forward(np.zeros(3), "fp32", p=0.5)
    with pytest.raises(ValueError, match="groups=3"):
        nn.conv2d_forward(np.zeros((1, 4, 5, 5)), np.zeros((4, 1, 3, 3)), None, "fp32",
                          groups=3)
    with pytest.raises(ValueError, match="needs rng"):
        nn.Linear(3, 4)


def test_policy_roles_are_applied():
    """Under bf16-mixed: activations and gradients are bfloat16 values, the master copy
    float32; under fp8 the matmul operands are scaled e4m3 / e5m2 values."""
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Linear(8, 16, rng=rng), nn.GELU(), nn.Linear(16, 4, rng=rng))
    x = rng.standard_normal((6, 8))
    for pol in ("bf16-mixed", "fp8"):
        y, cache = model.forward(x, pol)
        assert np.array_equal(rc.cast(y, "bfloat16"), y)
        dx, grads = model.backward(rng.standard_normal(y.shape), cache)
        for g in [dx, *grads.values()]:
            assert np.array_equal(rc.cast(g, "bfloat16"), g)
    c = model.forward(x, "fp8")[1][0]
    assert np.array_equal(rc.cast(c.xq, "float8_e4m3fn"), c.xq)
    assert c.sx == 2.0 ** np.floor(np.log2(448 / np.abs(rc.cast(x, "bfloat16")).max()))


def test_optimizer_native_float32_path_equals_refcomp_ops():
    """The optimizers' float32 kernels (NumPy float32 arithmetic, the FMA instruction)
    against refcomp.ops, the specification, bit for bit, specials and subnormals included."""
    from refcomp.nn import _aten
    rng = np.random.default_rng(9)
    n = 20000
    special = np.array([0.0, -0.0, np.inf, -np.inf, 2.0 ** -149, -2.0 ** -126, 3.4e38, 1.0])

    def sample():
        v = rc.cast(rng.standard_normal(n) * 2.0 ** rng.integers(-150, 128, n), "float32")
        return np.concatenate([v, rng.permutation(np.resize(special, 64))])
    a, b, c = sample(), sample(), sample()
    with np.errstate(all="ignore"):
        for name in ("add", "sub", "mul", "div"):
            with _jit.use_jit(True):
                fast = _aten._binary(name, a, b, _aten._F32)
            spec = getattr(rc.ops, name)(a, b, "float32")
            assert np.array_equal(fast, spec, equal_nan=True), name
        with _jit.use_jit(True):
            fast = _aten._fma(a, b, c, _aten._F32)
            root = _aten._sqrt(np.abs(a), _aten._F32)
        assert np.array_equal(fast, rc.ops.fma(a, b, c, "float32"), equal_nan=True)
        assert np.array_equal(root, rc.ops.sqrt(np.abs(a), "float32"), equal_nan=True)


def test_relu_kernels_equal_their_numpy_twins():
    """Numba relu forward / backward against the NumPy specification, bit for bit (signed
    zeros, infinities, subnormals)."""
    rng = np.random.default_rng(10)
    x = np.concatenate([rng.standard_normal(5000), [0.0, -0.0, np.inf, -np.inf, 5e-324,
                                                    -5e-324]])
    dy = np.concatenate([rng.standard_normal(5000), [-1.0, -0.0, 2.0, -3.0, np.nan, -0.0]])
    with _jit.use_jit(False):
        y0, c0 = nn.relu_forward(x, "fp64")
        d0, _ = nn.relu_backward(dy, c0)
    with _jit.use_jit(True):
        y1, c1 = nn.relu_forward(x, "fp64")
        d1, _ = nn.relu_backward(dy, c1)
    assert np.array_equal(y0.view(np.uint64), y1.view(np.uint64))
    assert np.array_equal(d0.view(np.uint64), d1.view(np.uint64))


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=1, dilation=2)])
def test_max_pool_kernel_equals_its_numpy_twin(kw):
    """The Numba max-pool kernel and the NumPy loop agree on values and on the
    first-maximum index, with many ties (small integers) and signed zeros."""
    rng = np.random.default_rng(11)
    x = rng.integers(-2, 3, (3, 2, 7, 8)).astype(np.float64)
    x[x == 0] = rng.choice([0.0, -0.0], int((x == 0).sum()))
    dy = rng.standard_normal(nn.max_pool2d_forward(x, "fp64", **kw)[0].shape)
    out = []
    for flag in (False, True):
        with _jit.use_jit(flag):
            y, c = nn.max_pool2d_forward(x, "fp64", **kw)
            out.append((y, c.index, nn.max_pool2d_backward(dy, c)[0]))
    for a, b in zip(*out):
        assert np.array_equal(np.asarray(a).view(np.uint64) if a.dtype == np.float64 else a,
                              np.asarray(b).view(np.uint64) if b.dtype == np.float64 else b)


class _RecordingScaler:
    """A loss-scaling hook that records what the training step tells it."""

    def __init__(self, scale):
        self.scale, self.seen = scale, []

    def update(self, found_inf):
        self.seen.append(found_inf)


def test_loss_scaling_hook_unscales_and_skips_on_overflow():
    """fp16-mixed: with scale S the first gradient is dloss = S (rounded into fp16 with
    everything after it) and the master gradients are rnd32(g * rnd32(1/S)); an overflowing
    scale makes a gradient infinite, the step is skipped and the hook is told."""
    from refcomp.nn.optim import SGD
    rng = np.random.default_rng(12)
    model = nn.Sequential(nn.Linear(8, 16, rng=rng), nn.ReLU(), nn.Linear(16, 4, rng=rng))
    x, y = rng.standard_normal((6, 8)), rng.integers(0, 4, 6)
    loss = (nn.cross_entropy_forward, nn.cross_entropy_backward)
    nn.prepare(model, "fp16-mixed")
    before = model.named_parameters()
    # the same backward by hand, with dloss = S
    S = 1024.0
    yy, cache = model.forward(x, "fp16-mixed")
    dy = nn.cross_entropy_backward(S, nn.cross_entropy_forward(yy, y, "fp16-mixed")[1])[0]
    want = {k: rc.cast(g * rc.cast(1.0 / S, "float32"), "float32")
            for k, g in model.backward(dy, cache, need_dx=False)[1].items()}
    hook = _RecordingScaler(S)
    r = nn.train_step(model, x, y, loss, SGD(lr=0.1), "fp16-mixed", scaler=hook)
    assert hook.seen == [False] and not r.found_inf and r.scale == S
    for k, g in want.items():
        assert np.array_equal(r.grads[k], g), k
    assert any(not np.array_equal(before[k], v) for k, v in model.named_parameters().items())
    # an overflowing scale: inf gradients, no update
    before = model.named_parameters()
    hook = _RecordingScaler(2.0 ** 40)
    r = nn.train_step(model, x, y, loss, SGD(lr=0.1), "fp16-mixed", scaler=hook)
    assert r.found_inf and hook.seen == [True]
    for k, v in model.named_parameters().items():
        assert np.array_equal(before[k], v), k


@pytest.mark.parametrize("name", list(nn.POLICIES))
def test_every_preset_trains_a_conv_bn_model(name):
    """One Adam step of a grouped-conv / batch-norm / pool / linear model under every
    preset: the master copy holds values of the master format, the gradients values of
    the gradient format, and the step changed the weights."""
    r = np.random.default_rng(13)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, groups=2, rng=r), nn.BatchNorm2d(4),
                      nn.ReLU(), nn.MaxPool2d(kernel_size=2), nn.Flatten(),
                      nn.Linear(16, 3, rng=r))
    x, y = r.standard_normal((4, 2, 4, 4)), r.integers(0, 3, 4)
    p = nn.get_policy(name)
    opt = nn.make_optimizer("adam", p, lr=1e-3, rng=np.random.default_rng(1))
    nn.prepare(m, p)
    before = m.named_parameters()
    res = nn.train_step(m, x, y, (nn.cross_entropy_forward, nn.cross_entropy_backward), opt,
                        p, rng=np.random.default_rng(2))
    assert np.isfinite(res.loss) and not res.found_inf
    fmt = p.master_spec.format.name
    for k, v in m.named_parameters().items():
        assert np.array_equal(rc.cast(v, fmt), v), k
        assert np.array_equal(rc.cast(res.grads[k], fmt), res.grads[k]), k
    assert any(not np.array_equal(before[k], v) for k, v in m.named_parameters().items())


# ------------------------------------------------------------ fast path: kernels, carriers
def _im2col_oracle(x, kh, kw, st, pd, dl):
    """Patches by the definition, one Python index computation per element."""
    n, c, h, w = x.shape
    ho = (h + 2 * pd[0] - dl[0] * (kh - 1) - 1) // st[0] + 1
    wo = (w + 2 * pd[1] - dl[1] * (kw - 1) - 1) // st[1] + 1
    out = np.zeros((n, ho * wo, c * kh * kw), x.dtype)
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                for ch in range(c):
                    for r in range(kh):
                        for s in range(kw):
                            hh = i * st[0] - pd[0] + r * dl[0]
                            ww = j * st[1] - pd[1] + s * dl[1]
                            if 0 <= hh < h and 0 <= ww < w:
                                out[b, i * wo + j, (ch * kh + r) * kw + s] = x[b, ch, hh, ww]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", [((3, 3), (1, 1), (1, 1), (1, 1)),
                                  ((2, 3), (2, 1), (0, 1), (1, 2)),
                                  ((3, 2), (1, 2), (1, 0), (2, 1)),
                                  ((1, 1), (3, 3), (0, 0), (1, 1))])
def test_im2col_kernel_and_twin_equal_the_definition(dtype, geom):
    """The Numba im2col and its NumPy twin copy exactly the elements the definition names
    (signed zeros included; padding is +0)."""
    (kh, kw), st, pd, dl = geom
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    x[0, 0, 0, :3] = -0.0
    want = _im2col_oracle(x, kh, kw, st, pd, dl)
    for flag in (False, True):
        with _jit.use_jit(flag):
            got, _ = rc.ops.im2col(x, (kh, kw), st, pd, dl)
        assert got.dtype == dtype
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), flag


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=1, padding=1),
                                dict(kernel_size=2, stride=2, padding=1),
                                dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1),
                                     dilation=(2, 1)),
                                dict(kernel_size=2)])
def test_max_pool_windows_of_minus_inf_match_torch(kw):
    """Windows whose input elements are all -inf (padding around them): torch's CPU kernel
    never picks a padding position; its index and gradient go to the window's first input
    element.  Kernel and twin against torch's values, indices and gradient."""
    rng = np.random.default_rng(22)
    x = rng.integers(-2, 3, (2, 2, 6, 7)).astype(np.float64)
    x[:, :, :3, :4] = -np.inf
    x[0, 1, 4:, 5:] = -np.inf
    t = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(t, return_indices=True, **kw)
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(dy))
    for flag in (False, True):
        with _jit.use_jit(flag):
            y, c = nn.max_pool2d_forward(x, "fp64", **kw)
            dx, _ = nn.max_pool2d_backward(dy, c)
        assert np.array_equal(y, ty.detach().numpy())
        assert np.array_equal(c.index, tidx.numpy())
        assert np.array_equal(dx, t.grad.numpy())


def _cnn(seed):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=r), nn.ReLU(),
                         nn.MaxPool2d(kernel_size=2), nn.Conv2d(4, 6, 3, padding=1, rng=r),
                         nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
                         nn.Flatten(), nn.Linear(24, 5, rng=r))


def test_float32_carriers_follow_the_policy():
    """Under fp32 the fast-path layers, the prepared parameters, the gradients and the
    optimizer's results are float32 arrays; under fp64 and bf16-mixed activations they are
    float64 (TensorSpec.carrier)."""
    x, y = np.random.default_rng(23).standard_normal((4, 1, 4, 4)), np.arange(4) % 5
    loss = (nn.cross_entropy_forward, nn.cross_entropy_backward)
    for name, act, master in (("fp32", np.float32, np.float32),
                              ("fp64", np.float64, np.float64),
                              ("bf16-mixed", np.float64, np.float32)):
        p = nn.get_policy(name)
        assert (p.activations.carrier, p.master_spec.carrier) == (act, master)
        m = nn.prepare(_cnn(1), p)
        out, _ = m.forward(x, p)
        assert out.dtype == act, name
        r = nn.train_step(m, x, y, loss, nn.make_optimizer("sgd", p, lr=0.1, momentum=0.9), p)
        for k, v in m.named_parameters().items():
            assert v.dtype == master and r.grads[k].dtype == master, (name, k)


def test_training_step_does_not_depend_on_carriers_or_jit():
    """Three SGD-momentum steps of a conv / pool / linear model under fp32: float32-carried
    parameters (prepare) and float64-carried ones (same values) reach bit-identical
    parameters, with the Numba kernels (im2col, max-pool, scatter, relu, FMA) and with their
    NumPy twins."""
    x = np.random.default_rng(24).standard_normal((8, 1, 4, 4))
    y = np.arange(8) % 5
    loss = (nn.cross_entropy_forward, nn.cross_entropy_backward)
    finals = []
    for flag, carry64 in ((True, False), (True, True), (False, False)):
        with _jit.use_jit(flag):
            m = nn.prepare(_cnn(2), "fp32")
            if carry64:
                m.set_parameters({k: v.astype(np.float64)
                                  for k, v in m.named_parameters().items()})
            opt = nn.make_optimizer("sgd", "fp32", lr=0.1, momentum=0.9)
            for _ in range(3):
                nn.train_step(m, x, y, loss, opt, "fp32")
            finals.append({k: np.asarray(v, np.float64)
                           for k, v in m.named_parameters().items()})
    for other in finals[1:]:
        for k in finals[0]:
            assert np.array_equal(finals[0][k].view(np.uint64), other[k].view(np.uint64)), k
