"""Devices: availability, count, names, memory, properties, selection, peer access, "cuda:N" strings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from puredl.cuda import _binding
from puredl.cuda._binding import check, runtime
from puredl.cuda.errors import CudaUnavailableError

DeviceLike = int | str | None

_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def parse_device(spec: Any, *, check_count: bool = True) -> tuple[str, int | None]:
    """Parse a device spec into ``(kind, index)``; kind is "cpu" or "cuda".

    Accepts "cpu", "cuda" (index None: the current device), "cuda:N", a bare int N (= "cuda:N")
    and objects with ``.type`` and ``.index`` such as ``torch.device``. With ``check_count``
    (the default), a CUDA index must be below ``device_count()``; that needs a usable GPU.

    >>> parse_device("cpu")
    ('cpu', None)
    >>> parse_device(" CUDA:1 ", check_count=False)
    ('cuda', 1)
    """
    if hasattr(spec, "type") and hasattr(spec, "index") and not isinstance(spec, str):
        spec = spec.type if spec.index is None else f"{spec.type}:{spec.index}"
    if isinstance(spec, bool) or not isinstance(spec, (int, str)):
        raise TypeError(f"device must be a string like 'cuda:0' or 'cpu' or an int, not {spec!r}")
    if isinstance(spec, int):
        if spec < 0:
            raise ValueError(f"invalid device {spec}: a CUDA device index must be >= 0")
        kind, index = "cuda", spec
    else:
        match = _DEVICE_RE.match(spec.strip().lower())
        if match is None:
            raise ValueError(f"invalid device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...)")
        kind, digits = match.groups()
        index = None if digits is None else int(digits)
        if kind == "cpu" and index is not None:
            raise ValueError(f"invalid device {spec!r}: 'cpu' takes no index")
    if kind == "cuda" and check_count:
        count = checked_device_count()
        if index is not None and index >= count:
            have = (
                "1 CUDA device (cuda:0)"
                if count == 1
                else f"{count} CUDA devices (cuda:0 .. cuda:{count - 1})"
            )
            raise ValueError(f"device {spec!r} does not exist: this machine has {have}")
    return kind, index


def resolve_index(device: DeviceLike) -> int:
    """The checked CUDA device index for ``device`` (None: the current device)."""
    if device is None:
        return current_device()
    kind, index = parse_device(device)
    if kind != "cuda":
        raise ValueError(f"expected a CUDA device, got {device!r}")
    return current_device() if index is None else index


def device_count() -> int:
    """Number of usable CUDA devices: 0 without cuda-bindings, a driver or a device, as torch's.

    >>> from puredl.cuda.testing import FakeRuntime, FakeDevice
    >>> with _binding.use_runtime(FakeRuntime([FakeDevice(), FakeDevice()])):
    ...     device_count()
    2
    >>> with _binding.use_runtime(FakeRuntime([])):
    ...     device_count()
    0
    """
    try:
        return checked_device_count()
    except CudaUnavailableError:
        return 0


def checked_device_count() -> int:
    """Number of CUDA devices; raises CudaUnavailableError, saying what to check, when there is none."""
    rt = runtime()
    count = check(rt, rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if count <= 0:
        raise CudaUnavailableError("cudaGetDeviceCount() found no CUDA device")
    return count


def is_available() -> bool:
    """True when a CUDA GPU can be used; never raises (False without cuda-bindings, driver or device).

    >>> isinstance(is_available(), bool)
    True
    """
    try:
        return checked_device_count() > 0
    except Exception:
        return False


def current_device() -> int:
    """Index of the calling thread's current CUDA device."""
    rt = runtime()
    return check(rt, rt.cudaGetDevice(), "cudaGetDevice")


def set_device(device: int | str) -> None:
    """Make ``device`` (an index or "cuda:N") current for the calling thread.

    >>> from puredl.cuda.testing import FakeRuntime, FakeDevice
    >>> with _binding.use_runtime(FakeRuntime([FakeDevice(), FakeDevice()])):
    ...     set_device("cuda:1"); current_device()
    1
    """
    if device is None:
        raise TypeError("set_device needs a device index or 'cuda:N', not None")
    index = resolve_index(device)
    rt = runtime()
    check(rt, rt.cudaSetDevice(index), "cudaSetDevice", index)


@contextmanager
def use_device(device: int | str) -> Iterator[int]:
    """Make ``device`` current inside the block and restore the previous one after.

    >>> from puredl.cuda.testing import FakeRuntime, FakeDevice
    >>> with _binding.use_runtime(FakeRuntime([FakeDevice(), FakeDevice()])):
    ...     with use_device(1) as index:
    ...         print(index, current_device())
    ...     print(current_device())
    1 1
    0
    """
    index = resolve_index(device)
    with _binding.on_device(runtime(), index):
        yield index


