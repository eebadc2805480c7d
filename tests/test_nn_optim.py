"""refcomp.nn.optim against torch 2.13 CPU (``foreach=False``), bit for bit.

Oracles: torch's own optimizers and tensor kernels on this machine (float32, bfloat16,
float16, float64), torch run under other ``ATEN_CPU_CAPABILITY`` values in a subprocess,
and exact ``Fraction`` arithmetic for stochastic and Kahan updates.
"""

import itertools
import json
import math
import os
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest

import refcomp as rc

torch = pytest.importorskip("torch")

from refcomp.nn import optim  # noqa: E402
from refcomp.nn.optim import (SGD, Adam, AdamState, AdamW, SGDState, TorchCPU,  # noqa: E402
                              adam_init, adam_step, adamw_step, sgd_init, sgd_step)
from refcomp.testing import assert_bits_equal  # noqa: E402

DT = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
      "float64": torch.float64}
CAP = torch.backends.cpu.get_cpu_capability()
SIZES = [1, 7, 33, 1000]


def here_cpu():
    """The TorchCPU model of the torch this test runs against."""
    if CAP not in ("DEFAULT", "AVX2", "AVX512"):
        pytest.skip(f"torch CPU capability {CAP} is not modelled")
    return TorchCPU.for_capability(CAP, threads=torch.get_num_threads())


def default_cpu():
    """cpu=None (the steps' default) models the fused AVX2 / AVX512 kernels."""
    return None if CAP in ("AVX2", "AVX512") else here_cpu()


def same(ours, theirs, fmt, what):
    try:
        assert_bits_equal(ours, theirs, fmt)
    except AssertionError as e:
        raise AssertionError(f"{what}: {e}") from None


def tt(x, fmt):
    return torch.tensor(np.asarray(x, np.float64)).to(DT[fmt])


def npv(t):
    return t.detach().to(torch.float64).numpy().copy()


def values(rng, shape, fmt, scale=1.0):
    """Random values of fmt, rounded by torch (not by refcomp)."""
    return npv(tt(rng.standard_normal(shape) * scale, fmt))


# ---------------------------------------------------------------------- kernel rules
def _kernels(fmt, cpu):
    return optim._Kernels.make(fmt, None, cpu)


@pytest.mark.parametrize("fmt", ["float32", "bfloat16", "float16", "float64"])
@pytest.mark.parametrize("n", [1, 7, 33, 1000, 70001])
def test_kernels_match_aten(fmt, n):
    """Each emulated kernel equals torch's on adversarial data (cancellation exposes
    fused vs unfused evaluation, 16-bit tails expose the scalar loop)."""
    rng = np.random.default_rng(n)
    k = _kernels(fmt, here_cpu())
    y, z = values(rng, n, fmt), values(rng, n, fmt)
    a, c = 0.3, 0.7
    x = npv(tt(-a * y * (1 + 1e-3 * rng.standard_normal(n)), fmt))
    cases = {
        "add_alpha": (k.add_alpha(x, y, a, k.fmt), tt(x, fmt).add(tt(y, fmt), alpha=a)),
        "add_one": (k.add_alpha(x, y, 1.0, k.fmt), tt(x, fmt).add(tt(y, fmt))),
        "mul_s": (k.mul_s(x, 0.3, k.fmt), tt(x, fmt).mul(0.3)),
        "div_s": (k.div_s(x, 0.3, k.fmt), tt(x, fmt).div(0.3)),
        "add_s": (k.add_s(x, 1.1e-3, k.fmt), tt(x, fmt).add(1.1e-3)),
    }
    if fmt in ("bfloat16", "float16"):
        cases["sqrt"] = (k.sqrt(np.abs(x), k.fmt), tt(np.abs(x), fmt).sqrt())
    else:                                        # MKL: faithful, not correctly rounded
        got = npv(tt(np.abs(x), fmt).sqrt())
        down, up = (rc.ops.sqrt(np.abs(x), fmt, r) for r in ("toward_negative",
                                                             "toward_positive"))
        assert np.all((got == down) | (got == up))
    x2 = npv(tt(-c * y * z * (1 + 1e-3 * rng.standard_normal(n)), fmt))
    cases["addcmul"] = (k.addcmul(x2, y, z, c, k.fmt),
                        tt(x2, fmt).addcmul(tt(y, fmt), tt(z, fmt), value=c))
    x3 = npv(tt(y * (1 + 1e-2 * rng.standard_normal(n)), fmt))
    for w in (0.1, 0.5, 0.9, 1.0):
        cases[f"lerp{w}"] = (k.lerp(x3, y, w, k.fmt), tt(x3, fmt).lerp(tt(y, fmt), w))
    for name, (ours, theirs) in cases.items():
        same(ours, npv(theirs), fmt, name)


