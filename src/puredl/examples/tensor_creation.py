"""Tensor creation on the torch backend: factories, dtypes, devices and zero-copy interop with torch.

Run: ``puredl example tensor_creation [--device cuda:0]`` (needs ``pip install 'puredl[torch]'``).
Every tensor is made with puredl's API and computed on by torch (TORCH mode); values are
checked against torch's own factories where they are deterministic.
"""

from __future__ import annotations

import argparse

import puredl as pd
from puredl import accel


def describe(name: str, t: pd.Tensor) -> str:
    where = f"device={t.device:<7} storage={t._be.NAME}"
    return f"  {name:<26} shape={str(t.shape):<10} dtype={t.dtype.name:<8} {where}"


def run(device: str = "cpu", verbose: bool = True) -> dict:
    """Create tensors on ``device`` and return {name: tensor}; prints a table when verbose."""
    say = print if verbose else (lambda *a, **k: None)
    accel.set_acceleration("torch")
    import torch

    pd.manual_seed(0)
    say("=== Tensor creation (puredl on torch) ===\n")
    say(f"torch {torch.__version__}; device {device}; mode {accel.get_current_mode().value}\n")
    made = {
        "randn(2, 3)": pd.randn(2, 3, device=device),
        "zeros(2, 3)": pd.zeros(2, 3, device=device),
        "ones(3)": pd.ones(3, device=device),
        "full((2, 2), 7.5)": pd.full((2, 2), 7.5, device=device),
        "arange(0, 10, 2)": pd.arange(0, 10, 2, device=device),
        "linspace(0, 1, 5)": pd.linspace(0, 1, 5, device=device),
        "eye(3)": pd.eye(3, device=device),
        "tensor([[1, 2], [3, 4]])": pd.tensor([[1, 2], [3, 4]], device=device),
        "tensor(..., float64)": pd.tensor([0.1, 0.2], dtype=pd.float64, device=device),
        "tensor([True, False])": pd.tensor([True, False], device=device),
    }
    for name, t in made.items():
        say(describe(name, t))
    y = made["randn(2, 3)"] * 2.0
    say(f"\nFactories fill {made['randn(2, 3)']._be.NAME} storage on the CPU; torch reads it without a copy,")
    say(f"and results stay with torch: (randn * 2) has storage={y._be.NAME}")

    # the same values as torch's factories (the random one is seeded by puredl, not torch)
    checks = {
        "zeros(2, 3)": torch.zeros(2, 3),
        "ones(3)": torch.ones(3),
        "full((2, 2), 7.5)": torch.full((2, 2), 7.5),
        "arange(0, 10, 2)": torch.arange(0, 10, 2),
        "linspace(0, 1, 5)": torch.linspace(0, 1, 5),
        "eye(3)": torch.eye(3),
    }
    same = all(made[k].tolist() == v.tolist() for k, v in checks.items())
    say(f"\nValues equal torch's factories: {'yes' if same else 'NO'}")

    # zero-copy interop: from_torch and to_torch share memory
    src = torch.arange(4, dtype=torch.float32)
    shared = pd.from_torch(src)
    src[0] = 100.0
    say(f"from_torch shares memory: torch wrote 100 -> puredl sees {shared[0].item():.0f}")
    back = made["zeros(2, 3)"].to_torch()
    say(f"to_torch gives a {type(back).__module__}.{type(back).__name__} of shape {tuple(back.shape)}")
    x = made["arange(0, 10, 2)"]
    say(f"\nA tensor: {x}")
    say(f"Its data as a list: {x.tolist()}; sum = {x.sum().item()}")
    made["from_torch"] = shared
    made["_matches_torch"] = same
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    args = p.parse_args(argv)
    out = run(args.device)
    return 0 if out["_matches_torch"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
