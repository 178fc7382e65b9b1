"""``F.scaled_dot_product_attention``, composed from matmul, softmax and dropout (torch's math path).

``softmax(q @ k^T * scale + bias) @ v``, where ``bias`` is -inf above the diagonal for
``is_causal`` and comes from ``attn_mask`` (bool: True = attend; float: added).

>>> import puredl as pd
>>> from puredl.nn import functional as F
>>> q = k = v = pd.ones(1, 3, 4)
>>> F.scaled_dot_product_attention(q, k, v, is_causal=True).shape
(1, 3, 4)
"""

from __future__ import annotations

import math

from puredl import ops
from puredl.tensor import Tensor


def _causal_bias(length: int, source: int, like: Tensor) -> Tensor:
    """(L, S) additive mask: 0 where key j <= query i, -inf elsewhere (torch's tril(ones))."""
    from puredl.creation import tensor

    inf = float("-inf")
    rows = [[0.0 if j <= i else inf for j in range(source)] for i in range(length)]
    return tensor(rows, dtype=like.dtype, device=like.device)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """Attention over the last two dims: query (..., L, E), key (..., S, E), value (..., S, Ev)."""
    from puredl.nn import functional as F

    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(
            f"scaled_dot_product_attention: query, key and value need >= 2 dims, got shapes "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(
            "scaled_dot_product_attention: query (..., L, E), key (..., S, E) and value (..., S, Ev) "
            f"disagree: {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if is_causal and attn_mask is not None:
        raise RuntimeError(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True"
        )
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = _repeat_heads(key, repeat)
        value = _repeat_heads(value, repeat)
    length, source = query.shape[-2], key.shape[-2]
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = ops.matmul(query, key.transpose(-2, -1)) * factor
    if is_causal:
        scores = scores + _causal_bias(length, source, scores)
    elif attn_mask is not None:
        if attn_mask.dtype.name == "bool":
            scores = ops.where(attn_mask, scores, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = ops.softmax(scores, -1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p, training=True)
    return ops.matmul(weights, value)


def _repeat_heads(x: Tensor, repeat: int) -> Tensor:
    """(..., H, S, E) -> (..., H * repeat, S, E), each head repeated in place (repeat_interleave)."""
    shape = x.shape
    expanded = x.unsqueeze(-3).expand(shape[:-3] + (shape[-3], repeat) + shape[-2:])
    return expanded.reshape(shape[:-3] + (shape[-3] * repeat,) + shape[-2:])
