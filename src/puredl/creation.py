"""Tensor factories: tensor, zeros, ones, full, empty, rand, randn, randint, arange, linspace, eye, *_like;
and interop: ``from_torch``/``to_torch`` (sharing memory) and ``from_numpy`` (a copy)."""

from __future__ import annotations

import math
from array import array

from puredl import dtypes as dt
from puredl._optional import require
from puredl.backends import pure as _pure
from puredl.placement import default_device_or
from puredl.random import default_generator
from puredl.tensor import Tensor, _wrap


def _flatten_nested(data) -> tuple[list, tuple]:
    """Flatten nested lists/tuples, checking that they are rectangular."""
    if isinstance(data, Tensor):
        return data.reshape(-1).tolist(), data.shape
    if not isinstance(data, (list, tuple)):
        return [data], ()
    shape = []
    level = data
    while isinstance(level, (list, tuple)):
        shape.append(len(level))
        if not level:
            break
        level = level[0]
    flat: list = []

    def walk(x, depth):
        if depth == len(shape):
            if isinstance(x, (list, tuple)):
                raise ValueError(f"tensor: ragged nested sequence (a list where depth {depth} has scalars)")
            flat.append(x.item() if isinstance(x, Tensor) else x)
            return
        if not isinstance(x, (list, tuple)) or len(x) != shape[depth]:
            got = len(x) if isinstance(x, (list, tuple)) else "a scalar"
            raise ValueError(
                f"tensor: ragged nested sequence: expected length {shape[depth]} at depth {depth}, got {got}"
            )
        for y in x:
            walk(y, depth + 1)

    walk(data, 0)
    return flat, tuple(shape)


def _infer_dtype(flat: list) -> dt.DType:
    if not flat:
        return dt.get_default_dtype()
    kind = dt.bool_
    for x in flat:
        if isinstance(x, bool):
            continue
        if isinstance(x, int):
            kind = dt.int64 if kind is dt.bool_ else kind
        elif isinstance(x, float):
            return dt.get_default_dtype()
        else:
            raise TypeError(f"tensor: cannot build a tensor from element of type {type(x).__name__}")
    return kind


# building pure storage holds each value as a Python object in a list first: ~8 B pointer + 24 B float
_BUILD_BYTES = 32
_UNCHECKED = 1 << 22  # below ~4M elements nothing is checked (it always fits, and it is the common case)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux MemAvailable, else free physical pages), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_memory(op: str, shape: tuple, dtype: dt.DType, built_from_values: bool = True) -> None:
    """Refuse, before allocating anything, a tensor that cannot fit in the memory available now."""
    n = _pure.numel(shape)
    if n < _UNCHECKED:
        return
    need = n * (dtype.itemsize + (_BUILD_BYTES if built_from_values else 0))
    avail = available_memory()
    if avail is not None and need > avail:
        raise RuntimeError(
            f"{op}: a tensor of shape {tuple(shape)} ({n:,} {dtype.name} elements) needs about "
            f"{need / 2**30:,.1f} GiB to build, more than the {avail / 2**30:,.1f} GiB of memory available"
        )


