"""`puredl cuda info`: the CUDA device table (or why there is none)."""

from __future__ import annotations

import argparse
import json
from importlib import metadata
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", nargs="?", default="info", choices=["info"], help="what to show (default: info)"
    )
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


def _bindings_version() -> str | None:
    try:
        return metadata.version("cuda-bindings")
    except metadata.PackageNotFoundError:
        return None


def collect_info() -> dict[str, Any]:
    """Everything `puredl cuda info` shows, as plain data; raises CudaUnavailableError without a GPU."""
    from puredl import cuda

    count = cuda.checked_device_count()
    rows = []
    for props in cuda.devices():
        free, total = cuda.get_device_memory(props.index)
        rows.append(
            {
                "index": props.index,
                "name": props.name,
                "compute_capability": ".".join(map(str, props.compute_capability)),
                "multiprocessors": props.multiprocessor_count,
                "memory_free": free,
                "memory_total": total,
                "pci_bus_id": props.pci_bus_id,
            }
        )
    peer = [[cuda.can_access_peer(i, j) for j in range(count)] for i in range(count)]
    return {
        "cuda_bindings": _bindings_version(),
        "runtime": cuda.runtime_version(),
        "driver": cuda.driver_version(),
        "devices": rows,
        "peer_access": peer,
    }


def format_info(info: dict[str, Any]) -> str:
    """The device table as text."""
    from puredl.cuda.memory import format_bytes

    lines = [
        f"CUDA runtime {info['runtime']} (cuda-bindings {info['cuda_bindings']}), "
        f"driver supports CUDA {info['driver']}",
        f"{len(info['devices'])} device(s):",
        f"  {'#':>2}  {'name':<28} {'capability':>10} {'SMs':>5}  {'memory free / total':>23}  bus id",
    ]
    for row in info["devices"]:
        memory = f"{format_bytes(row['memory_free'])} / {format_bytes(row['memory_total'])}"
        lines.append(
            f"  {row['index']:>2}  {row['name']:<28} {row['compute_capability']:>10} "
            f"{row['multiprocessors']:>5}  {memory:>23}  {row['pci_bus_id']}"
        )
    peer = info["peer_access"]
    if len(peer) > 1:
        lines.append("peer access (row device can read/write column device's memory directly):")
        lines.append("      " + "".join(f"{j:>5}" for j in range(len(peer))))
        for i, row in enumerate(peer):
            cells = "".join(f"{'-' if i == j else ('yes' if ok else 'no'):>5}" for j, ok in enumerate(row))
            lines.append(f"  {i:>2}  {cells}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from puredl.cuda.errors import CudaUnavailableError

    try:
        info = collect_info()
    except CudaUnavailableError as exc:
        if args.json:
            print(
                json.dumps({"available": False, "cuda_bindings": _bindings_version(), "reason": exc.reason})
            )
        else:
            print(f"CUDA: no usable GPU.\n{exc}")
        return 1
    if args.json:
        print(json.dumps({"available": True, **info}, indent=2))
    else:
        print(format_info(info))
    return 0
