"""Every CUDA failure becomes CudaError with the error's name, description and the failing call."""

from __future__ import annotations

import pytest

from puredl import cuda
from puredl.cuda import _binding
from puredl.cuda.testing import FakeDevice, FakeRuntime, cudaError_t, use_fake

E = cudaError_t


@pytest.fixture
def fake():
    with use_fake(FakeRuntime([FakeDevice(total_memory=64 << 20)])) as installed:
        yield installed


def test_cuda_error_carries_name_description_and_call(fake):
    fake.fail("cudaMalloc", E.cudaErrorInvalidValue)
    with pytest.raises(cuda.CudaError) as info:
        cuda.DeviceMemory(1024)
    error = info.value
    assert isinstance(error, RuntimeError)
    assert not isinstance(error, cuda.CudaUnavailableError)
    assert (error.code, error.name, error.description) == (1, "cudaErrorInvalidValue", "invalid argument")
    assert error.call == "cudaMalloc(1024)"
    assert str(error) == "cudaMalloc(1024) failed: cudaErrorInvalidValue (1): invalid argument"


def test_pointers_and_handles_are_readable_in_the_call(fake):
    with cuda.DeviceMemory(8) as mem, cuda.Stream() as s:
        fake.fail("cudaMemsetAsync", E.cudaErrorIllegalAddress)
        with pytest.raises(cuda.CudaError) as info:
            mem.memset(7, 4, stream=s)
    assert info.value.call == f"cudaMemsetAsync({mem.ptr:#x}, 7, 4, <FakeStream {int(s.handle):#x}>)"
    assert "context is unusable" in str(info.value)  # the hint for an illegal address


def test_out_of_memory_says_how_much_was_asked_and_is_free(fake):
    with cuda.DeviceMemory(16 << 20):
        with pytest.raises(cuda.CudaError) as info:
            cuda.DeviceMemory(128 << 20)
    error = info.value
    assert error.name == "cudaErrorMemoryAllocation" and error.code == 2
    assert "asked for 128.0 MiB on cuda:0, which has 48.0 MiB free of 64.0 MiB" in str(error)
    assert fake.live()["device_memory"] == 0
    assert cuda.current_device() == 0


def test_a_failure_clears_the_runtime_last_error(fake):
    fake.fail("cudaStreamSynchronize", E.cudaErrorIllegalAddress)
    with cuda.Stream() as s:
        with pytest.raises(cuda.CudaError):
            s.synchronize()
    # torch checks cudaGetLastError after its kernel launches; it must not see our failure.
    assert fake.last_error == 0
    assert "cudaGetLastError" in fake.names()


@pytest.mark.parametrize(
    "error", [E.cudaErrorInsufficientDriver, E.cudaErrorNoDevice, E.cudaErrorInitializationError]
)
def test_driver_and_device_errors_become_unavailable(fake, error):
    fake.fail("cudaStreamCreateWithFlags", error)
    with pytest.raises(cuda.CudaUnavailableError) as info:
        cuda.Stream()
    assert info.value.name == error.name
    assert "cudaStreamCreateWithFlags(0) failed with " + error.name in str(info.value)
    assert "nvidia-smi" in str(info.value)
    assert "(CUDA 13.5)" in str(info.value)  # the runtime version the driver must support


def test_failures_while_switching_device_restore_nothing_wrongly():
    with use_fake(FakeRuntime([FakeDevice(), FakeDevice()])) as fake:
        fake.fail("cudaMalloc", E.cudaErrorMemoryAllocation)
        with pytest.raises(cuda.CudaError):
            cuda.DeviceMemory(8, device=1)
        assert cuda.current_device() == 0  # switched to cuda:1 for the allocation, then back


def test_unknown_names_do_not_hide_the_error():
    class NoNames(FakeRuntime):
        def cudaGetErrorName(self, error):  # noqa: N802
            raise RuntimeError("broken binding")

    with use_fake(NoNames()) as fake:
        fake.fail("cudaEventCreateWithFlags", E.cudaErrorInvalidValue)
        with pytest.raises(
            cuda.CudaError, match=r"cudaEventCreateWithFlags\(0\) failed: cudaErrorInvalidValue"
        ):
            cuda.Event()


def test_check_returns_values_by_count():
    rt = FakeRuntime()
    assert _binding.check(rt, (E.cudaSuccess,), "x") is None
    assert _binding.check(rt, (E.cudaSuccess, 5), "x") == 5
    assert _binding.check(rt, (E.cudaSuccess, 1, 2), "x") == (1, 2)


def test_closed_handle_error_is_a_value_error():
    assert issubclass(cuda.ClosedHandleError, ValueError)
    assert not issubclass(cuda.ClosedHandleError, cuda.CudaError)


def test_unavailable_message_mentions_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    message = str(cuda.CudaUnavailableError("no device"))
    assert "CUDA_VISIBLE_DEVICES (now '') must not hide every device" in message
