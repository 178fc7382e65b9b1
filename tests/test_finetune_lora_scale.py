"""The LoRA scale folded into the rank-r factor gives PEFT's outputs, gradients and files."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from finetune_helpers import TINY_CORPUS, tiny_gemma3, tiny_tokenizer  # noqa: E402
from puredl.finetune.batching import collate, encode_example  # noqa: E402
from puredl.finetune.lora import (  # noqa: E402
    LoRAConfig,
    add_lora,
    fold_tied_gradients,
    save_lora,
    tied_parameter_groups,
)
from puredl.finetune.lora_scale import fold_lora_scale  # noqa: E402
from puredl.finetune.trainer import batch_loss_sum  # noqa: E402

ALL = ["q_proj", "v_proj", "gate_proj", "embeddings"]


def batch():
    tok = tiny_tokenizer()
    examples = [encode_example(tok, TINY_CORPUS[i], "질문:" if i % 2 else "", 40) for i in range(4)]
    return collate(examples, pad_id=tok.pad_token_id)


def lora_model(dropout: float = 0.0, **cfg):
    torch.manual_seed(0)
    model = add_lora(tiny_gemma3(), LoRAConfig(r=4, alpha=8, dropout=dropout, target_modules=ALL, **cfg))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero B factors: a fresh LoRA adds exactly zero and would prove nothing
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def loss_and_grads(model, enc, folded: bool, seed: int = 7):
    """Trainer loss of one batch and the gradients of every LoRA owner (tied copies folded in)."""
    fold_lora_scale(model, enabled=folded)
    owners, tied = tied_parameter_groups(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout masks in both runs
    loss = batch_loss_sum(model, enc)
    loss.backward()
    fold_tied_gradients(tied)
    return loss.detach(), {n: p.grad.clone() for n, p in owners}


def test_the_tied_output_layer_and_every_target_use_the_folded_forward():
    model = lora_model()
    layers = {n for n, m in model.named_modules() if "forward" in vars(m)}
    assert any(n.endswith("lm_head") for n in layers)  # the 262k-wide output layer, tied to the embedding
    assert any(n.endswith("embed_tokens") for n in layers)
    assert sum(n.endswith(("q_proj", "v_proj", "gate_proj")) for n in layers) == 6
    assert fold_lora_scale(model, enabled=False) == 0
    assert not any("forward" in vars(m) for m in model.modules())


@pytest.mark.parametrize("dropout, rslora", [(0.0, False), (0.1, True)])
def test_loss_and_gradients_of_both_factors_equal_peft(dropout, rslora):
    enc = batch()
    model = lora_model(dropout, use_rslora=rslora)
    model.train()
    loss, grads = loss_and_grads(model, enc, folded=True)
    ref_loss, ref_grads = loss_and_grads(model, enc, folded=False)  # PEFT's own forward
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-5)
    assert set(grads) == set(ref_grads)
    names = " ".join(grads)
    assert "lora_embedding_A" in names and "lora_embedding_B" in names and "q_proj.lora_A" in names
    for name in grads:
        assert ref_grads[name].abs().sum() > 0, name
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_logits_equal_peft_with_stacked_adapters_and_when_disabled():
    enc = batch()
    model = lora_model()
    model = add_lora(model, LoRAConfig(r=2, alpha=4, target_modules=["v_proj", "embeddings"]), name="lora_1")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_1" in name and "B" in name:
                p.normal_(0, 0.2)
        model.eval()
        folded = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        with model.disable_adapter():  # PEFT's path: the base model alone
            base = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        fold_lora_scale(model, enabled=False)
        ref = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        with model.disable_adapter():
            ref_base = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    torch.testing.assert_close(folded, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(base, ref_base, rtol=0, atol=0)
    assert (folded - base).abs().max() > 1e-2  # the adapters change the logits


def test_bf16_autocast_matches_peft_under_autocast():
    enc = batch()
    model = lora_model()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        folded = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.float()
        fold_lora_scale(model, enabled=False)
        ref = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.float()
    # bfloat16 keeps 8 bits: the two orders of one multiply round differently (a few last-place units)
    torch.testing.assert_close(folded, ref, rtol=3e-2, atol=3e-2)


def test_saved_adapter_holds_the_unscaled_factors_and_plain_peft_reproduces_the_logits(tmp_path):
    from safetensors.torch import load_file

    enc = batch()
    model = lora_model()
    save_lora(model, tmp_path / "folded")
    saved = load_file(str(tmp_path / "folded" / "adapter_model.safetensors"))
    params = {n.replace(".lora_0", ""): p.detach() for n, p in model.named_parameters() if "lora_" in n}
    assert set(saved) == set(params)
    for key, value in saved.items():
        assert torch.equal(value, params[key]), key  # exactly the factors: no scale baked in
    fold_lora_scale(model, enabled=False)
    save_lora(model, tmp_path / "plain")
    again = load_file(str(tmp_path / "plain" / "adapter_model.safetensors"))
    assert all(torch.equal(again[k], saved[k]) for k in saved)
    fold_lora_scale(model)
    plain = peft.PeftModel.from_pretrained(tiny_gemma3(), str(tmp_path / "folded")).eval()
    assert not any("forward" in vars(m) for m in plain.modules())  # PEFT alone, no puredl forward
    model.eval()
    with torch.no_grad():
        ours = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        theirs = plain(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
