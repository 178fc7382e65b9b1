"""Length-grouped batches and packing on a tiny Gemma 3: same losses and gradients, less padding.

References: transformers' own ``get_length_grouped_indices`` for the grouped order; the model run
on each example alone (unpacked, or in a plain shuffle) for losses and LoRA gradients.
"""

from __future__ import annotations

import json
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from finetune_helpers import (  # noqa: E402
    TINY_CORPUS,
    run_tiny_pipeline,
    save_tiny_model,
    tiny_config_text,
    tiny_gemma3,
    tiny_gemma3_config,
    tiny_gemma3_multimodal,
    tiny_plan,  # noqa: E402
    tiny_tokenizer,
)
from puredl.finetune import trainer  # noqa: E402
from puredl.finetune.batching import (  # noqa: E402
    IGNORE_INDEX,
    EncodedExample,
    StepBatches,
    collate,
    encode_example,
    step_padding,
)
from puredl.finetune.config import config_from_dict, describe_defaults  # noqa: E402
from puredl.finetune.errors import ConfigError, FinetuneError  # noqa: E402
from puredl.finetune.length_grouping import length_grouped_order, order_generator  # noqa: E402
from puredl.finetune.lora import LoRAConfig, add_lora  # noqa: E402
from puredl.finetune.packing import check_packing_isolates, pack_examples, pack_rows  # noqa: E402
from puredl.finetune.trainer import batch_loss_sum, model_inputs, train_adapter  # noqa: E402

SLIDING = 16  # tiny_gemma3_config's sliding window: the examples below are longer than it


plan = tiny_plan  # one-step constant-LR plan (tests/finetune_helpers.py)


def encoded(n: int = 12, max_length: int = 48) -> list[EncodedExample]:
    """Examples of 6 to 48 tokens (MCQ-style prompts masked on the odd ones)."""
    tok = tiny_tokenizer()
    out = []
    for i in range(n):
        text = TINY_CORPUS[i % len(TINY_CORPUS)]
        out.append(
            encode_example(tok, text if i % 3 else text[: 4 + i], "질문:" if i % 2 else "", max_length)
        )
    return out


def model_with(layer_types: list[str] | None = None, attn: str = "sdpa", dtype=torch.float32, lora=True):
    """The tiny Gemma 3 (optionally with other layer types / attention), with a LoRA whose B is not zero."""
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(0)
    if layer_types is None:
        model = tiny_gemma3()
    else:
        cfg = tiny_gemma3_config(len(tiny_tokenizer()), num_layers=len(layer_types))
        cfg.layer_types = layer_types
        model = Gemma3ForCausalLM(cfg).eval()  # use_cache stays true here: the trainer must turn it off
    model.set_attn_implementation(attn)
    model = model.to(dtype)
    if not lora:
        return model
    model = add_lora(
        model, LoRAConfig(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "embeddings"])
    )
    with torch.no_grad():  # PEFT starts B at zero, where A gets no gradient: make every factor matter
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                p.normal_(0, 0.05)
    return model


def per_example_losses(
    model, examples, rows: list[list[int]], units: list[EncodedExample]
) -> dict[int, float]:
    """Summed token loss of each example, read off the batch of ``units`` (``rows[u]``: unit u's examples)."""
    batch = collate(units, pad_id=0)
    with torch.no_grad():
        logits = model(**model_inputs(batch)).logits[:, :-1].float()
    token = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
    )
    out = {}
    for u, members in enumerate(rows):
        start = 0
        for i in members:
            n = len(examples[i].input_ids)
            # the loss predicting token t sits at t - 1; the example's first token is never a target
            out[i] = float(token[u, start : start + n - 1].sum())
            start += n
    return out


def lora_grads(model, batch, n_targets: int) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (batch_loss_sum(model, batch) / n_targets).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------- the grouped order


@pytest.mark.parametrize(
    ("n", "group", "seed", "epoch"),
    [(8, 2, 0, 0), (37, 3, 5, 2), (400, 4, 42, 0), (1000, 2, 1, 7), (5, 8, 3, 1)],
)
def test_grouped_order_is_transformers_length_grouped_sampler(n, group, seed, epoch):
    from transformers.trainer_pt_utils import get_length_grouped_indices

    rng = random.Random(n + seed)
    lengths = [rng.randint(3, 40) for _ in range(n)]  # many ties: the stable sort must match too
    want = get_length_grouped_indices(lengths, group, generator=order_generator(seed, epoch))
    assert length_grouped_order(lengths, group, seed, epoch) == want


