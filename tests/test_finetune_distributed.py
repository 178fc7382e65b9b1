"""Data-parallel fine-tuning: two gloo processes on 127.0.0.1 train the tiny Gemma 3 like one process.

The two ranks are started the way torchrun starts them (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and run the progressive pipeline (three phases, grad_accum 2,
an odd batch so the shards are uneven, and one micro-batch smaller than the world so a rank
has nothing to forward). The reference is the same pipeline in this process, no process group.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
st = pytest.importorskip("safetensors.torch")

from finetune_helpers import run_tiny_pipeline, save_tiny_model, tiny_config_text  # noqa: E402
from puredl.finetune.config import load_config  # noqa: E402

pytestmark = pytest.mark.timeout(300)  # a hung collective fails the test instead of stalling CI

HERE = Path(__file__).resolve()
WORLD = 2
LAUNCH_TIMEOUT_S = 240
SETTINGS = {"batch_size": 3, "grad_accum": 2, "checkpoint_every": 1, "learning_rate": 0.02}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(config: Path, out_dir: Path) -> list[str]:
    """Start WORLD ranks of this file's ``__main__`` as torchrun would; return their outputs."""
    port = free_port()
    procs = []
    for r in range(WORLD):
        env = dict(os.environ)
        env.update(
            RANK=str(r),
            LOCAL_RANK=str(r),
            WORLD_SIZE=str(WORLD),
            LOCAL_WORLD_SIZE=str(WORLD),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]),
        )
        cmd = [sys.executable, str(HERE), str(config), str(out_dir)]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    outputs, deadline = [], time.monotonic() + LAUNCH_TIMEOUT_S
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for r, (p, text) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {r} exited {p.returncode}:\n{text[-4000:]}"
    return outputs


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def losses(run_dir: Path, k: int) -> list[float]:
    lines = (run_dir / f"phase{k}" / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


@pytest.mark.slow
def test_two_gloo_ranks_train_the_same_adapters_as_one_process(tmp_path):
    model_dir = save_tiny_model(tmp_path / "model")
    single_cfg = tmp_path / "single.sdn"
    single_cfg.write_text(tiny_config_text(model_dir, tmp_path / "single", **SETTINGS))
    dp_cfg = tmp_path / "dp.sdn"
    dp_cfg.write_text(tiny_config_text(model_dir, tmp_path / "dp", **SETTINGS))
    out_dir = tmp_path / "ranks"
    out_dir.mkdir()

    outputs = launch(dp_cfg, out_dir)
    run_tiny_pipeline(str(single_cfg))

    single, dp = load_config(str(single_cfg)).run_dir, load_config(str(dp_cfg)).run_dir
    assert "data parallel on 2 ranks" in outputs[0]
    assert "Training" not in outputs[1]  # rank 1 prints nothing of the run
    # rank 0 wrote exactly what one process writes; rank 1 opened nothing there for writing
    assert files_under(dp) == files_under(single)
    assert json.loads((out_dir / "rank1_writes.json").read_text()) == []
    assert json.loads((out_dir / "rank0_writes.json").read_text())  # the watcher does see writes
    for k in range(3):
        name = f"phase{k}/lora_{k}/adapter_model.safetensors"
        ref, got = st.load_file(str(single / name)), st.load_file(str(dp / name))
        assert ref.keys() == got.keys()
        assert any(v.abs().max() > 0 for key, v in ref.items() if "lora_B" in key)  # it trained
        for key in ref:
            torch.testing.assert_close(got[key], ref[key], atol=1e-5, rtol=1e-4, msg=f"{name} {key}")
        assert losses(dp, k) == pytest.approx(losses(single, k), abs=1e-5)
    # every rank ends with the same adapters, bit for bit
    rank0 = st.load_file(str(out_dir / "rank0.safetensors"))
    rank1 = st.load_file(str(out_dir / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys() and len(rank0) > 0
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key


def _watch_writes(folder: Path, seen: list[str]) -> None:
    """Record every write-like file operation under ``folder`` (Python audit events)."""
    root = os.path.realpath(folder)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    events = {"os.rename", "os.replace", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree", "os.truncate"}

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in (mode or "") for c in "wax+") or (mode is None and flags & write_flags)
        elif event in events:
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            full = os.path.realpath(os.fsdecode(path))
            if full == root or full.startswith(root + os.sep):
                seen.append(f"{event} {full}")

    sys.addaudithook(hook)


def _rank_main(config: str, out_dir: str) -> None:
    """One rank: run the pipeline, keep each phase's trained adapter as it was before merging."""
    from puredl.finetune import pipeline

    rank = int(os.environ["RANK"])
    seen: list[str] = []
    _watch_writes(load_config(config).run_dir, seen)
    adapters: dict[str, object] = {}
    real_merge = pipeline.merge_lora

    def keep_then_merge(model):
        k = len({key.split("|")[0] for key in adapters})  # phases kept so far
        for name, p in model.named_parameters():
            if "lora_" in name and p.requires_grad:
                adapters[f"phase{k}|{name}"] = p.detach().clone().contiguous()
        return real_merge(model)

    pipeline.merge_lora = keep_then_merge
    run_tiny_pipeline(config)
    st.save_file(adapters, str(Path(out_dir) / f"rank{rank}.safetensors"))
    (Path(out_dir) / f"rank{rank}_writes.json").write_text(json.dumps(seen))


if __name__ == "__main__":  # one rank of the 2-process test (started by launch())
    _rank_main(sys.argv[1], sys.argv[2])
