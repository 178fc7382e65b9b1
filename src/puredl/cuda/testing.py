"""FakeRuntime: a pure-Python stand-in for ``cuda.bindings.runtime`` for tests without a GPU.

It speaks the same protocol as cuda-bindings (functions with the real parameter names that
return ``(err, *values)``, the real error codes and flag values), keeps device memory in
bytearrays so that copies and memsets can be checked byte by byte, and times work with a
virtual clock (``bytes / FakeDevice.bandwidth``) so that event timings are hand-checkable.

It is stricter than CUDA in one way: memory and stream operations fail with
cudaErrorInvalidDevice unless their device is current, which catches missing device switches.

>>> from puredl import cuda
>>> fake = FakeRuntime([FakeDevice("Fake A"), FakeDevice("Fake B")])
>>> with use_fake(fake):
...     cuda.device_count(), cuda.get_device_name(1)
(2, 'Fake B')
"""

from __future__ import annotations

import ctypes
import enum
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from puredl.cuda import _binding


class cudaError_t(enum.IntEnum):
    """The error codes the fake can return (values equal cuda-bindings' cudaError_t)."""

    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInitializationError = 3
    cudaErrorCudartUnloading = 4
    cudaErrorInvalidMemcpyDirection = 21
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorPeerAccessUnsupported = 217
    cudaErrorInvalidResourceHandle = 400
    cudaErrorNotReady = 600
    cudaErrorIllegalAddress = 700
    cudaErrorPeerAccessAlreadyEnabled = 704


_DESCRIPTIONS = {
    0: "no error",
    1: "invalid argument",
    2: "out of memory",
    3: "initialization error",
    4: "driver shutting down",
    21: "invalid copy direction for memcpy",
    35: "CUDA driver version is insufficient for CUDA runtime version",
    100: "no CUDA-capable device is detected",
    101: "invalid device ordinal",
    217: "peer access is not supported between these two devices",
    400: "invalid resource handle",
    600: "device not ready",
    700: "an illegal memory access was encountered",
    704: "peer access is already enabled",
}


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


@dataclass
class FakeDevice:
    """One simulated GPU."""

    name: str = "Fake GPU"
    total_memory: int = 8 << 30
    compute_capability: tuple[int, int] = (8, 0)
    multiprocessor_count: int = 108
    bandwidth: float = 1e12  # bytes per second of the virtual clock


@dataclass
class _Prop:
    """Mirror of the cudaDeviceProp fields puredl reads."""

    name: bytes
    major: int
    minor: int
    multiProcessorCount: int
    totalGlobalMem: int
    memoryBusWidth: int = 5120
    l2CacheSize: int = 40 << 20
    warpSize: int = 32
    maxThreadsPerBlock: int = 1024
    sharedMemPerBlock: int = 48 << 10
    pciDomainID: int = 0
    pciBusID: int = 0
    pciDeviceID: int = 0
    integrated: int = 0


class FakeHandle:
    """A stream or event handle (cuda-bindings' cudaStream_t/cudaEvent_t convert with int())."""

    def __init__(self, kind: str, value: int, device: int, flags: int) -> None:
        self.kind, self.value, self.device, self.flags = kind, value, device, flags
        self.time_ms: float | None = None  # events: virtual clock when recorded

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"<Fake{self.kind} {self.value:#x}>"


E = cudaError_t


