"""A run folder's bookkeeping: where phases go, what ``--resume`` reads, and who may write it.

::

    runs/NAME/run_config.json        the config that started the run
    runs/NAME/run_state.json         phases done + metrics history (what --resume continues)
    runs/NAME/summary.json           the summary so far (and report.md when the report module is there)
    runs/NAME/phaseK/phase_result.json, phaseK/lora_K/, phaseK/checkpoints/step_N/

One process at a time writes a run folder: ``RunLock`` holds ``runs/.NAME.lock`` (an flock
with the holder's pid; a lock whose process died is taken over). On start, ``begin_run``
sweeps temporaries that killed processes left, refuses to silently discard an interrupted
run (``--resume`` continues it, ``--restart`` discards it), and with ``--resume`` accepts a
config that differs only in ``RESUME_MAY_CHANGE`` keys (the documented recovery from a
diverged phase: lower the learning rate and resume).

>>> phase_dir(Path("runs/demo"), 1).as_posix(), adapter_dir(Path("runs/demo"), 1).as_posix()
('runs/demo/phase1', 'runs/demo/phase1/lora_1')
>>> may_change_on_resume("phases[2].learning_rate"), may_change_on_resume("training.batch_size")
(True, False)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from puredl._atomic import sweep_stale_temporaries, write_json
from puredl._faults import fault_point
from puredl.finetune.config import config_to_dict
from puredl.finetune.devices import is_main_process
from puredl.finetune.errors import FinetuneError
from puredl.finetune.strategies import STRATEGIES

RESULT_FILE = "phase_result.json"
STATE_FILE = "run_state.json"
SUMMARY_FILE = "summary.json"
# training knobs that --resume accepts changed: none of them changes the data order or the shape
# of a checkpoint, so the interrupted phase continues from its last good checkpoint with them
RESUME_MAY_CHANGE = (
    "learning_rate",
    "warmup_steps",
    "warmup_ratio",
    "scheduler",
    "max_grad_norm",
    "weight_decay",
    "checkpoint_every",
    "device",
    "num_threads",
    "thread_policy",
    "gradient_checkpointing",
)
# keys added after runs were already being saved: a run_config.json without one of them ran with
# this value (the behaviour before the key existed), so resuming with that value is no change
ADDED_KEYS_EARLIER_VALUE = {
    "group_by_length": False,
    "packing": False,
    "precision": "fp32",
    "thread_policy": "torch",
}
_held_locks: dict[Path, Any] = {}  # run folders this process holds the lock of -> open lock file

__all__ = [
    "RESULT_FILE",
    "STATE_FILE",
    "SUMMARY_FILE",
    "RESUME_MAY_CHANGE",
    "RunLock",
    "adapter_dir",
    "begin_run",
    "begin_phase",
    "clear_run_state",
    "finished_phase",
    "may_change_on_resume",
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
    stale = [run_dir / STATE_FILE] + [run_dir / name / SUMMARY_FILE for name in STRATEGIES]
    for k in range(max(len(ctx.cfg.phases), 8)):
        for folder in [phase_dir(run_dir, k)] + [run_dir / name / f"phase{k}" for name in STRATEGIES]:
            stale.append(folder / RESULT_FILE)
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    for path in stale:
        path.unlink(missing_ok=True)


def finished_phase(ctx: Any, k: int, work: Path | None = None, adapter: Path | None = None) -> dict | None:
    """With --resume: phase k's record when its adapter is complete on disk.

    ``work`` / ``adapter`` name another strategy's phase folder and adapter (``run_dir/replay/
    phase1``, ``.../lora_1``); by default the config's own run (``phase_dir``, ``adapter_dir``).
    """
    from puredl.finetune.lora import load_lora

    if not ctx.resume:
        return None
    record = read_json((work or phase_dir(ctx.run_dir, k)) / RESULT_FILE)
    if record is None:
        return None
    try:
        load_lora(adapter or adapter_dir(ctx.run_dir, k))
    except FileNotFoundError:
        return None
    return record


# ---------------------------------------------------------------- starting a run


def begin_run(ctx: Any) -> dict | None:
    """Sweep stale temporaries, then the saved state to continue (``--resume``) or None (fresh run).

    A fresh run over an interrupted one is refused unless ``ctx.restart``; ``--resume`` with a
    config that differs in more than ``RESUME_MAY_CHANGE`` keys is refused, naming them.
    """
    run_dir = ctx.run_dir
    if is_main_process():
        swept = sweep_stale_temporaries(run_dir, folder_locked=holds_lock(run_dir))
        if swept:
            ctx.out(f"Removed {len(swept)} temporary file(s)/folder(s) left by an interrupted save")
    if not ctx.resume:
        interrupted = describe_interrupted_run(ctx)
        if interrupted and not getattr(ctx, "restart", False):
            raise FinetuneError(
                f"{run_dir} holds an interrupted run ({interrupted}); continue it with --resume, "
                "or pass --restart to discard its checkpoints and start over"
            )
        if interrupted:
            ctx.out(f"--restart: discarding the interrupted run in {run_dir} ({interrupted})")
        return None
    state = read_json(run_dir / STATE_FILE)
    if state is None:
        return None
    old = with_precision_key(state.get("config") or {}, ctx.device)
    changed = config_changes(old, config_to_dict(ctx.cfg))
    refused = [key for key in changed if not may_change_on_resume(key)]
    if refused:
        shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
        raise FinetuneError(
            f"--resume: the config differs from the one that started {run_dir} in {shown} "
            f"(see run_config.json); only {', '.join(RESUME_MAY_CHANGE)} may change on resume. "
            "Restore the old values, or pass --restart to start over"
        )
    if changed:
        ctx.out(f"--resume with changed settings: {', '.join(changed)}")
    return state


def begin_phase(ctx: Any, k: int) -> None:
    """``phase N``: sweep stale temporaries; without --resume keep an interrupted phase unless --restart."""
    if is_main_process():
        sweep_stale_temporaries(ctx.run_dir, folder_locked=holds_lock(ctx.run_dir))
    if ctx.resume:
        return
    found = sorted((phase_dir(ctx.run_dir, k) / "checkpoints").glob("step_*"))
    if found and not getattr(ctx, "restart", False):
        raise FinetuneError(
            f"phase {k} was interrupted (checkpoint {found[-1]}); continue it with --resume, "
            "or pass --restart to discard its checkpoints and start the phase over"
        )


def with_precision_key(old: dict, device: str) -> dict:
    """A saved run config from before ``training.precision`` replaced ``training.bf16``, in today's keys.

    ``bf16: true`` meant bfloat16 on a GPU and float32 on CPU, so a CPU run saved with it resumes
    as ``precision: fp32`` (what it trained in) instead of being refused as changed.

    >>> with_precision_key({"training": {"bf16": True, "device": "cpu"}}, "cpu")
    {'training': {'device': 'cpu', 'precision': 'fp32'}}
    """
    training = old.get("training") if isinstance(old, dict) else None
    if not isinstance(training, dict) or "bf16" not in training:
        return old
    training = dict(training)
    bf16 = bool(training.pop("bf16"))
    saved_device = str(training.get("device") or "auto")
    on_gpu = (device if saved_device == "auto" else saved_device).startswith("cuda")
    training.setdefault("precision", "bf16" if bf16 and on_gpu else "fp32")
    return {**old, "training": training}


def may_change_on_resume(key: str) -> bool:
    """Whether a dotted config key (``training.learning_rate``, ``phases[1].warmup_steps``) may change."""
    section, _, name = key.rpartition(".")
    return name in RESUME_MAY_CHANGE and (section == "training" or section.startswith("phases["))


def config_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two ``config_to_dict`` results.

    >>> config_changes({"a": {"b": 1, "c": [1]}}, {"a": {"b": 2, "c": [1]}})
    ['a.b']

    A run saved before ``group_by_length`` existed trained in the plain order, so resuming it with
    the plain order is no change, and resuming it grouped is one:

    >>> config_changes({"training": {}}, {"training": {"group_by_length": False}})
    []
    >>> config_changes({"training": {}}, {"training": {"group_by_length": True}})
    ['training.group_by_length']
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            earlier = ADDED_KEYS_EARLIER_VALUE.get(key, ADDED_KEYS_EARLIER_VALUE)  # the dict: no such key
            if key not in old and new[key] == earlier:
                continue  # saved before the key existed, resumed with the behaviour it had then
            out += config_changes(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new)
        and all(isinstance(v, dict) for v in old + new)
    ):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += config_changes(a, b, f"{prefix.rstrip('.')}[{i}].")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def describe_interrupted_run(ctx: Any) -> str | None:
    """What an unfinished earlier run left in the run folder (phases done, checkpoints), or None."""
    run_dir = ctx.run_dir
    state = read_json(run_dir / STATE_FILE)
    checkpoints = sorted(run_dir.glob("phase*/checkpoints/step_*"))
    for name in STRATEGIES:  # the --compare strategies' phases
        checkpoints += sorted(run_dir.glob(f"{name}/phase*/checkpoints/step_*"))
    n_phases = len((state or {}).get("config", {}).get("phases", [])) if state else 0
    n_done = len((state or {}).get("phases", [])) if state else 0
    unfinished = state is not None and n_done < n_phases
    if not checkpoints and not unfinished:
        return None
    parts = [f"{n_done} of {n_phases} phases done"] if state is not None else []
    if checkpoints:
        parts.append(f"checkpoint {checkpoints[-1].relative_to(run_dir).as_posix()}")
    return "; ".join(parts)


# ---------------------------------------------------------------- one writer per run folder


def lock_path(run_dir: Path) -> Path:
    """``output.dir/.PROJECT.lock`` (beside the run folder, so a run that fails early leaves no folder)."""
    return run_dir.parent / f".{run_dir.name}.lock"


def holds_lock(run_dir: Path) -> bool:
    """Whether this process holds the run folder's lock."""
    return Path(run_dir).resolve() in _held_locks


