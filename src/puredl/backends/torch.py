"""The pure backend's kernels on torch tensors: same names, signatures, dtypes and semantics.

This module is the CPU torch backend; ``cuda_backend(i)`` gives one per CUDA device (the same
kernels with creation bound to that device). It imports torch at module level, so import it
lazily (``puredl.accel`` does). Every impl it returns is a torch tensor that does not require
grad: puredl's own autograd records the graph, torch only computes.

A torch failure (RuntimeError) propagates: the dispatcher that called the kernel
(``puredl.accel.run``) retries it on the pure backend in AUTO mode or re-raises it with context
otherwise; this module knows nothing of that policy. Validation errors (ValueError, IndexError)
carry the same messages as the pure backend's.

>>> import torch
>>> import puredl
>>> from puredl.backends import torch as tb
>>> tb.tolist(tb.binary("add", torch.ones(2), torch.ones(2), puredl.float32))
[2.0, 2.0]
"""

from __future__ import annotations

from array import array

import torch

from puredl import dtypes as dt
from puredl.backends import pure as _pure

NAME = "torch"
DEVICE = "cpu"

TORCH_DTYPE = {
    dt.float32: torch.float32,
    dt.float64: torch.float64,
    dt.float16: torch.float16,
    dt.bfloat16: torch.bfloat16,
    dt.int64: torch.int64,
    dt.int32: torch.int32,
    dt.int16: torch.int16,
    dt.int8: torch.int8,
    dt.uint8: torch.uint8,
    dt.bool_: torch.bool,
}
DTYPE_FROM_PUREDL = {d.name: t for d, t in TORCH_DTYPE.items()}
PUREDL_DTYPE = {t: d for d, t in TORCH_DTYPE.items()}
# the torch dtype of each pure buffer's storage (half floats live in float32 buffers)
_STORAGE = {d: torch.float32 if d.typecode == "f" else t for d, t in TORCH_DTYPE.items()}
# the torch dtype of a plain array's typecode (a plain 'b' buffer is bool's; int8 is a tagged one)
_PLAIN_VIEW = {d.typecode: t for d, t in TORCH_DTYPE.items() if d in dt.BY_TYPECODE.values()}
_INTS = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
_frombuffer = torch.frombuffer
_aten = torch.ops.aten  # the kernels torch's own autograd calls (no extra dispatch layer)
_SMALL_COPY = 4096  # below this many elements, tobytes() beats a memoryview copy


# --------------------------------------------------------------------------- metadata and export


def device(a: torch.Tensor) -> str:
    d = a.device
    if d.type == "cpu":
        return "cpu"
    return d.type if d.index is None else f"{d.type}:{d.index}"


def dtype_of(a: torch.Tensor) -> dt.DType:
    return PUREDL_DTYPE[a.dtype]


def item(a: torch.Tensor):
    return a.item()


def tolist(a: torch.Tensor):
    return a.tolist()


def to_array(a: torch.Tensor) -> array:
    """A flat row-major ``array.array`` copy (one C-level copy, no Python loop)."""
    d = PUREDL_DTYPE[a.dtype]
    cls = _pure.BUFFER.get(d)
    if cls is None:
        return _host_array(a, d.typecode)
    # float16/bfloat16 (widened to float32, exactly) and int8: the pure backend's tagged buffer
    return cls(d.typecode, _host_array(a if d is dt.int8 else a.float(), d.typecode))


def _host_array(a: torch.Tensor, tc: str) -> array:
    n = a.numel()
    if n == 0:
        return array(tc)
    host = a.detach().reshape(-1)
    if host.device.type != "cpu":
        host = host.cpu()
    host = host.contiguous()
    try:
        np_view = host.numpy()
    except RuntimeError:  # numpy missing: copy through a buffer that torch fills
        out = array(tc, bytes(n * array(tc).itemsize))
        torch.frombuffer(out, dtype=a.dtype).copy_(host)
        return out
    if n < _SMALL_COPY:
        return array(tc, np_view.tobytes())
    out = array(tc)
    out.frombytes(memoryview(np_view).cast("B"))
    return out


