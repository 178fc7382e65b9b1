"""Old code against new: train_step.py, accel.py and torch_training.py on two trees, in one run.

Each ref is checked out with ``git worktree add --detach`` into a temporary folder outside the
repository (removed at the end, also on an error or Ctrl-C); the new side defaults to this working
tree as it is, uncommitted changes included. The benchmark scripts are this checkout's, run against
each tree's package (PYTHONPATH=TREE/src, in a fresh process each time, no user config, no
PUREDL_* variables); where the old package lacks an API a script uses, benchmarks/run_against.py
puts in a stand-in and the report names it. Rounds alternate which tree goes first, so load from
other processes hits both alike; each row keeps its best time over the rounds.

The report: one table per benchmark (each step or op, old time, new time, new/old, a verdict
against --limit), torch-alone rows as controls that show the run's noise, ``uptime`` before and
after. --instructions adds callgrind's instruction counts per pure-tier train step for both trees,
which do not depend on load (--simulate: also callgrind's simulated cache misses and mispredicted
branches). Rows of each round are also paired (old and new back to back): the report gives each
row's median new/old over the rounds with a 95% sign-test interval, and which rows the intervals
decide. Exit status 1 when a row is over the limit or a run failed.

Usage:
    python benchmarks/compare_commits.py [--old 7678e67] [--new REF] [--rounds 3] [--limit 1.05]
        [--quick] [--instructions [--simulate]] [--benchmarks train_step,accel,torch_training]
        [--out FILE.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from busy import load_average  # beside this file
from compare_report import (
    ROWS_OF,
    best_of,
    compare_rows,
    instructions_per_step,
    markdown_table,
    paired_ratios,
    paired_summary,
    simulated_per_step,
    summary,
)
from run_against import SHIMS_PREFIX

HERE = os.path.dirname(os.path.abspath(__file__))
OLD_DEFAULT = "7678e67"  # the last commit before the core redesign (issue 15)
BENCHMARKS = ("train_step", "accel", "torch_training")
INSTRUCTION_CASES = ("train", "ops", "torch_training")  # benchmarks/count_instructions.py --cases
RUN_TIMEOUT_S = 3600  # one benchmark run; a full accel.py sweep takes ~2 minutes on 2 cores


@dataclass
class Tree:
    """One side of the comparison: a source tree and how the report names it."""

    side: str  # "old" or "new"
    root: str
    label: str
    shims: set[str] = field(default_factory=set)

    @property
    def src(self) -> str:
        return os.path.join(self.root, "src")


def git(repo: str, *args: str) -> str:
    proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc.stdout.strip()


def describe(repo: str, ref: str) -> str:
    """``abc1234 (2026-11-21) subject``, the subject cut at 72 characters."""
    sha_date, subject = git(repo, "log", "-1", "--format=%h (%cs)%n%s", ref).split("\n", 1)
    return f"{sha_date} {subject[:72]}{'...' if len(subject) > 72 else ''}"


@contextlib.contextmanager
def detached_worktrees(repo: str, refs: dict[str, str]) -> Iterator[dict[str, str]]:
    """``{name: ref}`` checked out detached under one temporary folder; yields ``{name: path}``.

    Removes what it made, and only that, when the block ends however it ends.
    """
    base = tempfile.mkdtemp(prefix="puredl-compare-")
    made: list[tuple[str, str]] = []  # (worktree path, its admin folder in the repository's .git)
    try:
        paths = {}
        for name, ref in refs.items():
            path = os.path.join(base, name)
            git(repo, "worktree", "add", "--quiet", "--detach", path, ref)
            made.append((path, os.path.abspath(os.path.join(path, git(path, "rev-parse", "--git-dir")))))
            paths[name] = path
        yield paths
    finally:
        for path, admin in made:
            subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", path], capture_output=True)
            ours = os.path.basename(os.path.dirname(admin)) == "worktrees"
            if ours and os.path.isdir(admin):  # remove failed: drop our own registration, nobody else's
                shutil.rmtree(admin, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def bench_args(
    name: str, quick: bool, torch_threads: int | None, scratch: str, accel_subset: tuple = (None, None)
) -> list[str]:
    """Each benchmark's arguments: short runs with --quick; its outputs kept out of the repository;
    ``accel_subset``: accel.py's ``--ops`` and ``--sizes`` (None: the whole sweep)."""
    if name == "train_step":
        args = ["--quick"] if quick else []
        return args + (["--torch-threads", str(torch_threads)] if torch_threads else [])
    threads = ["--threads", str(torch_threads)] if torch_threads else []
    if name == "accel":
        ops, sizes = accel_subset
        subset = (["--ops", ops] if ops else []) + (["--sizes", sizes] if sizes else [])
        return (
            (["--quick", "--min-time", "0.02"] if quick else []) + threads + subset + ["--out-dir", scratch]
        )
    if name == "torch_training":
        return (["--rounds", "2", "--steps", "10"] if quick else []) + threads + ["--no-save"]
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


