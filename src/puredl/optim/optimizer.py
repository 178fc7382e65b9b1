"""The Optimizer base: parameter groups, per-parameter state, zero_grad, state_dict round trips.

>>> import puredl as pd
>>> from puredl import nn, optim
>>> model = nn.Linear(2, 1)
>>> opt = optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.01}], lr=0.1)
>>> [g["lr"] for g in opt.param_groups]
[0.1, 0.01]
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from puredl import autograd
from puredl.tensor import Tensor


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Base class: subclasses set ``defaults`` and implement ``_update`` (and ``_init_state``).

    ``params`` is an iterable of Tensors or of dicts (parameter groups) with a ``"params"`` key
    and per-group overrides of the defaults (e.g. ``"lr"``).
    """

    def __init__(self, params: Iterable, defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError(
                "params must be an iterable of Tensors or dicts, got a single Tensor (wrap it in a list)"
            )
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones take the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("parameter groups need an ordered collection of Tensors, not a set")
        params = list(params or [])
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: parameter {i} is a {type(p).__name__}, not a Tensor")
            if not p.is_leaf:
                raise ValueError(
                    f"{type(self).__name__}: parameter {i} is not a leaf tensor (detach it first)"
                )
            if not p.dtype.is_floating_point:
                raise TypeError(
                    f"{type(self).__name__}: parameter {i} has dtype {p.dtype.name}; only floats train"
                )
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    f"parameter group didn't specify a value of required optimization parameter {name}"
                )
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group (or twice in one)")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's ``.grad`` (to None, or to zeros)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p._grad is None:
                    continue
                if set_to_none:
                    p._grad = None  # None needs none of the setter's checks (hot: once per step)
                else:
                    from puredl.creation import zeros_like

                    p.grad = zeros_like(p.grad)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()``'s loss when given."""
        loss = self._run_closure(closure)
        with autograd.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p._grad is None:  # (the slot: .grad is a property, and this runs per parameter)
                        continue
                    state = self.state.get(p)
                    if state is None:
                        state = self.state[p] = self._init_state(p, group)
                    self._update(p, state, group)
        return loss

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """A parameter's state before its first update (subclasses add their buffers)."""
        return {}

    def _update(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement _update")

    def _run_closure(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        with autograd.enable_grad():
            return closure()

    # ------------------------------------------------------------------ state_dict
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, like torch."""
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state:
                    state[index[id(p)]] = dict(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and per-parameter state saved by :meth:`state_dict`."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError(
                "load_state_dict: expected a dict with 'state' and 'param_groups' (from state_dict())"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        for i, (mine, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(mine["params"]) != len(saved["params"]):
                raise ValueError(
                    f"parameter group {i}: loaded state has {len(saved['params'])} parameters, "
                    f"this optimizer has {len(mine['params'])}"
                )
        by_index = {}
        for mine, saved in zip(self.param_groups, saved_groups):
            for p, idx in zip(mine["params"], saved["params"]):
                by_index[idx] = p
        new_state: dict[Tensor, dict[str, Any]] = {}
        for idx, st in state_dict["state"].items():
            idx = int(idx)
            if idx not in by_index:
                raise ValueError(f"loaded state refers to parameter index {idx}, which no group lists")
            p = by_index[idx]
            new_state[p] = {k: _state_value(k, v, p) for k, v in st.items()}
        for mine, saved in zip(self.param_groups, saved_groups):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = copy.deepcopy(v)
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)


def _state_value(key: str, value: Any, param: Tensor) -> Any:
    if isinstance(value, Tensor):
        if tuple(value.shape) != tuple(param.shape) and value.numel() != 1:
            raise ValueError(
                f"loaded optimizer state {key!r} has shape {tuple(value.shape)}, "
                f"its parameter has {tuple(param.shape)}"
            )
        dtype = param.dtype if value.dtype.is_floating_point else None
        return value.detach().to(device=param.device, dtype=dtype).clone()
    return copy.deepcopy(value)