def test_grouped_order_is_a_reproducible_permutation_of_every_example():
    rng = random.Random(0)
    lengths = [rng.randint(3, 100) for _ in range(203)]
    steps = StepBatches(203, batch_size=4, seed=7, epochs=3, grad_accum=2, lengths=lengths)
    again = StepBatches(203, batch_size=4, seed=7, epochs=3, grad_accum=2, lengths=lengths)
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for s in range(len(steps)):
        assert steps[s] == again[s]
        for epoch, idx in steps[s]:
            seen[epoch] += idx
    for epoch in seen:
        assert sorted(seen[epoch]) == list(range(203))  # each example exactly once per epoch
    assert seen[0] != seen[1]  # each epoch its own shuffle
    other = StepBatches(203, batch_size=4, seed=8, epochs=3, grad_accum=2, lengths=lengths)
    assert [i for s in range(len(other)) for _, idx in other[s] for i in idx][:203] != seen[0]
    # the longest example comes first (an out-of-memory shows on step 1)
    assert lengths[steps[0][0][1][0]] == max(lengths)


def test_grouping_cuts_padding():
    rng = random.Random(1)
    lengths = [rng.randint(5, 120) for _ in range(512)]
    plain = StepBatches(512, batch_size=4, seed=0, epochs=1, grad_accum=1)
    grouped = StepBatches(512, batch_size=4, seed=0, epochs=1, grad_accum=1, lengths=lengths)
    plain_share, plain_real, _ = step_padding(lengths, plain)
    grouped_share, grouped_real, _ = step_padding(lengths, grouped)
    assert plain_real == grouped_real == sum(lengths)
    assert plain_share > 0.3 and grouped_share < 0.05, (plain_share, grouped_share)


def test_grouped_batches_give_the_same_per_example_losses():
    examples = encoded(24)
    model = model_with()
    lengths = [len(e.input_ids) for e in examples]
    plain = StepBatches(24, batch_size=2, seed=3, epochs=1, grad_accum=1)
    grouped = StepBatches(24, batch_size=2, seed=3, epochs=1, grad_accum=1, lengths=lengths)
    batches = {}
    for name, steps in (("plain", plain), ("grouped", grouped)):
        batches[name] = [idx for s in range(len(steps)) for _, idx in steps[s]]
    assert sorted(map(sorted, batches["plain"])) != sorted(map(sorted, batches["grouped"]))  # batches differ
    losses = {}
    for name, micro in batches.items():
        losses[name] = {}
        for idx in micro:
            losses[name].update(
                per_example_losses(model, examples, [[i] for i in idx], [examples[i] for i in idx])
            )
    assert sorted(losses["plain"]) == sorted(losses["grouped"]) == list(range(24))
    for i in range(24):
        assert losses["grouped"][i] == pytest.approx(losses["plain"][i], rel=1e-5, abs=1e-5), i


# ---------------------------------------------------------------- packing


def test_pack_rows_is_best_fit_decreasing_and_keeps_every_example():
    assert pack_rows([5, 3, 4, 2], max_length=8) == [[0, 1], [2, 3]]
    assert pack_rows([6, 6, 2, 2, 2], max_length=8) == [[0, 2], [1, 3], [4]]  # best fit, not next fit
    rng = random.Random(2)
    lengths = [rng.randint(1, 64) for _ in range(300)]
    rows = pack_rows(lengths, 64)
    assert sorted(i for r in rows for i in r) == list(range(300))
    assert all(sum(lengths[i] for i in r) <= 64 for r in rows)
    assert len(rows) <= 1.1 * sum(lengths) / 64 + 1  # nearly full rows
    with pytest.raises(ValueError, match="does not fit max_length 4"):
        pack_rows([3, 5], 4)


def test_packed_rows_restart_positions_and_mask_boundary_labels():
    a = EncodedExample([2, 5, 6], [IGNORE_INDEX, 5, 6])
    b = EncodedExample([7, 8], [7, 8])  # no prompt: its first label would otherwise be a target
    c = EncodedExample([2, 9, 9, 9, 9, 9], [IGNORE_INDEX] + [9] * 5)
    rows = pack_examples([a, b, c], max_length=6)
    batch = collate(rows, pad_id=0)
    assert "attention_mask" not in batch  # the position ids carry the boundaries
    assert batch["input_ids"].tolist() == [[2, 9, 9, 9, 9, 9], [2, 5, 6, 7, 8, 0]]
    assert batch["position_ids"].tolist() == [
        [0, 1, 2, 3, 4, 5],
        [0, 1, 2, 0, 1, 0],
    ]  # pad: a segment of its own
    assert batch["labels"].tolist()[1] == [IGNORE_INDEX, 5, 6, IGNORE_INDEX, 8, IGNORE_INDEX]
    assert sum(r.n_targets for r in rows) == sum(e.n_targets for e in (a, b, c))


