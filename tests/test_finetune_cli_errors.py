"""``puredl finetune`` when things go wrong (issue 14): nothing lost, one line, exit code 2.

merge never deletes a folder puredl did not write; one writer per run folder; an interrupted
run is not silently discarded; data, disk and config failures name what was wrong.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from finetune_helpers import run_tiny_pipeline, save_tiny_model, tiny_config_text  # noqa: E402
from puredl import _atomic  # noqa: E402
from puredl.finetune import cli, pipeline, run_state  # noqa: E402
from puredl.finetune.config import load_config  # noqa: E402
from puredl.finetune.errors import FinetuneError  # noqa: E402

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, model_dir) -> Path:
    """A completed three-phase tiny run; returns its config file."""
    root = tmp_path_factory.mktemp("done")
    cfg = root / "tiny.sdn"
    cfg.write_text(tiny_config_text(model_dir, root / "runs", max_steps=1, checkpoint_every=0))
    run_tiny_pipeline(str(cfg))
    return cfg


def args(command: str, config: Path | str, **kw) -> argparse.Namespace:
    base = dict(finetune_command=command, config=str(config), device="cpu", model=None, resume=False)
    base.update(restart=False, compare=None, debug=False, out=None, upto=None, adapter=None, force=False)
    base.update(kw)
    return argparse.Namespace(**base)


def one_error_line(capsys) -> str:
    """The failure's message: the one ``error:`` line, last on stderr (progress bars may come before)."""
    err = capsys.readouterr().err.replace("\r", "\n").strip()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1 and err.endswith(errors[0]), err
    return errors[0]


# ---------------------------------------------------------------- merge --out (critical: data loss)


def test_merge_refuses_a_folder_it_did_not_write(finished_run, tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert cli.run(args("merge", finished_run, out=str(out))) == 2
    assert (
        "not empty and was not written by puredl" in one_error_line(capsys)
        and "--force" in str(out) + "--force"
    )
    assert (out / "keep.txt").read_text() == "x"


def test_merge_refuses_the_runs_folder_and_the_working_folder(finished_run, capsys, monkeypatch):
    runs = finished_run.parent / "runs"
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))
    assert cli.run(args("merge", finished_run, out=str(runs))) == 2
    monkeypatch.chdir(finished_run.parent)
    assert cli.run(args("merge", finished_run, out=os.getcwd())) == 2
    assert sorted(p.relative_to(runs) for p in runs.rglob("*")) == before and finished_run.is_file()


def test_merge_replaces_its_own_output_and_force_keeps_other_files(finished_run, tmp_path, capsys):
    out = tmp_path / "merged"
    assert cli.run(args("merge", finished_run, out=str(out))) == 0
    assert (out / _atomic.MARKER).is_file() and (out / "config.json").is_file()
    assert cli.run(args("merge", finished_run, out=str(out))) == 0  # its own folder: replaced
    forced = tmp_path / "mine"
    forced.mkdir()
    (forced / "keep.txt").write_text("x")
    assert cli.run(args("merge", finished_run, out=str(forced), force=True)) == 0
    assert (forced / "keep.txt").read_text() == "x" and (forced / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_replace_dir_never_removes_a_foreign_folder(tmp_path):
    new, dst = tmp_path / "new", tmp_path / "dst"
    new.mkdir()
    (new / "a.json").write_text("new")
    dst.mkdir()
    (dst / "a.json").write_text("old")
    (dst / "notes.txt").write_text("mine")
    with pytest.raises(_atomic.UnsafeReplaceError, match="did not write"):
        _atomic.replace_dir(new, dst)
    assert (dst / "notes.txt").read_text() == "mine" and (new / "a.json").is_file()
    (dst / "notes.txt").unlink()  # now every file in dst is rewritten by new: replacing loses nothing
    _atomic.replace_dir(new, dst)
    assert (dst / "a.json").read_text() == "new"


# ---------------------------------------------------------------- one writer per run folder


def test_a_second_run_on_the_same_folder_names_the_lock_holder(finished_run, tmp_path, capsys):
    run_dir = load_config(finished_run).run_dir
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from puredl.finetune.run_state import RunLock\n"
            f"with RunLock({str(run_dir)!r}):\n    print('locked', flush=True); time.sleep(60)",
        ],
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli.run(args("run-all", finished_run, resume=True)) == 2
        err = one_error_line(capsys)
        assert f"pid {holder.pid}" in err and "in use by another puredl run" in err
    finally:
        holder.kill()
        holder.wait()
    with run_state.RunLock(run_dir):  # the dead holder's lock is taken over
        info = json.loads(run_state.lock_path(run_dir).read_text())
        assert info["pid"] == os.getpid()
    assert not run_state.lock_path(run_dir).exists()


