"""Acceleration modes, thresholds, AUTO's decisions and locality, statistics, logging and fallback."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys

import pytest

import puredl as pd
from puredl import accel
from puredl.backends import pure as P

torch = pytest.importorskip("torch")
from puredl.backends import torch as T  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")


@pytest.fixture(autouse=True)
def _threshold_rule_only():
    """These tests pin the threshold rule; AUTO's observed overrides are tested in test_accel_adaptive.py."""
    accel.set_adaptive(False)
    yield
    accel.set_adaptive(True)


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (import-time settings), with ``env`` added."""
    full = dict(os.environ)
    for k in ("PUREDL_ACCEL", "PUREDL_ACCEL_THRESHOLDS", "PUREDL_ACCEL_ADAPTIVE", "PUREDL_CONFIG_DIR"):
        full.pop(k, None)
    full["PYTHONPATH"] = SRC + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120)


def backend_name(t: pd.Tensor) -> str:
    return t._be.NAME


@pytest.fixture
def fresh_stats():
    accel.reset_stats()
    yield accel.get_stats()
    accel.reset_stats()


# --------------------------------------------------------------------------- modes


def test_set_acceleration_accepts_enum_and_names():
    for mode in (accel.AccelMode.TORCH, "auto", "PURE", " torch "):
        accel.set_acceleration(mode)
        assert accel.get_current_mode().value == str(getattr(mode, "value", mode)).strip().lower()


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown acceleration mode 'fast'.*pure, torch, auto"):
        accel.set_acceleration("fast")


def test_mode_decides_where_ops_run():
    a, b = pd.rand(3, 4), pd.rand(4, 2)
    accel.set_acceleration("pure")
    assert backend_name(a @ b) == "pure"
    accel.set_acceleration("torch")
    assert backend_name(a @ b) == "torch"
    assert backend_name((a @ b).relu().sum()) == "torch"


def test_results_agree_across_modes():
    x = pd.randn(5, 7, dtype=pd.float64)
    w = pd.randn(7, 3, dtype=pd.float64)

    def f():
        return ((x @ w).tanh() * 2.0 - x.sum(1, keepdim=True)).softmax(-1).tolist()

    with accel.using("pure"):
        want = f()
    for mode, th in (("torch", None), ("auto", accel.LOW_THRESHOLDS)):
        with accel.using(mode, th):
            got = f()
        for rg, rw in zip(got, want):
            assert rg == pytest.approx(rw, rel=1e-12, abs=1e-12)


def test_env_vars_set_mode_and_thresholds_at_import():
    code = (
        "from puredl import accel; print(accel.get_current_mode().value, accel.get_threshold('matmul'),"
        " accel.get_threshold('relu'), accel.threshold_source())"
    )
    r = run_python(code, PUREDL_ACCEL="auto", PUREDL_ACCEL_THRESHOLDS="matmul=123,activation=never")
    assert r.returncode == 0, r.stderr
    mode, mm, act, *source = r.stdout.split()
    assert (mode, mm, act) == ("auto", "123", "inf") and "PUREDL_ACCEL_THRESHOLDS" in " ".join(source)
    r = run_python(code, PUREDL_ACCEL="torch", PUREDL_ACCEL_THRESHOLDS="low")
    assert r.stdout.split()[:2] == ["torch", str(accel.LOW_THRESHOLDS["matmul"])]
    r = run_python(code, PUREDL_ACCEL_THRESHOLDS="matmul=lots")  # warned and ignored, not fatal (#14)
    assert r.returncode == 0 and "cannot read 'matmul=lots'" in r.stderr
    assert "PUREDL_ACCEL_THRESHOLDS" not in r.stdout  # the thresholds did not come from the bad value


def test_torch_mode_without_torch_names_the_extra():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import puredl as pd; from puredl import accel\n"
        "assert not accel.torch_available()\n"
        "accel.set_acceleration('auto'); x = pd.rand(300, 300); y = (x @ x).sum()\n"
        "assert accel.get_stats().torch_count == 0, accel.get_stats()\n"
        "try:\n    accel.set_acceleration('torch')\nexcept ImportError as e:\n    print('ERR', e)\n"
    )
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert "ERR" in r.stdout and "pip install 'puredl[torch]'" in r.stdout


# --------------------------------------------------------------------------- thresholds


def test_thresholds_set_get_aliases_and_never():
    accel.set_threshold("matmul", 500_000)
    assert accel.get_threshold("matmul") == 500_000
    accel.set_threshold("activations", None)
    assert accel.get_threshold("activation") == math.inf
    accel.set_threshold("reductions", 77)
    assert accel.get_threshold("sum") == 77
    assert accel.threshold_source() == "set_threshold()"
    accel.reset_thresholds()
    assert accel.get_thresholds() == accel.DEFAULT_THRESHOLDS


@pytest.mark.parametrize("bad", [-1, "many", float("nan"), True])
def test_bad_threshold_values_are_rejected(bad):
    with pytest.raises(ValueError, match="matmul"):
        accel.set_threshold("matmul", bad)


def test_unknown_threshold_name_lists_the_categories():
    with pytest.raises(ValueError, match="unknown threshold 'conv'.*elementwise, matmul"):
        accel.set_threshold("conv", 10)


@pytest.mark.parametrize(
    "category,make,op",
    [
        ("elementwise", lambda n: (pd.rand(n), pd.rand(n)), lambda a, b: a + b),
        ("activation", lambda n: (pd.rand(n),), lambda a: a.relu()),
        ("reduction", lambda n: (pd.rand(n),), lambda a: a.sum()),
        ("shape", lambda n: (pd.rand(n), pd.rand(n)), lambda a, b: pd.cat([a, b])),
    ],
)
def test_auto_switches_at_the_threshold(category, make, op):
    accel.set_acceleration("auto")
    accel.set_threshold(category, 100)
    work_of = {"shape": lambda n: 2 * n}.get(category, lambda n: n)
    below = next(n for n in (99, 49) if work_of(n) < 100)
    above = next(n for n in (100, 50) if work_of(n) >= 100)
    assert backend_name(op(*make(below))) == "pure"
    assert backend_name(op(*make(above))) == "torch"


def test_matmul_work_is_multiply_adds():
    accel.set_acceleration("auto")
    accel.set_threshold("matmul", 4 * 5 * 6)
    assert backend_name(pd.rand(4, 5) @ pd.rand(5, 6)) == "torch"  # 120 multiply-adds
    assert backend_name(pd.rand(4, 5) @ pd.rand(5, 5)) == "pure"  # 100


# --------------------------------------------------------------------------- locality


def test_torch_resident_inputs_stay_on_torch_near_the_threshold():
    accel.set_acceleration("auto")
    accel.set_threshold("elementwise", 1000)
    pure_x = pd.rand(990)
    torch_x = pd.from_torch(torch.rand(990))
    assert backend_name(pure_x * 2.0) == "pure"  # 990 < 1000
    assert backend_name(torch_x * 2.0) == "torch"  # 990 + the cost of copying it out >= 1000
    assert backend_name(pd.from_torch(torch.rand(10)) * 2.0) == "pure"  # tiny: moving is cheaper


def test_a_chain_of_small_ops_after_a_big_matmul_does_not_bounce(fresh_stats):
    accel.set_acceleration("auto")
    accel.set_threshold("matmul", 10_000)
    accel.set_threshold("elementwise", 300)
    accel.set_threshold("activation", 300)
    x, w = pd.rand(16, 64), pd.rand(64, 16)
    b = pd.rand(16)
    h = x @ w  # 16k multiply-adds: torch
    where = [backend_name(h)]
    for _ in range(6):
        h = (h + b).relu() * 0.5
        where.append(backend_name(h))
    switches = sum(1 for p, q in zip(where, where[1:]) if p != q)
    assert where[0] == "torch" and switches <= 1, where


def test_mixed_backends_in_one_graph_give_pure_gradients():
    def grads():
        pd.manual_seed(3)
        x = pd.randn(8, 5, dtype=pd.float64)
        w1 = pd.randn(5, 6, dtype=pd.float64, requires_grad=True)
        w2 = pd.randn(6, 2, dtype=pd.float64, requires_grad=True)
        loss = ((x @ w1).sigmoid() @ w2).log_softmax(-1).mean() + (w1 * w1).sum() * 0.01
        loss.backward()
        return loss.item(), w1.grad.tolist(), w2.grad.tolist()

    with accel.using("pure"):
        want = grads()
    with accel.using("auto", {"matmul": 50, "elementwise": 20, "activation": 20, "reduction": 20}):
        accel.reset_stats()
        got = grads()
        stats = accel.get_stats()
    assert stats.pure_count > 0 and stats.torch_count > 0  # really mixed
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    for g, w in zip(got[1:], want[1:]):
        for rg, rw in zip(g, w):
            assert rg == pytest.approx(rw, rel=1e-10, abs=1e-12)


def test_pure_storage_crosses_to_torch_without_a_copy():
    t = pd.tensor([[1.0, 2.0], [3.0, 4.0]])
    view = accel.torch_impl(t)
    assert view.data_ptr() == torch.frombuffer(t._impl.buf, dtype=torch.float32).data_ptr()
    assert accel.torch_impl(t) is view  # cached on the tensor
    view[0, 0] = 10.0
    assert t[0, 0].item() == 10.0
    tt = accel.torch_impl(t.T)  # a strided view crosses too
    assert tt.tolist() == [[10.0, 3.0], [2.0, 4.0]] and tt.data_ptr() == view.data_ptr()


def test_writes_between_pure_and_torch_storage():
    accel.set_acceleration("pure")
    p = pd.zeros(2, 3)
    p[0] = pd.from_torch(torch.tensor([1.0, 2.0, 3.0]))
    q = pd.from_torch(torch.zeros(2, 3))
    q[1] = pd.tensor([4.0, 5.0, 6.0])
    assert p.tolist() == [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]
    assert q.tolist() == [[0.0, 0.0, 0.0], [4.0, 5.0, 6.0]]


# --------------------------------------------------------------------------- statistics and logging


def test_stats_count_per_backend_and_per_op(fresh_stats):
    a = pd.rand(2, 2)
    accel.set_acceleration("pure")
    a @ a
    a + a
    accel.set_acceleration("torch")
    a @ a
    s = accel.get_stats()
    assert (s.pure_count, s.torch_count, s.fallback_count) == (2, 1, 0)
    assert s.op("matmul") == (1, 1, 0) and s.op("add") == (1, 0, 0)
    assert s.ops()["matmul"].torch == 1 and s.total() == 3
    snap = s.copy()
    a @ a
    assert snap.total() == 3 and snap.op("matmul") == (1, 1, 0) and s.total() == 4
    accel.reset_stats()
    assert accel.get_stats().total() == 0


def test_print_stats_shows_totals_and_ops(fresh_stats, capsys):
    accel.set_acceleration("torch")
    x = pd.rand(3, 3)
    (x @ x).relu()
    accel.print_stats()
    out = capsys.readouterr().out
    assert "torch:" in out and "100.0% of 2 ops" in out
    assert any(line.split()[:4] == ["matmul", "0", "1", "0"] for line in out.splitlines())


def test_logging_prints_each_decision_with_its_reason():
    buf = io.StringIO()
    accel.set_acceleration("auto")
    accel.set_threshold("matmul", 1_000_000)
    accel.enable_logging(True, file=buf)
    a = pd.zeros(1000, 1000)
    a @ a
    pd.zeros(2, 3) @ pd.zeros(3, 4)
    pd.zeros(3).relu()
    accel.enable_logging(False)
    pd.zeros(3).relu()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "[accel] matmul 1000x1000 @ 1000x1000 -> torch (1.0G >= 1.0M)"
    assert lines[1] == "[accel] matmul 2x3 @ 3x4 -> pure (24 < 1.0M)"
    assert lines[2].startswith("[accel] relu 3 -> pure (3 < ")
    assert len(lines) == 3


def test_logging_in_torch_mode_and_for_resident_data():
    buf = io.StringIO()
    accel.set_acceleration("torch")
    accel.enable_logging(True, file=buf)
    pd.ones(2) + pd.ones(2)
    accel.set_acceleration("auto")
    accel.set_threshold("elementwise", 10**6)
    pd.from_torch(torch.ones(4)) * 3.0
    accel.enable_logging(False)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "[accel] add 2 + 2 -> torch (mode torch)"
    assert lines[1].startswith("[accel] mul 4 -> pure (4 + ") and "to move off torch < 1.0M)" in lines[1]


# --------------------------------------------------------------------------- fallback


@pytest.fixture
def broken_torch_add(monkeypatch):
    def boom(a, b):
        raise RuntimeError("simulated torch failure")

    monkeypatch.setitem(T._BINARY, "add", boom)
    monkeypatch.setattr(accel.dispatch, "_fallback_logged", set())


def test_auto_falls_back_to_pure_counts_and_logs_once(broken_torch_add, fresh_stats, capsys):
    accel.set_acceleration("auto")
    accel.set_threshold("elementwise", 0)
    x = pd.tensor([1.0, 2.0], requires_grad=True)
    y = x + x
    z = y + 1.0  # the scalar kernel uses torch.add too
    w = y + y
    assert y.tolist() == [2.0, 4.0] and w.tolist() == [4.0, 8.0] and z.tolist() == [3.0, 5.0]
    assert backend_name(y) == "torch"  # the fallback's result is handed back on torch
    s = accel.get_stats()
    assert s.fallback_count == 3 and s.op("add").fallback == 3
    assert s.op("add").pure == 3 and s.op("add").torch == 0
    w.sum().backward()  # gradient accumulation adds too: more fallbacks, one message
    assert x.grad.tolist() == [4.0, 4.0]
    assert accel.get_stats().fallback_count > 3
    err = capsys.readouterr().err
    assert err.count("[accel] fallback: add failed on torch (RuntimeError: simulated torch failure)") == 1


def test_torch_mode_reraises_with_context(broken_torch_add):
    accel.set_acceleration("torch")
    with pytest.raises(
        RuntimeError, match=r"torch backend failed in add \(kernel binary, float32\[2\] on cpu"
    ) as e:
        pd.ones(2) + pd.ones(2)
    assert "mode torch" in str(e.value) and "simulated torch failure" in str(e.value)
    assert isinstance(e.value.__cause__, RuntimeError)


def test_validation_errors_are_not_fallbacks(fresh_stats):
    accel.set_acceleration("torch")
    with pytest.raises(ValueError, match="not aligned"):
        pd.ones(2, 3) @ pd.ones(2, 3)
    with pytest.raises(IndexError, match="out of bounds"):
        pd.ones(3)[pd.tensor([5])]
    assert accel.get_stats().fallback_count == 0


# --------------------------------------------------------------------------- config file and calibration


def test_config_round_trip_and_import_time_loading(tmp_path):
    path = accel.save_config({"matmul": 1234, "activation": math.inf}, path=str(tmp_path / "accel.json"))
    assert os.path.exists(path) and not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    with accel.using():
        assert accel.load_config(path)
        assert accel.get_threshold("matmul") == 1234 and accel.get_threshold("activation") == math.inf
        assert accel.threshold_source() == f"config file {path}"
    code = "from puredl import accel; print(accel.get_threshold('matmul'), accel.threshold_source())"
    r = run_python(code, PUREDL_CONFIG_DIR=str(tmp_path))
    assert r.stdout.split()[0] == "1234" and "config file" in r.stdout
    r = run_python(code, PUREDL_CONFIG_DIR=str(tmp_path), PUREDL_ACCEL_THRESHOLDS="matmul=9")
    assert r.stdout.split()[0] == "9"  # the environment wins over the file


def test_malformed_config_is_ignored_with_a_message(tmp_path, capsys):
    bad = tmp_path / "accel.json"
    bad.write_text('{"thresholds": {"matmul": -5}}')
    before = accel.get_thresholds()
    assert accel.load_config(str(bad)) is False
    assert accel.get_thresholds() == before
    assert "ignoring" in capsys.readouterr().err
    assert accel.load_config(str(tmp_path / "missing.json")) is False


def test_crossover_interpolates_where_torch_starts_to_win():
    from puredl.accel.calibration import crossover

    # log(pure/torch) goes from log(1/2) at 10 to log(5/2) at 100: zero at 10 * 10**0.43
    assert crossover([10, 100, 1000], [1.0, 5.0, 50.0], [2.0, 2.0, 2.0]) == 27
    assert crossover([10, 100], [5.0, 50.0], [2.0, 2.0]) == 10  # torch wins everywhere
    assert crossover([10, 100], [1.0, 1.5], [2.0, 2.0]) == math.inf  # never
    # a noisy win below the real crossover does not count: torch must stay ahead
    assert crossover([10, 100, 1000, 10000], [1.0, 3.0, 2.0, 20.0], [2.0, 2.0, 2.5, 2.5]) > 1000
    # nor does one stalled torch measurement above it (a busy machine) turn it into "never"
    works = [10, 100, 1000, 10000, 100000]
    assert crossover(works, [1.0, 5.0, 50.0, 500.0, 5000.0], [2.0, 2.0, 2.0, 2000.0, 2.0]) == 27


def test_calibrate_caps_thresholds_where_pure_takes_too_long(monkeypatch):
    from puredl.accel import calibration

    monkeypatch.setattr(calibration, "crossover", lambda *a: math.inf)  # as if torch never won
    monkeypatch.setattr(
        calibration, "CALIBRATION_SIZES", {**calibration.CALIBRATION_SIZES, "matmul": [4, 64, 256]}
    )
    with accel.using():
        r = accel.calibrate(save=False, categories=("matmul",), min_time=0.002, verbose=False)
    unit = r.costs["pure_unit_s"]["matmul"]
    assert r.thresholds["matmul"] == round(calibration.PURE_CAP_S / unit) < math.inf


def _fake_grid_timer(monkeypatch, torch_s):
    """time_modes replaced by exact times: pure 0.1 us per unit of work, torch from ``torch_s()``."""
    from puredl.accel import calibration

    grids = []

    def fake(op, tensors, settings, *a, **k):
        work = op.work(tensors[0].shape[0] ** 2 if op.name == "matmul" else tensors[0].numel())
        if work == op.work(calibration.CALIBRATION_SIZES[op.category][0]):
            grids.append(work)
        return {"pure": work * 1e-7, "torch": torch_s(len(grids))}

    monkeypatch.setattr(calibration, "time_modes", fake)
    return grids


def test_calibrate_measures_a_doubtful_grid_again_and_takes_the_median(monkeypatch):
    # the first grid's torch times come from a stall (torch never wins), the next two are normal
    grids = _fake_grid_timer(monkeypatch, lambda grid: 1.0 if grid == 1 else 2e-5)
    with accel.using():
        r = accel.calibrate(save=False, categories=("elementwise",), min_time=0.001, verbose=False)
    res = r.categories["elementwise"]
    assert len(grids) == 3 and res.attempts[0] == round(0.05 / 1e-7) and res.attempts[1:] == [200, 200]
    assert r.thresholds["elementwise"] == 200 and "median of 3 grids" in r.table()


def test_calibrate_keeps_a_crossover_that_every_grid_repeats(monkeypatch):
    # torch 30x dearer than usual on this machine, in every grid: a real difference, kept
    grids = _fake_grid_timer(monkeypatch, lambda grid: 3e-4)
    with accel.using():
        r = accel.calibrate(save=False, categories=("elementwise",), min_time=0.001, verbose=False)
    assert len(grids) == 3 and r.categories["elementwise"].attempts == [3000] * 3
    assert r.thresholds["elementwise"] == 3000
    # one near the default is measured once
    grids = _fake_grid_timer(monkeypatch, lambda grid: 1e-5)
    with accel.using():
        r = accel.calibrate(save=False, categories=("elementwise",), min_time=0.001, verbose=False)
    assert len(grids) == 1 and r.thresholds["elementwise"] == 100 and not r.categories["elementwise"].attempts


def test_calibrate_measures_applies_saves_and_plots(tmp_path, monkeypatch):
    from puredl.accel import calibration

    monkeypatch.setattr(
        calibration,
        "CALIBRATION_SIZES",
        {
            "elementwise": [8, 64, 4096],
            "matmul": [4, 64, 256],
            "reduction": [8],
            "activation": [8],
            "shape": [8],
        },
    )
    out = io.StringIO()
    cfg = tmp_path / "accel.json"
    png = tmp_path / "calibrate.png"
    with accel.using():
        r = accel.calibrate(
            path=str(cfg),
            plot=str(png),
            categories=("elementwise", "matmul"),
            min_time=0.002,
            verbose=True,
            file=out,
        )
        assert accel.get_threshold("elementwise") == r.thresholds["elementwise"]
        assert accel.threshold_source() == "calibrate()"
    for cat in ("elementwise", "matmul"):
        res = r.categories[cat]
        assert len(res.pure) == len(res.torch) == len(res.auto) == 3
        assert all(t > 0 for t in res.pure + res.torch + res.auto)
    # pure's matmul at 16x16 is 4096 multiply-adds in Python: torch must win there
    assert r.thresholds["matmul"] <= 16**3
    assert cfg.exists() and str(cfg) == r.saved_to
    if r.plot:
        assert png.exists() and png.stat().st_size > 1000
    text = out.getvalue()
    assert "elementwise" in text and "matmul" in text and f"saved thresholds to {cfg}" in text


def test_hot_path_stays_pure_and_cheap_in_pure_mode(fresh_stats):
    accel.set_acceleration("pure")
    a = pd.rand(4)
    be, impls = accel.select("add", "elementwise", 4, (a, a))
    assert be is P and impls == [a._impl, a._impl]
    assert accel.get_stats().pure_count == 1
