"""In-place changes, as torch makes them: the storage itself changes, its version counter goes up,
and when autograd is watching, the change is recorded so that gradients stay right.

A recorded in-place change rebases history: the tensor's new value is computed from a copy of
its old value (which keeps the old history), written into its storage, and the tensor takes the
new value's node. A change to a view made by basic indexing rebases the view's base the same way
(torch's CopySlices). Nodes recorded earlier point at the old history (``Function.edges``), and
tensors they saved for backward carry versions, so a stale saved value makes backward raise.
"""

from __future__ import annotations

from collections.abc import Callable

from puredl import autograd, ops
from puredl import dtypes as dt
from puredl.tensor import Tensor

# torch's names in its "can't be cast" message
_TORCH_NAMES = {
    "float32": "Float",
    "float64": "Double",
    "int64": "Long",
    "int32": "Int",
    "int16": "Short",
    "uint8": "Byte",
    "bool": "Bool",
}


def check_leaf(t: Tensor) -> None:
    """Refuse, as torch does, to change a leaf that requires grad (or a view of one) while recording."""
    if not autograd._grad_enabled:
        return
    if t._rg and t._node is None:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
    base = t
    view = base._view
    while view is not None:
        base = view[0]
        view = base._view
    if base is not t and base._rg and base._node is None:
        raise RuntimeError(
            "a view of a leaf Variable that requires grad is being used in an in-place operation."
        )


def needs_graph(t: Tensor, others: tuple) -> bool:
    """Whether changing ``t`` with ``others`` must be recorded (recording on, something requires grad)."""
    if not autograd._grad_enabled:
        return False
    return t._rg or any(isinstance(o, Tensor) and o._rg for o in others)


def update(t: Tensor, fn: Callable, *others) -> Tensor:
    """``t``'s values become ``fn(t, *others)`` in place (``add_``, ``mul_``, ``+=``, ...); returns ``t``."""
    check_leaf(t)
    if needs_graph(t, others):

        def new_value(old: Tensor) -> Tensor:
            return _fit(t, fn(old, *[old if o is t else o for o in others]))

        rebase(t, new_value)
    else:
        write_all(t, _fit(t, fn(t, *others)))
    return t


def _fit(t: Tensor, new: Tensor) -> Tensor:
    """``new`` as ``t``'s dtype, or torch's error when the result does not fit ``t``."""
    if new.shape != t.shape:
        raise RuntimeError(
            f"output with shape {list(t.shape)} doesn't match the broadcast shape {list(new.shape)}"
        )
    if new.dtype is not t.dtype:
        narrowing = (new.dtype.is_floating_point and not t.dtype.is_floating_point) or (
            t.dtype is dt.bool_ and new.dtype is not dt.bool_
        )
        if narrowing:
            src, dst = (_TORCH_NAMES.get(d.name, d.name) for d in (new.dtype, t.dtype))
            raise RuntimeError(f"result type {src} can't be cast to the desired output type {dst}")
        new = ops.cast(new, t.dtype)
    return new


def rebase(t: Tensor, new_value: Callable[[Tensor], Tensor]) -> None:
    """Record an in-place change: ``t`` takes the value and history of ``new_value(old)``, where
    ``old`` is a copy of ``t`` that keeps ``t``'s previous history."""
    view = t._view
    if view is not None:
        base, kind, arg = view
        redo, undo = _view_maps(t, base, kind, arg)
        rebase(base, lambda old_base: undo(old_base, new_value(redo(old_base))))
        fresh = redo(base)  # t is again a view of the (now rebased) base: take that view's history
        t._node, t._rg = fresh._node, fresh._rg
        return
    new = new_value(ops.clone(t))
    write_all(t, new)
    t._node, t._rg = new._node, new._rg


def _view_maps(view: Tensor, base: Tensor, kind: str, arg) -> tuple:
    """(redo, undo): ``redo(b)`` is the view of ``b``; ``undo(b, v)`` is ``b`` with the view set to ``v``."""
    if kind == ops.INDEX_VIEW:
        return (lambda b: ops.getitem_basic(b, arg)), (lambda b, v: ops.index_put_basic(b, arg, v))
    if kind == ops.RESHAPE_VIEW:  # a reshape view covers all of the base: the new base is the new view
        return (lambda b: ops.reshape(b, view.shape)), (lambda b, v: ops.reshape(v, base.shape))
    if kind == ops.PERMUTE_VIEW:
        inverse = [0] * len(arg)
        for i, d in enumerate(arg):
            inverse[d] = i
        return (lambda b: ops.permute(b, arg)), (lambda b, v: ops.permute(v, tuple(inverse)))
    raise RuntimeError(
        "unsupported operation: an in-place change to an expanded view (several elements share one memory "
        "location); clone() it first"
    )


def write_all(t: Tensor, new: Tensor) -> None:
    """Write ``new`` (same shape) into ``t``'s storage, not recorded; bumps the version."""
    from puredl.indexing import normalize_basic_key, write_region

    write_region(t, normalize_basic_key(Ellipsis, t.shape), new)
