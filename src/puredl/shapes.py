"""Shape rules shared by every layer (a bottom module: it imports nothing from puredl)."""

from __future__ import annotations


def broadcast_shapes(op: str, sa: tuple, sb: tuple) -> tuple:
    """NumPy broadcasting of two shapes; ``op`` names the operation in the error.

    >>> broadcast_shapes("add", (2, 1, 3), (4, 1))
    (2, 4, 3)
    """
    if sa == sb:
        return sa
    out = []
    for i in range(1, max(len(sa), len(sb)) + 1):
        x = sa[-i] if i <= len(sa) else 1
        y = sb[-i] if i <= len(sb) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ValueError(f"{op}: shapes {sa} and {sb} cannot be broadcast together")
    return tuple(reversed(out))
