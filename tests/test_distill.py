"""refcomp.distill against real torch (autograd as the independent oracle).

Float64 and float32 comparisons use DERIVED bounds, never a guessed tolerance.  Each torch
computation below is transcribed (:mod:`refcomp.crosscheck.distill_bounds`) operation by
operation into the running error bounds of :mod:`refcomp.crosscheck.nn_err` (Higham's
standard model ``fl(a op b) = (a op b)(1 + d) + h``, sums in any order with
``gamma_{n-1}``, library exp / log within ``fn_ulps`` ulps, every product of errors
kept), giving ``E_torch`` with ``|torch - exact| <= E_torch``; refcomp's float64
evaluation is transcribed the same way in float64 and, for the fp32 policy, followed by
its one rounding to float32, giving ``E_ours``.  The test asserts

    |ours - torch| <= (E_torch + E_ours) (1 + 2**-20)

(the factor covers the bound's own float64 evaluation, ``nn_err.SAFETY``), the bound
methodology of ``golden/reports/nn-torch-cpu.md``.  In float32 each side is also checked
against the exact value within its own bound, which tests the transcription itself; in
float64 the "exact" value is itself a float64 evaluation, so only the combined bound is
asserted.  Every bound is also checked to be informative (far below the values' scale).

The conservative modelling choices are listed in refcomp/crosscheck/distill_bounds.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from refcomp import distill, nn
from refcomp.crosscheck.distill_bounds import EPS
from refcomp.crosscheck.distill_bounds import hint_bounds as _hint_bounds
from refcomp.crosscheck.distill_bounds import kd_bounds as _kd_bounds
from refcomp.crosscheck.distill_bounds import pairwise_distances as _pd
from refcomp.crosscheck.distill_bounds import rkd_bounds as _rkd_bounds
from refcomp.crosscheck.nn_err import F32, F64, SAFETY, Bnd, exact
from refcomp.crosscheck.torch_distill import _pdist as _torch_pdist  # the reference pdist

torch = pytest.importorskip("torch")
F = torch.nn.functional

DT = {"float32": (torch.float32, np.float32, F32, "fp32"),
      "float64": (torch.float64, np.float64, F64, "fp64")}


# ------------------------------------------------------------------------- bound check
def _check(ours, theirs, bt: Bnd, bo: Bnd, fmt, what):
    """The combined bound, the informativeness of the bound, and (float32) each side
    against the exact value."""
    ours = np.asarray(ours, np.float64)
    theirs = np.asarray(theirs, np.float64)
    B = (bt.e + bo.e) * SAFETY
    err = np.abs(ours - theirs)
    assert np.all(err <= B), f"{what}: max |ours - torch| / B = {np.max(err / B)}"
    scale = max(float(np.max(np.abs(bt.v))), 1e-300)
    # informative: far below the values' scale (float32: u = 6e-8; float64: u = 1.1e-16)
    assert float(np.max(B)) <= (2.0 ** -12 if fmt == "float32" else 2.0 ** -38) * scale, \
        f"{what}: vacuous bound {np.max(B)} for scale {scale}"
    if fmt == "float32":
        assert np.all(np.abs(theirs - bt.v) <= bt.e * SAFETY), f"{what}: torch outside E_torch"
        assert np.all(np.abs(ours - bo.v) <= bo.e * SAFETY), f"{what}: ours outside E_ours"



# ================================================================= response-based KD loss
def _torch_kd(s, t, y, T, alpha, reduction, log_target, fmt):
    tdt = DT[fmt][0]
    st = torch.tensor(s, dtype=tdt, requires_grad=True)
    tt = torch.tensor(t, dtype=tdt)
    yt = torch.tensor(y)
    lq = F.log_softmax(st / T, dim=1)
    tgt = F.log_softmax(tt / T, dim=1) if log_target else F.softmax(tt / T, dim=1)
    with warnings.catch_warnings():
        # torch 2.13 warns that 'mean' divides by N * C (the semantics mirrored here)
        warnings.filterwarnings("ignore", message="reduction: 'mean' divides",
                                category=UserWarning)
        kl = F.kl_div(lq, tgt, reduction=reduction, log_target=log_target)
    ce = F.cross_entropy(st, yt, reduction="sum" if reduction == "sum" else "mean")
    loss = alpha * T * T * kl + (1 - alpha) * ce
    loss.backward()
    return loss.item(), st.grad.numpy().astype(np.float64)


def _logits(seed, N=6, C=5, scale=2.0, fmt="float32"):
    r = np.random.default_rng(seed)
    npdt = DT[fmt][1]
    s = (scale * r.standard_normal((N, C))).astype(npdt).astype(np.float64)
    t = (scale * r.standard_normal((N, C))).astype(npdt).astype(np.float64)
    return s, t, r.integers(0, C, N)


KD_CASES = [(4, 0.9, "batchmean", False), (1, 0.5, "batchmean", False),
            (3, 0.7, "mean", False), (2, 0.25, "sum", False), (4, 1.0, "batchmean", False),
            (2, 0.0, "mean", False), (3, 0.6, "batchmean", True), (2, 0.9, "sum", True)]


@pytest.mark.parametrize("fmt", ["float64", "float32"])
@pytest.mark.parametrize("T,alpha,reduction,log_target", KD_CASES,
                         ids=[f"T{c[0]}-a{c[1]}-{c[2]}{'-logt' if c[3] else ''}"
                              for c in KD_CASES])
def test_kd_loss_vs_torch(fmt, T, alpha, reduction, log_target):
    """KD loss and its gradient wrt the student logits vs torch autograd of
    ``alpha T^2 F.kl_div(F.log_softmax(s/T), F.softmax(t/T)) + (1 - alpha)
    F.cross_entropy(s, y)``, within the derived bound of :func:`_kd_bounds` (module
    docstring: ``|ours - torch| <= (E_torch + E_ours)(1 + 2**-20)``)."""
    s, t, y = _logits(7 + T, fmt=fmt)
    pol = DT[fmt][3]
    loss, cache = distill.kd_loss_forward(s, t, y, pol, temperature=T, alpha=alpha,
                                          reduction=reduction, log_target=log_target)
    ds, extra = distill.kd_loss_backward(1.0, cache)
    assert extra == ()
    lt, gt = _torch_kd(s, t, y, T, alpha, reduction, log_target, fmt)
    bl_t, bg_t, bl_o, bg_o = _kd_bounds(s, t, y, T, alpha, reduction, log_target, fmt)
    _check(loss, lt, bl_t, bl_o, fmt, "kd loss")
    _check(ds, gt, bg_t, bg_o, fmt, "kd dstudent")


def test_kd_loss_edge_identities():
    """alpha = 0 is exactly the engine's cross-entropy; alpha = 1 needs no target; the
    analytic form alpha T (softmax(s/T) - softmax(t/T)) / N of the gradient; a loss scale
    enters the gradient once."""
    s, t, y = _logits(3, fmt="float64")
    ce, cc = nn.cross_entropy_forward(s, y, "fp64")
    kd, kc = distill.kd_loss_forward(s, t, y, "fp64", temperature=3.0, alpha=0.0)
    assert kd == ce
    assert np.array_equal(distill.kd_loss_backward(1.0, kc)[0],
                          nn.cross_entropy_backward(1.0, cc)[0])
    _, kc = distill.kd_loss_forward(s, t, None, "fp64", temperature=2.0, alpha=1.0)
    q = np.exp(s / 2 - np.max(s / 2, 1, keepdims=True))
    pt = np.exp(t / 2 - np.max(t / 2, 1, keepdims=True))
    analytic = 2.0 * (q / q.sum(1, keepdims=True) - pt / pt.sum(1, keepdims=True)) / len(s)
    assert np.max(np.abs(kc.grad - analytic)) <= 1e-15 * 8
    d1 = distill.kd_loss_backward(1.0, kc)[0]
    d8 = distill.kd_loss_backward(8.0, kc)[0]
    assert np.array_equal(d8, 8.0 * d1)         # power of two: exact


# ====================================================================== FitNets hint loss
@pytest.mark.parametrize("fmt", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["linear", "conv1x1"])
def test_hint_loss_vs_torch(fmt, kind):
    """FitNets hint loss: the value and the gradients of the regressor (weight, bias) and
    of the student features vs torch autograd of ``F.mse_loss(F.linear(fs, W, b), ft)``
    (``F.conv2d`` with a 1x1 kernel), within the derived bounds of :func:`_hint_bounds`
    (module docstring)."""
    tdt, npdt, _, pol = DT[fmt]
    r = np.random.default_rng(11)
    if kind == "linear":
        s_shape, t_shape, N = (7,), (5,), 6
    else:
        s_shape, t_shape, N = (3, 2, 3), (4, 2, 3), 2
    reg = distill.hint_regressor(s_shape, t_shape, rng=r, fmt=fmt)
    nn.prepare(reg, pol)
    w, b = reg.params["weight"].astype(np.float64), reg.params["bias"].astype(np.float64)
    fs = r.standard_normal((N,) + s_shape).astype(npdt).astype(np.float64)
    ft = r.standard_normal((N,) + t_shape).astype(npdt).astype(np.float64)
    loss, cache = distill.hint_loss_forward(reg, fs, ft, pol)
    dfs, grads = distill.hint_loss_backward(1.0, cache)
    assert sorted(grads) == ["bias", "weight"]
    # torch
    X = torch.tensor(fs, dtype=tdt, requires_grad=True)
    W = torch.tensor(w, dtype=tdt, requires_grad=True)
    B = torch.tensor(b, dtype=tdt, requires_grad=True)
    Y = F.linear(X, W, B) if kind == "linear" else F.conv2d(X, W, B)
    L = F.mse_loss(Y, torch.tensor(ft, dtype=tdt))
    L.backward()
    # bounds on rows: (N, D) or (N*H*W, C)
    def rows(a):
        return a if a.ndim == 2 else a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])
    w2 = w.reshape(w.shape[0], -1)
    bt, bo = _hint_bounds(rows(fs), rows(ft), w2, b, fmt)
    _check(loss, L.item(), bt[0], bo[0], fmt, "hint loss")
    _check(grads["weight"].reshape(w2.shape), W.grad.numpy().reshape(w2.shape), bt[1], bo[1],
           fmt, "hint dW")
    _check(grads["bias"], B.grad.numpy(), bt[2], bo[2], fmt, "hint db")
    _check(rows(np.asarray(dfs)), rows(X.grad.numpy()), bt[3], bo[3], fmt, "hint dfs")



# ======================================================================= RKD distance loss
def _torch_rkd(es, et, beta, tdt):
    """lenscloth/RKD metric/loss.py ``RkdDistance.forward`` (reduction 'mean', beta)."""
    st = torch.tensor(es, dtype=tdt, requires_grad=True)
    tt = torch.tensor(et, dtype=tdt)
    with torch.no_grad():
        t_d = _torch_pdist(tt, EPS)
        t_d = t_d / t_d[t_d > 0].mean()
    d = _torch_pdist(st, EPS)
    d = d / d[d > 0].mean()
    loss = F.smooth_l1_loss(d, t_d, beta=beta)
    loss.backward()
    return loss.item(), st.grad.numpy().astype(np.float64)


RKD_CASES = [("float64", 1.0, False), ("float32", 1.0, False), ("float64", 0.25, False),
             ("float32", 0.25, False), ("float64", 1.0, True)]


@pytest.mark.parametrize("fmt,beta,dup", RKD_CASES,
                         ids=[f"{c[0]}-beta{c[1]}{'-coincident' if c[2] else ''}"
                              for c in RKD_CASES])
def test_rkd_distance_vs_torch(fmt, beta, dup):
    """RKD distance loss and its gradient wrt the student embeddings vs torch autograd of
    the reference implementation (lenscloth/RKD), within the derived bounds of
    :func:`_rkd_bounds`.  ``coincident``: two equal student rows (distance 0, clamped to
    sqrt(eps) by both) -- the pair exerts no gradient on each other in either.  Not in
    float32: there the reference's expansion ``|a|^2 + |b|^2 - 2 a.b`` computes the
    squared distance of equal rows with an error near ``u |a|^2`` (1e-7 here), far above
    eps = 1e-12, so its clamp (and gradient) is undecided -- the bound helper asserts
    exactly that (:func:`test_rkd_float32_reference_cannot_resolve_coincident_rows`)."""
    tdt, npdt, _, pol = DT[fmt]
    r = np.random.default_rng(5)
    es = r.standard_normal((6, 4)).astype(npdt).astype(np.float64)
    et = (3.0 * r.standard_normal((6, 7))).astype(npdt).astype(np.float64)
    if dup:
        es[4] = es[1]
    loss, cache = distill.rkd_distance_forward(es, et, pol, beta=beta)
    de, extra = distill.rkd_distance_backward(1.0, cache)
    assert extra == ()
    lt, gt = _torch_rkd(es, et, beta, tdt)
    (bl_t, bg_t), (bl_o, bg_o) = _rkd_bounds(es, et, beta, fmt)
    _check(loss, lt, bl_t, bl_o, fmt, "rkd loss")
    _check(de, gt, bg_t, bg_o, fmt, "rkd dstudent")
    if dup:
        assert not cache.live[1, 4] and not cache.live[4, 1]


def test_rkd_float32_reference_cannot_resolve_coincident_rows():
    """The float32 exclusion above, checked: the transcribed bound of the reference's
    float32 squared distance of two equal rows straddles eps, while refcomp's (float64
    differences) is exactly 0 and gives the pair exactly no gradient."""
    r = np.random.default_rng(5)
    es = r.standard_normal((6, 4)).astype(np.float32).astype(np.float64)
    es[4] = es[1]
    with pytest.raises(AssertionError, match="clamp undecided"):
        _pd(F32, exact(es), torch_side=True)
    et = r.standard_normal((6, 3))
    _, cache = distill.rkd_distance_forward(es, et, "fp32")
    assert not cache.live[1, 4] and cache.d[1, 4] == np.sqrt(EPS)
    de, _ = distill.rkd_distance_backward(1.0, cache)
    assert np.all(np.isfinite(de))


def test_rkd_scale_invariance():
    """The normalisation by the mean distance makes the loss invariant to scaling either
    set by a power of two (exact)."""
    r = np.random.default_rng(2)
    es, et = r.standard_normal((5, 3)), r.standard_normal((5, 6))
    a, _ = distill.rkd_distance_forward(es, et, "fp64")
    b, _ = distill.rkd_distance_forward(4.0 * es, 0.5 * et, "fp64")
    assert a == b and a > 0


# ============================================================================ training loops
def _mlp(seed, hidden):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(64, hidden, rng=r), nn.ReLU(), nn.Linear(hidden, 10, rng=r))


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return nn.data.load_digits(flat=True)


@pytest.fixture(scope="module")
def teacher(digits):
    t = _mlp(0, 64)
    opt = nn.make_optimizer("sgd", "fp32", lr=0.05, momentum=0.9)
    nn.fit(t, digits, "fp32", opt, epochs=3, batch_size=32, rng=np.random.default_rng(1))
    return t


def _offline(teacher, digits, seed, **kw):
    student = _mlp(10 + seed, 16)
    opt = nn.make_optimizer("sgd", "fp32", lr=0.05, momentum=0.9)
    h = distill.fit_offline_kd(student, teacher, digits, "fp32", opt, epochs=3,
                               batch_size=64, rng=np.random.default_rng(seed), **kw)
    return h, student


def test_offline_kd_deterministic_and_learns(teacher, digits):
    """Same seed: bit-identical history and student; the KD loss decreases; the teacher
    is not modified; the student learns the digits."""
    before = teacher.state_dict()
    h1, s1 = _offline(teacher, digits, 0)
    h2, s2 = _offline(teacher, digits, 0)
    assert h1 == h2
    for k, v in s1.state_dict().items():
        assert np.array_equal(v, s2.state_dict()[k])
    assert h1.train_loss[-1] < h1.train_loss[0]
    assert h1.test_accuracy[-1] > 0.8
    for k, v in teacher.state_dict().items():
        assert np.array_equal(v, before[k])


def test_offline_kd_alpha0_is_plain_training(teacher, digits):
    """alpha = 0 is cross-entropy training: the same history and weights as nn.fit, bit
    for bit (the teacher's eval-mode forward consumes no randomness)."""
    h, s = _offline(teacher, digits, 3, alpha=0.0)
    ref = _mlp(13, 16)
    opt = nn.make_optimizer("sgd", "fp32", lr=0.05, momentum=0.9)
    hr = nn.fit(ref, digits, "fp32", opt, epochs=3, batch_size=64,
                rng=np.random.default_rng(3))
    assert h.train_loss == hr.train_loss and h.test_accuracy == hr.test_accuracy
    for k, v in s.state_dict().items():
        assert np.array_equal(v, ref.state_dict()[k])


def _mutual(digits, seed):
    a, b = _mlp(20, 16), _mlp(21, 16)
    init = (a.state_dict(), b.state_dict())
    oa, ob = (nn.make_optimizer("sgd", "fp32", lr=0.05, momentum=0.9) for _ in range(2))
    h = distill.fit_mutual(a, b, digits, "fp32", oa, ob, epochs=3, batch_size=64,
                           rng=np.random.default_rng(seed), temperature=2.0)
    return h, a, b, init


def test_mutual_learning_updates_both(digits):
    """Deep mutual learning: deterministic per seed, both networks change and both KD
    losses decrease."""
    h1, a1, b1, (ia, ib) = _mutual(digits, 4)
    h2, a2, b2, _ = _mutual(digits, 4)
    assert h1 == h2
    for m1, m2 in ((a1, a2), (b1, b2)):
        for k, v in m1.state_dict().items():
            assert np.array_equal(v, m2.state_dict()[k])
    for m, init in ((a1, ia), (b1, ib)):
        assert any(not np.array_equal(v, init[k]) for k, v in m.state_dict().items())
    for h in (h1.a, h1.b):
        assert h.train_loss[-1] < h.train_loss[0]
        assert h.test_accuracy[-1] > 0.6      # chance is 0.1


# ==================================================================================== errors
S2 = np.zeros((2, 3))
Y2 = np.array([0, 1])


@pytest.mark.parametrize("kw,match", [
    (dict(temperature=0.0), r"temperature=0\.0"),
    (dict(temperature=-2.0), r"temperature=-2\.0"),
    (dict(temperature=float("nan")), r"temperature=nan"),
    (dict(temperature=float("inf")), r"temperature=inf"),
    (dict(temperature=True), r"temperature=True"),
    (dict(temperature="4"), r"temperature='4'"),
    (dict(alpha=-0.1), r"alpha=-0\.1"),
    (dict(alpha=1.5), r"alpha=1\.5"),
    (dict(alpha=float("nan")), r"alpha=nan"),
    (dict(reduction="none"), r"reduction='none'"),
    (dict(reduction="avg"), r"reduction='avg'"),
])
def test_kd_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        distill.kd_loss_forward(S2, S2, Y2, "fp32", **kw)


def test_kd_shape_and_target_errors():
    with pytest.raises(ValueError, match=r"student logits \(2, 3\) vs teacher logits "
                                         r"\(2, 4\)"):
        distill.kd_loss_forward(S2, np.zeros((2, 4)), Y2, "fp32")
    with pytest.raises(ValueError, match=r"teacher logits must have 2 dimensions"):
        distill.kd_loss_forward(S2, np.zeros(6), Y2, "fp32")
    with pytest.raises(ValueError, match=r"target=None needs alpha == 1 \(got alpha=0\.5"):
        distill.kd_loss_forward(S2, S2, None, "fp32", alpha=0.5)
    with pytest.raises(ValueError, match=r"target 3 out of range"):
        distill.kd_loss_forward(S2, S2, np.array([0, 3]), "fp32")


@pytest.mark.parametrize("alpha", [1.0, 0.5])
@pytest.mark.parametrize("target,shown", [
    (np.array([0, 1, 0]), r"int64 \(3,\)"),
    (np.array([[0], [1]]), r"int64 \(2, 1\)"),
    (np.array(0), r"int64 \(\)"),
    (np.array([0.0, 1.0]), r"float64 \(2,\)"),
])
def test_kd_target_checked_whenever_given(alpha, target, shown):
    """A target that is given is checked even when alpha == 1 skips the CE term."""
    with pytest.raises(ValueError, match=r"kd_loss: target must be \(2,\) integer class "
                                         r"indices, got " + shown):
        distill.kd_loss_forward(S2, S2, target, "fp32", alpha=alpha)
    distill.kd_loss_forward(S2, S2, Y2, "fp32", alpha=alpha)        # the right shape


def test_hint_errors():
    r = np.random.default_rng(0)
    lin = distill.hint_regressor((4,), (3,), r)
    with pytest.raises(ValueError, match=r"student features \(2, 5\) do not fit"):
        distill.hint_loss_forward(lin, np.zeros((2, 5)), np.zeros((2, 3)), "fp32")
    with pytest.raises(ValueError, match=r"teacher features \(2, 4\) do not match the "
                                         r"regressor's output \(2, 3\)"):
        distill.hint_loss_forward(lin, np.zeros((2, 4)), np.zeros((2, 4)), "fp32")
    with pytest.raises(ValueError, match=r"must be \(N, 4\) for a Linear regressor, got "
                                         r"\(2, 4, 1, 1\)"):
        distill.hint_loss_forward(lin, np.zeros((2, 4, 1, 1)), np.zeros((2, 3)), "fp32")
    conv = distill.hint_regressor((2, 3, 3), (5, 3, 3), r)
    with pytest.raises(ValueError, match=r"teacher features \(1, 5, 2, 2\)"):
        distill.hint_loss_forward(conv, np.zeros((1, 2, 3, 3)), np.zeros((1, 5, 2, 2)),
                                  "fp32")
    with pytest.raises(ValueError, match=r"reduction='none'"):
        distill.hint_loss_forward(lin, np.zeros((2, 4)), np.zeros((2, 3)), "fp32",
                                  reduction="none")
    with pytest.raises(ValueError, match=r"spatial sizes differ"):
        distill.hint_regressor((2, 3, 3), (5, 4, 4), r)
    with pytest.raises(ValueError, match=r"must both be \(D,\) or both \(C, H, W\)"):
        distill.hint_regressor((4,), (5, 4, 4), r)
    with pytest.raises(ValueError, match=r"must be 1x1"):
        distill.hint_loss_forward(nn.Conv2d(2, 5, 3, padding=1, rng=r),
                                  np.zeros((1, 2, 3, 3)), np.zeros((1, 5, 3, 3)), "fp32")
    with pytest.raises(TypeError, match=r"got ReLU"):
        distill.hint_loss_forward(nn.ReLU(), np.zeros((2, 4)), np.zeros((2, 4)), "fp32")


def test_rkd_errors():
    e = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"batch sizes differ, student \(4, 3\) vs teacher "
                                         r"\(3, 3\)"):
        distill.rkd_distance_forward(e, e[:3], "fp32")
    with pytest.raises(ValueError, match=r"at least 2 embeddings, got shape \(1, 3\)"):
        distill.rkd_distance_forward(e[:1], e[:1], "fp32")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=rf"beta={bad!r}"):
            distill.rkd_distance_forward(e, e, "fp32", beta=bad)
    with pytest.raises(ValueError, match=r"eps=0\.0"):
        distill.rkd_distance_forward(e, e, "fp32", eps=0.0)
    with pytest.raises(ValueError, match=r"reduction='batchmean'"):
        distill.rkd_distance_forward(e, e, "fp32", reduction="batchmean")


