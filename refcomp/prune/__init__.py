"""Pruning on the refcomp engine: torch.nn.utils.prune's methods and reparametrization
(torch 2.13), N:M semi-structured sparsity, and sparse export with exact sizes.

* :mod:`refcomp.prune.methods` -- the masks (amount rounding, tie rule, norms, random
  ranking from a caller's generator, mask composition of repeated pruning);
* :mod:`refcomp.prune.reparam` -- pruning a module in place with ``<name>_orig`` /
  ``<name>_mask``, training through it, ``remove``, ``is_pruned``, global pruning;
* :mod:`refcomp.prune.nm` -- N:M masks, pruning, compressed form and its size;
* :mod:`refcomp.prune.sparse` -- CSR export and the byte-size convention.

>>> import numpy as np
>>> from refcomp import nn, prune
>>> lin = nn.Linear(4, 2, rng=np.random.default_rng(0))
>>> lin = prune.l1_unstructured(lin, "weight", amount=0.5)
>>> sorted(lin.state_dict()), int(lin.buffers["weight_mask"].sum())
(['bias', 'weight_mask', 'weight_orig'], 4)
"""

from .methods import (BasePruningMethod, CustomFromMask, Identity, L1Unstructured,
                      LnStructured, RandomStructured, RandomUnstructured, channel_norm,
                      combine_mask, compute_nparams_toprune)
from .nm import (NMSparse, is_nm_sparse, nm_compress, nm_decompress, nm_mask, nm_nbytes,
                 nm_prune)
from .reparam import (PrunedCache, apply, custom_from_mask, global_unstructured, identity,
                      is_pruned, l1_unstructured, ln_structured, pruned_tensor,
                      random_structured, random_unstructured, remove)
from .sparse import (CSR, StorageSize, csr_nbytes, dense_nbytes, from_csr, matrix_view,
                     to_csr, uint_bits, uint_dtype, value_bits)
from . import methods, nm, reparam, sparse
from .structured import (keep_from_masks, model_nbytes, parameter_count, select_channels,
                         shrink, shrink_pruned)
from .iterative import (PruneHistory, Rewind, Round, Scope, iterative_prune,
                        prunable_weights, rewind_weights, sparsity_schedule)
from . import iterative, structured

__all__ = ["BasePruningMethod", "Identity", "L1Unstructured", "RandomUnstructured",
           "RandomStructured", "LnStructured", "CustomFromMask", "combine_mask",
           "compute_nparams_toprune", "channel_norm", "PrunedCache", "apply", "identity",
           "random_unstructured", "l1_unstructured", "random_structured", "ln_structured",
           "global_unstructured", "custom_from_mask", "remove", "is_pruned",
           "pruned_tensor", "nm_mask", "nm_prune", "is_nm_sparse", "NMSparse",
           "nm_compress", "nm_decompress", "nm_nbytes", "CSR", "StorageSize", "uint_bits",
           "uint_dtype", "value_bits", "matrix_view", "to_csr", "from_csr", "csr_nbytes",
           "dense_nbytes", "methods", "nm", "reparam", "sparse",
           "shrink", "shrink_pruned", "keep_from_masks", "select_channels",
           "parameter_count", "model_nbytes", "Rewind", "Scope", "Round", "PruneHistory",
           "sparsity_schedule", "iterative_prune", "prunable_weights", "rewind_weights",
           "structured", "iterative"]
