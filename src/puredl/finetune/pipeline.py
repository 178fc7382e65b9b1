"""Progressive LoRA: phase k = base + merged LoRA_0..k-1 (frozen) + LoRA_k (trainable).

::

    base ──measure──> phase 0: base + LoRA_0          -> runs/NAME/phase0/lora_0
                     phase 1: [base + LoRA_0] + LoRA_1 -> runs/NAME/phase1/lora_1
                     phase 2: [base + LoRA_0 + LoRA_1] + LoRA_2 ...

After each phase every capability taught so far is measured, the forgetting check runs over
that history and the report is rewritten, so an interrupted run still has a report. With
``--compare sequential`` one LoRA is also trained straight through the phases without
freezing or merging, and its forgetting is shown beside the progressive run's.

>>> phase_dir(Path("runs/demo"), 1).as_posix()
'runs/demo/phase1'
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from puredl._atomic import is_replaceable, mark_as_puredl_output, move_into, replace_dir, temp_path
from puredl._optional import require
from puredl.finetune import run_state
from puredl.finetune.batching import encode_examples
from puredl.finetune.config import FinetuneConfig, config_to_dict
from puredl.finetune.devices import describe_device, is_main_process, resolve_device
from puredl.finetune.errors import FinetuneError
from puredl.finetune.hooks import PipelineHooks, default_hooks
from puredl.finetune.loading import load_model_and_tokenizer, resolve_dtype
from puredl.finetune.lora import LoRAConfig, add_lora, load_lora, merge_lora, save_lora, trainable_parameters
from puredl.finetune.preflight import check_output_folder, check_phases
from puredl.finetune.run_state import (  # noqa: F401  (re-exported: the run-folder API lived here)
    RESULT_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    adapter_dir,
    phase_dir,
    write_json,
)
from puredl.finetune.run_state import clear_run_state as _clear_run_state
from puredl.finetune.run_state import finished_phase as _finished_phase
from puredl.finetune.run_state import read_json as _read_json
from puredl.finetune.run_state import save_progress as _save_progress
from puredl.finetune.trainer import TrainResult, make_plan, train_adapter

Printer = Callable[[str], None]


@dataclasses.dataclass
class RunContext:
    """Everything a run needs besides the model: config, device, hooks, output."""

    cfg: FinetuneConfig
    device: str
    hooks: PipelineHooks
    resume: bool = False
    out: Printer = print
    restart: bool = False  # a fresh run may discard an interrupted run's checkpoints (--restart)

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    def capability(self, k: int) -> str:
        return self.hooks.capabilities.get(self.cfg.phases[k].data, self.cfg.phases[k].data)

    def eval_paths(self) -> dict[str, str | None]:
        return {self.capability(k): p.eval_path for k, p in enumerate(self.cfg.phases)}

    @property
    def all_capabilities(self) -> list[str]:
        caps: list[str] = []
        for k in range(len(self.cfg.phases)):
            if self.capability(k) not in caps:
                caps.append(self.capability(k))
        return caps


def make_context(
    cfg: FinetuneConfig,
    device: str | None = None,
    resume: bool = False,
    hooks: PipelineHooks | None = None,
    out: Printer = print,
) -> RunContext:
    """Resolve the device (``--device`` beats the config) and the hooks."""
    torch = require("torch", "llm", "fine-tuning")
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    resolved = join_data_parallel(resolve_device(device or cfg.training.device))
    if not is_main_process():
        out = _silent  # rank 0 speaks for the run
    return RunContext(cfg, resolved, hooks or default_hooks(), resume, out)


def join_data_parallel(device: str) -> str:
    """Under torchrun (``WORLD_SIZE`` > 1): join the process group; return this rank's device.

    NCCL when the run is on a GPU (rank i on ``cuda:LOCAL_RANK``), gloo on CPU. Without torchrun
    the device is returned unchanged and no process group is made.

    >>> join_data_parallel("cpu")  # no WORLD_SIZE in the environment
    'cpu'
    """
    from puredl import distributed

    if distributed.world_size() <= 1:
        return device
    world = distributed.init("nccl" if device.startswith("cuda") else "gloo")
    return world.device if world.backend == "nccl" else device


def _data_parallel_note() -> str:
    """``; data parallel on N ranks (each forwards 1/N of every batch)`` under torchrun, else ``""``."""
    from puredl.finetune.trainer import data_parallel_world

    world = data_parallel_world()[1]
    return f"; data parallel on {world} ranks (each forwards 1/{world} of every batch)" if world > 1 else ""


def _silent(text: str) -> None:
    """The printer of ranks other than 0."""


# ---------------------------------------------------------------- models


def load_base(ctx: RunContext) -> tuple[Any, Any]:
    """The base model and tokenizer on the run's device."""
    dtype = resolve_dtype(ctx.cfg.model.dtype, ctx.device, ctx.cfg.training.bf16)
    return load_model_and_tokenizer(
        ctx.cfg.model.name,
        device=ctx.device,
        dtype=dtype,
        revision=ctx.cfg.model.revision,
        config_path=ctx.cfg.source,
    )


