"""Standard-library kernels over flat ``array.array`` storage with shape, strides and offset.

Every kernel takes and returns :class:`PureArray` (or Python scalars). Fast paths first:
contiguous same-shape work maps over the flat buffer; anything strided or broadcast is gathered
once through an index list and then mapped.
"""

from __future__ import annotations

import math
import operator
from array import array

from puredl import dtypes as _dt
from puredl.backends.pure_narrow import BUFFER, narrow
from puredl.dtypes import BY_TYPECODE, INT_RANGE, DType
from puredl.shapes import broadcast_shapes  # noqa: F401 - part of this module's API (kernels use it)

NAME = "pure"
_inf = math.inf
_nan = math.nan

# Python 3.12+: math.sumprod, a C-level dot product about 2x faster than sum(map(mul, ...))
_sumprod = getattr(math, "sumprod", None)


class PureArray:
    """A strided view of a flat array.array buffer."""

    # _strides is None for a row-major layout: most arrays are, and checking is then free
    __slots__ = ("buf", "shape", "_strides", "offset")

    def __init__(self, buf: array, shape: tuple, strides: tuple | None = None, offset: int = 0):
        self.buf = buf
        self.shape = shape
        self._strides = strides
        self.offset = offset

    @property
    def strides(self) -> tuple:
        s = self._strides
        return contiguous_strides(self.shape) if s is None else s

    @property
    def dtype(self) -> DType:
        buf = self.buf
        return BY_TYPECODE[buf.typecode] if type(buf) is array else buf.dtype  # a tagged buffer knows


def _as(dtype: DType, a: PureArray) -> PureArray:
    """``a``, a kernel's fresh result, stored as ``dtype``: float16/bfloat16/int8 results are narrowed
    to what the dtype holds (``pure_narrow.narrow``) and tagged; the other dtypes pass unchanged."""
    cls = BUFFER.get(dtype)
    if cls is None or type(a.buf) is cls:
        return a
    return PureArray(narrow(dtype, a.buf, wrap=True), a.shape, a._strides, a.offset)


# --------------------------------------------------------------------------- layout helpers


def contiguous_strides(shape: tuple) -> tuple:
    strides = []
    acc = 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)  # like torch: a size-0 dim counts as 1, so strides stay informative
    return tuple(reversed(strides))


def numel(shape: tuple) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def is_contiguous(a: PureArray) -> bool:
    if a._strides is None:
        return True
    if 0 in a.shape:
        return True  # nothing to address, as torch says
    expected = 1
    for n, st in zip(reversed(a.shape), reversed(a._strides)):
        if n != 1 and st != expected:
            return False
        expected *= n
    return True


def _indices(shape: tuple, strides: tuple, offset: int) -> list:
    """Flat buffer positions of every element, row-major."""
    idx = [offset]
    for n, st in zip(shape, strides):
        if n == 1:
            continue
        if n == 0:
            return []
        if st == 0:
            idx = [i for i in idx for _ in range(n)]
        else:
            steps = range(0, n * st, st)
            idx = [i + s for i in idx for s in steps]
    return idx


def values(a: PureArray):
    """The elements of ``a`` in row-major order, as the buffer itself when possible (do not mutate)."""
    n = numel(a.shape)
    if a._strides is None or is_contiguous(a):  # (row-major needs no call: the common case)
        if a.offset == 0 and len(a.buf) == n:
            return a.buf
        return a.buf[a.offset : a.offset + n]
    buf = a.buf
    return [buf[i] for i in _indices(a.shape, a.strides, a.offset)]


def broadcast_values(a: PureArray, shape: tuple):
    """Elements of ``a`` broadcast to ``shape``, row-major."""
    if a.shape == shape:
        return values(a)
    lead = len(shape) - len(a.shape)
    if shape[lead:] == a.shape:
        # bias-like broadcast: repeat the whole block (C-level sequence repetition)
        v = values(a)
        reps = numel(shape[:lead])
        return v * reps if isinstance(v, (array, list)) else list(v) * reps
    return [a.buf[i] for i in _indices(shape, _broadcast_strides(a, shape), a.offset)]


def _broadcast_strides(a: PureArray, shape: tuple) -> tuple:
    """Strides that show ``a`` as ``shape``: 0 on added and stretched dims."""
    lead = len(shape) - len(a.shape)
    pairs = zip(a.shape, shape[lead:], a.strides)
    return (0,) * lead + tuple(0 if n == 1 and m != 1 else st for n, m, st in pairs)


_INT_CODES = "qihB"  # int64, int32, int16, uint8 (int8 shares 'b' with bool: ask the dtype)
_WRAP = {d.typecode: r for d, r in INT_RANGE.items() if d is not _dt.int8}


