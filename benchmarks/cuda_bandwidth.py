"""Device memory bandwidth: puredl.cuda memset and device-to-device copy beside torch, on one card.

Each size from 1 MiB to 1 GiB is timed with CUDA events around a batch of operations on one
stream (best of several batches). Bandwidth counts bytes read plus written: a memset writes n
bytes, a copy reads n and writes n. torch runs the same work on the same card (``zero_()`` and
``copy_()`` of uint8 tensors, timed with ``torch.cuda.Event``); the ratio is puredl / torch.
Goal: puredl's copy reaches at least 85% of torch's copy bandwidth.

Usage: python benchmarks/cuda_bandwidth.py [--device 0] [--max-mib 1024] [--repeats 5] [--save]
``--save`` writes the table and a plot under benchmarks/results/ named with the date and card.
Without a GPU it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from datetime import date

from puredl import cuda
from puredl.cuda import format_bytes

MiB = 1 << 20
BATCH_BYTES = 8 << 30  # bytes moved per timed batch: enough that launch gaps hardly count
GOAL = 0.85  # puredl copy / torch copy at the sizes where launch overhead does not dominate


def batch_size(nbytes: int) -> int:
    """Operations per timed batch for blocks of ``nbytes``."""
    return max(5, min(500, BATCH_BYTES // nbytes))


def best_ms(run_batch: Callable[[], float], repeats: int) -> float:
    """Fastest of ``repeats`` timed batches (after one warm-up batch), in milliseconds."""
    run_batch()
    return min(run_batch() for _ in range(repeats))


def puredl_batches(
    nbytes: int, device: int
) -> tuple[Callable[[], float], Callable[[], float], Callable[[], None]]:
    """(memset batch, copy batch, release) on puredl.cuda; each batch returns elapsed ms per op."""
    stream = cuda.Stream(device, non_blocking=True)
    start, end = cuda.Event(device=device), cuda.Event(device=device)
    src, dst = cuda.DeviceMemory(nbytes, device), cuda.DeviceMemory(nbytes, device)
    src.memset(1)
    count = batch_size(nbytes)

    def memset() -> float:
        start.record(stream)
        for _ in range(count):
            dst.memset(0, stream=stream)
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / count

    def copy() -> float:
        start.record(stream)
        for _ in range(count):
            src.copy_to(dst, stream=stream)
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / count

    def release() -> None:
        for obj in (dst, src, end, start, stream):
            obj.close()

    return memset, copy, release


def torch_batches(torch, nbytes: int, device: int):  # noqa: ANN001, ANN201 - torch is imported lazily
    """The same batches with torch tensors on the same card."""
    dev = torch.device("cuda", device)
    src = torch.ones(nbytes, dtype=torch.uint8, device=dev)
    dst = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    stream = torch.cuda.Stream(dev)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    count = batch_size(nbytes)

    def timed(op: Callable[[], object]) -> float:
        with torch.cuda.stream(stream):
            start.record(stream)
            for _ in range(count):
                op()
            end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / count

    def release() -> None:
        nonlocal src, dst
        del src, dst
        torch.cuda.empty_cache()

    return (lambda: timed(dst.zero_)), (lambda: timed(lambda: dst.copy_(src))), release


def gbps(nbytes: int, ms: float) -> float:
    return nbytes / (ms * 1e-3) / 1e9


def load_torch_cuda(device: int):  # noqa: ANN201
    """torch if it can use this card, else None (with the reason printed)."""
    try:
        import torch
    except ImportError:
        print(
            "torch is not installed: only puredl is measured (pip install 'puredl[torch]' with a CUDA build)"
        )
        return None
    if not torch.cuda.is_available() or device >= torch.cuda.device_count():
        print(f"torch {torch.__version__} cannot use cuda:{device} (CPU build?): only puredl is measured")
        return None
    return torch


def measure(sizes: list[int], device: int, repeats: int, torch=None, progress=None) -> list[dict]:  # noqa: ANN001
    """One row per size: GB/s of memset and copy for puredl (and torch when given)."""
    rows = []
    for nbytes in sizes:
        row = {"bytes": nbytes}
        memset, copy, release = puredl_batches(nbytes, device)
        try:
            row["memset"] = gbps(nbytes, best_ms(memset, repeats))
            row["copy"] = gbps(2 * nbytes, best_ms(copy, repeats))
        finally:
            release()
        if torch is not None:
            t_memset, t_copy, t_release = torch_batches(torch, nbytes, device)
            try:
                row["torch_memset"] = gbps(nbytes, best_ms(t_memset, repeats))
                row["torch_copy"] = gbps(2 * nbytes, best_ms(t_copy, repeats))
            finally:
                t_release()
        rows.append(row)
        if progress is not None:
            progress.update(1)
    return rows


def format_table(rows: list[dict]) -> str:
    with_torch = "torch_copy" in rows[0]
    head = f"{'size':>10} | {'memset GB/s':>11}"
    if with_torch:
        head += f" {'torch zero_':>11} {'ratio':>6}"
    head += f" | {'copy GB/s':>10}"
    if with_torch:
        head += f" {'torch copy_':>11} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for row in rows:
        line = f"{format_bytes(row['bytes']):>10} | {row['memset']:>11.1f}"
        if with_torch:
            line += f" {row['torch_memset']:>11.1f} {row['memset'] / row['torch_memset']:>6.2f}"
        line += f" | {row['copy']:>10.1f}"
        if with_torch:
            line += f" {row['torch_copy']:>11.1f} {row['copy'] / row['torch_copy']:>6.2f}"
        lines.append(line)
    return "\n".join(lines)


def verdict(rows: list[dict]) -> str:
    """How puredl's copy compares with torch's where the GPU, not Python, sets the pace (>= 64 MiB)."""
    big = [r for r in rows if r["bytes"] >= 64 * MiB and "torch_copy" in r]
    if not big:
        return "copy goal not checked (needs torch with CUDA and sizes >= 64 MiB)"
    worst = min(r["copy"] / r["torch_copy"] for r in big)
    status = "met" if worst >= GOAL else "NOT met"
    return (
        f"copy >= 64 MiB: puredl reaches at least {worst:.0%} of torch's bandwidth "
        f"(goal {GOAL:.0%}: {status})"
    )


def plot(rows: list[dict], title: str, path: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mib = [r["bytes"] / MiB for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, style in (
        ("memset", "puredl memset", "-o"),
        ("torch_memset", "torch zero_()", "--o"),
        ("copy", "puredl copy (read+write)", "-s"),
        ("torch_copy", "torch copy_() (read+write)", "--s"),
    ):
        if key in rows[0]:
            ax.plot(mib, [r[key] for r in rows], style, label=label)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_xlabel("block size (MiB)")
    ax.set_ylabel("GB/s")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--min-mib", type=int, default=1, help="smallest block in MiB (default 1)")
    parser.add_argument("--max-mib", type=int, default=1024, help="largest block in MiB (default 1024)")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per point; the best counts")
    parser.add_argument("--no-torch", action="store_true", help="measure puredl only")
    parser.add_argument(
        "--save", action="store_true", help="write the table and a plot to benchmarks/results/"
    )
    args = parser.parse_args(argv)

    if not cuda.is_available():
        try:
            cuda.device_count()
            reason = "no CUDA device"
        except cuda.CudaError as exc:
            reason = getattr(exc, "reason", str(exc))
        print(f"cuda_bandwidth: no usable CUDA GPU ({reason}); nothing measured.")
        return 0

    props = cuda.get_device_properties(args.device)
    sizes = []
    size = args.min_mib * MiB
    while size <= args.max_mib * MiB:
        sizes.append(size)
        size *= 2
    torch = None if args.no_torch else load_torch_cuda(args.device)
    header = (
        f"cuda_bandwidth {date.today().isoformat()} on cuda:{args.device} {props.name} "
        f"(compute {props.compute_capability[0]}.{props.compute_capability[1]}, "
        f"{format_bytes(props.total_memory)}), CUDA runtime {cuda.runtime_version()}, "
        f"driver CUDA {cuda.driver_version()}" + (f", torch {torch.__version__}" if torch else "")
    )
    print(header)
    try:
        from tqdm import tqdm

        progress = tqdm(total=len(sizes), desc="sizes", file=sys.stderr)
    except ImportError:
        progress = None
    rows = measure(sizes, args.device, args.repeats, torch, progress)
    if progress is not None:
        progress.close()
    text = "\n".join([header, "", format_table(rows), "", verdict(rows)])
    print("\n" + format_table(rows) + "\n\n" + verdict(rows))
    if args.save:
        folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        card = re.sub(r"[^A-Za-z0-9]+", "-", props.name).strip("-")
        stem = os.path.join(folder, f"cuda_bandwidth_{date.today().isoformat()}_{card}")
        write_text(stem + ".txt", text + "\n")
        plot(rows, f"Device memory bandwidth, {props.name}", stem + ".png")
        print(f"saved {stem}.txt and {stem}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
