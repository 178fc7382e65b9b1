"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint folder ``checkpoints/step_000025/`` holds

* ``adapter/``               the trainable LoRA as a PEFT folder (loadable on its own),
* ``optimizer.safetensors``  AdamW moments, keyed ``state.<param index>.<name>``,
* ``rng.safetensors``        torch CPU (and CUDA) random states,
* ``trainer_state.json``     step, losses so far, optimizer param groups, the run fingerprint.

It is written to a temporary folder and renamed, so a process killed at any moment leaves
either the previous checkpoint or the new one, never half of one.

>>> checkpoint_name(25)
'step_000025'
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from puredl._optional import require
from puredl.finetune.lora import ADAPTER_WEIGHTS, replace_dir, save_lora

STATE_FILE = "trainer_state.json"
KEEP_LAST = 2


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
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(int(state["step"]))
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=folder))
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


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint, or ``None``."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(path: Path, model: Any, adapter_name: str, optimizer: Any) -> dict[str, Any]:
    """Restore adapter weights, optimizer moments and RNG state; return the saved trainer state."""
    torch = require("torch", "llm", "checkpoints")
    st = require("safetensors.torch", "llm", "checkpoints")
    peft = require("peft", "llm", "checkpoints")
    state = json.loads((path / STATE_FILE).read_text())
    weights = st.load_file(str(path / "adapter" / ADAPTER_WEIGHTS))
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