def _wrapped(typecode: str, xs) -> array:
    """``array(typecode, xs)``; a narrow integer type wraps out-of-range values around, like torch
    (int8 results are made in 'b' and wrapped by ``_as``)."""
    lohi = _WRAP.get(typecode)
    if lohi is None:
        return array(typecode, xs)
    xs = xs if isinstance(xs, (list, array)) else list(xs)
    try:
        return array(typecode, xs)
    except OverflowError:
        lo, hi = lohi
        span = hi - lo
        return array(typecode, [(x - lo) % span + lo for x in xs])


# --------------------------------------------------------------------------- creation and export


def from_values(data, shape: tuple, dtype: DType) -> PureArray:
    if dtype is _dt.bool_:
        data = [1 if x else 0 for x in data]
    if dtype in BUFFER:
        buf = data if type(data) is BUFFER[dtype] else narrow(dtype, data)  # int8: out of range raises
    elif type(data) is array and data.typecode == dtype.typecode:
        buf = data
    else:
        buf = array(dtype.typecode, data)
    if len(buf) != numel(shape):
        raise ValueError(f"from_values: {len(buf)} values do not fill shape {shape}")
    return PureArray(buf, tuple(shape))


def full(shape: tuple, value, dtype: DType) -> PureArray:
    if dtype is _dt.bool_:
        value = 1 if value else 0
    elif not dtype.is_floating_point:
        value = int(value)  # truncation toward zero, like torch
    if dtype in BUFFER:
        _check_fill(dtype, value, numel(shape))
        one = narrow(dtype, [value])
        return PureArray(type(one)(one.typecode, one * numel(shape)), tuple(shape))
    return PureArray(array(dtype.typecode, [value]) * numel(shape), tuple(shape))


# the largest finite float16 and bfloat16
_HALF_MAX = {_dt.float16: 65504.0, _dt.bfloat16: 3.3895313892515355e38}


def _check_fill(dtype: DType, value, n: int) -> None:
    """torch refuses to fill two or more half elements with a finite value beyond the type's range."""
    top = _HALF_MAX.get(dtype)
    if top is not None and n > 1 and math.isfinite(value) and abs(value) > top:
        raise RuntimeError(f"value {value!r} cannot be converted to type {dtype.name} without overflow")


def to_array(a: PureArray) -> array:
    v = values(a)
    cls = type(a.buf)
    if cls is not array:  # a tagged buffer (float16, bfloat16, int8): the copy keeps the tag
        return cls(a.buf.typecode, v)
    if isinstance(v, array) and v is not a.buf:
        return v  # already a fresh copy
    return array(a.buf.typecode, v)


def tolist(a: PureArray):
    v = values(a)
    if a.dtype is _dt.bool_:
        v = [bool(x) for x in v]
    else:
        v = list(v)
    shape = a.shape
    if not shape:
        return v[0]
    for n in reversed(shape[1:]):
        v = [v[i : i + n] for i in range(0, len(v), n)] if n else [[] for _ in range(len(v))]
    if shape and len(v) != shape[0]:  # a zero-size inner dim
        v = _empty_nested(shape)
    return v


def _empty_nested(shape: tuple):
    if len(shape) == 1:
        return []
    return [_empty_nested(shape[1:]) for _ in range(shape[0])]


def item(a: PureArray):
    x = a.buf[a.offset]
    return bool(x) if a.dtype is _dt.bool_ else x


def device(a: PureArray) -> str:
    return "cpu"


def cast(a: PureArray, dtype: DType) -> PureArray:
    src = a.dtype
    if src is dtype:
        return a
    v = values(a)
    if dtype is _dt.bool_:
        v = [1 if x else 0 for x in v]
    elif not dtype.is_floating_point and src.is_floating_point:
        v = [int(x) for x in v]  # truncation toward zero, like torch
    if dtype in BUFFER:
        return PureArray(narrow(dtype, v, wrap=True), a.shape)  # the rounding of .half(), .bfloat16()
    return PureArray(_wrapped(dtype.typecode, v), a.shape)


def contiguous(a: PureArray) -> PureArray:
    if is_contiguous(a) and a.offset == 0 and len(a.buf) == numel(a.shape):
        return a
    return PureArray(to_array(a), a.shape)


def clone(a: PureArray) -> PureArray:
    return PureArray(to_array(a), a.shape)


# --------------------------------------------------------------------------- views


def view(a: PureArray, shape: tuple) -> PureArray | None:
    """A view with a new shape when the strides allow it, else None (caller copies)."""
    if is_contiguous(a) or numel(a.shape) == 0:
        return PureArray(a.buf, shape, None, a.offset)
    strides = _view_strides(a.shape, a.strides, shape)
    return None if strides is None else PureArray(a.buf, shape, strides, a.offset)