def test_scalar_loop_matters_for_bfloat16():
    """Non-vacuity: for 16-bit add with alpha, torch's tail elements differ from the
    vector rule, and only the loop model reproduces them."""
    rng = np.random.default_rng(0)
    n = 1000
    y = values(rng, n, "bfloat16")
    x = npv(tt(-0.3 * y * (1 + 1e-2 * rng.standard_normal(n)), "bfloat16"))
    got = npv(tt(x, "bfloat16").add(tt(y, "bfloat16"), alpha=0.3))
    vec = _kernels("bfloat16", None).add_alpha(x, y, 0.3, _kernels("bfloat16", None).fmt)
    tail = here_cpu().scalar_mask(n)
    assert tail.sum() == n % here_cpu().block
    assert np.any(vec[tail] != got[tail])
    assert np.array_equal(vec[~tail], got[~tail])


def test_scalar_mask_chunks():
    m = TorchCPU(block=32, threads=2).scalar_mask(100003)      # chunks of 50002, 50001
    assert m.sum() == 50002 % 32 + 50001 % 32
    assert m[50002 - 50002 % 32:50002].all() and not m[50002:50002 + 32].any()
    assert TorchCPU(fma=False).scalar_mask(5).all()
    assert not TorchCPU(block=4).scalar_mask(8).any()


# ------------------------------------------------------------------ torch replays
def run_torch(cls, kw, p0, grad_fn, steps, fmt, lrs=None):
    """torch's trajectory; grad_fn(step, param values) gives the next gradient values."""
    p = torch.nn.Parameter(tt(p0, fmt))
    opt = cls([p], foreach=False, **kw)
    out, grads = [], []
    for i in range(steps):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[i]
        g = grad_fn(i, npv(p))
        p.grad = tt(g, fmt)
        grads.append(npv(p.grad))
        opt.step()
        out.append(npv(p))
    return out, grads, opt


def grad_maker(rng, fmt, wd):
    """Gradients mixing plain noise with near-cancellations of the weight decay term."""
    def fn(i, p):
        g = rng.standard_normal(p.shape)
        if wd:
            half = rng.random(p.shape) < 0.5
            g[half] = -wd * p[half] * (1 + 1e-3 * rng.standard_normal(half.sum()))
        return npv(tt(g, fmt))
    return fn


def replay(step_fn, init, p0, grads, kw, lrs=None):
    p, s, out = p0, init(p0), []
    for i, g in enumerate(grads):
        extra = {} if lrs is None else {"lr": lrs[i]}
        p, s = step_fn(p, g, s, **kw, **extra)
        out.append(p)
    return out, s


SGD_OPTS = [dict(momentum=m, dampening=d, nesterov=nv, weight_decay=wd, maximize=mx)
            for m, d, nv, wd, mx in itertools.product((0.0, 0.9), (0.0, 0.25), (False, True),
                                                      (0.0, 0.013), (False, True))
            if not (nv and (m == 0 or d != 0))]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("opts", SGD_OPTS, ids=lambda o: "-".join(
    f"{k}={v}" for k, v in o.items()))
def test_sgd_float32_bit_exact(n, opts):
    rng = np.random.default_rng(n)
    p0 = values(rng, n, "float32")
    kw = dict(lr=0.0137, **opts)
    ref, grads, _ = run_torch(torch.optim.SGD, kw, p0, grad_maker(rng, "float32",
                                                                  opts["weight_decay"]),
                              6, "float32")
    ours, _ = replay(sgd_step, sgd_init, p0, grads, dict(kw, cpu=default_cpu()))
    for i, (a, b) in enumerate(zip(ours, ref)):
        same(a, b, "float32", f"step {i + 1}")


