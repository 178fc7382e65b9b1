"""`puredl cuda info`, the cuda_basic example and the docstring examples, on the fake runtime."""

from __future__ import annotations

import argparse
import doctest
import importlib
import json

import pytest

from puredl.cuda import cli
from puredl.cuda.testing import FakeDevice, FakeRuntime, use_fake
from puredl.examples import cuda_basic

H100 = FakeDevice("NVIDIA H100 80GB HBM3", 80 << 30, (9, 0), 132, bandwidth=2e12)


def _cli(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_info_prints_the_device_table(capsys):
    with use_fake(FakeRuntime([H100, H100], peer=False)):
        assert _cli(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("CUDA runtime 13.5 (cuda-bindings ")
    assert lines[0].endswith("driver supports CUDA 13.0")
    assert lines[1] == "2 device(s):"
    assert lines[3].split() == [
        "0",
        "NVIDIA",
        "H100",
        "80GB",
        "HBM3",
        "9.0",
        "132",
        "80.0",
        "GiB",
        "/",
        "80.0",
        "GiB",
        "0000:01:00.0",
    ]
    assert lines[-2].split() == ["0", "-", "no"]
    assert lines[-1].split() == ["1", "no", "-"]


def test_info_json(capsys):
    with use_fake(FakeRuntime([H100])):
        assert _cli(["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["available"] is True
    assert report["devices"][0]["name"] == H100.name
    assert report["devices"][0]["memory_total"] == 80 << 30
    assert report["peer_access"] == [[True]]


def test_info_without_a_driver(capsys):
    with use_fake(FakeRuntime(driver=False)):
        assert _cli([]) == 1
    out = capsys.readouterr().out
    assert "cudaErrorInsufficientDriver" in out and "nvidia-smi" in out


def test_example_walks_through_the_seed_steps(capsys):
    with use_fake(FakeRuntime([H100, FakeDevice("Fake B")])) as fake:
        assert cuda_basic.main([]) == 0
    out = capsys.readouterr().out
    steps = [
        "Devices found: 2",
        "  Device 0: NVIDIA H100 80GB HBM3 (compute 9.0, 132 SMs)",
        "    Memory: 80.0 GiB free of 80.0 GiB",
        "=== Using device 0 ===",
        "Creating CUDA stream...",
        "Creating CUDA events for timing...",
        "Allocating device memory (1.0 MiB)...",
        "Recording start event...",
        "Filling memory with zeros...",
        "Recording end event...",
        "Synchronizing stream...",
        # 1 MiB written at the fake's 2e12 B/s: 0.000524 ms, 2000 GB/s.
        "Memset took 0.001 ms (2000.0 GB/s written)",
        "Allocating second memory block (1.0 MiB)...",
        "Copying from block 1 to block 2 (device-to-device)...",
        "  copy complete: 0.001 ms (2000.0 GB/s read + written)",
        "  block 2 read back on the host: all zeros, as copied",
        "Querying stream status (non-blocking)...",
        "  stream is idle",
        "  cuda:0 -> cuda:1 (peer to peer): arrived intact",
        "All operations complete.",
    ]
    position = 0
    for step in steps:
        position = out.index(step, position)  # present and in this order
    assert fake.live() == {"device_memory": 0, "host_memory": 0, "streams": 0, "events": 0}


def test_example_on_a_chosen_device_and_size(capsys):
    with use_fake(FakeRuntime([H100, H100])):
        assert cuda_basic.main(["--device", "cuda:1", "--size", "4096"]) == 0
    out = capsys.readouterr().out
    assert "=== Using device 1 ===" in out and "Allocating device memory (4.0 KiB)..." in out


def test_example_reports_a_wrong_copy(capsys):
    class DroppedCopies(FakeRuntime):
        def cudaMemcpyAsync(self, dst, src, count, kind, stream):  # noqa: N802
            return (self.cudaError_t.cudaSuccess,)  # claims success, copies nothing

    with use_fake(DroppedCopies([H100])):
        assert cuda_basic.main([]) == 1
    assert "WRONG CONTENT" in capsys.readouterr().out


@pytest.mark.parametrize(
    "module",
    [
        "puredl.cuda",
        "puredl.cuda._binding",
        "puredl.cuda.device",
        "puredl.cuda.errors",
        "puredl.cuda.event",
        "puredl.cuda.memory",
        "puredl.cuda.stream",
        "puredl.cuda.testing",
    ],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