LAYERS = {
    "sliding": ["sliding_attention", "sliding_attention"],
    "full": ["full_attention", "full_attention"],
    "mixed": None,  # the helper's sliding + full
}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("layers", sorted(LAYERS))
def test_packed_equals_unpacked_losses_and_lora_gradients(layers, attn):
    examples = encoded(12)
    assert max(len(e.input_ids) for e in examples) > 2 * SLIDING  # the sliding window matters inside examples
    model = model_with(LAYERS[layers], attn)
    rows = pack_rows([len(e.input_ids) for e in examples], 96)
    units = pack_examples(examples, 96)
    assert len(units) < len(examples) and any(len(r) >= 3 for r in rows)  # really packed
    packed = per_example_losses(model, examples, rows, units)
    alone = per_example_losses(model, examples, [[i] for i in range(12)], examples)
    for i in range(12):
        assert packed[i] == pytest.approx(alone[i], rel=1e-5, abs=1e-5), i

    n = sum(e.n_targets for e in examples)
    g_packed = lora_grads(model, collate(units, 0), n)
    g_alone = lora_grads(model, collate(examples, 0), n)
    assert g_packed.keys() == g_alone.keys() and any("lora_A" in k for k in g_packed)
    for key in g_alone:
        assert g_alone[key].abs().max() > 0, key
        torch.testing.assert_close(g_packed[key], g_alone[key], atol=1e-6, rtol=1e-4, msg=key)

    # the control: the same rows without restarting positions let examples see each other
    crossing = [EncodedExample(u.input_ids, u.labels) for u in units]
    leaked = per_example_losses(model, examples, rows, crossing)
    assert any(abs(leaked[i] - alone[i]) > 1e-3 for i in range(12) if rows[0][0] != i)


def test_packed_equals_unpacked_on_the_multimodal_model():
    examples = encoded(8)
    model = tiny_gemma3_multimodal()
    units = pack_examples(examples, 96)
    n = sum(e.n_targets for e in examples)
    with torch.no_grad():
        torch.testing.assert_close(
            batch_loss_sum(model, collate(units, 0)) / n, batch_loss_sum(model, collate(examples, 0)) / n
        )


def test_packed_training_equals_unpacked_training(tmp_path):
    # each step sees every example (one step per epoch), so packed and unpacked steps are the same sums;
    # float64 as in the accumulation test: Adam's 1/sqrt(v) magnifies float32 rounding in tiny gradients
    examples = encoded(12)
    units = pack_examples(examples, 96)
    after = {}
    for name, data, batch in (("unpacked", examples, 12), ("packed", units, len(units))):
        model = model_with(dtype=torch.float64)
        p = plan(batch_size=batch, epochs=3, total_steps=3, packing=name == "packed")
        result = train_adapter(model, data, p, adapter_name="lora_0", pad_id=0, work_dir=tmp_path / name)
        after[name] = (
            {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad},
            result,
        )
    (w_packed, r_packed), (w_plain, r_plain) = after["packed"], after["unpacked"]
    assert r_packed.tokens == r_plain.tokens and r_packed.input_tokens == r_plain.input_tokens
    assert r_packed.positions < r_plain.positions  # less padding computed
    assert r_packed.losses == pytest.approx(r_plain.losses, rel=1e-6)  # the loss is summed in float32
    for key in w_plain:
        torch.testing.assert_close(w_packed[key], w_plain[key], atol=1e-10, rtol=1e-8, msg=key)


def test_a_model_whose_attention_ignores_position_ids_is_refused():
    class IgnoresPositions(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, position_ids=None, **kw):
            return self.inner(input_ids=input_ids, **kw)

    examples = encoded(6)
    model = model_with(lora=False)
    check_packing_isolates(model, examples)  # Gemma 3 respects the boundaries
    with pytest.raises(FinetuneError, match="training.packing: IgnoresPositions lets packed examples attend"):
        check_packing_isolates(IgnoresPositions(model), examples)


# ---------------------------------------------------------------- resume and the trainer's records