@dataclass(frozen=True)
class DeviceProperties:
    """What the CUDA runtime reports about one device."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    multiprocessor_count: int
    total_memory: int
    memory_bus_width: int
    l2_cache_size: int
    warp_size: int
    max_threads_per_block: int
    shared_memory_per_block: int
    pci_bus_id: str
    integrated: bool


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).split(b"\0", 1)[0].decode(errors="replace")
    return str(value).strip()


def get_device_properties(device: DeviceLike = None) -> DeviceProperties:
    """Properties of ``device`` (None: the current one), cached because they never change.

    >>> from puredl.cuda.testing import FakeRuntime
    >>> with _binding.use_runtime(FakeRuntime()):
    ...     get_device_properties(0).compute_capability
    (8, 0)
    """
    index = resolve_index(device)
    key = ("properties", index)
    cached = _binding.cache.get(key)
    if cached is not None:
        return cached
    rt = runtime()
    prop = check(rt, rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties", index)
    props = DeviceProperties(
        index=index,
        name=_text(prop.name),
        compute_capability=(int(prop.major), int(prop.minor)),
        multiprocessor_count=int(prop.multiProcessorCount),
        total_memory=int(prop.totalGlobalMem),
        memory_bus_width=int(prop.memoryBusWidth),
        l2_cache_size=int(prop.l2CacheSize),
        warp_size=int(prop.warpSize),
        max_threads_per_block=int(prop.maxThreadsPerBlock),
        shared_memory_per_block=int(prop.sharedMemPerBlock),
        pci_bus_id=f"{int(prop.pciDomainID):04x}:{int(prop.pciBusID):02x}:{int(prop.pciDeviceID):02x}.0",
        integrated=bool(prop.integrated),
    )
    _binding.cache[key] = props
    return props


def get_device_name(device: DeviceLike = None) -> str:
    """Marketing name of ``device``, e.g. "NVIDIA H100 80GB HBM3"."""
    return get_device_properties(device).name


def get_device_memory(device: DeviceLike = None) -> tuple[int, int]:
    """``(free, total)`` bytes of ``device`` right now.

    >>> from puredl.cuda.testing import FakeRuntime, FakeDevice
    >>> with _binding.use_runtime(FakeRuntime([FakeDevice(total_memory=1000)])):
    ...     get_device_memory(0)
    (1000, 1000)
    """
    index = resolve_index(device)
    rt = runtime()
    with _binding.on_device(rt, index):
        free, total = check(rt, rt.cudaMemGetInfo(), "cudaMemGetInfo")
    return int(free), int(total)


def devices() -> list[DeviceProperties]:
    """Properties of every device, in index order (``for d in devices(): ...``)."""
    return [get_device_properties(i) for i in range(checked_device_count())]


def synchronize(device: DeviceLike = None) -> None:
    """Wait until all work queued on ``device`` (None: the current one) has finished."""
    index = resolve_index(device)
    rt = runtime()
    with _binding.on_device(rt, index):
        check(rt, rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")


def can_access_peer(device: DeviceLike, peer: DeviceLike) -> bool:
    """True when ``device`` can read and write ``peer``'s memory directly (NVLink or PCIe P2P)."""
    index, peer_index = resolve_index(device), resolve_index(peer)
    if index == peer_index:
        return True
    rt = runtime()
    return bool(check(rt, rt.cudaDeviceCanAccessPeer(index, peer_index), "cudaDeviceCanAccessPeer"))


def enable_peer_access(device: DeviceLike, peer: DeviceLike) -> bool:
    """Let ``device`` access ``peer``'s memory directly; False when the hardware cannot.

    Idempotent: enabling twice is fine. Copies between devices work without it too (staged
    through the host, slower).
    """
    index, peer_index = resolve_index(device), resolve_index(peer)
    if index == peer_index:
        return True
    key = ("peer", index, peer_index)
    if key in _binding.cache:
        return _binding.cache[key]
    enabled = can_access_peer(index, peer_index)
    if enabled:
        rt = runtime()
        with _binding.on_device(rt, index):
            result = rt.cudaDeviceEnablePeerAccess(peer_index, 0)
            if result[0] and int(result[0]) != _binding.PEER_ALREADY_ENABLED:
                check(rt, result, "cudaDeviceEnablePeerAccess", peer_index, 0)
            elif result[0]:
                rt.cudaGetLastError()  # "already enabled" is success for us; clear the sticky report
    _binding.cache[key] = enabled
    return enabled


def driver_version() -> str | None:
    """CUDA version the installed driver supports, e.g. "13.0"; None without a driver."""
    rt = runtime()
    version = check(rt, rt.cudaDriverGetVersion(), "cudaDriverGetVersion")
    return f"{version // 1000}.{version % 1000 // 10}" if version else None


def runtime_version() -> str | None:
    """CUDA version of the runtime in cuda-bindings, e.g. "13.5"."""
    return _binding.runtime_version_string(runtime())
