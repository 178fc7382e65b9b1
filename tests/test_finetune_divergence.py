"""Divergence on a tiny Gemma 3 (issue 14): nothing non-finite is stepped or saved, the message
names the checkpoint that is really good, corrupted checkpoints fall back, batches are lazy."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
from safetensors.torch import load_file  # noqa: E402

from finetune_helpers import TINY_CORPUS, tiny_gemma3, tiny_tokenizer  # noqa: E402
from puredl.finetune import trainer  # noqa: E402
from puredl.finetune.batching import encode_example  # noqa: E402
from puredl.finetune.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint  # noqa: E402
from puredl.finetune.config import TrainingSection  # noqa: E402
from puredl.finetune.errors import FinetuneError, TrainingDivergedError  # noqa: E402
from puredl.finetune.lora import LoRAConfig, add_lora, trainable_parameters  # noqa: E402
from puredl.finetune.trainer import TrainPlan, make_plan, train_adapter  # noqa: E402

WIDE = ["q_proj", "v_proj", "down_proj", "embeddings"]  # enough reach for a big lr to blow the loss up


def plan(**kw) -> TrainPlan:
    base = dict(epochs=2, batch_size=2, grad_accum=1, learning_rate=1e-2, scheduler="constant", warmup=0)
    base.update(total_steps=8, seed=0, max_grad_norm=1.0, checkpoint_every=1)
    base.update(kw)
    return TrainPlan(**base)


def examples(n: int = 8):
    tok = tiny_tokenizer()
    return [encode_example(tok, TINY_CORPUS[i], "질문:" if i % 2 else "", 40) for i in range(n)]


def model(targets=("q_proj", "v_proj")):
    return add_lora(tiny_gemma3(), LoRAConfig(r=2, alpha=4, dropout=0.0, target_modules=list(targets)))


def train(m, work: Path, **kw):
    return train_adapter(m, examples(), plan(**kw), adapter_name="lora_0", pad_id=0, work_dir=work)


def weights(m) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainable_parameters(m).items()}


class InfiniteGradient(torch.autograd.Function):
    """Identity forward (the loss stays finite), infinite gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def poison_call(monkeypatch, at: int, how) -> None:
    calls = {"n": 0}
    real = trainer.batch_loss_sum

    def poisoned(model, batch):
        calls["n"] += 1
        loss = real(model, batch)
        return how(loss) if calls["n"] == at else loss

    monkeypatch.setattr(trainer, "batch_loss_sum", poisoned)


def test_finite_loss_with_infinite_gradient_does_not_step(tmp_path, monkeypatch):
    poison_call(monkeypatch, 3, InfiniteGradient.apply)
    m = model()
    with pytest.raises(TrainingDivergedError, match=r"step 3: the gradient norm became (inf|nan)"):
        train(m, tmp_path)
    saved = load_file(str(tmp_path / "checkpoints" / "step_000002" / "adapter" / "adapter_model.safetensors"))
    now = peft.get_peft_model_state_dict(m, adapter_name="lora_0")
    assert saved.keys() == now.keys()
    for key in saved:  # the bad gradient never reached the weights: still exactly the step-2 ones
        assert torch.equal(now[key], saved[key]), key


def test_no_checkpoint_yet_is_said_so(tmp_path, monkeypatch):
    poison_call(monkeypatch, 2, lambda loss: loss * float("nan"))
    with pytest.raises(TrainingDivergedError) as err:
        train(model(), tmp_path, checkpoint_every=5)
    assert "no checkpoint yet" in str(err.value) and "last good checkpoint" not in str(err.value)
    assert not list_checkpoints(tmp_path / "checkpoints")


def test_a_finite_exploding_loss_is_divergence(tmp_path):
    m = model(WIDE)
    with pytest.raises(TrainingDivergedError, match="exploded") as err:
        train(m, tmp_path, learning_rate=1e6)
    # the checkpoint taken after the exploding update is set aside; the one named is older and sane
    good = latest_checkpoint(tmp_path / "checkpoints")
    assert good is None or str(good) in str(err.value)
    assert list((tmp_path / "checkpoints").glob("diverged_step_*"))
    assert "Lower the learning rate" in str(err.value)


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    m = model()
    with torch.no_grad():
        next(iter(trainable_parameters(m).values())).fill_(float("nan"))
    opt = torch.optim.AdamW(list(trainable_parameters(m).values()))
    with pytest.raises(TrainingDivergedError, match="non-finite"):
        save_checkpoint(tmp_path, m, "lora_0", opt, {"step": 1, "losses": [], "tokens": 0})
    assert not list(tmp_path.iterdir())


def _reference(tmp_path: Path) -> dict[str, torch.Tensor]:
    m = model()
    train(m, tmp_path / "ref", total_steps=4, epochs=1)
    return weights(m)


def test_a_corrupted_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    want = _reference(tmp_path)
    work = tmp_path / "run"
    train(model(), work, total_steps=4, epochs=1)
    # the last checkpoints are steps 2 and 3; damage the newest
    newest = latest_checkpoint(work / "checkpoints")
    assert newest.name == "step_000003"
    (newest / "optimizer.safetensors").write_bytes(b"\x00garbage")
    m = model()
    result = train_adapter(
        m,
        examples(),
        plan(total_steps=4, epochs=1),
        adapter_name="lora_0",
        pad_id=0,
        work_dir=work,
        resume=True,
    )
    assert result.resumed_from == 2
    assert "step_000003 is unreadable" in capsys.readouterr().err
    for name, value in want.items():
        torch.testing.assert_close(weights(m)[name], value, atol=1e-6, rtol=1e-5)


def test_no_usable_checkpoint_says_to_delete_it(tmp_path):
    work = tmp_path / "run"
    train(model(), work, total_steps=4, epochs=1)
    for ckpt in list_checkpoints(work / "checkpoints"):
        (ckpt / "trainer_state.json").write_text("{not json")
    with pytest.raises(FinetuneError, match=r"unreadable.*delete .*checkpoints"):
        train_adapter(
            model(),
            examples(),
            plan(total_steps=4, epochs=1),
            adapter_name="lora_0",
            pad_id=0,
            work_dir=work,
            resume=True,
        )


def test_a_huge_epoch_count_with_max_steps_starts_at_once(tmp_path):
    settings = TrainingSection(epochs=100_000_000, max_steps=2, batch_size=2, checkpoint_every=0)
    p = make_plan(settings, 8)
    assert p.total_steps == 2
    t0 = time.perf_counter()
    result = train_adapter(model(), examples(), p, adapter_name="lora_0", pad_id=0, work_dir=tmp_path)
    assert result.steps == 2 and time.perf_counter() - t0 < 60