def child_env(tree: Tree, **extra: str) -> dict[str, str]:
    """This environment without PUREDL_* settings, the tree's package first, the user config off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUREDL_") and k != "PYTHONPATH"}
    env.update(PYTHONPATH=tree.src, PUREDL_ACCEL_NO_CONFIG="1", **extra)
    return env


def run_benchmark(python: str, name: str, tree: Tree, args: list[str], out_json: str, log: str) -> dict:
    """One benchmark run on one tree in a fresh process; returns its JSON record (raises on failure)."""
    script = os.path.join(HERE, f"{name}.py")
    cmd = [python, os.path.join(HERE, "run_against.py"), tree.src, script, *args, "--json", out_json]
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.run(
            cmd, cwd=tree.root, env=child_env(tree), stdout=f, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S
        )
    with open(log, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for line in text.splitlines():
        if line.startswith(SHIMS_PREFIX):
            tree.shims.update(s.strip() for s in line[len(SHIMS_PREFIX) :].split(","))
    if not os.path.exists(out_json):  # train_step exits 1 when a goal is missed, with its numbers written
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise RuntimeError(f"{name} on {tree.side} exited {proc.returncode} without results: {tail}")
    with open(out_json, encoding="utf-8") as f:
        return json.load(f)


def time_benchmarks(args, trees: list[Tree], scratch: str) -> tuple[dict, list[str]]:
    """{benchmark: {side: [rows of each round]}} and the failures, old and new taking turns."""
    records: dict[str, dict[str, list]] = {b: {t.side: [] for t in trees} for b in args.benchmarks}
    failures = []
    for r in range(args.rounds):
        for i, name in enumerate(args.benchmarks):
            order = trees if (r + i) % 2 == 0 else trees[::-1]  # who goes first alternates
            for tree in order:
                stem = os.path.join(scratch, f"{name}_{tree.side}_{r}")
                start = time.monotonic()
                print(
                    f"[round {r + 1}/{args.rounds}] {name} on {tree.side} ...",
                    end=" ",
                    file=sys.stderr,
                    flush=True,
                )
                try:
                    rec = run_benchmark(
                        args.python,
                        name,
                        tree,
                        bench_args(
                            name, args.quick, args.torch_threads, scratch, (args.accel_ops, args.accel_sizes)
                        ),
                        stem + ".json",
                        stem + ".log",
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    failures.append(str(e))
                    print("FAILED", file=sys.stderr)
                    continue
                rec["_round"] = r  # old and new of one round ran back to back: a pair
                records[name][tree.side].append(rec)
                print(f"{time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return records, failures


def count_instructions(args, trees: list[Tree], scratch: str) -> tuple[dict, int, dict]:
    """{side: {case: instructions per step}} from callgrind, the steps counted per case, and with
    --simulate {side: {"case: event": per step}} (cache misses, mispredicted branches)."""
    steps = 1 if args.quick else args.instruction_steps
    counts, simulated = {}, {}
    # the same loop natively: under callgrind AUTO's cost model runs on a clock slowed to match
    probe = [args.python, os.path.join(HERE, "count_instructions.py"), "--reference-loop"]
    native = json.loads(subprocess.run(probe, capture_output=True, text=True, check=True).stdout)
    for tree in trees:
        folder = os.path.join(scratch, f"callgrind_{tree.side}")
        os.makedirs(folder)
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=getppid",
            *(["--cache-sim=yes", "--branch-sim=yes"] if args.simulate else []),
            f"--callgrind-out-file={os.path.join(folder, 'out')}",
            args.python,
            os.path.join(HERE, "count_instructions.py"),
            "--steps",
            str(steps),
            "--cases",
            ",".join(args.instruction_cases),
            "--native-loop-s",
            str(native["reference_loop_s"]),
        ]
        what = ", ".join(args.instruction_cases)
        print(f"[callgrind] {what} on {tree.side} ...", end=" ", file=sys.stderr, flush=True)
        start = time.monotonic()
        env = child_env(tree, PUREDL_ACCEL="pure", PYTHONHASHSEED="0")
        proc = subprocess.run(
            cmd, cwd=tree.root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        printed = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not printed:
            raise RuntimeError(
                f"callgrind on {tree.side} exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
            )
        marks = json.loads(printed[-1])
        dumps = []
        for k in range(1, len(marks["segments"]) + 1):
            with open(os.path.join(folder, f"out.{k}"), encoding="utf-8") as f:
                dumps.append(f.read())
        counts[tree.side] = instructions_per_step(marks["segments"], dumps)
        if args.simulate:
            simulated[tree.side] = simulated_per_step(marks["segments"], dumps)
        print(f"{time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return counts, steps, simulated


def by_round(recs: list[dict], rows_of, rounds: int) -> list:
    """One side's rows per round, ``None`` for a round whose run failed (records without a round
    number, from before rounds were numbered, count in order)."""
    out: list = [None] * rounds
    for k, rec in enumerate(recs):
        r = rec.get("_round", k)
        if 0 <= r < rounds:
            out[r] = rows_of(rec)
    return out


def report(
    args, trees, records, failures, counts, steps, uptimes, elapsed, simulated=None
) -> tuple[str, bool]:
    """The markdown report, and whether every row is within the limit (and nothing failed)."""
    old, new = trees
    probe = "import torch; print('torch', torch.__version__)"  # in the benchmarks' interpreter
    found = subprocess.run([args.python, "-c", probe], capture_output=True, text=True)
    torch_text = found.stdout.strip() if found.returncode == 0 else "torch not installed"
    what = [f"{name}.py" for name in args.benchmarks] + (["instruction counts"] if counts else [])
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + (", --quick" if args.quick else "")
    rounds = (
        f"{args.rounds} round(s), old and new taking turns, each row's best over the rounds; "
        if args.benchmarks
        else ""
    )
    lines = [
        f"# Old against new: {', '.join(what)} ({when})",
        "",
        f"- old: {old.label}",
        f"- new: {new.label}",
        f"- Python {platform.python_version()} ({args.python}), {torch_text}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {rounds}limit: new <= {args.limit:g}x old. Run took {elapsed / 60:.1f} min.",
        f"- uptime before: `{uptimes[0]}`",
        f"- uptime after: `{uptimes[1]}`",
    ]
    if "accel" in args.benchmarks and (args.accel_ops or args.accel_sizes):
        lines.append(
            f"- accel.py on a subset of its sweep: ops {args.accel_ops or 'all'}, "
            f"sizes {args.accel_sizes or 'all'}"
        )
    for tree in trees:
        if tree.shims:
            lines.append(
                f"- stand-ins for API the {tree.side} package lacks: {', '.join(sorted(tree.shims))}"
            )
    over = 0  # rows over the limit, in all tables
    for name in args.benchmarks:
        rows_of = ROWS_OF[name]
        old_rows = best_of([rows_of(rec) for rec in records[name]["old"]])
        new_rows = best_of([rows_of(rec) for rec in records[name]["new"]])
        rows = compare_rows(old_rows, new_rows, args.limit)
        over += sum(r["verdict"] == "SLOWER" for r in rows)
        runs = f"{len(records[name]['old'])} old and {len(records[name]['new'])} new run(s)"
        sides = (by_round(records[name][side], rows_of, args.rounds) for side in ("old", "new"))
        paired = paired_ratios(*sides)
        lines += ["", f"## {name}.py ({runs})", "", summary(rows, args.limit)]
        lines += ["", paired_summary(rows, paired, args.limit), "", markdown_table(rows, paired=paired)]
    if counts:
        rows = compare_rows(counts["old"], counts["new"], args.limit)
        over += sum(r["verdict"] == "SLOWER" for r in rows)
        lines += [
            "",
            f"## Instructions per step and per op call (callgrind: {', '.join(args.instruction_cases)})",
            "",
            "Counted with `valgrind --tool=callgrind` (PYTHONHASHSEED=0, torch on one thread), so the "
            "same whatever the load, to ~0.2% between runs (benchmarks/count_instructions.py): train "
            f"steps {steps} per case after 2 warm-up (PURE); op calls as benchmarks/accel.py makes "
            f"them, 200 / 100 / 30 calls at 10 / 1,000 / 100,000 elements after 20 warm-up ({steps} "
            "for pure at 100,000) in PURE and TORCH; in AUTO (default thresholds) its steady state, "
            "3000 / 2000 / 600 calls after 5000 / 2000 / 300 warm-up (matmul 316x316: 30 after 20), "
            "with its cost model (its timed calls and tries of the other backend included; its clock "
            "slowed by callgrind's measured slowdown, so that it sees about native times: a rough "
            "share, a pure kernel costs ~4x more instructions per second than torch's vector code) "
            "and without it ('thresholds-only', what the old tree's AUTO was); the TORCH-mode "
            f"training step {10 * steps} steps.",
            "",
            summary(rows, args.limit),
            "",
            markdown_table(rows, unit="count"),
        ]
    if simulated:
        rows = compare_rows(simulated["old"], simulated["new"], args.limit)
        lines += [
            "",
            "## Simulated cache misses and mispredicted branches per step (not judged)",
            "",
            "callgrind's `--cache-sim=yes --branch-sim=yes` in the same run as the counts: L1 misses "
            "(instruction and data), last-level misses, mispredicted branches (conditional and "
            "indirect) of its model of this machine's caches and of a simple predictor; no "
            "prefetching, no timing. Where the times differ and these do not, the work done does not "
            "explain it. These rows do not count toward the verdict.",
            "",
            summary(rows, args.limit),
            "",
            markdown_table(rows, unit="count"),
        ]
    if failures:
        lines += ["", "## Runs that failed", ""] + [f"- {f}" for f in failures]
    ok = not over and not failures
    if ok:
        verdict = f"every row within {args.limit:g}x the old code"
    else:
        verdict = f"{over} row(s) slower than {args.limit:g}x the old code, {len(failures)} run(s) failed"
    lines += ["", f"**Verdict: {verdict}.**"]
    return "\n".join(lines) + "\n", ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default=OLD_DEFAULT, help=f"the old ref (default {OLD_DEFAULT})")
    ap.add_argument("--new", help="the new ref (default: this working tree as it is)")
    ap.add_argument("--rounds", type=int, help="rounds of old and new (default 3; 1 with --quick)")
    ap.add_argument("--limit", type=float, default=1.05, help="largest new/old allowed (default 1.05)")
    ap.add_argument("--quick", action="store_true", help="a short smoke run: each benchmark's short form")
    ap.add_argument(
        "--benchmarks",
        default=",".join(BENCHMARKS),
        help="comma-separated subset of train_step,accel,torch_training ('none' with --instructions alone)",
    )
    ap.add_argument("--instructions", action="store_true", help="also count instructions with callgrind")
    ap.add_argument(
        "--simulate",
        action="store_true",
        help="with --instructions: also callgrind's cache and branch simulation (about 2x slower)",
    )
    ap.add_argument("--instruction-steps", type=int, default=3, help="counted steps per case (default 3)")
    ap.add_argument(
        "--instruction-cases",
        default="train,ops,torch_training",
        help="what --instructions counts: comma-separated subset of train,ops,torch_training",
    )
    ap.add_argument("--torch-threads", type=int, help="torch threads for all three (default: each one's own)")
    ap.add_argument("--accel-ops", help="accel.py's --ops: a subset of its ops (default: all)")
    ap.add_argument("--accel-sizes", help="accel.py's --sizes: a subset of its sizes (default: all)")
    ap.add_argument("--python", default=sys.executable, help="the interpreter to run them with")
    ap.add_argument(
        "--out", help="also write the report to this markdown file (the raw numbers beside it, .json)"
    )
    args = ap.parse_args(argv)
    args.benchmarks = (
        [] if args.benchmarks == "none" else [b.strip() for b in args.benchmarks.split(",") if b]
    )
    unknown = [b for b in args.benchmarks if b not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    args.instruction_cases = [c.strip() for c in args.instruction_cases.split(",") if c.strip()]
    unknown = [c for c in args.instruction_cases if c not in INSTRUCTION_CASES]
    if unknown or not args.instruction_cases:
        known = ", ".join(INSTRUCTION_CASES)
        ap.error(f"--instruction-cases: choose from {known} (got {', '.join(unknown) or 'none'})")
    if not args.benchmarks and not args.instructions:
        ap.error("nothing to do: --benchmarks none without --instructions")
    if args.simulate and not args.instructions:
        ap.error("--simulate needs --instructions")
    if args.instructions and not shutil.which("valgrind"):
        ap.error("--instructions needs valgrind on PATH")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1 or args.limit <= 0:
        ap.error("--rounds must be at least 1 and --limit positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo = git(HERE, "rev-parse", "--show-toplevel")
    for ref in filter(None, (args.old, args.new)):
        try:
            git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except RuntimeError:
            print(f"compare_commits: {ref!r} is not a commit in {repo}", file=sys.stderr)
            return 2
    # SIGTERM ends the run like Ctrl-C does: the worktrees are removed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    refs = {"old": args.old} | ({"new": args.new} if args.new else {})
    start = time.monotonic()
    with (
        detached_worktrees(repo, refs) as paths,
        tempfile.TemporaryDirectory(prefix="puredl-compare-out-") as scratch,
    ):
        dirty = git(repo, "status", "--porcelain", "--untracked-files=no")
        new_label = (
            describe(repo, args.new)
            if args.new
            else f"working tree {repo} at {describe(repo, 'HEAD')}"
            + (" + uncommitted changes" if dirty else "")
        )
        trees = [
            Tree("old", paths["old"], describe(repo, args.old)),
            Tree("new", paths.get("new", repo), new_label),
        ]
        uptime_before = load_average()
        print(f"uptime: {uptime_before}", file=sys.stderr)
        records, failures = time_benchmarks(args, trees, scratch)
        counts, steps, simulated = {}, 0, {}
        if args.instructions:
            try:
                counts, steps, simulated = count_instructions(args, trees, scratch)
            except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
                failures.append(f"instruction counts: {e}")
        uptime_after = load_average()
        text, ok = report(
            args,
            trees,
            records,
            failures,
            counts,
            steps,
            (uptime_before, uptime_after),
            time.monotonic() - start,
            simulated,
        )
    print(text)
    if args.out:
        raw = {
            "old": trees[0].label,
            "new": trees[1].label,
            "records": records,
            "instructions": counts,
            "simulated": simulated,
        }
        for path, content in ((args.out, text), (os.path.splitext(args.out)[0] + ".json", json.dumps(raw))):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(content)
            os.replace(path + ".tmp", path)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
