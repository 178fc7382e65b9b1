"""The fine-tuning thread policy: parsing, the wait policy set before torch loads, adaptive counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from puredl.finetune import threads
from puredl.finetune.config import config_from_dict
from puredl.finetune.errors import ConfigError
from puredl.finetune.threads import ThreadPolicy, parse_policy, prepare_environment, wait_policy_for

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_parse_policy_names_and_counts():
    assert parse_policy("adaptive:3") == ("adaptive", 3)
    for bad in ("", "spin", "passive:0", "passive:x", "torch:-1"):
        with pytest.raises(ValueError, match="thread policy"):
            parse_policy(bad)


def test_config_key_is_checked():
    assert config_from_dict({"training": {"thread_policy": "adaptive"}}).training.thread_policy == "adaptive"
    with pytest.raises(ConfigError, match="training.thread_policy must be one of"):
        config_from_dict({"training": {"thread_policy": "spin"}})


def test_the_users_wait_policy_is_kept():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert "set by the user" in prepare_environment("passive", env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {}
    prepare_environment("torch", env)
    assert env == {}  # torch's policy leaves OpenMP's default alone
    prepare_environment("adaptive", env)
    assert env == {}  # so does adaptive: sleeping threads cost 12-16% on a quiet machine (measured)
    assert wait_policy_for("passive:1") == "PASSIVE" and wait_policy_for("torch:1") is None


def test_the_default_policy_keeps_a_fixed_thread_count():
    # adaptive's count follows the load, and torch rounds differently at other counts: a resumed
    # run would then not be bit-identical (tests/test_finetune_faults.py failed once so)
    assert config_from_dict({}).training.thread_policy == "torch"


def _loadavg(tmp_path, running: list[int]):
    """A stand-in for open() that serves /proc/loadavg with the given running counts in turn."""
    real_open = open
    counts = iter(running)

    def fake_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            target = tmp_path / "loadavg"
            target.write_text(f"0.50 0.40 0.30 {next(counts)}/300 12345\n")
            return real_open(target, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    return fake_open


def test_our_own_runnable_threads_are_not_counted_as_other_processes(tmp_path, monkeypatch):
    # 3 runnable on the machine, 2 of them our threads (the reader and a torch worker finishing)
    monkeypatch.setattr("builtins.open", _loadavg(tmp_path, [3]))
    assert threads.runnable_others(readings=1, task_states=lambda: ["R", "R", "S"]) == 1
    monkeypatch.setattr("builtins.open", _loadavg(tmp_path, [1]))
    assert threads.runnable_others(readings=1, task_states=lambda: ["S", "S"]) == 0  # the reader runs


def test_the_least_of_a_few_readings_drops_a_passing_burst(tmp_path, monkeypatch):
    monkeypatch.setattr("builtins.open", _loadavg(tmp_path, [4, 2, 3]))
    assert threads.runnable_others(readings=3, gap_s=0, task_states=lambda: ["R"]) == 1


def test_a_thread_ending_while_read_is_skipped(monkeypatch):
    """An empty or cut stat text (a thread ending as it is read) is left out, not an error that
    would stop training between two steps."""
    import io

    real_open = open
    texts = iter(["", "123 (py (worker)) R 1 2 3", "456 (cut"])

    def fake_open(path, *args, **kwargs):
        if str(path).startswith("/proc/self/task/"):
            return io.StringIO(next(texts))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(threads.os, "listdir", lambda path: ["1", "2", "3"])
    monkeypatch.setattr("builtins.open", fake_open)
    assert threads.own_task_states() == ["R"]


def test_own_task_states_sees_this_process_running():
    states = threads.own_task_states()
    if not os.path.isdir("/proc/self/task"):
        assert states == []
    else:
        assert "R" in states  # the thread reading is running


class _Torch:
    """A stand-in for torch's thread setter that records every change."""

    def __init__(self, threads: int) -> None:
        self.threads, self.calls = threads, []

    def set(self, n: int) -> None:
        self.threads = n
        self.calls.append(n)


