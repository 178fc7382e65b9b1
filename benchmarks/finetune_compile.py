"""Does ``torch.compile`` speed up a fine-tuning step here? Eager against compiled, one phase at a time.

The run config's model (the embedded Gemma 3 270M by default) with the phase's LoRA, trained on
the phase's first micro-batches of its seeded shuffled epoch order (the phase's examples and batch
size; LoRA dropout off, fp32 weights; lengths vary from batch to batch, so the decoder is compiled
with ``dynamic=True``), one forward and backward per micro-batch through puredl's loss
(``trainer.batch_loss_sum``: the output layer at labelled positions only). The compiled side wraps
the decoder's ``forward`` in ``torch.compile`` (inductor, torch's default backend on CPU); the
output layer and the loss stay eager in both. Each measurement is a fresh process, eager and
compiled alternating; it prints the first micro-batch's time (the compile, inductor's cache
empty), the median of the rest, and the largest relative difference of the losses between the two
(compiled kernels round differently).

Usage (about 1 min per eager run and 2-3 min per compiled run on 2 CPU cores)::

    python benchmarks/finetune_compile.py --phases 0,1 --batches 12 --repeats 1 \\
        --out benchmarks/results/finetune_compile_DATE.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARM = 2  # micro-batches not counted in the steady median (the first one compiles)


def child(spec: dict) -> dict:
    """One process: ``spec["batches"]`` micro-batches of phase ``spec["phase"]``, eager or compiled."""
    from puredl.finetune import pipeline
    from puredl.finetune.batching import collate, micro_batches
    from puredl.finetune.config import config_from_dict, config_to_dict, load_config
    from puredl.finetune.lora import add_lora
    from puredl.finetune.trainer import batch_loss_sum

    k = spec["phase"]
    data = config_to_dict(load_config(spec["config"]))
    if spec.get("model"):
        data["model"]["name"] = spec["model"]
    data["model"]["dtype"] = "float32"
    # dropout off: compiled code draws other random masks, and the losses are compared
    data["model"]["lora_dropout"] = 0.0
    data["phases"][k]["lora_dropout"] = 0.0
    cfg = config_from_dict(data, source=spec["config"])
    ctx = pipeline.make_context(cfg, device="cpu", out=lambda text: None)  # thread policy first
    import torch

    base, tok = pipeline.load_base(ctx)
    examples = pipeline.load_phase_data(ctx, k, tok)
    settings = cfg.phase_training(k)
    torch.manual_seed(settings.seed + k)  # the LoRA initialisation, as the pipeline does
    model = add_lora(base, pipeline.lora_config_for(ctx, k), trainable=True, name=f"lora_{k}")
    order = micro_batches(len(examples), settings.batch_size, settings.seed, settings.epochs)
    pad = tok.pad_token_id
    batches = [collate([examples[i] for i in idx], pad) for _, idx in order[: spec["batches"]]]
    decoder = model.get_base_model().get_decoder()
    if spec["mode"] == "compiled":
        decoder.forward = torch.compile(decoder.forward, dynamic=True)
    params = [p for p in model.parameters() if p.requires_grad]
    seconds, losses = [], []
    for batch in batches:
        start = time.perf_counter()
        loss = batch_loss_sum(model, batch)
        loss.backward()
        seconds.append(time.perf_counter() - start)
        losses.append(loss.item())
        for p in params:
            p.grad = None
        print(
            f"  {spec['mode']} phase {k}: {tuple(batch['input_ids'].shape)} {seconds[-1]:.2f} s",
            file=sys.stderr,
        )
    return {
        "seconds": seconds,
        "losses": losses,
        "shapes": [list(b["input_ids"].shape) for b in batches],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def run_child(spec: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    # an empty inductor cache of our own: the first micro-batch is the compile a first run pays
    with tempfile.TemporaryDirectory(prefix="ft-compile-cache-") as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"{spec['mode']} phase {spec['phase']} failed (exit {proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def steady(run: dict) -> float:
    return statistics.median(run["seconds"][WARM:])


def report(args: argparse.Namespace, results: dict, elapsed: float) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    some = next(iter(results.values()))["eager"][0]
    lines = [
        "# torch.compile on a fine-tuning step: eager against compiled (cpu)",
        "",
        f"- Date: {now}; {elapsed / 60:.1f} min",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {some['torch']} ({some['threads']} threads)",
        f"- Config {args.config}{f' (model {args.model})' if args.model else ''}; LoRA dropout 0; "
        f"{args.batches} micro-batches per run in the phase's seeded shuffled order, the first "
        f"{WARM} not in the median; {args.repeats} repeat(s), eager and compiled alternating, each a fresh "
        "process; the decoder's forward compiled with `torch.compile(dynamic=True)`",
        "",
        f"s/micro-batch: median of the micro-batches after the first {WARM}, then over repeats (min-max). "
        "first: the first micro-batch (the compiled side compiles there, inductor's cache empty). "
        "ratio = eager / compiled (above 1: compiled is faster). "
        "losses: largest relative difference from eager's.",
        "",
        "| phase | mode | s/micro-batch | first | ratio | losses |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for k, runs in results.items():
        eager = statistics.median(steady(r) for r in runs["eager"])
        for mode in ("eager", "compiled"):
            per = [steady(r) for r in runs[mode]]
            med = statistics.median(per)
            first = statistics.median(r["seconds"][0] for r in runs[mode])
            diff = max(
                abs(a - b) / abs(b)
                for r in runs[mode]
                for a, b in zip(r["losses"], runs["eager"][0]["losses"], strict=True)
            )
            lines.append(
                f"| {k} | {mode} | {med:.3f} ({min(per):.3f}-{max(per):.3f}) | {first:.1f} s | "
                f"{eager / med:.2f}x | {diff:.1e} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--config", default=str(ROOT / "configs" / "embedded.sdn"))
    ap.add_argument("--model", help="override model.name (a local folder for tests)")
    ap.add_argument("--phases", default="0,1", help="comma-separated phase numbers")
    ap.add_argument("--batches", type=int, default=12, help="micro-batches per run (at least 4)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each mode per phase")
    ap.add_argument("--out", help="also write the report to this markdown file (numbers beside it, .json)")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.batches < WARM + 2 or args.repeats < 1:
        ap.error(f"--batches must be at least {WARM + 2} and --repeats at least 1")
    phases = [int(p) for p in args.phases.split(",")]
    started = time.time()
    results: dict[int, dict[str, list]] = {}
    for k in phases:
        results[k] = {"eager": [], "compiled": []}
        for r in range(args.repeats):
            for mode in ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager"):
                spec = {
                    "config": args.config,
                    "model": args.model,
                    "phase": k,
                    "batches": args.batches,
                    "mode": mode,
                }
                print(f"phase {k}, {mode}, repeat {r + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
                results[k][mode].append(run_child(spec))
    text = report(args, results, time.time() - started)
    print(text)
    if args.out:
        for path, content in (
            (args.out, text),
            (str(Path(args.out).with_suffix(".json")), json.dumps(results)),
        ):
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(content)
            os.replace(tmp, path)  # never a half-written result
    return 0


if __name__ == "__main__":
    sys.exit(main())
