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


def numel(shape: tuple) -> int:
    """The number of elements of ``shape``."""
    n = 1
    for s in shape:
        n *= s
    return n


def normalize_dim(dim: int, ndim: int, op: str) -> int:
    """``dim`` as an index in ``range(ndim)`` (negative counts from the end); ``op`` names the error.

    >>> normalize_dim(-1, 3, "sum")
    2
    """
    if 0 <= dim < ndim:  # the common case, checked first: this runs on every shape op
        return dim
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dimension {dim} is out of range for a tensor with {ndim} dimensions")
    return dim % ndim if ndim else 0


def normalize_dims(dim, ndim: int, op: str) -> tuple:
    """``dim`` (None: every dimension, an int, or a sequence) as sorted distinct indices."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"{op}: dimension {d} is out of range for a tensor with {ndim} dimensions")
        d = d % ndim if ndim else 0
        if d in out:
            raise ValueError(f"{op}: dimension {d} appears more than once")
        out.append(d)
    return tuple(sorted(out)) if ndim else ()  # a 0-d tensor accepts dim 0 / -1 and has nothing to reduce


def infer_shape(shape: tuple, n: int, old: tuple) -> tuple:
    """``shape`` for ``n`` elements with its one ``-1`` filled in; ``old`` names the source in errors."""
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: only one dimension can be -1, got {shape}")
    if -1 in shape:
        known = numel(tuple(s for s in shape if s != -1))
        if known == 0 or n % known:
            raise ValueError(f"reshape: cannot reshape tensor of shape {old} ({n} elements) into {shape}")
        shape = tuple(n // known if s == -1 else s for s in shape)
    if any(s < 0 for s in shape) or numel(shape) != n:
        raise ValueError(f"reshape: cannot reshape tensor of shape {old} ({n} elements) into {shape}")
    return shape
