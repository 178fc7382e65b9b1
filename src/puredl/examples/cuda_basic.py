"""CUDA runtime walkthrough: devices, a stream, timing events, memset and device-to-device copy.

Run: ``puredl example cuda_basic [--device N] [--size BYTES]``. Without a GPU it prints one
line saying so and exits 0.
"""

from __future__ import annotations

import argparse

from puredl import cuda
from puredl.cuda import format_bytes


def _rate(nbytes: int, ms: float) -> str:
    return f"{nbytes / (ms * 1e-3) / 1e9:.1f} GB/s" if ms > 0 else "too fast to time"


def _multi_gpu(size: int) -> bool:
    """Copy a block from device 0 to every other device and check that it arrived."""
    print("=== Multi-GPU: a block on each device, copied from device 0 ===")
    all_ok = True
    with cuda.DeviceMemory(size, device=0) as source:
        source.memset(0x42)
        for index in range(1, cuda.device_count()):
            route = "peer to peer" if cuda.can_access_peer(index, 0) else "through the host"
            with cuda.DeviceMemory(size, device=index) as target:
                source.copy_to(target)
                ok = target.copy_to_host().count(0x42) == size
            all_ok &= ok
            print(f"  cuda:0 -> cuda:{index} ({route}): {'arrived intact' if ok else 'WRONG CONTENT'}")
    print()
    return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="puredl example cuda_basic", description=__doc__)
    parser.add_argument("--device", default="cuda:0", help="device to use (default cuda:0)")
    parser.add_argument("--size", type=int, default=1 << 20, help="bytes per block (default 1 MiB)")
    args = parser.parse_args(argv)

    if not cuda.is_available():
        try:
            cuda.checked_device_count()
            reason = "no CUDA device"
        except cuda.CudaError as exc:
            reason = getattr(exc, "reason", str(exc))
        print(f"CUDA is not available on this machine ({reason}); nothing to run. See `puredl cuda info`.")
        return 0

    title = "CUDA direct runtime - basic example"
    print(f"{title}\n{'=' * len(title)}\n")
    runtime, driver = cuda.runtime_version(), cuda.driver_version()
    print(f"CUDA is available (runtime {runtime}, driver supports CUDA {driver})\n")

    print(f"Devices found: {cuda.device_count()}")
    for props in cuda.devices():
        free, total = cuda.get_device_memory(props.index)
        major, minor = props.compute_capability
        sms = props.multiprocessor_count
        print(f"  Device {props.index}: {props.name} (compute {major}.{minor}, {sms} SMs)")
        print(f"    Memory: {format_bytes(free)} free of {format_bytes(total)}\n")

    _kind, index = cuda.parse_device(args.device)
    cuda.set_device(index if index is not None else 0)
    device = cuda.current_device()
    size = args.size
    print(f"=== Using device {device} ===\n")

    # Leaving the `with` block releases everything in reverse order, even after an error.
    print("Creating CUDA stream...")
    with cuda.Stream() as stream:
        print(f"  created {stream!r}\n")
        print("Creating CUDA events for timing...")
        with cuda.Event(timing=True) as start, cuda.Event(timing=True) as end:
            print("  events created\n")
            print(f"Allocating device memory ({format_bytes(size)})...")
            with cuda.DeviceMemory(size) as block1:
                print(f"  allocated {block1!r}\n")
                print("Recording start event...")
                start.record(stream)
                print("Filling memory with zeros...")
                block1.memset(0, stream=stream)
                print("Recording end event...")
                end.record(stream)
                print("Synchronizing stream...")
                stream.synchronize()
                ms = start.elapsed_time(end)
                print(f"  stream synchronized\n\nMemset took {ms:.3f} ms ({_rate(size, ms)} written)\n")

                print(f"Allocating second memory block ({format_bytes(size)})...")
                with cuda.DeviceMemory(size) as block2:
                    block2.memset(0xFF)  # so that the check below proves the copy happened
                    print(f"  allocated {block2!r}\n")
                    print("Copying from block 1 to block 2 (device-to-device)...")
                    start.record(stream)
                    block1.copy_to(block2, stream=stream)
                    end.record(stream)
                    end.synchronize()
                    ms = start.elapsed_time(end)
                    print(f"  copy complete: {ms:.3f} ms ({_rate(2 * size, ms)} read + written)")
                    data = block2.copy_to_host()
                    ok = data.count(0) == size
                    verdict = "all zeros, as copied" if ok else "WRONG CONTENT"
                    print(f"  block 2 read back on the host: {verdict}\n")

                    print("Querying stream status (non-blocking)...")
                    print(f"  stream is {'idle' if stream.query() else 'still busy'}\n")
                    if not ok:
                        print("The copy did not arrive intact.")
                        return 1

    if cuda.device_count() > 1 and not _multi_gpu(size):
        return 1

    print("=" * len(title))
    print("All operations complete.")
    print("Memory blocks, events and the stream were released when their `with` blocks ended.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
