"""Golden suite ``prune``: torch.nn.utils.prune's masks as :mod:`refcomp.prune` computes
them (issue 8), cross-checked on torch 2.13 CPU by ``--backend torch-cpu``.

prune   l1_unstructured (counts and fractions, importance scores) and ln_structured
        (norm orders 1, 2, 3, 0.5, -1, -2.5, inf, -inf, 'fro', 'nuc', 0; every dim) on
        float32 weights of 1 to 4 dims; repeated pruning of one tensor (l1 / ln steps
        composed as torch's PruningContainer); global_unstructured over tensors of
        different shapes (one already pruned); N:M masks (2:4, 1:4, 4:8, 1:2, 3:4, 2:8,
        4:4) of Linear and Conv2d weights; CSR export; the tie rule

Every input except the ``ties`` cases is tie-free, checked when the suite is built: the
magnitudes are distinct, and at every ranking boundary of a structured pruning the two
channel norms either side differ by more than 2**-10 relative -- far above torch's float32
norm rounding -- or are exact (``inf``, ``-inf``, count norms).  Cases with ``ties: true``
record refcomp's tie rule (lower index pruned first, NaN last), which torch's ``topk`` /
``kthvalue`` leave open.

>>> from refcomp.golden import build
>>> cases = build("prune")
>>> len(cases) > 150, len({c.op for c in cases})
(True, 6)
"""

from __future__ import annotations

import math

import numpy as np

from .. import prune
from ..prune import methods as M
from .compute_prune import _module, norm_order
from .schema import GoldenError, Operand
from .suites import _seed, make, suite

__all__ = ["prune_suite", "tie_free", "MARGIN"]

F32 = np.float32
#: relative gap between channel norms either side of a ranking boundary (rounded norms)
MARGIN = 2.0 ** -10
_EXACT_NORMS = (math.inf, -math.inf, 0)


def f32(x) -> Operand:
    x = np.ascontiguousarray(np.asarray(x, F32))
    return Operand("float32", x.view(np.uint32).copy())


def weights(shape, seed, tag="w"):
    """Tie-free float32 weights: distinct magnitudes (a permutation of k / size + 0.01)
    with random signs and a smooth per-row scale."""
    r = np.random.default_rng(_seed("prune", tag, shape, seed))
    size = math.prod(shape)
    mags = (r.permutation(size) + 1).astype(np.float64) / size + 0.01
    w = mags * r.choice([-1.0, 1.0], size)
    return w.astype(F32).reshape(shape)


def _gap_ok(scores, k, exact):
    if not 0 < k < scores.size:
        return True
    s = np.sort(scores)
    lo, hi = s[k - 1], s[k]
    if exact:
        return bool(hi > lo)
    return bool(hi - lo > MARGIN * max(abs(hi), abs(lo)))


def tie_free(w, steps, scores=None) -> bool:
    """Whether every ranking boundary of `steps` (as :func:`refcomp.golden.compute_prune`
    takes them) on `w` is decided with margin (module notes)."""
    m = _module(w)
    for i, st in enumerate(steps):
        cur = np.asarray(prune.pruned_tensor(m, "weight"), np.float64)
        t = cur if scores is None or i else np.asarray(scores, np.float64)
        mask = m.buffers.get("weight_mask", np.ones(cur.shape))
        if st["method"] == "l1":
            live = np.abs(t[mask == 1])
            k = M.compute_nparams_toprune(st["amount"], live.size)
            if not _gap_ok(live, k, True):
                return False
            prune.l1_unstructured(m, "weight", st["amount"], importance_scores=scores
                                  if i == 0 else None)
        else:
            n, d = norm_order(st["n"]), st["dim"] % cur.ndim
            other = tuple(a for a in range(cur.ndim) if a != d)
            alive = np.flatnonzero(mask.sum(axis=other) != 0)
            norms = M.channel_norm(np.take(t, alive, axis=d), n, d)
            k = M.compute_nparams_toprune(st["amount"], alive.size)
            if not _gap_ok(norms, k, n in _EXACT_NORMS):
                return False
            prune.ln_structured(m, "weight", st["amount"], n=n, dim=st["dim"],
                                importance_scores=scores if i == 0 else None)
    return True


def _tie_free_weights(shape, steps, tag, scored=False):
    """Weights (and importance scores) of `shape` that are tie-free for `steps`."""
    for attempt in range(50):
        w = weights(shape, attempt, tag)
        s = weights(shape, attempt, tag + "/scores") if scored else None
        if tie_free(w, steps, s):
            return w, s
    raise GoldenError(f"no tie-free weights of shape {shape} for {steps} ({tag})")


