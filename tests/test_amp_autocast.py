"""refcomp.amp.autocast against torch 2.13's autocast.

1. The shipped lists are exactly the autocast kernels the installed torch registers
   (``torch._C._dispatch_get_registrations_for_dispatch_key``), for CPU and CUDA.
2. Every CPU op of the lists with a public entry point (and the ops the engine's layers
   call, which are on no CPU list) is run through the dispatcher
   (``torch.ops.aten.<op>.<overload>``, so the overload is the listed one) under
   ``torch.autocast("cpu", dtype=torch.bfloat16)``; its observed class must be
   :func:`op_class`'s: float32 inputs give bfloat16 (``lower``), bfloat16 inputs give
   float32 (``fp32``), mixed bfloat16 / float32 inputs give float32 where the op alone
   rejects mixed dtypes (``promote``), and each dtype gives itself (``none``).
3. One mixed-precision training step of Linear-ReLU-Linear + cross-entropy,
   ``nn.train_step(Autocast(model, "cpu", "bfloat16"), ...)``, against torch's CPU autocast
   step on dyadic data chosen so that every float32 sum of the step is exact in any order
   (asserted on the data, :func:`_sums_exact`).  Every rounding that remains happens once,
   to an exactly known value, at the same place in both, so the logits and all parameter
   gradients must agree bit for bit -- except the loss, whose float32 log-softmax differs
   from refcomp's float64 one: there the loss and the float32 loss gradient are compared
   within rigorous bounds (:mod:`refcomp.crosscheck.nn_err`, float32 exp / log within
   2 ulps), and the bounds are shown to leave no bfloat16 rounding boundary in reach, so
   the bfloat16 gradients of the logits must be equal.
"""

import numpy as np
import pytest

from refcomp import nn
from refcomp.amp import autocast as AC
from refcomp.crosscheck import nn_err as E

torch = pytest.importorskip("torch")
F = torch.nn.functional
aten = torch.ops.aten

BF, F32 = torch.bfloat16, torch.float32


# ------------------------------------------------------------------ lists vs dispatcher
@pytest.mark.parametrize("device,key", [("cpu", "AutocastCPU"), ("cuda", "AutocastCUDA")])
def test_lists_are_torch_registrations(device, key):
    lists = AC.op_lists(device)
    ops = [o for v in lists.values() for o in v]
    assert len(ops) == len(set(ops)), "an op in two classes"
    reg = {n.split("::", 1)[1]
           for n in torch._C._dispatch_get_registrations_for_dispatch_key(key)}
    assert set(ops) == reg
    assert all(v for v in lists.values())                 # no empty class


def test_cuda_lists_sane():
    assert AC._data()["torch_version"] == torch.__version__.split("+")[0] == "2.13.0"
    cuda = AC.op_lists("cuda")
    assert set(cuda) == {"lower_precision_fp", "fp32", "fp32_set_opt_dtype",
                         "fp32_append_dtype", "promote", "banned"}
    assert {AC.op_class(o, "cuda") for o in ("linear", "conv2d", "bmm", "addmm")} == {"lower"}
    assert {AC.op_class(o, "cuda") for o in ("softmax", "log_softmax", "layer_norm", "exp",
                                              "nll_loss", "sum", "norm.Scalar")} == {"fp32"}
    assert AC.op_class("binary_cross_entropy", "cuda") == "banned"
    assert AC.op_class("batch_norm", "cuda") == AC.op_class("relu", "cuda") == "none"


def test_lookup_errors_and_names():
    with pytest.raises(ValueError, match="'tpu'"):
        AC.op_class("linear", "tpu")
    with pytest.raises(TypeError, match="42"):
        AC.op_class(42)
    with pytest.raises(ValueError, match="float8"):
        AC.autocast_policies(nn.Sequential(nn.ReLU()), "cpu", "float8_e4m3fn")
    assert AC.op_class("aten::conv2d.padding") == AC.op_class("conv2d") == "lower"
    assert AC.op_class("prod.dim_int") == "fp32"
    assert AC.op_class("prod.dim_Dimname") == "none"       # gone from torch 2.13
    assert AC.op_class("CONV2D") == "none"
    assert AC.op_class("linear", "CPU") == "lower"


# ---------------------------------------------------------------- CPU classes vs torch
def _t(*shape, dt=F32, seed=0, pos=False):
    g = torch.Generator().manual_seed(seed + len(shape) + sum(shape))
    x = torch.rand(shape, generator=g) + 0.5 if pos else torch.randn(shape, generator=g)
    return x.to(dt)


def _spd(n, dt):
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(1))
    return (a @ a.T + n * torch.eye(n)).to(dt)


