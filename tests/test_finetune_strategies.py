"""Strategies side by side: shared phase 0, the fixed sequential baseline, replay and O-LoRA."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

# ----------------------------------------------------------------------------- O-LoRA penalty

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from finetune_helpers import run_tiny_pipeline, save_tiny_model, tiny_config_text, tiny_gemma3  # noqa: E402
from puredl.finetune import olora, pipeline  # noqa: E402
from puredl.finetune.errors import FinetuneError  # noqa: E402
from puredl.finetune.lora import LoRAConfig, add_lora, merge_lora, save_lora  # noqa: E402


def test_olora_penalty_value_and_gradient_match_a_direct_computation(tmp_path):
    torch.manual_seed(0)
    lora0 = add_lora(
        tiny_gemma3(), LoRAConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj", "embeddings"])
    )
    save_lora(lora0, tmp_path / "lora_0")
    torch.manual_seed(1)
    lora1 = add_lora(
        tiny_gemma3(), LoRAConfig(r=3, alpha=6, target_modules=["q_proj", "v_proj", "embeddings"])
    )
    save_lora(lora1, tmp_path / "lora_1")
    model = merge_lora(add_lora(tiny_gemma3(), _adapter(tmp_path / "lora_0"), trainable=False))
    model = merge_lora(add_lora(model, _adapter(tmp_path / "lora_1"), trainable=False))
    torch.manual_seed(2)
    model = add_lora(model, LoRAConfig(r=2, alpha=4, target_modules=["q_proj", "o_proj"]), name="lora_2")
    lam = 0.7
    penalty = olora.make_penalty(model, "lora_2", [tmp_path / "lora_0", tmp_path / "lora_1"], lam)()
    penalty.backward()

    # direct: every q_proj is adapted by all three; o_proj only now (no term); A stored (r, in)
    expected = torch.zeros((), dtype=torch.float64)
    grads = {}
    for i, layer in enumerate(model.base_model.model.model.layers):
        a2 = layer.self_attn.q_proj.lora_A["lora_2"].weight.detach().double().requires_grad_(True)
        term = torch.zeros((), dtype=torch.float64)
        for src in (lora0, lora1):
            prev = (
                src.base_model.model.model.layers[i]
                .self_attn.q_proj.lora_A["lora_0"]
                .weight.detach()
                .double()
            )
            term = term + torch.linalg.matrix_norm(a2 @ prev.T, ord="fro") ** 2
        expected = expected + lam * term.detach()
        (term * lam).backward()
        grads[i] = a2.grad
    assert float(penalty.detach()) == pytest.approx(float(expected), rel=1e-5) and float(penalty.detach()) > 0
    for i, layer in enumerate(model.base_model.model.model.layers):
        got = layer.self_attn.q_proj.lora_A["lora_2"].weight.grad
        torch.testing.assert_close(got.double(), grads[i], rtol=1e-5, atol=1e-8)
        assert layer.self_attn.o_proj.lora_A["lora_2"].weight.grad is None  # no earlier factor there
    assert olora.shared_modules(model, "lora_2", [tmp_path / "lora_0"]) == [
        f"base_model.model.model.layers.{i}.self_attn.q_proj" for i in range(2)
    ]


def _adapter(path: Path):
    from puredl.finetune.lora import load_lora

    return load_lora(path)


# ----------------------------------------------------------------------------- the strategies run


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One tiny run-all with every strategy; records what each phase trained on."""
    root = tmp_path_factory.mktemp("compare")
    model_dir = save_tiny_model(root / "model")
    cfg = root / "tiny.sdn"
    cfg.write_text(tiny_config_text(model_dir, root / "runs", epochs=2) + "")
    seen: list[dict] = []
    original = pipeline.train_phase

    def spy(ctx, k, model, tokenizer, work_dir, adapter_name, title, examples=None, **kwargs):
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        modules = {n.split(".lora_")[0] for n in trainable}
        seen.append({"title": title, "k": k, "modules": modules, "examples": examples, **kwargs})
        return original(ctx, k, model, tokenizer, work_dir, adapter_name, title, examples, **kwargs)

    pipeline.train_phase = spy
    try:
        summary = run_tiny_pipeline(str(cfg), compare="sequential,replay,olora")
    finally:
        pipeline.train_phase = original
    return summary, seen, root / "runs" / "tiny"


