"""Event: a marker in a stream, for timing GPU work and for waiting on it."""

from __future__ import annotations

from typing import Any

from puredl.cuda import _binding
from puredl.cuda._binding import check, runtime
from puredl.cuda._handle import CudaHandle
from puredl.cuda.device import DeviceLike, resolve_index
from puredl.cuda.stream import Stream


def _destroy_event(rt: Any, handle: Any) -> None:
    check(rt, rt.cudaEventDestroy(handle), "cudaEventDestroy", handle)


class Event(CudaHandle):
    """A CUDA event on ``device`` (None: the current device).

    ``timing=True`` lets ``elapsed_time`` measure the GPU time between two recorded events;
    ``blocking=True`` makes ``synchronize`` sleep instead of spinning.

    >>> from puredl.cuda.testing import FakeRuntime
    >>> from puredl.cuda._binding import use_runtime
    >>> with use_runtime(FakeRuntime()), Stream() as s, Event() as start, Event() as end:
    ...     start.record(s); end.record(s); end.synchronize()
    ...     start.elapsed_time(end)
    0.0
    """

    def __init__(self, timing: bool = True, device: DeviceLike = None, *, blocking: bool = False) -> None:
        rt = runtime()
        index = resolve_index(device)
        flags = rt.cudaEventDefault if timing else rt.cudaEventDisableTiming
        if blocking:
            flags |= rt.cudaEventBlockingSync
        with _binding.on_device(rt, index):
            handle = check(rt, rt.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags", flags)
        self._rt = rt
        self.handle = handle
        self.device = index
        self.timing = timing
        self.recorded = False
        self._own(_destroy_event, rt, handle)

    def record(self, stream: Stream | None = None) -> None:
        """Mark the current end of ``stream``'s queue (None: the legacy default stream)."""
        self._check_open("record")
        if stream is None:
            handle = 0
        elif isinstance(stream, Stream):
            stream._check_open("record an event on it")
            if stream.device != self.device:
                raise ValueError(f"{self!r} cannot be recorded on {stream!r}: the devices differ")
            handle = stream.handle
        else:
            raise TypeError(
                f"record: stream must be a puredl.cuda.Stream or None, not {type(stream).__name__}"
            )
        rt = self._rt
        # The legacy default stream (0) means the current device's: make it the event's device.
        previous = _binding.switch_device(rt, self.device)
        try:
            check(rt, rt.cudaEventRecord(self.handle, handle), "cudaEventRecord", self.handle, handle)
        finally:
            _binding.restore_device(rt, previous)
        self.recorded = True

    def synchronize(self) -> None:
        """Block until the work before the recorded point has finished."""
        self._check_open("synchronize")
        check(self._rt, self._rt.cudaEventSynchronize(self.handle), "cudaEventSynchronize", self.handle)

    def query(self) -> bool:
        """True when the recorded work has finished (or nothing was recorded), False while it runs."""
        self._check_open("query")
        result = self._rt.cudaEventQuery(self.handle)
        if result[0] and int(result[0]) == _binding.NOT_READY:
            self._rt.cudaGetLastError()  # "not ready" is an answer, not a failure
            return False
        check(self._rt, result, "cudaEventQuery", self.handle)
        return True

    def elapsed_time(self, end: Event) -> float:
        """Milliseconds of GPU time from this event to ``end`` (both recorded and completed)."""
        self._check_open("measure elapsed time")
        if not isinstance(end, Event):
            raise TypeError(f"elapsed_time needs another Event, not {type(end).__name__}")
        end._check_open("measure elapsed time")
        for event in (self, end):
            if not event.timing:
                raise ValueError(f"{event!r} was created with timing=False; use Event(timing=True)")
            if not event.recorded:
                raise ValueError(f"{event!r} was never recorded; call record(stream) on both events first")
        return float(
            check(
                self._rt,
                self._rt.cudaEventElapsedTime(self.handle, end.handle),
                "cudaEventElapsedTime",
                self.handle,
                end.handle,
            )
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"handle={int(self.handle):#x}"
        return f"Event(cuda:{self.device}, timing={self.timing}, {state})"
