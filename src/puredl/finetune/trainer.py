"""The training loop of one phase: read it top to bottom (nanoGPT style).

micro-batches -> token-weighted loss -> backward -> (every grad_accum) fold tied grads, clip,
AdamW step, schedule -> JSONL log line, tqdm bar -> checkpoint every N steps. ``resume=True``
restarts from the newest complete checkpoint and replays the same data order, so a phase that
was killed (even with SIGKILL) finishes as if it had never stopped.

Divergence stops a phase before it can do harm: the loss and the gradient norm are checked
before every optimizer step (a finite loss with an infinite gradient does not step), the
weights after it, and a finite loss far above the phase's first losses counts as divergence
too. Nothing non-finite is ever checkpointed, so the checkpoint the error names is good.

Gradient accumulation is exact: each micro-batch's summed token loss is divided by the number
of target tokens in the whole optimizer step, so ``batch 2 x accum 2`` equals ``batch 4``.
Data parallel (``torchrun``, a process group of world size N > 1): every rank walks the same
global micro-batches, forwards only its ``shard`` of each, and after the step's backward passes
the LoRA gradients (and the step loss) are summed over ranks. Each rank divides by the token
count of the *global* step, so the sum is exactly the single-process mean: N processes with
``batch_size`` B train the same updates as one process with B. Only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from puredl._atomic import write_text
from puredl._faults import fault_point
from puredl._optional import require
from puredl.distributed import shard
from puredl.finetune.batching import IGNORE_INDEX, EncodedExample, StepBatches, collate
from puredl.finetune.checkpoint import (
    CorruptCheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    set_aside_from,
)
from puredl.finetune.devices import autocast, is_main_process, oom_guard
from puredl.finetune.errors import FinetuneError, TrainingDivergedError
from puredl.finetune.lora import fold_tied_gradients, tied_parameter_groups
from puredl.finetune.output_layer import cross_entropy_sum, decoder_and_head, head_logits
from puredl.finetune.schedule import lr_factor, warmup_steps_for

LOG_FILE = "train_log.jsonl"
# a step loss above max(FACTOR x the phase's first losses, first + MARGIN) is divergence, not noise
DIVERGENCE_FACTOR = 4.0
DIVERGENCE_MARGIN = 10.0
REFERENCE_STEPS = 3  # the phase's first steps whose mean loss is the reference


@dataclass
class TrainPlan:
    """The resolved numbers of one phase's training."""

    epochs: int
    batch_size: int
    grad_accum: int
    learning_rate: float
    scheduler: str
    warmup: int
    total_steps: int
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    checkpoint_every: int = 0
    gradient_checkpointing: bool = False
    max_length: int = 128
    group_by_length: bool = False  # TrainingSection's default is true; a plan built by hand shuffles plainly
    packing: bool = False  # the examples are packed rows (the pipeline packs them)


@dataclass
class TrainResult:
    """What a phase's training produced."""

    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0
    resumed_from: int | None = None
    input_tokens: int = 0  # real (non-pad) input tokens of the steps run
    positions: int = 0  # positions computed (rows x padded width); 1 - input_tokens / positions is padding


def make_plan(settings: Any, n_examples: int) -> TrainPlan:
    """Resolve a ``TrainingSection`` against the number of examples (steps, warm-up)."""
    n_micro = math.ceil(n_examples / settings.batch_size) * settings.epochs
    total = math.ceil(n_micro / settings.grad_accum)
    if settings.max_steps:
        total = min(total, settings.max_steps)
    return TrainPlan(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        grad_accum=settings.grad_accum,
        learning_rate=settings.learning_rate,
        scheduler=settings.scheduler,
        warmup=warmup_steps_for(total, settings.warmup_steps, settings.warmup_ratio),
        total_steps=total,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        seed=settings.seed,
        checkpoint_every=settings.checkpoint_every,
        gradient_checkpointing=settings.gradient_checkpointing,
        max_length=settings.max_length,
        group_by_length=settings.group_by_length,
        packing=settings.packing,
    )


