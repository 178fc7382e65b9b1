"""Plumbing shared by the log-likelihood engine and the shared-prompt path (extra ``llm``: torch).

Encoding as in training (``<bos>`` + prompt, continuation without special tokens), eval mode
with no autograd, padding ids, batching and the optional ``logits_to_keep`` argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any

from puredl._optional import require


def torch_module() -> Any:
    return require("torch", "llm", "validation metrics")


def device_of(model: Any, device: str | None) -> Any:
    """The device of the model's first parameter (else ``device`` or cpu)."""
    torch = torch_module()
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device(device or "cpu")


def model_dtype(model: Any) -> Any:
    """The dtype of the model's first floating-point parameter (float32 if none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch_module().float32  # pragma: no cover - a model without float weights


@contextmanager
def evaluating(model: Any):
    """Eval mode and no autograd for the duration; the model's training flag is restored after."""
    torch = torch_module()
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


def context_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Prompt tokens with the tokenizer's special tokens (Gemma's ``<bos>``), as in training."""
    ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if not ids:  # a tokenizer without BOS: give the first real token something to condition on
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ValueError("the tokenizer adds no BOS and has no bos/eos token to start a sequence with")
        ids = [start]
    return ids


def plain_ids(tokenizer: Any, text: str) -> list[int]:
    """Tokens of ``text`` without special tokens (a continuation)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def pad_id(tokenizer: Any) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0  # pragma: no cover


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (computing only the last logits)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return "logits_to_keep" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def progress(iterable: Iterable, total: int, desc: str, enabled: bool) -> Iterable:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is part of the llm extra
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, unit="batch")