def _view_strides(old: tuple, old_strides: tuple, new: tuple) -> tuple | None:
    """Strides that show a strided array as ``new`` without copying, or None (torch's rule).

    Dimensions that are laid out as one row-major chunk can be merged or split; a view must not
    cross the border between two chunks.
    """
    out = [0] * len(new)
    view_d = len(new) - 1
    chunk_stride = old_strides[-1]
    tensor_n = view_n = 1
    for d in range(len(old) - 1, -1, -1):
        tensor_n *= old[d]
        # a chunk ends where the next-outer dim does not continue it
        if d == 0 or (old[d - 1] != 1 and old_strides[d - 1] != tensor_n * chunk_stride):
            while view_d >= 0 and (view_n < tensor_n or new[view_d] == 1):
                out[view_d] = view_n * chunk_stride
                view_n *= new[view_d]
                view_d -= 1
            if view_n != tensor_n:
                return None
            if d > 0:
                chunk_stride = old_strides[d - 1]
                tensor_n = view_n = 1
    return tuple(out) if view_d == -1 else None


def reshape(a: PureArray, shape: tuple) -> PureArray:
    v = view(a, shape)
    return v if v is not None else PureArray(to_array(a), shape)


def permute(a: PureArray, dims: tuple) -> PureArray:
    shape, strides = a.shape, a.strides  # (read once: the property builds row-major strides)
    return PureArray(a.buf, tuple(shape[d] for d in dims), tuple(strides[d] for d in dims), a.offset)


def expand(a: PureArray, shape: tuple) -> PureArray:
    return PureArray(a.buf, tuple(shape), _broadcast_strides(a, tuple(shape)), a.offset)


def getitem(a: PureArray, key: tuple) -> PureArray:
    """Basic indexing with a normalised key: ints, (start, stop, step) slices and None (new axis)."""
    shape, strides, offset = [], [], a.offset
    old = a.strides  # (read once: the property builds row-major strides)
    dim = 0
    for k in key:
        if k is None:
            shape.append(1)
            strides.append(0)
        elif isinstance(k, int):
            offset += k * old[dim]
            dim += 1
        else:
            start, stop, step = k
            n = max(0, (stop - start + step - 1) // step)
            offset += start * old[dim] if n else 0
            shape.append(n)
            strides.append(old[dim] * step)
            dim += 1
    shape.extend(a.shape[dim:])
    strides.extend(old[dim:])
    return PureArray(a.buf, tuple(shape), tuple(strides), offset)


def setitem(a: PureArray, key: tuple, value) -> None:
    """Write ``value`` (a PureArray or a Python scalar) into the basic-indexed region of ``a``."""
    region = getitem(a, key)
    buf = a.buf
    n = numel(region.shape)
    if isinstance(value, PureArray) and value.shape == region.shape and is_contiguous(region):
        # whole-block write (optimizer updates, copy_): one C-level slice assignment
        src = to_array(cast(value, a.dtype))
        buf[region.offset : region.offset + n] = src
        return
    positions = _indices(region.shape, region.strides, region.offset)
    if isinstance(value, PureArray):
        src = broadcast_values(cast(value, a.dtype), region.shape)
        for p, x in zip(positions, src):
            buf[p] = x
    else:
        dtype = a.dtype
        if dtype is _dt.bool_:
            value = 1 if value else 0
        elif not dtype.is_floating_point:
            value = int(value)
        if dtype in BUFFER:
            _check_fill(dtype, value, len(positions))
            value = narrow(dtype, [value])[0]  # the value as the dtype holds it (int8: out of range raises)
        for p in positions:
            buf[p] = value


# --------------------------------------------------------------------------- elementwise


def _safe_div(x, y):
    try:
        return x / y
    except ZeroDivisionError:
        if x != x or x == 0:
            return _nan
        return math.copysign(_inf, x) * math.copysign(1.0, y)


def _safe_floordiv(x, y):
    if y == 0 and isinstance(x, float):
        return _safe_div(x, y)  # torch: inf, -inf or nan, as true division
    return x // y  # an integer division by zero raises ZeroDivisionError, as torch raises


def _safe_pow(x, y):
    try:
        return math.pow(x, y)
    except OverflowError:
        return _inf if x > 0 or float(y).is_integer() and int(y) % 2 == 0 else -_inf
    except ValueError:
        if x == 0:
            return _inf
        return _nan


def _ipow(x, y):
    if y < 0:
        raise ValueError("integers to negative integer powers are not allowed")
    return x**y


def _maximum(x, y):
    if x != x or y != y:
        return _nan
    return x if x >= y else y


def _minimum(x, y):
    if x != x or y != y:
        return _nan
    return x if x <= y else y


_BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "floor_divide": operator.floordiv,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": math.pow,
    "maximum": _maximum,
    "minimum": _minimum,
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "logical_and": lambda x, y: bool(x) and bool(y),
    "logical_or": lambda x, y: bool(x) or bool(y),
}
# what to do when the fast C-level function raises (division by zero, overflow, domain)
_BINARY_SAFE = {"div": _safe_div, "pow": _safe_pow, "floor_divide": _safe_floordiv}