def merge_adapters(model: Any, adapter_dirs: list[Path], out: Printer | None = None) -> Any:
    """Apply saved adapters one after another, each frozen and merged (the phase-k starting model)."""
    for path in adapter_dirs:
        if out:
            out(f"  merging {path}")
        model = merge_lora(add_lora(model, load_lora(path), trainable=False))
    return model


def lora_config_for(ctx: RunContext, k: int) -> LoRAConfig:
    """Phase k's LoRA settings as a ``LoRAConfig``."""
    return LoRAConfig(**ctx.cfg.phase_lora(k))


def _amp_dtype(ctx: RunContext) -> Any:
    torch = require("torch", "llm", "fine-tuning")
    return torch.bfloat16 if (ctx.device.startswith("cuda") and ctx.cfg.training.bf16) else None


# ---------------------------------------------------------------- one phase


def load_phase_data(ctx: RunContext, k: int, tokenizer: Any, split: str = "train") -> list[Any]:
    """Encoded training examples of phase k."""
    phase = ctx.cfg.phases[k]
    settings = ctx.cfg.phase_training(k)
    raw = ctx.hooks.load_examples(
        phase.data, split=split, path=phase.data_path, max_samples=settings.max_samples, seed=settings.seed
    )
    encoded, dropped = encode_examples(tokenizer, raw, settings.max_length)
    source = phase.data_path or "bundled"
    ctx.out(
        f"Loaded {len(raw)} {phase.data} examples ({source}, {split} split)"
        + (f"; {dropped} dropped (nothing left to predict)" if dropped else "")
    )
    if not encoded:
        raise FinetuneError(f"phase {k} ({phase.name}): no usable training examples in {source} {phase.data}")
    return encoded


def train_phase(
    ctx: RunContext,
    k: int,
    model: Any,
    tokenizer: Any,
    work_dir: Path,
    adapter_name: str,
    title: str,
    examples: list[Any] | None = None,
) -> tuple[Any, TrainResult, int]:
    """Train the model's trainable adapter on phase k's data; returns (model, result, n_examples)."""
    settings = ctx.cfg.phase_training(k)
    if examples is None:
        examples = load_phase_data(ctx, k, tokenizer)
    plan = make_plan(settings, len(examples))
    ctx.out(
        f"Training {plan.epochs} epoch(s) = {plan.total_steps} steps (batch {plan.batch_size} x accum "
        f"{plan.grad_accum}, lr {plan.learning_rate:g} {plan.scheduler}, warmup {plan.warmup}, "
        f"max_length {plan.max_length}){_data_parallel_note()}"
    )
    result = train_adapter(
        model,
        examples,
        plan,
        adapter_name=adapter_name,
        pad_id=tokenizer.pad_token_id,
        work_dir=work_dir,
        device=ctx.device,
        amp_dtype=_amp_dtype(ctx),
        resume=ctx.resume,
        desc=title,
    )
    if result.resumed_from is not None:
        ctx.out(f"  (resumed from step {result.resumed_from})")
    return model, result, len(examples)


