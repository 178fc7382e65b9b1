"""Layers with parameters or state: Linear, Embedding, LayerNorm, Dropout, Identity, Flatten.

>>> import puredl as pd
>>> from puredl import nn
>>> layer = nn.Linear(3, 2)
>>> layer(pd.ones(5, 3)).shape
(5, 2)
"""

from __future__ import annotations

import math

from puredl import creation
from puredl.nn import functional as F
from puredl.nn import init
from puredl.nn.module import Module, Parameter
from puredl.tensor import Tensor


def _check_positive(name: str, what: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: {what} must be a non-negative int, got {value!r}")
    return value


class Linear(Module):
    """``y = x @ weight.T + bias`` with PyTorch's default initialisation.

    ``weight`` (out_features, in_features) is drawn by kaiming_uniform_(a=sqrt(5)), i.e. from
    U(-1/sqrt(in_features), 1/sqrt(in_features)); ``bias`` from the same range.

    >>> from puredl import nn
    >>> nn.Linear(2, 4)
    Linear(2 -> 4, bias=True)
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, dtype=None, device=None
    ) -> None:
        super().__init__()
        self.in_features = _check_positive("Linear", "in_features", in_features)
        self.out_features = _check_positive("Linear", "out_features", out_features)
        self.weight = Parameter(creation.empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(creation.empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: integer indices of any shape -> rows of ``weight`` (num_embeddings, dim).

    ``weight`` starts as N(0, 1), like torch; a ``padding_idx`` row starts at zero and gets no
    gradient.

    >>> import puredl as pd
    >>> from puredl import nn
    >>> nn.Embedding(10, 3)(pd.tensor([[1, 2], [3, 4]])).shape
    (2, 2, 3)
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        dtype=None,
        device=None,
    ) -> None:
        super().__init__()
        self.num_embeddings = _check_positive("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = _check_positive("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx {padding_idx} is outside [-{num_embeddings}, {num_embeddings})"
                )
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        self.weight = Parameter(creation.empty(num_embeddings, embedding_dim, dtype=dtype, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            from puredl import autograd

            with autograd.no_grad():
                self.weight[self.padding_idx] = 0.0

    def forward(self, indices: Tensor) -> Tensor:
        return F.embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims, then scale by ``weight`` and shift by ``bias``.

    >>> import puredl as pd
    >>> from puredl import nn
    >>> y = nn.LayerNorm(4)(pd.tensor([[1.0, 2.0, 3.0, 4.0]]))
    >>> round(y.mean().item(), 6), round(y.std(correction=0).item(), 3)
    (0.0, 1.0)
    """

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype=None,
        device=None,
    ) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        for n in shape:
            _check_positive("LayerNorm", "normalized_shape", n)
        self.normalized_shape = shape
        self.eps = float(eps)
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(creation.ones(shape, dtype=dtype, device=device))
            if bias:
                self.bias = Parameter(creation.zeros(shape, dtype=dtype, device=device))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class Dropout(Module):
    """Zero elements with probability ``p`` while training (scaling the rest by 1/(1-p)); identity in eval.

    The mask comes from puredl's global generator (``puredl.manual_seed``).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Identity(Module):
    """Returns its input unchanged (a placeholder layer)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one (default: everything but the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


__all__ = ["Dropout", "Embedding", "Flatten", "Identity", "LayerNorm", "Linear"]
