"""The bandwidth goal on a real card: puredl's device-to-device copy reaches 85% of torch's."""

from __future__ import annotations

import importlib.util
import os

import pytest

pytestmark = pytest.mark.gpu

PATH = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks", "cuda_bandwidth.py")


def load_bench():
    spec = importlib.util.spec_from_file_location("cuda_bandwidth", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_copy_bandwidth_reaches_85_percent_of_torch(torch_cuda):
    bench = load_bench()
    rows = bench.measure([256 << 20], device=0, repeats=5, torch=torch_cuda)
    row = rows[0]
    assert row["copy"] >= bench.GOAL * row["torch_copy"], bench.format_table(rows)
    assert row["memset"] > 0 and row["torch_memset"] > 0
