"""Owner objects for CUDA resources: idempotent close(), `with`, and a finalize fallback.

Each owner registers ``weakref.finalize(self, _release_quietly, release, *args)`` where
``release`` is a module-level function and ``args`` hold only the runtime and the raw handle,
never the owner itself (a reference to the owner would keep it alive forever). Three ways end a
resource, and each runs ``release`` exactly once:

- ``close()`` or leaving a ``with`` block: release runs now and its CudaError propagates;
- garbage collection of an unclosed owner: release runs quietly;
- interpreter exit: ``weakref.finalize`` runs the pending releases (newest first) from its
  atexit hook, while modules are still intact; errors (such as the runtime already unloading)
  are swallowed because there is nobody left to tell.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from puredl.cuda.errors import ClosedHandleError

H = TypeVar("H", bound="CudaHandle")


def _release_quietly(release: Callable[..., None], *args: Any) -> None:
    try:
        release(*args)
    except Exception:
        # Called by the garbage collector or at exit: raising here could only print noise.
        pass


class CudaHandle:
    """Base of Stream, Event, DeviceMemory and HostMemory (see the module docstring)."""

    _finalizer: weakref.finalize | None = None

    def _own(self, release: Callable[..., None], *args: Any) -> None:
        """Register ``release(*args)`` as the one way this object's resource is freed."""
        self._finalizer = weakref.finalize(self, _release_quietly, release, *args)

    @property
    def closed(self) -> bool:
        """True once the resource has been released (or was never acquired)."""
        return self._finalizer is None or not self._finalizer.alive

    def close(self) -> None:
        """Release the resource now; calling it again does nothing.

        A CUDA failure while releasing raises CudaError; the object counts as closed anyway
        (releasing twice would be worse than leaking once).
        """
        finalizer = self._finalizer
        if finalizer is None:
            return
        detached = finalizer.detach()
        if detached is None:
            return  # already closed
        _owner, _quiet, args, _kwargs = detached
        release, *rest = args
        release(*rest)

    def _check_open(self, action: str) -> None:
        if self.closed:
            raise ClosedHandleError(
                f"cannot {action}: {self!r} is closed (released by close() or by leaving its `with` "
                f"block); create a new {type(self).__name__}"
            )

    def __enter__(self: H) -> H:
        self._check_open("enter a `with` block")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
