"""LoRA on a tiny Gemma 3: freezing, tie-aware merging, PEFT round trips, target scoping."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from finetune_helpers import tiny_gemma3, tiny_gemma3_multimodal, tiny_tokenizer  # noqa: E402
from puredl.finetune.lora import (  # noqa: E402
    LoRAConfig,
    add_lora,
    fold_tied_gradients,
    load_lora,
    merge_lora,
    resolve_target_modules,
    save_lora,
    tied_parameter_groups,
    trainable_parameters,
)

ALL = ["q_proj", "v_proj", "embeddings"]


def batch():
    tok = tiny_tokenizer()
    return tok(["감기 증상이 있습니다", "고혈압 hypertension 환자"], return_tensors="pt", padding=True)


def randomize(model, name: str, std: float = 0.3, seed: int = 1) -> None:
    """Give an adapter non-zero B factors (a fresh LoRA is an exact no-op)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if name in pname and (
                "lora_B" in pname or "lora_embedding_B" in pname or "lora_embedding_A" in pname
            ):
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def logits(model, enc):
    model.eval()
    with torch.no_grad():
        return model(**enc).logits


def manual_merge(base, adapter_dir, scaling):
    """Reference merge written from the LoRA formula and the saved tensors (no PEFT code involved)."""
    from safetensors.torch import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    modules = dict(base.named_modules())
    with torch.no_grad():
        for key, a in weights.items():
            if key.endswith("lora_A.weight") and "lm_head" not in key:
                path = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
                b = weights[key.replace("lora_A", "lora_B")]
                modules[path].weight += scaling * (b @ a)
            elif key.endswith("lora_embedding_A"):
                path = key.removeprefix("base_model.model.").removesuffix(".lora_embedding_A")
                b = weights[key.replace("lora_embedding_A", "lora_embedding_B")]
                modules[path].weight += scaling * (b @ a).T  # one update of the tied matrix
    return base


def test_rslora_scaling_matches_peft():
    model = add_lora(tiny_gemma3(), LoRAConfig(r=64, alpha=128, dropout=0.05, use_rslora=True))
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert (
        layer.scaling["lora_0"]
        == pytest.approx(128 / math.sqrt(64))
        == LoRAConfig(64, 128, use_rslora=True).scaling
    )
    assert LoRAConfig(r=64, alpha=128).scaling == 2.0


def test_only_the_trainable_adapter_gets_gradients():
    torch.manual_seed(0)
    model = add_lora(
        tiny_gemma3(), LoRAConfig(r=4, alpha=8, target_modules=ALL), trainable=False, name="lora_0"
    )
    model = add_lora(model, LoRAConfig(r=2, alpha=4), trainable=True, name="lora_1")
    randomize(model, "lora_0")
    randomize(model, "lora_1", seed=2)
    model.train()
    out = model(**batch()).logits.float().pow(2).mean()
    out.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad, "the trainable adapter must receive gradients"
    assert all(".lora_1" in n for n in with_grad), sorted(with_grad)
    assert {n for n in trainable_parameters(model)} == {
        n for n, p in model.named_parameters() if ".lora_1" in n
    }
    assert all(p.grad is None for n, p in model.named_parameters() if ".lora_1" not in n)


def test_stacked_adapters_add_up_like_merging_them_one_by_one(tmp_path):
    enc = batch()
    torch.manual_seed(0)
    first = add_lora(tiny_gemma3(), LoRAConfig(r=4, alpha=8, target_modules=ALL))
    randomize(first, "lora_0")
    save_lora(first, tmp_path / "a")
    second = add_lora(merge_lora(first), LoRAConfig(r=2, alpha=4, target_modules=["v_proj"]))
    randomize(second, "lora_1", seed=5)
    save_lora(second, tmp_path / "b")
    stacked = add_lora(tiny_gemma3(), load_lora(tmp_path / "a"), trainable=False)
    stacked = add_lora(stacked, load_lora(tmp_path / "b"), trainable=False)
    torch.testing.assert_close(logits(stacked, enc), logits(second, enc), atol=1e-4, rtol=1e-4)


def test_merged_logits_equal_adapter_logits_with_tied_embedding(tmp_path):
    enc = batch()
    torch.manual_seed(0)
    model = add_lora(tiny_gemma3(), LoRAConfig(r=4, alpha=8, dropout=0.0, target_modules=ALL))
    randomize(model, "lora_0")
    unmerged = logits(model, enc)
    save_lora(model, tmp_path / "a")
    merged_model = merge_lora(model)
    assert merged_model.lm_head.weight is merged_model.model.embed_tokens.weight  # still tied
    merged = logits(merged_model, enc)
    assert (unmerged - logits(tiny_gemma3(), enc)).abs().max() > 1.0  # the adapter really changes outputs
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    reference = manual_merge(tiny_gemma3(), tmp_path / "a", scaling=8 / 4)
    torch.testing.assert_close(merged, logits(reference, enc), atol=1e-4, rtol=1e-4)


