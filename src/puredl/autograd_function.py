"""Custom differentiable functions: torch's ``autograd.Function`` protocol on puredl's graph.

Subclass :class:`puredl.autograd.Function` with ``@staticmethod forward(ctx, *args)`` and
``@staticmethod backward(ctx, *grad_outputs)``, then call ``MyFn.apply(*args)``. ``ctx``
carries ``save_for_backward``/``saved_tensors``, ``needs_input_grad`` and any attributes
the forward sets. ``forward`` runs without recording a graph; ``backward`` returns one
gradient (or None) per argument of ``forward``.

>>> import puredl as pd
>>> class Cube(pd.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         ctx.save_for_backward(x)
...         return x ** 3
...     @staticmethod
...     def backward(ctx, g):
...         (x,) = ctx.saved_tensors
...         return 3 * x ** 2 * g
>>> x = pd.tensor([2.0], requires_grad=True)
>>> Cube.apply(x).backward(); x.grad
tensor([12.])
"""

from __future__ import annotations

from typing import Any

from puredl import autograd


class FunctionCtx:
    """The ``ctx`` handed to ``forward`` and ``backward``."""

    def __init__(self, needs_input_grad: tuple[bool, ...]):
        self.needs_input_grad = needs_input_grad
        self.materialize_grads = True
        self.non_differentiable: set[int] = set()
        self._saved: tuple = ()

    def save_for_backward(self, *tensors: Any) -> None:
        """Keep tensors (or None) for ``backward``; read them back as ``ctx.saved_tensors``."""
        from puredl.tensor import Tensor

        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(
                    f"save_for_backward can only save variables, but argument {i} "
                    f"is of type {type(t).__name__}"
                )
        self._saved = tensors

    @property
    def saved_tensors(self) -> tuple:
        if self._saved is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved tensors "
                "after they have already been freed). Specify retain_graph=True if you need to."
            )
        return self._saved

    def mark_non_differentiable(self, *outputs: Any) -> None:
        """Outputs that get no gradient (e.g. indices); they come out with requires_grad=False."""
        self.non_differentiable.update(id(o) for o in outputs)

    def set_materialize_grads(self, value: bool) -> None:
        """Accepted; puredl always hands ``backward`` zeros for outputs that got no gradient
        (torch would hand None when this is False; code that checks for None works either way)."""
        self.materialize_grads = bool(value)

    def mark_dirty(self, *tensors: Any) -> None:
        """Accepted for torch compatibility (in-place forwards); puredl records nothing extra."""


class _CustomNode(autograd.Function):
    """The graph node of one ``apply`` call: hands the output gradients to the user's backward."""

    __slots__ = ("fn", "ctx", "positions", "n_args", "slots")

    @property
    def name(self) -> str:
        return f"{self.fn.__name__}Backward"

    def backward(self, grad):
        from puredl.creation import zeros

        if self.slots is None:
            grads = (grad,)
        else:  # the gradient of the joint flat output, cut back into one per output
            grads, start = [], 0
            for kind, shape, n, dtype in self.slots:
                if kind == "diff":
                    grads.append(grad[start : start + n].reshape(shape))
                    start += n
                else:  # torch hands zeros for non-differentiable tensors, None for other outputs
                    grads.append(zeros(shape, dtype=dtype) if kind == "zeros" else None)
        result = self.fn.backward(self.ctx, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) < self.n_args:
            raise RuntimeError(
                f"function {self.name} returned an incorrect number of gradients "
                f"(expected {self.n_args}, got {len(result)})"
            )
        if any(g is not None for g in result[self.n_args :]):
            raise RuntimeError(
                f"function {self.name} returned an incorrect number of gradients "
                f"(expected {self.n_args}, got {len(result)})"
            )
        out = []
        for pos, t in zip(self.positions, self.inputs):
            g = result[pos]
            if g is not None and not hasattr(g, "shape"):
                g = zeros(t.shape, dtype=t.dtype) + g  # a Python number broadcast, as torch allows
            out.append(g)
        self.ctx._saved = None
        return tuple(out)


def apply(fn: type, *args: Any, **kwargs: Any) -> Any:
    """``fn.apply(*args)``: run ``fn.forward`` and, when an input needs grad, record a node."""
    from puredl.ops import _record
    from puredl.tensor import Tensor

    positions = tuple(i for i, a in enumerate(args) if isinstance(a, Tensor))
    tensors = tuple(args[i] for i in positions)
    needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
    ctx = FunctionCtx(needs)
    with autograd.no_grad():
        if _overrides(fn, "setup_context"):
            output = fn.forward(*args, **kwargs)
            fn.setup_context(ctx, args, output)
        else:
            output = fn.forward(ctx, *args, **kwargs)
    single = not isinstance(output, tuple)
    outputs = (output,) if single else output
    outputs = tuple(o.detach() if isinstance(o, Tensor) else o for o in outputs)  # fresh graph ends
    if not (autograd.is_grad_enabled() and any(needs)):
        return outputs[0] if single else outputs
    diff = [
        i
        for i, o in enumerate(outputs)
        if isinstance(o, Tensor)
        and o.dtype.is_floating_point
        and id(output if single else output[i]) not in ctx.non_differentiable
    ]
    if not diff:  # integer outputs, or all marked non-differentiable: nothing to record
        return outputs[0] if single else outputs
    node = _CustomNode()
    node.fn, node.ctx, node.n_args = fn, ctx, len(args)
    node.positions = positions
    if len(diff) == 1 and single:
        node.slots = None
        return _record(node, tensors, outputs[0])
    return _record_many(node, tensors, outputs, diff, single)


def _record_many(node: _CustomNode, tensors: tuple, outputs: tuple, diff: list[int], single: bool) -> Any:
    """Several differentiable outputs: one joint flat tensor carries the node; each output is a
    recorded slice of it, so the engine sums their gradients into the joint one."""
    from puredl.ops import _record, cat
    from puredl.tensor import Tensor

    parts = [outputs[i] for i in diff]
    if len({p.dtype for p in parts}) > 1:
        raise TypeError(
            "autograd.Function: differentiable outputs of different float dtypes are not supported"
        )
    node.slots = tuple(
        ("diff", o.shape, o.numel(), o.dtype)
        if i in diff
        else ("zeros", o.shape, 0, o.dtype)
        if isinstance(o, Tensor)
        else ("none", None, 0, None)
        for i, o in enumerate(outputs)
    )
    with autograd.no_grad():
        joint = cat([p.reshape(-1) for p in parts])
    joint = _record(node, tensors, joint)
    out = list(outputs)
    start = 0
    for i in diff:
        n = outputs[i].numel()
        out[i] = joint[start : start + n].reshape(outputs[i].shape)
        start += n
    return out[0] if single else tuple(out)


def _overrides(fn: type, name: str) -> bool:
    return any(name in vars(k) for k in fn.__mro__ if k is not autograd.Function and k is not object)


autograd._custom_apply = apply  # Function.apply runs here; the graph layer does not import upward