ADAM_OPTS = [(dict(amsgrad=a, weight_decay=wd, maximize=mx, betas=b, eps=e), SIZES[i % 4])
             for i, (a, wd, mx, b, e) in enumerate(itertools.product(
                 (False, True), (0.0, 0.05), (False, True),
                 ((0.9, 0.999), (0.5, 0.6), (0.0, 0.0)), (1e-8, 0.1)))]


@pytest.fixture
def torch_sqrt(monkeypatch):
    """Replace the one kernel torch takes from MKL (sqrt, module Notes) by torch's own, so
    that every other kernel is checked bit for bit over whole trajectories."""
    exact = optim._Kernels.sqrt

    def sqrt(self, x, out):                      # 16-bit formats: ATen's exact root
        if self.fmt != self.op:
            return exact(self, x, out)
        return self.r(npv(torch.sqrt(tt(x, self.op.name))), out)
    monkeypatch.setattr(optim._Kernels, "sqrt", sqrt)


ADAMS = pytest.mark.parametrize("cls,step", [(torch.optim.Adam, adam_step),
                                             (torch.optim.AdamW, adamw_step)],
                                ids=["adam", "adamw"])
OPT_IDS = dict(ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items())
               if isinstance(o, dict) else f"n={o}")


@ADAMS
@pytest.mark.parametrize("opts,n", ADAM_OPTS, **OPT_IDS)
def test_adam_float32_bit_exact_given_torch_sqrt(cls, step, opts, n, torch_sqrt):
    rng = np.random.default_rng(n)
    p0 = values(rng, n, "float32")
    kw = dict(lr=0.0123, **opts)
    ref, grads, _ = run_torch(cls, kw, p0, grad_maker(rng, "float32", opts["weight_decay"]),
                              6, "float32")
    ours, _ = replay(step, adam_init, p0, grads, dict(kw, cpu=default_cpu()))
    for i, (a, b) in enumerate(zip(ours, ref)):
        same(a, b, "float32", f"step {i + 1}")


@ADAMS
@pytest.mark.parametrize("opts,n", ADAM_OPTS, **OPT_IDS)
def test_adam_float32_faithful_sqrt(cls, step, opts, n, monkeypatch):
    """Without the patch: at every step, from torch's own state, torch's parameter equals
    ours element for element with the root rounded down or with it rounded up, and ours
    (rounded to nearest) is one of the two."""
    rng = np.random.default_rng(n)
    p = torch.nn.Parameter(tt(values(rng, n, "float32"), "float32"))
    kw = dict(lr=0.0123, **opts)
    topt = cls([p], foreach=False, **kw)
    gfn = grad_maker(rng, "float32", opts["weight_decay"])
    mixed = 0
    for i in range(3):
        p0 = npv(p)
        st = topt.state.get(p)
        state = adam_init(p0) if not st else AdamState(
            st["step"].item(), npv(st["exp_avg"]), npv(st["exp_avg_sq"]),
            npv(st["max_exp_avg_sq"]) if opts["amsgrad"] else None)
        p.grad = tt(gfn(i, p0), "float32")
        g = npv(p.grad)
        topt.step()
        ours = {}
        for mode in ("nearest_even", "toward_negative", "toward_positive"):
            monkeypatch.setattr(optim._Kernels, "sqrt", lambda self, x, out, mode=mode:
                                self.r(rc.ops.sqrt(x, self.op, mode), out))
            ours[mode] = step(p0, g, state, cpu=default_cpu(), **kw)[0]
        got = npv(p)
        assert np.all((got == ours["toward_negative"]) | (got == ours["toward_positive"]))
        assert np.all((ours["nearest_even"] == ours["toward_negative"])
                      | (ours["nearest_even"] == ours["toward_positive"]))
        mixed += int(np.sum(got != ours["nearest_even"]))
    if n == 1000 and opts["eps"] < 1e-3 and opts["betas"][1] > 0:
        assert mixed > 0                           # the freedom is real (non-vacuity)


