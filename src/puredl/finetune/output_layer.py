"""The output layer at chosen positions only: the model body once, the head where a token is scored.

With Gemma's 262k-word vocabulary the output layer (tied to the embedding, LoRA-adapted when the
embedding has an adapter) and the log-softmax after it dominate training and evaluation. Prompt,
padding and unscored positions need no logits, so the decoder runs over the whole batch and the
head, then Gemma's final logit soft-capping when the config sets it, run over the scored rows
only: exactly what the model's own forward computes at those rows.

A model without a separate decoder (a wrapper, a test double) gets its own full forward, cut to
the last positions when it accepts ``logits_to_keep``.
"""

from __future__ import annotations

import sys
from typing import Any

from puredl._optional import require
from puredl.finetune import model_io as io


def decoder_and_head(model: Any) -> tuple[Any, Any, float | None] | None:
    """(decoder, output layer, logit soft-cap) when logits can be computed for chosen positions only."""
    peft = sys.modules.get("peft")  # a PEFT model means peft is imported already
    base = model.get_base_model() if peft is not None and isinstance(model, peft.PeftModel) else model
    get_decoder = getattr(base, "get_decoder", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if get_decoder is None or head is None:
        return None
    decoder = get_decoder()
    if decoder is None or decoder is base:
        return None
    text_cfg = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    return decoder, head, getattr(text_cfg, "final_logit_softcapping", None)


def head_logits(head: Any, softcap: float | None, hidden: Any) -> Any:
    """Float32 logits of ``hidden`` rows: the output layer, then ``tanh(x / cap) * cap`` when capped."""
    torch = require("torch", "llm", "fine-tuning")
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def logits_at(model: Any, rows: Any, cols: Any, **inputs: Any) -> Any:
    """Float32 logits ``[K, vocab]`` at positions ``(rows[k], cols[k])`` of the batch in ``inputs``.

    ``inputs`` are the model's keyword arguments (``input_ids``, masks, position ids); ``rows``
    and ``cols`` are index tensors (or lists) on any device.
    """
    torch = require("torch", "llm", "fine-tuning")
    ids = inputs["input_ids"]
    rows = torch.as_tensor(rows, dtype=torch.long, device=ids.device)
    cols = torch.as_tensor(cols, dtype=torch.long, device=ids.device)
    parts = decoder_and_head(model)
    if parts is None:
        width = ids.shape[1]
        keep = width - int(cols.min()) if cols.numel() else 1
        kwargs = {"logits_to_keep": keep} if io.accepts_logits_to_keep(model) else {}
        logits = model(**inputs, **kwargs).logits
        return logits[rows, cols - (width - logits.shape[1])].float()
    decoder, head, softcap = parts
    hidden = decoder(**inputs).last_hidden_state
    return head_logits(head, softcap, hidden[rows, cols])


def cross_entropy_sum(logits: Any, targets: Any) -> Any:
    """``F.cross_entropy(logits, targets, reduction="sum")`` that writes its gradient into ``logits``.

    ``logits`` ([K, vocab], float32, made for this loss alone) are kept for the backward, which turns
    them into ``softmax - onehot`` in place: no log-softmax output ([K, vocab]) is stored and no
    gradient of that size is allocated, one of the step's largest costs with a 262k vocabulary.
    Another node that saved ``logits`` would make autograd raise (their version changes), never read
    them changed. The loss equals torch's; the gradient agrees to float32 rounding.
    """
    return _fused_cross_entropy().apply(logits, targets)


_FUSED_CE = None


def _fused_cross_entropy() -> Any:
    global _FUSED_CE
    if _FUSED_CE is None:
        torch = require("torch", "llm", "fine-tuning")

        class FusedCrossEntropySum(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, logits: Any, targets: Any) -> Any:
                lse = torch.logsumexp(logits, dim=-1)
                ctx.save_for_backward(logits, targets, lse)
                return (lse - logits.gather(1, targets[:, None]).squeeze(1)).sum()

            @staticmethod
            def backward(ctx: Any, g: Any) -> tuple[Any, None]:
                logits, targets, lse = ctx.saved_tensors
                grad = logits.sub_(lse[:, None]).exp_().mul_(g)  # softmax, scaled, in place
                grad.scatter_add_(1, targets[:, None], (-g).expand(targets.shape[0], 1).to(grad.dtype))
                return grad, None

        _FUSED_CE = FusedCrossEntropySum
    return _FUSED_CE