def loss_trend(losses: list[float]) -> str:
    """``loss 3.65 -> 3.10 (mean of the first/last 4 steps)``: single batches are too noisy to compare.

    >>> loss_trend([4.0, 3.0, 2.0, 1.0])
    'loss 4.000 -> 1.000 (mean of the first/last 1 steps)'
    """
    if not losses:
        return "no steps"
    n = max(1, len(losses) // 4)
    first, last = sum(losses[:n]) / n, sum(losses[-n:]) / n
    return f"loss {first:.3f} -> {last:.3f} (mean of the first/last {n} steps)"


def describe_lora(model: Any, cfg: LoRAConfig, name: str) -> str:
    n_train = sum(p.numel() for p in trainable_parameters(model).values())
    n_all = sum(p.numel() for p in model.parameters())
    scale = f"rsLoRA scale {cfg.scaling:g}" if cfg.use_rslora else f"scale {cfg.scaling:g}"
    return (
        f"Creating {name.replace('lora_', 'LoRA_')} (r={cfg.r}, alpha={cfg.alpha:g}, {scale}, dropout "
        f"{cfg.dropout:g}, targets {', '.join(cfg.target_modules)}): {n_train:,} trainable parameters "
        f"({100 * n_train / max(1, n_all):.2f}% of {n_all:,})"
    )


def finish_phase(
    ctx: RunContext,
    k: int,
    model: Any,
    work: Path,
    target: Path,
    adapter_name: str,
    result: Any,
    n_examples: int,
    **extra,
) -> dict:
    """Save a trained adapter (rank 0), drop its checkpoints, and record the phase in its result file."""
    if is_main_process():
        save_lora(model, target, adapter_name=adapter_name)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)  # only needed until the adapter is saved
    phase = ctx.cfg.phases[k]
    record = {
        "index": k,
        "name": phase.name,
        "data": phase.data,
        "capability": ctx.capability(k),
        "adapter_dir": str(target),
        "train_losses": result.losses,
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "tokens": result.tokens,
        "n_examples": n_examples,
        "resumed_from": result.resumed_from,
        **extra,
    }
    if is_main_process():
        write_json(work / RESULT_FILE, record)
    return record


def run_single_phase(ctx: RunContext, k: int, base: Any, tokenizer: Any) -> tuple[Any, dict]:
    """Phase k on ``base`` (base + merged 0..k-1): add LoRA_k, train, save; returns (model, record)."""
    torch = require("torch", "llm", "fine-tuning")
    work = phase_dir(ctx.run_dir, k)
    name = f"lora_{k}"
    lora_cfg = lora_config_for(ctx, k)
    if not ctx.resume and is_main_process():
        shutil.rmtree(work / "checkpoints", ignore_errors=True)  # a fresh phase never resumes stale state
    examples = load_phase_data(ctx, k, tokenizer)
    torch.manual_seed(ctx.cfg.phase_training(k).seed + k)  # LoRA_k initialisation
    model = add_lora(base, lora_cfg, trainable=True, name=name)
    ctx.out(describe_lora(model, lora_cfg, name))
    model, result, n_examples = train_phase(ctx, k, model, tokenizer, work, name, f"phase {k}", examples)
    target = adapter_dir(ctx.run_dir, k)
    record = finish_phase(
        ctx, k, model, work, target, name, result, n_examples, lora=dataclasses.asdict(lora_cfg)
    )
    ctx.out(f"\u2713 LoRA_{k} saved to {target} ({loss_trend(result.losses)}, {result.seconds:.0f} s)")
    return model, record


# ---------------------------------------------------------------- evaluation


def measure(ctx: RunContext, model: Any, tokenizer: Any, capabilities: list[str], stage: str) -> dict | None:
    """Run the capability metrics (None when evaluation is off or the metrics module is absent)."""
    if not ctx.cfg.evaluation.enabled or not capabilities:
        return None
    if ctx.hooks.evaluate is None:
        ctx.out("  (no metrics module installed: skipping validation)")
        return None
    t0 = time.perf_counter()
    model.eval()
    metrics = ctx.hooks.evaluate(
        model,
        tokenizer,
        capabilities,
        data_paths=ctx.eval_paths(),
        max_eval=ctx.cfg.evaluation.max_eval,
        device=ctx.device,
        taught=taught_counts(ctx),
    )
    shown = ", ".join(f"{cap} {_headline(metrics.get(cap, {}), cap)}" for cap in capabilities)
    ctx.out(f"Validation ({stage}): {shown} [{time.perf_counter() - t0:.0f} s]")
    return metrics


def taught_counts(ctx: RunContext) -> dict[str, int | None]:
    """Data kind -> how many leading train records its phase trains on (None: all), for the taught probes."""
    return {p.data: ctx.cfg.phase_training(k).max_samples for k, p in enumerate(ctx.cfg.phases)}


def _headline(entry: dict, capability: str = "") -> str:
    try:  # the metrics module's wording, when it is installed
        from puredl.finetune.metrics import headline

        return headline(capability, entry)
    except ImportError:
        pass
    if "perplexity" in entry:
        return f"ppl={entry['perplexity']:.2f}"
    if "accuracy" in entry:
        return f"acc={100 * entry['accuracy']:.1f}%"
    score = entry.get("score")
    return f"score={score:.4g}" if isinstance(score, (int, float)) else "n/a"


