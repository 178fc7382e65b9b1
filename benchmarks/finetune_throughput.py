"""Fine-tuning throughput: puredl's phase loop against transformers' Trainer + PEFT (and TRL's SFTTrainer).

The same training on both sides: the run config's model (the embedded Gemma 3 270M by default),
each phase's training examples tokenized once by puredl (prompt masked with -100, ``<eos>``
closing the text, the phase's ``max_length``), the phase's LoRA (rank, alpha, rsLoRA, target
modules, through the same ``peft.LoraConfig``; dropout off so both compute the same losses;
initialised from the same seed), batch size, gradient accumulation, learning rate, warm-up,
clipping and precision. Every phase trains on the base model (the earlier phases' adapters,
merged, would not change the cost of a step). Each measurement runs in a fresh process, tools
alternating (puredl, Trainer, puredl, Trainer, ...); the first ``--warmup`` optimizer steps are
not timed.

What "the same data order" means. puredl walks its own batches (a shuffled, or length-grouped,
order fixed by the seed). The Trainer rows come in three orders:

- ``same``: Trainer is handed puredl's micro-batches, example for example (read off puredl's
  forward passes in the puredl run before it). Same batches, same padding: the first-step losses
  must agree, and the speed ratio is the cost of one step of the same work;
- ``default``: Trainer's own shuffled sampler (what a user gets), other batches and padding;
- ``grouped``: Trainer with ``group_by_length=True`` (batches of similar lengths, less padding).

Throughput is counted in tokens the model really processed, per second: real (non-pad)
positions, labelled positions (the loss's targets) and all positions including padding; the
ratio puredl/tool compares real tokens per second, so orders with more padding do not win
by wasting work. Peak memory is the child process's peak RSS (``resource.getrusage``), plus
``torch.cuda.max_memory_allocated`` on a GPU.

Thread policies (``--policies torch,passive,adaptive,torch:1``) are applied identically to both
tools (``puredl.finetune.threads``, the wait policy set before torch loads), so a row's ratio is
at equal thread settings; a Trainer user gets the ``torch`` policy's row. ``--load`` keeps one
core busy for the whole run (benchmarks/busy.py).

Usage (about 2-3 min per phase x tool x repeat x policy at --steps 5 on 2 CPU cores)::

    python benchmarks/finetune_throughput.py --phases 0,1,2 --steps 5 --repeats 3 \\
        --out benchmarks/results/finetune_throughput_DATE.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from busy import busy_core, load_average  # noqa: E402  (beside this file)

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE.parent / "configs" / "embedded.sdn"
RESULT_MARK = "@@RESULT "
ORDERS = ("same", "default", "grouped")
HF_TOOLS = ("trainer", "sft")
LOSS_TOLERANCE = {"fp32": 2e-4, "bf16": 3e-2}  # relative, first-step loss on the same batches
CHILD_TIMEOUT_S = 3600


# ---------------------------------------------------------------- the child: one measurement


def child(spec: dict) -> dict:
    """One tool trains one phase for warmup + steps optimizer steps; returns the measurements."""
    from puredl.finetune import pipeline
    from puredl.finetune.errors import ConfigError

    try:
        cfg = _config(spec)
    except ConfigError as exc:
        return {"skipped": f"this puredl cannot run precision {spec['precision']}: {exc}"}
    ctx = pipeline.make_context(cfg, device=spec["device"], out=_to_stderr)  # thread policy first
    import torch

    k = spec["phase"]
    base, tok = pipeline.load_base(ctx)
    examples = pipeline.load_phase_data(ctx, k, tok)
    counter = _Counter(examples)
    work = Path(tempfile.mkdtemp(prefix="ft-bench-"))
    torch.manual_seed(cfg.phase_training(k).seed + k)  # the LoRA initialisation, as the pipeline does
    if spec["tool"] == "puredl":
        out = _run_puredl(ctx, k, base, tok, examples, counter, work)
    else:
        out = _run_hf(spec, ctx, k, base, tok, examples, counter, work)
        if "skipped" in out:
            return out
    steps, warm = spec["steps"], spec["warmup"]
    ends = [0.0] + out.pop("step_ends")
    if len(ends) < warm + steps + 1:
        raise SystemExit(f"phase {k} has only {len(ends) - 1} optimizer steps; use fewer --warmup/--steps")
    seconds = ends[warm + steps] - ends[warm]
    per_step = counter.per_step(cfg.phase_training(k).grad_accum)
    measured = per_step[warm : warm + steps]
    labelled = out.pop("labelled")[warm : warm + steps]
    result = {
        "s_per_step": seconds / steps,
        "real_tok_s": sum(m["real"] for m in measured) / seconds,
        "labelled_tok_s": sum(labelled) / seconds,
        "total_tok_s": sum(m["total"] for m in measured) / seconds,
        "first_loss": out["losses"][0],
        "losses": out["losses"],
        "order": counter.order,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "thread_policy": ctx.threads.describe() if ctx.threads is not None else "",
        "torch": torch.__version__,
        "versions": _versions(),
        "device": ctx.device,
        **out,
    }
    if ctx.device.startswith("cuda"):
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["device"] = f"{ctx.device} {torch.cuda.get_device_name(torch.device(ctx.device))}"
    return result


def _config(spec: dict) -> Any:
    """The run config with this measurement's settings (``training.precision`` fp32 or bf16)."""
    from puredl.finetune.config import config_from_dict, config_to_dict, load_config

    data = config_to_dict(load_config(spec["config"]))
    k = spec["phase"]
    if spec.get("model"):
        data["model"]["name"] = spec["model"]
    data["model"]["dtype"] = "float32"  # fp32 weights; bf16 means autocast, as Trainer's bf16=True
    data["model"]["lora_dropout"] = 0.0  # dropout off: both tools compute the same losses
    data["phases"][k]["lora_dropout"] = 0.0
    data["phases"][k]["max_steps"] = spec["warmup"] + spec["steps"]
    t = data["training"]
    t.update(device=spec["device"], checkpoint_every=0, precision=spec["precision"])  # bf16: autocast
    t["thread_policy"], t["num_threads"] = spec["policy"], spec.get("threads")
    return config_from_dict(data, source=spec["config"])


