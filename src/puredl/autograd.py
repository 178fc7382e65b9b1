"""Reverse-mode autograd: the Function base, the iterative graph walk, no_grad and gradcheck.

A node holds its input tensors and whatever raw data its gradient rule needs, never its own
output tensor, so the graph has no reference cycles; backward drops both unless retained.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence

_grad_enabled = True

# The log of in-place changes, a chain of ``[cell, its version before the change, next]`` links
# ending in an empty one (``_changes``). A node keeps the link that was last when it was recorded,
# so ``node's link is _changes`` means nothing changed in place since, the one test on the hot path;
# otherwise the links after it name what changed and from which version (check_versions).
# tensor.bump_version appends to it.
_changes = [None, 0, None]


def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode:
    """Context manager and decorator that sets whether operations record the graph."""

    enabled = True

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False

    def __call__(self, fn: Callable) -> Callable:
        mode = type(self)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with mode():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):  # noqa: N801 - PyTorch's name
    """Disable graph recording: ``with puredl.no_grad(): ...`` or ``@puredl.no_grad()``."""

    enabled = False


class enable_grad(_GradMode):  # noqa: N801 - PyTorch's name
    """Re-enable graph recording inside a no_grad region."""

    enabled = True


class set_grad_enabled(_GradMode):  # noqa: N801 - PyTorch's name
    def __init__(self, mode: bool):
        self.enabled = bool(mode)


class Function:
    """One recorded operation. Subclasses define ``backward(grad) -> tuple`` aligned with ``inputs``.

    ``inputs`` are the input Tensors (the graph edges); ``saved`` is raw data the gradient rule
    needs. Both are dropped after backward unless the graph is retained.
    """

    __slots__ = ("inputs", "edges", "saved", "versions", "retained", "__weakref__")

    def __init__(self):
        self.inputs = ()
        self.edges = ()  # each input's node when this one was recorded (an in-place op may replace it later)
        self.saved = None
        self.versions = None  # (tensors backward reads, the last change-log link then, output's counter)
        self.retained = None  # weakref to an output tensor that called retain_grad()

    @property
    def name(self) -> str:
        """``Mul`` for a node that ran ``mul`` (shared op nodes say which op), else the class name."""
        op = getattr(self, "op", None)
        if isinstance(op, str):
            return "".join(part.capitalize() for part in op.split("_"))
        return type(self).__name__

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        """Public custom functions: ``MyFn.apply(x)`` with static forward/backward (see autograd_function)."""
        return _custom_apply(cls, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.name}>"


# runs a public custom Function; autograd_function (above this layer) installs it when imported
_custom_apply: Callable = None  # type: ignore[assignment]

_FREED = "freed"


def _topological_nodes(root: Function) -> list:
    """Nodes reachable from ``root``, each after every node that consumes its output."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        # mark on expansion, not on push: a node reached again deeper down must finish there first
        if id(node) in visited:
            continue
        visited.add(id(node))
        if node.inputs is _FREED:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or to use saved results after they "
                "were freed). Pass retain_graph=True to the first backward() if you need to go twice."
            )
        stack.append((node, True))
        for child in node.edges:
            if child is not None and id(child) not in visited:
                stack.append((child, False))
    order.reverse()
    return order


