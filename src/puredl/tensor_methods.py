"""The Tensor methods that run ops, attached to ``Tensor`` from above when the package loads.

``tensor.py`` sits below the ops (every op module imports it), so it cannot call them without an
import circle. The methods that compute are therefore installed here, one layer above the ops:

- the elementwise table ops (``x.exp()``, ``x.add(y)``) and their Python operators (``x + y``,
  ``-x``, ``x == y``) and the reductions (``x.sum(dim)``, ``x.amax()``) are made from the entries
  of ``ops.UNARY_OPS``, ``ops.BINARY_OPS`` and ``ops.REDUCE_OPS``: adding a table op adds its method;
- everything else is written out in :class:`TensorMethods` below, copied onto ``Tensor``.

>>> import puredl as pd
>>> x = pd.tensor([[1.0, -2.0]])
>>> (x + 1).abs().sum().item(), x.T.shape
(3.0, (2, 1))
"""

from __future__ import annotations

from collections.abc import Callable

from puredl import creation, devices, indexing, inplace, legacy, ops
from puredl import dtypes as dt
from puredl.ops import binary, unary
from puredl.shapes import normalize_dim, normalize_dims
from puredl.tensor import Tensor


class TensorMethods:
    """The methods written out (not made from a table); every one is copied onto ``Tensor``."""

    @property
    def T(self) -> Tensor:  # noqa: N802 - torch's name
        return ops.permute(self, tuple(reversed(range(len(self.shape)))))

    @property
    def mT(self) -> Tensor:  # noqa: N802 - torch's name
        return self.transpose(-2, -1)

    # ------------------------------------------------------------------ conversion
    def to(self, *args, **kwargs) -> Tensor:
        """``t.to(dtype)``, ``t.to("cuda:0")``, ``t.to(device, dtype)``."""
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
            out = devices.move(out, str(device))
        if dtype is not None:
            out = ops.cast(out, dt.as_dtype(dtype))
        return out

    def float(self) -> Tensor:
        return ops.cast(self, dt.float32)

    def double(self) -> Tensor:
        return ops.cast(self, dt.float64)

    def half(self) -> Tensor:
        return ops.cast(self, dt.float16)

    def bfloat16(self) -> Tensor:
        return ops.cast(self, dt.bfloat16)

    def char(self) -> Tensor:
        return ops.cast(self, dt.int8)

    def long(self) -> Tensor:
        return ops.cast(self, dt.int64)

    def int(self) -> Tensor:
        return ops.cast(self, dt.int32)

    def short(self) -> Tensor:
        return ops.cast(self, dt.int16)

    def byte(self) -> Tensor:
        return ops.cast(self, dt.uint8)

    def bool(self) -> Tensor:
        return ops.cast(self, dt.bool_)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Tensor:
        return self.to(f"cuda:{index}")

    def to_torch(self):
        """This tensor as a ``torch.Tensor`` (sharing memory where possible)."""
        return creation.to_torch(self)

    def clone(self) -> Tensor:
        return ops.clone(self)

    # ------------------------------------------------------------------ new tensors like this one
    # (torch's new_*: this tensor's dtype and device unless given; the size as varargs or one tuple)
    def new_zeros(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return creation.zeros(*size, **_like(self, dtype, device), requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return creation.ones(*size, **_like(self, dtype, device), requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return creation.empty(*size, **_like(self, dtype, device), requires_grad=requires_grad)

    def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return creation.full(size, fill_value, **_like(self, dtype, device), requires_grad=requires_grad)

    def new_tensor(self, data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        if isinstance(data, Tensor):  # torch copies it, detached
            out = ops.cast(data.detach(), dt.as_dtype(dtype or self.dtype)).clone()
            out = out.to(device or self.device)
            return out.requires_grad_(requires_grad)
        return creation.tensor(data, **_like(self, dtype, device), requires_grad=requires_grad)

    # ------------------------------------------------------------------ indexing
    def __getitem__(self, key):
        return indexing.getitem(self, key)

    def __setitem__(self, key, value) -> None:
        indexing.setitem(self, key, value)

    # ------------------------------------------------------------------ in-place updates
    # each changes the storage itself (shared with views), bumps the version, and is recorded in the
    # graph when this tensor or an operand requires grad (puredl.inplace)
    def copy_(self, src) -> Tensor:
        """Write ``src`` (tensor or scalar, broadcast) into this tensor's storage."""
        indexing.setitem(self, ..., src)
        return self

    def fill_(self, value) -> Tensor:
        indexing.setitem(self, ..., value)
        return self

    def zero_(self) -> Tensor:
        indexing.setitem(self, ..., 0)
        return self

    def add_(self, other, alpha: float = 1.0) -> Tensor:
        if alpha != 1.0:
            return inplace.update(self, lambda x, o: x + o * alpha, other)
        return inplace.update(self, ops.add, other)

    def sub_(self, other, alpha: float = 1.0) -> Tensor:
        if alpha != 1.0:
            return inplace.update(self, lambda x, o: x - o * alpha, other)
        return inplace.update(self, ops.sub, other)

    def mul_(self, other) -> Tensor:
        return inplace.update(self, ops.mul, other)

    def div_(self, other) -> Tensor:
        return inplace.update(self, ops.div, other)

    def pow_(self, other) -> Tensor:
        return inplace.update(self, ops.pow, other)

    def clamp_(self, min=None, max=None) -> Tensor:  # noqa: A002
        return inplace.update(self, ops.clamp, min, max)

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        return self.copy_(creation.rand(self.shape, dtype=self.dtype, device=self.device) * (b - a) + a)

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        return self.copy_(creation.randn(self.shape, dtype=self.dtype, device=self.device) * std + mean)

    # augmented assignment changes the tensor itself, as in torch (``w -= lr * w.grad``);
    # ``@=`` is left out as torch leaves it out (``a @= b`` rebinds ``a``)
    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_
    __ipow__ = pow_

    def __iand__(self, o):
        return inplace.update(self, ops.logical_and, o)

    def __ior__(self, o):
        return inplace.update(self, ops.logical_or, o)

    # ------------------------------------------------------------------ operators not in a table
    def __matmul__(self, o):
        return ops.matmul(self, o)

    def __rmatmul__(self, o):
        return ops.matmul(o, self)

    def __pos__(self):
        return self

    # ------------------------------------------------------------------ math methods
    def matmul(self, other):
        return ops.matmul(self, other)

    def softmax(self, dim: int = -1):
        return ops.softmax(self, dim)

    def log_softmax(self, dim: int = -1):
        return ops.log_softmax(self, dim)

    def clamp(self, min=None, max=None):  # noqa: A002
        return ops.clamp(self, min, max)

    clip = clamp

    def max(self, dim=None, keepdim: bool = False):
        return ops.reduce_max(self, dim, keepdim)

    def min(self, dim=None, keepdim: bool = False):
        return ops.reduce_min(self, dim, keepdim)

    def argmax(self, dim=None, keepdim: bool = False):
        return ops.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim: bool = False):
        return ops.argmin(self, dim, keepdim)

    def var(self, dim=None, keepdim: bool = False, correction: int = 1, unbiased: bool | None = None):
        return ops.var(self, dim, keepdim, correction, unbiased)

    def std(self, dim=None, keepdim: bool = False, correction: int = 1, unbiased: bool | None = None):
        return ops.std(self, dim, keepdim, correction, unbiased)

    # ------------------------------------------------------------------ shape methods
    def reshape(self, *shape):
        return ops.reshape(self, _shape_args(shape))

    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list)):
            # torch's view(dtype) reinterprets bits; a silent cast would give different numbers
            raise TypeError(f"view: expected a shape, got {shape[0]!r}; use .to(dtype) to convert values")
        return ops.reshape(self, _shape_args(shape), view_only=True)

    def view_as(self, other: Tensor):
        return self.view(other.shape)

    def reshape_as(self, other: Tensor):
        return ops.reshape(self, other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        if self.ndim == 0:
            return ops.reshape(self, (1,))
        s = normalize_dim(start_dim, self.ndim, "flatten")
        e = normalize_dim(end_dim, self.ndim, "flatten")
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        n = 1
        for d in self.shape[s : e + 1]:
            n *= d
        return ops.reshape(self, self.shape[:s] + (n,) + self.shape[e + 1 :])

    def squeeze(self, dim=None):
        if dim is None:
            return ops.reshape(self, tuple(n for n in self.shape if n != 1))
        dims = normalize_dims(dim, self.ndim, "squeeze") if self.ndim else ()
        return ops.reshape(self, tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1)))

    def unsqueeze(self, dim: int):
        d = normalize_dim(dim, self.ndim + 1, "unsqueeze")
        return ops.reshape(self, self.shape[:d] + (1,) + self.shape[d:])

    def transpose(self, dim0: int, dim1: int):
        n = len(self.shape)
        if n < 2 and dim0 in (0, -1) and dim1 in (0, -1):
            return self
        d0 = normalize_dim(dim0, n, "transpose")
        d1 = normalize_dim(dim1, n, "transpose")
        dims = list(range(n))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return ops.permute(self, tuple(dims))

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with <= 2 dimensions, got shape {self.shape}")
        return self.transpose(0, -1) if self.ndim == 2 else self

    def permute(self, *dims):
        return ops.permute(self, _shape_args(dims))

    def expand(self, *shape):
        return ops.expand(self, _shape_args(shape))

    def expand_as(self, other: Tensor):
        return ops.expand(self, other.shape)

    def contiguous(self):
        return ops.contiguous(self)

    def split(self, split_size: int, dim: int = 0):
        d = normalize_dim(dim, self.ndim, "split")
        n = self.shape[d]
        lead = (slice(None),) * d
        return tuple(self[lead + (slice(i, min(i + split_size, n)),)] for i in range(0, n, split_size))

    def chunk(self, chunks: int, dim: int = 0):
        n = self.shape[normalize_dim(dim, self.ndim, "chunk")]
        return self.split(max(1, -(-n // chunks)), dim)

    # ------------------------------------------------------------------ torch compatibility (puredl.legacy)
    def __format__(self, spec: str) -> str:
        return legacy.format_tensor(self, spec)

    def type(self, dtype=None, non_blocking: bool = False):  # noqa: A003 - torch's name
        """``t.type()`` is torch's type string ("torch.FloatTensor"); ``t.type(dtype)`` converts."""
        return legacy.type_name(self) if dtype is None else self.to(legacy.parse_type(dtype))

    def numpy(self, *, force: bool = False):
        """A NumPy array with this tensor's values (a copy; needs numpy installed)."""
        return legacy.to_numpy(self, force)


def _shape_args(shape: tuple) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _like(t: Tensor, dtype, device) -> dict:
    return {"dtype": dtype or t.dtype, "device": device or t.device}


def _unary_operator(op: str, name: str) -> Callable:
    def method(self):
        return unary(op, self)

    method.__name__, method.__qualname__ = name, f"Tensor.{name}"
    return method


def _binary_operator(op: str, name: str, reflected: bool) -> Callable:
    if reflected:

        def method(self, o):
            return binary(op, o, self)
    else:

        def method(self, o):
            return binary(op, self, o)

    method.__name__, method.__qualname__ = name, f"Tensor.{name}"
    return method


def install() -> None:
    """Attach every method of this module to ``Tensor`` (run once, when the package loads)."""
    for name, value in vars(TensorMethods).items():
        if name not in ("__module__", "__qualname__", "__doc__", "__dict__", "__weakref__"):
            if callable(value) and value.__qualname__.startswith("TensorMethods."):  # not an alias (__iadd__)
                value.__qualname__ = "Tensor." + value.__qualname__.removeprefix("TensorMethods.")
            setattr(Tensor, name, value)
    # the table ops: x.exp(), x.add(y), x.sum(dim); their module functions take the tensor first
    for op in (*ops.UNARY_OPS, *ops.BINARY_OPS):
        setattr(Tensor, op, getattr(ops, op))
    for op, fn in ops.REDUCE_FUNCTIONS.items():
        setattr(Tensor, op, fn)
    # Python's operators of the table ops (x + y, 2 * x, -x, x == y, ~mask)
    for op, spec in ops.UNARY_OPS.items():
        for name in spec.operators:
            setattr(Tensor, name, _unary_operator(op, name))
    for op, spec in ops.BINARY_OPS.items():
        if spec.operators:
            name, reflected = spec.operators[0], spec.operators[1:]
            setattr(Tensor, name, _binary_operator(op, name, False))
            if reflected:
                setattr(Tensor, reflected[0], _binary_operator(op, reflected[0], True))


install()