def test_loop_errors():
    r = np.random.default_rng(0)
    x, y = r.standard_normal((8, 4)), np.arange(8) % 2
    data = nn.data.Dataset(x, y, x, y)
    m = nn.Linear(4, 2, rng=r)
    opt = nn.make_optimizer("sgd", "fp32", lr=0.1)
    with pytest.raises(ValueError, match=r"epochs=-1"):
        distill.fit_offline_kd(m, m, data, "fp32", opt, epochs=-1, batch_size=4, rng=r)
    with pytest.raises(ValueError, match=r"batch_size=0"):
        distill.fit_offline_kd(m, m, data, "fp32", opt, epochs=1, batch_size=0, rng=r)
    with pytest.raises(TypeError, match=r"got NoneType"):
        distill.fit_mutual(m, nn.Linear(4, 2, rng=r), data, "fp32", opt, opt, epochs=1,
                           batch_size=4, rng=None)
    with pytest.raises(ValueError, match=r"same object"):
        distill.fit_mutual(m, m, data, "fp32", opt, opt, epochs=1, batch_size=4, rng=r)
    with pytest.raises(ValueError, match=r"temperature=0"):
        distill.fit_offline_kd(m, nn.Linear(4, 2, rng=r), data, "fp32", opt, epochs=1,
                               batch_size=4, rng=r, temperature=0)