# ---------------------------------------------------------------- interrupted runs and stale temporaries


def interrupted_run(tmp_path: Path, model_dir: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "tiny.sdn"
    cfg.write_text(tiny_config_text(model_dir, tmp_path / "runs"))
    run_dir = load_config(cfg).run_dir
    ckpt = run_dir / "phase1" / "checkpoints" / "step_000002"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    _atomic.write_json(run_dir / run_state.STATE_FILE, {"config": {"phases": [{}, {}, {}]}, "phases": [{}]})
    return cfg, ckpt


def test_a_fresh_run_keeps_an_interrupted_runs_checkpoints_unless_restart(tmp_path, model_dir, capsys):
    cfg, ckpt = interrupted_run(tmp_path, model_dir)
    assert cli.run(args("run-all", cfg)) == 2
    err = one_error_line(capsys)
    assert "interrupted run (1 of 3 phases done; checkpoint phase1/checkpoints/step_000002)" in err
    assert "--resume" in err and "--restart" in err and ckpt.is_dir()
    ctx = pipeline.make_context(load_config(cfg), resume=False, out=lambda s: None)
    ctx.restart = True
    assert run_state.begin_run(ctx) is None  # --restart goes ahead (the run then clears the folder)


def test_phase_n_keeps_an_interrupted_phase_unless_restart(tmp_path, model_dir):
    cfg, ckpt = interrupted_run(tmp_path, model_dir)
    ctx = pipeline.make_context(load_config(cfg), resume=False, out=lambda s: None)
    with pytest.raises(FinetuneError, match=r"phase 1 was interrupted.*--resume.*--restart"):
        run_state.begin_phase(ctx, 1)
    assert ckpt.is_dir()


def test_stale_temporaries_of_puredl_naming_are_swept(tmp_path, model_dir):
    cfg, _ = interrupted_run(tmp_path, model_dir)
    run_dir = load_config(cfg).run_dir
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = [
        run_dir / f".summary.json.tmp-{dead_pid}",
        run_dir / "phase1" / "checkpoints" / f".step_000004.tmp-{dead_pid}",
        run_dir / "phase0" / ".lora_0-ab12cd_3",  # save_lora's temporary folder (no pid in the name)
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if "step" in path.name or "lora" in path.name else path.write_text("x")
    keep = [run_dir / ".notes", run_dir / "phase0" / ".my.tmp-notes", run_dir / f".x.tmp-{os.getpid()}"]
    for path in keep:
        path.write_text("mine")
    ctx = pipeline.make_context(load_config(cfg), resume=False, out=lambda s: None)
    ctx.restart = True
    with run_state.RunLock(run_dir):
        run_state.begin_run(ctx)
    assert not [p for p in stale if p.exists()]
    assert all(p.read_text() == "mine" for p in keep)


# ---------------------------------------------------------------- one line, exit 2, for every failure


def write_config(tmp_path: Path, model_dir: Path, extra: str = "", **training) -> Path:
    cfg = tmp_path / "c.sdn"
    cfg.write_text(tiny_config_text(model_dir, tmp_path / "runs", max_steps=1, **training) + extra)
    return cfg


def test_a_malformed_data_line_names_the_file_and_line(tmp_path, model_dir, capsys):
    bad = tmp_path / "terms.jsonl"
    bad.write_text('{"ko": "고혈압", "en": "hypertension", "definition": "혈압이 높음"}\n{"ko": broken\n')
    cfg = write_config(tmp_path, model_dir)
    cfg.write_text(
        cfg.read_text().replace('data: "medical_terms"}', f'data: "medical_terms", data_path: "{bad}"}}')
    )
    assert cli.run(args("run-all", cfg)) == 2
    err = one_error_line(capsys)
    assert f"{bad}:2" in err and "phase 1" in err
    assert not (tmp_path / "runs" / "tiny" / "phase0" / "lora_0").exists()  # found before phase 0 trained


def test_a_missing_field_names_the_file(tmp_path, model_dir, capsys):
    bad = tmp_path / "terms.jsonl"
    bad.write_text('{"ko": "고혈압"}\n')
    cfg = write_config(tmp_path, model_dir)
    cfg.write_text(
        cfg.read_text().replace('data: "medical_terms"}', f'data: "medical_terms", data_path: "{bad}"}}')
    )
    assert cli.run(args("run-all", cfg)) == 2
    assert str(bad) in one_error_line(capsys)


def test_an_unknown_target_in_a_later_phase_fails_before_phase_0(tmp_path, model_dir):
    cfg = write_config(tmp_path, model_dir)
    cfg.write_text(
        cfg.read_text().replace('data: "medical_mcq"}', 'data: "medical_mcq", target_modules: ["qproj"]}')
    )
    from finetune_helpers import tiny_hooks

    ctx = pipeline.make_context(load_config(cfg), hooks=tiny_hooks(), out=lambda s: None)
    with pytest.raises(FinetuneError, match=r"phases\[2\] target_modules.*qproj"):
        pipeline.run_all(ctx)
    assert not (tmp_path / "runs" / "tiny" / "phase0" / "lora_0").exists()


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, model_dir, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_atomic.os, "fsync", full)
    assert cli.run(args("run-all", write_config(tmp_path, model_dir))) == 2
    err = one_error_line(capsys)
    assert "no space left" in err and "run_config.json" in err and "--resume" in err
    assert not [p for p in (tmp_path / "runs" / "tiny").iterdir() if ".tmp-" in p.name]


def test_an_unwritable_output_folder_is_one_line(tmp_path, model_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # output.dir below a file: the OS refuses for root too
    cfg = write_config(tmp_path, model_dir)
    cfg.write_text(cfg.read_text().replace(f'dir: "{tmp_path / "runs"}"', f'dir: "{blocker / "runs"}"'))
    assert cli.run(args("run-all", cfg)) == 2
    assert str(blocker) in one_error_line(capsys)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_permission_denied_is_one_line(tmp_path, model_dir, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    cfg = write_config(tmp_path, model_dir)
    cfg.write_text(cfg.read_text().replace(f'dir: "{tmp_path / "runs"}"', f'dir: "{locked / "runs"}"'))
    try:
        assert cli.run(args("run-all", cfg)) == 2
        assert "permission denied" in one_error_line(capsys)
    finally:
        locked.chmod(0o700)


def test_max_eval_zero_and_contradicting_flags_are_refused(finished_run, capsys):
    assert (
        cli.run(args("validate", finished_run, phase=None, capabilities=None, max_eval=0, output=None)) == 2
    )
    assert "--max-eval" in one_error_line(capsys)
    assert cli.run(args("run-all", finished_run, resume=True, restart=True)) == 2
    assert "--restart" in one_error_line(capsys)


def test_a_bad_config_is_one_short_line(tmp_path, capsys):
    levels = ["&l0 [a, a, a, a, a, a, a, a, a, a]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 8)]
    bomb = tmp_path / "bomb.sdn"
    bomb.write_text("project: [" + ", ".join(levels) + "]\n")
    t0 = time.perf_counter()
    assert cli.run(args("run-all", bomb)) == 2
    assert time.perf_counter() - t0 < 5 and len(one_error_line(capsys)) < 300


def test_unexpected_failures_are_one_line_and_debug_shows_the_traceback(
    tmp_path, model_dir, capsys, monkeypatch
):
    def broken(ctx, compare=None):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(pipeline, "run_all", broken)
    cfg = write_config(tmp_path, model_dir)
    assert cli.run(args("run-all", cfg)) == 2
    assert "ZeroDivisionError" in one_error_line(capsys)
    assert cli.run(args("run-all", cfg, debug=True)) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("PUREDL_DEBUG", "1")
    assert cli.run(args("run-all", cfg)) == 2
    assert "Traceback" in capsys.readouterr().err
