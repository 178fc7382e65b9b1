"""Direct CUDA runtime access on NVIDIA's cuda-bindings (``pip install 'puredl[cuda]'``).

Importing this package needs nothing beyond the standard library; cuda-bindings is imported on
the first call that needs it. Without a usable GPU ``is_available()`` is False and
``device_count()`` is 0 (as torch's); every other call raises ``CudaUnavailableError``, whose
message lists what to check (``checked_device_count()`` is the count that raises).

>>> from puredl import cuda
>>> if cuda.is_available():
...     with cuda.Stream() as s, cuda.DeviceMemory(1 << 20) as m:
...         m.memset(0, stream=s); s.synchronize()
"""

from puredl.cuda.device import (
    DeviceProperties,
    can_access_peer,
    checked_device_count,
    current_device,
    device_count,
    devices,
    driver_version,
    enable_peer_access,
    get_device_memory,
    get_device_name,
    get_device_properties,
    is_available,
    parse_device,
    runtime_version,
    set_device,
    synchronize,
    use_device,
)
from puredl.cuda.errors import ClosedHandleError, CudaError, CudaUnavailableError
from puredl.cuda.event import Event
from puredl.cuda.memory import DeviceMemory, HostMemory, format_bytes
from puredl.cuda.seeding import manual_seed, manual_seed_all
from puredl.cuda.stream import Stream

__all__ = [
    "ClosedHandleError",
    "CudaError",
    "CudaUnavailableError",
    "DeviceMemory",
    "DeviceProperties",
    "Event",
    "HostMemory",
    "Stream",
    "can_access_peer",
    "checked_device_count",
    "current_device",
    "device_count",
    "devices",
    "driver_version",
    "enable_peer_access",
    "format_bytes",
    "get_device_memory",
    "get_device_name",
    "get_device_properties",
    "is_available",
    "manual_seed",
    "manual_seed_all",
    "parse_device",
    "runtime_version",
    "set_device",
    "synchronize",
    "use_device",
]
