"""PyTorch-like ``repr`` for tensors: ``tensor([[1., 2.]], requires_grad=True)``.

The rules follow torch's ``_tensor_str``: one number format for the whole tensor (integers as
``1.``, fixed ``.4f`` or scientific ``.4e``), right-aligned columns, lines wrapped at 80
characters, and tensors over 1000 elements summarised to 3 items at each edge.
"""

from __future__ import annotations

import math

from puredl import dtypes as dt

_EDGE = 3  # elements shown at each end of a summarised dimension
_THRESHOLD = 1000  # more elements than this are summarised
_LINEWIDTH = 80
_PRECISION = 4


class _Formatter:
    """One format for every element, chosen from the (summarised) values, as torch does."""

    def __init__(self, values: list, floating: bool):
        self.floating = floating
        self.int_mode = True
        self.sci_mode = False
        self.width = 1
        if not floating:
            self.width = max((len(str(v)) for v in values), default=1)
            return
        nonzero = [v for v in values if math.isfinite(v) and v != 0]
        if not nonzero:
            return
        magnitudes = [abs(v) for v in nonzero]
        lo, hi = min(magnitudes), max(magnitudes)
        self.int_mode = all(v == math.ceil(v) for v in nonzero)
        self.sci_mode = hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4
        if self.sci_mode:
            self.width = max(len(f"{v:.{_PRECISION}e}") for v in nonzero)
        elif self.int_mode:
            self.width = max(len(f"{v:.0f}") + 1 for v in nonzero)  # + 1 for the trailing "."
        else:
            self.width = max(len(f"{v:.{_PRECISION}f}") for v in nonzero)

    def format(self, v) -> str:
        if not self.floating:
            s = str(v)
        elif self.sci_mode:
            s = f"{v:.{_PRECISION}e}"
        elif self.int_mode:
            s = f"{v:.0f}" + ("" if math.isinf(v) or math.isnan(v) else ".")
        else:
            s = f"{v:.{_PRECISION}f}"
        return s.rjust(self.width)


def _summarised(v, ndim: int, summarise: bool):
    """Nested lists cut to the edge items of every long dimension (when summarising)."""
    if ndim == 0:
        return v
    if summarise and len(v) > 2 * _EDGE:
        v = v[:_EDGE] + v[-_EDGE:]
    return [_summarised(x, ndim - 1, summarise) for x in v]


def _flat(v, ndim: int) -> list:
    if ndim == 0:
        return [v]
    out = []
    for x in v:
        out.extend(_flat(x, ndim - 1))
    return out


def _vector(v: list, indent: int, summarise: bool, fmt: _Formatter) -> str:
    per_line = max(1, (_LINEWIDTH - indent) // (fmt.width + 2))
    if summarise and len(v) > 2 * _EDGE:
        cells = [fmt.format(x) for x in v[:_EDGE]] + [" ..."] + [fmt.format(x) for x in v[-_EDGE:]]
    else:
        cells = [fmt.format(x) for x in v]
    lines = [", ".join(cells[i : i + per_line]) for i in range(0, len(cells), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(v, ndim: int, indent: int, summarise: bool, fmt: _Formatter) -> str:
    if ndim == 0:
        return fmt.format(v)
    if ndim == 1:
        return _vector(v, indent, summarise, fmt)
    if summarise and len(v) > 2 * _EDGE:
        rows = [_nested(x, ndim - 1, indent + 1, summarise, fmt) for x in v[:_EDGE]]
        rows += ["..."] + [_nested(x, ndim - 1, indent + 1, summarise, fmt) for x in v[-_EDGE:]]
    else:
        rows = [_nested(x, ndim - 1, indent + 1, summarise, fmt) for x in v]
    return "[" + ("," + "\n" * (ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def tensor_str(t, indent: int = len("tensor(")) -> str:
    """The bracketed values of ``t`` as torch prints them (no ``tensor(...)`` around)."""
    if t.numel() == 0:
        return "[]"
    values = t.tolist()
    summarise = t.numel() > _THRESHOLD
    fmt = _Formatter(_flat(_summarised(values, t.ndim, summarise), t.ndim), t.dtype.is_floating_point)
    return _nested(values, t.ndim, indent, summarise, fmt)


def tensor_repr(t) -> str:
    """``tensor([...], dtype=..., grad_fn=<...>)`` with torch's rules for which suffixes appear."""
    extras = []
    if t.device != "cpu":
        extras.append(f"device='{t.device}'")
    if t.numel() == 0:
        if t.ndim != 1:
            extras.append(f"size={t.shape}")
        if t.dtype is not dt.get_default_dtype():  # nothing to infer the dtype from
            extras.append(f"dtype={t.dtype!r}")
    elif t.dtype not in (dt.get_default_dtype(), dt.int64, dt.bool_):
        extras.append(f"dtype={t.dtype!r}")
    if t._node is not None:
        extras.append(f"grad_fn=<{t._node.name}Backward>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    out = "tensor(" + tensor_str(t)
    last_line = len(out) - out.rfind("\n") + 1
    for e in extras:  # a suffix that would pass the line width goes on its own line, as in torch
        if last_line + len(e) + 2 > _LINEWIDTH:
            out += ",\n" + " " * len("tensor(") + e
            last_line = len("tensor(") + len(e)
        else:
            out += ", " + e
            last_line += len(e) + 2
    return out + ")"
