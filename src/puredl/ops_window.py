"""Sliding-window ops, declared once: ``unfold``/``fold`` (kernels ``im2col``/``col2im`` per backend,
each the other's gradient), ``conv2d`` (kernels ``conv2d``/``conv2d_backward``: torch's own on
torch, im2col + one matmul on the pure backend) and max/avg pooling (im2col + a max or mean
over the window).
"""

from __future__ import annotations

import math

from puredl import accel
from puredl import dtypes as dt
from puredl.autograd import Function
from puredl.ops import MATMUL, SHAPE, _numel, _record, cast
from puredl.tensor import Tensor, _wrap


def _pair(v, name: str, what: str) -> tuple:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in t):
        raise TypeError(f"{name}: {what} must be an int or a pair of ints, got {v!r}")
    return t


def _pads(padding, name: str) -> tuple:
    ph, pw = _pair(padding, name, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"{name}: padding must be non-negative, got {padding!r}")
    return (ph, ph, pw, pw)


class Conv2d(Function):
    """One node: torch's convolution kernels on torch, im2col + matmul on the pure backend."""

    __slots__ = ("args",)

    def backward(self, g):
        x, w = self.inputs[0], self.inputs[1]
        work = _numel(x.shape) * _numel(w.shape[1:])
        be, (gx, gw, gb) = accel.run(
            "conv2d_backward", MATMUL, work, (g, x, w), "conv2d_backward", (), *self.args
        )
        grads = (_wrap(gx, be) if x._rg else None, _wrap(gw, be) if w._rg else None)
        if len(self.inputs) == 3:
            grads += (_wrap(gb, be) if self.inputs[2]._rg else None,)
        return grads


class Unfold(Function):
    __slots__ = ("args",)

    def backward(self, g):
        shape, kernel, stride, pads, dilation = self.args
        return (_fold(g, shape, kernel, stride, pads, dilation),)


class Fold(Function):
    __slots__ = ("args",)

    def backward(self, g):
        shape, kernel, stride, pads, dilation = self.args
        return (_unfold(g, kernel, stride, pads, dilation, 0.0),)


def _unfold(a: Tensor, kernel: tuple, stride: tuple, pads: tuple, dilation: tuple, pad_value=0.0) -> Tensor:
    work = _numel(a.shape) * kernel[0] * kernel[1]
    be, out_impl = accel.run(
        "im2col", SHAPE, work, (a,), "im2col", (), kernel, stride, pads, dilation, pad_value
    )
    node = Unfold()
    node.args = (a.shape, kernel, stride, pads, dilation)
    return _record(node, (a,), _wrap(out_impl, be))


def _fold(cols: Tensor, shape: tuple, kernel: tuple, stride: tuple, pads: tuple, dilation: tuple) -> Tensor:
    be, out_impl = accel.run(
        "col2im", SHAPE, _numel(cols.shape), (cols,), "col2im", (), shape, kernel, stride, pads, dilation
    )
    node = Fold()
    node.args = (shape, kernel, stride, pads, dilation)
    return _record(node, (cols,), _wrap(out_impl, be))


