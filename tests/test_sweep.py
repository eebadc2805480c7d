"""Exhaustive sweeps (small ones here; the 2**32 sweep is a benchmark)."""

import io

import pytest

from refcomp.cli import main
from refcomp.crosscheck.sweep import SweepSpec, sweep


@pytest.mark.parametrize("backend,dst", [("torch-cpu", "float8_e4m3fn"),
                                         ("torch-cpu", "bfloat16"),
                                         ("ml_dtypes", "float8_e5m2"),
                                         ("ml_dtypes", "float4_e2m1fn")])
def test_every_float16_input(backend, dst):
    r = sweep(SweepSpec("cast", "float16", dst, backend, chunk_bits=14), workers=1,
              progress=False)
    assert r.checked == 1 << 16 and r.mismatches == 0, r.examples


def test_float32_chunks_on_two_processes():
    spec = SweepSpec("cast", "float32", "bfloat16", "torch-cpu", chunk_bits=16)
    r = sweep(spec, workers=2, limit=4, progress=False)
    assert r.checked == 4 << 16 and r.mismatches == 0 and r.workers == 2


def test_binary_pairs_slice():
    r = sweep(SweepSpec("mul", "bfloat16", "bfloat16", "torch-cpu", chunk_bits=18),
              workers=1, limit=3, progress=False)
    assert r.checked == 3 << 18 and r.mismatches == 0


def test_dask_local_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as c:
        r = sweep(SweepSpec("cast", "float16", "float8_e4m3fn", "torch-cpu",
                            chunk_bits=12), dask=c.scheduler_address, out=io.StringIO())
    assert r.checked == 1 << 16 and r.mismatches == 0


@pytest.mark.parametrize("args,msg", [
    (("cast", "float64", "bfloat16", "torch-cpu"), "float64"),
    (("cast", "float32", "float6_e2m3fn", "torch-cpu"), "float6_e2m3fn"),
    (("add", "float32", "float32", "torch-cpu"), "16-bit"),
    (("exp", "float16", "float16", "torch-cpu"), "exp"),
    (("cast", "float32", "bfloat16", "tpu"), "tpu")])
def test_bad_specs(args, msg):
    with pytest.raises(ValueError, match=msg):
        SweepSpec(*args)


def test_cli(capsys):
    assert main(["sweep", "--op", "cast", "--from", "float16", "--to", "float8_e5m2",
                 "--backend", "torch-cpu", "--workers", "1", "--quiet"]) == 0
    assert "no mismatches" in capsys.readouterr().out
