"""Timing pure against torch per op category: the crossovers behind AUTO's thresholds.

``calibrate()`` times one representative op per category (add, matmul, sum, relu, an
index_select gather) on
pure-resident inputs in PURE and TORCH mode over a grid of sizes, takes the size where torch
starts to win (the zero-copy conversion of the inputs counted), applies and saves it, prints a
table and plots pure, torch and auto against size. ``benchmarks/accel.py`` and ``puredl bench``
use the same timing helpers.

Inputs are detached before each call so that every call pays the pure->torch conversion, as an
op on a fresh intermediate does (a leaf tensor's view is cached after its first use).

>>> from puredl.accel.calibration import BENCH_OPS
>>> sorted(BENCH_OPS)
['add', 'cat', 'index_select', 'matmul', 'relu', 'sum']
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random

from puredl import accel
from puredl.tensor import Tensor


def _vector(n: int, seed: int, positive: bool = False) -> Tensor:
    rng = Random(seed)
    if positive:
        vals = array("f", [rng.random() + 0.5 for _ in range(n)])
    else:
        vals = array("f", [rng.random() * 2.0 - 1.0 for _ in range(n)])
    return Tensor.from_array(vals, (n,))


def _side(size: int) -> int:
    return max(1, round(math.sqrt(size)))


@dataclass(frozen=True)
class BenchOp:
    """One timed op: its dispatch category, inputs for a size (in elements) and its work."""

    name: str
    category: str
    make: Callable[[int], tuple]
    run: Callable[..., Tensor]
    work: Callable[[int], int]
    size_label: Callable[[int], str] = lambda n: f"{n}"


def _make_square_pair(size: int) -> tuple:
    n = _side(size)
    return _vector(n * n, 1).reshape(n, n), _vector(n * n, 2).reshape(n, n)


BENCH_OPS: dict[str, BenchOp] = {
    "add": BenchOp(
        "add",
        "elementwise",
        lambda n: (_vector(n, 1), _vector(n, 2)),
        lambda a, b: a.detach() + b.detach(),
        int,
    ),
    "matmul": BenchOp(
        "matmul",
        "matmul",
        _make_square_pair,
        lambda a, b: a.detach() @ b.detach(),
        lambda size: _side(size) ** 3,
        lambda size: f"{_side(size)}x{_side(size)}",
    ),
    "sum": BenchOp("sum", "reduction", lambda n: (_vector(n, 3),), lambda a: a.detach().sum(), int),
    "relu": BenchOp("relu", "activation", lambda n: (_vector(n, 4),), lambda a: a.detach().relu(), int),
    "cat": BenchOp(
        "cat",
        "shape",
        lambda n: (_vector(max(1, n // 2), 5), _vector(max(1, n - n // 2), 6)),
        lambda a, b: _cat(a.detach(), b.detach()),
        int,
    ),
    # rows of 16 gathered by an index tensor (an embedding lookup); size = elements gathered
    "index_select": BenchOp(
        "index_select",
        "shape",
        lambda n: (_vector(_rows(n) * 16, 8).reshape(_rows(n), 16), _row_index(n)),
        lambda a, idx: a.detach()[idx.detach()],
        lambda n: _rows(n) * 16,
    ),
}
CALIBRATED = {
    "elementwise": "add",
    "matmul": "matmul",
    "reduction": "sum",
    "activation": "relu",
    "shape": "index_select",
}


def _cat(a: Tensor, b: Tensor) -> Tensor:
    from puredl.ops import cat

    return cat((a, b))


def _rows(n: int) -> int:
    return max(1, n // 16)


def _row_index(n: int) -> Tensor:
    from puredl import dtypes

    rows = _rows(n)
    rng = Random(9)
    return Tensor.from_array(array("q", [rng.randrange(rows) for _ in range(rows)]), (rows,), dtypes.int64)


def time_call(fn: Callable[[], object], min_time: float = 0.03, rounds: int = 3) -> float:
    """Seconds per call: the best of at least ``rounds`` short rounds filling ``min_time``.

    Rounds are batches of about 0.5 ms (one call when a call is longer), so that on a shared
    machine some rounds run undisturbed; the best round is the estimate (as ``timeit`` advises).
    """
    start = time.perf_counter()
    fn()  # warm-up: first-call imports and caches
    first = time.perf_counter() - start
    batch = max(1, int(5e-4 / max(first, 1e-7)))
    best = math.inf
    spent = 0.0
    done = 0
    while done < rounds or spent < min_time:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed / batch)
        if done == 0 and batch == 1 and elapsed < 2.5e-4:  # the warm-up call was slow: batch up
            batch = max(1, int(5e-4 / max(elapsed, 1e-7)))
        spent += elapsed
        done += 1
    return best


def time_op(op: BenchOp, tensors: tuple, mode: str, min_time: float = 0.03, rounds: int = 3) -> float:
    with accel.using(mode):
        return time_call(lambda: op.run(*tensors), min_time, rounds)


def time_modes(
    op: BenchOp,
    tensors: tuple,
    settings: dict,
    min_time: float = 0.03,
    rounds: int = 3,
    stat: str = "best",
    warmup: tuple[int, float] = (1, 0.0),
) -> dict[str, float]:
    """Seconds per call of ``op`` under each ``{label: (mode, thresholds or None[, adaptive])}``
    (the arguments of ``accel.using``), interleaved.

    The settings take turns round by round, so a burst of load from other processes on a shared
    machine slows all of them alike instead of one; each label keeps its best round, or with
    ``stat="median"`` its median round (on a machine kept busy on purpose the stalls are what is
    measured, and the best round would hide them). ``warmup``: (calls, seconds) each setting
    first runs untimed, at least that many calls and for at least that long, capped at 20x the
    seconds (AUTO's cost model learns a new size in its first calls: steady state is timed).
    """

    def call():
        op.run(*tensors)

    batch, best = {}, {}
    warm_calls, warm_s = warmup
    for label, setting in settings.items():
        with accel.using(*setting):
            begun, n = time.perf_counter(), 0
            while n < warm_calls or time.perf_counter() - begun < warm_s:
                call()
                n += 1
                if time.perf_counter() - begun > 20 * warm_s > 0:
                    break
            start = time.perf_counter()
            call()  # the size of a batch of about 0.5 ms
            first = time.perf_counter() - start
        batch[label] = max(1, int(5e-4 / max(first, 1e-7)))
        best[label] = []
    spent, done = 0.0, 0
    order = list(settings.items())
    while done < rounds or spent < min_time * len(settings):
        k = done % len(order)  # rotate who goes first: no setting always follows the same one
        for label, setting in order[k:] + order[:k]:
            with accel.using(*setting):
                n = batch[label]
                start = time.perf_counter()
                for _ in range(n):
                    call()
                elapsed = time.perf_counter() - start
            best[label].append(elapsed / n)
            spent += elapsed
        done += 1
    pick = statistics.median if stat == "median" else min
    return {label: pick(times) for label, times in best.items()}


def crossover(works: list, pure: list, torch: list) -> float:
    """The work from which torch is faster than pure, interpolated in log space (inf: never).

    Torch must win at that point, at the largest size, and at three quarters or more of the
    sizes in between, so one noisy measurement neither hides a crossover nor makes one.

    >>> crossover([10, 100, 1000], [1.0, 5.0, 50.0], [2.0, 2.0, 2.0])
    27
    """
    n = len(works)
    wins = [t <= p for p, t in zip(pure, torch)]
    first = None
    if wins and wins[-1]:
        for i in range(n):
            rest = wins[i:]
            if wins[i] and sum(rest) >= 0.75 * len(rest):
                first = i
                break
    if first is None:
        return math.inf
    if first == 0:
        return works[0]
    w0, w1 = works[first - 1], works[first]
    r0 = math.log(pure[first - 1] / torch[first - 1])  # < 0: pure faster
    r1 = math.log(pure[first] / torch[first])  # >= 0: torch faster
    frac = -r0 / (r1 - r0) if r1 != r0 else 1.0
    frac = min(max(frac, 0.0), 1.0)
    return round(math.exp(math.log(w0) + frac * (math.log(w1) - math.log(w0))))


# Work that takes pure this long goes to torch whatever the grid said: torch's worst case seen on a
# busy 2-core machine is a thread stall of tens of milliseconds, pure's time only grows from here.
PURE_CAP_S = 0.05


CALIBRATION_SIZES = {
    "elementwise": [8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096],
    "activation": [8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096],
    "reduction": [16, 64, 128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192, 16384],
    "shape": [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
    # matrix elements n*n: n = 2 .. 40, work n**3 = 8 .. 64000
    "matmul": [4, 9, 16, 25, 36, 49, 64, 100, 144, 196, 256, 400, 576, 1024, 1600],
}


@dataclass
class CategoryResult:
    category: str
    op: str
    sizes: list
    works: list
    pure: list
    torch: list
    auto: list = field(default_factory=list)
    threshold: float = math.inf
    unit: float = 0.0  # pure's seconds per unit of work, from the grid's larger half
    attempts: list = field(default_factory=list)  # the thresholds of 3 grids when the first was doubtful


@dataclass
class CalibrationResult:
    """What calibrate() measured and chose; ``thresholds`` is what AUTO now uses."""

    thresholds: dict
    costs: dict
    categories: dict
    saved_to: str | None = None
    plot: str | None = None

    def table(self) -> str:
        lines = [
            f"{'category':<12}{'op':<8}{'threshold':>12}{'default':>10}   pure/torch time ratio by size",
        ]
        for cat, r in self.categories.items():
            ratios = " ".join(f"{s}:{p / t:.2f}" for s, p, t in zip(r.sizes, r.pure, r.torch))
            lines.append(
                f"{cat:<12}{r.op:<8}{accel.format_work(r.threshold):>12}"
                f"{accel.format_work(accel.DEFAULT_THRESHOLDS[cat]):>10}   {ratios}"
            )
            if r.attempts:
                tries = ", ".join(accel.format_work(t) for t in r.attempts)
                lines.append(f"{'':<20}(first grid doubtful: median of 3 grids, crossovers {tries})")
        return "\n".join(lines)


def _progress(items, desc: str, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, leave=False, file=sys.stderr)


def _measure_costs(units: dict, min_time: float) -> dict:
    """Seconds to copy a torch tensor to pure: a fixed part and a per-element part."""
    tb = accel.torch_backend()
    small = tb.torch.zeros(16)
    large = tb.torch.zeros(1 << 18)
    t_small = time_call(lambda: tb.to_pure(small), min_time)
    t_large = time_call(lambda: tb.to_pure(large), min_time)
    per_elem = max((t_large - t_small) / ((1 << 18) - 16), 1e-12)
    pure_small = _vector(16, 7)._impl
    t_view = time_call(lambda: tb.from_pure(pure_small), min_time)
    return {
        "pure_unit_s": units,
        "move_fixed_s": max(t_small, 1e-7),
        "move_elem_s": per_elem,
        "view_fixed_s": max(t_view, 1e-7),
    }


def _measure_category(op: BenchOp, min_time: float, unit: float) -> CategoryResult:
    """Pure and torch over the category's grid, the crossover, and pure's cost per unit of work."""
    sizes = CALIBRATION_SIZES[op.category]
    r = CategoryResult(op.category, op.name, sizes, [op.work(s) for s in sizes], [], [])
    for s in sizes:
        t = time_modes(op, op.make(s), {"pure": ("pure", None), "torch": ("torch", None)}, min_time)
        r.pure.append(t["pure"])
        r.torch.append(t["torch"])
    # pure's cost per unit of work: the slope over the larger half of the grid
    half = len(sizes) // 2
    slope = (r.pure[-1] - r.pure[half]) / max(r.works[-1] - r.works[half], 1)
    r.unit = slope if slope > 0 else unit
    r.threshold = min(crossover(r.works, r.pure, r.torch), round(PURE_CAP_S / r.unit))
    return r


# A crossover this many times off the default, or past the grid, is measured twice more.
DOUBTFUL_FACTOR = 8.0


def _doubtful(r: CategoryResult) -> bool:
    default = accel.DEFAULT_THRESHOLDS[r.category]
    if r.threshold > r.works[-1]:
        return True
    return not default / DOUBTFUL_FACTOR <= r.threshold <= default * DOUBTFUL_FACTOR


def _key(r: CategoryResult) -> float:
    return r.threshold


def calibrate(
    save: bool = True,
    path: str | None = None,
    plot: str | None = None,
    categories: tuple | None = None,
    min_time: float = 0.02,
    verbose: bool = True,
    file=None,
) -> CalibrationResult:
    """Measure each category's crossover on this machine, apply it, save it and report it.

    ``save``: write the thresholds to the user config file (``accel.config_path()`` or ``path``),
    which AUTO loads at import. ``plot``: PNG path for time against size (pure, torch, auto).

    >>> r = calibrate(save=False, categories=("add",), verbose=False)  # doctest: +SKIP
    >>> r.thresholds["elementwise"] > 0  # doctest: +SKIP
    True
    """
    accel.torch_backend()  # clear error when torch is missing
    out = file or sys.stdout
    cats = tuple(categories or CALIBRATED)
    results: dict[str, CategoryResult] = {}
    units = accel.get_costs()["pure_unit_s"]
    for cat in _progress(cats, "calibrating", verbose):
        op = BENCH_OPS[CALIBRATED[accel.canonical_category(cat)]]
        r = _measure_category(op, min_time, units[op.category])
        if _doubtful(r):  # a stall during one grid must not set a threshold for good: median of 3
            tries = [r] + [_measure_category(op, min_time, units[op.category]) for _ in range(2)]
            r = sorted(tries, key=_key)[1]
            r.attempts = [t.threshold for t in tries]
        units[op.category] = r.unit
        results[op.category] = r
    costs = _measure_costs(units, min_time)
    thresholds = accel.get_thresholds()
    thresholds.update({cat: r.threshold for cat, r in results.items()})
    accel.set_thresholds(thresholds, costs, source="calibrate()")
    for r in results.values():  # auto with the new thresholds, for the plot
        op = BENCH_OPS[r.op]
        r.auto = [time_op(op, op.make(s), "auto", min_time) for s in r.sizes]
    result = CalibrationResult(thresholds, costs, results)
    if save:
        info = {"python": sys.version.split()[0], "torch": accel.torch_version(), "time": time.ctime()}
        result.saved_to = accel.save_config(thresholds, costs, path, info)
        if path is None:
            accel.set_thresholds({}, source=f"config file {result.saved_to}")
    if plot:
        result.plot = plot_calibration(result, plot)
    if verbose:
        print(result.table(), file=out)
        if result.saved_to:
            print(f"saved thresholds to {result.saved_to} (AUTO loads them at import)", file=out)
        if result.plot:
            print(f"plot: {result.plot}", file=out)
    return result


def plot_series(panels: list, path: str, title: str) -> str | None:
    """Log-log time-vs-size panels: each ``(name, sizes, {label: times}, threshold_size or None)``.

    Returns the path, or None (with a note on stderr) when matplotlib is not installed.
    """
    import os

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[accel] matplotlib is not installed; no plot (pip install 'puredl[dev]')", file=sys.stderr)
        return None
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    styles = {
        "pure": ("o-", "tab:blue"),
        "torch": ("s-", "tab:orange"),
        "auto": ("^--", "tab:green"),
        "auto (calibrated)": ("v:", "tab:red"),
    }
    for ax, (name, sizes, series, mark) in zip(axes.flat, panels):
        for label, times in series.items():
            pts = [(s, t) for s, t in zip(sizes, times) if t is not None]
            if not pts:
                continue
            style, color = styles.get(label, styles.get(label.split()[0], (".-", None)))
            ax.plot([p[0] for p in pts], [p[1] * 1e6 for p in pts], style, color=color, label=label, ms=4)
        if mark is not None and math.isfinite(mark):
            ax.axvline(mark, color="gray", lw=0.8, ls=":", label="threshold")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("elements")
        ax.set_ylabel("time per op (us)")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def size_at_work(op: BenchOp, work: float) -> float | None:
    """The size in elements whose work is ``work`` (for drawing a threshold on a size axis)."""
    if not math.isfinite(work):
        return None
    if op.name == "matmul":
        return work ** (2.0 / 3.0)
    return work


def plot_calibration(result: CalibrationResult, path: str) -> str | None:
    panels = []
    for cat, r in result.categories.items():
        op = BENCH_OPS[r.op]
        panels.append(
            (
                f"{r.op} ({cat}; threshold {accel.format_work(r.threshold)})",
                r.sizes,
                {"pure": r.pure, "torch": r.torch, "auto": r.auto},
                size_at_work(op, r.threshold),
            )
        )
    return plot_series(panels, path, "puredl accel calibrate: time per op against size")