def _ctc(dt, lengths_as_tensor):
    lp = F.log_softmax(_t(6, 2, 4), -1).to(dt)
    tg = torch.tensor([[1, 2], [1, 3]])
    il, tl = [6, 6], [2, 2]
    if lengths_as_tensor:
        return aten.ctc_loss.Tensor(lp, tg, torch.tensor(il), torch.tensor(tl))
    return aten.ctc_loss.IntList(lp, tg, il, tl)


#: op -> f(dt): calls exactly that aten overload with floating inputs of dtype dt
CASES = {
    # lower_precision_fp
    "linear": lambda d: aten.linear(_t(4, 8, dt=d), _t(3, 8, dt=d), _t(3, dt=d)),
    "conv1d": lambda d: aten.conv1d(_t(1, 2, 8, dt=d), _t(3, 2, 3, dt=d)),
    "conv1d.padding": lambda d: aten.conv1d.padding(_t(1, 2, 8, dt=d), _t(3, 2, 3, dt=d),
                                                    None, [1], "same"),
    "conv2d": lambda d: aten.conv2d(_t(1, 2, 5, 5, dt=d), _t(3, 2, 3, 3, dt=d)),
    "conv2d.padding": lambda d: aten.conv2d.padding(_t(1, 2, 5, 5, dt=d),
                                                    _t(3, 2, 3, 3, dt=d), None, [1, 1],
                                                    "same"),
    "conv3d": lambda d: aten.conv3d(_t(1, 2, 4, 4, 4, dt=d), _t(3, 2, 2, 2, 2, dt=d)),
    "conv3d.padding": lambda d: aten.conv3d.padding(_t(1, 2, 4, 4, 4, dt=d),
                                                    _t(3, 2, 2, 2, 2, dt=d), None,
                                                    [1, 1, 1], "valid"),
    "conv_transpose1d": lambda d: aten.conv_transpose1d(_t(1, 2, 5, dt=d), _t(2, 3, 3, dt=d)),
    "conv_transpose2d.input": lambda d: aten.conv_transpose2d.input(_t(1, 2, 4, 4, dt=d),
                                                                    _t(2, 3, 3, 3, dt=d)),
    "conv_transpose3d.input": lambda d: aten.conv_transpose3d.input(
        _t(1, 2, 3, 3, 3, dt=d), _t(2, 3, 2, 2, 2, dt=d)),
    "conv_tbc": lambda d: aten.conv_tbc(_t(5, 2, 3, dt=d), _t(2, 3, 4, dt=d), _t(4, dt=d)),
    "_convolution.deprecated": lambda d: aten._convolution.deprecated(
        _t(1, 2, 5, 5, dt=d), _t(3, 2, 3, 3, dt=d), None, [1, 1], [0, 0], [1, 1], False,
        [0, 0], 1, False, False, False),
    "bmm": lambda d: aten.bmm(_t(2, 3, 4, dt=d), _t(2, 4, 5, dt=d)),
    "mm": lambda d: aten.mm(_t(3, 4, dt=d), _t(4, 5, dt=d)),
    "matmul": lambda d: aten.matmul(_t(3, 4, dt=d), _t(4, 5, dt=d)),
    "linalg_vecdot": lambda d: aten.linalg_vecdot(_t(3, 4, dt=d), _t(3, 4, dt=d)),
    "baddbmm": lambda d: aten.baddbmm(_t(2, 3, 5, dt=d), _t(2, 3, 4, dt=d),
                                      _t(2, 4, 5, dt=d)),
    "addmm": lambda d: aten.addmm(_t(3, 5, dt=d), _t(3, 4, dt=d), _t(4, 5, dt=d)),
    "_addmm_activation": lambda d: aten._addmm_activation(_t(3, 5, dt=d), _t(3, 4, dt=d),
                                                          _t(4, 5, dt=d)),
    "addbmm": lambda d: aten.addbmm(_t(3, 5, dt=d), _t(2, 3, 4, dt=d), _t(2, 4, 5, dt=d)),
    "prelu": lambda d: aten.prelu(_t(2, 3, dt=d), _t(1, dt=d)),
    "scaled_dot_product_attention": lambda d: aten.scaled_dot_product_attention(
        _t(1, 2, 4, 8, dt=d), _t(1, 2, 4, 8, dt=d), _t(1, 2, 4, 8, dt=d)),
    # fp32
    "avg_pool3d": lambda d: aten.avg_pool3d(_t(1, 1, 4, 4, 4, dt=d), [2, 2, 2]),
    "max_pool3d": lambda d: aten.max_pool3d(_t(1, 1, 4, 4, 4, dt=d), [2, 2, 2]),
    "adaptive_avg_pool3d": lambda d: aten.adaptive_avg_pool3d(_t(1, 1, 4, 4, 4, dt=d),
                                                              [2, 2, 2]),
    "adaptive_max_pool3d": lambda d: aten.adaptive_max_pool3d(_t(1, 1, 4, 4, 4, dt=d),
                                                              [2, 2, 2])[0],
    "fractional_max_pool2d": lambda d: aten.fractional_max_pool2d(
        _t(1, 1, 6, 6, dt=d), [2, 2], [3, 3], _t(1, 1, 2, pos=True, dt=d) / 2)[0],
    "fractional_max_pool3d": lambda d: aten.fractional_max_pool3d(
        _t(1, 1, 6, 6, 6, dt=d), [2, 2, 2], [3, 3, 3], _t(1, 1, 3, pos=True, dt=d) / 2)[0],
    "max_unpool2d": lambda d: aten.max_unpool2d(_t(1, 1, 2, 2, dt=d),
                                                torch.tensor([[[[0, 3], [8, 15]]]]), [4, 4]),
    "max_unpool3d": lambda d: aten.max_unpool3d(_t(1, 1, 1, 1, 2, dt=d),
                                                torch.tensor([[[[[0, 5]]]]]), [2, 2, 2],
                                                [1, 1, 1], [0, 0, 0]),
    "reflection_pad1d": lambda d: aten.reflection_pad1d(_t(1, 2, 5, dt=d), [1, 1]),
    "reflection_pad2d": lambda d: aten.reflection_pad2d(_t(1, 2, 5, 5, dt=d), [1, 1, 1, 1]),
    "replication_pad1d": lambda d: aten.replication_pad1d(_t(1, 2, 5, dt=d), [1, 1]),
    "replication_pad2d": lambda d: aten.replication_pad2d(_t(1, 2, 5, 5, dt=d),
                                                          [1, 1, 1, 1]),
    "replication_pad3d": lambda d: aten.replication_pad3d(_t(1, 1, 3, 3, 3, dt=d),
                                                          [1, 1, 1, 1, 1, 1]),
    "grid_sampler": lambda d: aten.grid_sampler(_t(1, 1, 4, 4, dt=d),
                                                _t(1, 3, 3, 2, dt=d) / 4, 0, 0, False),
    "grid_sampler_2d": lambda d: aten.grid_sampler_2d(_t(1, 1, 4, 4, dt=d),
                                                      _t(1, 3, 3, 2, dt=d) / 4, 0, 0, False),
    "_grid_sampler_2d_cpu_fallback": lambda d: aten._grid_sampler_2d_cpu_fallback(
        _t(1, 1, 4, 4, dt=d), _t(1, 3, 3, 2, dt=d) / 4, 0, 0, False),
    "grid_sampler_3d": lambda d: aten.grid_sampler_3d(_t(1, 1, 3, 3, 3, dt=d),
                                                      _t(1, 2, 2, 2, 3, dt=d) / 4, 0, 0,
                                                      False),
    "polar": lambda d: aten.polar(_t(3, pos=True, dt=d), _t(3, dt=d)),
    "prod": lambda d: aten.prod(_t(3, 4, dt=d)),
    "prod.dim_int": lambda d: aten.prod.dim_int(_t(3, 4, dt=d), 1),
    "quantile": lambda d: aten.quantile(_t(8, dt=d), _t(2, pos=True, dt=d) / 2),
    "quantile.scalar": lambda d: aten.quantile.scalar(_t(8, dt=d), 0.3),
    "nanquantile": lambda d: aten.nanquantile(_t(8, dt=d), _t(2, pos=True, dt=d) / 2),
    "nanquantile.scalar": lambda d: aten.nanquantile.scalar(_t(8, dt=d), 0.3),
    "stft": lambda d: aten.stft(_t(32, dt=d), 8, 4, 8, _t(8, pos=True, dt=d), False, True,
                                True),
    "stft.center": lambda d: aten.stft.center(_t(32, dt=d), 8, 4, 8, _t(8, pos=True, dt=d),
                                              True, "reflect", False, True, True),
    "cdist": lambda d: aten.cdist(_t(3, 4, dt=d), _t(5, 4, dt=d), 2.0),
    "trace": lambda d: aten.trace(_t(4, 4, dt=d)),
    "view_as_complex": lambda d: aten.view_as_complex(_t(3, 2, dt=d)),
    "cholesky": lambda d: aten.cholesky(_spd(3, d)),
    "cholesky_inverse": lambda d: aten.cholesky_inverse(torch.eye(3, dtype=d) * 2),
    "cholesky_solve": lambda d: aten.cholesky_solve(_t(3, 2, dt=d), torch.eye(3, dtype=d) * 2),
    "inverse": lambda d: aten.inverse(_spd(3, d)),
    "lu_solve": lambda d: aten.lu_solve(_t(3, 2, dt=d), _spd(3, d),
                                        torch.tensor([1, 2, 3], dtype=torch.int32)),
    "orgqr": lambda d: aten.orgqr(_t(4, 3, dt=d), _t(3, dt=d) / 4),
    "ormqr": lambda d: aten.ormqr(_t(4, 3, dt=d), _t(3, dt=d) / 4, _t(4, 2, dt=d)),
    "pinverse": lambda d: aten.pinverse(_t(4, 3, dt=d)),
    "geqrf": lambda d: aten.geqrf(_t(4, 3, dt=d))[0],
    "_lu_with_info": lambda d: aten._lu_with_info(_spd(3, d))[0],
    "qr": lambda d: aten.qr(_t(4, 3, dt=d))[0],
    "svd": lambda d: aten.svd(_t(4, 3, dt=d))[1],
    "triangular_solve": lambda d: aten.triangular_solve(_t(3, 2, dt=d), _spd(3, d))[0],
    "linalg_cond": lambda d: aten.linalg_cond(_spd(3, d)),
    "linalg_cond.p_str": lambda d: aten.linalg_cond.p_str(_spd(3, d), "fro"),
    "linalg_matrix_rank": lambda d: aten.linalg_matrix_rank(_spd(3, d), 1e-3),
    "linalg_matrix_rank.tol_tensor": lambda d: aten.linalg_matrix_rank.tol_tensor(
        _spd(3, d), _t(1, pos=True, dt=d)),
    "linalg_matrix_rank.atol_rtol_tensor": lambda d: aten.linalg_matrix_rank.atol_rtol_tensor(
        _spd(3, d), atol=_t(1, pos=True, dt=d)),
    "linalg_matrix_rank.atol_rtol_float": lambda d: aten.linalg_matrix_rank.atol_rtol_float(
        _spd(3, d), atol=1e-3),
    "linalg_solve": lambda d: aten.linalg_solve(_spd(3, d), _t(3, dt=d)),
    "linalg_cholesky": lambda d: aten.linalg_cholesky(_spd(3, d)),
    "linalg_cholesky_ex": lambda d: aten.linalg_cholesky_ex(_spd(3, d))[0],
    "linalg_svdvals": lambda d: aten.linalg_svdvals(_t(4, 3, dt=d)),
    "linalg_svd": lambda d: aten.linalg_svd(_t(4, 3, dt=d))[1],
    "linalg_eigvals": lambda d: aten.linalg_eigvals(_spd(3, d)),
    "linalg_eig": lambda d: aten.linalg_eig(_spd(3, d))[0],
    "linalg_eigvalsh": lambda d: aten.linalg_eigvalsh(_spd(3, d)),
    "linalg_eigh": lambda d: aten.linalg_eigh(_spd(3, d))[0],
    "linalg_inv": lambda d: aten.linalg_inv(_spd(3, d)),
    "linalg_inv_ex": lambda d: aten.linalg_inv_ex(_spd(3, d))[0],
    "linalg_householder_product": lambda d: aten.linalg_householder_product(
        _t(4, 3, dt=d), _t(3, dt=d) / 4),
    "linalg_tensorinv": lambda d: aten.linalg_tensorinv(_spd(4, d).reshape(4, 2, 2), 1),
    "linalg_tensorsolve": lambda d: aten.linalg_tensorsolve(_spd(4, d).reshape(2, 2, 4),
                                                            _t(2, 2, dt=d)),
    "linalg_qr": lambda d: aten.linalg_qr(_t(4, 3, dt=d))[0],
    "linalg_lstsq": lambda d: aten.linalg_lstsq(_t(4, 3, dt=d), _t(4, 2, dt=d))[0],
    "fake_quantize_per_tensor_affine": lambda d: aten.fake_quantize_per_tensor_affine(
        _t(5, dt=d), 0.1, 0, -128, 127),
    "mse_loss": lambda d: aten.mse_loss(_t(4, 3, dt=d), _t(4, 3, seed=1, dt=d)),
    "l1_loss": lambda d: aten.l1_loss(_t(4, 3, dt=d), _t(4, 3, seed=1, dt=d)),
    "smooth_l1_loss": lambda d: aten.smooth_l1_loss(_t(4, 3, dt=d), _t(4, 3, seed=1, dt=d)),
    "huber_loss": lambda d: aten.huber_loss(_t(4, 3, dt=d), _t(4, 3, seed=1, dt=d)),
    "kl_div": lambda d: aten.kl_div(_t(4, 3, dt=d), _t(4, 3, seed=1, dt=d)),
    "binary_cross_entropy": lambda d: aten.binary_cross_entropy(
        torch.sigmoid(_t(4, 3, dt=d)), torch.sigmoid(_t(4, 3, seed=1, dt=d))),
    "binary_cross_entropy_with_logits": lambda d: aten.binary_cross_entropy_with_logits(
        _t(4, 3, dt=d), torch.sigmoid(_t(4, 3, seed=1, dt=d))),
    "soft_margin_loss": lambda d: aten.soft_margin_loss(_t(4, 3, dt=d), _t(4, 3, dt=d).sign()),
    "hinge_embedding_loss": lambda d: aten.hinge_embedding_loss(_t(4, 3, dt=d),
                                                                _t(4, 3, dt=d).sign()),
    "margin_ranking_loss": lambda d: aten.margin_ranking_loss(_t(4, dt=d), _t(4, seed=1, dt=d),
                                                              _t(4, dt=d).sign()),
    "cosine_embedding_loss": lambda d: aten.cosine_embedding_loss(
        _t(4, 3, dt=d), _t(4, 3, seed=1, dt=d), _t(4, dt=d).sign()),
    "poisson_nll_loss": lambda d: aten.poisson_nll_loss(_t(4, 3, dt=d), _t(4, 3, pos=True,
                                                                            dt=d),
                                                        True, False, 1e-8, 1),
    "multi_margin_loss": lambda d: aten.multi_margin_loss(_t(4, 3, dt=d),
                                                          torch.tensor([0, 1, 2, 0])),
    "multilabel_margin_loss": lambda d: aten.multilabel_margin_loss(
        _t(2, 3, dt=d), torch.tensor([[0, -1, 0], [2, 1, -1]])),
    "multilabel_margin_loss_forward": lambda d: aten.multilabel_margin_loss_forward(
        _t(2, 3, dt=d), torch.tensor([[0, -1, 0], [2, 1, -1]]), 1)[0],
    "triplet_margin_loss": lambda d: aten.triplet_margin_loss(
        _t(4, 3, dt=d), _t(4, 3, seed=1, dt=d), _t(4, 3, seed=2, dt=d)),
    "nll_loss": lambda d: aten.nll_loss(_t(4, 3, dt=d), torch.tensor([0, 1, 2, 0])),
    "nll_loss2d": lambda d: aten.nll_loss2d(_t(2, 3, 2, 2, dt=d),
                                            torch.zeros(2, 2, 2, dtype=torch.long)),
    "cross_entropy_loss": lambda d: aten.cross_entropy_loss(_t(4, 3, dt=d),
                                                            torch.tensor([0, 1, 2, 0])),
    "ctc_loss.IntList": lambda d: _ctc(d, False),
    "ctc_loss.Tensor": lambda d: _ctc(d, True),
    # not on the CPU lists: what the engine's layers call, and some CUDA fp32 ops
    "relu": lambda d: aten.relu(_t(4, 3, dt=d)),
    "leaky_relu": lambda d: aten.leaky_relu(_t(4, 3, dt=d)),
    "gelu": lambda d: aten.gelu(_t(4, 3, dt=d)),
    "sigmoid": lambda d: aten.sigmoid(_t(4, 3, dt=d)),
    "tanh": lambda d: aten.tanh(_t(4, 3, dt=d)),
    "softmax.int": lambda d: aten.softmax.int(_t(4, 3, dt=d), 1),
    "log_softmax.int": lambda d: aten.log_softmax.int(_t(4, 3, dt=d), 1),
    "layer_norm": lambda d: aten.layer_norm(_t(4, 3, dt=d), [3]),
    "batch_norm": lambda d: aten.batch_norm(_t(4, 3, dt=d), None, None, None, None, True,
                                            0.1, 1e-5, False),
    "group_norm": lambda d: aten.group_norm(_t(2, 4, 3, dt=d), 2),
    "max_pool2d": lambda d: aten.max_pool2d(_t(1, 1, 4, 4, dt=d), [2, 2]),
    "avg_pool2d": lambda d: aten.avg_pool2d(_t(1, 1, 4, 4, dt=d), [2, 2]),
    "adaptive_avg_pool2d": lambda d: aten.adaptive_avg_pool2d(_t(1, 1, 4, 4, dt=d), [1, 1]),
    "dropout": lambda d: aten.dropout(_t(4, 3, dt=d), 0.5, False),
    "flatten.using_ints": lambda d: aten.flatten.using_ints(_t(2, 3, 4, dt=d), 1),
    "exp": lambda d: aten.exp(_t(4, dt=d)),
    "sum": lambda d: aten.sum(_t(4, dt=d)),
    "add.Tensor": lambda d: aten.add.Tensor(_t(4, dt=d), _t(4, dt=d)),
}