class FakeRuntime:
    """Simulated ``cuda.bindings.runtime``; see the module docstring.

    Knobs: ``driver=False`` (every call fails with cudaErrorInsufficientDriver, as on a machine
    without a driver), ``peer`` (whether devices can access each other), ``fail(call, error)``
    (make the next ``times`` calls of ``call`` fail), ``busy`` (handles whose query says "not
    ready" until synchronized), ``unloading`` (every call fails as during interpreter shutdown).
    Inspection: ``calls`` (every call in order, with arguments), ``live()`` (what is not freed).
    """

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamDefault = 0
    cudaStreamNonBlocking = 1
    cudaEventDefault = 0
    cudaEventBlockingSync = 1
    cudaEventDisableTiming = 2
    cudaHostAllocDefault = 0
    cudaHostAllocPortable = 1

    def __init__(
        self, devices: Sequence[FakeDevice] = (FakeDevice(),), *, driver: bool = True, peer: bool = True
    ) -> None:
        self.devices = list(devices)
        self.driver = driver
        self.peer = peer
        self.unloading = False
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.failures: dict[str, list[cudaError_t]] = {}
        self.busy: set[int] = set()
        self.current = 0
        self.last_error = E.cudaSuccess
        self.device_memory: dict[int, tuple[int, bytearray]] = {}
        self.host_memory: dict[int, Any] = {}
        self.streams: dict[int, FakeHandle] = {}
        self.events: dict[int, FakeHandle] = {}
        self.peer_enabled: set[tuple[int, int]] = set()
        self.clock_ms = [0.0] * len(self.devices)
        self._addresses = itertools.count(0x7F00_0000_0000, 1 << 32)
        self._handles = itertools.count(0x5000)

    # -- knobs and inspection -------------------------------------------------------------
    def fail(self, call: str, error: cudaError_t, times: int = 1) -> None:
        """Make the next ``times`` calls of ``call`` return ``error``."""
        self.failures.setdefault(call, []).extend([error] * times)

    def live(self) -> dict[str, int]:
        """How many allocations, pinned buffers, streams and events are still alive."""
        return {
            "device_memory": len(self.device_memory),
            "host_memory": len(self.host_memory),
            "streams": len(self.streams),
            "events": len(self.events),
        }

    def names(self, prefix: str = "") -> list[str]:
        """Names of the calls made so far (optionally only those starting with ``prefix``)."""
        return [name for name, _ in self.calls if name.startswith(prefix)]

    # -- plumbing ---------------------------------------------------------------------------
    def _enter(self, name: str, args: tuple[Any, ...]) -> cudaError_t:
        self.calls.append((name, args))
        if self.unloading:
            return E.cudaErrorCudartUnloading
        if not self.driver:
            return E.cudaErrorInsufficientDriver
        queue = self.failures.get(name)
        if queue:
            return queue.pop(0)
        return E.cudaSuccess

    def _error(self, err: cudaError_t, outputs: int) -> tuple[Any, ...]:
        self.last_error = err
        return (err,) + (None,) * outputs

    def _find(self, ptr: Any) -> tuple[int, bytearray, int] | None:
        """(device, storage, offset) for a device pointer inside an allocation."""
        if not isinstance(ptr, int):
            return None
        for base, (device, storage) in self.device_memory.items():
            if base <= ptr < base + len(storage):
                return device, storage, ptr - base
        return None

    def _host_view(self, obj: Any) -> memoryview | None:
        if isinstance(obj, int):
            for base, array in self.host_memory.items():
                if base <= obj < base + ctypes.sizeof(array):
                    return memoryview(array).cast("B")[obj - base :]
            return None
        try:
            return memoryview(obj).cast("B")
        except TypeError:
            return None

    def _stream(self, stream: Any) -> FakeHandle | None | bool:
        """The stream for a handle; None for the default stream 0; False if unknown."""
        if isinstance(stream, int) and stream == 0:
            return None
        handle = self.streams.get(int(stream)) if isinstance(stream, (int, FakeHandle)) else None
        return handle if handle is not None else False

    def _advance(self, device: int, nbytes: int) -> None:
        self.clock_ms[device] += nbytes / self.devices[device].bandwidth * 1e3

    # -- errors and versions ----------------------------------------------------------------
    def cudaGetErrorName(self, error: Any) -> tuple[Any, bytes]:
        return E.cudaSuccess, cudaError_t(int(error)).name.encode()

    def cudaGetErrorString(self, error: Any) -> tuple[Any, bytes]:
        return E.cudaSuccess, _DESCRIPTIONS[int(error)].encode()

    def cudaGetLastError(self) -> tuple[Any]:
        self.calls.append(("cudaGetLastError", ()))
        err, self.last_error = self.last_error, E.cudaSuccess
        return (err,)

    def cudaDriverGetVersion(self) -> tuple[Any, int]:
        return E.cudaSuccess, 13000 if self.driver else 0

    def cudaRuntimeGetVersion(self) -> tuple[Any, int]:
        return E.cudaSuccess, 13050

    # -- devices ----------------------------------------------------------------------------
    def cudaGetDeviceCount(self) -> tuple[Any, Any]:
        err = self._enter("cudaGetDeviceCount", ())
        if err or not self.devices:
            return self._error(err or E.cudaErrorNoDevice, 1)
        return E.cudaSuccess, len(self.devices)

    def cudaGetDevice(self) -> tuple[Any, Any]:
        err = self._enter("cudaGetDevice", ())
        return self._error(err, 1) if err else (E.cudaSuccess, self.current)

    def cudaSetDevice(self, device: int) -> tuple[Any]:
        err = self._enter("cudaSetDevice", (device,))
        if not err and not 0 <= device < len(self.devices):
            err = E.cudaErrorInvalidDevice
        if err:
            return self._error(err, 0)
        self.current = device
        return (E.cudaSuccess,)

    def cudaGetDeviceProperties(self, device: int) -> tuple[Any, Any]:
        err = self._enter("cudaGetDeviceProperties", (device,))
        if not err and not 0 <= device < len(self.devices):
            err = E.cudaErrorInvalidDevice
        if err:
            return self._error(err, 1)
        d = self.devices[device]
        major, minor = d.compute_capability
        return E.cudaSuccess, _Prop(
            name=d.name.encode() + b"\0" * 4,
            major=major,
            minor=minor,
            multiProcessorCount=d.multiprocessor_count,
            totalGlobalMem=d.total_memory,
            pciBusID=device + 1,
        )

    def cudaMemGetInfo(self) -> tuple[Any, Any, Any]:
        err = self._enter("cudaMemGetInfo", ())
        if err:
            return self._error(err, 2)
        used = sum(len(s) for dev, s in self.device_memory.values() if dev == self.current)
        total = self.devices[self.current].total_memory
        return E.cudaSuccess, total - used, total

    def cudaDeviceSynchronize(self) -> tuple[Any]:
        err = self._enter("cudaDeviceSynchronize", ())
        if err:
            return self._error(err, 0)
        self.busy = {h for h in self.busy if self._device_of(h) != self.current}
        return (E.cudaSuccess,)

    def _device_of(self, value: int) -> int | None:
        handle = self.streams.get(value) or self.events.get(value)
        return None if handle is None else handle.device

    def cudaDeviceCanAccessPeer(self, device: int, peerDevice: int) -> tuple[Any, Any]:
        err = self._enter("cudaDeviceCanAccessPeer", (device, peerDevice))
        return self._error(err, 1) if err else (E.cudaSuccess, int(self.peer and device != peerDevice))

    def cudaDeviceEnablePeerAccess(self, peerDevice: int, flags: int) -> tuple[Any]:
        err = self._enter("cudaDeviceEnablePeerAccess", (peerDevice, flags))
        pair = (self.current, peerDevice)
        if not err and not self.peer:
            err = E.cudaErrorPeerAccessUnsupported
        if not err and pair in self.peer_enabled:
            err = E.cudaErrorPeerAccessAlreadyEnabled
        if err:
            return self._error(err, 0)
        self.peer_enabled.add(pair)
        return (E.cudaSuccess,)

    # -- memory -----------------------------------------------------------------------------
    def cudaMalloc(self, size: int) -> tuple[Any, Any]:
        err = self._enter("cudaMalloc", (size,))
        if not err:
            used = sum(len(s) for dev, s in self.device_memory.values() if dev == self.current)
            if used + size > self.devices[self.current].total_memory:
                err = E.cudaErrorMemoryAllocation
        if err:
            return self._error(err, 1)
        ptr = next(self._addresses)
        self.device_memory[ptr] = (self.current, bytearray(b"\xa5" * size))  # not cleared, like CUDA
        return E.cudaSuccess, ptr

    def cudaFree(self, devPtr: int) -> tuple[Any]:
        err = self._enter("cudaFree", (devPtr,))
        if not err and devPtr not in self.device_memory:
            err = E.cudaErrorInvalidValue
        if not err and self.device_memory[devPtr][0] != self.current:
            err = E.cudaErrorInvalidDevice
        if err:
            return self._error(err, 0)
        del self.device_memory[devPtr]
        return (E.cudaSuccess,)

    def cudaHostAlloc(self, size: int, flags: int) -> tuple[Any, Any]:
        err = self._enter("cudaHostAlloc", (size, flags))
        if err:
            return self._error(err, 1)
        array = (ctypes.c_char * size)()
        self.host_memory[ctypes.addressof(array)] = array
        return E.cudaSuccess, ctypes.addressof(array)

    def cudaFreeHost(self, ptr: int) -> tuple[Any]:
        err = self._enter("cudaFreeHost", (ptr,))
        if not err and ptr not in self.host_memory:
            err = E.cudaErrorInvalidValue
        if err:
            return self._error(err, 0)
        del self.host_memory[ptr]
        return (E.cudaSuccess,)

    def cudaMemsetAsync(self, devPtr: int, value: int, count: int, stream: Any) -> tuple[Any]:
        err = self._enter("cudaMemsetAsync", (devPtr, value, count, stream))
        found = self._find(devPtr)
        handle = self._stream(stream)
        if not err and (found is None or handle is False or found[2] + count > len(found[1])):
            err = E.cudaErrorInvalidValue
        if not err and (found[0] != self.current or (handle and handle.device != found[0])):
            err = E.cudaErrorInvalidDevice
        if err:
            return self._error(err, 0)
        device, storage, offset = found
        storage[offset : offset + count] = bytes([value & 0xFF]) * count
        self._advance(device, count)
        return (E.cudaSuccess,)

    def _copy(self, name: str, dst: Any, src: Any, count: int, kind: int, stream: Any) -> tuple[Any]:
        dst_dev, src_dev = self._find(dst), self._find(src)
        handle = self._stream(stream)
        if handle is False:
            return self._error(E.cudaErrorInvalidResourceHandle, 0)
        want = {
            cudaMemcpyKind.cudaMemcpyHostToDevice: (True, False),
            cudaMemcpyKind.cudaMemcpyDeviceToHost: (False, True),
            cudaMemcpyKind.cudaMemcpyDeviceToDevice: (True, True),
        }.get(int(kind))
        if want is None or want != (dst_dev is not None, src_dev is not None):
            return self._error(E.cudaErrorInvalidMemcpyDirection, 0)
        on = (dst_dev or src_dev)[0]
        if on != self.current or (dst_dev and src_dev and dst_dev[0] != src_dev[0]):
            return self._error(E.cudaErrorInvalidDevice, 0)
        if handle and handle.device != on:
            return self._error(E.cudaErrorInvalidDevice, 0)
        source = src_dev[1][src_dev[2] : src_dev[2] + count] if src_dev else self._host_view(src)
        target = dst_dev[1] if dst_dev else self._host_view(dst)
        offset = dst_dev[2] if dst_dev else 0
        if source is None or target is None or len(source) < count or offset + count > len(target):
            return self._error(E.cudaErrorInvalidValue, 0)
        if isinstance(target, memoryview) and target.readonly:
            return self._error(E.cudaErrorInvalidValue, 0)
        target[offset : offset + count] = bytes(source[:count])
        self._advance(on, count * (2 if src_dev and dst_dev else 1))
        return (E.cudaSuccess,)

    def cudaMemcpy(self, dst: Any, src: Any, count: int, kind: Any) -> tuple[Any]:
        err = self._enter("cudaMemcpy", (dst, src, count, kind))
        return self._error(err, 0) if err else self._copy("cudaMemcpy", dst, src, count, kind, 0)

    def cudaMemcpyAsync(self, dst: Any, src: Any, count: int, kind: Any, stream: Any) -> tuple[Any]:
        err = self._enter("cudaMemcpyAsync", (dst, src, count, kind, stream))
        return self._error(err, 0) if err else self._copy("cudaMemcpyAsync", dst, src, count, kind, stream)

    def _peer(
        self, dst: int, dstDevice: int, src: int, srcDevice: int, count: int, stream: Any
    ) -> tuple[Any]:
        d, s = self._find(dst), self._find(src)
        handle = self._stream(stream)
        if d is None or s is None or handle is False or d[0] != dstDevice or s[0] != srcDevice:
            return self._error(E.cudaErrorInvalidValue, 0)
        if d[2] + count > len(d[1]) or s[2] + count > len(s[1]):
            return self._error(E.cudaErrorInvalidValue, 0)
        d[1][d[2] : d[2] + count] = s[1][s[2] : s[2] + count]
        self._advance(self.current, 2 * count)
        return (E.cudaSuccess,)

    def cudaMemcpyPeer(self, dst: int, dstDevice: int, src: int, srcDevice: int, count: int) -> tuple[Any]:
        err = self._enter("cudaMemcpyPeer", (dst, dstDevice, src, srcDevice, count))
        return self._error(err, 0) if err else self._peer(dst, dstDevice, src, srcDevice, count, 0)

    def cudaMemcpyPeerAsync(
        self,
        dst: int,
        dstDevice: int,
        src: int,
        srcDevice: int,
        count: int,
        stream: Any,
    ) -> tuple[Any]:
        err = self._enter("cudaMemcpyPeerAsync", (dst, dstDevice, src, srcDevice, count, stream))
        return self._error(err, 0) if err else self._peer(dst, dstDevice, src, srcDevice, count, stream)

    # -- streams ----------------------------------------------------------------------------
    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[Any, Any]:
        err = self._enter("cudaStreamCreateWithFlags", (flags,))
        if err:
            return self._error(err, 1)
        handle = FakeHandle("Stream", next(self._handles), self.current, flags)
        self.streams[handle.value] = handle
        return E.cudaSuccess, handle

    def cudaStreamDestroy(self, stream: Any) -> tuple[Any]:
        err = self._enter("cudaStreamDestroy", (stream,))
        if not err and self._stream(stream) in (None, False):
            err = E.cudaErrorInvalidResourceHandle
        if err:
            return self._error(err, 0)
        del self.streams[int(stream)]
        self.busy.discard(int(stream))
        return (E.cudaSuccess,)

    def cudaStreamSynchronize(self, stream: Any) -> tuple[Any]:
        err = self._enter("cudaStreamSynchronize", (stream,))
        if not err and self._stream(stream) is False:
            err = E.cudaErrorInvalidResourceHandle
        if err:
            return self._error(err, 0)
        self.busy.discard(int(stream))
        return (E.cudaSuccess,)

    def cudaStreamQuery(self, stream: Any) -> tuple[Any]:
        err = self._enter("cudaStreamQuery", (stream,))
        if not err and self._stream(stream) is False:
            err = E.cudaErrorInvalidResourceHandle
        if not err and int(stream) in self.busy:
            err = E.cudaErrorNotReady
        return self._error(err, 0) if err else (E.cudaSuccess,)

    def cudaStreamWaitEvent(self, stream: Any, event: Any, flags: int) -> tuple[Any]:
        err = self._enter("cudaStreamWaitEvent", (stream, event, flags))
        if not err and (self._stream(stream) is False or int(event) not in self.events):
            err = E.cudaErrorInvalidResourceHandle
        return self._error(err, 0) if err else (E.cudaSuccess,)

    # -- events -----------------------------------------------------------------------------
    def cudaEventCreateWithFlags(self, flags: int) -> tuple[Any, Any]:
        err = self._enter("cudaEventCreateWithFlags", (flags,))
        if err:
            return self._error(err, 1)
        handle = FakeHandle("Event", next(self._handles), self.current, flags)
        self.events[handle.value] = handle
        return E.cudaSuccess, handle

    def cudaEventDestroy(self, event: Any) -> tuple[Any]:
        err = self._enter("cudaEventDestroy", (event,))
        if not err and int(event) not in self.events:
            err = E.cudaErrorInvalidResourceHandle
        if err:
            return self._error(err, 0)
        del self.events[int(event)]
        self.busy.discard(int(event))
        return (E.cudaSuccess,)

    def cudaEventRecord(self, event: Any, stream: Any) -> tuple[Any]:
        err = self._enter("cudaEventRecord", (event, stream))
        handle = self.events.get(int(event)) if not err else None
        on = self._stream(stream)
        if not err and (handle is None or on is False):
            err = E.cudaErrorInvalidResourceHandle
        if not err and handle.device != (self.current if on is None else on.device):
            err = E.cudaErrorInvalidResourceHandle  # event and stream must share a device
        if err:
            return self._error(err, 0)
        handle.time_ms = self.clock_ms[handle.device]
        return (E.cudaSuccess,)

    def cudaEventSynchronize(self, event: Any) -> tuple[Any]:
        err = self._enter("cudaEventSynchronize", (event,))
        if not err and int(event) not in self.events:
            err = E.cudaErrorInvalidResourceHandle
        if err:
            return self._error(err, 0)
        self.busy.discard(int(event))
        return (E.cudaSuccess,)

    def cudaEventQuery(self, event: Any) -> tuple[Any]:
        err = self._enter("cudaEventQuery", (event,))
        if not err and int(event) not in self.events:
            err = E.cudaErrorInvalidResourceHandle
        if not err and int(event) in self.busy:
            err = E.cudaErrorNotReady
        return self._error(err, 0) if err else (E.cudaSuccess,)

    def cudaEventElapsedTime(self, start: Any, end: Any) -> tuple[Any, Any]:
        err = self._enter("cudaEventElapsedTime", (start, end))
        a, b = self.events.get(int(start)), self.events.get(int(end))
        if not err and (a is None or b is None or a.time_ms is None or b.time_ms is None):
            err = E.cudaErrorInvalidResourceHandle
        if not err and (a.flags | b.flags) & self.cudaEventDisableTiming:
            err = E.cudaErrorInvalidResourceHandle
        if not err and (int(start) in self.busy or int(end) in self.busy):
            err = E.cudaErrorNotReady
        return self._error(err, 1) if err else (E.cudaSuccess, b.time_ms - a.time_ms)


@contextmanager
def use_fake(fake: FakeRuntime | None = None) -> Iterator[FakeRuntime]:
    """Run the block with ``fake`` (default: one FakeDevice) as puredl.cuda's runtime."""
    with _binding.use_runtime(fake if fake is not None else FakeRuntime()) as installed:
        yield installed
