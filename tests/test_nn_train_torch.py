"""A mirrored training run against torch 2.13 CPU float32: the same initial weights (torch's,
loaded through state_dict), the same batches of the real digits data, SGD with momentum.

At every step torch's current weights (and momentum buffers) are loaded into refcomp
(re-synchronised), both compute the logits and the loss of the batch, and the two must
agree within a derived bound:
for a network of linear / conv layers, relu, max pooling and flatten, any float32
implementation whose GEMMs round at most K + 1 times per term (any order, fused or not)
has a forward error, propagated layer by layer with the actual magnitudes,

    E_out = |W| E_in + gamma_{K+1} (|W| |h| + |b|)      (linear / conv as GEMM)
    E_out = E_in                                         (relu; max pool: window max)

and cross-entropy changes by at most 2 max_j |dz_j| per sample (its gradient p - e_t has
l1 norm <= 2), plus the rounding of the loss itself (a float32 reduction of N terms:
gamma_N sum |L_i| and the log-sum-exp evaluation, bounded by 8 u (1 + |L_i|) per sample).
Both refcomp and torch satisfy it, so |z_ours - z_torch| <= 2 E_z elementwise and
|L_ours - L_torch| <= 2 E_L.  The unsynchronised
trajectory is reported too (no bound: errors compound through training).
"""

import math

import numpy as np
import pytest

from refcomp import nn
from refcomp.nn.optim import SGD, SGDState

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

U = 2.0 ** -24
ETA = 2.0 ** -149


def _gamma(n):
    return n * U / (1 - n * U)


def _forward_bound(model, x):
    """(float64 output of the exact-math network, elementwise bound E on any float32
    evaluation's error) for a Sequential of Linear / Conv2d / ReLU / MaxPool2d / Flatten."""
    h, E = np.asarray(x, np.float64), np.zeros(np.shape(x))
    for m in model.layers:
        if isinstance(m, nn.Linear):
            W, b = m.params["weight"], m.params["bias"]
            K = W.shape[1]
            E = E @ np.abs(W).T + _gamma(K + 1) * (np.abs(h) @ np.abs(W).T + np.abs(b)) + \
                (K + 1) * ETA
            h = h @ W.T + b
        elif isinstance(m, nn.Conv2d):
            W, b = m.params["weight"], m.params["bias"]
            kw = dict(m.conv)
            K = int(np.prod(W.shape[1:]))
            E = nn.conv2d_forward(E, np.abs(W), None, "fp64", **kw)[0] + _gamma(K + 1) * \
                nn.conv2d_forward(np.abs(h), np.abs(W), np.abs(b), "fp64", **kw)[0] + \
                (K + 1) * ETA
            h = nn.conv2d_forward(h, W, b, "fp64", **kw)[0]
        elif isinstance(m, nn.ReLU):
            h = np.maximum(h, 0.0)
        elif isinstance(m, nn.MaxPool2d):
            E = nn.max_pool2d_forward(E, "fp64", **m.kw)[0]
            h = nn.max_pool2d_forward(h, "fp64", **m.kw)[0]
        elif isinstance(m, nn.Flatten):
            h, E = h.reshape(len(h), -1), E.reshape(len(E), -1)
        else:
            raise TypeError(type(m).__name__)
    return h, E


def _loss_bound(z, Ez, target):
    """Bound on |L_float32 - L_exact| for the mean cross-entropy of logits z (module
    docstring)."""
    N = len(z)
    zs = z - z.max(axis=1, keepdims=True)
    Li = np.log(np.exp(zs).sum(axis=1)) - zs[np.arange(N), target]
    prop = 2.0 * Ez.max(axis=1)                       # logits' error through CE
    rnd = 8 * U * (1 + np.abs(Li)) + 2 * U * np.abs(zs).max(axis=1)
    return float(np.mean(prop + rnd) + _gamma(N) * np.mean(np.abs(Li)) + U * np.mean(Li))