#: promote ops: f() calls them with one bfloat16 and one float32 tensor
PROMOTE = {
    "cat": lambda: aten.cat([_t(2, dt=BF), _t(3)]),
    "stack": lambda: aten.stack([_t(2, dt=BF), _t(2)]),
    "index_copy": lambda: aten.index_copy(_t(3, 2, dt=BF), 0, torch.tensor([0, 2]),
                                          _t(2, 2)),
}

#: listed CPU ops not run here, and why
SKIPPED = {
    "mkldnn_rnn_layer": "internal oneDNN RNN kernel (16 arguments, packed weights)",
    "_native_multi_head_attention": "internal fast path of nn.MultiheadAttention",
    **{f"fft_{n}": "complex output" for n in ("fft", "ifft", "fft2", "ifft2", "fftn",
                                             "ifftn", "rfft", "irfft", "rfft2", "irfft2",
                                             "rfftn", "irfftn", "hfft", "ihfft")},
}


def _real(dtype):
    """A complex result's real type (float32 for complex64)."""
    return {torch.complex64: F32, torch.complex32: torch.float16}.get(dtype, dtype)


def _observed(f):
    with torch.autocast("cpu", dtype=BF):
        lo = _real(f(F32).dtype)
        hi = _real(f(BF).dtype)
    if not lo.is_floating_point:            # integer results (matrix rank): float32 when
        try:                                # bfloat16 input, which the op alone rejects,
            f(BF)                           # runs under autocast
        except RuntimeError:
            return "fp32"
        return "none"
    if lo == BF:
        return "lower"
    if hi == F32:
        return "fp32"
    assert (lo, hi) == (F32, BF), (lo, hi)
    return "none"


