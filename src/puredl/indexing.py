"""Tensor indexing: basic keys (ints, slices, None, Ellipsis) as views; integer tensors and masks gather."""

from __future__ import annotations

from puredl import dtypes as dt
from puredl import ops
from puredl.creation import tensor
from puredl.shapes import broadcast_shapes
from puredl.tensor import Tensor, bump_version


def _is_advanced(k) -> bool:
    return isinstance(k, (Tensor, list))


def normalize_basic_key(key, shape: tuple) -> tuple:
    """Turn a basic index into (int | (start, stop, step) | None, ...) with bounds checked."""
    if not isinstance(key, tuple):
        key = (key,)
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_real > len(shape):
        raise IndexError(f"too many indices for tensor of dimension {len(shape)} (got {n_real})")
    out, dim = [], 0
    for k in key:
        if k is Ellipsis:
            fill = len(shape) - n_real
            out.extend((0, shape[dim + i], 1) for i in range(fill))
            dim += fill
        elif k is None:
            out.append(None)
        elif isinstance(k, slice):
            if k.step is not None and k.step <= 0:
                raise ValueError("step must be greater than zero (as in torch, no negative steps)")
            start, stop, step = k.indices(shape[dim])
            out.append((start, max(stop, start), step))
            dim += 1
        elif isinstance(k, bool) or not hasattr(k, "__index__"):
            raise IndexError(f"unsupported index {k!r} of type {type(k).__name__}")
        else:
            i = k.__index__()
            n = shape[dim]
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {dim} with size {n}")
            out.append(i % n)
            dim += 1
    return tuple(out)


def getitem(t: Tensor, key) -> Tensor:
    if isinstance(key, Tensor) and key.dtype is dt.bool_:
        return _mask_select(t, key)
    keys = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, range) for k in keys):  # x[range(n), y]: a range is a list of indices
        keys = tuple(list(k) if isinstance(k, range) else k for k in keys)
    if any(_is_advanced(k) for k in keys):
        return _advanced(t, keys)
    return ops.getitem_basic(t, normalize_basic_key(key, t.shape))