def capabilities_through(ctx: RunContext, k: int) -> list[str]:
    """Capabilities taught by phases 0..k, in order, without repeats."""
    caps: list[str] = []
    for j in range(k + 1):
        if ctx.capability(j) not in caps:
            caps.append(ctx.capability(j))
    return caps


def forgetting_of(ctx: RunContext, history: list[dict]) -> list[dict]:
    """Run the forgetting check over a history (empty when there is nothing to check)."""
    if ctx.hooks.check_forgetting is None or len(history) < 2:
        return []
    return ctx.hooks.check_forgetting(history, threshold=ctx.cfg.evaluation.forgetting_threshold)


# ---------------------------------------------------------------- run-all


def run_all(ctx: RunContext, compare: str | None = None) -> tuple[dict, int]:
    """Every phase in order, with validation and the report. Returns (summary, exit code)."""
    cfg = ctx.cfg
    t_start = time.perf_counter()
    run_dir = ctx.run_dir
    state = run_state.begin_run(ctx)  # sweeps temporaries; checks --resume / an interrupted run
    title = f"=== puredl progressive LoRA: {cfg.project} ==="
    ctx.out(title)
    base, tokenizer = load_base(ctx)  # first, so a model that cannot load leaves no run folder behind
    check_phases(ctx, base)  # every phase's data and targets, before phase 0 trains
    if is_main_process():
        if not ctx.resume:
            _clear_run_state(ctx)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "run_config.json", config_to_dict(cfg))
    n_params = sum(p.numel() for p in base.parameters())
    ctx.out(
        f"Model {cfg.model.name} ({type(base).__name__}, {n_params / 1e6:.0f}M parameters) on "
        f"{describe_device(ctx.device)}; {len(cfg.phases)} phase(s) -> {run_dir}"
    )

    history: list[dict] = list(state["history"][:1]) if state and state.get("history") else []
    if not history:
        metrics = measure(ctx, base, tokenizer, ctx.all_capabilities, "base model")
        if metrics is not None:
            history = [{"stage": "base", "taught": None, "metrics": metrics}]
            if is_main_process():
                write_json(
                    run_dir / STATE_FILE, {"config": config_to_dict(cfg), "phases": [], "history": history}
                )
    else:
        ctx.out("Base model metrics: reused from the saved run state")
    phases: list[dict] = []
    saved_records = {r["index"]: r for r in (state or {}).get("phases", [])}
    saved_hist = {h["stage"]: h for h in (state or {}).get("history", [])}
    summary: dict = {}
    current = base
    for k, phase in enumerate(cfg.phases):
        ctx.out("")
        ctx.out(f"=== Phase {k}: {phase.name} ({phase.data} -> {ctx.capability(k)}) ===")
        if k:
            merged = "LoRA_0" if k == 1 else f"LoRA_0..{k - 1}"
            ctx.out(f"Base + {merged} merged and frozen; LoRA_{k} trainable")
        record = _finished_phase(ctx, k)
        skipped = record is not None
        if skipped:
            ctx.out(f"\u2713 already done (--resume): {record['adapter_dir']}")
            model = add_lora(
                current, load_lora(Path(record["adapter_dir"])), trainable=False, name=f"lora_{k}"
            )
            record = saved_records.get(k, record)
        else:
            model, record = run_single_phase(ctx, k, current, tokenizer)
        phases.append(record)
        stage = f"phase{k}"
        if skipped and stage in saved_hist:
            history.append(saved_hist[stage])
        else:
            metrics = measure(ctx, model, tokenizer, capabilities_through(ctx, k), f"after phase {k}")
            if metrics is not None:
                history.append({"stage": stage, "taught": ctx.capability(k), "metrics": metrics})
        current = merge_lora(model)
        summary = _summary(ctx, phases, history, time.perf_counter() - t_start)
        _save_progress(ctx, summary)

    if compare == "sequential":
        summary["sequential"] = run_sequential(ctx, tokenizer, history[:1])
    elif compare:
        raise FinetuneError(f"unknown --compare {compare!r}; the only baseline is 'sequential'")
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    return summary, finish(ctx, summary)


