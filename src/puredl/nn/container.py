"""Containers: Sequential (layers applied in order), ModuleList and ModuleDict.

>>> from puredl import nn
>>> model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
>>> print(model)
Sequential(
  (0): Linear(2 -> 4, bias=True)
  (1): ReLU()
  (2): Linear(4 -> 1, bias=True)
  (3): Sigmoid()
)
Total parameters: 17
>>> model[0], len(model)
(Linear(2 -> 4, bias=True), 4)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from puredl.nn.module import Module


def _check_module(where: str, m: Any) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{where}: expected a Module, got {type(m).__name__}")
    return m


class Sequential(Module):
    """Apply the given modules one after another: ``Sequential(a, b)(x) == b(a(x))``.

    Also accepts an ``OrderedDict`` of named modules. Index it (``model[0]``, ``model[-1]``,
    ``model[1:]``), iterate it, ``append`` to it.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, _check_module("Sequential", m))
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), _check_module("Sequential", m))
        self._refresh()

    def _refresh(self) -> None:
        # a plain tuple makes forward a tight loop without dict lookups
        self.__dict__["_layers"] = tuple(m for m in self._modules.values() if m is not None)

    def forward(self, x: Any) -> Any:
        for layer in self._layers:
            x = layer(x)
        return x

    def __getitem__(self, idx: int | slice) -> Module:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        n = len(items)
        if not -n <= idx < n:
            raise IndexError(f"Sequential index {idx} is out of range for {n} layers")
        return items[idx % n][1]

    def __setitem__(self, idx: int, module: Module) -> None:
        name = list(self._modules)[idx]
        setattr(self, name, _check_module("Sequential", module))
        self._refresh()

    def __delitem__(self, idx: int | slice) -> None:
        names = list(self._modules)
        for name in names[idx] if isinstance(idx, slice) else [names[idx]]:
            delattr(self, name)
        # renumber so indices stay 0..n-1
        kept = list(self._modules.values())
        for name in list(self._modules):
            delattr(self, name)
        for i, m in enumerate(kept):
            self.add_module(str(i), m)
        self._refresh()

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), _check_module("Sequential.append", module))
        self._refresh()
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        kept = list(self._modules.values())
        kept.insert(index, _check_module("Sequential.insert", module))
        for name in list(self._modules):
            delattr(self, name)
        for i, m in enumerate(kept):
            self.add_module(str(i), m)
        self._refresh()
        return self


class ModuleList(Module):
    """A list of modules whose parameters the parent registers (no forward of its own)."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), _check_module("ModuleList.append", module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, idx: int | slice) -> Any:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[idx]

    def __setitem__(self, idx: int, module: Module) -> None:
        name = list(self._modules)[idx]
        setattr(self, name, _check_module("ModuleList", module))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


class ModuleDict(Module):
    """A dict of named modules whose parameters the parent registers."""

    def __init__(self, modules: dict | None = None) -> None:
        super().__init__()
        for k, m in (modules or {}).items():
            self[k] = m

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, _check_module("ModuleDict", module))

    def __delitem__(self, key: str) -> None:
        delattr(self, key)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()


__all__ = ["ModuleDict", "ModuleList", "Sequential"]