def test_phase_0_is_trained_once_and_shared_by_every_strategy(compared):
    summary, seen, run = compared
    assert [s["title"] for s in seen if s["k"] == 0] == ["phase 0"]
    assert list(summary["compare"]) == ["sequential", "replay", "olora"]
    for name, other in summary["compare"].items():
        assert other["phases"][0] == summary["phases"][0], name
        assert other["history"][:2] == summary["history"][:2], name
        assert [h["stage"] for h in other["history"]] == ["base", "phase0", "phase1", "phase2"], name
        assert (run / name / "phase2").is_dir() and not (run / name / "phase0").exists()
    assert summary["compare"]["replay"]["strategy"]["replay_ratio"] == 0.25
    assert summary["compare"]["olora"]["strategy"]["olora_lambda"] == 0.5


def test_sequential_trains_the_same_modules_as_progressive_after_phase_0(compared):
    summary, seen, run = compared
    by_title = {s["title"]: s["modules"] for s in seen}
    for k in (1, 2):
        assert by_title[f"sequential phase {k}"] == by_title[f"phase {k}"], k
        assert not any("embed_tokens" in m or "lm_head" in m for m in by_title[f"sequential phase {k}"])
    # the one LoRA's embedding factors are exactly LoRA_0's after phases 1 and 2 (frozen, not retrained)
    from safetensors.torch import load_file

    lora0 = load_file(str(run / "phase0" / "lora_0" / "adapter_model.safetensors"))
    seq2 = load_file(str(run / "sequential" / "phase2" / "lora" / "adapter_model.safetensors"))
    emb = [k for k in lora0 if "embed_tokens" in k]
    assert emb and all(torch.equal(lora0[k], seq2[k]) for k in emb)
    moved = [k for k in lora0 if "q_proj" in k and "lora_B" in k]
    assert any(not torch.equal(lora0[k], seq2[k]) for k in moved)  # the shared modules did train


def test_replay_run_trains_on_the_configured_mix(compared):
    summary, seen, run = compared
    replay = {s["k"]: s for s in seen if s["title"].startswith("replay")}
    plain = {s["k"]: s for s in seen if s["title"] == f"phase {s['k']}"}
    assert len(plain[1]["examples"]) == 12 and plain[1]["settings"].epochs == 2  # no replay there
    # tiny data: 12 term lines -> 3 replayed sentences per epoch; 4 MCQs -> 1 replay per epoch
    assert len(replay[1]["examples"]) == 2 * (12 + 3) and replay[1]["settings"].epochs == 1
    assert len(replay[2]["examples"]) == 2 * (4 + 1)
    record = summary["compare"]["replay"]["phases"][1]
    assert record["replay"] == {"per_epoch": 3, "per_phase": [6]}


def test_olora_adds_the_penalty_and_lowers_the_overlap(compared):
    summary, seen, run = compared
    log = [
        json.loads(line) for line in (run / "olora" / "phase1" / "train_log.jsonl").read_text().splitlines()
    ]
    assert log and all(entry["penalty"] > 0 for entry in log)
    assert "penalty" not in (run / "phase1" / "train_log.jsonl").read_text()

    def overlap(adapter: Path) -> float:
        prev = olora.saved_a_factors([run / "phase0" / "lora_0"])
        cur = {m: f[0] for m, f in olora.saved_a_factors([adapter]).items()}
        return float(olora.orthogonality_penalty(cur, prev, 1.0))

    # same LoRA_1 initialisation (seed + k) in both; only the penalty differs
    assert overlap(run / "olora" / "phase1" / "lora_1") < overlap(run / "phase1" / "lora_1")