@pytest.mark.parametrize("n", SIZES)
def test_adam_many_steps_changing_lr(n, torch_sqrt):
    """200 AdamW steps (bias corrections at large step counts), lr changed every step."""
    rng = np.random.default_rng(7)
    p0 = values(rng, n, "float32")
    lrs = [float(x) for x in rng.uniform(1e-4, 1e-2, 200)]
    kw = dict(lr=1e-3, amsgrad=True, weight_decay=0.01)
    ref, grads, opt = run_torch(torch.optim.AdamW, kw, p0, grad_maker(rng, "float32", 0),
                                200, "float32", lrs)
    ours, s = replay(adamw_step, adam_init, p0, grads, dict(
        amsgrad=True, weight_decay=0.01, cpu=default_cpu()), lrs)
    same(ours[-1], ref[-1], "float32", "param")
    st = opt.state[opt.param_groups[0]["params"][0]]
    assert s.step == st["step"].item() == 200
    for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        same(getattr(s, name), npv(st[name]), "float32", name)


@pytest.mark.parametrize("fmt", ["bfloat16", "float16", "float64"])
@pytest.mark.parametrize("n", [7, 33, 1000, 70001])
def test_sgd_narrow_and_wide_bit_exact(fmt, n):
    rng = np.random.default_rng(n)
    p0 = values(rng, n, fmt)
    for opts in (SGD_OPTS[-1], dict(momentum=0.9, dampening=0.1, weight_decay=0.013)):
        kw = dict(lr=0.0137, **opts)
        ref, grads, _ = run_torch(torch.optim.SGD, kw, p0,
                                  grad_maker(rng, fmt, opts["weight_decay"]), 4, fmt)
        ours, _ = replay(sgd_step, sgd_init, p0, grads, dict(kw, fmt=fmt, cpu=here_cpu()))
        for a, b in zip(ours, ref):
            assert_bits_equal(a, b, fmt)


@pytest.mark.parametrize("fmt", ["bfloat16", "float16", "float64"])
@pytest.mark.parametrize("n", [7, 33, 1000])
@ADAMS
def test_adam_narrow_and_wide_bit_exact(fmt, n, cls, step, monkeypatch):
    if fmt == "float64":                             # MKL vdSqrt, as for float32
        monkeypatch.setattr(optim._Kernels, "sqrt", lambda self, x, out: self.r(
            npv(torch.sqrt(tt(x, "float64"))), out))
    rng = np.random.default_rng(n)
    p0 = values(rng, n, fmt)
    kw = dict(lr=0.0123, amsgrad=True, weight_decay=0.05, eps=1e-3)
    ref, grads, _ = run_torch(cls, kw, p0, grad_maker(rng, fmt, 0.05), 5, fmt)
    ours, _ = replay(step, adam_init, p0, grads, dict(kw, fmt=fmt, cpu=here_cpu()))
    for a, b in zip(ours, ref):
        assert_bits_equal(a, b, fmt)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_float32_state_for_bfloat16_params(nesterov):
    """state_fmt="float32" with bfloat16 parameters, against the same step written with
    mixed-dtype torch tensors (torch promotes bfloat16 with float32 to float32)."""
    rng = np.random.default_rng(9)
    n = 1000
    p = values(rng, n, "bfloat16")
    tp, tbuf, s = tt(p, "bfloat16"), None, sgd_init(p)
    kw = dict(lr=0.0137, momentum=0.9, dampening=0.0 if nesterov else 0.1,
              nesterov=nesterov, weight_decay=0.013)
    for _ in range(4):
        g = values(rng, n, "bfloat16")
        p, s = sgd_step(p, g, s, fmt="bfloat16", state_fmt="float32", cpu=here_cpu(), **kw)
        tg = tt(g, "bfloat16").add(tp, alpha=kw["weight_decay"])
        if tbuf is None:
            tbuf = tg.float()
        else:
            tbuf.mul_(0.9).add_(tg, alpha=1 - kw["dampening"])
        tp.add_(tg.add(tbuf, alpha=0.9) if nesterov else tbuf, alpha=-kw["lr"])
        same(p, npv(tp), "bfloat16", "param")
        same(s.momentum_buffer, npv(tbuf), "float32", "momentum_buffer")


