"""Tensor: a storage handle (pure array or torch tensor), shape, dtype, device and grad state.

This module sits below the ops: it imports nothing that computes. The methods that run ops
(arithmetic, operators, reductions, shape changes, indexing, in-place updates, ``to``) are
attached to Tensor from above by ``puredl.tensor_methods`` when the package loads. The backend
that holds the data is ``_be`` (``puredl.backends.pure`` or the torch backend).
"""

from __future__ import annotations

from typing import NamedTuple

from puredl import autograd
from puredl import dtypes as dt
from puredl.backends import pure as _pure
from puredl.printing import tensor_repr
from puredl.shapes import normalize_dim


def _wrap(impl, be) -> Tensor:
    t = Tensor.__new__(Tensor)
    t._impl = impl
    t._be = be
    if be is _pure:
        t.shape = impl.shape
        t.dtype = impl.dtype
    else:
        t.shape = tuple(impl.shape)
        t.dtype = be.dtype_of(impl)
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


class TensorMeta(type):
    """Metaclass of Tensor: ``Tensor(data)`` / ``Tensor(2, 3)`` build a float tensor, as torch's do.

    ``construct(dtype, args, kwargs)`` is installed by ``puredl.legacy`` (it needs the factories,
    which sit above this module).
    """

    construct = None

    def __call__(cls, *args, **kwargs):
        if cls is Tensor:
            return TensorMeta.construct(dt.get_default_dtype(), args, dict(kwargs))
        return super().__call__(*args, **kwargs)  # subclasses (Parameter) build themselves


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
        # a tagged buffer (float16, bfloat16, int8) names its dtype; a plain one is its typecode's
        if dtype is None:
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
        return tensor_repr(self)

    # the methods that run ops (x + y, x.sum(), x.reshape(...), x[i], x.add_(...), x.to(...))
    # are attached by puredl.tensor_methods, which sits above the ops

    # ------------------------------------------------------------------ autograd
    def backward(self, gradient: Tensor | None = None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into the ``.grad`` of every leaf it depends on."""
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError(
                    "grad can be implicitly created only for scalar outputs; "
                    f"this tensor has shape {self.shape}"
                )
            be = self._be
            if be is not _pure and be.device(self._impl) == "cpu":
                be = _pure  # ones in pure storage on the CPU, as the factories make them
            gradient = _wrap(be.full(self.shape, 1, self.dtype), be)
        elif gradient.shape != self.shape:
            raise ValueError(
                f"backward: gradient shape {gradient.shape} does not match tensor shape {self.shape}"
            )
        autograd.run_backward(self, gradient.detach(), retain_graph)

    def detach(self) -> Tensor:
        out = _wrap(self._impl, self._be)
        cell = self._vc
        # shares storage, so an in-place change to either is seen by backward
        out._vc = cell if cell is not None else version_cell(self)
        return out

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        if self._node is not None:
            autograd.retain(self._node, self)

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

    def __deepcopy__(self, memo: dict) -> Tensor:
        """``copy.deepcopy``: a new leaf (of the same class: a Parameter stays one) with copied
        storage, requires_grad and grad. Tensors sharing storage in one deepcopy share the copy."""
        if self._node is not None and self._rg:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                "protocol at the moment.  If you were attempting to deepcopy a module, this may be "
                "because of a torch.nn.utils.weight_norm usage, see "
                "https://github.com/pytorch/pytorch/pull/103001"
            )
        if id(self) in memo:
            return memo[id(self)]
        new = Tensor.__new__(type(self))
        new._impl, new._be = _copy_storage(self._impl, self._be, memo), self._be
        new.shape, new.dtype = self.shape, self.dtype
        new._node, new._rg, new._grad = None, self._rg, None
        view = self._view
        if view is not None and not (view[0]._node is not None and view[0]._rg):
            # a view of a base: the copy is a view of the base's copy (one version counter)
            new._view, new._vc = (view[0].__deepcopy__(memo), *view[1:]), None
        else:
            new._view, new._vc = None, [0]
        memo[id(self)] = new
        if self._grad is not None:
            new._grad = self._grad.__deepcopy__(memo)
        return new


def _copy_storage(impl, be, memo: dict):
    """A copy of ``impl``'s storage; views of one buffer (or torch storage) share one copy via ``memo``."""
    if be is not _pure:
        import copy

        return copy.deepcopy(impl, memo)  # torch keeps shared storage shared through the memo
    buf = impl.buf
    new_buf = memo.get(id(buf))
    if new_buf is None:
        new_buf = memo[id(buf)] = type(buf)(buf.typecode, buf)  # keeps a float16/int8 buffer's tag
        memo.setdefault(id(memo), []).append(buf)  # keep buf alive while its id is a memo key
    return _pure.PureArray(new_buf, impl.shape, impl._strides, impl.offset)


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