@pytest.mark.parametrize("op", sorted(CASES))
def test_cpu_op_class_matches_torch(op):
    assert AC.op_class(op, "cpu") == _observed(CASES[op])


@pytest.mark.parametrize("op", ["fft_fft", "fft_rfft", "fft_ihfft", "fft_fft2"])
def test_cpu_fft_is_float32(op):
    """fft ops run in float32 (complex64 results) from bfloat16 input, which torch alone
    rejects (no bfloat16 FFT on CPU)."""
    x = _t(4, 8, dt=BF)
    fn = getattr(aten, op)
    with torch.autocast("cpu", dtype=BF):
        assert fn(x).dtype in (torch.complex64, F32)
    assert AC.op_class(op, "cpu") == "fp32"


@pytest.mark.parametrize("op", sorted(PROMOTE))
def test_cpu_promote_matches_torch(op):
    assert AC.op_class(op, "cpu") == "promote"
    with torch.autocast("cpu", dtype=BF):
        assert PROMOTE[op]().dtype == F32


def test_index_copy_promotes_only_under_autocast():
    """index_copy rejects mixed dtypes by itself: autocast's promote policy made them
    agree."""
    with pytest.raises(RuntimeError):
        PROMOTE["index_copy"]()


def test_every_listed_cpu_op_is_checked():
    listed = {o for v in AC.op_lists("cpu").values() for o in v}
    unchecked = listed - set(CASES) - set(PROMOTE) - set(SKIPPED)
    assert unchecked == set()
    assert set(SKIPPED) <= listed