def token_loss_sum(logits: Any, labels: Any) -> Any:
    """Summed next-token cross-entropy over positions whose label is not -100."""
    torch = require("torch", "llm", "fine-tuning")
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def batch_loss_sum(model: Any, batch: dict[str, Any]) -> Any:
    """Summed next-token loss of a batch, computing output logits only where a label is taken.

    With a 262k-token vocabulary the output layer dominates the step; prompt and padding
    positions need no logits, so only the labelled positions go through it. Falls back to the
    model's full forward for architectures without a separate decoder.
    """
    require("torch", "llm", "fine-tuning")
    parts = decoder_and_head(model)
    inputs = model_inputs(batch)
    if parts is None:
        logits = model(**inputs).logits
        return token_loss_sum(logits, batch["labels"])
    decoder, head, softcap = parts
    hidden = decoder(**inputs).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    logits = head_logits(head, softcap, hidden[:, :-1][keep])
    return cross_entropy_sum(logits, targets[keep])


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The model's inputs of a batch: ids plus its padding mask, or a packed batch's position ids.

    Never a KV cache: with one, transformers does not read packed position ids as example
    boundaries (a model whose config says ``use_cache: true`` would let packed examples mix).

    >>> sorted(model_inputs({"input_ids": 1, "position_ids": 2, "labels": 3}))
    ['input_ids', 'position_ids', 'use_cache']
    """
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    return {**inputs, "use_cache": False}


def data_parallel_world() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group this process trains in; (0, 1) without one.

    >>> data_parallel_world()
    (0, 1)
    """
    dist = sys.modules.get("torch.distributed")  # never import torch just to find out
    if dist is None or not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def broadcast_trainable(params: list[Any]) -> None:
    """Give every rank rank 0's trainable weights (same start even if an initialisation differed)."""
    torch = require("torch", "llm", "fine-tuning")
    for p in params:
        with torch.no_grad():
            torch.distributed.broadcast(p.data, src=0)


def sum_gradients_over_ranks(params: list[Any], step_loss: float) -> float:
    """Sum ``params``' gradients and the step loss over all ranks (missing gradients count as zero).

    Each rank's loss was already divided by the global step's token count, so the sum is the
    global mean. One all_reduce per (dtype, device) keeps the round trips few.
    """
    torch = require("torch", "llm", "fine-tuning")
    groups: dict[tuple, list[Any]] = {}
    for p in params:
        if p.grad is None:  # a rank whose shard of every micro-batch was empty
            p.grad = torch.zeros_like(p)
        groups.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n
    total = torch.tensor([step_loss], dtype=torch.float64, device=params[0].device)
    torch.distributed.all_reduce(total)
    return float(total)


