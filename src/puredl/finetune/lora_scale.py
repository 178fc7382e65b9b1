"""LoRA forwards that multiply the scale into the rank-r intermediate, not into the layer's output.

PEFT computes a LoRA layer as ``base(x) + B(A(dropout(x))) * scale``: the multiply runs over the
whole output, which for Gemma's tied output layer is [tokens, 262,144] (and the sum is a second
pass over it). ``scale`` is a number, so ``B(A(x)) * scale == B(A(x) * scale)``: the same values
(up to float rounding) and the same gradients for A and B, with the multiply on [tokens, r] and
the add fused into the matrix product (``addmm``). The factors are not touched, so saved adapters
stay plain PEFT files holding the unscaled A and B.

Anything unusual (merged or disabled adapters, per-row ``adapter_names``, DoRA and other
variants, a bias on B, tensor-parallel hooks) takes PEFT's own forward unchanged.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

from puredl._optional import require


def fold_lora_scale(model: Any, enabled: bool = True) -> int:
    """Give every PEFT LoRA ``Linear`` and ``Embedding`` in ``model`` the folded forward (or PEFT's back).

    Idempotent; returns how many layers now use the folded forward. ``enabled=False`` restores
    PEFT's forward (the reference the tests compare against).
    """
    lora = require("peft.tuners.lora", "llm", "LoRA")
    kinds = {lora.Linear: _linear_forward, lora.Embedding: _embedding_forward}
    count = 0
    for module in model.modules():
        # exact classes: subclasses (quantized layers) have forwards of their own
        forward = kinds.get(type(module))
        if forward is None:
            continue
        if enabled:
            module.forward = MethodType(forward, module)
            count += 1
        elif "forward" in vars(module):
            del module.forward
    return count


def _peft_path(layer: Any, kwargs: dict[str, Any]) -> bool:
    """Whether this call needs PEFT's general forward (anything but plain, unmerged, active LoRA)."""
    return (
        layer.disable_adapters
        or layer.merged
        or kwargs.get("adapter_names") is not None
        or any(name in layer.lora_variant for name in layer.active_adapters)
    )


def _linear_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """``base(x) + B(A(dropout(x)) * scale)`` for each active adapter (PEFT: ``B(A(..)) * scale``)."""
    lora = require("peft.tuners.lora.layer", "llm", "LoRA")
    active = [n for n in self.active_adapters if n in self.lora_A]
    if _peft_path(self, kwargs) or any(self.lora_B[n].bias is not None for n in active):
        return type(self).forward(self, x, *args, **kwargs)
    self._check_forward_args(x, *args, **kwargs)
    kwargs.pop("adapter_names", None)
    for key in lora.VARIANT_KWARG_KEYS:
        kwargs.pop(key, None)
    result = self.base_layer(x, *args, **kwargs)
    result_dtype = result.dtype
    for name in active:
        lora_a = self.lora_A[name]
        h = self._cast_input_dtype(x, lora_a.weight.dtype)
        small = lora_a(self.lora_dropout[name](h)) * self.scaling[name]
        result = _add_product(result, small, self.lora_B[name].weight)
    return result.to(result_dtype)


def _embedding_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """``base(x) + (A[x] * scale * embed_scale) @ B`` (PEFT scales the [tokens, hidden] product)."""
    if _peft_path(self, kwargs) or self.input_fns or self.output_fns:
        return type(self).forward(self, x, *args, **kwargs)
    lora = require("peft.tuners.lora.layer", "llm", "LoRA")
    self._check_forward_args(x, *args, **kwargs)
    kwargs.pop("adapter_names", None)
    for key in lora.VARIANT_KWARG_KEYS:
        kwargs.pop(key, None)
    result = self.base_layer(x, *args, **kwargs)
    result_dtype = result.dtype
    embed_scale = self._get_embed_scale()  # Gemma's sqrt(hidden) multiplies the base and the update
    for name in self.active_adapters:
        if name not in self.lora_embedding_A:
            continue
        after_a = self._embed(x, self.lora_embedding_A[name].T)
        factor = self.scaling[name]
        if embed_scale is not None:
            factor = embed_scale.to(after_a.dtype) * factor
        result = result + (after_a * factor) @ self.lora_embedding_B[name].T
    return result.to(result_dtype)


def _add_product(result: Any, small: Any, weight: Any) -> Any:
    """``result + small @ weight.T``, as one ``addmm`` when the dtypes agree (no [tokens, out] temporary)."""
    torch = require("torch", "llm", "LoRA")
    if (
        result.dtype == small.dtype == weight.dtype
        and not torch.is_autocast_enabled(result.device.type)
        and result.shape[:-1] == small.shape[:-1]
    ):
        rows = result.reshape(-1, result.shape[-1])
        flat = torch.addmm(rows, small.reshape(-1, small.shape[-1]), weight.t())
        return flat.view(result.shape)
    return result + torch.nn.functional.linear(small, weight)
