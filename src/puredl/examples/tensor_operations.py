"""Tensor operations on the torch backend: the seed catalog's 53 torch functions through puredl's API.

Run: ``puredl example tensor_operations [--device cuda:0]`` (needs ``pip install 'puredl[torch]'``).
Each group (elementwise, matrix, reductions, activations, math, comparison, shape, utilities)
is computed by puredl in TORCH mode and compared with torch itself on the same numbers.
"""

from __future__ import annotations

import argparse
import math

import puredl as pd
from puredl import accel


def _flat(v):
    if isinstance(v, list):
        return [y for x in v for y in _flat(x)]
    return [v]


def _close(a, b, tol: float = 1e-5) -> bool:
    fa, fb = _flat(a), _flat(b)
    if len(fa) != len(fb):
        return False
    for x, y in zip(fa, fb):
        if isinstance(x, float) and math.isnan(x):
            if not (isinstance(y, float) and math.isnan(y)):
                return False
        elif abs(float(x) - float(y)) > tol * (1 + abs(float(y))):
            return False
    return True


def _rounded(v):
    if isinstance(v, list):
        return [_rounded(x) for x in v]
    return round(v, 4) if isinstance(v, float) else v


def run(device: str = "cpu", verbose: bool = True) -> dict:
    """Run every group; returns {"checked": n, "mismatches": [names], "stats": AccelStats}."""
    say = print if verbose else (lambda *a, **k: None)
    accel.set_acceleration("torch")
    accel.reset_stats()
    import torch

    a_vals = [[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]
    b_vals = [[0.5, 1.5, -2.5], [2.0, -1.0, 4.0]]
    a, b = pd.tensor(a_vals, device=device), pd.tensor(b_vals, device=device)
    ta, tb = torch.tensor(a_vals), torch.tensor(b_vals)
    pos, tpos = a.abs() + 1.0, ta.abs() + 1.0
    m, tm = (
        pd.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], device=device),
        torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
    )
    groups = {
        "Element-wise": [
            ("add", a + b, ta + tb),
            ("sub", a - b, ta - tb),
            ("mul", a * b, ta * tb),
            ("div", a / b, ta / tb),
            ("neg", -a, -ta),
            ("add_scalar", a + 10.0, ta + 10.0),
            ("mul_scalar", a * 0.5, ta * 0.5),
        ],
        "Matrix": [
            ("matmul", a @ m, ta @ tm),
            ("transpose", a.transpose(0, 1), ta.transpose(0, 1)),
            ("t (2-D)", a.t(), ta.t()),
        ],
        "Reductions": [
            ("sum", a.sum(), ta.sum()),
            ("mean", a.mean(), ta.mean()),
            ("max", a.max(), ta.max()),
            ("min", a.min(), ta.min()),
            ("sum(dim=1)", a.sum(1), ta.sum(1)),
            ("mean(dim=0)", a.mean(0), ta.mean(0)),
        ],
        "Activations": [
            ("relu", a.relu(), ta.relu()),
            ("sigmoid", a.sigmoid(), ta.sigmoid()),
            ("tanh", a.tanh(), ta.tanh()),
            ("softmax", a.softmax(-1), ta.softmax(-1)),
            ("log_softmax", a.log_softmax(-1), ta.log_softmax(-1)),
        ],
        "Math": [
            ("exp", a.exp(), ta.exp()),
            ("log", pos.log(), tpos.log()),
            ("sqrt", pos.sqrt(), tpos.sqrt()),
            ("pow", a.pow(2), ta.pow(2)),
            ("abs", a.abs(), ta.abs()),
        ],
        "Comparison": [
            ("eq", a.eq(b), ta.eq(tb)),
            ("ne", a.ne(b), ta.ne(tb)),
            ("gt", a.gt(b), ta.gt(tb)),
            ("lt", a.lt(b), ta.lt(tb)),
            ("where", pd.where(a > 0, a, b), torch.where(ta > 0, ta, tb)),
        ],
        "Shape": [
            ("reshape", a.reshape(3, 2), ta.reshape(3, 2)),
            ("flatten", a.flatten(), ta.flatten()),
            ("squeeze", a.unsqueeze(0).squeeze(0), ta.unsqueeze(0).squeeze(0)),
            ("unsqueeze", a.unsqueeze(1), ta.unsqueeze(1)),
        ],
        "Utilities": [
            ("clone", a.clone(), ta.clone()),
            ("detach", a.detach(), ta.detach()),
            ("to_device", a.to(device).to("cpu"), ta.to("cpu")),
        ],
    }
    say(f"=== Tensor operations on torch ({device}) ===\n")
    say(f"a = {a.tolist()}\nb = {b.tolist()}\n")
    checked, mismatches = 0, []
    for group, rows in groups.items():
        say(f"{group}:")
        for name, got, want in rows:
            ok = tuple(got.shape) == tuple(want.shape) and _close(got.tolist(), want.tolist())
            checked += 1
            if not ok:
                mismatches.append(name)
            value = _rounded(got.item() if got.numel() == 1 else got.tolist())
            say(f"  {name:<12} {'ok ' if ok else 'MISMATCH'}  {value}")
        say("")

    # autograd over torch-computed ops: puredl's graph, torch's kernels
    x = pd.tensor([[0.5, -1.0], [2.0, 0.25]], requires_grad=True, device=device)
    tx = torch.tensor([[0.5, -1.0], [2.0, 0.25]], requires_grad=True)
    (x @ x).tanh().sum().backward()
    (tx @ tx).tanh().sum().backward()
    grad_ok = _close(x.grad.tolist(), tx.grad.tolist())
    checked += 1
    if not grad_ok:
        mismatches.append("backward")
    say(
        f"Autograd: d/dx sum(tanh(x @ x)) {'matches' if grad_ok else 'DIFFERS FROM'} torch: {x.grad.tolist()}"
    )
    stats = accel.get_stats()
    say(
        f"\n{checked} results checked against torch, {len(mismatches)} mismatches; "
        f"{stats.torch_count} ops ran on torch"
    )
    return {"checked": checked, "mismatches": mismatches, "stats": stats}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    args = p.parse_args(argv)
    return 0 if not run(args.device)["mismatches"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