def _name(x):
    return repr(x) if isinstance(x, float) else str(x)


SHAPES = [(7,), (5, 6), (4, 3, 5), (6, 3, 2, 2), (16, 32)]
L1_AMOUNTS = [0, 5, 0.0, 0.3, 0.5, 0.77, 1.0]
NORMS = [1, 2, 3, 0.5, -1, -2.5, "inf", "-inf", "fro"]


def _l1_cases():
    cases = []
    for shape in SHAPES:
        for a in L1_AMOUNTS:
            w, _ = _tie_free_weights(shape, [{"method": "l1", "amount": a}], "l1")
            cases.append(make(f"prune/l1_unstructured/{'x'.join(map(str, shape))}/"
                              f"amount={_name(a)}", "prune.l1_unstructured", {"amount": a},
                              {"w": f32(w)}))
    st = [{"method": "l1", "amount": 0.4}]
    w, s = _tie_free_weights((5, 6), st, "l1-scores", scored=True)
    cases.append(make("prune/l1_unstructured/5x6/amount=0.4/importance_scores",
                      "prune.l1_unstructured", {"amount": 0.4}, {"w": f32(w), "scores": f32(s)}))
    return cases


def _ln_cases():
    cases = []
    amounts = [1, 0.5, 0.34, 2]
    for shape in SHAPES[1:4]:
        for j, n in enumerate(NORMS + (["nuc"] if len(shape) == 3 else [])):
            if n == "fro" and len(shape) > 3:
                continue                      # torch's error: 'fro' over 3 reduced dims
            for d in range(-len(shape), len(shape)) if j % 3 == 0 else range(len(shape)):
                a = amounts[(j + d) % len(amounts)]
                if isinstance(a, int) and a > shape[d]:
                    a = 1
                st = [{"method": "ln", "amount": a, "n": n, "dim": d}]
                w, _ = _tie_free_weights(shape, st, f"ln/{n}/{d}")
                cases.append(make(f"prune/ln_structured/{'x'.join(map(str, shape))}/n={n}/"
                                  f"dim={d}/amount={_name(a)}", "prune.ln_structured",
                                  {"amount": a, "n": n, "dim": d}, {"w": f32(w)}))
    # n = 0 counts nonzeros: row i has i zeros (distinct counts)
    w = weights((6, 7), 0, "ln0")
    for i in range(6):
        w[i, :i] = 0
    for a in (3, 0.5):
        cases.append(make(f"prune/ln_structured/6x7/n=0/dim=0/amount={_name(a)}",
                          "prune.ln_structured", {"amount": a, "n": 0, "dim": 0},
                          {"w": f32(w)}))
    st = [{"method": "ln", "amount": 1, "n": 1, "dim": 1}]
    w, s = _tie_free_weights((5, 6), st, "ln-scores", scored=True)
    cases.append(make("prune/ln_structured/5x6/n=1/dim=1/amount=1/importance_scores",
                      "prune.ln_structured", {"amount": 1, "n": 1, "dim": 1},
                      {"w": f32(w), "scores": f32(s)}))
    return cases


def _l1(a):
    return {"method": "l1", "amount": a}


def _lns(a, n, d):
    return {"method": "ln", "amount": a, "n": n, "dim": d}


SEQUENCES = [
    [_l1(0.3), _l1(0.5), _l1(2)],
    [_lns(1, 2, 0), _l1(0.4), _lns(0.5, 1, 1)],
    [_l1(0.6), _lns(0.5, 2, 0), _lns(1, "inf", -1), _l1(3)],
    [_lns(0.25, "-inf", 1), _lns(0.5, "fro", 1), _l1(0.5), _lns(1, 1, 0)],
    [_lns(2, 2, 0), _lns(1, 2, 0), _lns(0.5, 2, 0)],
]


def _repeated_cases():
    cases = []
    for shape in [(6, 8), (5, 4, 3), (6, 4, 3, 3)]:
        for i, seq in enumerate(SEQUENCES):
            steps = [s for s in seq if not (s["method"] == "ln" and s["n"] == "fro"
                                            and len(shape) > 3)]
            w, _ = _tie_free_weights(shape, steps, f"repeated/{i}")
            cases.append(make(f"prune/repeated/{'x'.join(map(str, shape))}/sequence{i}",
                              "prune.repeated", {"steps": steps}, {"w": f32(w)},
                              notes=" then ".join(
                                  f"l1({s['amount']})" if s["method"] == "l1" else
                                  f"ln({s['amount']}, n={s['n']}, dim={s['dim']})"
                                  for s in steps)))
    return cases