def test_cpu_float16_autocast():
    with torch.autocast("cpu", dtype=torch.float16):
        assert aten.linear(_t(2, 3), _t(4, 3), None).dtype == torch.float16
    pols = AC.autocast_policies(nn.Sequential(nn.Linear(3, 4, rng=np.random.default_rng(0))),
                                "cpu", "float16")
    assert pols[0].forward.name == "fp16-fp32acc-blas"
    assert pols[0].activations.format.name == "float16"


# ----------------------------------------------------------------------- engine policies
def test_policies_follow_the_lists():
    r = np.random.default_rng(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, rng=r), nn.BatchNorm2d(2), nn.ReLU(),
                        nn.MaxPool2d(), nn.Flatten(), nn.Linear(2, 3, rng=r), nn.LayerNorm(3),
                        nn.Softmax())
    fmts = {dev: [p.activations.format.name for p in AC.autocast_policies(net, dev, "bfloat16")]
            for dev in ("cpu", "cuda")}
    assert fmts["cpu"] == ["bfloat16"] * 8
    assert fmts["cuda"] == ["bfloat16"] * 6 + ["float32", "float32"]
    p = AC.autocast_policies(net, "cpu")[0]
    assert (p.weights.format.name, p.forward.name, p.master_spec.format.name) == \
        ("bfloat16", "bf16-fp32acc-blas", "float32")
    with pytest.raises(TypeError, match="Residual"):
        AC.Autocast(nn.Sequential(nn.Residual(nn.ReLU())))
    with pytest.raises(TypeError, match="Sequential"):
        AC.Autocast(nn.ReLU())


