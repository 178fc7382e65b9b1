"""The no-GPU path, for real: cuda-bindings may be installed, but this machine has no usable GPU."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from puredl import cuda
from puredl.cuda import cli
from puredl.examples import cuda_basic

pytestmark = pytest.mark.skipif(cuda.is_available(), reason="these tests need a machine without a usable GPU")

CALLS = {
    "checked_device_count": lambda: cuda.checked_device_count(),
    "get_device_name": lambda: cuda.get_device_name(0),
    "get_device_memory": lambda: cuda.get_device_memory(0),
    "get_device_properties": lambda: cuda.get_device_properties(0),
    "set_device": lambda: cuda.set_device(0),
    "current_device": lambda: cuda.current_device(),
    "use_device": lambda: cuda.use_device(0).__enter__(),
    "devices": lambda: cuda.devices(),
    "synchronize": lambda: cuda.synchronize(),
    "parse_device": lambda: cuda.parse_device("cuda:0"),
    "can_access_peer": lambda: cuda.can_access_peer(0, 1),
    "Stream": lambda: cuda.Stream(),
    "Event": lambda: cuda.Event(),
    "DeviceMemory": lambda: cuda.DeviceMemory(16),
    "DeviceMemory on cuda:1": lambda: cuda.DeviceMemory(16, device="cuda:1"),
    "HostMemory": lambda: cuda.HostMemory(16),
}


def test_is_available_is_false_and_does_not_raise():
    assert cuda.is_available() is False


def test_device_count_is_zero_as_torch_says():
    assert cuda.device_count() == 0
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():  # the same machine seen by torch: also no device
        assert cuda.device_count() == torch.cuda.device_count() == 0
    import puredl

    assert puredl.cuda.device_count() == 0  # `import puredl as torch; torch.cuda.device_count()`


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_call_raises_unavailable_with_a_checklist(name):
    with pytest.raises(cuda.CudaUnavailableError) as info:
        CALLS[name]()
    message = str(info.value)
    for needle in ("nvidia-smi", "driver", "`device: cpu`", "pure tier", "pip install 'puredl[cuda]'"):
        assert needle in message, (needle, message)
    assert isinstance(info.value, cuda.CudaError)
    assert isinstance(info.value, RuntimeError)


def test_the_reason_names_the_cuda_error_when_bindings_are_installed():
    pytest.importorskip("cuda.bindings.runtime")
    with pytest.raises(cuda.CudaUnavailableError) as info:
        cuda.checked_device_count()
    error = info.value
    # A machine without the driver (this project's CI) or without a device.
    assert error.name in {"cudaErrorInsufficientDriver", "cudaErrorNoDevice"}, error.name
    assert error.code in {35, 100}
    assert error.call == "cudaGetDeviceCount()"
    assert error.description and error.description in str(error)


def test_cpu_device_strings_need_no_gpu():
    assert cuda.parse_device("cpu") == ("cpu", None)
    assert cuda.parse_device("cuda:3", check_count=False) == ("cuda", 3)


def test_the_example_prints_one_line_and_exits_zero(capsys):
    assert cuda_basic.main([]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("CUDA is not available on this machine (")


def _cli(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_cuda_info_explains_and_fails(capsys):
    assert _cli(["info"]) == 1
    out = capsys.readouterr().out
    assert "no usable GPU" in out and "nvidia-smi" in out
    assert _cli(["--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["available"] is False and report["reason"]


def _run(code: str) -> subprocess.CompletedProcess:
    # the default mode: PUREDL_ACCEL=torch loads torch at import, and torch loads cuda.bindings itself
    env = {k: v for k, v in os.environ.items() if k != "PUREDL_ACCEL"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_import_does_not_load_cuda_bindings():
    result = _run("import sys, puredl.cuda, puredl.cuda.cli; print('cuda.bindings' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_without_cuda_bindings_installed():
    # A None entry in sys.modules makes `import cuda.bindings.runtime` fail as if it were missing.
    code = (
        "import sys; sys.modules['cuda.bindings.runtime'] = None\n"
        "from puredl import cuda\n"
        "print(cuda.is_available(), cuda.device_count())\n"
        "try:\n"
        "    cuda.DeviceMemory(8)\n"
        "except cuda.CudaUnavailableError as e:\n"
        "    print('unavailable:', e)\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "False 0\nunavailable: CUDA is not usable here: cuda-bindings cannot be imported"
    )
    assert "pip install 'puredl[cuda]'" in result.stdout


def test_is_available_swallows_any_failure_of_the_binding():
    class Broken:
        def cudaGetDeviceCount(self):  # noqa: N802
            raise OSError("libcuda.so: cannot open shared object file")

    from puredl.cuda._binding import use_runtime

    with use_runtime(Broken()):
        assert cuda.is_available() is False
