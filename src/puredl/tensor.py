"""Tensor: a storage handle (pure array or torch tensor), shape, dtype, device and grad state.

Arithmetic, reductions and shape methods forward to ``puredl.ops``; the backend that holds
the data is ``_be`` (``puredl.backends.pure`` or the torch backend).
"""

from __future__ import annotations

from typing import NamedTuple

from puredl import autograd
from puredl import dtypes as dt
from puredl.backends import pure as _pure
from puredl.legacy import TensorMeta


def _wrap(impl, be) -> Tensor:
    t = Tensor.__new__(Tensor)
    t._impl = impl
    t._be = be
    t.shape = impl.shape if be is _pure else tuple(impl.shape)
    t.dtype = impl.dtype if be is _pure else be.dtype_of(impl)
    t._rg = False
    t._grad = None
    t._node = None
    t._vc = None  # the version counter, made on first need (version_cell)
    t._view = None
    return t


def version_cell(t: Tensor) -> list:
    """``t``'s version counter, a one-element list shared with its views (made on first need;
    a view takes its base's, so views made before the counter existed still share it)."""
    cell = t._vc
    if cell is None:
        view = t._view
        cell = t._vc = version_cell(view[0]) if view is not None else [0]
    return cell


def bump_version(t: Tensor) -> None:
    """Count one in-place change of ``t``'s storage (seen by every view and saved copy of it)."""
    cell = t._vc
    if cell is None:
        cell = version_cell(t)
    link = autograd._changes  # log the change first (autograd.check_versions reads the log)
    link[0], link[1] = cell, cell[0]
    link[2] = autograd._changes = [None, 0, None]
    cell[0] += 1


class ValuesIndices(NamedTuple):
    """Result of ``max(dim)`` / ``min(dim)``: ``values`` and ``indices``, like torch's."""

    values: Tensor
    indices: Tensor


