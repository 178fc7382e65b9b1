"""benchmarks/compare_commits.py: its rows, tables, callgrind parsing and worktrees (nothing is timed)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import shutil
import sys
import types

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks")


@pytest.fixture
def mods(monkeypatch):
    """compare_report, compare_commits and run_against, imported from benchmarks/ as the scripts do."""
    monkeypatch.syspath_prepend(BENCH)
    return (
        importlib.import_module("compare_report"),
        importlib.import_module("compare_commits"),
        importlib.import_module("run_against"),
    )


TRAIN_STEP = {
    "cases": [
        {"name": "(a) XOR", "pure_s": 2e-4, "torch_s": 1e-4, "goal_met": True},
        {"name": "(b) moons", "pure_s": 3e-3, "torch_s": None, "goal_met": True},
    ]
}
ACCEL = {
    "results": {
        "matmul": [
            {
                "label": "10x10",
                "pure": 3.6e-5,
                "pure_est": False,
                "torch": 9.6e-6,
                "auto_default": 9.5e-6,
                "auto_default_on": "torch",
            },
            {"label": "3162x3162", "pure": 4000.0, "pure_est": True, "torch": 0.5},
        ]
    }
}


def test_rows_from_each_benchmarks_json(mods):
    report, _, _ = mods
    assert report.train_step_rows(TRAIN_STEP) == {
        "(a) XOR: puredl pure": (2e-4, ""),
        "(a) XOR: torch eager (control: torch alone)": (1e-4, ""),
        "(b) moons: puredl pure": (3e-3, ""),  # no torch: no control row
    }
    assert report.torch_training_rows({"ms_puredl": 0.5, "ms_torch": 0.25}) == {
        "digits 64-256-10 step: puredl TORCH mode": (0.5e-3, ""),
        "digits 64-256-10 step: torch directly (control: torch alone)": (0.25e-3, ""),
    }
    # an extrapolated ("est.") pure time is not a measurement: left out
    assert report.accel_rows(ACCEL) == {
        "matmul 10x10: pure": (3.6e-5, ""),
        "matmul 10x10: torch": (9.6e-6, ""),
        "matmul 10x10: auto (default)": (9.5e-6, "torch"),
        "matmul 3162x3162: torch": (0.5, ""),
    }


def test_best_of_keeps_each_rows_fastest_round_and_its_note(mods):
    report, _, _ = mods
    rounds = [{"a": (3.0, "pure"), "b": (1.0, "")}, {"a": (2.0, "torch"), "b": (4.0, "")}, {"c": (5.0, "")}]
    assert report.best_of(rounds) == {"a": (2.0, "torch"), "b": (1.0, ""), "c": (5.0, "")}


def test_compare_rows_verdicts(mods):
    report, _, _ = mods
    old = {"same": 1.0, "at limit": 2.0, "over": 2.0, "x (control: torch alone)": 1.0, "gone": 1.0}
    new = {"same": 1.0, "at limit": 2.5, "over": 2.5 + 1e-9, "x (control: torch alone)": 3.0, "added": 1.0}
    rows = {r["name"]: r for r in report.compare_rows(old, new, limit=1.25)}
    assert list(rows) == ["same", "at limit", "over", "x (control: torch alone)", "gone", "added"]
    assert [rows[n]["verdict"] for n in rows] == [
        "ok",
        "ok",
        "SLOWER",
        "control",
        "missing on new",
        "missing on old",
    ]
    assert rows["at limit"]["ratio"] == 1.25 and rows["gone"]["ratio"] is None
    # AUTO's pick changing between the trees is named on the row
    moved = report.compare_rows({"r": (1.0, "pure")}, {"r": (1.0, "torch")}, 1.05)[0]
    assert moved["note"] == "ran on pure, now on torch"
    assert report.compare_rows({"r": (1.0, "pure")}, {"r": (1.0, "pure")}, 1.05)[0]["note"] == ""


def test_summary_and_markdown_table(mods):
    report, _, _ = mods
    rows = report.compare_rows(
        {"a: pure": 1e-3, "b: pure": 1e-3, "a: torch": 1e-3, "t (control: torch alone)": 1e-4},
        {"a: pure": 1e-3, "b: pure": 1.21e-3, "a: torch": 1e-3, "t (control: torch alone)": 1e-4},
        limit=1.05,
    )
    assert report.summary(rows, 1.05) == (
        "1 of 3 rows slower than 1.05x old; worst 1.210, at b: pure; geometric mean new/old 1.066"
        " (pure 1.100, torch 1.000); torch-alone controls (noise of this run): 1.000."
    )
    assert report.markdown_table(rows).splitlines() == [
        "| row | old | new | new/old | verdict |",
        "|:---|---:|---:|---:|:---|",
        "| a: pure | 1.00 ms | 1.00 ms | 1.000 | ok |",
        "| b: pure | 1.00 ms | 1.21 ms | 1.210 | **SLOWER** |",
        "| a: torch | 1.00 ms | 1.00 ms | 1.000 | ok |",
        "| t (control: torch alone) | 100.0 us | 100.0 us | 1.000 | control |",
    ]
    # one kind per row: no per-kind means that would only repeat the table
    two = report.compare_rows({"x: pure": 1.0, "y: torch": 1.0}, {"x: pure": 1.0, "y: torch": 1.0}, 1.05)
    assert report.summary(two, 1.05).endswith("geometric mean new/old 1.000.")
    counts = report.compare_rows({"xor": 2054343.0}, {"xor": 2095271.0}, 1.05)
    assert (
        report.markdown_table(counts, unit="count").splitlines()[2]
        == "| xor | 2,054,343 | 2,095,271 | 1.020 | ok |"
    )
    assert (
        report.summary(report.compare_rows({"a": 1.0}, {}, 1.05), 1.05) == "no rows measured on both sides."
    )
    assert [report.fmt_time(s) for s in (None, 3.2e-6, 0.0412, 1.5)] == ["-", "3.2 us", "41.20 ms", "1.50 s"]


def test_callgrind_dumps_to_instructions_per_step(mods):
    report, _, _ = mods

    def dump(n):
        head = "# callgrind format\nversion: 1\ncmd: python\nevents: Ir\n"
        return f"{head}fl=(1) x.c\nfn=(1) f\n0 {n}\n\ntotals: {n}\n"

    assert report.callgrind_total(dump(123)) == 123
    assert report.callgrind_total("events: Ir\nsummary: 77\n") == 77
    with pytest.raises(ValueError, match="not a callgrind output file"):
        report.callgrind_total("events: Ir\n")
    segments = [["setup", 0], ["xor", 3], ["setup", 0], ["sum 10: auto", 200]]
    dumps = [dump(10**9), dump(3000), dump(10**8), dump(9000)]
    assert report.instructions_per_step(segments, dumps) == {"xor": 1000.0, "sum 10: auto": 45.0}
    with pytest.raises(ValueError, match="3 callgrind dumps for 4 marked segments"):
        report.instructions_per_step(segments, dumps[:3])


def test_simulated_cache_misses_and_branches_per_step(mods):
    report, _, _ = mods
    # a dump as callgrind --cache-sim=yes --branch-sim=yes writes it (events in its order)
    events = "Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim"
    counts = "4000 900 500 40 60 20 4 6 2 300 30 80 10"
    text = f"version: 1\nevents: {events}\nfl=(1) x.c\nfn=(1) f\n0 1\n\ntotals: {counts}\n"
    assert report.callgrind_events(text)["D1mw"] == 20
    assert report.callgrind_total(text) == 4000
    segments = [["setup", 0], ["step", 2]]
    assert report.simulated_per_step(segments, [text, text]) == {
        "step: L1 misses": 60.0,  # (40 + 60 + 20) / 2
        "step: last-level misses": 6.0,
        "step: mispredicted branches": 20.0,
    }
    # a plain count (no simulation): nothing to add
    assert report.simulated_per_step([["step", 2]], ["events: Ir\nsummary: 77\n"]) == {}
    with pytest.raises(ValueError, match="no 'events:' line"):
        report.callgrind_events("totals: 5\n")


def test_arguments(mods):
    _, cc, _ = mods
    args = cc.parse_args(["--quick"])
    assert (args.old, args.new, args.rounds, args.limit) == ("7678e67", None, 1, 1.05)
    assert args.benchmarks == ["train_step", "accel", "torch_training"]
    assert cc.parse_args([]).rounds == 3
    assert cc.parse_args(["--benchmarks", "accel,train_step", "--rounds", "2"]).benchmarks == [
        "accel",
        "train_step",
    ]
    assert cc.parse_args([]).instruction_cases == ["train", "ops", "torch_training"]
    assert cc.parse_args(["--instruction-cases", "ops"]).instruction_cases == ["ops"]
    for bad in (
        ["--benchmarks", "ops"],
        ["--benchmarks", "none"],
        ["--rounds", "0"],
        ["--instruction-cases", "accel"],
        ["--instruction-cases", ","],
        ["--simulate"],  # needs --instructions
    ):
        with pytest.raises(SystemExit):
            cc.parse_args(bad)
    # each benchmark's short form, torch threads passed on, outputs kept in the scratch folder
    assert cc.bench_args("train_step", True, 1, "/s") == ["--quick", "--torch-threads", "1"]
    assert cc.bench_args("accel", False, None, "/s") == ["--out-dir", "/s"]
    assert cc.bench_args("torch_training", True, None, "/s") == [
        "--rounds",
        "2",
        "--steps",
        "10",
        "--no-save",
    ]
    with pytest.raises(ValueError, match="unknown benchmark 'ops'"):
        cc.bench_args("ops", False, None, "/s")
    # a subset of accel.py's sweep goes to accel.py alone
    subset = ("sum,add", "1000000,4000000")
    assert cc.bench_args("accel", False, 1, "/s", subset) == [
        "--threads",
        "1",
        "--ops",
        "sum,add",
        "--sizes",
        "1000000,4000000",
        "--out-dir",
        "/s",
    ]
    assert cc.bench_args("train_step", False, None, "/s", subset) == []
    args = cc.parse_args(["--accel-ops", "sum", "--accel-sizes", "4000000"])
    assert (args.accel_ops, args.accel_sizes) == ("sum", "4000000")


def test_todays_package_needs_no_stand_ins(mods):
    _, _, run_against = mods
    from puredl import accel

    # accel still one module (before issue 15 made it a package): the package's two names come in
    expected = [] if hasattr(accel, "__path__") else ["puredl.accel.calibration", "accel.format_work"]
    before = dict(vars(accel))
    try:
        assert run_against.fill_in_old_api(modules=dict(sys.modules)) == expected
    finally:  # leave the module as the other tests expect it
        for name in set(vars(accel)) - set(before):
            delattr(accel, name)


def test_stand_ins_for_the_old_api(mods):
    _, _, run_against = mods
    seen = {}

    @contextlib.contextmanager
    def old_using(mode=None, thresholds=None):
        seen["using"] = (mode, thresholds)
        yield

    class OldStats:
        pass

    def old_time_modes(op, tensors, settings, min_time=0.03, rounds=3):
        seen["settings"] = settings
        return {}

    @dataclasses.dataclass
    class OldCategoryResult:
        threshold: float = 0.0

    old_accel = types.SimpleNamespace(using=old_using, get_stats=OldStats, _human=lambda n: f"{n}!")
    old_calibration = types.SimpleNamespace(time_modes=old_time_modes, CategoryResult=OldCategoryResult)
    modules = {}
    added = run_against.fill_in_old_api(old_accel, old_calibration, modules)
    assert added == [
        "puredl.accel.calibration",
        "accel.format_work",
        "accel.set_adaptive",
        "accel.reset_adaptive",
        "accel.using(adaptive)",
        "calibration.time_modes(stat, warmup)",
        "CategoryResult.attempts",
        "AccelStats.moves",
    ]
    assert (
        modules == {"puredl.accel.calibration": old_calibration} and old_accel.calibration is old_calibration
    )
    assert old_accel.format_work(3) == "3!" and old_accel.set_adaptive(True) is None
    with old_accel.using("auto", {"a": 1}, True):
        assert seen["using"] == ("auto", {"a": 1})
    old_calibration.time_modes(None, (), {"x": ("auto", None, False), "y": ("pure", None)})
    assert seen["settings"] == {"x": ("auto", None), "y": ("pure", None)}
    with pytest.raises(SystemExit, match="best round only"):
        old_calibration.time_modes(None, (), {}, stat="median")
    assert OldStats().moves == [] and not OldCategoryResult().attempts


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_worktrees_are_removed_even_on_an_error(mods):
    _, cc, _ = mods
    try:
        repo = cc.git(BENCH, "rev-parse", "--show-toplevel")
    except RuntimeError:
        pytest.skip("not a git checkout")
    before = cc.git(repo, "worktree", "list", "--porcelain")
    with pytest.raises(RuntimeError, match="boom"), cc.detached_worktrees(repo, {"old": "HEAD"}) as paths:
        assert os.path.isfile(os.path.join(paths["old"], "src", "puredl", "__init__.py"))
        assert cc.git(paths["old"], "rev-parse", "HEAD") == cc.git(repo, "rev-parse", "HEAD")
        raise RuntimeError("boom")
    assert not os.path.exists(os.path.dirname(paths["old"]))
    assert cc.git(repo, "worktree", "list", "--porcelain") == before
    with (
        pytest.raises(RuntimeError, match="git worktree add"),
        cc.detached_worktrees(repo, {"old": "no-such-ref-x"}),
    ):
        pass
    assert cc.git(repo, "worktree", "list", "--porcelain") == before


def test_median_interval_is_the_sign_test_interval(mods):
    report, _, _ = mods
    stats = pytest.importorskip("scipy.stats")
    assert report.median_interval([3.0]) == (3.0, None, None)
    assert report.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, None, None)  # 5: 2/32 > 0.05
    # 16 rounds by hand: P(B < 4) = (1 + 16 + 120 + 560) / 2**16 = 0.0106 <= 0.025 < P(B < 5) = 0.0384
    assert report.median_interval([float(x) for x in range(16)]) == (7.5, 3.0, 12.0)
    for n in range(1, 41):
        # the reference: k the largest with the binomial CDF at k - 1 at most 2.5%
        k = max(j for j in range(n // 2 + 1) if j == 0 or stats.binom.cdf(j - 1, n, 0.5) <= 0.025)
        mid, lo, hi = report.median_interval([float(x) for x in reversed(range(n))])
        assert (lo, hi) == ((None, None) if k == 0 else (k - 1, n - k)), n
        assert mid == pytest.approx(float(stats.scoreatpercentile(range(n), 50)))
        if k:  # the coverage it promises, exactly
            assert 1 - 2 * stats.binom.cdf(k - 1, n, 0.5) >= 0.95
    with pytest.raises(ValueError, match="no values"):
        report.median_interval([])


def test_paired_ratios_pair_each_round_and_skip_failed_runs(mods):
    report, compare, _ = mods
    old = [{"a": (1.0, ""), "b": (2.0, "")}, {"a": (2.0, "")}, None, {"a": (1.0, "")}]
    new = [{"a": (1.1, ""), "b": (2.0, "")}, {"a": (1.8, "")}, {"a": (9.0, "")}, None]
    assert report.paired_ratios(old, new) == {"a": [1.1, 0.9], "b": [1.0]}
    # compare_commits numbers each run's round; a failed run leaves its round empty
    recs = [
        {"ms_puredl": 1.0, "ms_torch": 1.0, "_round": 0},
        {"ms_puredl": 2.0, "ms_torch": 1.0, "_round": 2},
    ]
    rounds = compare.by_round(recs, report.torch_training_rows, 3)
    assert rounds[1] is None
    assert rounds[2]["digits 64-256-10 step: puredl TORCH mode"] == (2e-3, "")


def test_paired_column_and_summary(mods):
    report, _, _ = mods
    old, new = {"up": 1.0, "same": 1.0, "few": 1.0}, {"up": 1.2, "same": 1.0, "few": 1.0}
    rows = report.compare_rows(old, new, 1.05)
    paired = {"up": [1.2 + 0.01 * k for k in range(8)], "same": [1.0] * 8, "few": [1.0, 1.1]}
    table = report.markdown_table(rows, paired=paired).splitlines()
    assert table[0].endswith("| paired new/old: median [95% interval] (rounds) |")
    assert table[2] == "| up | 1.00 s | 1.20 s | 1.200 | **SLOWER** | 1.235 [1.200, 1.270] (8) |"
    assert table[4].endswith("| 1.050 (2) |")  # two rounds: no interval
    assert report.paired_summary(rows, paired, 1.05) == (
        "Paired (each round's new/old, old and new back to back; 95% sign-test interval of the median): "
        "1 row(s) above 1.05 (up), 1 within, 1 not decided by this run (few)."
    )
