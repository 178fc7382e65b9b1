"""DeviceMemory (GPU allocations) and HostMemory (pinned host buffers for async copies)."""

from __future__ import annotations

import ctypes
from typing import Any

from puredl.cuda import _binding
from puredl.cuda._binding import check, restore_device, runtime, switch_device
from puredl.cuda._handle import CudaHandle
from puredl.cuda.device import DeviceLike, enable_peer_access, get_device_memory, resolve_index
from puredl.cuda.errors import CudaError
from puredl.cuda.stream import Stream, stream_handle

# cudaMemcpyKind values (the same in every CUDA version).
_HOST_TO_DEVICE, _DEVICE_TO_HOST, _DEVICE_TO_DEVICE = 1, 2, 3


def format_bytes(n: float) -> str:
    """``"1.0 MiB"``: a byte count for people.

    >>> format_bytes(3 << 20)
    '3.0 MiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _positive_size(nbytes: Any, what: str) -> int:
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
        raise ValueError(f"{what} must be a positive int number of bytes, not {nbytes!r}")
    return nbytes


def _count(nbytes: int | None, default: int, limit: int, what: str) -> int:
    """Bytes an operation touches: ``nbytes`` or ``default``, at most ``limit``."""
    n = default if nbytes is None else nbytes
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{what}: nbytes must be a non-negative int, not {nbytes!r}")
    if n > limit:
        raise ValueError(f"{what}: {n} bytes do not fit in {limit} bytes")
    return n


def _free_device(rt: Any, ptr: int, device: int) -> None:
    previous = switch_device(rt, device)
    try:
        check(rt, rt.cudaFree(ptr), "cudaFree", ptr)
    finally:
        restore_device(rt, previous)


def _free_host(rt: Any, ptr: int) -> None:
    check(rt, rt.cudaFreeHost(ptr), "cudaFreeHost", ptr)


class HostMemory(CudaHandle):
    """Page-locked (pinned) host memory: the host side of asynchronous copies.

    >>> from puredl.cuda.testing import FakeRuntime
    >>> from puredl.cuda._binding import use_runtime
    >>> with use_runtime(FakeRuntime()), HostMemory(4) as host:
    ...     host.write(b"abcd"); host.read(2)
    b'ab'
    """

    def __init__(self, nbytes: int) -> None:
        rt = runtime()
        nbytes = _positive_size(nbytes, "HostMemory size")
        # Portable: usable by every device's context, so one buffer can feed several GPUs.
        flags = rt.cudaHostAllocPortable
        self.ptr = int(check(rt, rt.cudaHostAlloc(nbytes, flags), "cudaHostAlloc", nbytes, flags))
        self.nbytes = nbytes
        self._rt = rt
        self._own(_free_host, rt, self.ptr)

    def view(self) -> memoryview:
        """A writable byte view of the buffer, valid only until close(); prefer read()/write()."""
        self._check_open("view")
        array = (ctypes.c_char * self.nbytes).from_address(self.ptr)
        # The array keeps this owner alive, so garbage collection cannot free memory under a view.
        array._owner = self  # type: ignore[attr-defined]
        return memoryview(array).cast("B")

    def write(self, data: Any, offset: int = 0) -> None:
        """Copy the bytes of ``data`` (any bytes-like object) into the buffer at ``offset``."""
        self._check_open("write")
        source = memoryview(data).cast("B")
        _check_span(offset, source.nbytes, self.nbytes, "HostMemory.write")
        self.view()[offset : offset + source.nbytes] = source

    def read(self, nbytes: int | None = None, offset: int = 0) -> bytes:
        """A copy of ``nbytes`` bytes (None: to the end) starting at ``offset``."""
        self._check_open("read")
        _check_span(offset, 0, self.nbytes, "HostMemory.read")
        n = self.nbytes - offset if nbytes is None else nbytes
        _check_span(offset, n, self.nbytes, "HostMemory.read")
        return ctypes.string_at(self.ptr + offset, n)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"ptr={self.ptr:#x}"
        return f"HostMemory({self.nbytes} bytes pinned, {state})"


def _check_span(offset: Any, n: Any, size: int, what: str) -> None:
    for name, value in (("offset", offset), ("nbytes", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what}: {name} must be a non-negative int, not {value!r}")
    if offset + n > size:
        raise ValueError(f"{what}: bytes {offset}..{offset + n} do not fit in {size} bytes")


def _host_buffer(buffer: Any, writable: bool, what: str) -> tuple[Any, int]:
    """(argument for cuda-bindings, nbytes) for a host buffer or HostMemory."""
    if isinstance(buffer, HostMemory):
        buffer._check_open(what)
        return buffer.ptr, buffer.nbytes
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(
            f"{what} needs bytes, bytearray, array.array, memoryview or HostMemory, "
            f"not {type(buffer).__name__}"
        ) from None
    if not view.c_contiguous:
        raise ValueError(f"{what} needs a contiguous buffer")
    if writable and view.readonly:
        raise TypeError(
            f"{what} needs a writable buffer (bytearray, array.array), not read-only {type(buffer).__name__}"
        )
    return view.cast("B"), view.nbytes


class DeviceMemory(CudaHandle):
    """``nbytes`` of GPU memory on ``device`` (None: the current device), freed by close().

    Operations take ``stream=None`` (blocking: they return when the work is done) or a Stream
    (queued: they return at once; synchronize the stream or an event before using the result).

    >>> from puredl.cuda.testing import FakeRuntime
    >>> from puredl.cuda._binding import use_runtime
    >>> with use_runtime(FakeRuntime()), DeviceMemory(4) as mem:
    ...     mem.copy_from_host(b"abcd"); mem.memset(0x7a, 2); bytes(mem.copy_to_host())
    b'zzcd'
    """

    def __init__(self, nbytes: int, device: DeviceLike = None) -> None:
        rt = runtime()
        nbytes = _positive_size(nbytes, "DeviceMemory size")
        index = resolve_index(device)
        previous = switch_device(rt, index)
        try:
            self.ptr = int(check(rt, rt.cudaMalloc(nbytes), "cudaMalloc", nbytes))
        except CudaError as exc:
            if exc.code != _binding.MEMORY_ALLOCATION:
                raise
            raise CudaError(
                code=exc.code,
                name=exc.name,
                description=exc.description,
                call=exc.call,
                hint=_oom_hint(nbytes, index),
            ) from exc
        finally:
            restore_device(rt, previous)
        self.nbytes = nbytes
        self.device = index
        self._rt = rt
        self._own(_free_device, rt, self.ptr, index)

    def memset(self, value: int, nbytes: int | None = None, stream: Stream | None = None) -> None:
        """Set the first ``nbytes`` (None: all) bytes to the byte ``value`` (0..255)."""
        self._check_open("memset")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise ValueError(f"memset value must be a byte (int 0..255), not {value!r}")
        n = _count(nbytes, self.nbytes, self.nbytes, "memset")
        handle = stream_handle(stream, self.device, "memset")
        rt = self._rt
        previous = switch_device(rt, self.device)
        try:
            check(
                rt,
                rt.cudaMemsetAsync(self.ptr, value, n, handle),
                "cudaMemsetAsync",
                self.ptr,
                value,
                n,
                handle,
            )
            if stream is None:
                check(rt, rt.cudaStreamSynchronize(0), "cudaStreamSynchronize", 0)
        finally:
            restore_device(rt, previous)

    def copy_to(self, other: DeviceMemory, nbytes: int | None = None, stream: Stream | None = None) -> None:
        """Copy ``nbytes`` (None: all of this block) into ``other``, on the same or another device.

        Between devices the copy goes peer to peer where the hardware allows (enabled on first
        use), through the host otherwise; ``stream`` may then belong to either device.
        """
        self._check_open("copy from it")
        if not isinstance(other, DeviceMemory):
            raise TypeError(
                f"copy_to needs a DeviceMemory, not {type(other).__name__}; use copy_to_host for host buffers"
            )
        other._check_open("copy into it")
        n = _count(nbytes, self.nbytes, min(self.nbytes, other.nbytes), "copy_to")
        rt = self._rt
        if other.device == self.device:
            handle = stream_handle(stream, self.device, "copy_to")
            previous = switch_device(rt, self.device)
            try:
                kind = _DEVICE_TO_DEVICE
                check(
                    rt,
                    rt.cudaMemcpyAsync(other.ptr, self.ptr, n, kind, handle),
                    "cudaMemcpyAsync",
                    other.ptr,
                    self.ptr,
                    n,
                    kind,
                    handle,
                )
                if stream is None:
                    check(rt, rt.cudaStreamSynchronize(0), "cudaStreamSynchronize", 0)
            finally:
                restore_device(rt, previous)
            return
        on = stream.device if isinstance(stream, Stream) else self.device
        if on not in (self.device, other.device):
            raise ValueError(f"copy_to: {stream!r} must be on cuda:{self.device} or cuda:{other.device}")
        handle = stream_handle(stream, on, "copy_to")
        # Direct access both ways when the hardware allows; cudaMemcpyPeer stages through the host otherwise.
        enable_peer_access(self.device, other.device)
        enable_peer_access(other.device, self.device)
        previous = switch_device(rt, on)
        try:
            args = (other.ptr, other.device, self.ptr, self.device, n)
            if stream is None:
                check(rt, rt.cudaMemcpyPeer(*args), "cudaMemcpyPeer", *args)
                check(rt, rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
            else:
                check(rt, rt.cudaMemcpyPeerAsync(*args, handle), "cudaMemcpyPeerAsync", *args, handle)
        finally:
            restore_device(rt, previous)

    def copy_from_host(self, buffer: Any, nbytes: int | None = None, stream: Stream | None = None) -> None:
        """Copy ``buffer`` (bytes, bytearray, array, memoryview or HostMemory) to the block's start.

        With a ``stream`` the copy is queued and ``buffer`` must be pinned HostMemory (a pageable
        buffer could be changed or freed before the GPU reads it).
        """
        self._check_open("copy into it")
        _need_pinned(buffer, stream, "copy_from_host")
        source, size = _host_buffer(buffer, writable=False, what="copy_from_host")
        n = _count(nbytes, size, min(size, self.nbytes), "copy_from_host")
        self._host_copy(self.ptr, source, n, _HOST_TO_DEVICE, stream, "copy_from_host")

    def copy_to_host(self, out: Any = None, nbytes: int | None = None, stream: Stream | None = None) -> Any:
        """Copy this block into ``out`` (None: a new bytearray of ``nbytes`` or all bytes) and return it.

        With a ``stream`` the copy is queued and ``out`` must be pinned HostMemory; read it after
        the stream (or an event) is synchronized.
        """
        self._check_open("copy from it")
        _need_pinned(out, stream, "copy_to_host")
        if out is None:
            out = bytearray(_count(nbytes, self.nbytes, self.nbytes, "copy_to_host"))
        target, size = _host_buffer(out, writable=True, what="copy_to_host")
        n = _count(nbytes, size, min(size, self.nbytes), "copy_to_host")
        self._host_copy(target, self.ptr, n, _DEVICE_TO_HOST, stream, "copy_to_host")
        return out

    def _host_copy(self, dst: Any, src: Any, n: int, kind: int, stream: Stream | None, what: str) -> None:
        rt = self._rt
        handle = stream_handle(stream, self.device, what)
        previous = switch_device(rt, self.device)
        try:
            if stream is None:
                check(rt, rt.cudaMemcpy(dst, src, n, kind), "cudaMemcpy", dst, src, n, kind)
            else:
                check(
                    rt,
                    rt.cudaMemcpyAsync(dst, src, n, kind, handle),
                    "cudaMemcpyAsync",
                    dst,
                    src,
                    n,
                    kind,
                    handle,
                )
        finally:
            restore_device(rt, previous)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"ptr={self.ptr:#x}"
        return f"DeviceMemory({self.nbytes} bytes on cuda:{self.device}, {state})"


def _need_pinned(buffer: Any, stream: Stream | None, what: str) -> None:
    if stream is not None and not isinstance(buffer, HostMemory):
        raise TypeError(
            f"{what} with a stream needs pinned HostMemory (got {type(buffer).__name__}); "
            "pass stream=None for a blocking copy of an ordinary buffer"
        )


def _oom_hint(nbytes: int, device: int) -> str:
    try:
        free, total = get_device_memory(device)
    except Exception:  # the hint is optional; the out-of-memory error is what matters
        return f"asked for {format_bytes(nbytes)} on cuda:{device}"
    return (
        f"asked for {format_bytes(nbytes)} on cuda:{device}, which has {format_bytes(free)} free "
        f"of {format_bytes(total)}; free other allocations or ask for less"
    )
