"""A run folder's bookkeeping: where phases go, what ``--resume`` reads, and who may write it.

::

    runs/NAME/run_config.json        the config that started the run
    runs/NAME/run_state.json         phases done + metrics history (what --resume continues)
    runs/NAME/summary.json           the summary so far (and report.md when the report module is there)
    runs/NAME/phaseK/phase_result.json, phaseK/lora_K/, phaseK/checkpoints/step_N/

>>> phase_dir(Path("runs/demo"), 1).as_posix(), adapter_dir(Path("runs/demo"), 1).as_posix()
('runs/demo/phase1', 'runs/demo/phase1/lora_1')
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from puredl._atomic import write_json
from puredl._faults import fault_point
from puredl.finetune.config import config_to_dict
from puredl.finetune.devices import is_main_process

RESULT_FILE = "phase_result.json"
STATE_FILE = "run_state.json"
SUMMARY_FILE = "summary.json"

__all__ = [
    "RESULT_FILE",
    "STATE_FILE",
    "SUMMARY_FILE",
    "adapter_dir",
    "clear_run_state",
    "finished_phase",
    "phase_dir",
    "read_json",
    "save_progress",
    "write_json",
]


def phase_dir(run_dir: Path, k: int) -> Path:
    """``run_dir/phaseK``."""
    return run_dir / f"phase{k}"


def adapter_dir(run_dir: Path, k: int) -> Path:
    """``run_dir/phaseK/lora_K`` (the saved PEFT adapter of phase k)."""
    return phase_dir(run_dir, k) / f"lora_{k}"


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def save_progress(ctx: Any, summary: dict) -> Path | None:
    """run_state.json (for --resume), summary.json, and the report when the report module is there."""
    if not is_main_process():
        return None
    write_json(ctx.run_dir / SUMMARY_FILE, summary)
    fault_point("save_progress")  # mid-report: summary written, run state and report not yet
    write_json(
        ctx.run_dir / STATE_FILE,
        {
            "config": config_to_dict(ctx.cfg),
            "phases": summary["phases"],
            "history": summary["history"],
        },
    )
    if ctx.hooks.write_report is None:
        return None
    return Path(ctx.hooks.write_report(ctx.run_dir, summary))


def clear_run_state(ctx: Any) -> None:
    """A fresh run forgets what an earlier run left (so a later --resume cannot mix the two)."""
    run_dir = ctx.run_dir
    stale = [run_dir / STATE_FILE, run_dir / "sequential" / SUMMARY_FILE]
    for k in range(max(len(ctx.cfg.phases), 8)):
        stale += [phase_dir(run_dir, k) / RESULT_FILE, run_dir / "sequential" / f"phase{k}" / RESULT_FILE]
        for folder in (phase_dir(run_dir, k), run_dir / "sequential" / f"phase{k}"):
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    for path in stale:
        path.unlink(missing_ok=True)


def finished_phase(ctx: Any, k: int) -> dict | None:
    """With --resume: phase k's record when its adapter is complete on disk."""
    from puredl.finetune.lora import load_lora

    if not ctx.resume:
        return None
    record = read_json(phase_dir(ctx.run_dir, k) / RESULT_FILE)
    if record is None:
        return None
    try:
        load_lora(adapter_dir(ctx.run_dir, k))
    except FileNotFoundError:
        return None
    return record