def _map2(op: str, fn, xs, ys, dtype: DType):
    typecode = dtype.typecode
    if dtype is _dt.int8 and op == "pow":
        return narrow(dtype, map(_ipow, xs, ys), wrap=True)
    if not dtype.is_floating_point and op == "pow":  # exact integer powers (math.pow gives floats)
        return _wrapped(typecode, map(_ipow, xs, ys))
    if (typecode in _INT_CODES or dtype is _dt.int8) and op == "div":
        raise TypeError("integer true division must produce a float result")
    try:
        return array(typecode, map(fn, xs, ys))
    except OverflowError:
        if typecode in _WRAP:
            return _wrapped(typecode, map(fn, xs, ys))
        if dtype is _dt.int8:
            return narrow(dtype, map(fn, xs, ys), wrap=True)
        safe = _BINARY_SAFE.get(op)
        if safe is None:
            raise
        return array(typecode, map(safe, xs, ys))
    except (ZeroDivisionError, ValueError):
        safe = _BINARY_SAFE.get(op)
        if safe is None:
            raise
        return array(typecode, map(safe, xs, ys))


def binary(op: str, a: PureArray, b: PureArray, dtype: DType) -> PureArray:
    shape = broadcast_shapes(op, a.shape, b.shape)
    xs = broadcast_values(a, shape)
    ys = broadcast_values(b, shape)
    return _as(dtype, PureArray(_map2(op, _BINARY[op], xs, ys, dtype), shape))


def binary_scalar(op: str, a: PureArray, s, reverse: bool, dtype: DType) -> PureArray:
    xs = values(a)
    ys = [s] * len(xs)  # a list, not repeat(): _map2 may iterate twice (retry with the safe function)
    if reverse:
        xs, ys = ys, xs
    return _as(dtype, PureArray(_map2(op, _BINARY[op], xs, ys, dtype), a.shape))


def _safe_exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return _inf


def _safe_log(x):
    if x > 0:
        return math.log(x)
    return -_inf if x == 0 else _nan


def _safe_sqrt(x):
    return math.sqrt(x) if x >= 0 else _nan


def _sigmoid(x, _exp=math.exp):
    if x >= 0:
        return 1.0 / (1.0 + _exp(-x))
    e = _exp(x)  # stable for very negative x
    return e / (1.0 + e)


def _sign(x):
    return (x > 0) - (x < 0)  # 0 for NaN, as torch's sign (so abs' gradient there is 0)


def _round(x):
    return round(x) if x - x == 0 else x  # Python's round is half-to-even, as torch's; NaN/inf stay


_SQRT1_2 = 1.0 / math.sqrt(2.0)


def _gelu(x, _erf=math.erf):
    return 0.5 * x * (1.0 + _erf(x * _SQRT1_2))


_UNARY = {
    "neg": operator.neg,
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "abs": abs,
    "sign": _sign,
    "round": _round,
    "sigmoid": _sigmoid,
    "tanh": math.tanh,
    "gelu": _gelu,
    "erf": math.erf,
    "sin": math.sin,
    "cos": math.cos,
    "logical_not": operator.not_,
}
_UNARY_SAFE = {"exp": _safe_exp, "log": _safe_log, "sqrt": _safe_sqrt}


def unary(op: str, a: PureArray, dtype: DType | None = None) -> PureArray:
    xs = values(a)
    dtype = dtype or a.dtype
    tc = dtype.typecode
    if op == "relu":
        zero = 0.0 if tc in "fd" else 0
        # `zero if x < 0` keeps NaN and -0.0 as they are, like torch
        return _as(dtype, PureArray(array(tc, [zero if x < 0 else x for x in xs]), a.shape))
    fn = _UNARY[op]
    try:
        out = array(tc, map(fn, xs))
    except OverflowError:
        if dtype is _dt.int8:
            out = narrow(dtype, map(fn, xs), wrap=True)
        else:
            out = _wrapped(tc, map(fn, xs)) if tc in _WRAP else array(tc, map(_UNARY_SAFE[op], xs))
    except ValueError:
        out = array(tc, map(_UNARY_SAFE[op], xs))
    return _as(dtype, PureArray(out, a.shape))


