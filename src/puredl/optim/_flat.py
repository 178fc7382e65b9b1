"""Direct access to the flat storage of pure-tier tensors, for fused optimizer updates.

An optimizer step on a small model is dominated by per-op overhead; updating each parameter
with one list comprehension over its flat buffer is several times cheaper than a chain of
in-place tensor ops. Tensors on other backends (or with unusual layouts) take the tensor-op path.
"""

from __future__ import annotations

from array import array

from puredl.backends import pure as _pure
from puredl.tensor import Tensor, bump_version


def writable_buffer(t: Tensor) -> array | None:
    """The ``array.array`` holding exactly ``t``'s elements in row-major order, or None.

    The caller is about to write it, so ``t``'s version goes up (a saved ``t`` then fails backward).
    """
    if t._be is not _pure:
        return None
    a = t._impl
    if a.offset or len(a.buf) != _pure.numel(a.shape) or not _pure.is_contiguous(a):
        return None
    if (
        type(a.buf) is not array
    ):  # float16/bfloat16/int8: tensor ops narrow every result, a raw write would not
        return None
    bump_version(t)  # about to be written
    return a.buf


def read_values(t: Tensor):
    """``t``'s elements in row-major order (a buffer or list; do not mutate), or None off the pure tier."""
    if t._be is not _pure:
        return None
    return _pure.values(t._impl)


def new_like(values, like: Tensor) -> Tensor:
    """A fresh tensor with ``like``'s shape and dtype holding ``values`` (copied)."""
    return Tensor.from_array(array(like.dtype.typecode, values), like.shape, like.dtype)