# ------------------------------------------------------------ a training step vs torch
N, D, H, C = 8, 8, 16, 4
LR = 2.0 ** -4


def _pow2_quantum(v):
    """Exponent q of the lowest set bit of each nonzero float64 value (v = k 2**q, k odd);
    a large number for zeros."""
    v = np.asarray(v, np.float64)
    m, e = np.frexp(np.abs(v))
    k = (m * 2.0 ** 53).astype(np.int64)
    tz = np.zeros(k.shape, np.int64)
    nz = k != 0
    low = k[nz] & -k[nz]
    tz[nz] = np.log2(low.astype(np.float64)).astype(np.int64)
    return np.where(nz, e - 53 + tz, 10 ** 6)


def _sums_exact(terms):
    """Whether every partial sum, in any order, of the last axis of `terms` (each an exact
    float64 product of two short values) is exact in float32: all terms are multiples of
    2**q (q the smallest lowest-set-bit exponent) and their absolute sum is at most
    2**(24 + q), so every partial sum is an integer multiple of 2**q below 2**24 of them
    (and far from the subnormal range)."""
    terms = np.asarray(terms, np.float64)
    q = _pow2_quantum(terms).min(axis=-1)
    s = np.abs(terms).sum(axis=-1)
    lim = np.ldexp(1.0, np.minimum(24 + q, 1000))
    return bool(np.all((s == 0) | ((s <= lim) & (q > -120))))


