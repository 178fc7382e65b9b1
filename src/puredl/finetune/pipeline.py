"""Progressive LoRA: phase k = base + merged LoRA_0..k-1 (frozen) + LoRA_k (trainable).

::

    base ──measure──> phase 0: base + LoRA_0          -> runs/NAME/phase0/lora_0
                     phase 1: [base + LoRA_0] + LoRA_1 -> runs/NAME/phase1/lora_1
                     phase 2: [base + LoRA_0 + LoRA_1] + LoRA_2 ...

After each phase the capabilities are measured, the forgetting check runs over that history and
the report is rewritten, so an interrupted run still has a report. ``--compare`` runs other
strategies (``puredl.finetune.strategies``: sequential, replay, O-LoRA) on the same base model
and the same LoRA_0 (phase 0 is trained once), under ``runs/NAME/STRATEGY/``, and the report
puts them side by side.

>>> phase_dir(Path("runs/demo"), 1).as_posix()
'runs/demo/phase1'
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from puredl._atomic import is_replaceable, mark_as_puredl_output, move_into, replace_dir, temp_path
from puredl._optional import require
from puredl.finetune import run_state, threads
from puredl.finetune.batching import describe_padding, encode_examples
from puredl.finetune.config import FinetuneConfig, config_to_dict
from puredl.finetune.devices import describe_device, is_main_process, resolve_device
from puredl.finetune.errors import FinetuneError
from puredl.finetune.forgetting import forgotten, learning_gains
from puredl.finetune.hooks import PipelineHooks, default_hooks
from puredl.finetune.loading import load_model_and_tokenizer, resolve_dtype
from puredl.finetune.lora import LoRAConfig, add_lora, load_lora, merge_lora, save_lora, trainable_parameters
from puredl.finetune.olora import make_penalty, shared_modules
from puredl.finetune.packing import check_packing_isolates, pack_examples
from puredl.finetune.preflight import check_output_folder, check_phases
from puredl.finetune.replay import mix_replay
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
from puredl.finetune.strategies import Strategy, configured, parse_compare, restrict_trainable
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
    threads: Any = None  # the applied puredl.finetune.threads.ThreadPolicy (None: torch as it is)

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
    # before torch loads: OpenMP reads OMP_WAIT_POLICY once, at load (puredl.finetune.threads)
    policy = threads.start(cfg.training.thread_policy, cfg.training.num_threads)
    resolved = join_data_parallel(resolve_device(device or cfg.training.device))
    if not is_main_process():
        out = _silent  # rank 0 speaks for the run
    return RunContext(cfg, resolved, hooks or default_hooks(), resume, out, threads=policy)


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
    dtype = resolve_dtype(ctx.cfg.model.dtype, ctx.device, ctx.cfg.training.precision)
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
    """The autocast dtype of training (``training.precision``), None for float32."""
    from puredl.finetune.devices import amp_dtype

    return amp_dtype(ctx.cfg.training.precision)


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
    settings: Any = None,
    penalty: Callable[[], Any] | None = None,
) -> tuple[Any, TrainResult, int]:
    """Train the model's trainable adapter on phase k's data; returns (model, result, n_examples).

    ``settings`` replaces phase k's training settings (replay runs its epochs as one pass);
    ``penalty`` is added to every step's loss (O-LoRA).
    """
    settings = settings or ctx.cfg.phase_training(k)
    if examples is None:
        examples = load_phase_data(ctx, k, tokenizer)
    units = examples
    if settings.packing:
        check_packing_isolates(model, examples, ctx.device)
        units = pack_examples(examples, settings.max_length)
    plan = make_plan(settings, len(units))
    ctx.out(
        f"Training {plan.epochs} epoch(s) = {plan.total_steps} steps (batch {plan.batch_size} x accum "
        f"{plan.grad_accum}, lr {plan.learning_rate:g} {plan.scheduler}, warmup {plan.warmup}, "
        f"max_length {plan.max_length}){_data_parallel_note()}"
    )
    ctx.out(f"  {describe_padding(examples, units, plan)}")
    result = train_adapter(
        model,
        units,
        plan,
        adapter_name=adapter_name,
        pad_id=tokenizer.pad_token_id,
        work_dir=work_dir,
        device=ctx.device,
        amp_dtype=_amp_dtype(ctx),
        resume=ctx.resume,
        desc=title,
        penalty=penalty,
        between_steps=ctx.threads.between_steps if ctx.threads is not None else None,
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
        "input_tokens": result.input_tokens,
        "positions": result.positions,  # 1 - input_tokens / positions of them were padding
        "n_examples": n_examples,
        "resumed_from": result.resumed_from,
        **extra,
    }
    if is_main_process():
        write_json(work / RESULT_FILE, record)
    return record


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
    """Every phase in order, with validation and the report. Returns (summary, exit code).

    Reads top to bottom: load the base model, measure it, train the config's run (phase 0 and
    the later phases), then each ``--compare`` strategy on the same base and the same LoRA_0,
    then the report.
    """
    cfg, t_start = ctx.cfg, time.perf_counter()
    t = cfg.training
    others = parse_compare(compare, t.replay_ratio, t.olora_lambda)  # a typo fails before any work
    main = configured(t.replay_ratio, t.olora_lambda)
    for strategy in others:
        if (strategy.one_lora, strategy.replay_ratio, strategy.olora_lambda) == (
            main.one_lora,
            main.replay_ratio,
            main.olora_lambda,
        ):
            raise FinetuneError(
                f"--compare {strategy.name} would repeat the config's own run (training.replay_ratio "
                f"{t.replay_ratio:g}, training.olora_lambda {t.olora_lambda:g}); leave it out of --compare"
            )
    state = run_state.begin_run(ctx)  # sweeps temporaries; checks --resume / an interrupted run
    ctx.out(f"=== puredl progressive LoRA: {cfg.project} ===")

    if others and len(cfg.phases) < 2:
        raise FinetuneError("--compare needs at least two phases: every strategy shares phase 0")

    # 1. the base model (first, so a model that cannot load leaves no run folder behind)
    base, tokenizer = load_base(ctx)
    check_phases(ctx, base)  # every phase's data and targets, before phase 0 trains
    if is_main_process():
        if not ctx.resume:
            _clear_run_state(ctx)
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(ctx.run_dir / "run_config.json", config_to_dict(cfg))
    n_params = sum(p.numel() for p in base.parameters())
    ctx.out(
        f"Model {cfg.model.name} ({type(base).__name__}, {n_params / 1e6:.0f}M parameters) on "
        f"{describe_device(ctx.device)}; {len(cfg.phases)} phase(s) -> {ctx.run_dir}"
    )
    if ctx.threads is not None and ctx.device == "cpu":
        ctx.out(ctx.threads.describe())

    # 2. every capability of the base model (the row every strategy starts from)
    history = _base_history(ctx, base, tokenizer, state)

    # 3. the config's run: phase 0 (shared by every strategy), then phases 1..
    summary: dict = {"compare": {}}

    def progress(run: dict) -> None:  # after each phase: summary, run state and report on disk
        summary.update(run)
        _save_progress(ctx, summary)

    run_strategy(ctx, main, base, tokenizer, history, saved=state, on_phase=progress)
    del base  # the merged model: each strategy below starts from a fresh base (one model in memory)

    # 4. each --compare strategy: a fresh base, the same LoRA_0, then its own phases 1..
    if others and not summary["phases"]:
        raise FinetuneError("--compare needs phase 0 to have run")
    for strategy in others:
        fresh, _ = load_base(ctx)
        shared = summary["history"][:2]  # base and phase 0
        saved = _read_json(strategy_dir(ctx, strategy) / SUMMARY_FILE) if ctx.resume else None
        summary["compare"][strategy.name] = run_strategy(
            ctx, strategy, fresh, tokenizer, shared, phase0=summary["phases"][0], saved=saved
        )
        _save_progress(ctx, summary)

    # 5. the report
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    return summary, finish(ctx, summary)


def _base_history(ctx: RunContext, base: Any, tokenizer: Any, state: dict | None) -> list[dict]:
    """``[{"stage": "base", ...}]``: every capability of the base model (reused on --resume)."""
    if state and state.get("history"):
        ctx.out("Base model metrics: reused from the saved run state")
        return list(state["history"][:1])
    metrics = measure(ctx, base, tokenizer, ctx.all_capabilities, "base model")
    if metrics is None:
        return []
    history = [{"stage": "base", "taught": None, "metrics": metrics}]
    if is_main_process():
        write_json(
            ctx.run_dir / STATE_FILE, {"config": config_to_dict(ctx.cfg), "phases": [], "history": history}
        )
    return history


def finish(ctx: RunContext, summary: dict) -> int:
    """Write the report, print the tables and decide the exit code."""
    report = _save_progress(ctx, summary)
    ctx.out("")
    ctx.out(f"=== {summary['name']}: done in {summary['total_seconds']:.0f} s ===")
    ctx.out(format_summary_table(ctx, summary))
    gains = learning_gains(summary["history"])
    if gains:
        ctx.out("What each phase learned (against the base model, same items):")
        for gain in gains:
            ctx.out(f"- {gain['message']}")
    names = " + ".join(f"LoRA_{p['index']}" for p in summary["phases"])
    ctx.out(
        f"Final model: base + {names} (adapters under {ctx.run_dir}; "
        f"`puredl finetune merge --config {ctx.cfg.source or 'CONFIG'} --out DIR` writes it merged)"
    )
    if report:
        ctx.out(f"Report: {report}")
    flagged = forgotten(summary["forgetting"])  # only FORGOTTEN counts; RETAINED/INCONCLUSIVE do not
    if flagged:
        level = "ERROR" if ctx.cfg.evaluation.fail_on_forgetting else "WARNING"
        for flag in flagged:
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
    lines = []
    for name, run in [("progressive", summary), *(summary.get("compare") or {}).items()]:
        lines.append(f"{name}:")
        lines.append("stage        " + "  ".join(f"{c:>14}" for c in ctx.all_capabilities))
        for entry in run["history"]:
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
    earlier = [adapter_dir(ctx.run_dir, j) for j in range(k)]
    base = merge_adapters(base, earlier, ctx.out)
    strategy = configured(ctx.cfg.training.replay_ratio, ctx.cfg.training.olora_lambda)
    model, record = _train_strategy_phase(ctx, strategy, k, base, tokenizer, earlier, {})
    metrics = measure(ctx, model, tokenizer, capabilities_through(ctx, k), f"after phase {k}")
    record["metrics"] = metrics
    if is_main_process():
        write_json(phase_dir(ctx.run_dir, k) / RESULT_FILE, record)
    return record


# ---------------------------------------------------------------- strategies (the phase loop)


def strategy_dir(ctx: RunContext, strategy: Strategy) -> Path:
    """Where a strategy's adapters go: the run folder for the config's run, else ``run_dir/NAME``."""
    return ctx.run_dir if strategy.name == "progressive" else ctx.run_dir / strategy.name


def strategy_adapter_dir(ctx: RunContext, strategy: Strategy, k: int) -> Path:
    """``run_dir/phaseK/lora_K`` (progressive), ``run_dir/NAME/phaseK/lora_K``, sequential ``.../lora``."""
    folder = strategy_dir(ctx, strategy) / f"phase{k}"
    return folder / ("lora" if strategy.one_lora else f"lora_{k}")


def run_strategy(
    ctx: RunContext,
    strategy: Strategy,
    base: Any,
    tokenizer: Any,
    history: list[dict],
    phase0: dict | None = None,
    saved: dict | None = None,
    on_phase: Callable[[dict], None] | None = None,
) -> dict:
    """Every phase of one strategy on ``base``; returns its summary (phases, history, forgetting).

    ``history`` holds the stages already measured (the base model; with ``phase0``, phase 0 too).
    ``phase0`` is the shared phase 0's record: its adapter is loaded instead of trained again.
    ``saved`` is what an interrupted run saved (``--resume``).
    """
    t0 = time.perf_counter()
    history = list(history)
    saved_hist = {h["stage"]: h for h in (saved or {}).get("history", [])}
    phases: list[dict] = []
    adapters: list[Path] = []
    encoded: dict[int, list[Any]] = {}  # phase -> training examples (replay draws from them)
    model = current = base
    if strategy.name != "progressive" or strategy.replay_ratio or strategy.olora_lambda:
        ctx.out("")
        ctx.out(f"=== Strategy {strategy.describe()} ===")
    for k, phase in enumerate(ctx.cfg.phases):
        ctx.out("")
        ctx.out(f"=== {_phase_title(strategy, k)}: {phase.name} ({phase.data} -> {ctx.capability(k)}) ===")
        name = "sequential" if strategy.one_lora else f"lora_{k}"
        stage = f"phase{k}"
        if k == 0 and phase0 is not None:  # shared: trained and measured once, by the config's run
            model = _load_shared_phase0(ctx, strategy, current, Path(phase0["adapter_dir"]), name)
            record = phase0
        else:
            target = strategy_adapter_dir(ctx, strategy, k)
            record = _finished_phase(ctx, k, target.parent, target)
            done_before = record is not None
            if done_before:
                ctx.out(f"\u2713 already done (--resume): {target}")
                model = _reload_phase(strategy, current, target, name)
            else:
                model, record = _train_strategy_phase(ctx, strategy, k, current, tokenizer, adapters, encoded)
            if done_before and stage in saved_hist:
                history.append(saved_hist[stage])  # measured before the interruption
            else:
                caps = _measured_capabilities(ctx, k)
                metrics = measure(ctx, model, tokenizer, caps, f"{strategy.name} after phase {k}")
                if metrics is not None:
                    history.append({"stage": stage, "taught": ctx.capability(k), "metrics": metrics})
        phases.append(record)
        adapters.append(Path(record["adapter_dir"]))
        current = model if strategy.one_lora else merge_lora(model)
        run = _summary(ctx, phases, history, time.perf_counter() - t0)
        run["strategy"] = strategy.settings()
        if strategy.name != "progressive":
            run["name"] = f"{ctx.cfg.project} ({strategy.name})"
            if is_main_process():
                write_json(strategy_dir(ctx, strategy) / SUMMARY_FILE, run)
        if on_phase is not None:
            on_phase(run)
    return run


def _phase_title(strategy: Strategy, k: int) -> str:
    return f"Phase {k}" if strategy.name == "progressive" else f"{strategy.name} phase {k}"


def _measured_capabilities(ctx: RunContext, k: int) -> list[str]:
    """Capabilities taught so far, or all of them with ``evaluation.measure_untaught``."""
    return ctx.all_capabilities if ctx.cfg.evaluation.measure_untaught else capabilities_through(ctx, k)


def _load_shared_phase0(ctx: RunContext, strategy: Strategy, base: Any, path: Path, name: str) -> Any:
    """The shared LoRA_0 on ``base`` (trainable for sequential, which continues it); checked equal."""
    model = add_lora(base, load_lora(path), trainable=strategy.one_lora, name=name)
    _check_same_adapter(model, name, path)
    ctx.out(f"Phase 0 shared with the progressive run: {path} (trained once, identical adapter)")
    return model


def _check_same_adapter(model: Any, name: str, path: Path) -> None:
    """Raise unless the model's adapter ``name`` holds exactly the weights saved in ``path``."""
    torch = require("torch", "llm", "fine-tuning")
    peft = require("peft", "llm", "fine-tuning")
    st = require("safetensors.torch", "llm", "fine-tuning")
    saved = st.load_file(str(path / "adapter_model.safetensors"))
    live = peft.get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)
    differ = [k for k in saved if k not in live or not torch.equal(saved[k], live[k].detach().cpu())]
    if differ or set(live) != set(saved):
        raise FinetuneError(f"shared phase 0: the adapter loaded from {path} differs in {differ[:3]}")