class _Counter:
    """Counts the tokens of every decoder forward and reads which examples each micro-batch held."""

    def __init__(self, examples: list) -> None:
        self.index = {}
        for i, e in enumerate(examples):
            self.index.setdefault(tuple(e.input_ids), i)
        self.forwards: list[dict] = []
        self.order: list[list[int]] | None = []

    def hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        total = int(ids.numel())
        real = int(mask.sum()) if mask is not None and mask.dim() == 2 else total
        self.forwards.append({"total": total, "real": real})
        if self.order is None:
            return
        rows = []
        for r in range(ids.shape[0]):
            n = int(mask[r].sum()) if mask is not None and mask.dim() == 2 else ids.shape[1]
            found = self.index.get(tuple(ids[r, :n].tolist()))
            if found is None:
                self.order = None  # packed or changed rows: puredl's order cannot be handed on
                return
            rows.append(found)
        self.order.append(rows)

    def per_step(self, grad_accum: int) -> list[dict]:
        steps = []
        for i in range(0, len(self.forwards), grad_accum):
            group = self.forwards[i : i + grad_accum]
            steps.append({key: sum(f[key] for f in group) for key in ("total", "real")})
        return steps


def _decoder(model: Any) -> Any:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder()


def _run_puredl(ctx: Any, k: int, base: Any, tok: Any, examples: list, counter: _Counter, work: Path) -> dict:
    """puredl's own phase loop (``pipeline.train_phase``), timed from its step log."""
    from puredl.finetune import pipeline
    from puredl.finetune.lora import add_lora

    name = f"lora_{k}"
    model = add_lora(base, pipeline.lora_config_for(ctx, k), trainable=True, name=name)
    _decoder(model).register_forward_pre_hook(counter.hook, with_kwargs=True)
    pipeline.train_phase(ctx, k, model, tok, work, name, f"puredl phase {k}", examples)
    log = [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines() if line]
    return {
        "step_ends": [entry["seconds"] for entry in log],
        "losses": [entry["loss"] for entry in log],
        "labelled": [entry["tokens"] for entry in log],
    }