def finish(ctx: RunContext, summary: dict) -> int:
    """Write the report, print the table and decide the exit code."""
    report = _save_progress(ctx, summary)
    ctx.out("")
    ctx.out(f"=== {summary['name']}: done in {summary['total_seconds']:.0f} s ===")
    ctx.out(format_summary_table(ctx, summary))
    if summary.get("sequential"):
        seq = summary["sequential"]
        ctx.out("")
        ctx.out("--compare sequential (one LoRA, no freezing or merging):")
        ctx.out(format_summary_table(ctx, seq))
        ctx.out(
            f"forgetting flags: progressive {len(summary['forgetting'])}, sequential {len(seq['forgetting'])}"
        )
    names = " + ".join(f"LoRA_{p['index']}" for p in summary["phases"])
    ctx.out(
        f"Final model: base + {names} (adapters under {ctx.run_dir}; "
        f"`puredl finetune merge --config {ctx.cfg.source or 'CONFIG'} --out DIR` writes it merged)"
    )
    if report:
        ctx.out(f"Report: {report}")
    if summary["forgetting"]:
        level = "ERROR" if ctx.cfg.evaluation.fail_on_forgetting else "WARNING"
        for flag in summary["forgetting"]:
            ctx.out(f"{level}: catastrophic forgetting: {_describe_flag(flag)}")
        if ctx.cfg.evaluation.fail_on_forgetting:
            return 3
    else:
        ctx.out("No catastrophic forgetting flagged." if summary["history"] else "")
    return 0


def _describe_flag(flag: dict) -> str:
    return flag.get("message") or ", ".join(f"{k}={v}" for k, v in flag.items())