def _global_cases():
    cases = []
    shapes = [(4, 6), (3, 2, 3, 3), (5,)]
    ws = [weights(s, 0, f"global{i}") * F32(1 + i / 3) for i, s in enumerate(shapes)]
    mags = np.concatenate([np.abs(w).ravel() for w in ws])
    if np.unique(mags).size != mags.size:
        raise GoldenError("global pruning inputs must have distinct magnitudes")
    for a in (0, 7, 30, 0.2, 0.5, 0.9):
        cases.append(make(f"prune/global_unstructured/3_tensors/pre=0.25/amount={_name(a)}",
                          "prune.global_unstructured", {"amount": a, "pre_amount": 0.25},
                          {f"w{i}": f32(w) for i, w in enumerate(ws)}))
    w4 = [weights(s, 1, f"global4/{i}") * F32(2.0 ** -i)
          for i, s in enumerate([(8, 4), (2, 3, 2, 2), (6,), (3, 5)])]
    cases.append(make("prune/global_unstructured/4_tensors/amount=0.6",
                      "prune.global_unstructured", {"amount": 0.6},
                      {f"w{i}": f32(w) for i, w in enumerate(w4)}))
    return cases


NM = [(2, 4), (1, 4), (4, 8), (1, 2), (3, 4), (2, 8), (4, 4)]


def _nm_cases():
    cases = []
    for shape in [(8, 16), (6, 4, 2, 2), (4, 24)]:
        for n, m in NM:
            w = weights(shape, 0, f"nm/{n}:{m}")
            cases.append(make(f"prune/nm/{'x'.join(map(str, shape))}/{n}of{m}", "prune.nm",
                              {"n": n, "m": m}, {"w": f32(w)}))
    return cases


def _csr_cases():
    cases = []
    for shape, a in [((6, 10), 0.6), ((4, 3, 2, 2), 0.5), ((9,), 0.3), ((5, 8), 1.0)]:
        m = _module(weights(shape, 0, "csr"))
        prune.l1_unstructured(m, "weight", a)
        w = np.asarray(prune.pruned_tensor(m, "weight"), F32)   # -0.0 where pruned
        cases.append(make(f"prune/to_csr/{'x'.join(map(str, shape))}/pruned={_name(a)}",
                          "prune.to_csr", {}, {"w": f32(w)},
                          notes="-0.0 entries (pruned negatives) are not stored"))
    w = np.array([[0.0, np.nan, -0.0, 1.5], [np.inf, 0.0, 0.0, -2.0]], F32)
    cases.append(make("prune/to_csr/2x4/specials", "prune.to_csr", {}, {"w": f32(w)}))
    return cases


def _tie_cases():
    """refcomp's tie rule (lower index first, NaN last): not comparable with torch."""
    cases = []
    note = "equal scores at the boundary: refcomp's tie rule, not torch's topk choice"
    w = np.array([[2.0, -1.0, 1.0], [-0.0, 0.0, np.nan]], F32)
    cases.append(make("prune/ties/l1_unstructured/equal_magnitudes_zeros_nan",
                      "prune.l1_unstructured", {"amount": 3, "ties": True}, {"w": f32(w)},
                      nan_bits=False, notes=note))
    cases.append(make("prune/ties/repeated/l1_then_l1", "prune.repeated",
                      {"steps": [_l1(3), _l1(2)], "ties": True}, {"w": f32(w)},
                      nan_bits=False, notes=note))
    w = np.array([[1.0, 2.0], [2.0, 1.0], [-2.0, 1.0], [5.0, 5.0]], F32)
    cases.append(make("prune/ties/ln_structured/equal_l1_norms", "prune.ln_structured",
                      {"amount": 2, "n": 1, "dim": 0, "ties": True}, {"w": f32(w)},
                      notes=note))
    w = np.array([[1.0, -1.0, 1.0, 1.0, 0.5, 0.5, -0.5, 2.0]], F32)
    cases.append(make("prune/ties/nm/2of4/equal_magnitudes", "prune.nm",
                      {"n": 2, "m": 4, "ties": True}, {"w": f32(w)}, notes=note))
    ws = [np.array([[1.0, -2.0], [3.0, 0.5]], F32), np.array([0.5, -1.0, 2.0], F32)]
    cases.append(make("prune/ties/global_unstructured/equal_across_tensors",
                      "prune.global_unstructured", {"amount": 3, "ties": True},
                      {f"w{i}": f32(w) for i, w in enumerate(ws)}, notes=note))
    return cases


@suite("prune")
def prune_suite():
    """torch.nn.utils.prune references and N:M masks (issue 8): see the module docstring."""
    return (_l1_cases() + _ln_cases() + _repeated_cases() + _global_cases() + _nm_cases()
            + _csr_cases() + _tie_cases())
