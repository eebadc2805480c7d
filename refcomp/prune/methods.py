"""Pruning masks: torch.nn.utils.prune's methods as pure functions of NumPy arrays.

Mirrors torch 2.13 ``torch/nn/utils/prune.py`` (``L1Unstructured``, ``RandomUnstructured``,
``RandomStructured``, ``LnStructured``, ``CustomFromMask``, ``Identity`` and the mask
combination of ``PruningContainer``).  A method object holds its arguments;
:func:`combine_mask` computes the new mask from the importance scores ``t`` and the mask
already in place, as torch's ``PruningContainer.compute_mask`` does:

* unstructured methods rank only the entries whose mask is exactly 1 (``t[mask == 1]``,
  flattened in C order); a float `amount` is a fraction of those entries;
* structured methods rank only the channels along `dim` whose mask is not all zero
  (``mask.sum(other dims) != 0``); a float `amount` is a fraction of those channels; the
  new channel mask is multiplied by the old mask;
* ``CustomFromMask`` (type "global") multiplies the old mask by its own.

A first pruning (old mask all ones) goes through the same rule, which then reduces to
torch's plain ``compute_mask``.

Amounts (torch's ``_validate_pruning_amount_init`` / ``_compute_nparams_toprune``): an
``int`` (any ``numbers.Integral``, bool included) is a count, a non-negative one; any other
real number is a fraction in [0, 1] (NaN rejected) and prunes ``round(amount * size)``
units -- Python's ``round``, ties to even, of the product evaluated with `amount`'s own
type.  A count larger than the units available raises ValueError with torch's wording.

Tie rule.  torch ranks with ``torch.topk`` / ``kthvalue`` whose choice among equal scores
is implementation-defined.  refcomp ranks with a stable ascending sort: among units of
equal importance the one with the lower flat index (lower channel index) counts as less
important and is pruned first.  NaN scores rank above every number (torch's topk order),
so they are pruned last.

Random methods draw from a caller's ``numpy.random.Generator`` (torch's masks cannot be
reproduced: they come from torch's own generator).  ``RandomUnstructured``: when ``k > 0``
units are to be pruned, ``u = rng.random(n)`` (float64) is drawn once for the ``n``
still-unpruned entries in flat C order and the ``k`` entries with the largest ``u`` are
pruned (as torch prunes the top-k of ``rand_like``); nothing is drawn when ``k == 0``.
``RandomStructured``: ``u = rng.random(c)`` for the ``c`` live channels and the ``k``
channels with the smallest ``u`` are pruned (torch keeps ``prob > kthvalue(prob, k)``).

Norms (``LnStructured``) follow ``torch.norm(t, p=n, dim=<all but dim>)`` on CPU:
a real ``n`` is the vector norm (``inf``: max ``|x|``, ``-inf``: min ``|x|``, 0: count of
nonzeros, else ``(sum |x|**n)**(1/n)``, negative ``n`` included; ``None`` means 2);
``'fro'`` is the vector 2-norm when at most two dims are reduced (tensors of up to 3 dims)
and an error otherwise; ``'nuc'`` is the nuclear norm and needs exactly two reduced dims
(a 3-D tensor).  refcomp evaluates the norms in float64 (torch in the tensor's dtype), so
the masks agree with torch's whenever no two channel norms are closer than torch's
rounding error.  ``n = nan`` (accepted by torch, giving all-NaN norms) is rejected.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["BasePruningMethod", "Identity", "L1Unstructured", "RandomUnstructured",
           "RandomStructured", "LnStructured", "CustomFromMask", "combine_mask",
           "compute_nparams_toprune", "channel_norm"]


# ----------------------------------------------------------------------------- amounts
def _validate_amount(amount):
    """torch's ``_validate_pruning_amount_init`` (NaN also rejected)."""
    if not isinstance(amount, numbers.Real):
        raise TypeError(f"Invalid type for amount: {amount!r}. Must be int or float.")
    bad = amount < 0 if isinstance(amount, numbers.Integral) else \
        not (0.0 <= float(amount) <= 1.0)
    if bad:
        raise ValueError(f"amount={amount} should either be a float in the range [0, 1] or "
                         "a non-negative integer")
    return amount


def compute_nparams_toprune(amount, size: int) -> int:
    """Number of units to prune out of `size` (torch's ``_compute_nparams_toprune`` and
    ``_validate_pruning_amount``).

    Parameters
    ----------
    amount : int or float
        A count (``numbers.Integral``) or a fraction in [0, 1].
    size : int
        Units available (entries, or channels for structured pruning).

    Returns
    -------
    int
        `amount` itself for a count; ``round(amount * size)`` (ties to even) for a fraction.

    Raises
    ------
    ValueError
        A count above `size`, a negative count, a fraction outside [0, 1] or NaN.
    TypeError
        `amount` is not a real number.

    Examples
    --------
    >>> compute_nparams_toprune(0.25, 10), compute_nparams_toprune(0.35, 10)
    (2, 4)
    >>> compute_nparams_toprune(3, 10)
    3
    """
    _validate_amount(amount)
    if isinstance(amount, numbers.Integral):
        k = int(amount)
        if k > size:
            raise ValueError(f"amount={amount} should be smaller than the number of "
                             f"parameters to prune={size}")
        return k
    return int(round(amount * size))


