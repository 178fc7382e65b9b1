"""Data types, each backed by an array.array typecode.

float32 (default), float64, float16, bfloat16, int64, int32, int16, int8, uint8 and bool.
array has no half-precision typecode, so float16 and bfloat16 are stored in float32 ('f') and
int8 shares signed char ('b') with bool: the pure backend tags such buffers with their dtype
and narrows every value it stores to what the dtype holds (``puredl.backends.pure_narrow``).
"""

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
        # promotion order: bool < uint8 = int8 < int16 < int32 < int64 < float16 = bfloat16 < float32
        # < float64 (a tie between two kinds goes to the next wider type: see promote)
        self.rank = rank

    def __repr__(self) -> str:
        return f"puredl.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


bool_ = DType("bool", "b", 1, False, bool, 0)
uint8 = DType("uint8", "B", 1, False, int, 1)
int8 = DType("int8", "b", 1, False, int, 1)  # stored in 'b' like bool, in a tagged buffer
int16 = DType("int16", "h", 2, False, int, 2)
int32 = DType("int32", "i", 4, False, int, 3)
int64 = DType("int64", "q", 8, False, int, 4)
float16 = DType("float16", "f", 2, True, float, 5)  # stored in 'f', every value rounded to half
bfloat16 = DType("bfloat16", "f", 2, True, float, 5)  # stored in 'f', every value rounded to bfloat16
float32 = DType("float32", "f", 4, True, float, 6)
float64 = DType("float64", "d", 8, True, float, 7)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64)
# dtypes whose array typecode belongs to another dtype: the pure backend tags their buffers
NARROW = (int8, float16, bfloat16)
BY_NAME = {d.name: d for d in ALL}
BY_NAME.update(
    {"float": float32, "double": float64, "half": float16, "long": int64, "int": int32, "short": int16}
)
BY_TYPECODE = {d.typecode: d for d in ALL if d not in NARROW}
# the smaller integer dtypes wrap around on overflow (two's complement), as torch's do
INT_RANGE = {d: (-(1 << (8 * d.itemsize - 1)), 1 << (8 * d.itemsize - 1)) for d in (int8, int16, int32)}
INT_RANGE[uint8] = (0, 256)
# same rank, different kinds: torch promotes the pair to the next wider type
_TIES = {frozenset((int8, uint8)): int16, frozenset((float16, bfloat16)): float32}

_default_float = float32


def _by_name(name: str) -> DType:
    return BY_NAME[name]


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(dtype: DType) -> None:
    """Float dtype used for Python floats (float32 unless changed)."""
    global _default_float
    if dtype not in (float32, float64, float16, bfloat16):
        raise TypeError(f"set_default_dtype: expected a floating point dtype, got {dtype!r}")
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
    raise TypeError(
        f"unsupported dtype {dtype!r}; puredl has float32, float64, float16, bfloat16, int64, int32, "
        "int16, int8, uint8 and bool"
    )


def promote(a: DType, b: DType) -> DType:
    """Result dtype of a binary op between two tensors (PyTorch's rules: the wider kind wins).

    >>> promote(int32, int64), promote(int32, float16), promote(uint8, int8), promote(float16, bfloat16)
    (puredl.int64, puredl.float16, puredl.int16, puredl.float32)
    """
    if a.rank == b.rank and a is not b:
        return _TIES[frozenset((a, b))]
    return a if a.rank >= b.rank else b


def _category(d: DType) -> int:
    return 2 if d.is_floating_point else (0 if d is bool_ else 1)


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
