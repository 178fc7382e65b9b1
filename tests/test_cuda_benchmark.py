"""benchmarks/cuda_bandwidth.py: the no-GPU exit for real, the arithmetic on the fake runtime."""

from __future__ import annotations

import importlib.util
import os

import pytest

from puredl import cuda
from puredl.cuda.testing import FakeDevice, FakeRuntime, use_fake

PATH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "cuda_bandwidth.py")
spec = importlib.util.spec_from_file_location("cuda_bandwidth", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.skipif(cuda.is_available(), reason="checks the exit on a machine without a GPU")
def test_exits_cleanly_without_a_gpu(capsys):
    assert bench.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cuda_bandwidth: no usable CUDA GPU (") and out.rstrip().endswith(
        "nothing measured."
    )


def test_bandwidth_counts_bytes_read_and_written(monkeypatch):
    # The fake's clock advances by bytes touched / bandwidth: a memset touches n bytes, a copy 2n.
    monkeypatch.setattr(
        bench, "batch_size", lambda nbytes: 5
    )  # the fake copies bytes for real: keep it short
    with use_fake(FakeRuntime([FakeDevice(bandwidth=3e12)])) as fake:
        rows = bench.measure([1 << 20, 2 << 20], device=0, repeats=2)
        assert fake.live() == {"device_memory": 0, "host_memory": 0, "streams": 0, "events": 0}
    for row in rows:
        assert row["memset"] == pytest.approx(3000.0)
        assert row["copy"] == pytest.approx(3000.0)


def test_batches_are_sized_by_bytes():
    assert bench.batch_size(1 << 20) == 500
    assert bench.batch_size(1 << 30) == 8
    assert bench.batch_size(8 << 30) == 5


def test_table_ratios_and_goal(tmp_path):
    rows = [
        {"bytes": 1 << 20, "memset": 100.0, "torch_memset": 200.0, "copy": 50.0, "torch_copy": 100.0},
        {"bytes": 64 << 20, "memset": 900.0, "torch_memset": 1000.0, "copy": 1800.0, "torch_copy": 2000.0},
    ]
    table = bench.format_table(rows).splitlines()
    assert table[2].split() == ["1.0", "MiB", "|", "100.0", "200.0", "0.50", "|", "50.0", "100.0", "0.50"]
    assert table[3].split()[-1] == "0.90"
    # Only sizes >= 64 MiB count toward the goal: launch overhead rules the small ones.
    assert bench.verdict(rows).endswith("at least 90% of torch's bandwidth (goal 85%: met)")
    rows[1]["copy"] = 1600.0
    assert bench.verdict(rows).endswith("(goal 85%: NOT met)")
    bench.plot(rows, "test", str(tmp_path / "bw.png"))
    assert (tmp_path / "bw.png").stat().st_size > 1000
