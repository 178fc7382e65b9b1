"""benchmarks/accel.py's --ops and --sizes: a named subset of the sweep, or a clear error."""

from __future__ import annotations

import importlib
import os

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks")


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(BENCH)
    return importlib.import_module("accel")


def test_ops_keep_the_sweeps_order_and_default_to_all(bench):
    assert bench.chosen_ops(None) == bench.OPS
    assert bench.chosen_ops("sum, add") == ("add", "sum")


def test_sizes_are_sorted_and_deduplicated(bench):
    assert bench.chosen_sizes(None) is None
    assert bench.chosen_sizes("4000000,1000000,4000000") == [1_000_000, 4_000_000]


@pytest.mark.parametrize("bad", ["conv", "sum,conv", ","])
def test_an_unknown_op_is_refused_by_name(bench, bad):
    with pytest.raises(ValueError, match="--ops: choose from matmul, add, relu, sum"):
        bench.chosen_ops(bad)


@pytest.mark.parametrize("bad", ["1e6", "0", "10,-3", "x"])
def test_a_bad_size_is_refused(bench, bad):
    with pytest.raises(ValueError, match="--sizes"):
        bench.chosen_sizes(bad)


def test_main_reports_the_bad_option(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--ops", "conv"])
    assert "--ops: choose from" in capsys.readouterr().err
