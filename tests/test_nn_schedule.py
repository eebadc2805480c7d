"""refcomp.nn.schedule against torch 2.13's lr_scheduler: identical Python floats, bit for bit
(compared by ``float.hex``), on a dummy torch optimizer stepped before each scheduler step."""

import itertools

import pytest

torch = pytest.importorskip("torch")

from refcomp.nn import optim, schedule  # noqa: E402
from refcomp.nn.schedule import (LR, CosineAnnealingLR, LinearLR, MultiStepLR,  # noqa: E402
                                 OneCycleLR, SequentialLR, StepLR, lr_sequence, warmup_cosine)

TS = torch.optim.lr_scheduler


def torch_opt(lr, kind="sgd"):
    p = torch.nn.Parameter(torch.zeros(1))
    if kind == "adam":
        return torch.optim.Adam([p], lr=lr)
    return torch.optim.SGD([p], lr=lr, momentum=0.9 if kind == "sgd_momentum" else 0.0)


def torch_sequence(opt, sched, steps, key="lr", hook=None):
    out = [opt.param_groups[0][key]]
    for i in range(steps):
        opt.step()
        sched.step()
        if hook is not None:
            hook(i, opt)
        out.append(opt.param_groups[0][key])
    assert sched.get_last_lr()[0] == opt.param_groups[0]["lr"]
    return out


def hexes(xs):
    return [float(x).hex() for x in xs]


def same(ours, theirs):
    assert hexes(ours) == hexes(theirs)


LRS = [0.1, 0.0123, 1.0, 3e-4]


@pytest.mark.parametrize("lr,step_size,gamma", list(itertools.product(
    LRS, (1, 2, 3, 7), (0.1, 0.5, 0.9, 1 / 3))))
def test_steplr(lr, step_size, gamma):
    t = torch_opt(lr)
    theirs = torch_sequence(t, TS.StepLR(t, step_size, gamma), 40)
    same(lr_sequence(StepLR(LR(lr), step_size, gamma), 40), theirs)


@pytest.mark.parametrize("lr,milestones,gamma", list(itertools.product(
    LRS, ([5], [2, 5, 5, 9], [0, 3], [10, 20, 30], [1, 1, 1]), (0.1, 0.5, 1 / 3))))
def test_multisteplr(lr, milestones, gamma):
    t = torch_opt(lr)
    theirs = torch_sequence(t, TS.MultiStepLR(t, milestones, gamma), 35)
    same(lr_sequence(MultiStepLR(LR(lr), milestones, gamma), 35), theirs)


@pytest.mark.parametrize("lr,T_max,eta_min", list(itertools.product(
    (0.1, 0.0123, 1.0), (1, 2, 5, 10, 37), (0.0, 1e-5, 0.01))))
def test_cosine(lr, T_max, eta_min):
    """Three periods and more: the recursive form's drift and its periodic branch."""
    steps = 3 * T_max + 5
    t = torch_opt(lr)
    theirs = torch_sequence(t, TS.CosineAnnealingLR(t, T_max, eta_min), steps)
    same(lr_sequence(CosineAnnealingLR(LR(lr), T_max, eta_min), steps), theirs)


@pytest.mark.parametrize("start,end,total", list(itertools.product(
    (0.001, 0.1, 1 / 3, 1.0), (1.0, 0.5, 0.0), (0, 1, 5, 13))))
def test_linear(start, end, total):
    t = torch_opt(0.0123)
    theirs = torch_sequence(t, TS.LinearLR(t, start, end, total), 20)
    same(lr_sequence(LinearLR(LR(0.0123), start, end, total), 20), theirs)


@pytest.mark.parametrize("max_lr,total,pct,anneal,three", list(itertools.product(
    (0.1, 1.0, 0.0123), (1, 10, 37, 100), (0.0, 0.25, 0.3, 0.5), ("cos", "linear"),
    (False, True))))
def test_onecycle(max_lr, total, pct, anneal, three):
    t = torch_opt(0.5)
    kw = dict(max_lr=max_lr, total_steps=total, pct_start=pct, anneal_strategy=anneal,
              three_phase=three, cycle_momentum=False)
    theirs = torch_sequence(t, TS.OneCycleLR(t, **kw), total)
    ours = OneCycleLR(LR(0.5), **kw)
    same(lr_sequence(ours, total), theirs)
    with pytest.raises(ValueError, match="Tried to step"):
        ours.step()


