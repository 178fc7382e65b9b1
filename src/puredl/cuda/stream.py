"""Stream: an ordered queue of GPU work on one device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from puredl.cuda import _binding
from puredl.cuda._binding import check, runtime
from puredl.cuda._handle import CudaHandle
from puredl.cuda.device import DeviceLike, resolve_index

if TYPE_CHECKING:
    from puredl.cuda.event import Event


def _destroy_stream(rt: Any, handle: Any) -> None:
    check(rt, rt.cudaStreamDestroy(handle), "cudaStreamDestroy", handle)


class Stream(CudaHandle):
    """A CUDA stream on ``device`` (None: the current device).

    Work queued on one stream runs in order; different streams may overlap. ``non_blocking``
    streams do not wait for the legacy default stream.

    >>> from puredl.cuda.testing import FakeRuntime
    >>> from puredl.cuda._binding import use_runtime
    >>> with use_runtime(FakeRuntime()), Stream() as s:
    ...     s.synchronize(); s.query()
    True
    """

    def __init__(self, device: DeviceLike = None, *, non_blocking: bool = False) -> None:
        rt = runtime()
        index = resolve_index(device)
        flags = rt.cudaStreamNonBlocking if non_blocking else rt.cudaStreamDefault
        with _binding.on_device(rt, index):
            handle = check(rt, rt.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags", flags)
        self._rt = rt
        self.handle = handle
        self.device = index
        self.non_blocking = non_blocking
        self._own(_destroy_stream, rt, handle)

    def synchronize(self) -> None:
        """Block until all work queued on this stream has finished."""
        self._check_open("synchronize")
        check(self._rt, self._rt.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize", self.handle)

    def query(self) -> bool:
        """True when all queued work has finished (idle), False while some is still running."""
        self._check_open("query")
        result = self._rt.cudaStreamQuery(self.handle)
        if result[0] and int(result[0]) == _binding.NOT_READY:
            self._rt.cudaGetLastError()  # "not ready" is an answer, not a failure
            return False
        check(self._rt, result, "cudaStreamQuery", self.handle)
        return True

    def wait_event(self, event: Event) -> None:
        """Make later work on this stream wait until ``event`` (recorded on any stream) completes."""
        self._check_open("wait for an event")
        event._check_open("be waited on")
        check(
            self._rt,
            self._rt.cudaStreamWaitEvent(self.handle, event.handle, 0),
            "cudaStreamWaitEvent",
            self.handle,
            event.handle,
            0,
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"handle={int(self.handle):#x}"
        return f"Stream(cuda:{self.device}, {state})"


def stream_handle(stream: Stream | None, device: int, what: str) -> Any:
    """The raw handle to pass for ``stream`` (0, the legacy default stream, for None)."""
    if stream is None:
        return 0
    if not isinstance(stream, Stream):
        raise TypeError(f"{what}: stream must be a puredl.cuda.Stream or None, not {type(stream).__name__}")
    stream._check_open(what)
    if stream.device != device:
        raise ValueError(f"{what}: {stream!r} is on cuda:{stream.device} but the memory is on cuda:{device}")
    return stream.handle