def to_pure(a: torch.Tensor) -> _pure.PureArray:
    """The pure-backend copy of a torch tensor (torch memory cannot be wrapped by array.array)."""
    return _pure.PureArray(to_array(a), tuple(a.shape))


def from_pure(a: _pure.PureArray, dev: str = "cpu") -> torch.Tensor:
    """A torch view of pure storage through the buffer protocol: no copy on the CPU.

    Writes through either side are seen by the other, like torch views. The array must never be
    resized while the view lives (the pure backend only grows arrays it has just created).
    float16 and bfloat16 are the exception: their float32 storage is converted (a copy).
    """
    buf = a.buf
    if type(buf) is array:  # a plain buffer (not float16/bfloat16/int8): its view is the value
        tdt, convert = _PLAIN_VIEW[buf.typecode], None
    else:
        d = buf.dtype
        tdt = _STORAGE[d]
        convert = None if tdt is TORCH_DTYPE[d] else TORCH_DTYPE[d]
    shape = a.shape
    if not buf:
        t = torch.empty(shape, dtype=tdt)
    else:
        t = _frombuffer(buf, dtype=tdt)
        strides = a._strides  # (None: row-major; the strides property would build them)
        if strides is None and a.offset == 0 and len(buf) == _pure.numel(shape):
            if len(shape) != 1:
                t = t.view(*shape) if shape else t.view(())
            # else the whole buffer, as it is
        elif a.offset == 0 and len(buf) == _pure.numel(shape) and _pure.is_contiguous(a):
            t = t.view(*shape) if shape else t.view(())
        else:
            t = t.as_strided(shape, a.strides, a.offset)
    if convert is not None:
        t = t.to(convert)  # exact: every value of the buffer is a value of the dtype
    if dev != "cpu":
        t = t.to(dev)
    return t


def shares_memory(a: _pure.PureArray) -> bool:
    """Whether ``from_pure(a)`` is a view of ``a``'s buffer (not for the half floats)."""
    buf = a.buf  # (float16 and bfloat16 live in tagged 'f' buffers; every other buffer is viewed)
    return type(buf) is array or buf.typecode != "f"


# --------------------------------------------------------------------------- creation


def to_device(a, device_name: str) -> torch.Tensor:
    """``a`` (a torch tensor or a PureArray) on ``device_name`` ("cpu" or "cuda:N"), copied when it moves."""
    if isinstance(a, _pure.PureArray):
        return from_pure(a, device_name)
    return a.to(device_name)


def from_values(data, shape: tuple, dtype: dt.DType) -> torch.Tensor:
    return from_pure(_pure.from_values(data, tuple(shape), dtype), DEVICE)


def full(shape: tuple, value, dtype: dt.DType) -> torch.Tensor:
    return torch.full(tuple(shape), value, dtype=TORCH_DTYPE[dtype], device=DEVICE)


def cast(a: torch.Tensor, dtype: dt.DType) -> torch.Tensor:
    tdt = TORCH_DTYPE[dtype]
    return a if a.dtype is tdt else a.to(tdt)


def contiguous(a: torch.Tensor) -> torch.Tensor:
    return a.contiguous()


def clone(a: torch.Tensor) -> torch.Tensor:
    return a.clone(memory_format=torch.contiguous_format)


# --------------------------------------------------------------------------- views


def view(a: torch.Tensor, shape: tuple) -> torch.Tensor | None:
    """A view with a new shape when the strides allow it, else None (the caller copies)."""
    try:
        return a.view(shape)
    except RuntimeError:
        return None


def reshape(a: torch.Tensor, shape: tuple) -> torch.Tensor:
    return a.reshape(shape)


def permute(a: torch.Tensor, dims: tuple) -> torch.Tensor:
    return a.permute(dims)


def expand(a: torch.Tensor, shape: tuple) -> torch.Tensor:
    return a.expand(shape)


def _torch_key(key: tuple) -> tuple:
    return tuple(k if k is None or isinstance(k, int) else slice(*k) for k in key)


