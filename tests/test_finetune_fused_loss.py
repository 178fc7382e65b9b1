"""The fine-tune's fused cross-entropy (gradient written into the logits) against torch's own."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from puredl.finetune.output_layer import cross_entropy_sum  # noqa: E402


def _both(rows: int, vocab: int, dim: int, scale: float, dtype, seed: int):
    """Loss and the upstream gradients (hidden and weight) through torch's loss and the fused one."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, dim, generator=g, dtype=dtype)
    weight = torch.randn(vocab, dim, generator=g, dtype=dtype) * 3
    targets = torch.randint(0, vocab, (rows,), generator=g)
    out = []
    for fused in (False, True):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        logits = h @ w.t()
        if fused:
            loss = cross_entropy_sum(logits, targets)
        else:
            loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        (loss * scale).backward()
        out.append((loss.detach(), h.grad, w.grad))
    return out


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(0, 9),
    vocab=st.integers(1, 60),
    dim=st.integers(1, 8),
    scale=st.sampled_from([1.0, 0.25, 1 / 7, 3.0]),
    seed=st.integers(0, 10_000),
)
def test_loss_and_gradients_equal_torch_cross_entropy(rows, vocab, dim, scale, seed):
    (want, want_h, want_w), (got, got_h, got_w) = _both(rows, vocab, dim, scale, torch.float64, seed)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_h, want_h, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_w, want_w, rtol=1e-10, atol=1e-12)


def test_float32_at_a_large_vocabulary_agrees_to_rounding():
    (want, want_h, want_w), (got, got_h, got_w) = _both(5, 4096, 16, 1 / 5, torch.float32, 0)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(got_h, want_h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_w, want_w, rtol=1e-5, atol=1e-6)


def test_logits_another_node_saved_make_backward_raise_not_read_changed():
    logits = torch.randn(3, 5, requires_grad=True) * 1.0
    squared = logits * logits  # saves logits for its own backward
    loss = cross_entropy_sum(logits, torch.tensor([0, 1, 2])) + squared.sum()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_lora_models_gradients_match_the_unfused_loss():
    """The training loss's gradients on a tiny Gemma 3 with LoRA on attention and the tied
    embedding/output layer equal those through ``F.cross_entropy``, parameter for parameter."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from finetune_helpers import tiny_gemma3, tiny_tokenizer
    from puredl.finetune import trainer
    from puredl.finetune.batching import collate, encode_example
    from puredl.finetune.lora import LoRAConfig, add_lora

    tok = tiny_tokenizer()
    examples = [encode_example(tok, f"답 {i}", f"질문 {i} " * (1 + i % 3), max_length=32) for i in range(6)]
    batch = collate(examples, pad_id=0)
    torch.manual_seed(0)
    config = LoRAConfig(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "embeddings"])
    model = add_lora(tiny_gemma3(), config)
    for p in model.parameters():  # B starts at zero: move it, so every gradient path carries signal
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    grads = []
    for loss_fn in (
        lambda logits, targets: torch.nn.functional.cross_entropy(logits, targets, reduction="sum"),
        cross_entropy_sum,
    ):
        model.zero_grad()
        original, trainer.cross_entropy_sum = trainer.cross_entropy_sum, loss_fn
        try:
            (trainer.batch_loss_sum(model, batch) / 7).backward()
        finally:
            trainer.cross_entropy_sum = original
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) >= 6
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)