def _run_hf(
    spec: dict, ctx: Any, k: int, base: Any, tok: Any, examples: list, counter: _Counter, work: Path
) -> dict:
    """transformers' Trainer (or TRL's SFTTrainer) with PEFT on the same model and examples."""
    import peft
    import torch
    import transformers

    from puredl.finetune.lora import LoRAConfig, to_peft_config
    from puredl.finetune.trainer import make_plan

    settings = ctx.cfg.phase_training(k)
    plan = make_plan(settings, len(examples))
    model = peft.get_peft_model(base, to_peft_config(base, LoRAConfig(**ctx.cfg.phase_lora(k))))
    _decoder(model).register_forward_pre_hook(counter.hook, with_kwargs=True)
    counter.order = None  # only puredl's order is handed on
    scheduler = "constant_with_warmup" if plan.scheduler == "constant" else plan.scheduler
    common = dict(
        output_dir=str(work / "out"),
        per_device_train_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.grad_accum,
        learning_rate=plan.learning_rate,
        lr_scheduler_type=scheduler,
        warmup_steps=plan.warmup,
        weight_decay=plan.weight_decay,
        max_grad_norm=plan.max_grad_norm,
        max_steps=plan.total_steps,
        seed=plan.seed,
        bf16=spec["precision"] == "bf16",
        use_cpu=ctx.device == "cpu",
        gradient_checkpointing=False,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    if spec["order"] == "grouped":  # transformers 5 renamed group_by_length=True
        fields = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
        if "train_sampling_strategy" in fields:
            common["train_sampling_strategy"] = "group_by_length"
        else:
            common["group_by_length"] = True
    if spec["tool"] == "sft":
        import datasets
        import trl

        rows = [
            {"input_ids": e.input_ids, "completion_mask": [int(t != -100) for t in e.labels]}
            for e in examples
        ]
        args = trl.SFTConfig(**common, max_length=plan.max_length, packing=False, completion_only_loss=True)
        kwargs = dict(train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
        cls = trl.SFTTrainer
    else:
        rows = [
            {"input_ids": e.input_ids, "attention_mask": [1] * len(e.input_ids), "labels": e.labels}
            for e in examples
        ]
        args = transformers.TrainingArguments(**common)
        collator = transformers.DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
        kwargs = dict(train_dataset=rows, data_collator=collator, processing_class=tok)
        cls = transformers.Trainer
    try:
        measured = _measured(cls, torch)(
            model=model, args=args, batches=spec.get("batches"), threads=ctx.threads, **kwargs
        )
    except ValueError as exc:  # TRL refuses a LoRA on the tied output layer (phase 0's embeddings)
        return {"skipped": f"{cls.__name__} refuses this setup: {str(exc).splitlines()[0]}"}
    measured.train()
    return {
        "step_ends": measured.step_ends,
        "losses": measured.step_losses,
        "labelled": measured.step_labelled,
    }


def _measured(cls: type, torch: Any) -> type:
    """``cls`` (Trainer or SFTTrainer) recording per-step end times, losses and labelled tokens,
    and, given ``batches``, training on exactly those micro-batches in that order."""
    import transformers

    class Measured(cls):
        def __init__(
            self, *args: Any, batches: list[list[int]] | None = None, threads: Any = None, **kwargs: Any
        ) -> None:
            self._batches, self._threads = batches, threads
            self.step_ends: list[float] = []
            self.step_losses: list[float] = []
            self.step_labelled: list[int] = []
            self._loss, self._labelled, self._t0 = 0.0, 0, None
            super().__init__(*args, **kwargs)
            self.add_callback(_StepClock(self))

        def training_step(self, model: Any, inputs: dict, num_items_in_batch: Any = None) -> Any:
            if self._t0 is None:
                self._t0 = time.perf_counter()
            self._labelled += int((inputs["labels"][:, 1:] != -100).sum())
            loss = super().training_step(model, inputs, num_items_in_batch)
            self._loss += float(loss)
            return loss

        def get_train_dataloader(self) -> Any:
            if self._batches is None:
                return super().get_train_dataloader()
            loader = torch.utils.data.DataLoader(
                self.train_dataset, batch_sampler=self._batches, collate_fn=self.data_collator
            )
            return self.accelerator.prepare(loader)

    class _StepClock(transformers.TrainerCallback):
        def __init__(self, trainer: Measured) -> None:
            self.trainer = trainer

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            t = self.trainer
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()  # the step's kernels are done (puredl's loop syncs on its checks)
            t.step_ends.append(time.perf_counter() - t._t0)
            t.step_losses.append(t._loss)
            t.step_labelled.append(t._labelled)
            t._loss, t._labelled = 0.0, 0
            if t._threads is not None:  # the adaptive policy re-reads the load, as in puredl's loop
                t._threads.between_steps()

    return Measured


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "peft", "trl", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr)


# ---------------------------------------------------------------- the parent: runs and tables


def parse_tools(text: str) -> list[tuple[str, str]]:
    """``puredl,trainer:same,sft:default`` -> [("puredl", ""), ("trainer", "same"), ("sft", "default")].

    >>> parse_tools("trainer")
    [('puredl', ''), ('trainer', 'same')]
    """
    tools = [("puredl", "")]
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, order = item.partition(":")
        if name == "puredl":
            continue
        if name not in HF_TOOLS or (order or "same") not in ORDERS:
            raise SystemExit(
                f"--tools: unknown {item!r}; use puredl, trainer[:ORDER], sft[:ORDER] ({ORDERS})"
            )
        tools.append((name, order or "same"))
    return tools


def run_child(spec: dict) -> dict:
    """One measurement in a fresh interpreter; its stderr is shown only if it fails."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)  # the policy under test decides it, not the caller's shell
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT_S,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = "\n".join(done.stderr.strip().splitlines()[-15:])
    raise RuntimeError(f"{spec['tool']} phase {spec['phase']} failed (exit {done.returncode}):\n{tail}")


def label(tool: str, order: str) -> str:
    return {"trainer": "Trainer + PEFT", "sft": "TRL SFTTrainer + PEFT"}.get(tool, "puredl") + (
        f" ({order} order)" if order else ""
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="run config (default configs/embedded.sdn)")
    ap.add_argument("--model", default=None, help="override model.name (a local folder for tests)")
    ap.add_argument("--phases", default="0,1,2", help="comma-separated phase indices")
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per tool (alternating)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=None, help="fixed torch threads (all policies)")
    ap.add_argument(
        "--policies", default=None, help="thread policies to compare, e.g. torch,passive,adaptive,torch:1"
    )
    ap.add_argument(
        "--tools", default=None, help="default: trainer:same,trainer:default,trainer:grouped,sft:same"
    )
    ap.add_argument("--load", action="store_true", help="keep one core busy for the run (benchmarks/busy.py)")
    ap.add_argument("--out", default=None, help="write the markdown report here")
    ap.add_argument("--json", default=None, help="write every measurement here")
    args = ap.parse_args(argv)
    if args.child:
        result = child(json.loads(args.child))
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
    if args.steps < 1 or args.warmup < 0 or args.repeats < 1:
        raise SystemExit("--steps and --repeats must be >= 1, --warmup >= 0")
    from puredl.finetune.config import load_config
    from puredl.finetune.threads import parse_policy

    cfg = load_config(args.config)
    phases = [int(p) for p in args.phases.split(",") if p.strip()]
    if any(not 0 <= p < len(cfg.phases) for p in phases):
        raise SystemExit(f"--phases: the config has phases 0..{len(cfg.phases) - 1}")
    policies = [p.strip() for p in (args.policies or cfg.training.thread_policy).split(",") if p.strip()]
    for p in policies:
        try:
            parse_policy(p)
        except ValueError as exc:
            raise SystemExit(f"--policies: {exc}") from None
    have_trl = _installed("trl")
    default_tools = "trainer:same,trainer:default,trainer:grouped" + (",sft:same" if have_trl else "")
    tools = parse_tools(args.tools or default_tools)
    notes = []
    if not have_trl:
        tools = [t for t in tools if t[0] != "sft"]
        notes.append("TRL is not installed (pip install 'puredl[bench]'): no SFTTrainer rows.")
    before = load_average()
    started = time.time()
    results: dict[tuple, list[dict]] = {}
    skipped: dict[tuple, str] = {}
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety
        tqdm = None
    total = len(phases) * args.repeats * len(policies) * len(tools)
    bar = tqdm(total=total, unit="run", dynamic_ncols=True) if tqdm else None
    with busy_core(24 * 3600) if args.load else _Quiet() as condition:
        for k in phases:
            order: list[list[int]] | None = None
            for rep in range(args.repeats):
                for policy in policies:
                    name, count = parse_policy(policy)
                    for tool, how in tools:
                        key = (k, policy, tool, how)
                        if bar:
                            bar.set_description(f"phase {k} {policy} {label(tool, how)} #{rep + 1}")
                        spec = {
                            "tool": tool,
                            "order": how,
                            "phase": k,
                            "steps": args.steps,
                            "warmup": args.warmup,
                            "precision": args.precision,
                            "device": args.device,
                            "policy": name,
                            "threads": count or args.threads,
                            "config": args.config,
                            "model": args.model,
                        }
                        if how == "same":
                            if order is None:
                                skipped[key] = "needs puredl's batches (the puredl run was skipped or packed)"
                            spec["batches"] = order
                        if key in skipped:
                            if bar:
                                bar.update(1)
                            continue
                        result = run_child(spec)
                        if "skipped" in result:
                            skipped[key] = result["skipped"]
                        else:
                            results.setdefault(key, []).append(result)
                            if tool == "puredl" and result["order"]:
                                if order is not None and order[: len(result["order"])] != result["order"]:
                                    notes.append(f"phase {k}: puredl's batches differed between runs")
                                order = order or result["order"]
                        if bar:
                            bar.update(1)
        after = load_average()
    if bar:
        bar.close()
    text = report(args, phases, policies, tools, results, skipped, notes, condition, before, after, started)
    print(text)
    if args.out:
        _write(Path(args.out), text)
    if args.json:
        rows = [{"key": list(key), "runs": runs} for key, runs in results.items()]
        _write(
            Path(args.json),
            json.dumps({"results": rows, "skipped": [list(k) + [v] for k, v in skipped.items()]}),
        )
    return 0


def report(
    args: Any,
    phases: list[int],
    policies: list[str],
    tools: list[tuple[str, str]],
    results: dict,
    skipped: dict,
    notes: list[str],
    condition: str,
    before: str,
    after: str,
    started: float,
) -> str:
    """The markdown report: machine, conditions, one table per phase."""
    any_run = next((runs[0] for runs in results.values() if runs), {})
    versions = ", ".join(f"{k} {v}" for k, v in any_run.get("versions", {}).items())
    lines = [
        f"# Fine-tuning throughput: puredl vs Trainer + PEFT ({args.precision}, {args.device})",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{(time.time() - started) / 60:.1f} min",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; device {any_run.get('device', args.device)}",
        f"- Versions: {versions}",
        f"- Condition: {condition}",
        f"- uptime before: `{before}`",
        f"- uptime after: `{after}`",
        f"- Config {args.config}" + (f", model {args.model}" if args.model else "") + f"; phases {phases}; "
        f"{args.steps} timed steps after {args.warmup} warm-up steps; {args.repeats} repeat(s), tools "
        "alternating, each run a fresh process; LoRA dropout 0",
        f"- Thread policies: {', '.join(policies)}"
        + (f" (--threads {args.threads})" if args.threads else "")
        + f"; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
        + (
            f"; the shell's OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} ignored (policies decide)"
            if "OMP_WAIT_POLICY" in os.environ
            else ""
        ),
        "",
        "s/step: median over repeats (min-max). tok/s: real = non-pad positions, labelled = loss "
        "targets, total = all positions incl. padding. ratio = puredl real tok/s / this row's. "
        "First loss: the first optimizer step's mean token loss; on the same batches it must agree.",
        "",
    ]
    tol = LOSS_TOLERANCE[args.precision]
    for k in phases:
        lines += [
            f"## Phase {k}",
            "",
            "| policy | tool | s/step | real tok/s | labelled tok/s | total tok/s | ratio | peak RSS | "
            "threads | first loss | agrees |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
        ]
        for policy in policies:
            mine = results.get((k, policy, "puredl", ""), [])
            for tool, how in tools:
                key = (k, policy, tool, how)
                if key in skipped:
                    lines.append(f"| {policy} | {label(tool, how)} | skipped: {skipped[key]} |||||||||")
                    continue
                runs = results.get(key, [])
                if not runs:
                    continue
                lines.append(row(policy, label(tool, how), runs, mine, how, tol))
        lines.append("")
        if len(policies) > 1:
            lines += policy_table(k, policies, tools, results)
    lines += [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines).rstrip() + "\n"


def row(policy: str, name: str, runs: list[dict], puredl: list[dict], how: str, tol: float) -> str:
    """One table row: medians over the runs, the ratio against puredl's median, the loss check."""

    def med(key: str, rs: list[dict]) -> float:
        return statistics.median(r[key] for r in rs)

    s = [r["s_per_step"] for r in runs]
    ratio = f"{med('real_tok_s', puredl) / med('real_tok_s', runs):.2f}x" if puredl else "-"
    rss = max(r["peak_rss_mb"] for r in runs) / 1024
    mem = f"{rss:.2f} GB" + (
        f" (GPU {max(r['cuda_peak_mb'] for r in runs) / 1024:.2f} GB)" if "cuda_peak_mb" in runs[0] else ""
    )
    first = runs[0]["first_loss"]
    if not how:
        agrees = "(reference)"
    elif how == "same" and puredl:
        ref = puredl[0]["first_loss"]
        diff = abs(first - ref) / max(abs(ref), 1e-12)
        agrees = f"{'yes' if diff <= tol else 'NO'} (rel. diff {diff:.1e})"
    else:
        agrees = "other batches"
    return (
        f"| {policy} | {name} | {statistics.median(s):.3f} ({min(s):.3f}-{max(s):.3f}) | "
        f"{med('real_tok_s', runs):.0f} | {med('labelled_tok_s', runs):.0f} | "
        f"{med('total_tok_s', runs):.0f} | "
        f"{ratio} | {mem} | {runs[0]['threads']} | {first:.5f} | {agrees} |"
    )


def policy_table(k: int, policies: list[str], tools: list[tuple[str, str]], results: dict) -> list[str]:
    """Each tool's median real tokens/s under every policy, relative to the first policy."""
    lines = [
        f"Thread policies on phase {k}: real tok/s (x the first policy's)",
        "",
        "| tool | " + " | ".join(policies) + " |",
        "|---|" + "---:|" * len(policies),
    ]
    for tool, how in tools:
        speeds = []
        for policy in policies:
            runs = results.get((k, policy, tool, how), [])
            speeds.append(statistics.median(r["real_tok_s"] for r in runs) if runs else None)
        if speeds[0] is None and not any(speeds):
            continue
        cells = [
            "-" if v is None else f"{v:.0f}" + (f" ({v / speeds[0]:.2f}x)" if speeds[0] else "")
            for v in speeds
        ]
        lines.append(f"| {label(tool, how)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _Quiet:
    def __enter__(self) -> str:
        return "quiet (no busy process of ours)"

    def __exit__(self, *exc: Any) -> bool:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