_SUBPROCESS = textwrap.dedent("""
    import json, sys, numpy as np, torch
    torch.set_num_threads(1)
    out = {"cap": torch.backends.cpu.get_cpu_capability(), "runs": []}
    for fmt, n, kind in json.loads(sys.argv[1]):
        dt = getattr(torch, fmt)
        rng = np.random.default_rng(n)
        p = torch.nn.Parameter(torch.tensor(rng.standard_normal(n)).to(dt))
        if kind == "sgd":
            opt = torch.optim.SGD([p], lr=0.0137, momentum=0.9, dampening=0.1,
                                  weight_decay=0.013, foreach=False)
        else:
            opt = torch.optim.AdamW([p], lr=0.0123, amsgrad=True, foreach=False)
        run = {"p0": p.double().tolist(), "grads": [], "params": []}
        for i in range(3):
            g = -0.013 * p.detach().double() * (1 + 1e-3 * torch.randn(n, dtype=torch.float64))
            p.grad = g.to(dt)
            run["grads"].append(p.grad.double().tolist())
            opt.step()
            run["params"].append(p.double().tolist())
        out["runs"].append(run)
    print(json.dumps(out))
""")


_CASES = [[f, n, k] for f in ("float32", "bfloat16") for n in (7, 1000)
          for k in ("sgd", "adamw")]