def relu_backward(g: PureArray, a: PureArray) -> PureArray:
    """``g`` where ``a > 0``, else 0; a NaN in ``a`` lets ``g`` through (torch's threshold_backward)."""
    zero = 0 if g.buf.typecode in _INT_CODES else 0.0
    out = [zero if x <= 0 else y for x, y in zip(values(a), values(g))]
    return _as(g.dtype, PureArray(array(g.buf.typecode, out), a.shape))


def clamp(a: PureArray, lo, hi) -> PureArray:
    xs = values(a)
    if lo is not None and hi is not None:
        if lo > hi:  # torch's min(max(x, lo), hi): every (non-NaN) value becomes hi
            lo = hi
        out = [lo if x < lo else (hi if x > hi else x) for x in xs]
    elif lo is not None:
        out = [lo if x < lo else x for x in xs]
    else:
        out = [hi if x > hi else x for x in xs]
    return _as(a.dtype, PureArray(array(a.buf.typecode, out), a.shape))


def where(cond: PureArray, a: PureArray, b: PureArray, dtype: DType) -> PureArray:
    shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape, a.shape), b.shape)
    cs = broadcast_values(cond, shape)
    xs = broadcast_values(cast(a, dtype), shape)
    ys = broadcast_values(cast(b, dtype), shape)
    return _as(dtype, PureArray(array(dtype.typecode, [x if c else y for c, x, y in zip(cs, xs, ys)]), shape))


# --------------------------------------------------------------------------- matmul


def _as_list(v) -> list:
    return v.tolist() if isinstance(v, array) else v


