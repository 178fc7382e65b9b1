"""Data types: float32 (default), float64, int64 and bool, each backed by an array.array typecode."""

from __future__ import annotations


class DType:
    """A tensor element type.

    >>> float32.name, float32.typecode, float32.itemsize
    ('float32', 'f', 4)
    """

    __slots__ = ("name", "typecode", "itemsize", "is_floating_point", "pytype", "rank")

    def __init__(
        self, name: str, typecode: str, itemsize: int, is_floating_point: bool, pytype: type, rank: int
    ):
        self.name = name
        self.typecode = typecode
        self.itemsize = itemsize
        self.is_floating_point = is_floating_point
        self.pytype = pytype
        self.rank = rank  # promotion order: bool < int64 < float32 < float64

    def __repr__(self) -> str:
        return f"puredl.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


bool_ = DType("bool", "b", 1, False, bool, 0)
int64 = DType("int64", "q", 8, False, int, 1)
float32 = DType("float32", "f", 4, True, float, 2)
float64 = DType("float64", "d", 8, True, float, 3)

ALL = (bool_, int64, float32, float64)
BY_NAME = {d.name: d for d in ALL}
BY_NAME.update({"float": float32, "double": float64, "long": int64})
BY_TYPECODE = {d.typecode: d for d in ALL}

_default_float = float32


def _by_name(name: str) -> DType:
    return BY_NAME[name]


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(dtype: DType) -> None:
    """Float dtype used for Python floats (float32 unless changed)."""
    global _default_float
    if dtype not in (float32, float64):
        raise TypeError(f"set_default_dtype: expected float32 or float64, got {dtype!r}")
    _default_float = dtype


def as_dtype(dtype: object) -> DType:
    """Accept a DType, a name such as 'float64', or a torch dtype; raise TypeError otherwise."""
    if isinstance(dtype, DType):
        return dtype
    if dtype is float:
        return _default_float
    if dtype is int:
        return int64
    if dtype is bool:
        return bool_
    name = str(dtype).replace("torch.", "")
    if name in BY_NAME:
        return BY_NAME[name]
    raise TypeError(f"unsupported dtype {dtype!r}; puredl has float32, float64, int64 and bool")


def promote(a: DType, b: DType) -> DType:
    """Result dtype of a binary op between two tensors (PyTorch's category rules for these four)."""
    return a if a.rank >= b.rank else b


def _category(d: DType) -> int:
    return 2 if d.is_floating_point else (1 if d is int64 else 0)


def promote_tensors(a: DType, a_ndim: int, b: DType, b_ndim: int) -> DType:
    """Result dtype of a binary op between tensors with these ranks, as torch decides it.

    A 0-d tensor beside a dimensioned one counts only when it is of a higher category
    (bool < int < float): float32 vector + float64 scalar tensor stays float32.

    >>> promote_tensors(float32, 1, float64, 0), promote_tensors(int64, 1, float64, 0)
    (puredl.float32, puredl.float64)
    """
    if (a_ndim == 0) == (b_ndim == 0):
        return promote(a, b)
    dims, zero = (a, b) if b_ndim == 0 else (b, a)
    return zero if _category(zero) > _category(dims) else dims


def promote_scalar(t: DType, scalar: object) -> DType:
    """Result dtype of tensor-op-Python-scalar: the scalar only raises the category (bool < int < float)."""
    if isinstance(scalar, bool):
        return t
    if isinstance(scalar, int):
        return int64 if t is bool_ else t
    if isinstance(scalar, float):
        return t if t.is_floating_point else _default_float
    raise TypeError(f"unsupported operand type {type(scalar).__name__}")