@pytest.mark.parametrize("epochs", [0, 1])
@pytest.mark.parametrize("kw,match", [
    (dict(temperature=0.0), r"temperature=0\.0 must be"),
    (dict(temperature=float("nan")), r"temperature=nan must be"),
    (dict(alpha=1.5), r"alpha=1\.5 must be"),
    (dict(alpha=-0.5), r"alpha=-0\.5 must be"),
    (dict(reduction="none"), r"reduction='none' must be"),
])
def test_loop_hyperparameters_checked_up_front(epochs, kw, match):
    """Bad temperature / alpha / reduction are rejected before any batch, also with
    epochs=0 (which runs no batch), and the models are not touched."""
    r = np.random.default_rng(0)
    x, y = r.standard_normal((8, 4)), np.arange(8) % 2
    data = nn.data.Dataset(x, y, x, y)
    a, b = nn.Linear(4, 2, rng=r), nn.Linear(4, 2, rng=r)
    before = (a.state_dict(), b.state_dict())
    opt = nn.make_optimizer("sgd", "fp32", lr=0.1)
    with pytest.raises(ValueError, match=r"fit_offline_kd: " + match):
        distill.fit_offline_kd(a, b, data, "fp32", opt, epochs=epochs, batch_size=4,
                               rng=r, **kw)
    with pytest.raises(ValueError, match=r"fit_mutual: " + match):
        distill.fit_mutual(a, b, data, "fp32", opt, opt, epochs=epochs, batch_size=4,
                           rng=r, **kw)
    for m, sd in zip((a, b), before):
        for k, v in m.state_dict().items():
            assert np.array_equal(v, sd[k])


@pytest.mark.parametrize("epochs", [0, 1])
def test_loop_empty_training_set(epochs):
    r = np.random.default_rng(0)
    x, y = r.standard_normal((8, 4)), np.arange(8) % 2
    data = nn.data.Dataset(x[:0], y[:0], x, y)
    a, b = nn.Linear(4, 2, rng=r), nn.Linear(4, 2, rng=r)
    opt = nn.make_optimizer("sgd", "fp32", lr=0.1)
    with pytest.raises(ValueError, match=r"fit_offline_kd: empty training set "
                                         r"\(x_train shape \(0, 4\)\)"):
        distill.fit_offline_kd(a, b, data, "fp32", opt, epochs=epochs, batch_size=4, rng=r)
    with pytest.raises(ValueError, match=r"fit_mutual: empty training set "
                                         r"\(x_train shape \(0, 4\)\)"):
        distill.fit_mutual(a, b, data, "fp32", opt, opt, epochs=epochs, batch_size=4,
                           rng=r)
