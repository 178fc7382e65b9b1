"""Errors raised by puredl.cuda: CUDA failures, a missing GPU, and use of a released handle."""

from __future__ import annotations

import os

# What a person should look at when CUDA is not usable, most common cause first.
_CHECKLIST = (
    "run `nvidia-smi`: it must list your GPU (if it fails, the NVIDIA driver is missing or not loaded)",
    "the driver must support the CUDA version of cuda-bindings{runtime} (`nvidia-smi` shows the driver's "
    "CUDA version; upgrade the driver or install an older cuda-bindings)",
    "cuda-bindings must be installed: pip install 'puredl[cuda]'",
    "CUDA_VISIBLE_DEVICES{visible} must not hide every device",
    "no GPU? run on the CPU: set `device: cpu` in your config, or use the pure tier "
    "(puredl's default, standard library only, no GPU needed)",
)


class CudaError(RuntimeError):
    """A CUDA runtime call failed.

    Attributes: ``code`` (int), ``name`` (``"cudaErrorMemoryAllocation"``), ``description``
    (``"out of memory"``), ``call`` (the call and its arguments) and ``hint`` (may be empty).

    >>> e = CudaError(code=2, name="cudaErrorMemoryAllocation", description="out of memory",
    ...               call="cudaMalloc(1024)")
    >>> str(e)
    'cudaMalloc(1024) failed: cudaErrorMemoryAllocation (2): out of memory'
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        code: int | None = None,
        name: str | None = None,
        description: str | None = None,
        call: str | None = None,
        hint: str = "",
    ) -> None:
        self.code = code
        self.name = name
        self.description = description
        self.call = call
        self.hint = hint
        if message is None:
            message = f"{call or 'a CUDA call'} failed: {name} ({code}): {description}"
        if hint:
            message = f"{message}; {hint}"
        super().__init__(message)


class CudaUnavailableError(CudaError):
    """No usable CUDA GPU: the message says why and lists what to check.

    >>> "nvidia-smi" in str(CudaUnavailableError("no driver"))
    True
    """

    def __init__(
        self,
        reason: str,
        *,
        code: int | None = None,
        name: str | None = None,
        description: str | None = None,
        call: str | None = None,
        runtime_version: str | None = None,
    ) -> None:
        self.reason = reason
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        fill = {
            "runtime": f" (CUDA {runtime_version})" if runtime_version else "",
            "visible": f" (now {visible!r})" if visible is not None else "",
        }
        steps = "\n".join(f"  {i}. {line.format(**fill)}" for i, line in enumerate(_CHECKLIST, 1))
        message = f"CUDA is not usable here: {reason}\nWhat to check:\n{steps}"
        super().__init__(message, code=code, name=name, description=description, call=call)


class ClosedHandleError(ValueError):
    """A Stream, Event, DeviceMemory or HostMemory was used after ``close()``.

    A ValueError, like using a closed file: it is a mistake in the calling code, not a CUDA failure.
    """