class RunLock:
    """``with RunLock(run_dir):`` — this process is the only puredl run writing ``run_dir``.

    A second process gets a ``FinetuneError`` naming the holder (pid, host, start time,
    command). The lock is an ``flock``, which the OS drops when its holder dies, so a lock
    left by a killed run is simply taken over. Re-entrant within one process.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.key = self.run_dir.resolve()
        self._owner = False

    def __enter__(self) -> RunLock:
        if self.key in _held_locks:
            return self
        path = lock_path(self.run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = _acquire(path, self.run_dir)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        info["command"] = " ".join(sys.argv)[:200]
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(info) + "\n")
        handle.flush()
        _held_locks[self.key] = handle
        self._owner = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._owner:
            return
        handle = _held_locks.pop(self.key)
        try:
            lock_path(self.run_dir).unlink(missing_ok=True)
        finally:
            handle.close()  # closing drops the flock


def _acquire(path: Path, run_dir: Path) -> Any:
    """Open and flock ``path`` without waiting; raise naming the holder when another process has it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock; one writer is then the user's care
        return open(path, "a+", encoding="utf-8")
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read(500).strip()
            handle.close()
            raise FinetuneError(
                f"{run_dir} is in use by another puredl run ({_describe_holder(holder)}); "
                "wait for it to finish or stop it"
            ) from None
        try:  # the holder before us may have unlinked the file between our open and our flock
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