def train_adapter(
    model: Any,
    examples: list[EncodedExample],
    plan: TrainPlan,
    *,
    adapter_name: str,
    pad_id: int,
    work_dir: Path,
    device: str = "cpu",
    amp_dtype: Any = None,
    resume: bool = False,
    desc: str = "train",
    penalty: Callable[[], Any] | None = None,
    between_steps: Callable[[], None] | None = None,
) -> TrainResult:
    """Train the model's trainable LoRA parameters on ``examples`` according to ``plan``.

    ``penalty`` (O-LoRA's orthogonality term) is added to each optimizer step's loss once; the
    logged ``loss`` stays the data loss and the penalty is logged beside it. ``between_steps``
    runs after every step (the adaptive thread policy re-reads the machine's load there).
    """
    torch = require("torch", "llm", "fine-tuning")
    tqdm = require("tqdm", "llm", "progress bars").tqdm
    if not examples:
        raise FinetuneError(f"{desc}: no training examples")
    owners, tied = tied_parameter_groups(model)
    if not owners:
        raise FinetuneError(f"{desc}: the model has no trainable parameters (add a trainable LoRA first)")
    params = [p for _, p in owners]
    rank, world = data_parallel_world()
    optimizer = torch.optim.AdamW(params, lr=plan.learning_rate, weight_decay=plan.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, plan.total_steps, plan.warmup, plan.scheduler)
    )
    lengths = [len(e.input_ids) for e in examples]
    groups = StepBatches(
        len(examples),
        plan.batch_size,
        plan.seed,
        plan.epochs,
        plan.grad_accum,
        lengths=lengths if plan.group_by_length else None,
    )
    fingerprint = {
        "n_examples": len(examples),
        "batch_size": plan.batch_size,
        "grad_accum": plan.grad_accum,
        "epochs": plan.epochs,
        "total_steps": plan.total_steps,
        "seed": plan.seed,
        "group_by_length": plan.group_by_length,  # both change the data order
        "packing": plan.packing,
        "trainable": [n for n, _ in owners],
    }
    ckpt_dir = work_dir / "checkpoints"
    log_path = work_dir / LOG_FILE
    result = TrainResult(steps=0)
    start = 0
    elapsed_before = 0.0
    if resume and (loaded := _load_newest_usable(ckpt_dir, model, adapter_name, optimizer)) is not None:
        ckpt, state = loaded
        if state.get("fingerprint") != fingerprint:
            raise FinetuneError(
                f"checkpoint {ckpt} was made with different settings or data "
                f"({state.get('fingerprint')} != {fingerprint}); delete {ckpt_dir} or run without --resume"
            )
        start = int(state["step"])
        result.losses = list(state["losses"])
        result.tokens = int(state["tokens"])
        result.input_tokens = int(state.get("input_tokens", 0))
        result.positions = int(state.get("positions", 0))
        result.resumed_from = start
        elapsed_before = float(state.get("seconds", 0.0))
        schedule.last_epoch = start
        for group, base in zip(optimizer.param_groups, schedule.base_lrs):
            group["lr"] = base * lr_factor(start, plan.total_steps, plan.warmup, plan.scheduler)
        _truncate_log(log_path, start)
    else:
        torch.manual_seed(plan.seed)  # dropout masks; the data order is a function of (seed, epoch)
        if is_main_process():
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text("")

    if plan.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if world > 1:
        broadcast_trainable(params)  # also covers a resumed checkpoint read by every rank
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(
        total=plan.total_steps,
        initial=start,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        disable=not is_main_process(),
    )
    try:
        for step in range(start, plan.total_steps):
            group = groups[step]
            n_tokens = sum(examples[i].n_targets for _, idx in group for i in idx)
            n_real = sum(lengths[i] for _, idx in group for i in idx)
            n_positions = sum(len(idx) * max(lengths[i] for i in idx) for _, idx in group)  # before sharding
            step_loss = 0.0
            with oom_guard(
                device, f"{desc} step {step + 1}", plan.batch_size, plan.max_length, plan.grad_accum
            ):
                for _, idx in group:
                    mine = shard(idx, rank, world)  # the whole micro-batch when world == 1
                    if not mine:
                        continue  # fewer examples than ranks: this rank adds a zero gradient
                    batch = collate([examples[i] for i in mine], pad_id, device)
                    with autocast(device, amp_dtype):
                        loss = batch_loss_sum(model, batch) / n_tokens
                    loss.backward()
                    step_loss += float(loss.detach())
                    del loss
                penalty_value = None
                if penalty is not None:  # once per step; each rank adds 1/world so the sum is one penalty
                    extra = penalty() / world
                    extra.backward()
                    penalty_value = float(extra.detach()) * world
                fold_tied_gradients(tied)  # before the sum: only the owners are reduced
                if world > 1:  # before the checks, so every rank stops together
                    step_loss = sum_gradients_over_ranks(params, step_loss)
                # the norm before clipping (clipping at inf multiplies by exactly 1: no change)
                max_norm = plan.max_grad_norm if plan.max_grad_norm > 0 else math.inf
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
                problem = divergence(step_loss, grad_norm, result.losses)
                if problem:
                    if "exploded" in problem and is_main_process():
                        set_aside_from(ckpt_dir, step)  # the weights saved after step `step` made this loss
                    raise TrainingDivergedError(_diverged_message(desc, problem, step + 1, ckpt_dir, plan))
                fault_point("train_step")  # mid-step: gradients made, weights not yet changed
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                finite = [torch.isfinite(p).all().to(params[0].device) for p in params]
                if not bool(torch.stack(finite).all()):  # one device sync per step, not one per tensor
                    raise TrainingDivergedError(
                        _diverged_message(desc, "the weights became non-finite", step + 1, ckpt_dir, plan)
                    )
            result.losses.append(step_loss)
            result.tokens += n_tokens
            result.input_tokens += n_real
            result.positions += n_positions
            seconds = elapsed_before + time.perf_counter() - t0
            if is_main_process():
                entry = {
                    "step": step + 1,
                    "epoch": group[0][0] + 1,
                    "loss": round(step_loss, 6),
                    "lr": lr,
                    "grad_norm": round(grad_norm, 6),
                    "tokens": n_tokens,
                    "input_tokens": n_real,
                    "positions": n_positions,
                    "seconds": round(seconds, 3),
                }
                if penalty_value is not None:
                    entry["penalty"] = round(penalty_value, 8)
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
            bar.update(1)
            if between_steps is not None:
                between_steps()
            done = step + 1
            if plan.checkpoint_every and done % plan.checkpoint_every == 0 and done < plan.total_steps:
                if is_main_process():
                    save_checkpoint(
                        ckpt_dir,
                        model,
                        adapter_name,
                        optimizer,
                        {
                            "step": done,
                            "losses": result.losses,
                            "tokens": result.tokens,
                            "input_tokens": result.input_tokens,
                            "positions": result.positions,
                            "seconds": seconds,
                            "fingerprint": fingerprint,
                        },
                    )
    finally:
        bar.close()
        model.eval()
        if plan.gradient_checkpointing and hasattr(model, "gradient_checkpointing_disable"):
            model.gradient_checkpointing_disable()
    result.steps = plan.total_steps
    result.seconds = elapsed_before + time.perf_counter() - t0
    return result