def _reload_phase(strategy: Strategy, current: Any, target: Path, name: str) -> Any:
    """A finished phase's adapter back on the model (--resume)."""
    if not strategy.one_lora:
        return add_lora(current, load_lora(target), trainable=False, name=name)
    peft = require("peft", "llm", "fine-tuning")
    st = require("safetensors.torch", "llm", "fine-tuning")
    weights = st.load_file(str(target / "adapter_model.safetensors"))
    peft.set_peft_model_state_dict(current, weights, adapter_name=name)
    return current


def _train_strategy_phase(
    ctx: RunContext,
    strategy: Strategy,
    k: int,
    current: Any,
    tokenizer: Any,
    adapters: list[Path],
    encoded: dict[int, list[Any]],
) -> tuple[Any, dict]:
    """Phase k of ``strategy``: set up the trainable LoRA, mix replay, add the penalty, train, save."""
    torch = require("torch", "llm", "fine-tuning")
    target = strategy_adapter_dir(ctx, strategy, k)
    work = target.parent
    if not ctx.resume and is_main_process():
        shutil.rmtree(work / "checkpoints", ignore_errors=True)  # a fresh phase never resumes stale state
    encoded[k] = load_phase_data(ctx, k, tokenizer)
    extra: dict[str, Any] = {"strategy": strategy.name}
    if strategy.one_lora:  # continue the one LoRA on the modules the progressive phase k trains
        name, model = "sequential", current
        wanted = set(lora_config_for(ctx, k).target_modules)
        kept = restrict_trainable(model, name, wanted)
        has = set(load_lora(adapters[0]).config.target_modules)
        extra["trainable_modules"] = sorted(wanted & has)
        if wanted - has:
            ctx.out(
                f"  note: the one LoRA has no factors on {sorted(wanted - has)} (LoRA_0 did not adapt them)"
            )
        ctx.out(f"Continuing the one LoRA on {', '.join(extra['trainable_modules'])} ({len(kept)} tensors)")
    else:
        name, lora_cfg = f"lora_{k}", lora_config_for(ctx, k)
        torch.manual_seed(ctx.cfg.phase_training(k).seed + k)  # LoRA_k initialisation
        model = add_lora(current, lora_cfg, trainable=True, name=name)
        ctx.out(describe_lora(model, lora_cfg, name))
        extra["lora"] = dataclasses.asdict(lora_cfg)
    settings, examples = ctx.cfg.phase_training(k), encoded[k]
    if strategy.replay_ratio and k:
        earlier = [encoded.get(j) or load_phase_data(ctx, j, tokenizer) for j in range(k)]
        mix = mix_replay(examples, earlier, strategy.replay_ratio, settings.epochs, settings.seed, k)
        ctx.out(mix.describe())
        settings = dataclasses.replace(settings, epochs=1)  # the epochs are blocks of mix.examples
        examples = mix.examples
        extra["replay"] = {"per_epoch": mix.per_epoch, "per_phase": mix.replayed_per_phase}
    penalty = None
    if strategy.olora_lambda and k:
        penalty = make_penalty(model, name, adapters, strategy.olora_lambda)
        shared = shared_modules(model, name, adapters)
        ctx.out(
            f"O-LoRA penalty (lambda {strategy.olora_lambda:g}) over {len(shared)} module(s) "
            f"shared with LoRA_0..{k - 1}"
        )
        extra["olora"] = {"lambda": strategy.olora_lambda, "modules": len(shared)}
    title = _phase_title(strategy, k).lower()
    model, result, n = train_phase(
        ctx, k, model, tokenizer, work, name, title, examples, settings=settings, penalty=penalty
    )
    record = finish_phase(ctx, k, model, work, target, name, result, n, **extra)
    shown = name.replace("lora_", "LoRA_")
    ctx.out(f"\u2713 {shown} saved to {target} ({loss_trend(result.losses)}, {result.seconds:.0f} s)")
    return model, record


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
