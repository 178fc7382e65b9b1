"""Device queries, selection, "cuda:N" parsing and peer access, on the fake runtime."""

from __future__ import annotations

import pytest

from puredl import cuda
from puredl.cuda.testing import FakeDevice, FakeRuntime, use_fake

A100 = FakeDevice("NVIDIA A100-SXM4-80GB", 80 << 30, (8, 0), 108)
H100 = FakeDevice("NVIDIA H100 80GB HBM3", 80 << 30, (9, 0), 132)


@pytest.fixture
def fake():
    with use_fake(FakeRuntime([A100, H100])) as installed:
        yield installed


class TorchLikeDevice:
    def __init__(self, type_, index):
        self.type, self.index = type_, index


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cpu", ("cpu", None)),
        ("cuda", ("cuda", None)),
        ("cuda:0", ("cuda", 0)),
        ("cuda:1", ("cuda", 1)),
        (" CUDA:1 ", ("cuda", 1)),
        (1, ("cuda", 1)),
        (TorchLikeDevice("cuda", 1), ("cuda", 1)),
        (TorchLikeDevice("cuda", None), ("cuda", None)),
        (TorchLikeDevice("cpu", None), ("cpu", None)),
    ],
)
def test_parse_device_accepts(fake, spec, expected):
    assert cuda.parse_device(spec) == expected


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        (
            "cuda:2",
            ValueError,
            r"'cuda:2' does not exist: this machine has 2 CUDA devices \(cuda:0 .. cuda:1\)",
        ),
        (7, ValueError, "does not exist"),
        ("gpu:0", ValueError, r"invalid device 'gpu:0': expected 'cpu', 'cuda' or 'cuda:N'"),
        ("cuda:-1", ValueError, "invalid device"),
        ("cuda:x", ValueError, "invalid device"),
        ("cuda:", ValueError, "invalid device"),
        ("cuda:0:1", ValueError, "invalid device"),
        ("cpu:0", ValueError, "'cpu' takes no index"),
        ("", ValueError, "invalid device"),
        (-1, ValueError, "must be >= 0"),
        (None, TypeError, "device must be"),
        (1.0, TypeError, "device must be"),
        (True, TypeError, "device must be"),
    ],
)
def test_parse_device_rejects(fake, spec, error, match):
    with pytest.raises(error, match=match):
        cuda.parse_device(spec)


def test_one_device_message_is_singular():
    with use_fake(FakeRuntime([A100])):
        with pytest.raises(ValueError, match=r"has 1 CUDA device \(cuda:0\)$"):
            cuda.parse_device("cuda:1")


def test_parse_device_without_count_check_needs_no_runtime():
    with use_fake(FakeRuntime(driver=False)) as fake:
        assert cuda.parse_device("cuda:5", check_count=False) == ("cuda", 5)
        assert fake.calls == []


def test_queries(fake):
    assert cuda.is_available() is True
    assert cuda.device_count() == 2
    assert [d.name for d in cuda.devices()] == [A100.name, H100.name]
    assert cuda.get_device_name("cuda:1") == H100.name
    props = cuda.get_device_properties(1)
    assert props.compute_capability == (9, 0)
    assert props.multiprocessor_count == 132
    assert props.total_memory == 80 << 30
    assert props.pci_bus_id == "0000:02:00.0"
    assert cuda.get_device_memory(0) == (80 << 30, 80 << 30)
    assert cuda.runtime_version() == "13.5"
    assert cuda.driver_version() == "13.0"


def test_device_memory_counts_allocations_on_that_device_only(fake):
    with cuda.DeviceMemory(1 << 20, device=1):
        assert cuda.get_device_memory(1) == ((80 << 30) - (1 << 20), 80 << 30)
        assert cuda.get_device_memory(0) == (80 << 30, 80 << 30)
        assert cuda.current_device() == 0  # queries leave the current device alone


def test_properties_are_cached(fake):
    cuda.get_device_properties(0)
    cuda.get_device_name(0)
    assert fake.names("cudaGetDeviceProperties") == ["cudaGetDeviceProperties"]


def test_set_device_and_use_device(fake):
    assert cuda.current_device() == 0
    cuda.set_device("cuda:1")
    assert cuda.current_device() == 1
    with cuda.use_device(0) as index:
        assert index == 0 and cuda.current_device() == 0
        with cuda.Stream() as s:
            assert s.device == 0
    assert cuda.current_device() == 1
    with pytest.raises(ValueError, match="does not exist"):
        cuda.set_device(2)
    with pytest.raises(ValueError, match="expected a CUDA device"):
        cuda.set_device("cpu")
    assert cuda.current_device() == 1


def test_use_device_restores_after_an_error(fake):
    with pytest.raises(RuntimeError):
        with cuda.use_device(1):
            raise RuntimeError("inside")
    assert cuda.current_device() == 0


def test_objects_land_on_the_requested_device(fake):
    with cuda.Stream(device=1) as s, cuda.Event(device="cuda:1") as e, cuda.DeviceMemory(8, device=1) as m:
        assert (s.device, e.device, m.device) == (1, 1, 1)
        assert fake.streams[int(s.handle)].device == 1
        assert fake.events[int(e.handle)].device == 1
        assert fake.device_memory[m.ptr][0] == 1
    assert cuda.current_device() == 0


def test_no_device_at_all_is_unavailable():
    with use_fake(FakeRuntime([])):
        assert cuda.is_available() is False
        assert cuda.device_count() == 0  # torch's answer without a device
        with pytest.raises(cuda.CudaUnavailableError, match="cudaErrorNoDevice"):
            cuda.checked_device_count()
        with pytest.raises(cuda.CudaUnavailableError, match="cudaErrorNoDevice"):
            cuda.get_device_name(0)


def test_peer_access(fake):
    assert cuda.can_access_peer(0, 1) is True
    assert cuda.can_access_peer(1, 1) is True
    assert cuda.enable_peer_access(0, 1) is True
    assert cuda.enable_peer_access(0, 1) is True  # idempotent
    assert fake.peer_enabled == {(0, 1)}
    assert cuda.current_device() == 0


def test_peer_access_already_enabled_elsewhere_is_not_an_error(fake):
    cuda.set_device(0)
    fake.cudaDeviceEnablePeerAccess(1, 0)  # enabled behind puredl's back (e.g. by torch)
    assert cuda.enable_peer_access(0, 1) is True
    assert fake.last_error == 0  # the "already enabled" report was cleared


def test_peer_access_unsupported():
    with use_fake(FakeRuntime([A100, A100], peer=False)) as fake:
        assert cuda.can_access_peer(0, 1) is False
        assert cuda.enable_peer_access(0, 1) is False
        assert "cudaDeviceEnablePeerAccess" not in fake.names()


def test_synchronize(fake):
    with cuda.Stream(device=1) as s:
        fake.busy.add(int(s.handle))
        cuda.synchronize(0)
        assert s.query() is False
        cuda.synchronize("cuda:1")
        assert s.query() is True
