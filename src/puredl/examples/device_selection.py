"""Device selection: list the devices, pick one, move tensors and a model there and back.

Run: ``puredl example device_selection [--device cuda:1]``. Works on a CPU-only machine: it
says why CUDA is not available and runs on the CPU. Without torch it lists the CPU only.
"""

from __future__ import annotations

import argparse

import puredl as pd
from puredl import accel, devices


def best_device() -> str:
    """'cuda:0' when torch sees a GPU, else 'cpu'."""
    return "cuda:0" if accel.cuda_available() else "cpu"


def run(device: str | None = None, verbose: bool = True) -> dict:
    """Returns {"devices": [...], "device": chosen, "cuda_error": message or None}."""
    say = print if verbose else (lambda *a, **k: None)
    say("=== Device selection ===\n")
    found = devices.list_devices()
    say(f"Devices puredl can use: {', '.join(found)}")
    cuda_error = None
    if accel.torch_available():
        torch = accel.torch_backend().torch
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
        say(f"torch {torch.__version__} ({build}); {torch.get_num_threads()} CPU threads")
        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            props = torch.cuda.get_device_properties(i)
            say(f"  cuda:{i}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
        if not torch.cuda.is_available():
            try:
                pd.zeros(1, device="cuda:0")
            except devices.DeviceUnavailableError as exc:
                cuda_error = str(exc)
                say(f"\nAsking for cuda:0 here gives a clear error:\n  {cuda_error}")
    else:
        say("torch is not installed: only the pure CPU backend (pip install 'puredl[torch]' for more)")
    chosen = device or best_device()
    say(f"\nUsing device: {chosen}")

    x = pd.randn(4, 3)
    w = pd.randn(3, 2, requires_grad=True)
    xd, wd = x.to(chosen), w.to(chosen)
    y = (xd @ wd).relu().sum()
    y.backward()
    say(f"x.to({chosen!r}).device = {xd.device}; (x @ w).relu().sum() = {y.item():.4f} on {y.device}")
    say(f"gradient of w came back to {w.grad.device} (shape {w.grad.shape})")

    if accel.torch_available():
        from puredl import nn

        model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1)).to(chosen)
        out = model(xd)
        say(f"model.to({chosen!r}): output {out.shape} on {out.device}")
        if chosen != "cpu":
            try:
                model(x)  # x still lives on the CPU
            except accel.DeviceMismatchError as exc:
                say(f"mixing devices is an error: {exc}")
    back = xd.to("cpu")
    say(f"back on the CPU: device={back.device}, equal to the original: {back.tolist() == x.tolist()}")
    return {"devices": found, "device": chosen, "cuda_error": cuda_error}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu or cuda:N (default: the best available)")
    args = p.parse_args(argv)
    run(args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
