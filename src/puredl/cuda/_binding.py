"""The one place that reaches cuda-bindings' runtime module; tests swap in a fake.

cuda-bindings returns ``(err, *values)`` from every runtime call. ``check`` turns a non-zero
``err`` into ``CudaError`` (or ``CudaUnavailableError`` for a missing driver or device) and
returns the values. Everything else in ``puredl.cuda`` goes through ``runtime()`` and ``check``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from puredl.cuda.errors import CudaError, CudaUnavailableError

# Error codes that mean "no usable GPU here" rather than "this call was wrong".
UNAVAILABLE_CODES = frozenset(
    {
        3,  # cudaErrorInitializationError
        34,  # cudaErrorStubLibrary
        35,  # cudaErrorInsufficientDriver
        46,  # cudaErrorDevicesUnavailable
        100,  # cudaErrorNoDevice
        802,  # cudaErrorSystemNotReady
        803,  # cudaErrorSystemDriverMismatch
        804,  # cudaErrorCompatNotSupportedOnDevice
    }
)
NOT_READY = 600  # cudaErrorNotReady: a query saying "still busy", not a failure
PEER_ALREADY_ENABLED = 704  # cudaErrorPeerAccessAlreadyEnabled
MEMORY_ALLOCATION = 2  # cudaErrorMemoryAllocation

_HINTS = {
    MEMORY_ALLOCATION: "out of device memory: free other allocations or use smaller sizes "
    "(get_device_memory() shows what is free)",
    700: "a kernel touched an illegal address; the CUDA context is unusable until the process restarts",
    101: "that device index does not exist (device_count() says how many there are)",
}

_module: Any = None  # the imported cuda.bindings.runtime, cached after the first import
_override: Any = None  # a fake runtime installed by set_runtime()
cache: dict[Any, Any] = {}  # per-runtime facts that never change (device properties); cleared on swap


def runtime() -> Any:
    """The cuda-bindings runtime module (or the installed fake), imported on first use.

    >>> from puredl.cuda.testing import FakeRuntime
    >>> with use_runtime(FakeRuntime()) as rt:
    ...     runtime() is rt
    True
    """
    global _module
    if _override is not None:
        return _override
    if _module is None:
        from puredl._optional import MissingDependencyError, require

        try:
            _module = require("cuda.bindings.runtime", "cuda", "CUDA runtime access")
        except (MissingDependencyError, OSError) as exc:
            raise CudaUnavailableError(f"cuda-bindings cannot be imported ({exc})") from exc
    return _module


def set_runtime(fake: Any) -> Any:
    """Install ``fake`` as the runtime (None restores cuda-bindings); returns the previous override."""
    global _override
    previous, _override = _override, fake
    cache.clear()
    return previous


@contextmanager
def use_runtime(fake: Any) -> Iterator[Any]:
    """Use ``fake`` as the CUDA runtime inside the block.

    >>> from puredl.cuda.testing import FakeRuntime
    >>> from puredl import cuda
    >>> with use_runtime(FakeRuntime()):
    ...     cuda.device_count()
    1
    """
    previous = set_runtime(fake)
    try:
        yield fake
    finally:
        set_runtime(previous)


def _format_arg(value: Any) -> str:
    # Large integers are pointers in every call we make; hex reads better.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 32:
        return hex(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<host buffer {memoryview(value).nbytes} bytes>"
    return repr(value) if isinstance(value, str) else str(value)


def describe_call(name: str, args: tuple[Any, ...]) -> str:
    """``"cudaMalloc(1024)"``: the call as it reads in an error message."""
    return f"{name}({', '.join(_format_arg(a) for a in args)})"


def error_names(rt: Any, err: Any) -> tuple[int, str, str]:
    """(code, name, description) of a cudaError_t, never raising."""
    code = int(err)
    name = getattr(err, "name", None) or f"cudaError {code}"
    description = "unknown error"
    try:
        ok, raw = rt.cudaGetErrorName(err)[:2]
        if not ok and raw:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
        ok, raw = rt.cudaGetErrorString(err)[:2]
        if not ok and raw:
            description = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception:  # describing an error must never hide it
        pass
    return code, name, description


def raise_error(rt: Any, err: Any, name: str, args: tuple[Any, ...], hint: str = "") -> None:
    """Raise the CudaError (or CudaUnavailableError) for ``err`` returned by call ``name(*args)``."""
    code, err_name, description = error_names(rt, err)
    try:
        # The runtime also records the error as "last error"; clear it so that a later
        # cudaGetLastError check (torch does them after kernel launches) does not see it again.
        rt.cudaGetLastError()
    except Exception:
        pass
    call = describe_call(name, args)
    if code in UNAVAILABLE_CODES:
        raise CudaUnavailableError(
            f"{call} failed with {err_name}: {description}",
            code=code,
            name=err_name,
            description=description,
            call=call,
            runtime_version=runtime_version_string(rt),
        )
    raise CudaError(
        code=code,
        name=err_name,
        description=description,
        call=call,
        hint=hint or _HINTS.get(code, ""),
    )


def check(rt: Any, result: tuple[Any, ...], name: str, *args: Any) -> Any:
    """Return the values of a runtime result ``(err, *values)``, raising CudaError when err != 0.

    One value comes back bare, several as a tuple, none as None. ``name`` and ``args`` are only
    formatted when the call failed.
    """
    err = result[0]
    if err:
        raise_error(rt, err, name, args)
    if len(result) == 2:
        return result[1]
    return result[1:] if len(result) > 2 else None


def runtime_version_string(rt: Any) -> str | None:
    """``"13.5"`` for the CUDA runtime that cuda-bindings was built for, None if unknown."""
    try:
        err, version = rt.cudaRuntimeGetVersion()
    except Exception:
        return None
    return None if err else f"{version // 1000}.{version % 1000 // 10}"


def switch_device(rt: Any, index: int) -> int | None:
    """Make device ``index`` current; return the previous device to restore, or None if unchanged."""
    previous = check(rt, rt.cudaGetDevice(), "cudaGetDevice")
    if previous == index:
        return None
    check(rt, rt.cudaSetDevice(index), "cudaSetDevice", index)
    return previous


def restore_device(rt: Any, previous: int | None) -> None:
    """Undo ``switch_device``."""
    if previous is not None:
        check(rt, rt.cudaSetDevice(previous), "cudaSetDevice", previous)


@contextmanager
def on_device(rt: Any, index: int) -> Iterator[None]:
    """Run the block with device ``index`` current, then restore the previous device."""
    previous = switch_device(rt, index)
    try:
        yield
    finally:
        restore_device(rt, previous)