class Tensor(metaclass=TensorMeta):  # the metaclass gives torch's Tensor(data) / Tensor(2, 3)
    """An N-d array with autograd. Create one with ``puredl.tensor``, ``puredl.zeros``, ...

    >>> import puredl as pd
    >>> x = pd.tensor([[1.0, 2.0]], requires_grad=True)
    >>> (x * x).sum().backward(); x.grad.tolist()
    [[2.0, 4.0]]
    """

    # _alt: a cached zero-copy torch view of pure storage (puredl.accel), never set on the pure path;
    # _vc: the version counter, a one-element list shared by every view of the same storage;
    # _view: (base, kind, arg) when this tensor is a view of ``base`` (see ops._view_of), else None
    __slots__ = (
        "_impl",
        "_be",
        "shape",
        "dtype",
        "_rg",
        "_grad",
        "_node",
        "_alt",
        "_vc",
        "_view",
        "__weakref__",
    )
    __array_priority__ = 1000  # let our reflected operators win over NumPy's

    # ------------------------------------------------------------------ metadata
    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    nelement = numel  # torch's older name, still in lecture code

    def element_size(self) -> int:
        """Bytes per element as torch counts them (2 for float16, although the pure tier stores 4)."""
        return self.dtype.itemsize

    def size(self, dim: int | None = None):
        if dim is None:
            return self.shape
        from puredl.ops import normalize_dim

        return self.shape[normalize_dim(dim, self.ndim, "size")]

    def stride(self, dim: int | None = None):
        strides = self._impl.strides if self._be is _pure else tuple(self._impl.stride())
        return strides if dim is None else strides[dim]

    def is_contiguous(self) -> bool:
        return _pure.is_contiguous(self._impl) if self._be is _pure else self._impl.is_contiguous()

    @property
    def device(self) -> str:
        return self._be.device(self._impl)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    @property
    def T(self) -> Tensor:  # noqa: N802 - torch's name
        return self.permute(tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> Tensor:  # noqa: N802 - torch's name
        return self.transpose(-2, -1)

    @property
    def data(self) -> Tensor:
        # like torch's .data: the same storage, but a separate version counter and no graph
        return _wrap(self._impl, self._be)

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's storage has seen (torch's ``_version``)."""
        return version_cell(self)[0]

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ------------------------------------------------------------------ values out
    def item(self):
        if self.numel() != 1:
            raise ValueError(
                f"item(): only one-element tensors can be converted, this one has shape {self.shape}"
            )
        return self._be.item(self._impl)

    def tolist(self):
        return self._be.tolist(self._impl)

    def to_array(self):
        """A flat row-major ``array.array`` copy of the elements."""
        return self._be.to_array(self._impl)

    @classmethod
    def from_array(cls, arr, shape: tuple, dtype: dt.DType | None = None) -> Tensor:
        """Wrap a flat ``array.array`` (ownership passes to the tensor)."""
        if (
            dtype is None
        ):  # a tagged buffer (float16, bfloat16, int8) names its dtype; a plain one its typecode's
            d = getattr(arr, "dtype", None) or dt.BY_TYPECODE[arr.typecode]
        else:
            d = dt.as_dtype(dtype)
        return _wrap(_pure.from_values(arr, tuple(shape), d), _pure)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous")
        return bool(self.item())

    def __index__(self) -> int:
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        from puredl.printing import tensor_repr

        return tensor_repr(self)

    # ------------------------------------------------------------------ autograd
    def backward(self, gradient: Tensor | None = None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into the ``.grad`` of every leaf it depends on."""
        from puredl import autograd
        from puredl.creation import ones_like

        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError(
                    "grad can be implicitly created only for scalar outputs; "
                    f"this tensor has shape {self.shape}"
                )
            gradient = ones_like(self)
        elif gradient.shape != self.shape:
            raise ValueError(
                f"backward: gradient shape {gradient.shape} does not match tensor shape {self.shape}"
            )
        autograd.run_backward(self, gradient.detach(), retain_graph)

    def detach(self) -> Tensor:
        out = _wrap(self._impl, self._be)
        out._vc = version_cell(self)  # shares storage, so an in-place change to either is seen by backward
        return out

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        from puredl.autograd import retain

        if self._node is not None:
            retain(self._node, self)

    # ------------------------------------------------------------------ conversion
    def to(self, *args, **kwargs) -> Tensor:
        """``t.to(dtype)``, ``t.to("cuda:0")``, ``t.to(device, dtype)``."""
        from puredl import ops

        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to(): unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, str) or (a is not None and type(a).__name__ == "device"):
                device = a
            elif isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            else:
                dtype = a
        out = self
        if device is not None and str(device) != self.device:
            from puredl.devices import move

            out = move(out, str(device))
        if dtype is not None:
            out = ops.cast(out, dt.as_dtype(dtype))
        return out

    def float(self) -> Tensor:
        return self.to(dt.float32)

    def double(self) -> Tensor:
        return self.to(dt.float64)

    def half(self) -> Tensor:
        return self.to(dt.float16)

    def bfloat16(self) -> Tensor:
        return self.to(dt.bfloat16)

    def char(self) -> Tensor:
        return self.to(dt.int8)

    def long(self) -> Tensor:
        return self.to(dt.int64)

    def int(self) -> Tensor:
        return self.to(dt.int32)

    def short(self) -> Tensor:
        return self.to(dt.int16)

    def byte(self) -> Tensor:
        return self.to(dt.uint8)

    def bool(self) -> Tensor:
        return self.to(dt.bool_)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Tensor:
        return self.to(f"cuda:{index}")

    def to_torch(self):
        """This tensor as a ``torch.Tensor`` (sharing memory where possible)."""
        from puredl.devices import to_torch

        return to_torch(self)

    def clone(self) -> Tensor:
        return _ops().clone(self)

    # ------------------------------------------------------------------ indexing
    def __getitem__(self, key):
        from puredl.indexing import getitem

        return getitem(self, key)

    def __setitem__(self, key, value) -> None:
        from puredl.indexing import setitem

        setitem(self, key, value)

    # ------------------------------------------------------------------ in-place updates
    # each changes the storage itself (shared with views), bumps the version, and is recorded in the
    # graph when this tensor or an operand requires grad (puredl.inplace)
    def copy_(self, src) -> Tensor:
        """Write ``src`` (tensor or scalar, broadcast) into this tensor's storage."""
        self[...] = src
        return self

    def fill_(self, value) -> Tensor:
        self[...] = value
        return self

    def zero_(self) -> Tensor:
        self[...] = 0
        return self

    def add_(self, other, alpha: float = 1.0) -> Tensor:
        if alpha != 1.0:
            return _inplace().update(self, lambda x, o: x + o * alpha, other)
        return _inplace().update(self, _ops().add, other)

    def sub_(self, other, alpha: float = 1.0) -> Tensor:
        if alpha != 1.0:
            return _inplace().update(self, lambda x, o: x - o * alpha, other)
        return _inplace().update(self, _ops().sub, other)

    def mul_(self, other) -> Tensor:
        return _inplace().update(self, _ops().mul, other)

    def div_(self, other) -> Tensor:
        return _inplace().update(self, _ops().div, other)

    def pow_(self, other) -> Tensor:
        return _inplace().update(self, _ops().pow, other)

    def clamp_(self, min=None, max=None) -> Tensor:  # noqa: A002
        return _inplace().update(self, lambda x, lo, hi: x.clamp(lo, hi), min, max)

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        from puredl.creation import rand

        return self.copy_(rand(self.shape, dtype=self.dtype, device=self.device) * (b - a) + a)

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        from puredl.creation import randn

        return self.copy_(randn(self.shape, dtype=self.dtype, device=self.device) * std + mean)

    # augmented assignment changes the tensor itself, as in torch (``w -= lr * w.grad``);
    # ``@=`` is left out as torch leaves it out (``a @= b`` rebinds ``a``)
    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_
    __ipow__ = pow_

    def __iand__(self, o):
        return _inplace().update(self, _ops().logical_and, o)

    def __ior__(self, o):
        return _inplace().update(self, _ops().logical_or, o)

    # ------------------------------------------------------------------ operators
    def __add__(self, o):
        return _ops().binary("add", self, o)

    def __radd__(self, o):
        return _ops().binary("add", o, self)

    def __sub__(self, o):
        return _ops().binary("sub", self, o)

    def __rsub__(self, o):
        return _ops().binary("sub", o, self)

    def __mul__(self, o):
        return _ops().binary("mul", self, o)

    def __rmul__(self, o):
        return _ops().binary("mul", o, self)

    def __truediv__(self, o):
        return _ops().binary("div", self, o)

    def __rtruediv__(self, o):
        return _ops().binary("div", o, self)

    def __floordiv__(self, o):
        return _ops().binary("floor_divide", self, o)

    def __rfloordiv__(self, o):
        return _ops().binary("floor_divide", o, self)

    def __pow__(self, o):
        return _ops().binary("pow", self, o)

    def __rpow__(self, o):
        return _ops().binary("pow", o, self)

    def __matmul__(self, o):
        return _ops().matmul(self, o)

    def __rmatmul__(self, o):
        return _ops().matmul(o, self)

    def __neg__(self):
        return _ops().unary("neg", self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops().unary("abs", self)

    def __eq__(self, o):  # noqa: D105 - elementwise, like torch
        return _ops().binary("eq", self, o)

    def __ne__(self, o):
        return _ops().binary("ne", self, o)

    def __lt__(self, o):
        return _ops().binary("lt", self, o)

    def __le__(self, o):
        return _ops().binary("le", self, o)

    def __gt__(self, o):
        return _ops().binary("gt", self, o)

    def __ge__(self, o):
        return _ops().binary("ge", self, o)

    def __and__(self, o):
        return _ops().binary("logical_and", self, o)

    def __or__(self, o):
        return _ops().binary("logical_or", self, o)

    def __rand__(self, o):
        return _ops().binary("logical_and", o, self)

    def __ror__(self, o):
        return _ops().binary("logical_or", o, self)

    def __invert__(self):
        return _ops().unary("logical_not", self)

    # ------------------------------------------------------------------ math methods
    def matmul(self, other):
        return _ops().matmul(self, other)

    # methods of the elementwise ops (exp, relu, add, eq, ...) are installed from ops' tables

    def softmax(self, dim: int = -1):
        return _ops().softmax(self, dim)

    def log_softmax(self, dim: int = -1):
        return _ops().log_softmax(self, dim)

    def clamp(self, min=None, max=None):  # noqa: A002
        return _ops().clamp(self, min, max)

    clip = clamp

    def sum(self, dim=None, keepdim: bool = False, dtype=None, *, keepdims: bool | None = None):
        # keepdims: NumPy's spelling, which torch also accepts (the makemore lectures use it)
        return _ops().reduce_sum(self, dim, keepdim if keepdims is None else keepdims, dtype)

    def mean(self, dim=None, keepdim: bool = False, *, keepdims: bool | None = None):
        return _ops().mean(self, dim, keepdim if keepdims is None else keepdims)

    def var(self, dim=None, keepdim: bool = False, correction: int = 1, unbiased: bool | None = None):
        return _ops().var(self, dim, keepdim, correction, unbiased)

    def std(self, dim=None, keepdim: bool = False, correction: int = 1, unbiased: bool | None = None):
        return _ops().std(self, dim, keepdim, correction, unbiased)

    def max(self, dim=None, keepdim: bool = False):
        return _ops().reduce_max(self, dim, keepdim)

    def min(self, dim=None, keepdim: bool = False):
        return _ops().reduce_min(self, dim, keepdim)

    def argmax(self, dim=None, keepdim: bool = False):
        return _ops().argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim: bool = False):
        return _ops().argmin(self, dim, keepdim)

    # ------------------------------------------------------------------ shape methods
    def reshape(self, *shape):
        return _ops().reshape(self, _shape_args(shape))

    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list)):
            # torch's view(dtype) reinterprets bits; a silent cast would give different numbers
            raise TypeError(f"view: expected a shape, got {shape[0]!r}; use .to(dtype) to convert values")
        return _ops().reshape(self, _shape_args(shape), view_only=True)

    def view_as(self, other: Tensor):
        return self.view(other.shape)

    def reshape_as(self, other: Tensor):
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        if self.ndim == 0:
            return self.reshape(1)
        ops = _ops()
        s = ops.normalize_dim(start_dim, self.ndim, "flatten")
        e = ops.normalize_dim(end_dim, self.ndim, "flatten")
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        n = 1
        for d in self.shape[s : e + 1]:
            n *= d
        return self.reshape(self.shape[:s] + (n,) + self.shape[e + 1 :])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        ops = _ops()
        dims = ops.normalize_dims(dim, self.ndim, "squeeze") if self.ndim else ()
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1)))

    def unsqueeze(self, dim: int):
        d = _ops().normalize_dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def transpose(self, dim0: int, dim1: int):
        ops = _ops()
        if self.ndim < 2 and dim0 in (0, -1) and dim1 in (0, -1):
            return self
        d0 = ops.normalize_dim(dim0, self.ndim, "transpose")
        d1 = ops.normalize_dim(dim1, self.ndim, "transpose")
        dims = list(range(self.ndim))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return ops.permute(self, tuple(dims))

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with <= 2 dimensions, got shape {self.shape}")
        return self.transpose(0, -1) if self.ndim == 2 else self

    def permute(self, *dims):
        return _ops().permute(self, _shape_args(dims))

    def expand(self, *shape):
        return _ops().expand(self, _shape_args(shape))

    def expand_as(self, other: Tensor):
        return self.expand(other.shape)

    def contiguous(self):
        return _ops().contiguous(self)

    def split(self, split_size: int, dim: int = 0):
        d = _ops().normalize_dim(dim, self.ndim, "split")
        n = self.shape[d]
        lead = (slice(None),) * d
        return tuple(self[lead + (slice(i, min(i + split_size, n)),)] for i in range(0, n, split_size))

    def chunk(self, chunks: int, dim: int = 0):
        n = self.shape[_ops().normalize_dim(dim, self.ndim, "chunk")]
        return self.split(max(1, -(-n // chunks)), dim)

    # ------------------------------------------------------------------ torch compatibility (puredl.legacy)
    def __format__(self, spec: str) -> str:
        from puredl.legacy import format_tensor

        return format_tensor(self, spec)

    def type(self, dtype=None, non_blocking: bool = False):  # noqa: A003 - torch's name
        """``t.type()`` is torch's type string ("torch.FloatTensor"); ``t.type(dtype)`` converts."""
        from puredl.legacy import parse_type, type_name

        return type_name(self) if dtype is None else self.to(parse_type(dtype))

    def numpy(self, *, force: bool = False):
        """A NumPy array with this tensor's values (a copy; needs numpy installed)."""
        from puredl.legacy import to_numpy

        return to_numpy(self, force)

    def _set_data(self, value: Tensor) -> None:
        """``t.data = other``: ``t`` now shares ``other``'s storage, shape and dtype; its grad state stays."""
        if not isinstance(value, Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got {type(value).__name__}")
        if self.requires_grad and not value.dtype.is_floating_point:
            raise RuntimeError(
                "data set to a tensor that requires gradients must be floating point or complex dtype"
            )
        self._impl, self._be, self.shape, self.dtype = value._impl, value._be, value.shape, value.dtype

    data = data.setter(_set_data)  # `w.data += -lr * w.grad` assigns w.data


def _set_requires_grad(t: Tensor, requires_grad: bool) -> None:
    if requires_grad and not t.dtype.is_floating_point:
        raise RuntimeError(
            f"only Tensors of floating point and complex dtype can require gradients (got {t.dtype.name})"
        )
    if t._node is not None and not requires_grad:
        raise RuntimeError(
            "you can only change requires_grad flags of leaf variables; "
            "use var.detach() for a copy that does not require grad"
        )
    t._rg = bool(requires_grad)


def _set_grad(t: Tensor, grad) -> None:
    if grad is not None:
        if not isinstance(grad, Tensor):
            raise TypeError(
                f"assigned grad expected to be a Tensor or None but got grad of type {type(grad).__name__}"
            )
        if grad.shape != t.shape:
            raise RuntimeError(
                f"attempting to assign a gradient of size '{list(grad.shape)}' to a tensor of size "
                f"'{list(t.shape)}'. Please ensure that the gradient and the tensor are the same size"
            )
        if grad.dtype is not t.dtype:
            raise RuntimeError(
                f"attempting to assign a gradient with dtype '{grad.dtype.name}' to a tensor with dtype "
                f"'{t.dtype.name}'; the gradient must match the tensor's dtype"
            )
        if grad.device != t.device:
            raise RuntimeError(
                f"attempting to assign a gradient on device '{grad.device}' "
                f"to a tensor on device '{t.device}'"
            )
    t._grad = grad


# requires_grad and grad are checked on assignment (as torch does); reads stay plain slot reads (C level)
Tensor.requires_grad = property(Tensor.__dict__["_rg"].__get__, _set_requires_grad)
Tensor.grad = property(Tensor.__dict__["_grad"].__get__, _set_grad)


def _shape_args(shape: tuple) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


_ops_module = None
_inplace_module = None


def _inplace():
    global _inplace_module
    if _inplace_module is None:
        from puredl import inplace

        _inplace_module = inplace
    return _inplace_module


def _ops():
    global _ops_module
    if _ops_module is None:
        from puredl import ops

        _ops_module = ops
    return _ops_module