def test_saved_adapter_is_a_peft_folder_with_the_same_logits(tmp_path):
    enc = batch()
    torch.manual_seed(0)
    model = add_lora(tiny_gemma3(), LoRAConfig(r=4, alpha=8, use_rslora=True, target_modules=ALL))
    randomize(model, "lora_0")
    path = save_lora(model, tmp_path / "lora_0")
    assert sorted(p.name for p in path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    from safetensors.torch import load_file

    vocab, hidden = model.get_input_embeddings().weight.shape
    shapes = [tuple(t.shape) for t in load_file(str(path / "adapter_model.safetensors")).values()]
    assert (vocab, hidden) not in shapes and (hidden, vocab) not in shapes  # no copy of the embedding matrix
    cfg = json.loads((path / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["use_rslora"] is True and len(cfg["target_modules"]) == 5
    reloaded = peft.PeftModel.from_pretrained(tiny_gemma3(), str(path))
    torch.testing.assert_close(logits(reloaded, enc), logits(model, enc), atol=1e-5, rtol=1e-5)
    ours = add_lora(tiny_gemma3(), load_lora(path), trainable=False)
    torch.testing.assert_close(logits(ours, enc), logits(model, enc), atol=1e-5, rtol=1e-5)
    assert load_lora(path).config == LoRAConfig(
        r=4, alpha=8, dropout=0.05, use_rslora=True, target_modules=sorted(ALL)
    )


def test_targets_are_scoped_to_the_language_model():
    model = tiny_gemma3_multimodal()
    names = resolve_target_modules(model, ALL)
    assert names and all(n.startswith("model.language_model.") for n in names)
    assert any("vision_tower" in n for n, _ in model.named_modules() if n.endswith("q_proj"))
    assert "model.language_model.embed_tokens" in names
    wrapped = add_lora(model, LoRAConfig(r=2, alpha=4, target_modules=ALL))
    lora_modules = [
        n for n, _ in wrapped.named_modules() if n.endswith(".lora_A") or n.endswith("lora_embedding_A")
    ]
    assert lora_modules and not any("vision" in n for n in lora_modules)


def test_unknown_target_names_the_bad_name_and_the_choices():
    with pytest.raises(ValueError, match=r"\['qproj'\].*q_proj"):
        resolve_target_modules(tiny_gemma3(), ["qproj", "v_proj"])


def test_tied_gradient_folding_is_the_true_derivative():
    """Directional derivative of the loss along the tied embedding LoRA factors == folded gradient."""
    torch.manual_seed(0)
    model = add_lora(
        tiny_gemma3().double(), LoRAConfig(r=3, alpha=6, dropout=0.0, target_modules=["embeddings"])
    )
    randomize(model, "lora_0")
    model.eval()
    # no padding: torch gives the padding_idx row of an embedding no gradient by design
    enc = tiny_tokenizer()(["감기 증상이 있습니다 hypertension"], return_tensors="pt")
    owners, tied = tied_parameter_groups(model)
    assert len(tied) == 2 and len(owners) == 2  # lm_head's factors are views of the embedding's

    def loss():
        return model(**enc).logits.pow(2).mean()

    loss().backward()
    torch.manual_seed(1)
    direction = [torch.randn_like(p) for _, p in owners]
    unfolded = sum(float((p.grad * d).sum()) for (_, p), d in zip(owners, direction))
    fold_tied_gradients(tied)
    predicted = sum(float((p.grad * d).sum()) for (_, p), d in zip(owners, direction))
    eps = 1e-4  # Gemma's RMSNorm computes in float32, so smaller steps only add rounding noise
    with torch.no_grad():
        for (_, p), d in zip(owners, direction):
            p += eps * d
        up = float(loss())
        for (_, p), d in zip(owners, direction):
            p -= 2 * eps * d
        down = float(loss())
    numeric = (up - down) / (2 * eps)
    assert numeric == pytest.approx(predicted, rel=1e-3)
    assert numeric != pytest.approx(unfolded, rel=1e-2)  # the output layer's share really matters


def test_load_lora_rejects_a_folder_without_adapter(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora(tmp_path)


def test_long_target_lists_stay_scoped_after_a_peft_round_trip(tmp_path):
    """PEFT rewrites >= 20 targets into short suffixes; they must still miss the vision tower."""
    every = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embeddings"]
    model = add_lora(tiny_gemma3_multimodal(num_layers=3), LoRAConfig(r=2, alpha=4, target_modules=every))
    path = save_lora(model, tmp_path / "a")
    assert load_lora(path).config.target_modules == sorted(every)
    reloaded = peft.PeftModel.from_pretrained(tiny_gemma3_multimodal(num_layers=3), str(path))
    wrapped = [n for n, m in reloaded.named_modules() if hasattr(m, "lora_A")]
    assert len(wrapped) == 3 * 7 + 2  # 7 linear layers per block, the embedding and its tied output layer
    assert not any("vision" in n for n in wrapped)