@pytest.fixture(scope="module")
def other_capabilities():
    """torch runs under ATEN_CPU_CAPABILITY=default and =avx512, in parallel subprocesses."""
    procs = {c: subprocess.Popen([sys.executable, "-c", _SUBPROCESS, json.dumps(_CASES)],
                                 env=dict(os.environ, ATEN_CPU_CAPABILITY=c),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in ("default", "avx512")}
    out = {}
    for c, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        out[c] = json.loads(stdout)
    return out


@pytest.mark.parametrize("capability", ["default", "avx512"])
def test_other_cpu_capabilities(capability, other_capabilities, torch_sqrt):
    """torch under ATEN_CPU_CAPABILITY=default (no FMA) and avx512 (block 64), replayed
    with TorchCPU.for_capability of the capability torch reports (MKL's sqrt does not
    depend on ATen's capability, so this process's torch supplies the roots)."""
    cases, out = _CASES, other_capabilities[capability]
    cpu = TorchCPU.for_capability(out["cap"], threads=1)
    if capability == "default":
        assert out["cap"] == "DEFAULT" and not cpu.fma
    for (fmt, n, kind), run in zip(cases, out["runs"]):
        if kind == "sgd":
            kw = dict(lr=0.0137, momentum=0.9, dampening=0.1, weight_decay=0.013)
            ours, _ = replay(sgd_step, sgd_init, np.array(run["p0"]), map(np.array,
                             run["grads"]), dict(kw, fmt=fmt, cpu=cpu))
        else:
            ours, _ = replay(adamw_step, adam_init, np.array(run["p0"]),
                             map(np.array, run["grads"]),
                             dict(lr=0.0123, amsgrad=True, fmt=fmt, cpu=cpu))
        for a, b in zip(ours, run["params"]):
            assert_bits_equal(a, np.array(b), fmt)


# ---------------------------------------------------------- stochastic and Kahan
def _neighbours(x: Fraction, man_bits: int):
    """Round-down / round-up of a positive exact x to man_bits stored bits."""
    e = math.floor(math.log2(x))
    if Fraction(2) ** e > x:
        e -= 1
    q = Fraction(2) ** (e - man_bits)
    lo = (x // q) * q
    return lo, lo if lo == x else lo + q


def test_stochastic_sgd_unbiased_bfloat16():
    """Stochastic rounding of the exact p + alpha * g: only the two neighbours, rounding
    up with probability (exact - lo) / ulp (exact Fractions; alpha is torch's
    ``alpha.to<bfloat16>()``)."""
    rng = np.random.default_rng(1)
    n = 20000
    g0 = npv(tt(0.3, "bfloat16")).item()
    p0, g = np.ones(n), np.full(n, g0)
    alpha = Fraction(tt(-1e-3, "float32").to(torch.bfloat16).item())
    exact = 1 + alpha * Fraction(g0)
    p, _ = sgd_step(p0, g, sgd_init(p0), lr=1e-3, fmt="bfloat16", update="stochastic",
                    rng=rng)
    lo, hi = _neighbours(exact, 7)
    assert set(np.unique(p)) == {float(lo), float(hi)}
    prob = float((exact - lo) / (hi - lo))
    sigma = math.sqrt(prob * (1 - prob) / n)
    assert abs(np.mean(p == float(hi)) - prob) < 5 * sigma
    with pytest.raises(ValueError, match="rng"):
        sgd_step(p0, g, sgd_init(p0), lr=1e-3, fmt="bfloat16", update="stochastic")


def test_stochastic_adam_brackets_exact_sum(torch_sqrt):
    """Stochastic Adam lands on one of the two neighbours of the exact p + increment;
    the increment is torch's own (value * m) / denom from torch's state."""
    rng = np.random.default_rng(2)
    n = 1000
    p0 = values(rng, n, "float32")
    kw = dict(lr=0.0123, weight_decay=0.0)
    ref, grads, opt = run_torch(torch.optim.Adam, kw, p0, grad_maker(rng, "float32", 0), 1,
                                "float32")
    st = opt.state[opt.param_groups[0]["params"][0]]
    denom = (st["exp_avg_sq"].sqrt() / math.sqrt(1 - 0.999)).add_(1e-8)
    inc = npv(torch.mul(st["exp_avg"], -0.0123 / (1 - 0.9)) / denom)
    p, _ = adam_step(p0, grads[0], adam_init(p0), fmt="float32", update="stochastic",
                     rng=rng, **kw)
    for i in range(n):
        x = Fraction(p0[i]) + Fraction(inc[i])
        lo, hi = _neighbours(abs(x), 23)
        cand = {float(lo), float(hi)} if x > 0 else {-float(lo), -float(hi)}
        assert p[i] in cand
    assert np.mean(p != ref[0]) > 0.05                 # it does round differently


def test_kahan_matches_torch_bfloat16_formula():
    """update="kahan" equals u = g*alpha; y = u - c; s = p + y; c = (s - p) - y in torch
    bfloat16 tensors (each op opmath then bfloat16)."""
    rng = np.random.default_rng(3)
    n = 257
    p = values(rng, n, "bfloat16")
    alpha = tt(-0.0137, "float32").to(torch.bfloat16).item()
    tp, tc = tt(p, "bfloat16"), torch.zeros(n, dtype=torch.bfloat16)
    s = sgd_init(p)
    for _ in range(20):
        g = values(rng, n, "bfloat16", 1e-2)
        p, s = sgd_step(p, g, s, lr=0.0137, fmt="bfloat16", update="kahan")
        u = tt(g, "bfloat16").mul(alpha)
        y = u - tc
        snew = tp + y
        tc = (snew - tp) - y
        tp = snew
        assert_bits_equal(p, npv(tp), "bfloat16")
        assert_bits_equal(s.compensation, npv(tc), "bfloat16")


def test_kahan_keeps_tiny_updates():
    """Updates far below half an ulp vanish with nearest rounding but not with Kahan."""
    n, steps = 64, 150
    p_near = p_kahan = np.full(n, 1.0)
    s_near, s_kahan = sgd_init(p_near), sgd_init(p_near)
    g = np.full(n, 1.0)
    alpha = Fraction(tt(-1e-4, "float32").to(torch.bfloat16).item())
    for _ in range(steps):
        p_near, s_near = sgd_step(p_near, g, s_near, lr=1e-4, fmt="bfloat16")
        p_kahan, s_kahan = sgd_step(p_kahan, g, s_kahan, lr=1e-4, fmt="bfloat16",
                                    update="kahan")
    exact = 1 + steps * alpha
    assert np.all(p_near == 1.0)
    assert np.all(abs(Fraction(p_kahan[0]) - exact) <= Fraction(1, 2 ** 8))


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kw,match", [
    (dict(lr=-0.1), "learning rate"), (dict(lr=0.1, momentum=-1.0), "momentum"),
    (dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
    (dict(lr=0.1, nesterov=True), "Nesterov"),
    (dict(lr=0.1, update="round"), "update"), (dict(lr=float("nan")), "learning rate"),
    (dict(lr=0.1, fmt="bfloat17"), "bfloat17")])
def test_sgd_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        sgd_step(np.ones(3), np.ones(3), sgd_init(np.ones(3)), **kw)


@pytest.mark.parametrize("kw,match", [
    (dict(betas=(1.0, 0.9)), "beta parameter at index 0"),
    (dict(betas=(0.9, -0.1)), "beta parameter at index 1"),
    (dict(betas=(0.9,)), "betas"), (dict(eps=-1e-8), "epsilon"), (dict(lr=-1.0), "learning")])
def test_adam_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        adam_step(np.ones(3), np.ones(3), adam_init(np.ones(3)), **kw)


def test_input_errors():
    with pytest.raises(ValueError, match=r"grad shape \(2,\) != param shape \(3,\)"):
        sgd_step(np.ones(3), np.ones(2), sgd_init(np.ones(3)), lr=0.1)
    with pytest.raises(ValueError, match=r"param\[\(1,\)\] = 0.1 is not a bfloat16 value"):
        sgd_step([1.0, 0.1], [1.0, 1.0], sgd_init([1, 1]), lr=0.1, fmt="bfloat16")
    with pytest.raises(ValueError, match="state shape"):
        adam_step(np.ones(3), np.ones(3), adam_init(np.ones(2)))
    with pytest.raises(TypeError, match="cpu"):
        sgd_step(np.ones(3), np.ones(3), sgd_init(np.ones(3)), lr=0.1, cpu="avx2")
    with pytest.raises(TypeError, match="Generator"):
        sgd_step(np.ones(3), np.ones(3), sgd_init(np.ones(3)), lr=0.1, rng=1)
    with pytest.raises(ValueError, match="block=0"):
        TorchCPU(block=0)
    with pytest.raises(ValueError, match="NEON"):
        TorchCPU.for_capability("NEON")
    with pytest.raises(ValueError, match="learning rate"):
        SGD(lr=-1.0)


# ------------------------------------------------------------------------- wrappers
def _named_torch(cls, names, arrays, **kw):
    ps = [torch.nn.Parameter(tt(a, "float32")) for a in arrays]
    return ps, cls(list(zip(names, ps)), foreach=False, **kw)


@pytest.mark.parametrize("ours_cls,torch_cls,kw", [
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    (AdamW, torch.optim.AdamW, dict(lr=0.01))])
def test_wrappers_and_state_dict(ours_cls, torch_cls, kw):
    rng = np.random.default_rng(5)
    names = ["w", "b", "frozen"]
    arrays = [values(rng, (4, 3), "float32"), values(rng, 3, "float32"),
              values(rng, 2, "float32")]
    ps, topt = _named_torch(torch_cls, names, arrays, **kw)
    opt = ours_cls(**kw)
    params = dict(zip(names, arrays))
    for i in range(5):
        lr = kw["lr"] * (1 - 0.1 * i)
        opt.lr = topt.param_groups[0]["lr"] = lr
        grads = {"w": values(rng, (4, 3), "float32"), "b": values(rng, 3, "float32"),
                 "frozen": None}
        for p, n in zip(ps, names):
            p.grad = None if grads[n] is None else tt(grads[n], "float32")
        topt.step()
        params = opt.step(params, grads)
        if i == 2:                                   # checkpoint round trip mid-run
            saved = opt.state_dict()
            opt = ours_cls(**kw)
            opt.load_state_dict(saved)
        for p, n in zip(ps, names):
            assert_bits_equal(params[n], npv(p), "float32")
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert ours["state"].keys() == theirs["state"].keys()
    for i, entry in theirs["state"].items():
        assert ours["state"][i].keys() == entry.keys()
        for key, t in entry.items():
            assert_bits_equal(np.asarray(ours["state"][i][key]), npv(t), "float32")
    og, tg = ours["param_groups"][0], theirs["param_groups"][0]
    assert og.keys() <= tg.keys()
    for key in og:
        assert og[key] == tg[key] or (key == "betas" and tuple(og[key]) == tuple(tg[key])), key


def test_state_types():
    s = adam_init(np.zeros((2, 2)))
    assert isinstance(s, AdamState) and s.step == 0.0 and s.max_exp_avg_sq is None
    assert isinstance(sgd_init([1.0]), SGDState)