def _mm_terms(A, B, bias=None):
    """terms[i, j, k] = A[i, k] B[k, j] (and bias[j] as one more term)."""
    t = A[:, None, :] * B.T[None, :, :]
    if bias is not None:
        t = np.concatenate([t, np.broadcast_to(bias[None, :, None], t.shape[:2] + (1,))],
                           axis=-1)
    return t


def _data():
    """Dyadic data of few bits; the float32 weights and inputs carry a 2**-12 relative
    perturbation that torch's and refcomp's casts to bfloat16 must round away (to
    nearest)."""
    r = np.random.default_rng(7)

    def few(shape, num, den):
        v = r.integers(-num, num + 1, shape) / den
        wiggle = r.choice([-1.0, 1.0], shape) * 2.0 ** -12
        return (v * (1 + wiggle)).astype(np.float32)
    sd = {"0.weight": few((H, D), 4, 8), "0.bias": few((H,), 8, 32),
          "2.weight": few((C, H), 15, 64), "2.bias": few((C,), 8, 32)}
    x = few((N, D), 4, 4)
    y = r.integers(0, C, N)
    return sd, x, y


def _torch_step(sd, x, y, explicit_cast):
    tm = torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.ReLU(), torch.nn.Linear(H, C))
    tm.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    opt = torch.optim.SGD(tm.parameters(), lr=LR, foreach=False)
    with torch.autocast("cpu", dtype=BF):
        z = tm(torch.tensor(x))
        z.retain_grad()
        zc = z
        if explicit_cast:               # the cast autocast inserts for the float32 loss
            zc = z.float()
            zc.retain_grad()
        loss = F.cross_entropy(zc, torch.tensor(y))
    loss.backward()
    grads = {k: p.grad.numpy().astype(np.float64) for k, p in tm.named_parameters()}
    opt.step()
    new = {k: p.detach().numpy().astype(np.float64) for k, p in tm.named_parameters()}
    return dict(z=z.detach(), loss=loss.detach(), dz=z.grad, dz32=zc.grad, grads=grads, new=new)


def _ce_bounds(z, y):
    """(exact loss, exact dL/dz, bound on torch's float32 loss and gradient, bound on
    refcomp's) for mean cross-entropy of logits z (N, C).

    torch 2.13 CPU, float32 (log_softmax over the last dim, then nll_loss, mean):
    ``m = max z``, ``s = sum exp(z - m)``, ``out = z - m - log s`` (either association),
    ``L = -(sum_i out[i, t_i]) / N``; backward ``dz = dy - exp(out) * sum(dy)`` with
    ``dy = -1/N`` at the target.  refcomp: the same formulas in float64, then one rounding
    to float32.  Operations are bounded by :mod:`refcomp.crosscheck.nn_err` (any summation
    order; exp / log within ``fn_ulps`` of their result)."""
    def run(f):
        zb = E.exact(z)
        m = E.exact(z.max(axis=1, keepdims=True))
        zs = E.sub(f, zb, m)
        s = E.sum_(f, E.exp(f, zs), axis=1, keepdims=True)
        lse = E.log(f, s)
        out_a = E.sub(f, zs, lse)
        out_b = E.sub(f, zb, E.add(f, m, lse))
        out = E.Bnd(out_a.v, np.maximum(out_a.e, out_b.e))
        picked = E.Bnd(-out.v[np.arange(N), y], out.e[np.arange(N), y])
        loss = E.div(f, E.sum_(f, picked), E.exact(float(N)))
        onehot = np.zeros_like(z)
        onehot[np.arange(N), y] = 1.0
        dy = E.exact(-onehot / N)
        p = E.mul(f, E.exp(f, out), E.exact(np.full_like(z, -1.0 / N)))
        dz = E.sub(f, dy, p)
        return loss, dz
    lt, gt = run(E.F32)
    lr_, gr = run(E.F64)
    slack = 1 + 2.0 ** -20                       # the bounds' own float64 evaluation
    lr_e = E.cast(E.F32, lr_).e * slack
    gr_e = E.cast(E.F32, gr).e * slack
    return lt.v, gt.v, lt.e * slack, gt.e * slack, lr_e, gr_e


