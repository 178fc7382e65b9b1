"""torch's legacy constructors: ``Tensor(data)``, ``Tensor(2, 3)``, ``FloatTensor``, ``LongTensor``...

``puredl.Tensor(...)`` goes through ``tensor.TensorMeta``, which calls :func:`construct`:
``Tensor([1, 2])`` is a float32 tensor of those values, ``Tensor(2, 3)`` a float32 tensor of
that shape (zeros: puredl has no uninitialized memory), ``Tensor()`` an empty one.
``FloatTensor``/``DoubleTensor``/``LongTensor``/``BoolTensor`` do the same with their dtype, and
``isinstance(x, puredl.LongTensor)`` checks the dtype, as in torch.

>>> import puredl as pd
>>> pd.Tensor([1, 2]), pd.LongTensor(2).shape, isinstance(pd.tensor([1]), pd.LongTensor)
(tensor([1., 2.]), (2,), True)
"""

from __future__ import annotations

from typing import Any

from puredl import dtypes as dt
from puredl._optional import require
from puredl.creation import from_numpy, tensor, zeros  # noqa: F401 - from_numpy: legacy's public name
from puredl.tensor import Tensor, TensorMeta

# legacy type name <-> dtype, as torch spells them in Tensor.type()
TYPE_NAMES = {
    "FloatTensor": "float32",
    "DoubleTensor": "float64",
    "LongTensor": "int64",
    "IntTensor": "int32",
    "ShortTensor": "int16",
    "CharTensor": "int8",
    "HalfTensor": "float16",
    "BFloat16Tensor": "bfloat16",
    "ByteTensor": "uint8",
    "BoolTensor": "bool",
}


def construct(dtype: dt.DType, args: tuple, kwargs: dict) -> Any:
    """What ``torch.<X>Tensor(*args, device=...)`` returns, with ``dtype`` for X."""
    device = kwargs.pop("device", None)
    if kwargs:
        raise TypeError(f"Tensor(): unexpected keyword arguments {sorted(kwargs)}")
    if not args:
        return zeros(0, dtype=dtype, device=device)
    if all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        return zeros(*args, dtype=dtype, device=device)  # sizes
    if len(args) != 1:
        raise TypeError(f"Tensor(): expected sizes (ints) or one sequence of data, got {args!r}")
    (data,) = args
    if isinstance(data, Tensor):
        if data.dtype is not dtype:
            raise TypeError(f"expected {dtype.name} (got {data.dtype.name})")  # torch's legacy rule
        return data.detach()
    return tensor(data, dtype=dtype, device=device)


class _TypedMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, Tensor) and obj.dtype.name == cls._dtype_name

    def __call__(cls, *args, **kwargs):
        return construct(dt.as_dtype(cls._dtype_name), args, dict(kwargs))


def _typed(name: str) -> type:
    return _TypedMeta(
        name, (), {"_dtype_name": TYPE_NAMES[name], "__doc__": f"torch.{name}: a {TYPE_NAMES[name]} tensor"}
    )


TensorMeta.construct = construct  # Tensor(...) as torch's legacy constructor (tensor.py sits below us)

FloatTensor = _typed("FloatTensor")
DoubleTensor = _typed("DoubleTensor")
LongTensor = _typed("LongTensor")
IntTensor = _typed("IntTensor")
ShortTensor = _typed("ShortTensor")
ByteTensor = _typed("ByteTensor")
BoolTensor = _typed("BoolTensor")
CharTensor = _typed("CharTensor")
HalfTensor = _typed("HalfTensor")
BFloat16Tensor = _typed("BFloat16Tensor")


def type_name(t: Any) -> str:
    """``Tensor.type()``: "torch.FloatTensor", "torch.cuda.LongTensor", ... (torch's strings)."""
    base = next((n for n, d in TYPE_NAMES.items() if d == t.dtype.name), None)
    if base is None:
        base = t.dtype.name.capitalize() + "Tensor"
    return f"torch.cuda.{base}" if str(t.device).startswith("cuda") else f"torch.{base}"


def parse_type(spec: Any) -> dt.DType:
    """The dtype that ``Tensor.type(spec)`` converts to: a dtype, a class, or "torch.DoubleTensor"."""
    if isinstance(spec, _TypedMeta):
        return dt.as_dtype(spec._dtype_name)
    if isinstance(spec, str):
        name = spec.split(".")[-1]
        if name in TYPE_NAMES:
            return dt.as_dtype(TYPE_NAMES[name])
    try:
        return dt.as_dtype(spec)
    except TypeError:
        raise ValueError(f"invalid type: {spec!r}") from None


def format_tensor(t: Any, spec: str) -> str:
    """``format(t, spec)``: a 0-d tensor formats its value; others only with an empty spec (torch)."""
    if t.ndim == 0:
        return format(t.item(), spec)
    if spec:
        raise TypeError("unsupported format string passed to Tensor.__format__")
    return str(t)


def to_numpy(t: Any, force: bool = False) -> Any:
    """``Tensor.numpy()``: a NumPy array copy of the values (NumPy imported only here)."""
    np = require("numpy", "numpy", "Tensor.numpy() and from_numpy()")
    if t.requires_grad and not force:
        raise RuntimeError(
            "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."
        )
    if str(t.device) != "cpu" and not force:
        raise TypeError(
            f"can't convert {t.device} device type tensor to numpy. "
            "Use Tensor.cpu() to copy the tensor to host memory first."
        )
    kind = {
        "float32": np.float32,
        "float64": np.float64,
        "int64": np.int64,
        "int32": np.int32,
        "int16": np.int16,
        "int8": np.int8,
        "uint8": np.uint8,
        "bool": np.bool_,
        "float16": np.float16,
    }.get(t.dtype.name)
    if kind is None:  # NumPy has no bfloat16
        raise TypeError(f"Got unsupported ScalarType {t.dtype.name} (NumPy has no such type), as torch says")
    arr = t.to_array()
    if t.dtype.name == "float16":  # stored as float32: every value converts exactly
        return np.frombuffer(arr, dtype=np.float32).astype(np.float16).reshape(t.shape)
    if t.dtype.name == "bool":
        return np.frombuffer(arr.tobytes(), dtype=np.int8).astype(np.bool_).reshape(t.shape)
    return np.frombuffer(arr, dtype=kind).reshape(t.shape).copy()