# ----------------------------------------------------------------------------- ranking
def _lowest(score, k):
    """Flat indices of the `k` lowest scores (stable: lower index first among equals;
    NaN ranks highest)."""
    return np.argsort(score, kind="stable")[:k]


def _check_rng(rng, what):
    if rng is None:
        raise ValueError(f"{what}: needs rng (a numpy Generator); no unseeded randomness")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{what}: rng must be a numpy.random.Generator, got {rng!r}")
    return rng


def _norm_order(n):
    """Validate torch.norm's `p` at construction; returns the order (None -> 2.0)."""
    if n is None:
        return 2.0
    if isinstance(n, str):
        if n not in ("fro", "nuc"):
            raise ValueError(f"n={n!r} is not a norm order (linalg.matrix_norm: Order {n} "
                             "not supported); use a real number, inf, -inf, 'fro' or 'nuc'")
        return n
    if not isinstance(n, numbers.Real):
        raise TypeError(f"n={n!r} must be a real number, inf, -inf, 'fro' or 'nuc'")
    if math.isnan(float(n)):
        raise ValueError(f"n={n!r} is not a norm order (NaN)")
    return n


def channel_norm(t, n, dim: int) -> np.ndarray:
    """``torch.norm(t, p=n, dim=<every dim but dim>)`` evaluated in float64.

    Parameters
    ----------
    t : array_like, at least 2-D
    n : int, float, inf, -inf, 'fro', 'nuc' or None
        Norm order as torch.norm accepts it (module notes).
    dim : int
        The channel dimension (negative counts from the end).

    Returns
    -------
    numpy.ndarray, shape (t.shape[dim],), float64

    Examples
    --------
    >>> channel_norm([[3.0, -4.0], [0.0, 1.0]], 2, 0).tolist()
    [5.0, 1.0]
    >>> channel_norm([[3.0, -4.0], [0.0, 1.0]], float("-inf"), 1).tolist()
    [0.0, 1.0]
    """
    p = _norm_order(n)
    a = np.moveaxis(np.asarray(t, np.float64), dim, 0)
    c = a.shape[0]
    if isinstance(p, str):
        red = a.ndim - 1
        if p == "fro" and red > 2:
            raise ValueError(f"n='fro' reduces {red} dims of a tensor of shape "
                             f"{np.shape(t)}; torch allows at most 2 (linalg.matrix_norm: "
                             "dim must be a 2-tuple)")
        if p == "nuc":
            if red != 2:
                raise ValueError(f"n='nuc' reduces {red} dims of a tensor of shape "
                                 f"{np.shape(t)}; torch needs exactly 2 "
                                 "(linalg.matrix_norm: dim must be a 2-tuple)")
            return np.linalg.svd(a, compute_uv=False).sum(axis=-1)
        p = 2.0
    x = np.abs(a.reshape(c, -1))                 # (C, K)
    p = float(p)
    if p == math.inf:
        return x.max(axis=1)
    if p == -math.inf:
        return x.min(axis=1)
    if p == 0:
        return np.count_nonzero(x, axis=1).astype(np.float64)
    if p == 1:
        return x.sum(axis=1)
    if p == 2:
        return np.sqrt((x * x).sum(axis=1))
    with np.errstate(divide="ignore", over="ignore"):
        return (x ** p).sum(axis=1) ** (1.0 / p)