def getitem(a: torch.Tensor, key: tuple) -> torch.Tensor:
    """Basic indexing with a normalised key: ints, (start, stop, step) slices and None."""
    return a[_torch_key(key)]


def setitem(a: torch.Tensor, key: tuple, value) -> None:
    """Write ``value`` (a torch tensor, a PureArray or a Python scalar) into the indexed region."""
    if isinstance(value, _pure.PureArray):
        value = from_pure(value, device(a))
    if isinstance(value, torch.Tensor):
        if value.device != a.device:
            value = value.to(a.device)
        if value.untyped_storage().data_ptr() == a.untyped_storage().data_ptr():
            value = value.clone()  # overlapping source and target: copy first, as the pure backend does
    elif a.dtype in _INTS and isinstance(value, float):
        value = int(value)
    a[_torch_key(key)] = value


# --------------------------------------------------------------------------- elementwise

_BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "floor_divide": torch.floor_divide,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "eq": torch.eq,
    "ne": torch.ne,
    "lt": torch.lt,
    "le": torch.le,
    "gt": torch.gt,
    "ge": torch.ge,
    "logical_and": torch.logical_and,
    "logical_or": torch.logical_or,
}


_TENSOR_ONLY = {"logical_and", "logical_or"}  # torch functions that take no Python scalar


def _check_int_pow(exponent) -> None:
    negative = (exponent < 0).any().item() if isinstance(exponent, torch.Tensor) else exponent < 0
    if negative:
        raise ValueError("integers to negative integer powers are not allowed")


def binary(op: str, a: torch.Tensor, b: torch.Tensor, dtype: dt.DType) -> torch.Tensor:
    if op == "pow" and a.dtype in _INTS:
        _check_int_pow(b)
    out = _BINARY[op](a, b)
    tdt = TORCH_DTYPE[dtype]
    return out if out.dtype is tdt else out.to(tdt)


def _scalar_maximum(a, s):
    return torch.clamp(a, min=s) if s == s else torch.full_like(a, s)


def _scalar_minimum(a, s):
    return torch.clamp(a, max=s) if s == s else torch.full_like(a, s)


def binary_scalar(op: str, a: torch.Tensor, s, reverse: bool, dtype: dt.DType) -> torch.Tensor:
    tdt = TORCH_DTYPE[dtype]
    if op == "maximum":
        out = _scalar_maximum(a, s)
    elif op == "minimum":
        out = _scalar_minimum(a, s)
    elif reverse or op in _TENSOR_ONLY:
        if op == "pow" and a.dtype in _INTS:
            _check_int_pow(a)
        # comparisons keep the scalar's own type (2.5 < an int64 tensor compares with 2.5, not 2)
        st = (
            torch.tensor(s, device=a.device)
            if tdt is torch.bool
            else torch.tensor(s, dtype=a.dtype, device=a.device)
        )
        out = _BINARY[op](st, a) if reverse else _BINARY[op](a, st)
    else:
        if op == "pow" and a.dtype in _INTS:
            _check_int_pow(s)
        out = _BINARY[op](a, s)
    return out if out.dtype is tdt else out.to(tdt)


def _gelu(a):
    return torch.nn.functional.gelu(a)


_UNARY = {
    "neg": torch.neg,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "abs": torch.abs,
    "sign": torch.sign,
    "round": torch.round,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": _gelu,
    "erf": torch.erf,
    "sin": torch.sin,
    "cos": torch.cos,
    "logical_not": torch.logical_not,
    "relu": torch.relu,
}


def unary(op: str, a: torch.Tensor, dtype: dt.DType | None = None) -> torch.Tensor:
    out = _UNARY[op](a)
    if dtype is not None:
        tdt = TORCH_DTYPE[dtype]
        if out.dtype is not tdt:
            out = out.to(tdt)
    return out