def format_summary_table(ctx: RunContext, summary: dict) -> str:
    """The phase-by-capability table (the report module's, or a plain fallback)."""
    if ctx.hooks.format_table is not None:
        return ctx.hooks.format_table(summary)
    lines = ["stage        " + "  ".join(f"{c:>14}" for c in ctx.all_capabilities)]
    for entry in summary["history"]:
        cells = [
            _headline(entry["metrics"][c]) if c in entry["metrics"] else "-" for c in ctx.all_capabilities
        ]
        lines.append(f"{entry['stage']:<12} " + "  ".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


def _summary(ctx: RunContext, phases: list[dict], history: list[dict], seconds: float) -> dict:
    return {
        "name": ctx.cfg.project,
        "model": ctx.cfg.model.name,
        "device": describe_device(ctx.device),
        "config": ctx.cfg.source,
        "phases": phases,
        "history": history,
        "forgetting": forgetting_of(ctx, history),
        "forgetting_threshold": ctx.cfg.evaluation.forgetting_threshold,
        "total_seconds": round(seconds, 1),
    }


# ---------------------------------------------------------------- one phase from the CLI


def run_phase_only(ctx: RunContext, k: int) -> dict:
    """``puredl finetune phase N``: base + saved LoRA_0..N-1 merged, then train LoRA_N."""
    if not 0 <= k < len(ctx.cfg.phases):
        raise FinetuneError(f"phase {k} does not exist; the config has phases 0..{len(ctx.cfg.phases) - 1}")
    missing = [j for j in range(k) if not (adapter_dir(ctx.run_dir, j) / "adapter_config.json").is_file()]
    if missing:
        raise FinetuneError(
            f"phase {k} needs the adapters of phases {missing} under {ctx.run_dir}; run "
            f"`puredl finetune phase {missing[0]} --config {ctx.cfg.source}` (or run-all) first"
        )
    phase = ctx.cfg.phases[k]
    ctx.out(f"=== Phase {k}: {phase.name} ({phase.data} -> {ctx.capability(k)}) ===")
    base, tokenizer = load_base(ctx)
    check_phases(ctx, base, [k])
    run_state.begin_phase(ctx, k)
    base = merge_adapters(base, [adapter_dir(ctx.run_dir, j) for j in range(k)], ctx.out)
    model, record = run_single_phase(ctx, k, base, tokenizer)
    metrics = measure(ctx, model, tokenizer, capabilities_through(ctx, k), f"after phase {k}")
    record["metrics"] = metrics
    if is_main_process():
        write_json(phase_dir(ctx.run_dir, k) / RESULT_FILE, record)
    return record


# ---------------------------------------------------------------- sequential baseline


def run_sequential(ctx: RunContext, tokenizer: Any, base_history: list[dict]) -> dict:
    """One LoRA (phase 0's settings) trained through every phase without freezing or merging."""
    torch = require("torch", "llm", "fine-tuning")
    peft = require("peft", "llm", "fine-tuning")
    st = require("safetensors.torch", "llm", "fine-tuning")
    seq_dir = ctx.run_dir / "sequential"
    ctx.out("")
    ctx.out("=== Baseline: one LoRA trained sequentially through all phases (no freezing, no merging) ===")
    base, _ = load_base(ctx)
    lora_cfg = lora_config_for(ctx, 0)
    torch.manual_seed(ctx.cfg.phase_training(0).seed)
    model = add_lora(base, lora_cfg, trainable=True, name="sequential")
    ctx.out(describe_lora(model, lora_cfg, "sequential"))
    history = list(base_history)
    phases: list[dict] = []
    t0 = time.perf_counter()
    for k, phase in enumerate(ctx.cfg.phases):
        work = seq_dir / f"phase{k}"
        target = work / "lora"
        saved = _read_json(work / RESULT_FILE) if ctx.resume else None
        ctx.out(f"--- sequential phase {k}: {phase.name} ---")
        if saved is not None and (target / "adapter_model.safetensors").is_file():
            weights = st.load_file(str(target / "adapter_model.safetensors"))
            peft.set_peft_model_state_dict(model, weights, adapter_name="sequential")
            ctx.out(f"\u2713 already done (--resume): {target}")
            record = saved
        else:
            model, result, n = train_phase(ctx, k, model, tokenizer, work, "sequential", f"sequential {k}")
            record = finish_phase(ctx, k, model, work, target, "sequential", result, n)
        phases.append(record)
        metrics = measure(ctx, model, tokenizer, capabilities_through(ctx, k), f"sequential after phase {k}")
        if metrics is not None:
            history.append({"stage": f"phase{k}", "taught": ctx.capability(k), "metrics": metrics})
    summary = {
        "name": f"{ctx.cfg.project} (sequential baseline)",
        "model": ctx.cfg.model.name,
        "device": describe_device(ctx.device),
        "phases": phases,
        "history": history,
        "forgetting": forgetting_of(ctx, history),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    if is_main_process():
        write_json(seq_dir / SUMMARY_FILE, summary)
        if ctx.hooks.write_report is not None:
            ctx.hooks.write_report(seq_dir, summary)
    return summary


# ---------------------------------------------------------------- merge and validate


def adapters_of_run(ctx: RunContext, upto: int | None = None) -> list[Path]:
    """Saved adapters of phases 0..upto (all phases by default); error when one is missing."""
    last = len(ctx.cfg.phases) - 1 if upto is None else upto
    dirs = [adapter_dir(ctx.run_dir, k) for k in range(last + 1)]
    missing = [str(d) for d in dirs if not (d / "adapter_config.json").is_file()]
    if missing:
        raise FinetuneError(
            f"missing adapters {missing}; run `puredl finetune run-all --config {ctx.cfg.source}` first"
        )
    return dirs


def merge_to_folder(ctx: RunContext, adapters: list[Path], out_dir: Path, force: bool = False) -> Path:
    """Base + adapters merged in order, written as a Hugging Face model folder (with tokenizer).

    ``out_dir`` must be new, empty or a folder puredl wrote (it carries the ``.puredl`` marker);
    ``force`` writes into any folder, replacing same-named files and keeping the rest.
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir, force)  # before the slow part
    base, tokenizer = load_base(ctx)
    model = merge_adapters(base, adapters, ctx.out)
    tmp = temp_path(out_dir)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    mark_as_puredl_output(tmp, "merged model")
    if force and not is_replaceable(out_dir, tmp):
        move_into(tmp, out_dir)
    else:
        replace_dir(tmp, out_dir)
    ctx.out(f"\u2713 merged model ({len(adapters)} adapter(s)) written to {out_dir}")
    return out_dir


def validate(ctx: RunContext, adapters: list[Path], capabilities: list[str] | None = None) -> dict:
    """Capability metrics of base + adapters (merged in order)."""
    if ctx.hooks.evaluate is None:
        raise FinetuneError("validation needs puredl.finetune.metrics, which is not installed")
    base, tokenizer = load_base(ctx)
    model = merge_adapters(base, adapters, ctx.out)
    caps = capabilities or ctx.all_capabilities
    stage = f"base + {len(adapters)} adapter(s)" if adapters else "base model"
    metrics = measure(ctx, model, tokenizer, caps, stage)
    return metrics or {}


# ---------------------------------------------------------------- small helpers


def stderr_printer(text: str) -> None:  # pragma: no cover - used by scripts that keep stdout clean
    print(text, file=sys.stderr)