def _place(impl, device) -> Tensor:
    t = _wrap(impl, _pure)
    device = default_device_or(device)  # puredl.set_default_device
    if device is not None and str(device) != "cpu":
        return t.to(str(device))
    return t


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Build a tensor from nested lists or a scalar.

    >>> tensor([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    if type(data).__module__.startswith("torch"):
        t = from_torch(data).detach()
        t = t.to(dtype) if dtype is not None else t
        return _finish(t.to(device) if device is not None else t, requires_grad)
    if type(data).__module__ == "numpy":  # an ndarray or NumPy scalar: NumPy's dtype, as torch keeps it
        t = from_numpy(data.__array__())
        t = t.to(dtype) if dtype is not None else t
        device = default_device_or(device)
        return _finish(t.to(device) if device is not None else t, requires_grad)
    flat, shape = _flatten_nested(data)
    if dtype is None and isinstance(data, Tensor):
        dtype = data.dtype  # torch.tensor(t) keeps t's dtype (float16, float64, int32, ...)
    d = dt.as_dtype(dtype) if dtype is not None else _infer_dtype(flat)
    if not d.is_floating_point and d is not dt.bool_:
        if any(isinstance(x, float) and not math.isfinite(x) for x in flat):
            raise ValueError(f"tensor: cannot convert a non-finite float to {d.name}")
        flat = [int(x) for x in flat]
    return _finish(_place(_pure.from_values(flat, shape, d), device), requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype)
    return tensor(data, dtype=dtype, device=device)


def scalar_tensor(value, dtype=None, like: Tensor | None = None) -> Tensor:
    d = dt.as_dtype(dtype) if dtype is not None else _infer_dtype([value])
    return tensor(value, dtype=d, device=like.device if like is not None else None)


def _size(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ValueError(f"invalid size {tuple(size)}: sizes must be non-negative integers")
    return tuple(size)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    size = tuple(size) if isinstance(size, (tuple, list)) else (size,)
    d = dt.as_dtype(dtype) if dtype is not None else _infer_dtype([fill_value])
    shape = _size((size,))
    check_fits_memory("full", shape, d, built_from_values=False)
    return _finish(_place(_pure.full(shape, fill_value, d), device), requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    d = dt.as_dtype(dtype) if dtype is not None else dt.get_default_dtype()
    shape = _size(size)
    check_fits_memory("zeros", shape, d, built_from_values=False)
    return _finish(_place(_pure.full(shape, 0, d), device), requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    d = dt.as_dtype(dtype) if dtype is not None else dt.get_default_dtype()
    shape = _size(size)
    check_fits_memory("ones", shape, d, built_from_values=False)
    return _finish(_place(_pure.full(shape, 1, d), device), requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uninitialised in torch; zero-filled here (the pure tier has no cheaper allocation)."""
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def _random(values: list, shape: tuple, dtype, device, requires_grad) -> Tensor:
    d = dt.as_dtype(dtype) if dtype is not None else dt.get_default_dtype()
    return _finish(_place(_pure.from_values(values, shape, d), device), requires_grad)


def rand(*size, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Uniform samples in [0, 1); reproducible with ``manual_seed``."""
    shape = _size(size)
    check_fits_memory("rand", shape, dt.as_dtype(dtype) if dtype is not None else dt.get_default_dtype())
    g = generator or default_generator
    return _random([g.random() for _ in range(_pure.numel(shape))], shape, dtype, device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Standard normal samples; reproducible with ``manual_seed``."""
    shape = _size(size)
    check_fits_memory("randn", shape, dt.as_dtype(dtype) if dtype is not None else dt.get_default_dtype())
    g = generator or default_generator
    vals = [g.gauss(0.0, 1.0) for _ in range(_pure.numel(shape))]
    return _random(vals, shape, dtype, device, requires_grad)


def randint(
    *args,
    size=None,
    low=None,
    high=None,
    generator=None,
    dtype=None,
    device=None,
    requires_grad: bool = False,
) -> Tensor:
    """Integers in [low, high): torch's forms ``randint(high, size)``, ``randint(low, high, size)``,
    and any of ``low``/``high``/``size`` as keywords (``low`` defaults to 0).

    >>> randint(10, (3,)).shape, randint(2, 5, size=(2, 2)).shape
    ((3,), (2, 2))
    """
    args = list(args)
    if size is None and args and isinstance(args[-1], (tuple, list)):
        size = args.pop()
    if len(args) == 2 and low is None and high is None:
        low, high = args
    elif len(args) == 1 and high is None:
        high = args[0]
    elif len(args) == 1 and low is None:
        low = args[0]
    elif args:
        raise TypeError(
            f"randint(): cannot read arguments {tuple(args)!r}; "
            "use randint(high, size) or randint(low, high, size)"
        )
    if high is None or size is None:
        raise TypeError(
            "randint(): 'high' and 'size' are required: randint(high, size) or randint(low, high, size)"
        )
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"randint(): argument 'size' must be a tuple of ints, not {type(size).__name__}")
    low = 0 if low is None else low
    for name, v in (("low", low), ("high", high)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"randint(): argument '{name}' must be int, not {type(v).__name__}")
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    shape = _size((tuple(size),))
    d = dt.as_dtype(dtype) if dtype is not None else dt.int64
    check_fits_memory("randint", shape, d)
    g = generator or default_generator
    vals = [g.randrange(low, high) for _ in range(_pure.numel(shape))]
    return _finish(_place(_pure.from_values(vals, shape, d), device), requires_grad)


def randperm(n: int, dtype=None, device=None, generator=None) -> Tensor:
    check_fits_memory("randperm", (n,), dt.as_dtype(dtype) if dtype else dt.int64)
    g = generator or default_generator
    perm = list(range(n))
    g.shuffle(perm)
    return _place(_pure.from_values(perm, (n,), dt.as_dtype(dtype) if dtype else dt.int64), device)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Values from ``start`` to ``end`` (exclusive) by ``step``."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    n = max(0, math.ceil((end - start) / step))
    is_float = any(isinstance(v, float) for v in (start, end, step))
    d = dt.as_dtype(dtype) if dtype is not None else (dt.get_default_dtype() if is_float else dt.int64)
    check_fits_memory("arange", (n,), d)
    vals = [start + i * step for i in range(n)]
    if not d.is_floating_point and d is not dt.bool_:
        vals = [int(v) for v in vals]
    return _finish(_place(_pure.from_values(vals, (n,), d), device), requires_grad)


def linspace(
    start: float, end: float, steps: int, dtype=None, device=None, requires_grad: bool = False
) -> Tensor:
    if steps < 0:
        raise ValueError("linspace: number of steps must be non-negative")
    check_fits_memory(
        "linspace", (steps,), dt.as_dtype(dtype) if dtype is not None else dt.get_default_dtype()
    )
    if steps == 1:
        vals = [float(start)]
    else:
        step = (end - start) / (steps - 1)
        # torch fills the second half from the end, so the last value is exactly `end`
        half = steps // 2
        vals = [start + i * step if i < half else end - (steps - 1 - i) * step for i in range(steps)]
    d = dt.as_dtype(dtype) if dtype is not None else dt.get_default_dtype()
    return _finish(_place(_pure.from_values(vals, (steps,), d), device), requires_grad)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    m = n if m is None else m
    d = dt.as_dtype(dtype) if dtype is not None else dt.get_default_dtype()
    check_fits_memory("eye", (n, m), d)
    vals = [1 if i == j else 0 for i in range(n) for j in range(m)]
    return _finish(_place(_pure.from_values(vals, (n, m), d), device), requires_grad)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    d, dev = dtype or t.dtype, device or t.device
    return full(t.shape, fill_value, dtype=d, device=dev, requires_grad=requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros_like(t, dtype, device, requires_grad)


def rand_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return rand(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def randn_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return randn(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def randint_like(t: Tensor, low: int, high: int | None = None, dtype=None, device=None) -> Tensor:
    if high is None:
        low, high = 0, low
    return randint(low, high, t.shape, dtype=dtype or t.dtype, device=device or t.device)


# --------------------------------------------------------------------------- interop: torch and NumPy


def to_torch(t):
    """``t``'s data as a ``torch.Tensor``, sharing memory (a zero-copy view of pure storage).

    The result is detached from puredl's autograd; writes through it are seen by ``t``.
    """
    from puredl import accel

    tb = accel.torch_backend()
    return tb.from_pure(t._impl) if t._be is _pure else t._impl


def from_torch(t):
    """A puredl tensor over a ``torch.Tensor``'s memory (CPU or CUDA), without copying.

    Every dtype puredl has (float32/float64/float16/bfloat16, int64/int32/int16/int8, uint8, bool)
    is kept and shares memory. Gradients are not carried over: the result is a leaf.

    >>> import torch, puredl as pd
    >>> x = pd.from_torch(torch.ones(2)); x.tolist()
    [1.0, 1.0]
    """
    from puredl import accel

    tb = accel.torch_backend()
    torch = tb.torch
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"from_torch: expected a torch.Tensor, got {type(t).__name__}")
    t = t.detach()
    if t.dtype not in tb.PUREDL_DTYPE:
        raise TypeError(
            f"from_torch: dtype {t.dtype} is not supported "
            "(puredl has float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool)"
        )
    return _wrap(t, tb.backend_for(t))


def from_numpy(a) -> Tensor:
    """``puredl.from_numpy``: a tensor with the array's values and dtype (a copy, unlike torch).

    float16/float32/float64/int64/int32/int16/int8/uint8/bool keep their dtype; the other integer
    types become int64.
    """
    np = require("numpy", "numpy", "Tensor.numpy() and from_numpy()")
    if not isinstance(a, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(a).__name__})")
    kinds = {"f": None, "i": "int64", "u": "int64", "b": "bool"}
    if a.dtype.kind not in kinds:
        raise TypeError(
            f"can't convert np.ndarray of type {a.dtype}; puredl supports float, int and bool arrays"
        )
    if a.dtype.kind == "f":
        name = {np.float64: "float64", np.float16: "float16"}.get(a.dtype.type, "float32")
    elif a.dtype in (np.int32, np.int16, np.int8, np.uint8):
        name = a.dtype.name
    else:
        name = kinds[a.dtype.kind]
    dtype = dt.as_dtype(name)
    np_type = {"float32": np.float32, "float64": np.float64, "float16": np.float32, "bool": np.int8}.get(
        name, np.dtype(name)
    )
    flat = np.ascontiguousarray(a, dtype=np_type).reshape(-1)
    storage = array(dtype.typecode)
    storage.frombytes(flat.tobytes())
    return Tensor.from_array(storage, tuple(a.shape), dtype=dtype)
