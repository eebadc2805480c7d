"""Knowledge distillation on the NN engine (issue 8, section 2).

* response-based: :func:`kd_loss_forward` / :func:`kd_loss_backward` (Hinton et al. 2015);
* feature-based: :func:`hint_loss_forward` / :func:`hint_loss_backward` with a learned
  :func:`hint_regressor` (FitNets, Romero et al. 2015);
* relation-based: :func:`rkd_distance_forward` / :func:`rkd_distance_backward` (RKD
  distance loss, Park et al. 2019);
* training loops: :func:`fit_offline_kd` (a fixed teacher in eval mode) and
  :func:`fit_mutual` (deep mutual learning, Zhang et al. 2018).

Every loss is evaluated in float64 and rounded once into the policy's activation format;
every gradient is rounded once into its gradient format, as :mod:`refcomp.nn.loss`.

>>> import numpy as np
>>> from refcomp import distill
>>> s, t = np.zeros((2, 3)), np.zeros((2, 3))
>>> loss, cache = distill.kd_loss_forward(s, t, np.array([0, 1]), "fp32", alpha=1.0)
>>> loss
0.0
"""

from .hint import HintCache, hint_loss_backward, hint_loss_forward, hint_regressor
from .kd import KD_REDUCTIONS, KDCache, kd_loss_backward, kd_loss_forward
from .loops import MutualHistory, fit_mutual, fit_offline_kd
from .rkd import RKDCache, pairwise_distances, rkd_distance_backward, rkd_distance_forward

__all__ = ["KDCache", "KD_REDUCTIONS", "kd_loss_forward", "kd_loss_backward", "HintCache",
           "hint_regressor", "hint_loss_forward", "hint_loss_backward", "RKDCache",
           "pairwise_distances", "rkd_distance_forward", "rkd_distance_backward",
           "MutualHistory", "fit_offline_kd", "fit_mutual"]