def run_backward(root, gradient, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into every leaf's ``.grad`` (called by ``Tensor.backward``)."""
    global _grad_enabled
    if root._node is None:
        if root.requires_grad:  # a leaf: its gradient is the seed itself
            _accumulate(root, gradient)
            return
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    prev, _grad_enabled = _grad_enabled, False
    try:
        grads = {id(root._node): gradient}
        for node in _topological_nodes(root._node):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            vs = node.versions
            if vs is not None and vs[1] is not _changes:  # something changed in place since: look closer
                check_versions(node)
            if node.retained is not None:
                out = node.retained()
                if out is not None:
                    out.grad = g.clone() if out.grad is None else out.grad + g
            in_grads = node.backward(g)
            for t, child, gi in zip(node.inputs, node.edges, in_grads):
                if gi is None:
                    continue
                if gi.shape != t.shape:
                    raise RuntimeError(f"{node.name}: gradient shape {gi.shape} != input shape {t.shape}")
                if child is None:
                    if t._rg and t._node is None:  # a leaf (still one: in-place ops may have rebased it)
                        _accumulate(t, gi)
                else:
                    key = id(child)
                    acc = grads.get(key)
                    grads[key] = gi if acc is None else acc + gi
            if not retain_graph:
                node.inputs = _FREED
                node.saved = node.versions = None
    finally:
        _grad_enabled = prev


def check_versions(node: Function) -> None:
    """Raise as torch does when a tensor this node's gradient reads was changed in place since."""
    saved, link, out_cell = node.versions
    first = {}  # each counter changed since the node was recorded: its version then
    while link[2] is not None:
        if id(link[0]) not in first:
            first[id(link[0])] = link[1]
        link = link[2]
    for x in saved:
        cell = _cell_of(x)
        if cell is not None and id(cell) in first:
            _version_error(node, x.dtype, x.shape, "an input", cell[0], first[id(cell)])
    if out_cell is not None and out_cell[0] != 0:
        impl, be = node.saved[0], node.saved[1]
        shape = tuple(impl.shape)
        dtype = impl.dtype if be.NAME == "pure" else be.dtype_of(impl)
        _version_error(node, dtype, shape, "output 0", out_cell[0], 0)


def _cell_of(t) -> list | None:
    """``t``'s version counter (a view without one of its own shares its base's), or None: never changed."""
    while t._vc is None:
        if t._view is None:
            return None
        t = t._view[0]
    return t._vc


def _version_error(node: Function, dtype, shape: tuple, which: str, version: int, expected: int):
    raise RuntimeError(
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [{dtype.name} {list(shape)}], which is {which} of {node.name}Backward, "
        f"is at version {version}; expected version {expected} instead. Hint: clone() the tensor "
        "before changing it, or change it after backward()"
    )


def _accumulate(leaf, g) -> None:
    if g.dtype is not leaf.dtype:
        g = g.to(leaf.dtype)
    # a fresh contiguous copy: g may be a broadcast view, or shared with another leaf or the caller,
    # and optimizers update .grad in place
    leaf._grad = g.clone() if leaf._grad is None else leaf._grad + g  # shape and dtype already match


def retain(node: Function, tensor) -> None:
    node.retained = weakref.ref(tensor)


def gradcheck(
    fn: Callable,
    inputs: Sequence,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Compare autograd gradients of ``fn(*inputs).sum()`` with central differences in float64.

    >>> import puredl as pd
    >>> x = pd.tensor([1.0, 2.0], dtype=pd.float64, requires_grad=True)
    >>> gradcheck(lambda t: (t * t).sum(), [x])
    True
    """
    from puredl import float64, no_grad

    xs = [x.detach().to(float64).requires_grad_(x.requires_grad) for x in inputs]
    out = fn(*xs)
    out.sum().backward()
    analytic = [x.grad.tolist() if x.grad is not None else None for x in xs]
    for i, x in enumerate(xs):
        if not x.requires_grad:
            continue
        flat = x.detach().reshape(-1)
        numeric = []
        for j in range(flat.numel()):
            orig = flat[j].item()
            with no_grad():
                flat[j] = orig + eps
                hi = fn(*[x if k != i else flat.reshape(x.shape) for k, x in enumerate(xs)]).sum().item()
                flat[j] = orig - eps
                lo = fn(*[x if k != i else flat.reshape(x.shape) for k, x in enumerate(xs)]).sum().item()
                flat[j] = orig
            numeric.append((hi - lo) / (2 * eps))
        got = _flatten(analytic[i]) if analytic[i] is not None else [0.0] * len(numeric)
        for j, (a, n) in enumerate(zip(got, numeric)):
            if abs(a - n) > atol + rtol * abs(n):
                if raise_exception:
                    raise AssertionError(
                        f"gradcheck: input {i} element {j}: analytic {a:.6g} vs numeric {n:.6g}"
                    )
                return False
    return True


def _flatten(v):
    if isinstance(v, list):
        out = []
        for x in v:
            out.extend(_flatten(x))
        return out
    return [v]
