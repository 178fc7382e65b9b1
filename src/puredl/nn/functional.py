"""Stateless forms of the layers and losses (``torch.nn.functional``'s names), composed from tensor ops.

Everything here is built from the differentiable ops in ``puredl.ops``, so gradients come for free
and every backend runs it.

>>> import puredl as pd
>>> from puredl.nn import functional as F
>>> logits = pd.tensor([[2.0, 0.5, -1.0]])
>>> round(F.cross_entropy(logits, pd.tensor([0])).item(), 4)
0.2413
"""

from __future__ import annotations

import math

from puredl import dtypes as dt
from puredl import ops
from puredl.tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------- layers


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """``input @ weight.T + bias`` with ``weight`` of shape (out_features, in_features)."""
    return ops.linear(input, weight, bias)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:  # noqa: A002
    """Rows of ``weight`` picked by the integer tensor ``input`` (any shape)."""
    if input.dtype not in (dt.int64, dt.int32):  # torch takes Long or Int indices
        raise TypeError(f"embedding: indices must be an int64 or int32 tensor, got {input.dtype.name}")
    n = weight.shape[0]
    if input.numel():
        lo, hi = input.min().item(), input.max().item()
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexError(f"embedding: index {bad} is out of range for an embedding with {n} rows")
    out = weight[input]
    if padding_idx is not None:
        # the padding row gets no gradient (forward values are unchanged)
        keep = ops.ne(input, padding_idx).unsqueeze(-1)
        out = ops.where(keep, out, out.detach())
    return out


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:  # noqa: A002
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (identity unless training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    from puredl.creation import rand

    keep = rand(input.shape, dtype=input.dtype, device=input.device) >= p
    return input * (keep.to(input.dtype) * (1.0 / (1.0 - p)))


def layer_norm(
    input: Tensor,  # noqa: A002
    normalized_shape: tuple,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims to zero mean, unit (biased) variance."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(normalized_shape)
    if tuple(input.shape[input.ndim - k :]) != normalized_shape or k > input.ndim:
        raise ValueError(
            f"layer_norm: input shape {tuple(input.shape)} does not end with "
            f"normalized_shape {normalized_shape}"
        )
    dims = tuple(range(input.ndim - k, input.ndim))
    mu = input.mean(dims, keepdim=True)
    centered = input - mu
    var = (centered * centered).mean(dims, keepdim=True)
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:  # noqa: A002
    return input.flatten(start_dim, end_dim)


# --------------------------------------------------------------------------- activations


def relu(input: Tensor) -> Tensor:  # noqa: A002
    return ops.relu(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:  # noqa: A002
    """``x`` where x > 0, else ``negative_slope * x``."""
    return ops.where(input > 0.0, input, input * negative_slope)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """Gaussian error linear unit: exact (erf) or ``approximate="tanh"``."""
    if approximate == "none":
        return ops.gelu(input)
    if approximate != "tanh":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    inner = (input + input * input * input * 0.044715) * math.sqrt(2.0 / math.pi)
    return input * 0.5 * (ops.tanh(inner) + 1.0)


def sigmoid(input: Tensor) -> Tensor:  # noqa: A002
    return ops.sigmoid(input)


def tanh(input: Tensor) -> Tensor:  # noqa: A002
    return ops.tanh(input)


def softmax(input: Tensor, dim: int = -1) -> Tensor:  # noqa: A002
    return ops.softmax(input, dim)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:  # noqa: A002
    return ops.log_softmax(input, dim)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot rows of class indices, as torch's ``F.one_hot`` (a trailing dim of ``num_classes``).

    >>> import puredl as pd
    >>> one_hot(pd.tensor([0, 2]), 3).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    from puredl.data import one_hot as _one_hot

    if not isinstance(tensor, Tensor) or tensor.dtype is not dt.int64:
        got = tensor.dtype.name if isinstance(tensor, Tensor) else type(tensor).__name__
        raise RuntimeError(f"one_hot is only applicable to index tensor of type LongTensor, got {got}")
    for v in tensor.reshape(-1).tolist():
        if v < 0:
            raise RuntimeError("Class values must be non-negative.")
        if num_classes != -1 and v >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes.")
    return _one_hot(tensor, None if num_classes == -1 else num_classes, dtype=dt.int64)


# --------------------------------------------------------------------------- losses


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_same_shape(name: str, input: Tensor, target: Tensor) -> None:  # noqa: A002
    if not isinstance(target, Tensor):
        raise TypeError(f"{name}: target must be a Tensor, got {type(target).__name__}")
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(
            f"{name}: input shape {tuple(input.shape)} and target shape {tuple(target.shape)} differ "
            "(reshape one of them; silent broadcasting would compute the wrong loss)"
        )


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error ``(input - target)^2``, reduced by ``reduction``."""
    _check_reduction(reduction)
    _check_same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean absolute error ``|input - target|``."""
    _check_reduction(reduction)
    _check_same_shape("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction)


def _class_last(input: Tensor, name: str) -> tuple[Tensor, int]:  # noqa: A002
    """(rows, classes) view of (N, C), (C,) or (N, C, d1, ...) input, classes last."""
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have a class dimension, got a 0-d tensor")
    if input.ndim == 1:
        return input.unsqueeze(0), input.shape[0]
    c = input.shape[1]
    if input.ndim > 2:
        input = _move_class_last(input)
    return input.reshape(-1, c), c


def _move_class_last(x: Tensor) -> Tensor:
    dims = (0,) + tuple(range(2, x.ndim)) + (1,)
    return x.permute(dims)


def _check_target(target: Tensor, input: Tensor, name: str) -> Tensor:  # noqa: A002
    """``target`` as (rows,) int64 class indices, after checking its type and shape against ``input``."""
    if not isinstance(target, Tensor):
        raise TypeError(f"{name}: target must be a Tensor of class indices, got {type(target).__name__}")
    if target.dtype is not dt.int64:
        raise TypeError(
            f"{name}: target must hold int64 class indices, got {target.dtype.name} "
            "(use target.long(); for class probabilities pass a float target of the input's shape)"
        )
    expected = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} does not match input shape {tuple(input.shape)} "
            f"(expected {expected})"
        )
    return target if target.ndim == 1 else target.reshape(-1)


def _nll(input, target, weight, ignore_index, reduction, label_smoothing, log_softmax, name):  # noqa: A002
    rows = _check_target(target, input, name)
    x, c = _class_last(input, name)
    if weight is not None and tuple(weight.shape) != (c,):
        raise ValueError(f"{name}: weight has shape {tuple(weight.shape)}, expected ({c},) for {c} classes")
    loss = ops.nll_loss(x, rows, weight, ignore_index, label_smoothing, reduction, log_softmax)
    return loss.reshape(target.shape) if reduction == "none" and loss.shape != target.shape else loss


def nll_loss(
    input: Tensor,  # noqa: A002
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` (N, C) at class indices ``target`` (N,)."""
    _check_reduction(reduction)
    return _nll(input, target, weight, ignore_index, reduction, 0.0, False, "nll_loss")


def cross_entropy(
    input: Tensor,  # noqa: A002
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy of logits ``input`` (N, C) against class indices (N,) or probabilities (N, C).

    Same formula as torch, including ``weight``, ``ignore_index`` and ``label_smoothing``. With
    class indices it is one fused op (log-softmax and NLL, and one gradient kernel), as in torch.
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if isinstance(target, Tensor) and target.dtype.is_floating_point:
        return _soft_cross_entropy(input, target, weight, reduction, label_smoothing)
    return _nll(input, target, weight, ignore_index, reduction, label_smoothing, True, "cross_entropy")


def _soft_cross_entropy(input, target, weight, reduction, label_smoothing):  # noqa: A002
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(
            f"cross_entropy: a float target is read as class probabilities and must have the input's shape "
            f"{tuple(input.shape)}, got {tuple(target.shape)}; class indices must be int64 (target.long())"
        )
    logits, c = _class_last(input, "cross_entropy")
    probs, _ = _class_last(target, "cross_entropy")
    if label_smoothing:
        probs = probs * (1.0 - label_smoothing) + label_smoothing / c
    logp = logits.log_softmax(-1)
    if weight is not None:
        logp = logp * weight.to(logp.dtype)
    loss = -(logp * probs).sum(-1)
    if reduction == "none":
        return loss.reshape((input.shape[0],) + tuple(input.shape[2:]) if input.ndim > 1 else ())
    return loss.sum() if reduction == "sum" else loss.mean()


def binary_cross_entropy(
    input: Tensor,  # noqa: A002
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``-(y log p + (1 - y) log(1 - p))`` on probabilities ``input``; logs clamp at -100 like torch."""
    _check_reduction(reduction)
    _check_same_shape("binary_cross_entropy", input, target)
    if input.numel():
        lo, hi = input.min().item(), input.max().item()
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(
                f"binary_cross_entropy: input must be probabilities in [0, 1], got values in [{lo}, {hi}] "
                "(apply sigmoid first, or use binary_cross_entropy_with_logits)"
            )
    log_p = input.log().clamp(min=-100.0)
    log_1mp = (1.0 - input).log().clamp(min=-100.0)
    loss = -(target * log_p + (1.0 - target) * log_1mp)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,  # noqa: A002
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Sigmoid + binary cross-entropy in one numerically stable formula (torch's)."""
    _check_reduction(reduction)
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    # (1 - y) x + lw * (log(1 + e^-|x|) + max(-x, 0)), lw = 1 + (pos_weight - 1) y
    softplus_neg = (ops.exp(-input.abs()) + 1.0).log() + ops.relu(-input)
    if pos_weight is not None:
        softplus_neg = softplus_neg * ((pos_weight - 1.0) * target + 1.0)
    loss = (1.0 - target) * input + softplus_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "embedding",
    "flatten",
    "gelu",
    "huber_loss",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "one_hot",
    "relu",
    "scaled_dot_product_attention",
    "sigmoid",
    "smooth_l1_loss",
    "softmax",
    "tanh",
    "unflatten",
]


# kept in their own modules (one concept each); re-exported under torch's F names
from puredl.nn.attention import scaled_dot_product_attention  # noqa: E402
from puredl.nn.robust_losses import huber_loss, smooth_l1_loss  # noqa: E402
from puredl.nn.unflatten import unflatten  # noqa: E402

# --------------------------------------------------------------------------- the CNN family
from puredl.ops_window import adaptive_avg_pool2d, avg_pool2d, conv2d, fold, max_pool2d, unfold  # noqa: E402


def batch_norm(
    input: Tensor,  # noqa: A002
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize each channel (dim 1) by the batch's mean and biased variance when training (updating
    the running statistics in place, the variance unbiased, as torch), by the running ones otherwise."""
    if input.ndim < 2:
        raise ValueError(
            f"batch_norm: expected an input with at least 2 dimensions (N, C, ...), got {input.shape}"
        )
    c = input.shape[1]
    dims = (0,) + tuple(range(2, input.ndim))
    shape = (1, c) + (1,) * (input.ndim - 2)
    if training:
        count = input.numel() // c
        if count <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {list(input.shape)}"
            )
        mean = input.mean(dim=dims, keepdim=True)
        var = ((input - mean) ** 2).mean(dim=dims, keepdim=True)
        if running_mean is not None or running_var is not None:
            from puredl.autograd import no_grad

            with no_grad():
                if running_mean is not None:
                    running_mean.mul_(1.0 - momentum).add_(mean.detach().reshape(c) * momentum)
                if running_var is not None:
                    running_var.mul_(1.0 - momentum).add_(
                        var.detach().reshape(c) * (momentum * count / (count - 1))
                    )
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when not training")
        mean, var = running_mean.reshape(shape), running_var.reshape(shape)
    out = (input - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:  # noqa: A002
    """Zero whole channels with probability ``p`` (scaling the rest by 1/(1-p)); identity unless training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    if input.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected a 3-D or 4-D input, got shape {input.shape}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    from puredl.creation import rand

    channels = input.shape[:-2]  # (N, C) or (C,) for an unbatched input
    keep = rand(channels + (1, 1), dtype=input.dtype, device=input.device) >= p
    return input * (keep.to(input.dtype) * (1.0 / (1.0 - p)))


__all__ += [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "dropout2d",
    "fold",
    "max_pool2d",
    "unfold",
]
