"""Checks that run before phase 0 trains, so a mistake in phase 2 is not found hours later.

Every phase's data file is read (a malformed JSONL line or a missing field names the file
and the line) and every phase's ``target_modules`` is matched against the loaded model.
Settings themselves were checked when the config was read (``config._check_values``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from puredl.finetune.errors import ConfigError, FinetuneError


def check_phases(ctx: Any, model: Any, phases: list[int] | None = None) -> None:
    """Raise a one-line error for the first phase whose data or LoRA targets cannot work."""
    from puredl.finetune.lora import resolve_target_modules

    cfg = ctx.cfg
    for k in range(len(cfg.phases)) if phases is None else phases:
        phase = cfg.phases[k]
        try:
            resolve_target_modules(model, cfg.phase_lora(k)["target_modules"])
        except ValueError as exc:
            raise ConfigError(f"phases[{k}] target_modules: {exc}", cfg.source) from exc
        settings = cfg.phase_training(k)
        source = phase.data_path or f"the bundled {phase.data} data"
        try:
            examples = ctx.hooks.load_examples(
                phase.data,
                split="train",
                path=phase.data_path,
                max_samples=settings.max_samples,
                seed=settings.seed,
            )
        except FinetuneError:
            raise
        except (ValueError, KeyError, TypeError, OSError, UnicodeDecodeError) as exc:
            raise FinetuneError(f"phase {k} ({phase.name}): cannot use {source}: {_one_line(exc)}") from exc
        if not examples:
            raise FinetuneError(f"phase {k} ({phase.name}): {source} has no training examples")
        if phase.eval_path and not Path(phase.eval_path).is_file():
            raise ConfigError(f"phases[{k}].eval_path: file not found: {phase.eval_path}", cfg.source)


def check_output_folder(out_dir: Path, force: bool = False) -> None:
    """``merge --out``: refuse a folder that holds files puredl did not write, unless ``force``."""
    from puredl._atomic import MARKER

    out_dir = Path(out_dir)
    if force or not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FinetuneError(f"--out {out_dir} is a file, not a folder")
    if any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise FinetuneError(
            f"--out {out_dir} is not empty and was not written by puredl; choose a new folder, or pass "
            "--force to write the merged model into it (files of the same name are replaced, the rest kept)"
        )


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