def _adaptive(readings: list[int], cores: int = 2, default: int = 2, num_threads=None):
    torch = _Torch(default)
    feed = iter(readings)
    policy = ThreadPolicy(
        "adaptive",
        num_threads,
        read_others=lambda: next(feed),
        cores=cores,
        set_threads=torch.set,
        get_threads=lambda: torch.threads,
    )
    return policy, torch


def test_adaptive_follows_the_median_of_recent_readings():
    # 0 others: 2 threads; a lone reading of 1 other busy process does not move the median at once
    policy, torch = _adaptive([0, 1, 1, 1, 0, 0, 0, 0])
    seen = [torch.threads]
    for _ in range(7):
        policy.between_steps()
        seen.append(torch.threads)
    # median_low of the last 5 readings: [0]=0 [0,1]=0 [0,1,1]=1 [0,1,1,1]=1 [0,1,1,1,0]=1 [1,1,1,0,0]=1
    # [1,1,0,0,0]=0 [1,0,0,0,0]=0 -> cores - busy, at least 1, at most the default
    assert seen == [2, 2, 1, 1, 1, 1, 2, 2]
    assert policy.changes == 2


def test_adaptive_never_exceeds_num_threads_nor_goes_below_one():
    policy, torch = _adaptive([0, 9, 9, 9], cores=8, default=8, num_threads=3)
    assert torch.threads == 3
    for _ in range(3):
        policy.between_steps()
    assert torch.threads == 1
    assert max(torch.calls) == 3


def test_other_policies_never_change_the_count():
    torch = _Torch(2)
    policy = ThreadPolicy(
        "passive", read_others=lambda: 5, cores=2, set_threads=torch.set, get_threads=lambda: 2
    )
    policy.between_steps()
    assert torch.calls == []


def test_make_context_sets_the_wait_policy_before_openmp_reads_it():
    """OpenMP itself reports the policy it runs with (OMP_DISPLAY_ENV prints it when torch loads)."""
    pytest.importorskip("torch")
    code = (
        "from puredl.finetune import pipeline\n"
        "from puredl.finetune.config import config_from_dict\n"
        "cfg = config_from_dict({'training': {'thread_policy': 'passive', 'device': 'cpu'}})\n"
        "ctx = pipeline.make_context(cfg, device='cpu')\n"
        "print(ctx.threads.describe())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(PYTHONPATH=SRC, OMP_DISPLAY_ENV="TRUE")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    if "OMP_WAIT_POLICY" not in done.stderr:
        pytest.skip("this torch's OpenMP does not print its settings (not GNU libgomp)")
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in done.stderr
    assert "thread policy passive" in done.stdout and "OMP_WAIT_POLICY=PASSIVE" in done.stdout


def test_the_training_loop_consults_the_policy_after_every_step(tmp_path):
    pytest.importorskip("peft")
    import torch

    from finetune_helpers import TINY_CORPUS, tiny_gemma3, tiny_tokenizer
    from puredl.finetune.batching import encode_example
    from puredl.finetune.lora import LoRAConfig, add_lora
    from puredl.finetune.trainer import TrainPlan, train_adapter

    tok = tiny_tokenizer()
    examples = [encode_example(tok, TINY_CORPUS[i], "", 32) for i in range(6)]
    torch.manual_seed(0)
    model = add_lora(tiny_gemma3(), LoRAConfig(r=2, alpha=4, dropout=0.0))
    readings = [0, 2, 2, 2]  # the machine gets busy: 2 other runnable processes on 2 cores
    fake = _Torch(2)
    policy = ThreadPolicy(
        "adaptive",
        read_others=lambda: readings.pop(0),
        cores=2,
        set_threads=fake.set,
        get_threads=lambda: fake.threads,
    )
    plan = TrainPlan(
        epochs=1,
        batch_size=2,
        grad_accum=1,
        learning_rate=1e-3,
        scheduler="constant",
        warmup=0,
        total_steps=3,
    )
    train_adapter(
        model,
        examples,
        plan,
        adapter_name="default",
        pad_id=0,
        work_dir=tmp_path,
        between_steps=policy.between_steps,
    )
    assert readings == []  # one reading at the start, one after each of the 3 steps
    assert fake.calls == [1]  # down to one thread once the median says the cores are taken