def _bf16_boundaries_clear(v, e):
    """Whether [v - e, v + e] contains no bfloat16 rounding boundary (midpoint of two
    neighbours), so every value in it rounds to the same bfloat16."""
    lo = nn.round_to(v - e, "bfloat16")
    hi = nn.round_to(v + e, "bfloat16")
    return bool(np.all(lo == hi))


def test_autocast_training_step_matches_torch_cpu_bf16():
    sd, x, y = _data()
    t = _torch_step(sd, x, y, explicit_cast=False)
    t2 = _torch_step(sd, x, y, explicit_cast=True)
    assert t["loss"].dtype == F32 and t["z"].dtype == BF and t["dz"].dtype == BF
    assert t["loss"].item() == t2["loss"].item()          # the explicit cast is autocast's
    assert torch.equal(t["dz"], t2["dz"]) and t2["dz32"].dtype == F32

    model = nn.Sequential(nn.Linear(D, H, rng=np.random.default_rng(0)), nn.ReLU(),
                          nn.Linear(H, C, rng=np.random.default_rng(1)))
    model.load_state_dict({k: v.astype(np.float64) for k, v in sd.items()})
    net = nn.prepare(AC.Autocast(model, "cpu", "bfloat16"), "fp32")

    # the exactness preconditions, on the bfloat16 operands both implementations use
    bf = {k: nn.round_to(v, "bfloat16") for k, v in sd.items()}
    xb = nn.round_to(x, "bfloat16")
    assert np.all((xb != x) == (x != 0))                  # every nonzero cast rounds
    h = np.maximum(xb @ bf["0.weight"].T + bf["0.bias"], 0.0)
    assert _sums_exact(_mm_terms(xb, bf["0.weight"].T, bf["0.bias"]))
    assert np.array_equal(nn.round_to(h, "bfloat16"), h)          # h exact in bfloat16
    assert _sums_exact(_mm_terms(h, bf["2.weight"].T, bf["2.bias"]))

    # forward: bit for bit (one rounding of an exact float32 sum to bfloat16)
    z, cache = net.forward(nn.round_to(x, "float32", dtype=np.float32), "fp32")
    zt = t["z"].float().numpy().astype(np.float64)
    assert np.array_equal(np.asarray(z, np.float64), zt)
    z_exact = h @ bf["2.weight"].T + bf["2.bias"]
    assert np.any(z_exact != zt)                # the bfloat16 output rounding is exercised
    assert np.array_equal(nn.round_to(zt, "bfloat16"), zt)

    # the loss and its float32 gradient: within rigorous bounds of the exact values
    L, G, eLt, eGt, eLr, eGr = _ce_bounds(zt, y)
    loss, lc = nn.cross_entropy_forward(z, y, "fp32")
    dz_r, _ = nn.cross_entropy_backward(1.0, lc)
    assert abs(loss - L) <= eLr and abs(t["loss"].item() - L) <= eLt
    g_t32 = t2["dz32"].numpy().astype(np.float64)
    assert np.all(np.abs(dz_r - G) <= eGr) and np.all(np.abs(g_t32 - G) <= eGt)
    # ... and no bfloat16 rounding boundary within reach: the bfloat16 gradients of the
    # logits (torch's ToCopyBackward, refcomp's Autocast.backward) must be equal
    assert _bf16_boundaries_clear(G, np.maximum(eGt, eGr))
    g = nn.round_to(dz_r, "bfloat16")
    assert np.array_equal(g, t["dz"].float().numpy().astype(np.float64))

    # backward sums exact too: dW2 = g^T h, db2 = sum g, dh = g W2, dW1 = dh'^T x, db1
    assert _sums_exact(_mm_terms(g.T, h)) and _sums_exact(g.T)
    assert _sums_exact(_mm_terms(g, bf["2.weight"]))
    dh = nn.round_to(g @ bf["2.weight"], "bfloat16") * (h > 0)
    assert _sums_exact(_mm_terms(dh.T, xb)) and _sums_exact(dh.T)
    assert np.any(nn.round_to(g.T @ h, "bfloat16") != g.T @ h)     # rounded gradients
    assert np.any(nn.round_to(g @ bf["2.weight"], "bfloat16") != g @ bf["2.weight"])

    # the full step: gradients (float32 master, bfloat16 values) and the SGD update
    step = nn.train_step(net, x, y, (nn.cross_entropy_forward, nn.cross_entropy_backward),
                         nn.optim.SGD(lr=LR), "fp32")
    assert not step.found_inf
    for k, gt in t["grads"].items():
        gk = np.asarray(step.grads[k], np.float64)
        assert step.grads[k].dtype == np.float32, k
        assert np.array_equal(nn.round_to(gt, "bfloat16"), gt), k       # torch: bf16 values
        assert np.array_equal(gk, gt), (k, np.abs(gk - gt).max())
        assert np.array_equal(np.asarray(net.named_parameters()[k], np.float64),
                              t["new"][k]), k
