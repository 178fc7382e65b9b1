"""Moving tensors between devices ("cpu", "cuda:N") and to/from torch tensors."""

from __future__ import annotations

from puredl._optional import require


def parse_device(device: str) -> tuple[str, int | None]:
    """'cpu' -> ('cpu', None); 'cuda' -> ('cuda', 0); 'cuda:1' -> ('cuda', 1)."""
    s = str(device).strip().lower()
    if s == "cpu":
        return "cpu", None
    if s == "cuda":
        return "cuda", 0
    if s.startswith("cuda:") and s[5:].isdigit():
        return "cuda", int(s[5:])
    raise ValueError(f"invalid device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def move(t, device: str):
    kind, _ = parse_device(device)
    if kind == "cpu" and t.device == "cpu" and t._be.NAME == "pure":
        return t
    require("torch", "torch", f"tensors on {device}")
    raise NotImplementedError("device moves need the torch backend (puredl.backends.torch)")


def to_torch(t):
    require("torch", "torch", "to_torch()")
    raise NotImplementedError("to_torch needs the torch backend (puredl.backends.torch)")


def from_torch(t):
    require("torch", "torch", "from_torch()")
    raise NotImplementedError("from_torch needs the torch backend (puredl.backends.torch)")