def test_cli_compare_prints_and_reports_the_strategies(tmp_path, capsys):
    pytest.importorskip("puredl.finetune.metrics")
    import argparse

    from puredl.finetune import cli

    model_dir = save_tiny_model(tmp_path / "model")
    cfg = tmp_path / "real.sdn"
    text = tiny_config_text(model_dir, tmp_path / "runs", max_samples=6, max_length=96)
    cfg.write_text(text + "evaluation:\n  max_eval: 3\n")
    args = argparse.Namespace(
        finetune_command="run-all", config=str(cfg), device="cpu", model=None, resume=False, compare="replay"
    )
    assert cli.run(args) == 0
    out = capsys.readouterr().out
    assert "=== Strategy replay: merge and freeze" in out
    assert re.search(r"replay: [1-9]\d* earlier example\(s\) per epoch x 1 epoch\(s\) \(phase 0: [1-9]", out)
    assert "Strategies (same base model, same LoRA_0; single training seed" in out
    report = (tmp_path / "runs" / "tiny" / "report.md").read_text(encoding="utf-8")
    assert "### replay (replay_ratio 0.25)" in report and "## Strategy: replay" in report
    bad = argparse.Namespace(**{**vars(args), "compare": "sequential,ewc"})
    assert cli.run(bad) == 2 and "unknown strategy ['ewc']" in capsys.readouterr().err


def test_resume_after_a_finished_compare_run_trains_nothing_again(compared):
    summary, _, run = compared
    calls: list[str] = []
    original = pipeline.train_phase

    def spy(ctx, k, model, tokenizer, work_dir, adapter_name, title, examples=None, **kwargs):
        calls.append(title)
        return original(ctx, k, model, tokenizer, work_dir, adapter_name, title, examples, **kwargs)

    pipeline.train_phase = spy
    try:
        again = run_tiny_pipeline(
            str(run.parent.parent / "tiny.sdn"), resume=True, compare="sequential,replay,olora"
        )
    finally:
        pipeline.train_phase = original
    assert calls == []
    for name in ("sequential", "replay", "olora"):
        assert again["compare"][name]["history"] == summary["compare"][name]["history"], name
        assert again["compare"][name]["phases"] == summary["compare"][name]["phases"], name
    assert again["history"] == summary["history"]


def test_compare_refuses_to_repeat_the_configs_own_run(tmp_path):
    cfg = tmp_path / "tiny.sdn"
    cfg.write_text(tiny_config_text(tmp_path / "no-model", tmp_path / "runs", replay_ratio=0.25))
    with pytest.raises(FinetuneError, match="--compare replay would repeat the config's own run"):
        run_tiny_pipeline(str(cfg), compare="sequential,replay")
    assert not (tmp_path / "runs").exists()  # refused before anything was loaded or written


def test_olora_penalty_without_a_shared_module_is_zero_and_backward_still_works():
    a = torch.randn(2, 8, requires_grad=True)
    penalty = olora.orthogonality_penalty({"x.o_proj": a}, {"x.q_proj": [torch.randn(4, 8)]}, 0.5)
    penalty.backward()
    assert float(penalty.detach()) == 0.0 and torch.equal(a.grad, torch.zeros_like(a))
    with pytest.raises(ValueError, match="input size 8 now but 6 before"):
        olora.orthogonality_penalty({"m": a}, {"m": [torch.randn(4, 6)]}, 1.0)


def test_compare_needs_a_phase_after_the_shared_one(tmp_path):
    from finetune_helpers import tiny_hooks
    from puredl.finetune.config import config_from_dict

    cfg = config_from_dict(
        {
            "model": {"name": str(tmp_path / "no-model")},
            "phases": [{"name": "only", "data": "korean_text"}],
            "training": {"device": "cpu"},
            "output": {"dir": str(tmp_path / "runs")},
        }
    )
    ctx = pipeline.make_context(cfg, hooks=tiny_hooks(), out=lambda s: None)
    with pytest.raises(FinetuneError, match="--compare needs at least two phases"):
        pipeline.run_all(ctx, compare="sequential")
    assert not (tmp_path / "runs").exists()
