"""Module and Parameter: the building blocks every layer and model inherits from.

A Module registers the Parameters, sub-Modules and buffers assigned to its attributes, so
``parameters()``, ``state_dict()``, ``train()`` and ``to()`` reach the whole tree. Nothing in a
Module points back to its parent, so a model never forms a reference cycle.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from puredl import autograd
from puredl.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (``requires_grad=True`` by default).

    It shares storage with the tensor it wraps.

    >>> import puredl as pd
    >>> p = Parameter(pd.zeros(2))
    >>> p.requires_grad, p.shape
    (True, (2,))
    """

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            from puredl.creation import empty

            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter: expected a Tensor, got {type(data).__name__}")
        p = Tensor.__new__(cls)
        _set_storage(p, data)
        p._vc, p._view = [0], None  # its own version counter, as torch's Parameter(data) has
        p._node = None
        p._grad = None
        p._rg = False
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        pass  # everything happens in __new__ (Tensor has no __init__)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _set_storage(dst: Tensor, src: Tensor) -> None:
    """Point ``dst`` at ``src``'s storage (torch's ``param.data = src``): identity is kept."""
    dst._impl = src._impl
    dst._be = src._be
    dst.shape = src.shape
    dst.dtype = src.dtype


class _IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of layers and models: subclass it, assign layers in ``__init__``, define ``forward``.

    >>> import puredl as pd
    >>> from puredl import nn
    >>> class TwoLayer(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc1 = nn.Linear(2, 4)
    ...         self.fc2 = nn.Linear(4, 1)
    ...     def forward(self, x):
    ...         return self.fc2(self.fc1(x).relu())
    >>> [name for name, _ in TwoLayer().named_parameters()]
    ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
    """

    training: bool

    def __init__(self) -> None:
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent"] = set()
        d["_modules"] = OrderedDict()

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if "_parameters" not in d:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(
                    f"cannot assign {name!r} before Module.__init__() is called "
                    "(call super().__init__() first)"
                )
            object.__setattr__(self, name, value)
            return
        params, modules, buffers = d["_parameters"], d["_modules"], d["_buffers"]
        if isinstance(value, Parameter):
            modules.pop(name, None)
            buffers.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as parameter {name!r} (Parameter or None expected)"
                )
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as child module {name!r} (Module or None expected)"
                )
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign {type(value).__name__} as buffer {name!r} (Tensor or None expected)"
                )
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)  # plain attributes (properties' setters run)
            return
        # registered values also live in __dict__ so that ``self.weight`` is a plain attribute lookup
        d[name] = value

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for registry in (d["_parameters"], d["_modules"], d["_buffers"]):
            registry.pop(name, None)
        d["_non_persistent"].discard(name)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add ``param`` (or a None placeholder) under ``name``."""
        _check_name(self, name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"register_parameter: {name!r} must be a Parameter or None, got {type(param).__name__}"
            )
        self.__dict__["_parameters"][name] = param
        self.__dict__[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a non-trainable tensor (saved in ``state_dict`` unless ``persistent=False``)."""
        _check_name(self, name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}"
            )
        self.__dict__["_buffers"][name] = tensor
        if persistent:
            self.__dict__["_non_persistent"].discard(name)
        else:
            self.__dict__["_non_persistent"].add(name)
        self.__dict__[name] = tensor

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name`` (what ``self.name = module`` does)."""
        _check_name(self, name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got {type(module).__name__}")
        self.__dict__["_modules"][name] = module
        self.__dict__[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The sub-module at a dotted path, e.g. ``model.get_submodule("0")``."""
        mod = self
        for part in target.split(".") if target else []:
            child = mod._modules.get(part)
            if child is None:
                raise AttributeError(
                    f"{type(mod).__name__} has no submodule {part!r} (looking up {target!r})"
                )
            mod = child
        return mod

    # ------------------------------------------------------------------ calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo: set | None = None, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, each once."""
        memo = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if id(mod) in memo:
                continue
            memo.add(id(mod))
            yield name, mod
            children = [(f"{name}.{k}" if name else k, m) for k, m in mod._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs; a Parameter shared by two layers appears once."""
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        for mod_name, mod in mods:
            for name, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        for mod_name, mod in mods:
            for name, b in mod._buffers.items():
                if b is None or id(b) in seen:
                    continue
                seen.add(id(b))
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Total number of scalar parameters (``trainable_only``: those with requires_grad)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True) -> Module:
        """Switch this module and its descendants to training mode (dropout on)."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(): mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self) -> Module:
        """Switch to evaluation mode (dropout off): ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter (set to None, or to zeros in place)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad = p.grad.detach()
                with autograd.no_grad():
                    p.grad.zero_()

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every descendant (children first) and on this module, e.g. to initialise."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ devices and dtypes
    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Move parameters and buffers in place: ``model.to("cuda:0")``, ``model.to(pd.float64)``.

        Floating-point tensors take a new dtype; integer buffers keep theirs. Parameter objects
        keep their identity, so an optimizer built before ``to()`` still updates them.
        """
        device, dtype = _parse_to_args(args, kwargs)

        def convert(t: Tensor) -> Tensor:
            d = dtype if (dtype is not None and t.dtype.is_floating_point) else None
            return t.to(device=device, dtype=d)

        with autograd.no_grad():
            for m in self.modules():
                for p in m._parameters.values():
                    if p is None:
                        continue
                    moved = convert(p)
                    if moved is not p:
                        _set_storage(p, moved.detach())
                    if p.grad is not None:
                        p.grad = convert(p.grad)
                for name, b in list(m._buffers.items()):
                    if b is not None:
                        m._buffers[name] = m.__dict__[name] = convert(b)
        return self

    def float(self) -> Module:
        from puredl.dtypes import float32

        return self.to(float32)

    def double(self) -> Module:
        from puredl.dtypes import float64

        return self.to(float64)

    def half(self) -> Module:
        from puredl.dtypes import float16

        return self.to(float16)

    def bfloat16(self) -> Module:
        from puredl.dtypes import bfloat16

        return self.to(bfloat16)

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Module:
        return self.to(f"cuda:{index}")

    # ------------------------------------------------------------------ state
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """Every parameter and persistent buffer by dotted name (detached; shares storage).

        >>> from puredl import nn
        >>> list(nn.Linear(2, 3).state_dict())
        ['weight', 'bias']
        """
        out: OrderedDict = OrderedDict()
        for mod_name, mod in self.named_modules(prefix=prefix.rstrip(".")):
            base = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    out[base + name] = p if keep_vars else p.detach()
            for name, b in mod._buffers.items():
                if b is not None and name not in mod._non_persistent:
                    out[base + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> _IncompatibleKeys:
        """Copy tensors from ``state_dict`` into this module's parameters and buffers.

        ``strict=True`` requires exactly the same keys. Shapes must always match. Errors list
        every missing, unexpected and mis-shaped key at once.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(
                f"load_state_dict: expected a mapping name -> Tensor, got {type(state_dict).__name__}"
            )
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        for k, target in own.items():
            if k not in state_dict:
                continue
            value = state_dict[k]
            if not isinstance(value, Tensor):
                problems.append(f"  {k}: expected a Tensor, got {type(value).__name__}")
            elif tuple(value.shape) != tuple(target.shape):
                problems.append(
                    f"  size mismatch for {k}: copying a tensor of shape {tuple(value.shape)}, "
                    f"the parameter in this model has shape {tuple(target.shape)}"
                )
        if strict:
            if missing:
                problems.append("  missing keys: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                problems.append("  unexpected keys: " + ", ".join(repr(k) for k in unexpected))
        if problems:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n" + "\n".join(problems)
            )
        with autograd.no_grad():
            for k, target in own.items():
                if k in state_dict:
                    target.copy_(state_dict[k].to(device=target.device, dtype=target.dtype))
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in ``repr`` (override in layers)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        children = [(k, m) for k, m in self._modules.items() if m is not None]
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = [f"{type(self).__name__}("]
        if extra:
            lines.append("  " + extra.replace("\n", "\n  "))
        for name, m in children:
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)

    def __str__(self) -> str:
        # print(model) shows the tree and the total count; a single layer prints as its repr
        if not self._modules:
            return repr(self)
        return self.summary()

    def summary(self) -> str:
        """The ``repr`` tree followed by the total (and trainable) parameter count."""
        total = self.num_parameters()
        trainable = self.num_parameters(trainable_only=True)
        text = f"{self!r}\nTotal parameters: {total:,}"
        if trainable != total:
            text += f" ({trainable:,} trainable)"
        return text


def _check_name(module: Module, name: str, what: str) -> None:
    if "_parameters" not in module.__dict__:
        raise AttributeError(f"cannot add {what} {name!r} before Module.__init__() is called")
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a str, got {type(name).__name__}")
    if not name or "." in name:
        raise KeyError(f"{what} name {name!r} must be non-empty and contain no '.'")
    if hasattr(type(module), name):
        raise KeyError(f"attribute {name!r} already exists on {type(module).__name__}")


def _parse_to_args(args: tuple, kwargs: dict) -> tuple[str | None, Any]:
    from puredl import dtypes as dt

    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"to(): unexpected arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, str) or type(a).__name__ == "device":
            device = str(a)
        elif a is not None:
            dtype = a
    if dtype is not None:
        dtype = dt.as_dtype(dtype)
        if not dtype.is_floating_point:
            raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype.name}")
    return device, dtype