def test_resume_continues_at_the_right_example_with_grouping(tmp_path, monkeypatch):
    examples = encoded(16)
    p = plan(batch_size=2, epochs=2, total_steps=16, checkpoint_every=3, group_by_length=True)
    seen: list[list[list[int]]] = []
    real_collate = trainer.collate

    def recording(units, pad_id, device="cpu"):
        seen.append([u.input_ids for u in units])
        return real_collate(units, pad_id, device)

    monkeypatch.setattr(trainer, "collate", recording)
    train_adapter(model_with(), examples, p, adapter_name="lora_0", pad_id=0, work_dir=tmp_path / "whole")
    whole, seen[:] = list(seen), []

    real_loss, calls = trainer.batch_loss_sum, {"n": 0}

    def stops_at_step_8(model, batch):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_loss(model, batch)

    monkeypatch.setattr(trainer, "batch_loss_sum", stops_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        train_adapter(model_with(), examples, p, adapter_name="lora_0", pad_id=0, work_dir=tmp_path / "cut")
    monkeypatch.setattr(trainer, "batch_loss_sum", real_loss)
    seen[:] = []
    result = train_adapter(
        model_with(), examples, p, adapter_name="lora_0", pad_id=0, work_dir=tmp_path / "cut", resume=True
    )
    assert result.resumed_from == 6
    assert seen == whole[6:]  # steps 7..16 see exactly the batches the uninterrupted run saw there
    lengths = [len(e.input_ids) for e in examples]
    widths = [max(map(len, b)) for b in whole]
    assert sum(w * len(b) for w, b in zip(widths, whole)) == result.positions  # restored across the resume
    assert result.input_tokens == 2 * sum(lengths)


def test_a_checkpoint_made_in_another_order_is_not_resumed(tmp_path):
    examples = encoded(8)
    grouped = plan(batch_size=2, total_steps=4, checkpoint_every=2, group_by_length=True)
    train_adapter(model_with(), examples, grouped, adapter_name="lora_0", pad_id=0, work_dir=tmp_path)
    assert (tmp_path / "checkpoints").is_dir()  # step 2's checkpoint is there
    for changed in (dict(group_by_length=False), dict(group_by_length=True, packing=True)):
        other = plan(batch_size=2, total_steps=4, checkpoint_every=2, **changed)
        with pytest.raises(FinetuneError, match="different settings"):
            train_adapter(
                model_with(),
                examples,
                other,
                adapter_name="lora_0",
                pad_id=0,
                work_dir=tmp_path,
                resume=True,
            )


def test_log_lines_count_real_tokens_and_padded_positions(tmp_path):
    examples = encoded(8)
    result = train_adapter(
        model_with(),
        examples,
        plan(batch_size=4, total_steps=2),
        adapter_name="lora_0",
        pad_id=0,
        work_dir=tmp_path,
    )
    rows = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert (
        sum(r["input_tokens"] for r in rows) == result.input_tokens == sum(len(e.input_ids) for e in examples)
    )
    assert sum(r["positions"] for r in rows) == result.positions >= result.input_tokens


# ---------------------------------------------------------------- configuration and the pipeline


def test_config_defaults_and_bad_values_are_named():
    cfg = config_from_dict({})
    assert cfg.training.group_by_length is True and cfg.training.packing is False
    assert "`training.group_by_length` | `True`" in describe_defaults()
    assert "`training.packing` | `False`" in describe_defaults()
    over = config_from_dict(
        {"training": {"packing": True}, "phases": [{"data": "medical_mcq", "packing": False}]}
    )
    assert over.phase_training(0).packing is False
    with pytest.raises(ConfigError, match=r"training.packing must be true/false, got 'yes' \(str\)"):
        config_from_dict({"training": {"packing": "yes"}})
    with pytest.raises(ConfigError, match=r"phases\[0\].group_by_length must be true/false, got 1 \(int\)"):
        config_from_dict({"phases": [{"data": "medical_mcq", "group_by_length": 1}]})
    with pytest.raises(ConfigError, match="did you mean 'training.group_by_length'"):
        config_from_dict({"training": {"group_by_lenght": True}})


def test_pipeline_packs_and_reports_the_padding(tmp_path, capsys):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg = tmp_path / "tiny.sdn"
    cfg.write_text(tiny_config_text(model_dir, tmp_path / "runs", packing=True, max_length=64))
    summary = run_tiny_pipeline(str(cfg))
    out = capsys.readouterr().out
    assert "examples packed into" in out and "batches grouped by length: padding" in out
    record = json.loads((tmp_path / "runs" / "tiny" / "phase0" / "phase_result.json").read_text())
    assert record["n_examples"] == 20 and record["steps"] < 10  # 20 examples in fewer rows of 2
    assert 0 < record["input_tokens"] <= record["positions"]
    assert len(summary["phases"]) == 3


def test_a_run_saved_before_grouping_existed_resumes_in_its_own_order():
    # its run_config.json has no group_by_length: it trained in the plain order, so only asking for
    # a different order counts as a change
    from puredl.finetune.run_state import config_changes

    old = {"training": {"batch_size": 2}}
    same = {"training": {"batch_size": 2, "group_by_length": False, "packing": False, "precision": "fp32"}}
    assert config_changes(old, same) == []
    grouped = {"training": {"batch_size": 2, "group_by_length": True, "packing": False, "precision": "fp32"}}
    assert config_changes(old, grouped) == ["training.group_by_length"]
