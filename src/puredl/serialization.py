"""Nested checkpoints without pickle: the tensors go into a safetensors file, the nesting into JSON.

``puredl.save({"model": sd, "optimizer": opt.state_dict(), "iter": 5}, path)`` stores every
tensor under its key path (``model/fc.weight``, ``optimizer/state/0/exp_avg``) and writes the
structure as JSON in the file's ``__metadata__`` under :data:`TREE_KEY`. The structure may
hold dicts (keys: str, int, float, bool, None), lists, tuples, str, int, float, bool, None and
Tensors; anything else would need pickle and is refused with the path to the value. A tensor
that appears twice is stored once and comes back as one object, as with ``torch.save``.

>>> import puredl, tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
>>> puredl.save({"w": [puredl.tensor([1.0]), 2], "step": (3, None)}, p)
>>> puredl.load(p)
{'w': [tensor([1.]), 2], 'step': (3, None)}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

# metadata key holding the JSON structure; a file without it is a flat {name: Tensor} file
TREE_KEY = "puredl.checkpoint"
FORMAT_VERSION = 1

_PRIMITIVES = (str, int, float, bool, type(None))


class CheckpointError(TypeError):
    """A value cannot be saved without pickle (a malformed file raises ``SafetensorsError``)."""


def _malformed(message: str) -> Exception:
    from puredl.io import SafetensorsError

    return SafetensorsError(message)


def is_flat_state_dict(obj: Any) -> bool:
    """True for ``{str: Tensor}``: saved as a plain safetensors file (readable by any tool)."""
    from puredl.tensor import Tensor

    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def encode(obj: Any) -> tuple[dict[str, Any], str]:
    """Split ``obj`` into ``({tensor_name: Tensor}, tree_json)``."""
    tensors: dict[str, Any] = {}
    by_id: dict[int, str] = {}
    tree = _encode(obj, "", tensors, by_id)
    return tensors, json.dumps({"version": FORMAT_VERSION, "tree": tree}, separators=(",", ":"))


def _encode(obj: Any, path: str, tensors: dict, by_id: dict) -> Any:
    from puredl.tensor import Tensor

    if isinstance(obj, Tensor):
        name = by_id.get(id(obj))
        if name is None:
            name = _unique_name(path or "tensor", tensors)
            by_id[id(obj)] = name
            tensors[name] = obj
        return {"tensor": name}
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return {"float": repr(obj)}  # JSON has no NaN/inf; keep them exact
    if isinstance(obj, _PRIMITIVES):
        return obj
    if isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            if not isinstance(k, _PRIMITIVES):
                raise CheckpointError(
                    f"save: key {k!r} at {_where(path)} is a {type(k).__name__}; "
                    "keys must be str, int, float, bool or None (anything else would need pickle)"
                )
            items.append([k, _encode(v, f"{path}/{k}" if path else str(k), tensors, by_id)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {
            kind: [_encode(v, f"{path}/{i}" if path else str(i), tensors, by_id) for i, v in enumerate(obj)]
        }
    hint = "; save its .state_dict() instead" if callable(getattr(obj, "state_dict", None)) else ""
    raise CheckpointError(
        f"save: value at {_where(path)} is a {type(obj).__name__}, which would need pickle; puredl saves "
        f"Tensors, numbers, str, bool, None, and dicts, lists and tuples of them{hint}"
    )


def _where(path: str) -> str:
    return repr(path) if path else "the top level"


def _unique_name(name: str, taken: Mapping[str, Any]) -> str:
    if name not in taken and name != "__metadata__":
        return name
    n = 1
    while f"{name}#{n}" in taken:
        n += 1
    return f"{name}#{n}"


def decode(tree_json: str, tensors: Mapping[str, Any], where: str) -> Any:
    """Rebuild the object that :func:`encode` split; ``where`` names the file in errors."""
    try:
        doc = json.loads(tree_json)
    except json.JSONDecodeError as exc:
        raise _malformed(f"{where}: the checkpoint structure is not valid JSON: {exc}") from None
    except RecursionError:
        raise _malformed(f"{where}: the checkpoint structure is nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION or "tree" not in doc:
        raise _malformed(
            f"{where}: unknown checkpoint structure (format version "
            f"{doc.get('version') if isinstance(doc, dict) else '?'}; "
            f"this puredl reads version {FORMAT_VERSION})"
        )
    try:
        return _decode(doc["tree"], tensors, where)
    except RecursionError:
        raise _malformed(f"{where}: the checkpoint structure is nested too deeply") from None


def _decode(node: Any, tensors: Mapping[str, Any], where: str) -> Any:
    if isinstance(node, _PRIMITIVES):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((kind, value),) = node.items()
        if kind == "tensor" and isinstance(value, str):
            if value not in tensors:
                raise _malformed(f"{where}: the structure names tensor {value!r}, which the file lacks")
            return tensors[value]
        if kind == "float" and value in ("nan", "inf", "-inf"):
            return float(value)
        if kind in ("list", "tuple") and isinstance(value, list):
            items = [_decode(v, tensors, where) for v in value]
            return items if kind == "list" else tuple(items)
        if kind == "dict" and isinstance(value, list):
            out = {}
            for pair in value:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], _PRIMITIVES)):
                    raise _malformed(f"{where}: malformed dict entry {pair!r} in the checkpoint structure")
                out[pair[0]] = _decode(pair[1], tensors, where)
            return out
    raise _malformed(f"{where}: malformed node {str(node)[:80]} in the checkpoint structure")


def location_mapper(map_location: Any) -> Callable[[Any], Any] | None:
    """A function that moves one loaded (CPU) tensor as ``torch.load(map_location=...)`` would.

    Accepts None, a device string or object (``"cpu"``, ``"cuda:0"``, ``puredl.device(...)``),
    a dict ``{"cuda:0": "cpu"}`` (saved location -> new one; puredl loads from "cpu"), or a
    callable ``fn(tensor, "cpu")`` returning the tensor to use.
    """
    if map_location is None:
        return None
    if isinstance(map_location, Mapping):
        target = map_location.get("cpu")
        return None if target is None else location_mapper(target)
    if callable(map_location) and not isinstance(map_location, str) and not hasattr(map_location, "type"):
        return lambda t: _checked(map_location(t, "cpu"), t)
    device = str(map_location)
    return lambda t: t if t.device == device else t.to(device)


def _checked(result: Any, original: Any) -> Any:
    from puredl.tensor import Tensor

    if result is None:
        return original
    if not isinstance(result, Tensor):
        raise TypeError(f"load: map_location returned {type(result).__name__}, expected a Tensor")
    return result