# ----------------------------------------------------------------------------- methods
class BasePruningMethod:
    """A pruning method: its arguments and ``compute_mask(t, default_mask)`` (torch's,
    on the already restricted tensor; use :func:`combine_mask` for the full rule)."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t, default_mask):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "rng")
        return f"{type(self).__name__}({args})"


class Identity(BasePruningMethod):
    """Prunes nothing: the mask stays as it is (torch's ``Identity``)."""

    def compute_mask(self, t, default_mask):
        return np.array(default_mask, np.float64)


class L1Unstructured(BasePruningMethod):
    """Prune the `amount` entries of smallest ``|t|`` (tie rule: module notes)."""

    def __init__(self, amount):
        self.amount = _validate_amount(amount)

    def compute_mask(self, t, default_mask):
        t = np.asarray(t)
        k = compute_nparams_toprune(self.amount, t.size)
        mask = np.array(default_mask, np.float64)
        if k:
            mask.reshape(-1)[_lowest(np.abs(t.reshape(-1)), k)] = 0.0
        return mask


class RandomUnstructured(BasePruningMethod):
    """Prune `amount` entries at random (``rng.random`` ranking: module notes)."""

    def __init__(self, amount, rng=None):
        self.amount = _validate_amount(amount)
        self.rng = _check_rng(rng, "RandomUnstructured")

    def compute_mask(self, t, default_mask):
        t = np.asarray(t)
        k = compute_nparams_toprune(self.amount, t.size)
        mask = np.array(default_mask, np.float64)
        if k:
            u = self.rng.random(t.size)
            mask.reshape(-1)[_lowest(-u, k)] = 0.0
        return mask


def _check_structured(t, dim):
    """torch's ``_validate_structured_pruning`` and the dim check; returns dim >= 0."""
    shape = np.shape(t)
    if len(shape) <= 1:
        raise ValueError("Structured pruning can only be applied to multidimensional "
                         f"tensors. Found tensor of shape {shape} with {len(shape)} dims")
    d = dim + len(shape) if dim < 0 else dim
    if not 0 <= d < len(shape):
        raise IndexError(f"Invalid index {dim} for tensor of size {shape} (dim must be in "
                         f"[{-len(shape)}, {len(shape) - 1}])")
    return d


def _check_dim(dim):
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim={dim!r} must be an int")
    return int(dim)


class _Structured(BasePruningMethod):
    PRUNING_TYPE = "structured"

    def _scores(self, t, d):
        raise NotImplementedError

    def compute_mask(self, t, default_mask):
        t = np.asarray(t)
        d = _check_structured(t, self.dim)
        c = t.shape[d]
        k = compute_nparams_toprune(self.amount, c)
        if k == 0:
            return np.array(default_mask, np.float64)
        keep = np.ones(c, bool)
        keep[_lowest(self._scores(t, d), k)] = False
        shape = [1] * t.ndim
        shape[d] = c
        return np.broadcast_to(keep.reshape(shape), t.shape) * \
            np.asarray(default_mask, np.float64)


class LnStructured(_Structured):
    """Prune the `amount` channels along `dim` of smallest L\\ `n` norm
    (:func:`channel_norm`; tie rule: module notes)."""

    def __init__(self, amount, n, dim=-1):
        self.amount = _validate_amount(amount)
        _norm_order(n)
        self.n = n
        self.dim = _check_dim(dim)

    def _scores(self, t, d):
        return channel_norm(t, self.n, d)


class RandomStructured(_Structured):
    """Prune `amount` channels along `dim` at random (``rng.random`` ranking: module
    notes)."""

    def __init__(self, amount, dim=-1, rng=None):
        self.amount = _validate_amount(amount)
        self.dim = _check_dim(dim)
        self.rng = _check_rng(rng, "RandomStructured")

    def _scores(self, t, d):
        return self.rng.random(t.shape[d])


class CustomFromMask(BasePruningMethod):
    """Multiply the mask in place by a given mask (torch's ``CustomFromMask``)."""

    PRUNING_TYPE = "global"

    def __init__(self, mask):
        self.mask = np.asarray(mask)
        if self.mask.dtype.kind not in "biuf":
            raise TypeError(f"CustomFromMask: mask has dtype {self.mask.dtype}, expected "
                            "numbers or booleans")

    def compute_mask(self, t, default_mask):
        dm = np.asarray(default_mask, np.float64)
        if dm.shape != self.mask.shape:
            raise ValueError(f"CustomFromMask: mask shape {self.mask.shape} does not match "
                             f"the tensor's shape {dm.shape}")
        return dm * self.mask.astype(np.float64)


def combine_mask(method: BasePruningMethod, t, mask) -> np.ndarray:
    """The new mask of `t` after `method`, given the mask already in place (torch's
    ``PruningContainer.compute_mask``; a first pruning passes a mask of ones).

    Parameters
    ----------
    method : BasePruningMethod
    t : array_like
        Importance scores (torch: the current ``module.<name>``, i.e. the masked tensor).
    mask : array_like, same shape as `t`
        The mask in place.

    Returns
    -------
    numpy.ndarray, float64, same shape

    Examples
    --------
    >>> t = np.array([[1.0, -5.0, 3.0], [4.0, -2.0, 6.0]])
    >>> m1 = combine_mask(L1Unstructured(2), t, np.ones((2, 3)))
    >>> m1.tolist()
    [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    >>> combine_mask(L1Unstructured(0.5), t * m1, m1).tolist()  # 2 of the 4 left
    [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    t = np.asarray(t)
    mask = np.asarray(mask, np.float64)
    if t.shape != mask.shape:
        raise ValueError(f"importance scores of shape {t.shape} do not match the mask's "
                         f"shape {mask.shape}")
    kind = method.PRUNING_TYPE
    new = mask.copy()
    if kind == "unstructured":
        live = mask == 1
        new[live] = method.compute_mask(t[live], mask[live])
    elif kind == "structured":
        d = _check_structured(t, method.dim)
        other = tuple(i for i in range(t.ndim) if i != d)
        alive = np.flatnonzero(mask.sum(axis=other) != 0)
        idx = [slice(None)] * t.ndim
        idx[d] = alive
        idx = tuple(idx)
        new[idx] = method.compute_mask(t[idx], mask[idx])
    elif kind == "global":
        new = method.compute_mask(t, mask)
    else:
        raise ValueError(f"unknown PRUNING_TYPE {kind!r} of {method!r}")
    return new