def _models(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        tm = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                 torch.nn.Linear(64, 10))
        om = nn.Sequential(nn.Linear(64, 64, rng=np.random.default_rng(0)), nn.ReLU(),
                           nn.Linear(64, 10, rng=np.random.default_rng(1)))
    else:
        tm = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 16, 3, padding=1),
                                 torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(64, 10))
        r = np.random.default_rng(0)
        om = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, rng=r), nn.ReLU(),
                           nn.MaxPool2d(kernel_size=2), nn.Conv2d(8, 16, 3, padding=1, rng=r),
                           nn.ReLU(), nn.MaxPool2d(kernel_size=2), nn.Flatten(),
                           nn.Linear(64, 10, rng=r))
    return tm, om


def tm_logits(tm, snapshot, kind, x):
    """torch's logits for x at the weights `snapshot` (a fresh copy of the model)."""
    t = _models(kind)[0]
    t.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in snapshot.items()})
    return t(torch.tensor(x, dtype=torch.float32)).detach().numpy().astype(np.float64)


def _sd(tm):
    return {k: v.detach().numpy().astype(np.float64) for k, v in tm.state_dict().items()}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_mirrored_training_losses_within_derived_bound(kind):
    data = nn.data.load_digits(flat=(kind == "mlp"))
    tm, om = _models(kind)
    om.load_state_dict(_sd(tm))
    free = _models(kind)[1]
    free.load_state_dict(_sd(tm))                       # our unsynchronised twin
    topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9, foreach=False)
    oopt, fopt = SGD(lr=0.05, momentum=0.9), SGD(lr=0.05, momentum=0.9)
    loss = (nn.cross_entropy_forward, nn.cross_entropy_backward)
    rng = np.random.default_rng(1)
    ratios, drift = [], []
    for step, idx in enumerate(nn.data.batches(len(data.x_train), 64, rng)[:25]):
        x, y = data.x_train[idx], data.y_train[idx]
        snapshot = _sd(tm)
        om.load_state_dict(snapshot)                    # re-synchronise
        names = [k for k, _ in tm.named_parameters()]
        for k, prm in zip(names, tm.parameters()):     # and torch's momentum buffers
            buf = topt.state.get(prm, {}).get("momentum_buffer")
            if buf is not None:
                oopt.state[k] = SGDState(buf.numpy().astype(np.float64))
        ours = nn.train_step(om, x, y, loss, oopt, "fp32")
        fr = nn.train_step(free, x, y, loss, fopt, "fp32")
        topt.zero_grad()
        lt = torch.nn.functional.cross_entropy(tm(torch.tensor(x, dtype=torch.float32)),
                                               torch.tensor(y))
        lt.backward()
        topt.step()
        om.load_state_dict(snapshot)
        z, Ez = _forward_bound(om, x)
        bound = 2 * _loss_bound(z, Ez, y)
        zt = tm_logits(tm, snapshot, kind, x)
        assert np.all(np.abs(nn.predict(om, x, "fp32") - zt) <= 2 * Ez), step
        diff = abs(ours.loss - lt.item())
        assert diff <= bound, (step, ours.loss, lt.item(), bound)
        ratios.append(diff / bound)
        drift.append(abs(fr.loss - lt.item()))
    assert max(ratios) < 1 and math.isfinite(max(drift))
    print(f"\n{kind}: max |L_ours - L_torch| / bound over 25 synced steps = {max(ratios):.3g}; "
          f"unsynced drift after 25 steps = {drift[-1]:.3g}")


def test_bound_catches_a_wrong_model():
    """The derived bounds are tight enough to fail the same network evaluated with float16
    activations (the fp16-mixed policy): its logits leave the elementwise bound 2 E_z."""
    data = nn.data.load_digits(flat=True)
    tm, om = _models("mlp")
    om.load_state_dict(_sd(tm))
    x = data.x_train[:64]
    zt = tm(torch.tensor(x, dtype=torch.float32)).detach().numpy().astype(np.float64)
    z, Ez = _forward_bound(om, x)
    assert np.all(np.abs(nn.predict(om, x, "fp32") - zt) <= 2 * Ez)
    assert np.any(np.abs(nn.predict(om, x, "fp16-mixed") - zt) > 2 * Ez)
