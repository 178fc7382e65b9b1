"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint folder ``checkpoints/step_000025/`` holds

* ``adapter/``               the trainable LoRA as a PEFT folder (loadable on its own),
* ``optimizer.safetensors``  AdamW moments, keyed ``state.<param index>.<name>``,
* ``rng.safetensors``        torch CPU (and CUDA) random states,
* ``trainer_state.json``     step, losses so far, optimizer param groups, the run fingerprint.

It is written to a temporary folder (``.step_000025.tmp-PID``) and renamed, so a process killed
at any moment leaves either the previous checkpoint or the new one, never half of one. Weights
that are not finite are never written, and a checkpoint that does not read back whole (a
damaged disk, a hand edit) raises ``CorruptCheckpointError`` naming it, so the trainer can fall
back to the one before.

>>> checkpoint_name(25)
'step_000025'
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from puredl._atomic import replace_dir
from puredl._faults import fault_point
from puredl._optional import require
from puredl.finetune.errors import FinetuneError, TrainingDivergedError
from puredl.finetune.lora import ADAPTER_WEIGHTS, save_lora, trainable_parameters

STATE_FILE = "trainer_state.json"
KEEP_LAST = 2


class CorruptCheckpointError(FinetuneError):
    """A checkpoint folder that does not read back whole (the message names it and says why)."""


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint taken after optimizer step ``step``."""
    return f"step_{step:06d}"


def save_checkpoint(
    folder: Path,
    model: Any,
    adapter_name: str,
    optimizer: Any,
    state: dict[str, Any],
) -> Path:
    """Write a complete checkpoint for ``state["step"]`` under ``folder`` and prune old ones."""
    torch = require("torch", "llm", "checkpoints")
    st = require("safetensors.torch", "llm", "checkpoints")
    bad = [name for name, p in trainable_parameters(model).items() if not bool(torch.isfinite(p).all())]
    if bad:
        raise TrainingDivergedError(
            f"refusing to checkpoint non-finite weights ({bad[0]} and {len(bad) - 1} more)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(int(state["step"]))
    tmp = folder / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_lora(model, tmp / "adapter", adapter_name=adapter_name)
        opt = optimizer.state_dict()
        tensors: dict[str, Any] = {}
        scalars: dict[str, dict[str, Any]] = {}
        for index, slots in opt["state"].items():
            for key, value in slots.items():
                if torch.is_tensor(value):
                    tensors[f"state.{index}.{key}"] = value.detach().to("cpu").contiguous()
                else:
                    scalars.setdefault(str(index), {})[key] = value
        st.save_file(tensors, str(tmp / "optimizer.safetensors"))
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i in range(torch.cuda.device_count()):
                rng[f"cuda{i}"] = torch.cuda.get_rng_state(i)
        st.save_file(rng, str(tmp / "rng.safetensors"))
        fault_point("save_checkpoint")  # mid-checkpoint: tensors written, state file and rename not yet
        full = dict(state, optimizer_param_groups=opt["param_groups"], optimizer_scalars=scalars)
        (tmp / STATE_FILE).write_text(json.dumps(full, indent=1))
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(folder)[:-KEEP_LAST]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints under ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    done = [p for p in folder.glob("step_*") if (p / STATE_FILE).is_file() and (p / "adapter").is_dir()]
    return sorted(done, key=lambda p: p.name)


def set_aside_from(folder: Path, step: int) -> list[Path]:
    """Rename checkpoints of step >= ``step`` to ``diverged_step_N`` (kept for a look, never resumed).

    After a loss explosion at step s, the weights saved after step s-1 are the ones that made
    it; resuming from them would diverge again.
    """
    moved = []
    for path in list_checkpoints(folder):
        if int(path.name.removeprefix("step_")) >= step:
            target = path.with_name(f"diverged_{path.name}")
            replace_dir(path, target)
            moved.append(target)
    return moved


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint, or ``None``."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(path: Path, model: Any, adapter_name: str, optimizer: Any) -> dict[str, Any]:
    """Restore adapter weights, optimizer moments and RNG state; return the saved trainer state.

    Raises ``CorruptCheckpointError`` (naming ``path``) when a file is missing, damaged or holds
    non-finite weights.
    """
    try:
        return _load(path, model, adapter_name, optimizer)
    except CorruptCheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors, JSON and torch each raise their own kinds
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CorruptCheckpointError(f"checkpoint {path} is unreadable ({detail})") from exc


def _load(path: Path, model: Any, adapter_name: str, optimizer: Any) -> dict[str, Any]:
    torch = require("torch", "llm", "checkpoints")
    st = require("safetensors.torch", "llm", "checkpoints")
    peft = require("peft", "llm", "checkpoints")
    state = json.loads((path / STATE_FILE).read_text())
    weights = st.load_file(str(path / "adapter" / ADAPTER_WEIGHTS))
    if not all(bool(torch.isfinite(w).all()) for w in weights.values() if w.is_floating_point()):
        raise CorruptCheckpointError(f"checkpoint {path} holds non-finite weights (a diverged run)")
    result = peft.set_peft_model_state_dict(model, weights, adapter_name=adapter_name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise RuntimeError(f"checkpoint {path} has weights this model lacks: {unexpected[:3]}")
    flat = st.load_file(str(path / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        _, index, name = key.split(".", 2)
        opt_state.setdefault(int(index), {})[name] = value
    for index, extra in state.pop("optimizer_scalars", {}).items():
        opt_state.setdefault(int(index), {}).update(extra)
    optimizer.load_state_dict({"state": opt_state, "param_groups": state.pop("optimizer_param_groups")})
    rng = st.load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    for key, value in rng.items():
        if key.startswith("cuda") and torch.cuda.is_available() and int(key[4:]) < torch.cuda.device_count():
            torch.cuda.set_rng_state(value, int(key[4:]))
    return state