@pytest.mark.parametrize("kind", ["sgd_momentum", "adam"])
@pytest.mark.parametrize("three", [False, True])
def test_onecycle_cycles_momentum(kind, three):
    """Momentum (SGD) or beta1 (Adam) of our optimizer wrappers, against torch's."""
    kw = dict(max_lr=0.05, total_steps=23, pct_start=0.3, three_phase=three,
              div_factor=10.0, final_div_factor=100.0, base_momentum=0.8, max_momentum=0.97)
    t = torch_opt(0.5, kind)
    key = "betas" if kind == "adam" else "momentum"
    tsched = TS.OneCycleLR(t, **kw)
    moms = [t.param_groups[0][key]]
    lrs = torch_sequence(t, tsched, 23, hook=lambda i, o: moms.append(o.param_groups[0][key]))
    ours = optim.Adam(lr=0.5) if kind == "adam" else optim.SGD(lr=0.5, momentum=0.9)
    sched = OneCycleLR(ours, **kw)
    got_lrs, got_moms = [ours.lr], [ours.betas if kind == "adam" else ours.momentum]
    for _ in range(23):
        sched.step()
        got_lrs.append(ours.lr)
        got_moms.append(ours.betas if kind == "adam" else ours.momentum)
    same(got_lrs, lrs)
    if kind == "adam":
        assert [b[1] for b in got_moms] == [b[1] for b in moms] == [0.999] * 24
        got_moms, moms = [b[0] for b in got_moms], [b[0] for b in moms]
    same(got_moms, moms)


@pytest.mark.parametrize("warm,total,start,eta", list(itertools.product(
    (1, 3, 10), (11, 20, 50), (1e-3, 0.1, 0.5), (0.0, 1e-4))))
def test_warmup_cosine(warm, total, start, eta):
    """LinearLR warm-up then CosineAnnealingLR, as SequentialLR in torch."""
    t = torch_opt(0.0123)
    warm_t = TS.LinearLR(t, start, 1.0, warm)
    cos_t = TS.CosineAnnealingLR(t, total - warm, eta)
    theirs = torch_sequence(t, TS.SequentialLR(t, [warm_t, cos_t], [warm]), total + 10)
    same(lr_sequence(warmup_cosine(LR(0.0123), warm, total, start, eta), total + 10), theirs)


def test_sequential_three_schedulers_and_user_lr_changes():
    """Three phases; the user rescales lr mid-run (the chainable forms read the current
    lr, so the change propagates exactly as in torch)."""
    def build(mod, opt):
        a = mod.LinearLR(opt, 0.2, 1.0, 3)
        b = mod.StepLR(opt, 2, 0.7)
        c = mod.CosineAnnealingLR(opt, 9, 1e-4)
        return mod.SequentialLR(opt, [a, b, c], [3, 8])

    def poke(i, opt):                                # halve the lr after step 5
        if i == 5:
            if hasattr(opt, "param_groups"):
                opt.param_groups[0]["lr"] *= 0.5
            else:
                opt.lr *= 0.5
    t = torch_opt(0.1)
    theirs = torch_sequence(t, build(TS, t), 25, hook=poke)
    holder = LR(0.1)
    sched = build(schedule, holder)
    ours = [holder.lr]
    for i in range(25):
        sched.step()
        poke(i, holder)
        ours.append(holder.lr)
    same(ours, theirs)
    assert sched.get_last_lr() == [sched.lr]


def test_drives_optimizer_wrapper():
    opt = optim.SGD(lr=0.1)
    s = CosineAnnealingLR(opt, T_max=4)
    s.step()
    assert opt.lr == s.lr and opt.initial_lr == 0.1
    assert opt.state_dict()["param_groups"][0]["initial_lr"] == 0.1


@pytest.mark.parametrize("build", [
    lambda m, o: m.LinearLR(o, start_factor=0.0),
    lambda m, o: m.LinearLR(o, start_factor=1.5),
    lambda m, o: m.LinearLR(o, end_factor=2.0),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=0),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=10, pct_start=1.5),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=10, pct_start=1),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=10, anneal_strategy="exp"),
    lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2)], milestones=[3]),
    lambda m, o: m.SequentialLR(o, [], milestones=[]),
])
def test_errors_match_torch(build):
    """Where torch raises ValueError, so do we."""
    with pytest.raises(ValueError):
        build(TS, torch_opt(0.1))
    with pytest.raises(ValueError):
        build(schedule, LR(0.1))


def test_our_extra_checks():
    with pytest.raises(ValueError, match="step_size"):
        StepLR(LR(0.1), step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(LR(0.1), T_max=0)
    with pytest.raises(ValueError, match="momentum or beta1"):
        OneCycleLR(LR(0.1), max_lr=1.0, total_steps=5)       # a bare LR has no momentum
    with pytest.raises(ValueError, match="same optimizer"):
        SequentialLR(LR(0.1), [StepLR(LR(0.1), 2), StepLR(LR(0.1), 2)], [1])
    with pytest.raises(TypeError, match="no 'lr'"):
        StepLR(object(), 2)
    with pytest.raises(ValueError, match="steps"):
        lr_sequence(StepLR(LR(0.1), 2), -1)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(LR(0.1), 5, 5)
    with pytest.raises(ValueError, match="lr"):
        LR(float("nan"))