def divergence(loss: float, grad_norm: float, earlier: list[float]) -> str | None:
    """Why a step must not be taken (non-finite loss or gradient, exploding loss), or None.

    >>> divergence(2.0, 1.0, [3.0, 2.5]) is None
    True
    >>> divergence(2.0, float("inf"), [3.0])
    'the gradient norm became inf (loss 2)'
    >>> divergence(90.0, 1.0, [3.0, 2.5])
    'the loss exploded to 90 (the first steps averaged 2.75)'
    """
    if not math.isfinite(loss):
        return f"the loss became {loss}"
    if not math.isfinite(grad_norm):
        return f"the gradient norm became {grad_norm} (loss {loss:g})"
    first = earlier[:REFERENCE_STEPS]
    if first:
        reference = sum(first) / len(first)
        if loss > max(DIVERGENCE_FACTOR * reference, reference + DIVERGENCE_MARGIN):
            return f"the loss exploded to {loss:g} (the first steps averaged {reference:g})"
    return None


def _diverged_message(desc: str, problem: str, step: int, ckpt_dir: Path, plan: TrainPlan) -> str:
    """One line: what diverged where, which checkpoint is good (or that there is none), what to do."""
    good = latest_checkpoint(ckpt_dir)
    saved = (
        f"the last good checkpoint {good} is intact"
        if good is not None
        else f"no checkpoint yet (one is saved every {plan.checkpoint_every} steps)"
        if plan.checkpoint_every
        else "no checkpoint yet (training.checkpoint_every is 0)"
    )
    return (
        f"{desc}: training diverged at step {step}: {problem}; nothing from this step was saved and {saved}. "
        f"Lower the learning rate ({plan.learning_rate:g}) and rerun with --resume "
        "(see 'When things go wrong' in docs/finetune.md)"
    )


def _load_newest_usable(
    ckpt_dir: Path, model: Any, adapter_name: str, optimizer: Any
) -> tuple[Path, dict[str, Any]] | None:
    """Load the newest checkpoint that reads back whole; an unreadable one is named and skipped."""
    found = list_checkpoints(ckpt_dir)
    broken: list[str] = []
    for path in reversed(found):
        try:
            state = load_checkpoint(path, model, adapter_name, optimizer)
        except CorruptCheckpointError as exc:
            broken.append(str(exc))
            print(f"[puredl] warning: {exc}; trying the one before it", file=sys.stderr)
            continue
        return path, state
    if broken:
        raise FinetuneError(
            f"cannot resume: {broken[0]}, and no earlier checkpoint is usable; delete {ckpt_dir} "
            "to restart this phase from its start"
        )
    return None


def _truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone)."""
    if not log_path.is_file() or not is_main_process():
        return
    kept = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by the kill
    write_text(log_path, "".join(k + "\n" for k in kept))
