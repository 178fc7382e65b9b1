"""PyTorch-like ``repr`` for tensors: ``tensor([[1., 2.]], requires_grad=True)``."""

from __future__ import annotations

import math

from puredl import dtypes as dt

_EDGE = 3  # elements shown at each end of a summarised dimension
_THRESHOLD = 1000


def _float_formatter(values: list):
    finite = [abs(v) for v in values if math.isfinite(v)]
    if finite and all(float(v).is_integer() for v in finite) and max(finite) < 1e8:
        return lambda v: _special(v) or f"{v:.0f}."
    big = max(finite) if finite else 0.0
    small = min((v for v in finite if v), default=0.0)
    if big >= 1e8 or (small and small < 1e-4) or (small and big / small > 1e8):
        return lambda v: _special(v) or f"{v:.4e}"
    return lambda v: _special(v) or f"{v:.4f}"


def _special(v: float) -> str:
    if v != v:
        return "nan"
    if v == math.inf:
        return "inf"
    if v == -math.inf:
        return "-inf"
    return ""


def _format(t) -> str:
    flat_t = t.reshape(-1)
    summarise = t.numel() > _THRESHOLD
    vals = flat_t.tolist()
    if t.dtype.is_floating_point:
        fmt = _float_formatter(vals)
    elif t.dtype is dt.bool_:
        fmt = str
    else:
        fmt = str
    cells = [fmt(v) for v in vals]
    width = max((len(c) for c in cells), default=0)
    cells = [c.rjust(width) for c in cells]
    return _nest(cells, t.shape, 0, summarise, indent=len("tensor("))


def _nest(cells: list, shape: tuple, depth: int, summarise: bool, indent: int) -> str:
    if not shape:
        return cells[0]
    n = shape[0]
    inner = len(cells) // n if n else 0
    idx = list(range(n))
    if summarise and n > 2 * _EDGE:
        idx = idx[:_EDGE] + [None] + idx[-_EDGE:]
    parts = [
        "..." if i is None else _nest(cells[i * inner : (i + 1) * inner], shape[1:], depth + 1, summarise, indent)
        for i in idx
    ]
    if len(shape) == 1:
        return "[" + ", ".join(parts) + "]"
    sep = "," + "\n" * (len(shape) - 1) + " " * (indent + depth + 1)
    return "[" + sep.join(parts) + "]"


def tensor_repr(t) -> str:
    body = _format(t) if t.numel() else "[]"
    extras = []
    if t.device != "cpu":
        extras.append(f"device='{t.device}'")
    default_for_kind = dt.get_default_dtype() if t.dtype.is_floating_point else dt.int64
    if t.dtype is not default_for_kind and t.dtype is not dt.bool_:
        extras.append(f"dtype={t.dtype!r}")
    if t.numel() == 0 and t.ndim > 1:
        extras.append(f"size={t.shape}")
    if t._node is not None:
        extras.append(f"grad_fn=<{t._node.name}Backward>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