def relu_backward(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return _aten.threshold_backward.default(g if g.dtype is a.dtype else g.to(a.dtype), a, 0)


def clamp(a: torch.Tensor, lo, hi) -> torch.Tensor:
    return torch.clamp(a, lo, hi)


def where(cond: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dtype: dt.DType) -> torch.Tensor:
    tdt = TORCH_DTYPE[dtype]
    if cond.dtype is not torch.bool:
        cond = cond.to(torch.bool)
    return torch.where(cond, a if a.dtype is tdt else a.to(tdt), b if b.dtype is tdt else b.to(tdt))


# --------------------------------------------------------------------------- matmul


def matmul(a: torch.Tensor, b: torch.Tensor, dtype: dt.DType) -> torch.Tensor:
    """Matrix product of two arrays with ndim >= 2, batch dimensions broadcast."""
    if a.shape[-1] != b.shape[-2]:
        sa, sb = tuple(a.shape), tuple(b.shape)
        raise ValueError(f"matmul: shapes {sa} and {sb} are not aligned ({sa[-1]} != {sb[-2]})")
    _pure.broadcast_shapes("matmul", tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    out = torch.matmul(a, b)
    tdt = TORCH_DTYPE[dtype]
    return out if out.dtype is tdt else out.to(tdt)


_linear = torch._C._nn.linear


def linear(x: torch.Tensor, w: torch.Tensor, b, dtype: dt.DType) -> torch.Tensor:
    """``x @ w.T + b`` (one addmm), as the pure backend's ``linear``."""
    k = x.shape[-1]
    if w.shape[1] != k:
        sx, sw = tuple(x.shape), tuple(w.shape)
        raise ValueError(f"linear: input {sx} has {k} features, weight {sw} expects {sw[1]}")
    tdt = TORCH_DTYPE[dtype]
    if x.dtype is not tdt:
        x = x.to(tdt)
    if w.dtype is not tdt:
        w = w.to(tdt)
    if b is not None and b.dtype is not tdt:
        b = b.to(tdt)
    return _linear(x, w, b)


# --------------------------------------------------------------------------- reductions


def reduce_sum(a: torch.Tensor, dims: tuple, keepdim: bool, dtype: dt.DType) -> torch.Tensor:
    tdt = TORCH_DTYPE[dtype]
    if len(dims) == a.dim():  # every dimension (also a 0-d tensor): torch's dim=() would be ambiguous
        out = torch.sum(a, dtype=tdt)
        return out.reshape((1,) * a.dim()) if keepdim else out
    if not dims:
        return a.to(tdt, copy=True)
    return torch.sum(a, dim=dims, keepdim=keepdim, dtype=tdt)


def _prod(a: torch.Tensor, dims: tuple, keepdim: bool) -> torch.Tensor:
    for d in sorted(dims, reverse=True):  # torch's prod takes one dim at a time
        a = torch.prod(a, d, keepdim=keepdim)
    return a


_REDUCE = {
    "mean": lambda a, dims, keepdim: torch.mean(a, dim=dims, keepdim=keepdim),
    "prod": _prod,
    "amax": lambda a, dims, keepdim: torch.amax(a, dim=dims, keepdim=keepdim),
    "amin": lambda a, dims, keepdim: torch.amin(a, dim=dims, keepdim=keepdim),
}


def reduce(op: str, a: torch.Tensor, dims: tuple, keepdim: bool, dtype: dt.DType) -> torch.Tensor:
    """The table reduction ``op`` over ``dims`` (``a`` already has the result dtype)."""
    if op == "sum":
        return reduce_sum(a, dims, keepdim, dtype)  # (looked up at call time: tests patch it)
    if not dims:  # no dimension to reduce (a 0-d tensor, or dim=()): the values themselves
        return a.clone()
    if op in ("amax", "amin") and not a.numel() and len(dims) == a.dim():
        raise RuntimeError(f"{op}(): an empty tensor has no {op}; give dim= (as torch asks)")
    return _REDUCE[op](a, dims, keepdim)


def max_dim(a: torch.Tensor, dim: int, keepdim: bool, largest: bool = True):
    """(values, int64 indices) of the max (or min) along ``dim``; first occurrence wins."""
    if a.dim() and a.shape[dim] == 0:
        raise IndexError(f"max/min: cannot reduce over zero-size dimension {dim} of shape {tuple(a.shape)}")
    if a.dim() == 0:
        return a.clone(), torch.zeros((), dtype=torch.int64, device=a.device)
    res = torch.max(a, dim, keepdim) if largest else torch.min(a, dim, keepdim)
    return res.values, res.indices


def argmax_all(a: torch.Tensor, largest: bool = True) -> torch.Tensor:
    if a.numel() == 0:
        raise ValueError("argmax/argmin of an empty tensor")
    if a.dtype is torch.bool:
        a = a.to(torch.int64)
    return torch.argmax(a) if largest else torch.argmin(a)


def softmax(a: torch.Tensor, dim: int, log: bool = False) -> torch.Tensor:
    return torch.log_softmax(a, dim) if log else torch.softmax(a, dim)


# --------------------------------------------------------------------------- losses

_REDUCTION = {"none": 0, "mean": 1, "sum": 2}  # aten's enum


def _bad_target(target: torch.Tensor, c: int, ignore_index: int, name: str) -> IndexError:
    bad = target[(target != ignore_index) & ((target < 0) | (target >= c))]
    return IndexError(f"{name}: target {bad[0].item()} is out of bounds for {c} classes")


def nll_loss(x, target, weight, ignore_index: int, label_smoothing: float, reduction: str, log_softmax: bool):
    """The pure backend's ``nll_loss`` on aten's fused kernels (the ones torch's own autograd uses)."""
    name = "cross_entropy" if log_softmax else "nll_loss"
    c = x.shape[1]
    if x.device.type != "cpu" and target.numel():  # a bad target is a device-side assert on CUDA: check first
        lo, hi = torch.aminmax(torch.where(target == ignore_index, 0, target))
        if lo.item() < 0 or hi.item() >= c:
            raise _bad_target(target, c, ignore_index, name)
    logp = torch.log_softmax(x, 1) if log_softmax else x
    try:
        loss, total = _aten.nll_loss_forward.default(
            logp, target, weight, _REDUCTION[reduction], ignore_index
        )
    except IndexError:
        raise _bad_target(target, c, ignore_index, name) from None
    if label_smoothing:
        eps = label_smoothing
        smooth = -(logp if weight is None else logp * weight).sum(1)
        smooth = smooth.masked_fill(target == ignore_index, 0.0)
        if reduction != "none":
            smooth = smooth.sum() if reduction == "sum" else smooth.sum() / total
        loss = loss * (1.0 - eps) + smooth * (eps / c)
    return loss, logp, total


def nll_loss_backward(
    grad,
    logp,
    target,
    weight,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    total,
    log_softmax: bool,
):
    eps = label_smoothing
    red = _REDUCTION[reduction]
    if not isinstance(total, torch.Tensor):  # the divisor as the pure backend computed it (a float)
        total = torch.tensor(float(total), dtype=logp.dtype, device=logp.device)
    g = grad * (1.0 - eps) if eps else grad
    gx = _aten.nll_loss_backward.default(g, logp, target, weight, red, ignore_index, total)
    if eps:  # the smoothing term -eps/C sum_c w_c logp_c of each kept row
        s = grad / total if reduction == "mean" else grad
        coef = torch.where(target == ignore_index, 0.0, s * (eps / logp.shape[1])).to(logp.dtype).unsqueeze(1)
        gx = gx - (coef if weight is None else coef * weight)
    if log_softmax:
        gx = _aten._log_softmax_backward_data.default(gx, logp, 1, logp.dtype)
    return gx


# --------------------------------------------------------------------------- joining and gathering


def cat(dim: int, dtype: dt.DType, *arrays: torch.Tensor) -> torch.Tensor:
    tdt = TORCH_DTYPE[dtype]
    return torch.cat([t if t.dtype is tdt else t.to(tdt) for t in arrays], dim)


def _check_rows(idx: torch.Tensor, rows: int) -> None:
    if idx.numel():
        lo, hi = torch.aminmax(idx)
        lo, hi = lo.item(), hi.item()
        if hi >= rows or lo < -rows:
            bad = hi if hi >= rows else lo
            raise IndexError(f"index {bad} is out of bounds for dimension 0 with size {rows}")


def index_select0(a: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of ``a`` picked by an int64 index tensor of any shape (negative indices count from the end)."""
    _check_rows(idx, a.shape[0])
    return a[idx]


def index_add0(shape: tuple, idx: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """zeros(shape) with rows ``src`` added at ``idx`` (repeated indices accumulate)."""
    rows = shape[0]
    _check_rows(idx, rows)
    flat = idx.reshape(-1)
    flat = torch.where(flat < 0, flat + rows, flat)
    out = torch.zeros(tuple(shape), dtype=src.dtype, device=src.device)
    return out.index_add_(0, flat, src.reshape((flat.numel(),) + tuple(shape[1:])))


# --------------------------------------------------------------------------- CNN family and top-k

_F = torch.nn.functional


def im2col(a: torch.Tensor, kernel: tuple, stride: tuple, pads: tuple, dilation: tuple, pad_value=0.0):
    """(N, C, H, W) -> (N, C*kh*kw, OH*OW), as the pure backend's ``im2col`` (torch's unfold)."""
    pt, pb, pl, pr = pads
    if pt or pb or pl or pr:
        a = _F.pad(a, (pl, pr, pt, pb), value=pad_value)
    return _F.unfold(a, tuple(kernel), dilation=tuple(dilation), stride=tuple(stride))


def col2im(cols: torch.Tensor, shape: tuple, kernel: tuple, stride: tuple, pads: tuple, dilation: tuple):
    """The adjoint of ``im2col`` (torch's fold, then the padding cut off)."""
    n, c, h, w = shape
    pt, pb, pl, pr = pads
    out = _F.fold(
        cols, (h + pt + pb, w + pl + pr), tuple(kernel), dilation=tuple(dilation), stride=tuple(stride)
    )
    if pt or pb or pl or pr:
        out = out[:, :, pt : pt + h, pl : pl + w].contiguous()
    return out


def _padded_for_conv(x: torch.Tensor, pads: tuple):
    """(input, symmetric padding): asymmetric padding ('same' with an even kernel) is applied first."""
    pt, pb, pl, pr = pads
    if pt == pb and pl == pr:
        return x, (pt, pl)
    return _F.pad(x, (pl, pr, pt, pb)), (0, 0)


def conv2d(x: torch.Tensor, w: torch.Tensor, b, stride: tuple, pads: tuple, dilation: tuple, groups: int):
    """torch's own convolution kernel (the pure backend: im2col + matmul)."""
    xp, padding = _padded_for_conv(x, pads)
    return _F.conv2d(xp, w, b, tuple(stride), padding, tuple(dilation), groups)


def conv2d_backward(
    g: torch.Tensor,
    x: torch.Tensor,
    w: torch.Tensor,
    stride: tuple,
    pads: tuple,
    dilation: tuple,
    groups: int,
):
    """(grad of x, grad of w, grad of the bias), torch's convolution_backward."""
    xp, padding = _padded_for_conv(x, pads)
    gx, gw, gb = _aten.convolution_backward(
        g,
        xp,
        w,
        [w.shape[0]],
        list(stride),
        list(padding),
        list(dilation),
        False,
        [0, 0],
        groups,
        [True, True, True],
    )
    if xp is not x:
        pt, _, pl, _ = pads
        gx = gx[:, :, pt : pt + x.shape[2], pl : pl + x.shape[3]].contiguous()
    return gx, gw, gb


def topk(a: torch.Tensor, k: int, dim: int, largest: bool, sorted_: bool):
    res = torch.topk(a, k, dim, largest=largest, sorted=True)
    return res.values, res.indices


def sort(a: torch.Tensor, dim: int, descending: bool, stable: bool):
    res = torch.sort(a, dim=dim, descending=descending, stable=stable)
    return res.values, res.indices


def cumsum(a: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.cumsum(a, dim)


# --------------------------------------------------------------------------- fused optimizer updates
# torch's own in-place update, term for term as ``torch.optim`` writes it (so results match torch
# bit for bit); False (nothing written) when a tensor has another dtype or device than ``w``.


def _same_place(w: torch.Tensor, *others) -> bool:
    # get_device(): -1 on the CPU, N on cuda:N (puredl's devices), cheaper than .device objects
    dtype, index = w.dtype, w.get_device()
    for o in others:
        if o is not None and (o.dtype is not dtype or o.get_device() != index):
            return False
    return True


def sgd_update(w, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first) -> bool:
    """torch.optim.SGD's single-tensor update of ``w`` and its momentum buffer (``first``: the
    buffer takes the gradient itself) in place."""
    if not _same_place(w, g, buf) or (momentum and buf is None):
        return False
    if maximize:
        g = -g
    if weight_decay:
        g = g.add(w, alpha=weight_decay)
    if momentum:
        if first:
            buf.copy_(g)
        else:
            buf.mul_(momentum).add_(g, alpha=1.0 - dampening)
        g = g.add(buf, alpha=momentum) if nesterov else buf
    w.add_(g, alpha=-lr)
    return True


def adam_update(
    w, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, decoupled, maximize, step_size, bc2_sqrt
) -> bool:
    """torch.optim.Adam / AdamW's single-tensor update of ``w``, ``m``, ``v`` (and ``vmax``) in place."""
    if not _same_place(w, g, m, v, vmax):
        return False
    if maximize:
        g = -g
    if weight_decay:
        if decoupled:
            w.mul_(1.0 - lr * weight_decay)
        else:
            g = g.add(w, alpha=weight_decay)
    m.lerp_(g, 1.0 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
    if vmax is not None:
        torch.maximum(vmax, v, out=vmax)
        v = vmax
    denom = (v.sqrt() / bc2_sqrt).add_(eps)
    w.addcdiv_(m, denom, value=-step_size)
    return True


# --------------------------------------------------------------------------- per-device backends

_KERNELS = (
    "device dtype_of item tolist to_array to_pure cast contiguous clone view reshape permute expand getitem "
    "setitem binary binary_scalar unary clamp where matmul reduce_sum reduce max_dim argmax_all softmax "
    "cat index_select0 index_add0 nll_loss nll_loss_backward linear relu_backward im2col col2im topk sort "
    "cumsum conv2d conv2d_backward sgd_update adam_update"
).split()


class DeviceBackend:
    """The torch kernels for one non-CPU device (``cuda:N``); creation happens on that device."""

    NAME = NAME

    def __init__(self, device_name: str):
        self.DEVICE = device_name
        self.torch_device = torch.device(device_name)
        g = globals()
        for k in _KERNELS:
            setattr(self, k, g[k])

    def from_values(self, data, shape: tuple, dtype: dt.DType) -> torch.Tensor:
        return from_pure(_pure.from_values(data, tuple(shape), dtype), self.DEVICE)

    def full(self, shape: tuple, value, dtype: dt.DType) -> torch.Tensor:
        return torch.full(tuple(shape), value, dtype=TORCH_DTYPE[dtype], device=self.torch_device)

    def from_pure(self, a: _pure.PureArray, dev: str | None = None) -> torch.Tensor:
        return from_pure(a, dev or self.DEVICE)

    def __repr__(self) -> str:
        return f"<torch backend on {self.DEVICE}>"


_device_backends: dict[str, DeviceBackend] = {}


def device_backend(device_name: str):
    """This module for "cpu", or the (cached) backend object of a CUDA device such as "cuda:0"."""
    if device_name == "cpu":
        import sys

        return sys.modules[__name__]
    be = _device_backends.get(device_name)
    if be is None:
        be = _device_backends[device_name] = DeviceBackend(device_name)
    return be


def backend_for(t: torch.Tensor):
    """The backend that holds a torch tensor (this module on the CPU)."""
    return device_backend(device(t))