def _check_4d(x: Tensor, name: str) -> tuple:
    """(x as 4-D float, whether it came unbatched)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor input, got {type(x).__name__}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{name}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {x.shape}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name}: expected a floating point input, got {x.dtype.name}")
    return (x, False) if x.ndim == 4 else (x.unsqueeze(0), True)


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:  # noqa: A002
    """torch.nn.functional.unfold: (N, C, H, W) -> (N, C*kh*kw, L), every window as a column."""
    x, single = _check_4d(input, "unfold")
    k = _pair(kernel_size, "unfold", "kernel_size")
    out = _unfold(
        x,
        k,
        _pair(stride, "unfold", "stride"),
        _pads(padding, "unfold"),
        _pair(dilation, "unfold", "dilation"),
    )
    return out.squeeze(0) if single else out


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:  # noqa: A002
    """torch.nn.functional.fold: the adjoint of unfold (overlapping windows add up)."""
    single = input.ndim == 2
    cols = input.unsqueeze(0) if single else input
    k = _pair(kernel_size, "fold", "kernel_size")
    h, w = _pair(output_size, "fold", "output_size")
    if cols.shape[1] % (k[0] * k[1]):
        raise ValueError(
            f"fold: {cols.shape[1]} rows are not a multiple of the kernel's {k[0] * k[1]} positions"
        )
    shape = (cols.shape[0], cols.shape[1] // (k[0] * k[1]), h, w)
    out = _fold(
        cols,
        shape,
        k,
        _pair(stride, "fold", "stride"),
        _pads(padding, "fold"),
        _pair(dilation, "fold", "dilation"),
    )
    return out.squeeze(0) if single else out


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:  # noqa: A002
    """torch.nn.functional.conv2d: im2col, then one (grouped) matmul; padding may be 'same' or 'valid'."""
    x, single = _check_4d(input, "conv2d")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-D weight (out, in/groups, kh, kw), got shape {weight.shape}")
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    if groups < 1 or c % groups or o % groups:
        raise ValueError(f"conv2d: groups={groups} must divide both the {c} input and {o} output channels")
    if cg * groups != c:
        raise ValueError(
            f"conv2d: weight of shape {weight.shape} expects {cg * groups} input channels, "
            f"got input of shape {input.shape}"
        )
    stride = _pair(stride, "conv2d", "stride")
    dilation = _pair(dilation, "conv2d", "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)  # the extra one goes last, as torch
        else:
            raise ValueError(f"conv2d: padding must be 'same', 'valid', an int or a pair, got {padding!r}")
    else:
        pads = _pads(padding, "conv2d")
    oh = (h + pads[0] + pads[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + pads[2] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if oh <= 0 or ow <= 0:
        raise ValueError(
            f"conv2d: kernel ({kh}, {kw}) is larger than the padded input of shape {input.shape}"
        )
    if weight.dtype is not x.dtype:
        weight = cast(weight, dt.promote(x.dtype, weight.dtype))
        x = cast(x, weight.dtype)
    if bias is not None and bias.dtype is not x.dtype:
        bias = cast(bias, x.dtype)
    tensors = (x, weight) if bias is None else (x, weight, bias)
    work = n * o * oh * ow * cg * kh * kw
    args = (stride, pads, dilation, groups)
    if bias is None:
        be, out_impl = accel.run("conv2d", MATMUL, work, tensors, "conv2d", (), None, *args)
    else:
        be, out_impl = accel.run("conv2d", MATMUL, work, tensors, "conv2d", (), *args)
    node = Conv2d()
    node.args = args
    out = _record(node, tensors, _wrap(out_impl, be), (x, weight))
    return out.squeeze(0) if single else out


def _pool_geometry(x: Tensor, kernel_size, stride, padding, dilation, ceil_mode: bool, name: str):
    k = _pair(kernel_size, name, "kernel_size")
    s = k if stride is None or stride == [] or stride == () else _pair(stride, name, "stride")
    d = _pair(dilation, name, "dilation")
    ph, pw = _pair(padding, name, "padding")
    if ph * 2 > k[0] or pw * 2 > k[1]:
        raise ValueError(
            f"{name}: padding should be at most half of the kernel size, got padding={padding} kernel={k}"
        )
    h, w = x.shape[-2:]
    sizes, extra = [], []
    for size, kk, ss, dd, p in ((h, k[0], s[0], d[0], ph), (w, k[1], s[1], d[1], pw)):
        span = size + 2 * p - dd * (kk - 1) - 1
        o = (-(-span // ss) if ceil_mode else span // ss) + 1
        if ceil_mode and (o - 1) * ss >= size + p:  # the last window must start inside the input or left pad
            o -= 1
        if o <= 0:
            raise ValueError(f"{name}: output size is too small for input of shape {x.shape}")
        sizes.append(o)
        extra.append(max((o - 1) * ss + dd * (kk - 1) + 1 - (size + 2 * p), 0))
    pads = (ph, ph + extra[0], pw, pw + extra[1])
    return k, s, d, pads, tuple(sizes)


def max_pool2d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:  # noqa: A002
    """torch.nn.functional.max_pool2d (padding counts as -inf; gradient to the first maximum)."""
    if return_indices:
        raise NotImplementedError("max_pool2d: return_indices=True is not supported yet")
    x, single = _check_4d(input, "max_pool2d")
    k, s, d, pads, (oh, ow) = _pool_geometry(
        x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d"
    )
    n, c, h, w = x.shape
    cols = _unfold(x.reshape(n * c, 1, h, w), k, s, pads, d, -math.inf)  # (N*C, kh*kw, L)
    out = cols.max(dim=1).values.reshape(n, c, oh, ow)
    return out.squeeze(0) if single else out


def avg_pool2d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override=None,
) -> Tensor:  # noqa: A002
    """torch.nn.functional.avg_pool2d (zero padding counted in the mean by default, as torch)."""
    x, single = _check_4d(input, "avg_pool2d")
    k, s, d, pads, (oh, ow) = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    n, c, h, w = x.shape
    cols = _unfold(x.reshape(n * c, 1, h, w), k, s, pads, d)
    if divisor_override:
        out = cols.sum(dim=1) / float(divisor_override)
    elif count_include_pad and not ceil_mode:
        out = cols.sum(dim=1) / float(k[0] * k[1])
    else:  # divide each window by how many of its cells it counts (torch's rule)
        from puredl.creation import ones

        ph, pw = pads[0], pads[2]
        inside = (
            ones(1, 1, h + 2 * ph, w + 2 * pw, dtype=x.dtype, device=x.device) if count_include_pad else None
        )
        if inside is None:
            inside = _unfold(ones(1, 1, h, w, dtype=x.dtype, device=x.device), k, s, pads, d)
        else:
            inside = _unfold(inside, k, s, (0, pads[1] - ph, 0, pads[3] - pw), d)
        out = cols.sum(dim=1) / inside.sum(dim=1)
    out = out.reshape(n, c, oh, ow)
    return out.squeeze(0) if single else out


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:  # noqa: A002
    """torch.nn.functional.adaptive_avg_pool2d: cell (i, j) averages rows floor(i*H/oh)..ceil((i+1)*H/oh)."""
    x, single = _check_4d(input, "adaptive_avg_pool2d")
    h, w = x.shape[-2:]
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    oh, ow = (h if sizes[0] is None else sizes[0]), (w if sizes[1] is None else sizes[1])
    if h % oh == 0 and w % ow == 0:  # equal windows: one pooling
        out = avg_pool2d(x, (h // oh, w // ow))
    else:
        from puredl.ops import cat

        rows = []
        for i in range(oh):
            r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
            cells = [
                x[:, :, r0:r1, (j * w) // ow : -(-((j + 1) * w) // ow)].mean(dim=(2, 3), keepdim=True)
                for j in range(ow)
            ]
            rows.append(cat(cells, 3))
        out = cat(rows, 2)
    return out.squeeze(0) if single else out