def matmul(a: PureArray, b: PureArray, dtype: DType) -> PureArray:
    """Matrix product of two arrays with ndim >= 2, batch dimensions broadcast."""
    (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
    if k != k2:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned ({k} != {k2})")
    batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    if dtype in INT_RANGE:  # narrow ints: exact Python-int sums, then wrapped around as torch's
        av = _as_list(broadcast_values(cast(a, dtype), batch + (m, k)))
        bv = _as_list(broadcast_values(cast(b, dtype), batch + (k, n)))
        sums = []
        for bi in range(numel(batch)):
            rows = [av[(bi * m + i) * k : (bi * m + i + 1) * k] for i in range(m)]
            cols = list(zip(*[bv[(bi * k + j) * n : (bi * k + j + 1) * n] for j in range(k)])) or [()] * n
            sums.extend(sum(map(operator.mul, r, c)) for r in rows for c in cols)
        if dtype is _dt.int8:
            return PureArray(narrow(dtype, sums, wrap=True), batch + (m, n))
        return PureArray(_wrapped(dtype.typecode, sums), batch + (m, n))
    if k == 0:  # an empty sum is zero
        return full(batch + (m, n), 0, dtype)
    # lists, not arrays: reading an array element boxes a new float every time
    out = array(dtype.typecode)
    if not batch and k > 4:
        # 2-D: read row-major or transposed operands straight from their buffers (x @ W.T, g.T @ x)
        _dots_into(out, _matrix_lines(a, m, k, rows=True), _matrix_lines(b, k, n, rows=False))
        return _as(dtype, PureArray(out, (m, n)))
    av = _as_list(broadcast_values(a, batch + (m, k)))
    bv = _as_list(broadcast_values(b, batch + (k, n)))
    mk, kn = m * k, k * n
    for bi in range(numel(batch)):
        base_a, base_b = bi * mk, bi * kn
        if k <= 4:
            # tiny inner dimension: accumulate scaled rows of b (few long loops beat many short dots)
            brows = [bv[base_b + j * n : base_b + (j + 1) * n] for j in range(k)]
            if k == 2:  # one pass per row (2-feature inputs: XOR, moons, regression)
                b0, b1 = brows
                for i in range(base_a, base_a + m * 2, 2):
                    s0, s1 = av[i], av[i + 1]
                    out.extend([s0 * y0 + s1 * y1 for y0, y1 in zip(b0, b1)])
                continue
            for i in range(m):
                arow = av[base_a + i * k : base_a + (i + 1) * k]
                acc = [arow[0] * y for y in brows[0]]
                for j in range(1, k):
                    s = arow[j]
                    acc = [x + s * y for x, y in zip(acc, brows[j])]
                out.extend(acc)
            continue
        rows = [av[base_a + i * k : base_a + (i + 1) * k] for i in range(m)]
        # transpose once: each column becomes a contiguous tuple
        cols = list(zip(*[bv[base_b + i * n : base_b + (i + 1) * n] for i in range(k)]))
        _dots_into(out, rows, cols)
    return _as(dtype, PureArray(out, batch + (m, n)))


def linear(x: PureArray, w: PureArray, b: PureArray | None, dtype: DType) -> PureArray:
    """``x @ w.T + b`` for ``x`` (..., in), ``w`` (out, in), ``b`` (out,) or None: torch's F.linear."""
    k, o = x.shape[-1], w.shape[0]
    if w.shape[1] != k:
        raise ValueError(f"linear: input {x.shape} has {k} features, weight {w.shape} expects {w.shape[1]}")
    lead = x.shape[:-1]
    # half precision: x @ W.T + b in float32, rounded once at the end (torch's addmm)
    acc = _dt.float32 if dtype is _dt.float16 or dtype is _dt.bfloat16 else dtype
    # W.T is read in place by matmul's 2-D path: no transposed copy
    out = matmul(reshape(x, (numel(lead), k)), permute(w, (1, 0)), acc)
    if b is not None and o:
        bv, flat, rows = _as_list(values(cast(b, dtype))), out.buf.tolist(), []
        add = operator.add
        for i in range(0, len(flat), o):
            rows.extend(map(add, flat[i : i + o], bv))
        out = PureArray(array(dtype.typecode, rows), out.shape)
    return reshape(_as(dtype, out), lead + (o,))


def _matrix_lines(a: PureArray, r: int, c: int, rows: bool) -> list:
    """The rows (or columns) of the 2-D array ``a`` of shape (r, c) as sequences, without a strided gather."""
    whole = a.offset == 0 and len(a.buf) == r * c
    if whole and a._strides is None:
        flat = a.buf.tolist()
        lines = [flat[i * c : (i + 1) * c] for i in range(r)]
        return lines if rows else list(zip(*lines))
    if whole and a._strides == (1, r):  # a transposed row-major (c, r) matrix
        flat = a.buf.tolist()
        lines = [flat[j * r : (j + 1) * r] for j in range(c)]
        return list(zip(*lines)) if rows else lines
    v = _as_list(values(a))
    lines = [v[i * c : (i + 1) * c] for i in range(r)]
    return lines if rows else list(zip(*lines))


def _dots_into(out: array, rows: list, cols: list) -> None:
    """Append every row . column dot product to ``out``, row-major."""
    if _sumprod is not None:
        out.extend([_sumprod(r, c) for r in rows for c in cols])
    else:  # inlined: a helper function call per dot would cost a fifth of the time
        mul = operator.mul
        out.extend([sum(map(mul, r, c)) for r in rows for c in cols])


# --------------------------------------------------------------------------- reductions


def _moved_last(a: PureArray, dims: tuple):
    """Elements ordered so that ``dims`` vary fastest; returns (values, kept_shape, group_size)."""
    keep = [d for d in range(len(a.shape)) if d not in dims]
    order = keep + list(dims)
    p = permute(a, tuple(order))
    kept_shape = tuple(a.shape[d] for d in keep)
    group = numel(tuple(a.shape[d] for d in dims))
    return values(p), kept_shape, group


def _keep_shape(shape: tuple, dims: tuple, keepdim: bool) -> tuple:
    if keepdim:
        return tuple(1 if i in dims else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in dims)


def reduce_sum(a: PureArray, dims: tuple, keepdim: bool, dtype: DType) -> PureArray:
    out_shape = _keep_shape(a.shape, dims, keepdim)
    if len(dims) == len(a.shape):
        return _as(dtype, PureArray(array(dtype.typecode, [sum(values(a))]), out_shape))
    lead = len(dims)
    if dims == tuple(range(lead)) and is_contiguous(a):  # leading dims (a bias gradient): sum columns
        inner, outer = numel(a.shape[lead:]), numel(a.shape[:lead])
        if outer == 0:
            return full(out_shape, 0, dtype)
        v = _as_list(values(a))
        sums = list(map(sum, zip(*[v[i * inner : (i + 1) * inner] for i in range(outer)])))
        return _as(dtype, PureArray(array(dtype.typecode, sums), out_shape))
    vs, _, group = _moved_last(a, dims)
    if group == 0:
        return full(out_shape, 0, dtype)
    sums = [sum(vs[i : i + group]) for i in range(0, len(vs), group)]
    return _as(dtype, PureArray(array(dtype.typecode, sums), out_shape))


def _largest(xs):
    return _nan if any(x != x for x in xs) else max(xs)  # NaN propagates, like torch


def _smallest(xs):
    return _nan if any(x != x for x in xs) else min(xs)


def _mean(xs):
    return sum(xs) / len(xs) if len(xs) else _nan


# the reductions of ops.REDUCE_OPS other than sum: op -> f(the values of one output element)
_REDUCE = {"mean": _mean, "prod": math.prod, "amax": _largest, "amin": _smallest}


def reduce(op: str, a: PureArray, dims: tuple, keepdim: bool, dtype: DType) -> PureArray:
    """The table reduction ``op`` over ``dims`` (``a`` already has the result dtype)."""
    if op == "sum":
        return reduce_sum(a, dims, keepdim, dtype)
    if op in ("amax", "amin"):
        if not numel(a.shape) and len(dims) == len(a.shape):
            raise RuntimeError(f"{op}(): an empty tensor has no {op}; give dim= (as torch asks)")
        for d in dims:
            if a.shape[d] == 0:
                raise IndexError(f"{op}(): Expected reduction dim {d} to have non-zero size.")
    fn = _REDUCE[op]
    vs, _, group = _moved_last(a, dims)
    if group == 0:
        out = [fn(())] * numel(_keep_shape(a.shape, dims, False))
    else:
        out = [fn(vs[i : i + group]) for i in range(0, len(vs), group)]
    shape = _keep_shape(a.shape, dims, keepdim)
    try:
        return _as(dtype, PureArray(array(dtype.typecode, out), shape))
    except OverflowError:  # an integer product past int64 (prod's only int dtype) wraps around, as torch's
        return PureArray(array(dtype.typecode, [(x + (1 << 63)) % (1 << 64) - (1 << 63) for x in out]), shape)


def max_dim(a: PureArray, dim: int, keepdim: bool, largest: bool = True):
    """(values, int64 indices) of the max (or min) along ``dim``; first occurrence wins."""
    vs, _, group = _moved_last(a, (dim,))
    if group == 0:
        raise IndexError(f"max/min: cannot reduce over zero-size dimension {dim} of shape {a.shape}")
    pick = max if largest else min
    best, where_ = [], []
    for i in range(0, len(vs), group):
        chunk = vs[i : i + group]
        if any(x != x for x in chunk):  # NaN propagates, like torch
            j = next(j for j, x in enumerate(chunk) if x != x)
            best.append(_nan)
        else:
            m = pick(chunk)
            j = chunk.index(m)
            best.append(m)
        where_.append(j)
    shape = _keep_shape(a.shape, (dim,), keepdim)
    return _as(a.dtype, PureArray(array(a.buf.typecode, best), shape)), PureArray(array("q", where_), shape)


def argmax_all(a: PureArray, largest: bool = True) -> PureArray:
    vs = values(a)
    if len(vs) == 0:
        raise ValueError("argmax/argmin of an empty tensor")
    vs = list(vs)
    nan_at = next((i for i, x in enumerate(vs) if x != x), None)
    if nan_at is not None:  # NaN wins, the first one, like torch
        return PureArray(array("q", [nan_at]), ())
    return PureArray(array("q", [vs.index(max(vs) if largest else min(vs))]), ())


def softmax(a: PureArray, dim: int, log: bool = False) -> PureArray:
    if numel(a.shape) == 0:
        return _as(a.dtype, PureArray(array(a.buf.typecode), a.shape))
    vs, kept, group = _moved_last(a, (dim,))
    out = []
    exp, lg = math.exp, math.log
    for i in range(0, len(vs), group):
        row = vs[i : i + group]
        m = max(row)
        if m == _inf or m != m:
            m = 0.0 if m != m else m
        e = [exp(x - m) for x in row]
        s = sum(e)
        if log:
            ls = m + lg(s)
            out.extend([x - ls for x in row])
        else:
            inv = 1.0 / s
            out.extend([x * inv for x in e])
    # result is laid out with `dim` last; view it back in the original order
    nd = len(a.shape)
    moved_shape = kept + (a.shape[dim],)
    res = _as(a.dtype, PureArray(array(a.buf.typecode, out), moved_shape))
    order = [d for d in range(nd) if d != dim] + [dim]
    inverse = [0] * nd
    for pos, d in enumerate(order):
        inverse[d] = pos
    return permute(res, tuple(inverse))


# --------------------------------------------------------------------------- joining and gathering


def cat(dim: int, dtype: DType, *arrays: PureArray) -> PureArray:
    first = arrays[0].shape
    outer = numel(first[:dim])
    chunks = []
    for a in arrays:
        v = values(cast(a, dtype))
        chunks.append((v, numel(a.shape[dim:])))
    out = array(dtype.typecode)
    for o in range(outer):
        for v, size in chunks:
            out.extend(v[o * size : (o + 1) * size])
    shape = first[:dim] + (sum(a.shape[dim] for a in arrays),) + first[dim + 1 :]
    return _as(dtype, PureArray(out, shape))


def index_select0(a: PureArray, idx: PureArray) -> PureArray:
    """Rows of ``a`` (viewed as (rows, inner)) picked by an int64 index array of any shape."""
    rows = a.shape[0]
    inner = numel(a.shape[1:])
    v = values(a)
    out = array(a.buf.typecode)
    for i in values(idx):
        if not -rows <= i < rows:
            raise IndexError(f"index {i} is out of bounds for dimension 0 with size {rows}")
        if i < 0:
            i += rows
        out.extend(v[i * inner : (i + 1) * inner])
    return _as(a.dtype, PureArray(out, idx.shape + a.shape[1:]))


def index_add0(shape: tuple, idx: PureArray, src: PureArray) -> PureArray:
    """zeros(shape) with rows ``src`` added at ``idx`` (repeated indices accumulate)."""
    rows = shape[0]
    inner = numel(shape[1:])
    out = [0.0] * numel(shape) if src.buf.typecode in "fd" else [0] * numel(shape)
    sv = values(src)
    for n, i in enumerate(values(idx)):
        if i < 0:
            i += rows
        base, sbase = i * inner, n * inner
        for j in range(inner):
            out[base + j] += sv[sbase + j]
    return _as(src.dtype, PureArray(array(src.buf.typecode, out), tuple(shape)))


# --------------------------------------------------------------------------- losses


def nll_loss(
    x: PureArray,
    target: PureArray,
    weight,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    log_softmax: bool,
):
    """torch's (N, C) negative log-likelihood, of ``log_softmax(x)`` when ``log_softmax`` (cross-entropy).

    Class ``weight`` (C,) or None, rows whose target is ``ignore_index`` count for nothing, label
    smoothing mixes in ``-sum_c w_c logp_c``. Returns ``(loss, logp, total)``: the loss reduced
    as asked, the log-probabilities (for the backward) and the summed target weights (the mean's divisor).
    """
    n, c = x.shape
    tc = x.buf.typecode
    logp = softmax(x, 1, log=True) if log_softmax else x
    lps, ys = _as_list(values(logp)), values(target)
    w = values(weight) if weight is not None else None
    name = "cross_entropy" if log_softmax else "nll_loss"
    eps = label_smoothing
    rows, total = [], 0.0
    for i in range(n):
        row = lps[i * c : (i + 1) * c]
        y = ys[i]
        if y == ignore_index:
            rows.append(0.0)
            continue
        if not 0 <= y < c:
            raise IndexError(f"{name}: target {y} is out of bounds for {c} classes")
        wy = 1.0 if w is None else w[y]
        total += wy
        loss = -wy * row[y]
        if eps:
            smooth = -(math.fsum(row) if w is None else math.fsum(map(operator.mul, w, row)))
            loss = (1.0 - eps) * loss + eps / c * smooth
        rows.append(loss)
    if reduction == "none":
        out = _as(x.dtype, PureArray(array(tc, rows), (n,)))
    else:
        s = math.fsum(rows)
        if reduction == "mean":
            s = s / total if total else _nan
        out = _as(x.dtype, PureArray(array(tc, [s]), ()))
    return out, logp, total


def nll_loss_backward(
    grad: PureArray,
    logp: PureArray,
    target: PureArray,
    weight,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    total,
    log_softmax: bool,
) -> PureArray:
    """The gradient of :func:`nll_loss` with respect to its input ``x``, given the loss's gradient."""
    n, c = logp.shape
    lps, ys, gs = values(logp), values(target), values(grad)
    w = values(weight) if weight is not None else None
    eps, exp = label_smoothing, math.exp
    # the divisor: a float from this backend's nll_loss, a 0-d array, or another backend's 0-d tensor
    total = values(total)[0] if isinstance(total, PureArray) else float(total)
    scale = None if reduction == "none" else gs[0] if reduction == "sum" else gs[0] / total if total else _nan
    out = []
    for i in range(n):
        y = ys[i]
        if y == ignore_index:
            out.extend([0.0] * c)
            continue
        s = gs[i] if scale is None else scale
        # a: the weight each class carries in row i's loss, -sum_c a_c logp_c
        if eps:
            k = s * eps / c
            a = [k] * c if w is None else [k * wc for wc in w]
        else:
            a = [0.0] * c
        a[y] += s * (1.0 - eps) * (1.0 if w is None else w[y])
        if log_softmax:  # d/dx of -sum a logp = sum(a) softmax(x) - a
            sa = math.fsum(a)
            out.extend([sa * exp(lp) - ac for lp, ac in zip(lps[i * c : (i + 1) * c], a)])
        else:
            out.extend([-ac for ac in a])
    return _as(logp.dtype, PureArray(array(logp.buf.typecode, out), (n, c)))


# the CNN family and top-k live in their own module (kernels only, like this one)
from puredl.backends.pure_conv import col2im, conv2d, conv2d_backward, cumsum, im2col, sort, topk  # noqa: E402, F401
from puredl.backends.pure_optim import adam_update, sgd_update  # noqa: E402, F401
