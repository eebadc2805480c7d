"""Shared set-up of the tests that run torch's quantized kernels: the fbgemm engine (make
it a fixture with ``_fbgemm = pytest.fixture(autouse=True)(use_fbgemm)``), one torch
thread (:func:`one_thread`, likewise) and whether this CPU's fbgemm kernel is the
AVX2 one whose u8 x s8 GEMM saturates adjacent product pairs to int16 (no VNNI)."""

import functools

import pytest

torch = pytest.importorskip("torch")


def use_fbgemm():
    """Run the enclosed test with torch's quantized engine set to fbgemm."""
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    yield
    torch.backends.quantized.engine = old


def one_thread():
    """Run the enclosed test with torch on one thread (its float32 sums depend on it)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.lru_cache(maxsize=1)
def avx2_without_vnni():
    """Whether torch's fbgemm kernel here is the AVX2 pair-saturating one (no AVX512-VNNI)."""
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return "avx512_vnni" not in flags and "avx_vnni" not in flags
