"""Every differentiable op, defined once: its kernel call and its gradient rule side by side.

Gradient rules are written with other tensor ops (they run with recording off), so they work
unchanged on any backend. Broadcasting is undone in one place: ``unbroadcast``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from puredl import accel, autograd
from puredl import dtypes as dt
from puredl.autograd import Function
from puredl.backends import pure as _pure
from puredl.shapes import broadcast_shapes, infer_shape, normalize_dim, normalize_dims
from puredl.shapes import numel as _numel
from puredl.tensor import Tensor, ValuesIndices, _wrap

ELEMENTWISE, MATMUL, REDUCTION, ACTIVATION, SHAPE = (
    "elementwise",
    "matmul",
    "reduction",
    "activation",
    "shape",
)


def _record(
    node: Function | type[Function], inputs: tuple, out: Tensor, saved: tuple = (), saved_out: bool = False
) -> Tensor:
    """Make ``node`` the history of ``out`` when any input requires grad and recording is on.

    ``node`` may be a node class: it is then made only when recorded (gradient rules run with
    recording off, and would make one for nothing at every op).

    ``saved``: the inputs the gradient rule reads (and ``out`` itself when ``saved_out``); their
    versions are remembered, so that backward refuses to run after an in-place change to them.
    """
    if autograd._grad_enabled:
        for t in inputs:
            if t._rg:
                if isinstance(node, type):
                    node = node()
                node.inputs = inputs
                if len(inputs) == 1:
                    node.edges = (inputs[0]._node,)
                elif len(inputs) == 2:
                    node.edges = (inputs[0]._node, inputs[1]._node)
                elif len(inputs) == 3:
                    node.edges = (inputs[0]._node, inputs[1]._node, inputs[2]._node)
                else:
                    node.edges = tuple([x._node for x in inputs])
                if saved or saved_out:
                    # the last in-place change so far: backward checks nothing changed since
                    cell = None
                    if saved_out:
                        out._vc = cell = [0]  # a fresh result: its counter starts here
                    node.versions = (saved, autograd._changes, cell)
                out._rg = True
                out._node = node
                break
    return out


def unbroadcast(grad: Tensor, shape: tuple) -> Tensor:
    """Sum ``grad`` over the dimensions that broadcasting added or stretched, back to ``shape``."""
    if grad.shape == shape:
        return grad
    lead = len(grad.shape) - len(shape)
    dims = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    return reduce("sum", grad, dims, keepdim=True).reshape(shape)


# =========================================================================== elementwise, two tensors


class BinaryOp:
    """One elementwise op of two operands, declared once (kernels: ``binary`` and ``binary_scalar``).

    ``operators``: the Python operator methods that run it on a Tensor (``x + y``, ``2 + x``).
    ``dtype``: "promote" (torch's promotion), "float" (integers compute in the default float
    dtype) or "bool" (comparisons: not differentiable). ``grad_a(g, a, b, out)`` and
    ``grad_b(...)``: the gradient for each side, written with other ops; either operand may be a
    Python scalar, so one rule serves tensor-tensor and tensor-scalar. ``reads_a``/``reads_b``:
    what each rule reads (bits: 1 ``a``, 2 ``b``, 4 ``out``), so backward can check versions.
    """

    __slots__ = ("dtype", "grad_a", "grad_b", "reads_a", "reads_b", "doc", "bool_ok", "operators")

    def __init__(
        self, dtype, grad_a, grad_b, reads_a: int, reads_b: int, doc: str, bool_ok: bool = True, operators=()
    ):
        self.dtype, self.grad_a, self.grad_b, self.doc, self.bool_ok = dtype, grad_a, grad_b, doc, bool_ok
        self.reads_a, self.reads_b = reads_a, reads_b
        self.operators = operators  # Python's operator method and its reflected form: ("__add__", "__radd__")


def _pow_grad_base(g, a, b, out):  # torch: 0 where the exponent is 0
    if not isinstance(b, Tensor):
        return g * b * a ** (b - 1) if b != 0 else g * 0.0
    return where(binary("eq", b, 0.0), 0.0, g * b * a ** (b - 1))


def _pow_grad_exponent(g, a, b, out):  # torch: 0 where the base is 0 and the exponent >= 0
    if not isinstance(a, Tensor):
        return g * out * math.log(a) if a > 0 else g * 0.0
    zero = binary("logical_and", binary("eq", a, 0.0), binary("ge", b, 0.0))
    return where(zero, 0.0, g * out * unary("log", a))


def _share_of_a(g, a, b, largest: bool):  # maximum/minimum: ties share the gradient equally, like torch
    wins = binary("gt" if largest else "lt", a, b)
    return where(binary("eq", a, b), 0.5, cast(wins, g.dtype))


def _no_floor_divide_grad(g, a, b, out):  # torch records the op and raises in backward
    raise RuntimeError("the derivative for 'floor_divide' is not implemented (as in torch)")


def _compare(doc: str, operator: str | None = None, reflected: str | None = None) -> BinaryOp:
    operators = (operator, reflected) if reflected else (operator,) if operator else ()
    return BinaryOp("bool", None, None, 0, 0, doc, operators=operators)


# the table: adding a plain binary op is one entry here and one kernel per backend (``binary`` and
# ``binary_scalar``); its function here, its Tensor method and its package export come from it
BINARY_OPS = {
    "add": BinaryOp(
        "promote",
        lambda g, a, b, out: g,
        lambda g, a, b, out: g,
        0,
        0,
        "a + b",
        operators=("__add__", "__radd__"),
    ),
    "sub": BinaryOp(
        "promote",
        lambda g, a, b, out: g,
        lambda g, a, b, out: -g,
        0,
        0,
        "a - b",
        bool_ok=False,
        operators=("__sub__", "__rsub__"),
    ),
    "mul": BinaryOp(
        "promote",
        lambda g, a, b, out: g * b,
        lambda g, a, b, out: g * a,
        2,
        1,
        "a * b",
        operators=("__mul__", "__rmul__"),
    ),
    "div": BinaryOp(
        "float",
        lambda g, a, b, out: g / b,
        lambda g, a, b, out: -g * a / (b * b),
        2,
        3,
        "a / b",
        operators=("__truediv__", "__rtruediv__"),
    ),
    "pow": BinaryOp(
        "promote", _pow_grad_base, _pow_grad_exponent, 3, 7, "a ** b", operators=("__pow__", "__rpow__")
    ),
    "floor_divide": BinaryOp(
        "promote",
        _no_floor_divide_grad,
        _no_floor_divide_grad,
        0,
        0,
        "a // b (rounded toward -inf)",
        bool_ok=False,
        operators=("__floordiv__", "__rfloordiv__"),
    ),
    "maximum": BinaryOp(
        "promote",
        lambda g, a, b, out: g * _share_of_a(g, a, b, True),
        lambda g, a, b, out: g * (1.0 - _share_of_a(g, a, b, True)),
        3,
        3,
        "the larger of a and b",
    ),
    "minimum": BinaryOp(
        "promote",
        lambda g, a, b, out: g * _share_of_a(g, a, b, False),
        lambda g, a, b, out: g * (1.0 - _share_of_a(g, a, b, False)),
        3,
        3,
        "the smaller of a and b",
    ),
    "eq": _compare("a == b", "__eq__"),
    "ne": _compare("a != b", "__ne__"),
    "lt": _compare("a < b", "__lt__"),
    "le": _compare("a <= b", "__le__"),
    "gt": _compare("a > b", "__gt__"),
    "ge": _compare("a >= b", "__ge__"),
    "logical_and": _compare("a and b (a bool tensor)", "__and__", "__rand__"),
    "logical_or": _compare("a or b (a bool tensor)", "__or__", "__ror__"),
}


class BinaryOpNode(Function):
    """The recorded node of a ``BINARY_OPS`` entry; ``scalar`` is ``(value, is_left)`` when one
    operand was a Python number."""

    __slots__ = ("op", "scalar")

    def backward(self, g):
        spec = BINARY_OPS[self.op]
        out = _wrap(*self.saved) if self.saved is not None else None
        if self.scalar is not None:
            (x,) = self.inputs
            s, left = self.scalar
            return (spec.grad_b(g, s, x, out) if left else spec.grad_a(g, x, s, out),)
        a, b = self.inputs
        ga = unbroadcast(spec.grad_a(g, a, b, out), a.shape) if a._rg else None
        gb = unbroadcast(spec.grad_b(g, a, b, out), b.shape) if b._rg else None
        return ga, gb


def binary(op: str, a, b) -> Tensor:
    """Run the table op ``op`` on ``a`` and ``b`` (NumPy broadcasting; either may be a Python scalar):
    dtype rule, select a backend, run its kernel, wrap, record."""
    if not isinstance(b, Tensor):
        if not isinstance(a, Tensor):
            raise TypeError(
                f"{op}: expected at least one Tensor, got {type(a).__name__} and {type(b).__name__}"
            )
        return _scalar_op(op, a, b, reverse=False)
    if not isinstance(a, Tensor):
        return _scalar_op(op, b, a, reverse=True)
    spec = BINARY_OPS[op]
    ad, bd = a.dtype, b.dtype
    if not spec.bool_ok and (ad is dt.bool_ or bd is dt.bool_):
        raise TypeError(f"{op}: a bool tensor is not supported (as in torch); use ~ or .long()")
    common = ad if ad is bd else dt.promote_tensors(ad, len(a.shape), bd, len(b.shape))
    if spec.dtype == "bool":
        out_dtype = dt.bool_
    else:
        out_dtype = common
        if spec.dtype == "float" and not common.is_floating_point:
            out_dtype = common = dt.get_default_dtype()
    if ad is not common:
        a = cast(a, common)
    if bd is not common:
        b = cast(b, common)
    work = _numel(a.shape) if a.shape == b.shape else _numel(broadcast_shapes(op, a.shape, b.shape))
    be, out_impl = accel.run(op, ELEMENTWISE, work, (a, b), "binary", (op,), out_dtype)
    out = _wrap(out_impl, be)
    if spec.grad_a is None or not ((a._rg or b._rg) and autograd._grad_enabled):
        return out  # nothing to record (gradient rules run here with recording off: the common case)
    node = BinaryOpNode()
    node.op, node.scalar = op, None
    reads = (spec.reads_a if a._rg else 0) | (spec.reads_b if b._rg else 0)
    if not reads:
        return _record(node, (a, b), out)
    if reads & 4:
        node.saved = (out_impl, be)
    saved = ((a,) if reads & 1 else ()) + ((b,) if reads & 2 else ())
    return _record(node, (a, b), out, saved, saved_out=bool(reads & 4))


def _scalar_op(op: str, a: Tensor, s, reverse: bool) -> Tensor:
    """``a op s`` (or ``s op a`` when ``reverse``): the same table entry, the scalar kernel."""
    if isinstance(s, Tensor) or not isinstance(s, (int, float, bool)):
        raise TypeError(f"{op}: unsupported operand {type(s).__name__}")
    spec = BINARY_OPS[op]
    if not spec.bool_ok and (a.dtype is dt.bool_ or isinstance(s, bool)):
        raise TypeError(f"{op}: a bool operand is not supported (as in torch); use ~ or .long()")
    if spec.dtype == "bool":
        out_dtype = dt.bool_
    else:
        out_dtype = dt.promote_scalar(a.dtype, s)
        if spec.dtype == "float" and not out_dtype.is_floating_point:
            out_dtype = dt.get_default_dtype()
        if out_dtype is not a.dtype:
            a = cast(a, out_dtype)
        if out_dtype.is_floating_point:
            s = float(s)
    be, out_impl = accel.run(
        op, ELEMENTWISE, _numel(a.shape), (a,), "binary_scalar", (op,), s, reverse, out_dtype
    )
    out = _wrap(out_impl, be)
    if spec.grad_a is None or not (a._rg and autograd._grad_enabled):
        return out
    node = BinaryOpNode()
    node.op, node.scalar = op, (s, reverse)
    reads = spec.reads_b if reverse else spec.reads_a
    if reads & 4:
        node.saved = (out_impl, be)
    reads_tensor = reads & (2 if reverse else 1)
    return _record(node, (a,), out, (a,) if reads_tensor else (), saved_out=bool(reads & 4))


def _binary_function(op: str) -> Callable:
    def fn(input, other) -> Tensor:  # noqa: A002 - torch's argument names
        return binary(op, input, other)

    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"{BINARY_OPS[op].doc}, elementwise with broadcasting (torch.{op})."
    return fn


# ops.add, ops.eq, ... for every table op (Tensor.add, x + y: puredl.tensor_methods)
globals().update({op: _binary_function(op) for op in BINARY_OPS})


# =========================================================================== elementwise, one tensor


class UnaryOp:
    """One elementwise op of one tensor, declared once (the backends' ``unary`` kernel runs it).

    ``dtype``: "same", "float" (integer input computes in the default float dtype) or "bool".
    ``saves``: what the gradient rule reads, "input", "output" or "" (its version is checked).
    ``grad(g, a, out)``: the gradient with respect to ``a``, written with other ops; None when the
    op is not differentiable.
    """

    __slots__ = ("category", "dtype", "saves", "grad", "doc", "operators")  # slots: read on every op

    def __init__(
        self, category: str, dtype: str, saves: str, grad: Callable | None, doc: str, operators: tuple = ()
    ):
        self.category, self.dtype, self.saves, self.grad, self.doc = category, dtype, saves, grad, doc
        self.operators = operators  # Python's operator methods that run it on a Tensor: ("__neg__",)


def _relu_grad(g: Tensor, a: Tensor, out) -> Tensor:
    # one kernel, torch's threshold_backward: NaN lets the gradient through
    be, out_impl = accel.run("relu_backward", ACTIVATION, _numel(a.shape), (g, a), "relu_backward", ())
    return _wrap(out_impl, be)


def _sign_grad(g: Tensor, a: Tensor, out) -> Tensor:
    # flat almost everywhere: zeros, as torch (not g * 0, which keeps NaN)
    return _wrap(g._be.full(g.shape, 0, g.dtype), g._be)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# the table: adding a plain unary op is one entry here and one ``unary`` kernel per backend;
# its function here, its Tensor method and its package export are made from this entry
UNARY_OPS = {
    "neg": UnaryOp(ELEMENTWISE, "same", "", lambda g, a, out: -g, "-x", ("__neg__",)),
    "abs": UnaryOp(ELEMENTWISE, "same", "input", lambda g, a, out: g * unary("sign", a), "|x|", ("__abs__",)),
    "sign": UnaryOp(ELEMENTWISE, "same", "", _sign_grad, "-1, 0 or 1 by the sign of x"),
    "round": UnaryOp(ELEMENTWISE, "same", "", _sign_grad, "x rounded to the nearest integer, halves to even"),
    "exp": UnaryOp(ELEMENTWISE, "float", "output", lambda g, a, out: g * out, "e**x"),
    "log": UnaryOp(ELEMENTWISE, "float", "input", lambda g, a, out: g / a, "natural logarithm"),
    "sqrt": UnaryOp(ELEMENTWISE, "float", "output", lambda g, a, out: g / (2.0 * out), "square root"),
    "sin": UnaryOp(ELEMENTWISE, "float", "input", lambda g, a, out: g * unary("cos", a), "sine"),
    "cos": UnaryOp(ELEMENTWISE, "float", "input", lambda g, a, out: -g * unary("sin", a), "cosine"),
    "erf": UnaryOp(  # d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
        ELEMENTWISE,
        "float",
        "input",
        lambda g, a, out: g * unary("exp", -a * a) * _TWO_OVER_SQRT_PI,
        "the error function",
    ),
    "logical_not": UnaryOp(ELEMENTWISE, "bool", "", None, "elementwise not (a bool tensor)", ("__invert__",)),
    "relu": UnaryOp(ACTIVATION, "same", "input", _relu_grad, "max(x, 0)"),
    "sigmoid": UnaryOp(
        ACTIVATION, "float", "output", lambda g, a, out: g * out * (1.0 - out), "1 / (1 + e**-x)"
    ),
    "tanh": UnaryOp(
        ACTIVATION, "float", "output", lambda g, a, out: g * (1.0 - out * out), "hyperbolic tangent"
    ),
    "gelu": UnaryOp(  # d/dx x*Phi(x) = Phi(x) + x*phi(x)
        ACTIVATION,
        "float",
        "input",
        lambda g, a, out: (
            g * (0.5 * (1.0 + unary("erf", a * _INV_SQRT_2)) + a * unary("exp", -0.5 * a * a) * _INV_SQRT_2PI)
        ),
        "x * Phi(x), the exact (erf) GELU",
    ),
}


class UnaryOpNode(Function):
    """The recorded node of a ``UNARY_OPS`` entry (``op`` names it; its rule is the table's)."""

    __slots__ = ("op",)

    def backward(self, g):
        out = _wrap(*self.saved) if self.saved is not None else None
        return (UNARY_OPS[self.op].grad(g, self.inputs[0], out),)


def unary(op: str, a: Tensor) -> Tensor:
    """Run the table op ``op`` on ``a``: select a backend, run its kernel, wrap, record."""
    spec = UNARY_OPS[op]
    out_dtype = a.dtype
    if spec.dtype == "float":
        if not out_dtype.is_floating_point:
            out_dtype = dt.get_default_dtype()
            a = cast(a, out_dtype)
    elif spec.dtype == "bool":
        out_dtype = dt.bool_
    be, out_impl = accel.run(op, spec.category, _numel(a.shape), (a,), "unary", (op,), out_dtype)
    out = _wrap(out_impl, be)
    if spec.grad is None or not (a._rg and autograd._grad_enabled):
        return out
    node = UnaryOpNode()
    node.op = op
    if spec.saves == "output":
        node.saved = (out_impl, be)
        return _record(node, (a,), out, saved_out=True)
    return _record(node, (a,), out, (a,) if spec.saves == "input" else ())


def _unary_function(op: str) -> Callable:
    def fn(input: Tensor) -> Tensor:  # noqa: A002 - torch's argument name
        return unary(op, input)

    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"{UNARY_OPS[op].doc}, elementwise (torch.{op})."
    return fn


# ops.exp, ops.relu, ... for every table op (Tensor.exp, -x: puredl.tensor_methods)
globals().update({op: _unary_function(op) for op in UNARY_OPS})


class Clamp(Function):
    __slots__ = ("lo", "hi")

    def backward(self, g):
        (a,) = self.inputs
        keep = ones_mask = None
        if self.lo is not None:
            keep = binary("ge", a, self.lo)
        if self.hi is not None:
            ones_mask = binary("le", a, self.hi)
            keep = ones_mask if keep is None else binary("logical_and", keep, ones_mask)
        return (g * cast(keep, g.dtype),)


def clamp(a: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - torch's names
    if min is None and max is None:
        raise ValueError("clamp: at least one of min or max must be given")
    out_dtype = a.dtype
    for bound in (min, max):  # an int tensor clamped to 0.5 becomes float, as in torch
        if bound is not None:
            out_dtype = dt.promote_scalar(out_dtype, bound)
    if out_dtype is not a.dtype:
        a = cast(a, out_dtype)
    be, out_impl = accel.run("clamp", ELEMENTWISE, _numel(a.shape), (a,), "clamp", (), min, max)
    node = Clamp()
    node.lo, node.hi = min, max
    return _record(node, (a,), _wrap(out_impl, be), (a,))


class Where(Function):
    def backward(self, g):
        _, a, b = self.inputs
        zero = 0.0
        cond = self.saved
        ga = unbroadcast(where(cond, g, zero), a.shape) if a._rg else None
        gb = unbroadcast(where(cond, zero, g), b.shape) if b._rg else None
        return None, ga, gb


def _constant(value, dtype: dt.DType, like: Tensor) -> Tensor:
    """A 0-d tensor of ``value`` on ``like``'s device (on the CPU, pure storage, as the factories make)."""
    be = _pure if like._be is _pure or like.device == "cpu" else like._be
    return _wrap(be.full((), value, dtype), be)


def where(cond: Tensor, a, b) -> Tensor:
    """Elements of ``a`` where ``cond`` is true, else of ``b`` (either may be a Python scalar)."""
    # a Python scalar becomes a 0-d tensor of the dtype it would promote its partner to
    if not isinstance(a, Tensor):
        a = _constant(a, dt.promote_scalar(b.dtype if isinstance(b, Tensor) else dt.bool_, a), cond)
    if not isinstance(b, Tensor):
        b = _constant(b, dt.promote_scalar(a.dtype, b), cond)
    out_dtype = dt.promote_tensors(a.dtype, a.ndim, b.dtype, b.ndim)
    shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape, a.shape), b.shape)
    if cond.dtype is not dt.bool_:
        cond = cast(cond, dt.bool_)
    be, out_impl = accel.run("where", ELEMENTWISE, _numel(shape), (cond, a, b), "where", (), out_dtype)
    node = Where()
    node.saved = cond
    return _record(node, (cond, a, b), _wrap(out_impl, be), (cond,))


# =========================================================================== matmul


class Matmul(Function):
    def backward(self, g):
        a, b = self.inputs
        ga = unbroadcast(matmul(g, b.transpose(-1, -2)), a.shape) if a._rg else None
        gb = unbroadcast(matmul(a.transpose(-1, -2), g), b.shape) if b._rg else None
        return ga, gb


def matmul(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002 - torch's argument names
    """``torch.matmul`` semantics: 1-D, 2-D, batched with broadcast batch dimensions."""
    a, b = input, other
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("matmul: both operands must be Tensors")
    na, nb = len(a.shape), len(b.shape)  # (not .ndim: a property, and this runs per op)
    if na == 0 or nb == 0:
        raise ValueError(
            f"matmul: both arguments need at least 1 dimension, got shapes {a.shape} and {b.shape}"
        )
    k_b = b.shape[-2] if nb > 1 else b.shape[0]
    if a.shape[-1] != k_b:  # checked before 1-D operands are promoted, so the message shows the user's shapes
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned ({a.shape[-1]} != {k_b})")
    if na == 1 and nb == 1:
        return matmul(a.reshape(1, -1), b.reshape(-1, 1)).reshape(())
    if na == 1:
        return matmul(a.unsqueeze(0), b).squeeze(-2)
    if nb == 1:
        return matmul(a, b.unsqueeze(-1)).squeeze(-1)
    out_dtype = dt.promote(a.dtype, b.dtype)
    if a.dtype is not out_dtype:
        a = cast(a, out_dtype)
    if b.dtype is not out_dtype:
        b = cast(b, out_dtype)
    try:
        batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dims of shapes {a.shape} and {b.shape} do not broadcast") from None
    work = _numel(batch) * a.shape[-2] * a.shape[-1] * b.shape[-1]  # multiply-adds
    be, out_impl = accel.run("matmul", MATMUL, work, (a, b), "matmul", (), out_dtype)
    saved = ((b,) if a._rg else ()) + ((a,) if b._rg else ())
    return _record(Matmul, (a, b), _wrap(out_impl, be), saved)


class Linear(Function):
    def backward(self, g):
        x, w = self.inputs[0], self.inputs[1]
        g2, x2 = g, x
        if g.ndim != 2:  # (..., out) and (..., in) as (rows, out) and (rows, in); 1-D is one row
            rows = _numel(g.shape[:-1])
            g2, x2 = g.reshape(rows, w.shape[0]), x.reshape(rows, w.shape[1])
        gx = matmul(g, w) if x._rg else None
        gw = matmul(g2.transpose(0, 1), x2) if w._rg else None
        gb = None
        if len(self.inputs) == 3 and self.inputs[2]._rg:
            gb = reduce("sum", g2, 0)
        return (gx, gw) if gb is None else (gx, gw, gb)


def _linear_reads(x: Tensor, w: Tensor) -> tuple:
    """What linear's gradients read, as torch: x's gradient reads w, w's gradient reads x."""
    if x._rg:
        return (w, x) if w._rg else (w,)
    return (x,) if w._rg else ()


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``x @ w.T + b`` as one node (one addmm on torch): x (..., in), w (out, in), b (out,) or None."""
    if not isinstance(x, Tensor) or not isinstance(w, Tensor) or not (b is None or isinstance(b, Tensor)):
        raise TypeError("linear: input, weight and bias must be Tensors (bias may be None)")
    if x.ndim == 0 or w.ndim != 2 or (b is not None and b.shape != (w.shape[0],)):
        out = matmul(x, w.transpose(0, 1) if w.ndim == 2 else w)  # matmul's rules and errors
        return out if b is None else out + b
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear: input {x.shape} has {x.shape[-1]} features, weight {w.shape} expects {w.shape[1]}"
        )
    dtype = dt.promote(x.dtype, w.dtype) if b is None else dt.promote(dt.promote(x.dtype, w.dtype), b.dtype)
    # cast as recorded ops, so that each gradient comes back in its input's dtype
    x = x if x.dtype is dtype else cast(x, dtype)
    w = w if w.dtype is dtype else cast(w, dtype)
    if b is not None and b.dtype is not dtype:
        b = cast(b, dtype)
    work = _numel(x.shape) * w.shape[0]  # multiply-adds
    if b is None:
        be, out_impl = accel.run("linear", MATMUL, work, (x, w), "linear", (), None, dtype)
        return _record(Linear, (x, w), _wrap(out_impl, be), _linear_reads(x, w))
    be, out_impl = accel.run("linear", MATMUL, work, (x, w, b), "linear", (), dtype)
    return _record(Linear, (x, w, b), _wrap(out_impl, be), _linear_reads(x, w))


# =========================================================================== reductions


class ReduceOp:
    """One reduction over a set of dimensions, declared once (the backends' ``reduce`` kernel runs it).

    ``dtype``: "sum" (integers and bool reduce into int64, as torch's sum and prod), "float" (a
    floating point input only: mean) or "same" (amax, amin). A ``dtype=`` argument overrides it.
    ``saves``: what the gradient rule reads, "" or "both" (input and output; their versions are
    checked). ``grad(g, a, out, dims)``: the gradient with respect to ``a``, written with other ops;
    ``g`` and ``out`` come with the reduced dimensions kept (size 1), so they broadcast against ``a``.
    ``kernel``: the backends' kernel, ``reduce`` (called with the op's name first) unless the op
    has one of its own (sum: ``reduce_sum``, a call shorter on the hottest reduction).
    """

    __slots__ = ("dtype", "saves", "grad", "doc", "kernel", "head")

    def __init__(self, dtype: str, saves: str, grad: Callable, doc: str, kernel: str = "reduce"):
        self.dtype, self.saves, self.grad, self.doc, self.kernel = dtype, saves, grad, doc, kernel
        self.head = ()  # the kernel's leading arguments: (op,) for ``reduce``, set with the table


def _count(shape: tuple, dims: tuple) -> int:
    return _numel(tuple(shape[d] for d in dims))


def _share_among_ties(g: Tensor, a: Tensor, out: Tensor, dims: tuple) -> Tensor:
    # amax/amin: the elements equal to the result share its gradient equally, as torch's
    mask = cast(binary("eq", a, out), g.dtype)
    return (g / reduce("sum", mask, dims, keepdim=True)) * mask


def _prod_grad(g: Tensor, a: Tensor, out: Tensor, dims: tuple) -> Tensor:
    # the product of the other elements: out / a, except at a zero (torch's prod_backward): there
    # it is the product of the non-zero elements when that zero is the only one, else 0
    zero = binary("eq", a, 0)
    if not reduce("sum", zero).item():
        return g * out / a
    nonzero = reduce("prod", where(zero, 1, a), dims, keepdim=True)
    lone = binary("eq", reduce("sum", zero, dims, keepdim=True), 1)
    return g * where(zero, where(lone, nonzero, 0), out / where(zero, 1, a))


# the table: adding a reduction is one entry here and one branch of the ``reduce`` kernel per
# backend; its function here (``ops.reduce_sum`` for sum, so that ops keeps Python's ``sum``), its
# Tensor method and its package export are made from this entry
REDUCE_OPS = {
    "sum": ReduceOp("sum", "", lambda g, a, out, dims: g.expand(a.shape), "the sum", "reduce_sum"),
    "mean": ReduceOp(
        "float", "", lambda g, a, out, dims: g.expand(a.shape) / float(_count(a.shape, dims)), "the mean"
    ),
    "prod": ReduceOp("sum", "both", _prod_grad, "the product"),
    "amax": ReduceOp("same", "both", _share_among_ties, "the largest value (ties share the gradient)"),
    "amin": ReduceOp("same", "both", _share_among_ties, "the smallest value (ties share the gradient)"),
}
for _name, _spec in REDUCE_OPS.items():
    _spec.head = (_name,) if _spec.kernel == "reduce" else ()
del _name, _spec


class ReduceOpNode(Function):
    """The recorded node of a ``REDUCE_OPS`` entry (``op`` names it; its rule is the table's)."""

    __slots__ = ("op", "dims", "keepdim")

    def backward(self, g):
        a = self.inputs[0]
        out = _wrap(*self.saved) if self.saved is not None else None
        if not self.keepdim:
            kept = tuple(1 if i in self.dims else n for i, n in enumerate(a.shape))
            g = g.reshape(kept)
            out = out.reshape(kept) if out is not None else None
        return (REDUCE_OPS[self.op].grad(g, a, out, self.dims),)


def reduce(op: str, a: Tensor, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """Run the table reduction ``op`` over ``dim`` (None: every dimension) of ``a``: dtype rule,
    select a backend, run its kernel, wrap, record."""
    spec = REDUCE_OPS[op]
    dims = tuple(range(len(a.shape))) if dim is None else normalize_dims(dim, len(a.shape), op)
    in_dtype = a.dtype
    if dtype is not None:
        out_dtype = dt.as_dtype(dtype)
    elif spec.dtype == "sum":  # torch sums (and multiplies) every integer and bool dtype into int64
        out_dtype = in_dtype if in_dtype.is_floating_point else dt.int64
    else:
        out_dtype = in_dtype
    if spec.dtype == "float" and not out_dtype.is_floating_point:
        raise TypeError(f"{op}: expected a floating point tensor, got {in_dtype.name}")
    if in_dtype is not out_dtype:
        a = cast(a, out_dtype)
    be, out_impl = accel.run(
        op, REDUCTION, _numel(a.shape), (a,), spec.kernel, spec.head, dims, keepdim, out_dtype
    )
    out = _wrap(out_impl, be)
    if not (a._rg and autograd._grad_enabled):
        return out
    node = ReduceOpNode()
    node.op, node.dims, node.keepdim = op, dims, keepdim
    if spec.saves:
        node.saved = (out_impl, be)
        return _record(node, (a,), out, (a,), saved_out=True)
    return _record(node, (a,), out)


def _reduce_function(op: str) -> Callable:
    def fn(
        input: Tensor, dim=None, keepdim: bool = False, dtype=None, *, keepdims: bool | None = None
    ) -> Tensor:  # noqa: A002
        # keepdims: NumPy's spelling, which torch also accepts (the makemore lectures use it)
        return reduce(op, input, dim, keepdim if keepdims is None else keepdims, dtype)

    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"{REDUCE_OPS[op].doc} over ``dim`` (None: every dimension) (torch.{op})."
    return fn


# ops.reduce_sum, ops.mean, ops.prod, ...: every table reduction (Tensor.sum, pd.sum: puredl.tensor_methods)
REDUCE_FUNCTIONS = {op: _reduce_function(op) for op in REDUCE_OPS}
globals().update({("reduce_sum" if op == "sum" else op): fn for op, fn in REDUCE_FUNCTIONS.items()})
reduce_sum, mean = REDUCE_FUNCTIONS["sum"], REDUCE_FUNCTIONS["mean"]  # spelled out for readers and linters


def var(
    a: Tensor, dim=None, keepdim: bool = False, correction: int = 1, unbiased: bool | None = None
) -> Tensor:
    if unbiased is not None:
        correction = 1 if unbiased else 0
    dims = normalize_dims(dim, a.ndim, "var")
    count = _numel(tuple(a.shape[d] for d in dims))
    centered = a - reduce("mean", a, dims, keepdim=True)
    return reduce("sum", centered * centered, dims, keepdim) / float(max(count - correction, 0))


def std(
    a: Tensor, dim=None, keepdim: bool = False, correction: int = 1, unbiased: bool | None = None
) -> Tensor:
    v = var(a, dim, keepdim, correction, unbiased)
    # like torch, a zero std has gradient 0, not sqrt's 1/0: route those entries around sqrt
    zero = binary("eq", v, 0.0)
    return where(zero, 0.0, unary("sqrt", where(zero, 1.0, v)))


class MaxDim(Function):
    __slots__ = ("dim", "keepdim")

    def backward(self, g):
        (a,) = self.inputs
        idx = _wrap(*self.saved)
        if not self.keepdim:
            g, idx = g.unsqueeze(self.dim), idx.unsqueeze(self.dim)
        positions = _arange_along(a, self.dim)
        return (where(binary("eq", positions, idx), g, 0.0),)


def _arange_along(a: Tensor, dim: int) -> Tensor:
    """0, 1, ... along ``dim`` of ``a`` (size 1 elsewhere), int64, in ``a``'s backend."""
    shape = [1] * a.ndim
    shape[dim] = a.shape[dim]
    return _wrap(a._be.from_values(range(a.shape[dim]), tuple(shape), dt.int64), a._be)


def _max_min(a: Tensor, dim, keepdim: bool, largest: bool):
    name = "max" if largest else "min"
    if dim is not None and a.ndim == 0:  # like torch: the value itself and index 0
        normalize_dim(dim, 0, name)
        return _max_min(a.reshape(1), 0, False, largest)
    if dim is None:  # the table's amax/amin over every dimension
        if not _numel(a.shape):
            raise RuntimeError(f"{name}(): an empty tensor has no {name}; give dim= (as torch asks)")
        return reduce("amax" if largest else "amin", a)
    d = normalize_dim(dim, a.ndim, name)
    be, (values_impl, idx_impl) = accel.run(
        name, REDUCTION, _numel(a.shape), (a,), "max_dim", (), d, keepdim, largest
    )
    node = MaxDim()
    node.dim, node.keepdim, node.saved = d, keepdim, (idx_impl, be)
    return ValuesIndices(_record(node, (a,), _wrap(values_impl, be)), _wrap(idx_impl, be))


def reduce_max(a: Tensor, dim=None, keepdim: bool = False):
    return _max_min(a, dim, keepdim, True)


def reduce_min(a: Tensor, dim=None, keepdim: bool = False):
    return _max_min(a, dim, keepdim, False)


def argmax(a: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return _arg(a, dim, keepdim, True)


def argmin(a: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return _arg(a, dim, keepdim, False)


def _arg(a: Tensor, dim, keepdim: bool, largest: bool) -> Tensor:
    name = "argmax" if largest else "argmin"
    if dim is not None and a.ndim == 0:
        normalize_dim(dim, 0, name)
        return _arg(a.reshape(1), 0, False, largest)
    if dim is None:
        be, idx = accel.run(name, REDUCTION, _numel(a.shape), (a,), "argmax_all", (), largest)
        out = _wrap(idx, be)
        return out.reshape((1,) * a.ndim) if keepdim else out
    d = normalize_dim(dim, a.ndim, name)
    be, (_, idx) = accel.run(name, REDUCTION, _numel(a.shape), (a,), "max_dim", (), d, keepdim, largest)
    return _wrap(idx, be)


class Softmax(Function):
    __slots__ = ("dim", "log")

    def backward(self, g):
        out = _wrap(*self.saved)
        if self.log:
            return (g - unary("exp", out) * reduce("sum", g, self.dim, keepdim=True),)
        return (out * (g - reduce("sum", g * out, self.dim, keepdim=True)),)


def _softmax(a: Tensor, dim: int, log_: bool) -> Tensor:
    name = "log_softmax" if log_ else "softmax"
    d = normalize_dim(dim, a.ndim, name)
    if not a.dtype.is_floating_point:
        a = cast(a, dt.get_default_dtype())
    if a.ndim == 0:  # a constant: no kernel to run
        be, _ = accel.select(name, ACTIVATION, 1, (a,))
        out_impl = be.full((), 0.0 if log_ else 1.0, a.dtype)
    else:
        be, out_impl = accel.run(name, ACTIVATION, _numel(a.shape), (a,), "softmax", (), d, log_)
    node = Softmax()
    node.dim, node.log, node.saved = d, log_, (out_impl, be)
    return _record(node, (a,), _wrap(out_impl, be), saved_out=True)


def softmax(a: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim`` (the row maximum is subtracted first)."""
    return _softmax(a, dim, False)


def log_softmax(a: Tensor, dim: int = -1) -> Tensor:
    return _softmax(a, dim, True)


# =========================================================================== losses


class NLLLoss(Function):
    __slots__ = ("args",)

    def backward(self, g):
        logp, target, weight, total, be = self.saved
        ii, eps, reduction, log_softmax = self.args
        # the divisor ``total`` is a backend scalar; either backend's kernel reads the other's
        if weight is None:
            tensors, tail = (g, _wrap(logp, be), target), (None, ii, eps, reduction, total, log_softmax)
        else:
            tensors, tail = (g, _wrap(logp, be), target, weight), (ii, eps, reduction, total, log_softmax)
        be2, grad = accel.run(
            "nll_loss_backward", ACTIVATION, _numel(logp.shape), tensors, "nll_loss_backward", (), *tail
        )
        return (_wrap(grad, be2),)


def nll_loss(
    x: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    log_softmax: bool,
) -> Tensor:
    """torch's NLL (of ``log_softmax(x)`` when ``log_softmax``: cross-entropy) over (N, C) ``x``, fused.

    One node instead of a dozen: the forward and the gradient each run as one backend kernel.
    ``target`` holds (N,) int64 class indices; the caller validates shapes and dtypes.
    """
    if not x.dtype.is_floating_point:
        x = cast(x, dt.get_default_dtype())
    if weight is not None and weight.dtype is not x.dtype:
        weight = cast(weight, x.dtype)
    name = "cross_entropy" if log_softmax else "nll_loss"
    args = (ignore_index, label_smoothing, reduction, log_softmax)
    if weight is None:
        be, (loss, logp, total) = accel.run(
            name, ACTIVATION, _numel(x.shape), (x, target), "nll_loss", (), None, *args
        )
    else:
        be, (loss, logp, total) = accel.run(
            name, ACTIVATION, _numel(x.shape), (x, target, weight), "nll_loss", (), *args
        )
    node = NLLLoss()
    node.args = args
    node.saved = (logp, target, weight, total, be)
    return _record(node, (x,), _wrap(loss, be), (target,) if weight is None else (target, weight))


# =========================================================================== shape ops (views)


class Reshape(Function):
    def backward(self, g):
        return (g.reshape(self.inputs[0].shape),)


def reshape(a: Tensor, shape: tuple, view_only: bool = False) -> Tensor:
    shape = infer_shape(shape, _numel(a.shape), a.shape)
    if shape == a.shape:
        return a if not view_only else _view_alias(a)
    be = a._be
    impl = be.view(a._impl, shape)
    if impl is None:
        if view_only:
            raise RuntimeError(
                f"view: shape {a.shape} with strides {a.stride()} cannot be viewed as {shape}; use reshape()"
            )
        return _record(Reshape, (a,), _wrap(be.reshape(a._impl, shape), be))
    out = _wrap(impl, be)
    out._view = (a, RESHAPE_VIEW, None)  # a view: see _view_of
    return _record(Reshape, (a,), out)


def _view_alias(a: Tensor) -> Tensor:
    view = _wrap(a._be.view(a._impl, a.shape) or a._impl, a._be)
    return _record(Reshape, (a,), _view_of(a, view, RESHAPE_VIEW))


RESHAPE_VIEW, PERMUTE_VIEW, EXPAND_VIEW, INDEX_VIEW = "reshape", "permute", "expand", "index"


def _view_of(base: Tensor, view: Tensor, kind: str, arg=None) -> Tensor:
    """``view`` shares ``base``'s storage, and so its version counter (``tensor.version_cell``);
    ``kind`` and ``arg`` (the basic index or the permutation) say how to redo the view, so that
    in-place changes to it can be recorded."""
    view._view = (base, kind, arg)
    return view


class Permute(Function):
    __slots__ = ("dims",)

    def backward(self, g):
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return (permute(g, tuple(inverse)),)


def permute(a: Tensor, dims: tuple) -> Tensor:
    n = len(a.shape)
    dims = tuple([normalize_dim(d, n, "permute") for d in dims])
    if sorted(dims) != list(range(n)):
        raise ValueError(f"permute: {dims} is not a permutation of the {n} dimensions of shape {a.shape}")
    out = _wrap(a._be.permute(a._impl, dims), a._be)
    out._view = (a, PERMUTE_VIEW, dims)  # a view: see _view_of
    if not (a._rg and autograd._grad_enabled):
        return out
    node = Permute()
    node.dims = dims
    return _record(node, (a,), out)


class Expand(Function):
    def backward(self, g):
        return (unbroadcast(g, self.inputs[0].shape),)


def expand(a: Tensor, shape: tuple) -> Tensor:
    shape = tuple(shape)
    if len(shape) < a.ndim:
        raise ValueError(f"expand: target shape {shape} has fewer dimensions than {a.shape}")
    lead = len(shape) - a.ndim
    target = list(shape)
    for i, n in enumerate(a.shape):
        m = shape[lead + i]
        if m == -1:
            target[lead + i] = n
        elif n != m and n != 1:
            raise ValueError(f"expand: cannot expand shape {a.shape} to {shape}")
    target = tuple(target)
    if target == a.shape:
        return a
    return _record(Expand, (a,), _view_of(a, _wrap(a._be.expand(a._impl, target), a._be), EXPAND_VIEW))


class Contiguous(Function):
    def backward(self, g):
        return (g,)


def contiguous(a: Tensor) -> Tensor:
    impl = a._be.contiguous(a._impl)
    if impl is a._impl:
        return a
    return _record(Contiguous, (a,), _wrap(impl, a._be))


def clone(a: Tensor) -> Tensor:
    """A copy with its own storage; gradients flow back to ``a``."""
    return _record(Contiguous, (a,), _wrap(a._be.clone(a._impl), a._be))


class Cast(Function):
    def backward(self, g):
        src = self.inputs[0].dtype
        return (cast(g, src) if src.is_floating_point else None,)


def cast(a: Tensor, dtype: dt.DType) -> Tensor:
    if a.dtype is dtype:
        return a
    out = _wrap(a._be.cast(a._impl, dtype), a._be)
    if dtype.is_floating_point and a.dtype.is_floating_point:
        return _record(Cast, (a,), out)
    return out


# =========================================================================== indexing and joining


class GetItem(Function):
    __slots__ = ("key",)

    def backward(self, g):
        (a,) = self.inputs
        be = g._be
        full = be.full(a.shape, 0, g.dtype)
        be.setitem(full, self.key, g._impl)
        return (_wrap(full, be),)


def getitem_basic(a: Tensor, key: tuple) -> Tensor:
    node = GetItem()
    node.key = key
    out = _wrap(a._be.getitem(a._impl, key), a._be)
    out._view = (a, INDEX_VIEW, key)  # a view: see _view_of
    return _record(node, (a,), out)


class IndexPut(Function):
    """``a`` with its basic-indexed region ``key`` replaced by ``value`` (setitem, recorded)."""

    __slots__ = ("key",)

    def backward(self, g):
        a = self.inputs[0]
        ga = gv = None
        if a._rg:  # the overwritten region contributed nothing
            be = g._be
            full = be.clone(g._impl)
            be.setitem(full, self.key, 0)
            ga = _wrap(full, be)
        if len(self.inputs) == 2 and self.inputs[1]._rg:
            gv = unbroadcast(getitem_basic(g, self.key), self.inputs[1].shape)
        return ga, gv


def index_put_basic(a: Tensor, key: tuple, value) -> Tensor:
    """A copy of ``a`` with ``a[key] = value`` (``key`` normalized; ``value`` a tensor or scalar)."""
    node = IndexPut()
    node.key = key
    if not isinstance(value, Tensor):
        be = a._be
        out = be.clone(a._impl)
        be.setitem(out, key, value)
        return _record(node, (a,), _wrap(out, be))
    if value.dtype is not a.dtype:
        value = cast(value, a.dtype)
    be, (ia, iv) = accel.select("setitem", SHAPE, _numel(a.shape), (a, value))
    out = be.clone(ia)
    be.setitem(out, key, iv)
    return _record(node, (a, value), _wrap(out, be))


class IndexSelect0(Function):
    def backward(self, g):
        a, idx = self.inputs
        be, out_impl = accel.run("index_add", SHAPE, _numel(g.shape), (idx, g), "index_add0", (a.shape,))
        return _wrap(out_impl, be), None


def index_select0(a: Tensor, idx: Tensor) -> Tensor:
    """Rows of ``a`` along dimension 0 picked by the int64 (or int32) tensor ``idx`` (any shape)."""
    if idx.dtype is dt.int32:
        idx = cast(idx, dt.int64)
    if idx.dtype is not dt.int64:
        raise IndexError(f"tensors used as indices must be int64 (long), int32 or bool, got {idx.dtype.name}")
    if a.ndim == 0:
        raise IndexError("cannot index a 0-d tensor with a tensor")
    work = _numel(idx.shape) * _numel(a.shape[1:])
    be, out_impl = accel.run("index_select", SHAPE, work, (a, idx), "index_select0", ())
    return _record(IndexSelect0, (a, idx), _wrap(out_impl, be), (idx,))


class Cat(Function):
    __slots__ = ("dim",)

    def backward(self, g):
        grads, start = [], 0
        for t in self.inputs:
            if t.ndim == 1 and t.shape[0] == 0:  # an empty 1-D input that cat skipped: empty gradient
                grads.append(g.reshape(-1)[:0] if t._rg else None)
                continue
            n = t.shape[self.dim]
            key = (slice(None),) * self.dim + (slice(start, start + n),)
            grads.append(g[key] if t._rg else None)
            start += n
        return tuple(grads)


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dimension."""
    tensors = tuple(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    # torch skips 1-D empty tensors
    kept = tuple(t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)) or tensors[:1]
    ref = kept[0]
    d = normalize_dim(dim, ref.ndim, "cat")
    for t in kept[1:]:
        if t.ndim != ref.ndim or t.shape[:d] != ref.shape[:d] or t.shape[d + 1 :] != ref.shape[d + 1 :]:
            raise ValueError(f"cat: shapes {ref.shape} and {t.shape} do not match outside dimension {d}")
    out_dtype = ref.dtype
    for t in kept[1:]:
        out_dtype = dt.promote(out_dtype, t.dtype)
    total = sum(_numel(t.shape) for t in kept)
    be, out_impl = accel.run("cat", SHAPE, total, kept, "cat", (d, out_dtype))
    node = Cat()
    node.dim = d
    return _record(node, tensors, _wrap(out_impl, be))


def stack(tensors, dim: int = 0) -> Tensor:
    """Join same-shape tensors along a new dimension."""
    tensors = tuple(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"stack: all tensors must have the same shape, got {tensors[0].shape} and {t.shape}"
            )
    d = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in tensors], d)
