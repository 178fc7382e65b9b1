"""``nn.Unflatten``: split one dimension into a shape (the inverse of ``nn.Flatten``).

>>> import puredl as pd
>>> from puredl import nn
>>> nn.Unflatten(1, (2, 5))(pd.zeros(3, 10)).shape
(3, 2, 5)
"""

from __future__ import annotations

from puredl.nn.module import Module
from puredl.tensor import Tensor


def unflatten(x: Tensor, dim: int, sizes) -> Tensor:
    """``x`` with dimension ``dim`` reshaped to ``sizes`` (one entry may be -1)."""
    from puredl.ops import normalize_dim

    d = normalize_dim(dim, x.ndim, "unflatten")
    sizes = tuple(sizes)
    if not sizes:
        raise RuntimeError("unflatten: sizes must be non-empty")
    known = 1
    for s in sizes:
        if s != -1:
            known *= s
    if (
        sizes.count(-1) > 1
        or (-1 not in sizes and known != x.shape[d])
        or (-1 in sizes and (known == 0 or x.shape[d] % known))
    ):
        raise RuntimeError(
            f"unflatten: provided sizes {list(sizes)} don't multiply up to the size of dim {dim} "
            f"({x.shape[d]}) "
            f"in the input tensor"
        )
    return x.reshape(x.shape[:d] + sizes + x.shape[d + 1 :])


class Unflatten(Module):
    """Reshape dimension ``dim`` into ``unflattened_size``."""

    def __init__(self, dim: int, unflattened_size) -> None:
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, x: Tensor) -> Tensor:
        return unflatten(x, self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