def _advanced(t: Tensor, keys: tuple) -> Tensor:
    """Integer-tensor/list indices mixed with slices and ints anywhere (``v[:, [-1]]``), torch's rule:
    ints select first; then the indexed dims are replaced by the broadcast index shape, in place
    when the indices are adjacent,
    in front otherwise. Done as basic slicing, a permute that brings the indexed dims first, a gather."""
    if any(k is None for k in keys):
        raise IndexError("None (a new axis) together with integer-tensor indices is not supported")
    if sum(1 for k in keys if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = sum(1 for k in keys if k is not Ellipsis)
    if n_real > t.ndim:
        raise IndexError(f"too many indices for tensor of dimension {t.ndim} (got {n_real})")
    full: list = []
    for k in keys:
        full.extend([slice(None)] * (t.ndim - n_real) if k is Ellipsis else [k])
    full.extend([slice(None)] * (t.ndim - len(full)))
    # torch (unlike NumPy) applies int indices first, as basic indexing: they only remove dims
    t = getitem(t, tuple(slice(None) if _is_advanced(k) else k for k in full))
    full = [k for k in full if not isinstance(k, int) or isinstance(k, bool)]
    adv = [i for i, k in enumerate(full) if _is_advanced(k)]
    if adv == list(range(len(adv))):
        return _gather(t, tuple(full[i] for i in adv))
    rest = [d for d in range(t.ndim) if d not in adv]
    out = _gather(t.permute(tuple(adv + rest)), tuple(full[i] for i in adv))
    b = out.ndim - len(rest)  # the broadcast index dims, now first
    if adv != list(range(adv[0], adv[0] + len(adv))):
        return out  # not adjacent: they stay in front
    at = adv[0]
    order = list(range(b, b + at)) + list(range(b)) + list(range(b + at, out.ndim))
    return out.permute(tuple(order))


def _as_index(k, device: str) -> Tensor:
    if isinstance(k, list):
        k = tensor(k, dtype=dt.int64, device=device)
    if k.dtype is dt.bool_:
        raise IndexError("boolean masks are supported only as the whole index (t[mask])")
    if k.dtype is dt.int32:  # torch accepts int (int32) indices too
        k = ops.cast(k, dt.int64)
    if k.dtype is not dt.int64:
        raise IndexError(f"tensors used as indices must be int64 (long), int32 or bool, got {k.dtype.name}")
    return k


def _gather(t: Tensor, keys: tuple) -> Tensor:
    """Integer-tensor indices on the leading dimensions, broadcast together (``x[rows, cols]``)."""
    k = 0
    while k < len(keys) and _is_advanced(keys[k]):
        k += 1
    rest = keys[k:]
    if any(_is_advanced(x) for x in rest) or any(x is None or x is Ellipsis for x in keys[:k]):
        raise IndexError("integer-tensor indices work on leading dimensions only (x[idx] or x[i, j, ...])")
    if k > t.ndim:
        raise IndexError(f"too many indices for tensor of dimension {t.ndim}")
    idx = [_as_index(x, t.device) for x in keys[:k]]
    flat = None
    for d, ix in enumerate(idx):
        n = t.shape[d]
        if ix.numel() and (ix.max().item() >= n or ix.min().item() < -n):
            raise IndexError(f"index out of bounds for dimension {d} with size {n}")
        ix = ops.where(ix < 0, ix + n, ix)
        flat = ix if flat is None else flat * n + ix
    rows = t.reshape((-1,) + t.shape[k:]) if k > 1 else t
    out = ops.index_select0(rows, flat)
    if rest:
        out = out[(slice(None),) * flat.ndim + tuple(rest)]
    return out


def _mask_select(t: Tensor, mask: Tensor) -> Tensor:
    if mask.shape != t.shape[: mask.ndim]:
        raise IndexError(f"mask of shape {mask.shape} does not match the indexed tensor's shape {t.shape}")
    positions = [i for i, m in enumerate(mask.reshape(-1).tolist()) if m]
    rows = t.reshape((mask.numel(),) + t.shape[mask.ndim :])  # not -1: ambiguous when a dim is 0
    return rows[tensor(positions, dtype=dt.int64, device=t.device)]


def setitem(t: Tensor, key, value) -> None:
    """``t[key] = value``: write into the indexed region of ``t`` (in place, shared with every view).

    Bumps ``t``'s version; recorded in the graph when ``t`` or ``value`` requires grad.
    """
    from puredl import inplace  # inplace writes through write_region below

    if isinstance(key, Tensor) and key.dtype is dt.bool_:
        if not isinstance(value, (int, float, bool)):
            raise TypeError("masked assignment takes a Python scalar value")
        inplace.check_leaf(t)
        if inplace.needs_graph(t, ()):
            inplace.rebase(t, lambda old: ops.cast(ops.where(key, value, old), t.dtype))
        else:
            inplace.write_all(t, ops.where(key, value, t))
        return
    keys = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, list) or (isinstance(k, Tensor) and k.ndim > 0) for k in keys):
        raise IndexError("setitem: assignment takes basic keys (ints, slices, None, ...) or a bool mask")
    nk = normalize_basic_key(key, t.shape)
    if not isinstance(value, (Tensor, int, float, bool)):
        value = tensor(value, dtype=t.dtype, device=t.device)
    if isinstance(value, Tensor):
        region = t._be.getitem(t._impl, nk)
        check_fits(tuple(region.shape), value.shape)
    inplace.check_leaf(t)
    if inplace.needs_graph(t, (value,)):
        inplace.rebase(t, lambda old: ops.index_put_basic(old, nk, value))
    else:
        write_region(t, nk, value)


def check_fits(target: tuple, shape: tuple) -> None:
    try:
        fits = broadcast_shapes("setitem", target, shape) == target
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"setitem: value of shape {shape} cannot be broadcast to {target}")


def write_region(t: Tensor, nk: tuple, value) -> None:
    """Write ``value`` (tensor or scalar) into ``t``'s region ``nk`` (a normalized basic key), not
    recorded; bumps the version counter that ``t`` shares with its views."""
    from puredl import accel

    if isinstance(value, Tensor):
        if value.device != t.device:
            value = value.to(t.device)
        accel.run_inplace("setitem", (t, value), "setitem", (nk,))
    else:
        accel.run_inplace("setitem", (t,), "setitem", (nk, value))
    bump_version(t)
