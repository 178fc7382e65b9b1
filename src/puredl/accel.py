"""Acceleration layer: which backend runs each op (PURE, TORCH or AUTO), statistics and logging.

Every op asks ``select(op, category, work, tensors)`` for a backend and its inputs' storage on
that backend. ``work`` is the op's size: output elements for elementwise, activation, reduction
(input elements) and shape ops, multiply-adds for matmul. AUTO sends an op to torch when
``work`` plus the cost of moving torch-resident inputs back to pure reaches the category's
threshold, so data stays where it was last computed. CUDA tensors always run on their device.

``select`` is on every op's hot path: PURE mode with pure inputs returns after one loop. AUTO
also keeps a cost model (``puredl.adaptive``): one call in 32-95 is timed (more of dear ops),
and where the other backend observes clearly cheaper on this machine now (one core busy stalls
torch's thread pool), the observed choice overrides the threshold; between timed calls AUTO
pays one countdown and one lookup.

>>> from puredl import accel
>>> accel.get_current_mode().value
'pure'
>>> accel.get_threshold("matmul") > 0
True
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from enum import Enum
from typing import NamedTuple

from puredl import adaptive as _adaptive
from puredl._optional import available, require
from puredl.backends import pure as _pure
from puredl.backends.contract import COMPUTE_KERNELS


class AccelMode(str, Enum):
    """PURE: every op on the standard-library backend. TORCH: every op on torch. AUTO: per op."""

    PURE = "pure"
    TORCH = "torch"
    AUTO = "auto"


PURE, TORCH, AUTO = AccelMode.PURE, AccelMode.TORCH, AccelMode.AUTO

CATEGORIES = ("elementwise", "matmul", "reduction", "activation", "shape")
_ALIASES = {
    "elementwise": "elementwise",
    "add": "elementwise",
    "mul": "elementwise",
    "matmul": "matmul",
    "reduction": "reduction",
    "reductions": "reduction",
    "sum": "reduction",
    "mean": "reduction",
    "activation": "activation",
    "activations": "activation",
    "relu": "activation",
    "sigmoid": "activation",
    "shape": "shape",
}

# Crossovers measured on this project's 2-core machine (Python 3.11, torch 2.13 CPU, 2 threads,
# load below 1) with `puredl accel calibrate`: the work from which torch, paying the zero-copy
# view of pure inputs, beats pure (median of 3 runs; docs/acceleration.md has the table). A torch
# op costs ~5-15 us whatever its size, a pure element ~50 ns, so torch wins from tens of elements on.
DEFAULT_THRESHOLDS = {
    "elementwise": 98,  # add: pure 5.3 us at 10 elements, 10 us at 100; torch ~8 us flat
    "matmul": 43,  # multiply-adds: pure ~27 ns each, torch ~14 us flat up to 32x32
    "reduction": 470,  # sum: pure ~8 ns per element (C-level sum) after ~3 us, torch ~7.4 us
    "activation": 75,  # relu: pure ~50 ns per element, torch ~6 us
    "shape": 1080,  # gathered elements (index_select, cat): pure slices in C, torch ~50 us with checks
}
# Seconds per unit of work on the pure backend, the cost of copying a torch tensor to pure, and
# of viewing pure storage from torch (which the thresholds include). They turn "this input lives
# on torch" into work units for AUTO's locality rule.
DEFAULT_COSTS = {
    "pure_unit_s": {
        "elementwise": 5.7e-8,
        "matmul": 2.7e-8,
        "reduction": 8.2e-9,
        "activation": 5.2e-8,
        "shape": 4.6e-8,
    },
    "move_fixed_s": 3.9e-6,
    "move_elem_s": 1e-10,
    "view_fixed_s": 1.5e-6,
}
# PUREDL_ACCEL_THRESHOLDS=low: small enough that the test suites' tiny tensors run on both backends
LOW_THRESHOLDS = {"elementwise": 6, "matmul": 12, "reduction": 6, "activation": 6, "shape": 6}

NEVER = math.inf


# =========================================================================== statistics


class OpStats(NamedTuple):
    pure: int
    torch: int
    fallback: int


class AccelStats:
    """Counts of ops run on each backend, in total and per op.

    ``pure_count`` and ``torch_count`` say where ops ran; a fallback (torch failed, pure ran) is
    counted in ``pure_count`` and in ``fallback_count``.
    """

    __slots__ = (
        "pure_count",
        "torch_count",
        "fallback_count",
        "per_op",
        "timed_count",
        "explored_count",
        "moves",
    )

    def __init__(self):
        self.pure_count = 0
        self.torch_count = 0
        self.fallback_count = 0
        self.per_op: dict[str, list[int]] = {}  # op -> [pure, torch, fallback]
        self.timed_count = 0  # AUTO's timed calls (its cost model's evidence)
        self.explored_count = 0  # of which AUTO ran on the other backend to see what it costs now
        self.moves: list[_adaptive.Move] = []  # when and why AUTO's observed choice moved

    def total(self) -> int:
        return self.pure_count + self.torch_count

    def copy(self) -> AccelStats:
        """A snapshot that later ops do not change."""
        c = AccelStats()
        c.pure_count, c.torch_count, c.fallback_count = self.pure_count, self.torch_count, self.fallback_count
        c.per_op = {k: list(v) for k, v in self.per_op.items()}
        c.timed_count, c.explored_count, c.moves = self.timed_count, self.explored_count, list(self.moves)
        return c

    def ops(self) -> dict[str, OpStats]:
        """Per-op counts: ``{"matmul": OpStats(pure=2, torch=5, fallback=0), ...}``."""
        return {op: OpStats(*row) for op, row in sorted(self.per_op.items())}

    def op(self, name: str) -> OpStats:
        return OpStats(*self.per_op.get(name, (0, 0, 0)))

    @property
    def torch_fraction(self) -> float:
        total = self.total()
        return self.torch_count / total if total else 0.0

    def __repr__(self) -> str:
        return f"AccelStats(pure={self.pure_count}, torch={self.torch_count}, fallback={self.fallback_count})"


_stats = AccelStats()


def get_stats() -> AccelStats:
    return _stats


def reset_stats() -> None:
    global _stats
    _stats = AccelStats()


def _count_pure(op: str) -> None:
    _stats.pure_count += 1
    row = _stats.per_op.get(op)
    if row is None:
        row = _stats.per_op[op] = [0, 0, 0]
    row[0] += 1


def _count_torch(op: str) -> None:
    _stats.torch_count += 1
    row = _stats.per_op.get(op)
    if row is None:
        row = _stats.per_op[op] = [0, 0, 0]
    row[1] += 1


def format_stats(stats: AccelStats | None = None) -> str:
    """The statistics as a small table: totals, the share of ops on torch, and per-op counts."""
    s = stats or _stats
    total = s.total()
    lines = [
        f"Acceleration statistics (mode {_mode.value})",
        f"  pure:      {s.pure_count:>8}",
        f"  torch:     {s.torch_count:>8}"
        + (f"  ({100.0 * s.torch_count / total:.1f}% of {total} ops)" if total else ""),
        f"  fallbacks: {s.fallback_count:>8}",
    ]
    if s.per_op:
        width = max(14, *(len(name) + 1 for name in s.per_op))
        lines.append(f"  {'op':<{width}}{'pure':>9}{'torch':>9}{'fallback':>10}")
        for name, row in sorted(s.per_op.items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
            lines.append(f"  {name:<{width}}{row[0]:>9}{row[1]:>9}{row[2]:>10}")
    if s.timed_count:
        lines.append(f"  auto timed {s.timed_count} calls ({s.explored_count} on the other backend)")
    for move in s.moves:
        lines.append(f"  moved: {move}")
    return "\n".join(lines)


def print_stats(stats: AccelStats | None = None, file=None) -> None:
    """Print :func:`format_stats`."""
    print(format_stats(stats), file=file or sys.stdout)


# =========================================================================== torch availability

_tb = None  # puredl.backends.torch once loaded (it is the CPU torch backend)


def torch_available() -> bool:
    """True when torch can be imported (without importing it)."""
    return _tb is not None or available("torch")


def torch_backend():
    """The torch backend module (imports torch on first use; clear error when it is missing)."""
    global _tb
    if _tb is None:
        require("torch", "torch", "the torch backend")
        from puredl.backends import torch as tb

        tb.on_kernel_failure = torch_kernel_failed  # the fallback policy lives here, not in the backend
        _tb = tb
        global _sample_in
        _sample_in = 1  # AUTO may time calls from now on
    return _tb


def torch_version() -> str | None:
    if not torch_available():
        return None
    return torch_backend().torch.__version__


def cuda_available() -> bool:
    """True when torch is installed and sees at least one CUDA device."""
    return torch_available() and bool(torch_backend().torch.cuda.is_available())


# =========================================================================== mode, thresholds, logging

_mode = AccelMode.PURE
_logging = False
_log_file = None
_fast = True  # PURE mode and no logging: the hot path in select() returns at once
_fast_auto = False  # AUTO mode and no logging
_fast_torch = False  # TORCH mode and no logging
_thresholds: dict[str, float] = dict(DEFAULT_THRESHOLDS)
_costs: dict = json.loads(json.dumps(DEFAULT_COSTS))
_threshold_source = "built-in defaults"
_move_fixed: dict[str, float] = {}
_move_elem: dict[str, float] = {}


def _refresh() -> None:
    global _fast, _fast_auto, _fast_torch
    _fast = _mode is AccelMode.PURE and not _logging
    _fast_auto = _mode is AccelMode.AUTO and not _logging
    _fast_torch = _mode is AccelMode.TORCH and not _logging
    if _timer is not None:  # a timed call due in AUTO must not time a kernel of another mode
        _drop_timer()
    units = _costs["pure_unit_s"]
    for cat in CATEGORIES:
        # a torch-resident input costs a copy to go to pure, and saves the view that torch would need
        _move_fixed[cat] = (_costs["move_fixed_s"] + _costs["view_fixed_s"]) / units[cat]
        _move_elem[cat] = _costs["move_elem_s"] / units[cat]


def get_current_mode() -> AccelMode:
    return _mode


def set_acceleration(mode: AccelMode | str) -> None:
    """Choose PURE (default), TORCH or AUTO.

    TORCH needs torch installed (the error names ``pip install 'puredl[torch]'``); AUTO without
    torch runs everything on pure.

    >>> set_acceleration("pure"); get_current_mode().value
    'pure'
    """
    global _mode
    try:
        new = AccelMode(mode.value if isinstance(mode, AccelMode) else str(mode).strip().lower())
    except ValueError:
        raise ValueError(f"unknown acceleration mode {mode!r}; expected one of pure, torch, auto") from None
    if new is AccelMode.TORCH:
        torch_backend()
    elif new is AccelMode.AUTO and torch_available():
        torch_backend()
    _mode = new
    _refresh()


def _category(name: str) -> str:
    cat = _ALIASES.get(str(name).strip().lower())
    if cat is None:
        raise ValueError(f"unknown threshold {name!r}; expected one of {', '.join(CATEGORIES)}")
    return cat


def set_threshold(name: str, n: float | None) -> None:
    """AUTO runs ops of category ``name`` on torch from ``n`` units of work (None or inf: never).

    >>> set_threshold("matmul", 500_000); get_threshold("matmul")
    500000
    >>> reset_thresholds()
    """
    global _threshold_source
    cat = _category(name)
    if n is None or n == math.inf:
        _thresholds[cat] = NEVER
    else:
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0 or n != n:
            raise ValueError(
                f"set_threshold: {name!r} needs a non-negative number (or None for never), got {n!r}"
            )
        _thresholds[cat] = int(n) if float(n).is_integer() else n
    _threshold_source = "set_threshold()"


def get_threshold(name: str) -> float:
    """The threshold of a category (``math.inf`` means AUTO never uses torch for it)."""
    return _thresholds[_category(name)]


def get_thresholds() -> dict[str, float]:
    return dict(_thresholds)


def threshold_source() -> str:
    """Where the current thresholds came from (defaults, config file, environment, set_threshold)."""
    return _threshold_source


def reset_thresholds() -> None:
    """Back to the built-in defaults (ignores the user config file)."""
    global _threshold_source, _costs
    _thresholds.clear()
    _thresholds.update(DEFAULT_THRESHOLDS)
    _costs = json.loads(json.dumps(DEFAULT_COSTS))
    _threshold_source = "built-in defaults"
    _refresh()


def enable_logging(enabled: bool = True, file=None) -> None:
    """Print every dispatch decision: ``[accel] matmul 1000x1000 @ 1000x1000 -> torch (1.0G >= 4.1k)``."""
    global _logging, _log_file
    _logging = bool(enabled)
    _log_file = file
    _refresh()


def is_logging() -> bool:
    return _logging


@contextlib.contextmanager
def using(
    mode: AccelMode | str | None = None, thresholds: dict | None = None, adaptive: bool | None = None
) -> Iterator[None]:
    """Run a block with another mode, thresholds and/or AUTO's adaptivity, restoring them after.

    >>> with using("pure", {"matmul": 10}):
    ...     get_threshold("matmul")
    10
    """
    saved = (_mode, dict(_thresholds), _threshold_source)
    saved_adaptive = _adaptive_on
    try:
        if mode is not None:
            set_acceleration(mode)
        for k, v in (thresholds or {}).items():
            set_threshold(k, v)
        if adaptive is not None and adaptive != saved_adaptive:
            set_adaptive(adaptive)
        yield
    finally:
        _restore(saved)
        if _adaptive_on != saved_adaptive:
            set_adaptive(saved_adaptive)


def _restore(saved) -> None:
    global _mode, _threshold_source
    _mode, th, _threshold_source = saved
    _thresholds.clear()
    _thresholds.update(th)
    _refresh()


def _human(n: float) -> str:
    if n == math.inf:
        return "never"
    n = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


_SYMBOL = {"matmul": "@", "add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def _describe(op: str, tensors: tuple) -> str:
    shapes = ["x".join(map(str, t.shape)) or "scalar" for t in tensors]
    if op == "linear" and len(shapes) >= 2:  # x @ W.T (+ b)
        return f"linear {shapes[0]} @ ({shapes[1]}).T" + (f" + {shapes[2]}" if len(shapes) == 3 else "")
    sym = _SYMBOL.get(op)
    if sym and len(shapes) == 2:
        return f"{op} {shapes[0]} {sym} {shapes[1]}"
    return f"{op} {', '.join(shapes)}"


def _log(op: str, tensors: tuple, backend: str, reason: str) -> None:
    print(f"[accel] {_describe(op, tensors)} -> {backend} ({reason})", file=_log_file or sys.stdout)


# =========================================================================== storage across backends


class DeviceMismatchError(RuntimeError):
    """An op got tensors on different devices (for example cpu and cuda:0)."""


def torch_impl(t) -> object:
    """``t``'s storage as a CPU torch tensor: the impl itself, or a zero-copy view of pure storage."""
    be = t._be
    if be is not _pure:
        return t._impl
    impl = t._impl
    try:
        cached = t._alt
    except AttributeError:
        cached = None
    if cached is not None and cached[0] is impl:
        return cached[1]
    view = _tb.from_pure(impl)
    if t.dtype.itemsize == 2 and t.dtype.typecode == "f":
        return view  # float16/bfloat16: a converted copy, stale after an in-place change: not cached
    t._alt = (impl, view)  # shares memory, so it stays valid as long as the impl does
    return view


def pure_impl(t) -> _pure.PureArray:
    """``t``'s storage on the pure backend (a copy when it lives in torch)."""
    return t._impl if t._be is _pure else _tb.to_pure(t._impl)


def _move_cost(t, category: str) -> float:
    """Work units that a torch-resident input adds to running on pure (copy out + the view saved)."""
    n = 1
    for s in t.shape:
        n *= s
    return _move_fixed[category] + n * _move_elem[category]


# =========================================================================== the decision

_last_op = ""
# AUTO's cost model (puredl.adaptive): calls until the next timed one, and the model itself.
# Only AUTO touches them; PURE and TORCH never read them.
_sample_in = 1
_model = _adaptive.CostModel()
_overridden = _model.by_category  # categories where observed costs overrule a threshold
_adaptive_on = True
_PURE_FIXED_S = 4e-6  # a pure op's cost before its first element (priors of the cost model only)


def select(op: str, category: str, work: int, tensors: tuple):
    """Pick the backend for one op and return ``(backend, [impl of each tensor on it])``."""
    if _fast:
        for t in tensors:
            if t._be is not _pure:
                break
        else:
            _count_pure(op)
            return _pure, [t._impl for t in tensors]
    elif _fast_auto:
        global _sample_in
        _sample_in -= 1
        # the common case costs this countdown and one lookup: no timed call due, no observed
        # override in this category (or not for this size)
        if _sample_in > 0 and work < _thresholds[category]:
            ov = _overridden.get(category)
            if ov is None or (int(work).bit_length() >> 1, False) not in ov:  # adaptive.bucket
                for t in tensors:  # a small op on pure data: stay on pure
                    if t._be is not _pure:
                        break
                else:
                    _count_pure(op)
                    return _pure, [t._impl for t in tensors]
    elif _fast_torch:  # TORCH mode, data already on torch's CPU backend
        tcpu = _tb
        for t in tensors:
            if t._be is not tcpu:
                break
        else:
            global _last_op
            _last_op = op
            _stats.torch_count += 1
            row = _stats.per_op.get(op)
            if row is None:
                row = _stats.per_op[op] = [0, 0, 0]
            row[1] += 1
            return tcpu, [t._impl for t in tensors]
    return _select(op, category, work, tensors)


def _select(op: str, category: str, work: int, tensors: tuple):
    global _last_op, _sample_in
    _last_op = op
    tcpu = _tb
    mode = _mode
    adapt = False
    if mode is AccelMode.AUTO:
        if _timer is not None:  # the last timed call never reached a kernel on its backend
            _drop_timer()
        if tcpu is None or not _adaptive_on:
            _sample_in = 1 << 62  # nothing to time: keep select()'s countdown off this path
        else:
            if _logging:  # select() counts down only on the fast path
                _sample_in -= 1
            adapt = _sample_in <= 0 or category in _overridden
    if (
        not _logging and not adapt
    ):  # the common cases first: AUTO below threshold on pure data, TORCH on torch data
        if mode is AccelMode.AUTO:
            for t in tensors:
                if t._be is not _pure:
                    break
            else:
                if work < _thresholds[category] or tcpu is None:
                    _count_pure(op)
                    return _pure, [t._impl for t in tensors]
        elif mode is AccelMode.TORCH:
            for t in tensors:
                if t._be is not tcpu:
                    break
            else:
                _count_torch(op)
                return tcpu, [t._impl for t in tensors]
    device_be = None
    n_torch = 0
    for t in tensors:
        be = t._be
        if be is _pure:
            continue
        if be is tcpu:
            n_torch += 1
        elif device_be is None:
            device_be = be
        elif be is not device_be:
            raise DeviceMismatchError(
                f"{op}: expected all tensors on the same device, got {device_be.DEVICE} and {be.DEVICE}"
            )
    if device_be is not None:
        return _on_device(op, device_be, tensors)
    reason = ""
    if mode is AccelMode.TORCH:
        use_torch, reason = True, "mode torch"
    elif mode is AccelMode.PURE:
        use_torch, reason = False, "mode pure"
    elif tcpu is None:
        use_torch, reason = False, "auto: torch not installed"
    else:
        limit = _thresholds[category]
        move = 0.0
        if n_torch:
            for t in tensors:
                if t._be is tcpu:
                    move += _move_cost(t, category)
            use_torch = work + move >= limit
            if _logging:
                cmp = ">=" if use_torch else "<"
                reason = f"{_human(work)} + {_human(move)} to move off torch {cmp} {_human(limit)}"
        else:
            use_torch = work >= limit
            if _logging:
                reason = f"{_human(work)} {'>=' if use_torch else '<'} {_human(limit)}"
        if adapt:
            key = (category, _adaptive.bucket(work), n_torch > 0)
            prior = use_torch
            use_torch = _model.decide(key, prior)
            if use_torch is not prior and _logging:
                reason = f"observed cheaper than the threshold's choice; {reason}"
            if _sample_in <= 0:  # a timed call
                unit = _costs["pure_unit_s"][category]
                prior_pure = _PURE_FIXED_S + (work + move) * unit
                prior_torch = _PURE_FIXED_S + limit * unit  # equal costs at the threshold
                explore, _sample_in = _model.plan(key, use_torch, prior_pure, prior_torch)
                if explore:
                    use_torch = not use_torch
                    _stats.explored_count += 1
                    if _logging:
                        reason = f"exploring: timing the other backend; {reason}"
                _start_timer(tcpu if use_torch else _pure, key, op, work, use_torch, prior)
    if _logging:
        _log(op, tensors, "torch" if use_torch else "pure", reason)
    if use_torch:
        _count_torch(op)
        if n_torch == len(tensors):
            return tcpu, [t._impl for t in tensors]
        return tcpu, [torch_impl(t) for t in tensors]
    _count_pure(op)
    if n_torch:
        return _pure, [pure_impl(t) for t in tensors]
    return _pure, [t._impl for t in tensors]


# ---- timing one call of AUTO: the chosen backend's compute kernels are swapped, for that one
# call, for versions that read the clock and put the originals back. The op calls the kernel
# itself (accel does not), so this is how accel sees when it returns; PURE and TORCH never pay.

_timer = None  # (backend, {kernel: original}, key, op, work, use_torch, prior, start) while one is due


_kernel_of: dict[str, str] = {}  # op -> the kernel its last timed call ran: swap only that one


def _start_timer(be, key: tuple, op: str, work: float, use_torch: bool, prior: bool) -> None:
    global _timer
    known = _kernel_of.get(op)
    names = (known,) if known is not None else COMPUTE_KERNELS
    originals = {}
    for name in names:
        timed = _TIMED.get((be, name))
        if timed is None:
            timed = _TIMED[(be, name)] = _timed_kernel(be, name)
        fn = getattr(be, name)
        if fn is timed:  # a stand-in left behind: never take it for the original
            fn = _ORIGINAL[(be, name)]
        originals[name] = _ORIGINAL[(be, name)] = fn
        setattr(be, name, timed)
    _timer = (be, originals, key, op, work, use_torch, prior, _model.clock())


def _stop_timer():
    global _timer
    timer = _timer
    _timer = None
    if timer is not None:
        be, originals = timer[0], timer[1]
        for name, fn in originals.items():
            setattr(be, name, fn)
    return timer


def _put_back_every_kernel() -> None:
    """Every stand-in still on a backend replaced by what it stood in for."""
    _stop_timer()
    for (be, name), timed in _TIMED.items():
        if getattr(be, name) is timed:
            setattr(be, name, _ORIGINAL[(be, name)])


def _drop_timer() -> None:
    timer = _stop_timer()
    if timer is not None:
        _model.drop(timer[2])
        _kernel_of.pop(timer[3], None)  # the op ran another kernel (add of a scalar): swap them all


def _timed_kernel(be, name: str):
    def timed(*args):
        timer = _stop_timer()  # originals back first: a kernel calling another is not timed twice
        if timer is None or timer[0] is not be:  # another thread took the timed call: just run
            fn = getattr(be, name)
            return (_ORIGINAL[(be, name)] if fn is timed else fn)(*args)
        result = timer[1][name](*args)
        _observe(timer, _model.clock() - timer[7])
        _kernel_of[timer[3]] = name
        return result

    timed.__name__ = name
    return timed


_TIMED: dict[tuple, object] = {}  # (backend, kernel) -> its timed stand-in, made on first use
_ORIGINAL: dict[tuple, object] = {}  # (backend, kernel) -> what the stand-in last replaced


def _observe(timer, seconds: float) -> None:
    _, _, key, op, work, use_torch, prior, _ = timer
    _stats.timed_count += 1
    move = _model.observe(key, op, work, use_torch, seconds, prior)
    if move is not None:
        _stats.moves.append(move)
        if _logging:
            print(f"[accel] {move}", file=_log_file or sys.stdout)


def adaptive_model() -> _adaptive.CostModel:
    """AUTO's cost model (its keys, recent timings and overrides: ``adaptive_model().table()``)."""
    return _model


def reset_adaptive(model: _adaptive.CostModel | None = None) -> None:
    """Forget what AUTO observed (or start from ``model``, e.g. one with a test clock)."""
    global _model, _overridden, _sample_in
    _put_back_every_kernel()
    _model = model if model is not None else _adaptive.CostModel()
    _overridden = _model.by_category
    _sample_in = 1


def set_adaptive(enabled: bool = True) -> None:
    """Let AUTO time its calls and override thresholds on evidence (default) or not."""
    global _adaptive_on, _sample_in
    _drop_timer()
    _adaptive_on = bool(enabled)
    if _sample_in > 1 << 40:  # parked while there was nothing to time
        _sample_in = 1


def is_adaptive() -> bool:
    return _adaptive_on


def _on_device(op: str, be, tensors: tuple):
    """Every input on ``be``'s device; 0-d CPU tensors come along (as torch allows for scalars)."""
    impls = []
    for t in tensors:
        if t._be is be:
            impls.append(t._impl)
        elif t.shape == ():
            impls.append(torch_impl(t).to(be.DEVICE))
        else:
            raise DeviceMismatchError(
                f"{op}: expected all tensors on the same device, got {t.device} and {be.DEVICE}; "
                f"move one with .to({be.DEVICE!r}) or .to('cpu')"
            )
    if _logging:
        _log(op, tensors, "torch", f"on {be.DEVICE}")
    _count_torch(op)
    return be, impls


# =========================================================================== fallback

_fallback_logged: set = set()


def torch_kernel_failed(kernel: str, args: tuple, exc: Exception):
    """Called by a torch kernel that raised: AUTO retries on pure; other modes re-raise with context."""
    op = _last_op or kernel
    if _mode is not AccelMode.AUTO:
        where = f"kernel {kernel}, {_describe_args(args)}, mode {_mode.value}"
        msg = f"torch backend failed in {op} ({where}): {exc}"
        try:
            err = type(exc)(msg)
        except Exception:  # an exception type that wants other arguments
            err = RuntimeError(msg)
        raise err from exc
    tb = _tb
    dev = "cpu"
    pure_args = []
    for a in args:
        if isinstance(a, tb.torch.Tensor):
            dev = tb.device(a)
            pure_args.append(tb.to_pure(a))
        elif isinstance(a, list):
            pure_args.append([tb.to_pure(x) if isinstance(x, tb.torch.Tensor) else x for x in a])
        else:
            pure_args.append(a)
    result = getattr(_pure, kernel)(*pure_args)  # a user error raises here, with pure's message
    _stats.fallback_count += 1
    _stats.torch_count -= 1
    _stats.pure_count += 1
    row = _stats.per_op.setdefault(op, [0, 0, 0])
    row[1] -= 1
    row[0] += 1
    row[2] += 1
    if op not in _fallback_logged:
        _fallback_logged.add(op)
        print(
            f"[accel] fallback: {op} failed on torch ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "ran on pure instead (logged once per op)",
            file=sys.stderr,
        )
    if isinstance(result, tuple):  # arrays go back to torch; Python scalars stay as they are
        return tuple(tb.from_pure(r, dev) if isinstance(r, _pure.PureArray) else r for r in result)
    return tb.from_pure(result, dev) if isinstance(result, _pure.PureArray) else result


def _describe_args(args: tuple) -> str:
    parts = []
    for a in args:
        shape = getattr(a, "shape", None)
        if shape is not None and not isinstance(a, _pure.PureArray):
            parts.append(f"{str(a.dtype).replace('torch.', '')}{list(shape)} on {_tb.device(a)}")
        elif isinstance(a, list) and a and hasattr(a[0], "shape"):
            parts.append(f"{len(a)} tensors")
    return ", ".join(parts) or "no tensor arguments"


# =========================================================================== user config and environment


def config_path() -> str:
    """Where calibrate() saves thresholds: $PUREDL_CONFIG_DIR, $XDG_CONFIG_HOME/puredl or ~/.config/puredl."""
    base = os.environ.get("PUREDL_CONFIG_DIR")
    if not base:
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        base = os.path.join(xdg, "puredl")
    return os.path.join(base, "accel.json")


def _valid_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 and v == v


def load_config(path: str | None = None) -> bool:
    """Load thresholds (and cost constants) saved by calibrate(); False when there is no file.

    A malformed file is reported on stderr and ignored, never half-applied.
    """
    global _threshold_source, _costs
    path = path or config_path()
    if not os.path.exists(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        th = data["thresholds"]
        new = {}
        for cat, v in th.items():
            cat = _category(cat)
            if v is None:
                new[cat] = NEVER
            elif _valid_number(v):
                new[cat] = v
            else:
                raise ValueError(f"threshold {cat!r} is {v!r}")
        costs = data.get("costs")
        if costs is not None:
            units = {
                k: float(v) for k, v in costs["pure_unit_s"].items() if _category(k) and _valid_number(v)
            }
            merged = json.loads(json.dumps(DEFAULT_COSTS))
            merged["pure_unit_s"].update({_category(k): v for k, v in units.items() if v > 0})
            for k in ("move_fixed_s", "move_elem_s", "view_fixed_s"):
                if _valid_number(costs.get(k)):
                    merged[k] = float(costs[k])
            _costs = merged
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"[accel] ignoring {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    _thresholds.update(new)
    _threshold_source = f"config file {path}"
    _refresh()
    return True


def save_config(
    thresholds: dict, costs: dict | None = None, path: str | None = None, info: dict | None = None
) -> str:
    """Write thresholds (inf saved as null = never) to the user config file atomically; return its path."""
    path = path or config_path()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    data = {
        "thresholds": {_category(k): (None if v == math.inf else v) for k, v in thresholds.items()},
        "costs": costs or _costs,
        "info": info or {},
    }
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
    return path


def _apply_env_thresholds(spec: str) -> None:
    """PUREDL_ACCEL_THRESHOLDS: "low", "default", or "matmul=1000,elementwise=64" ("never" allowed)."""
    global _threshold_source
    spec = spec.strip().lower()
    if spec in ("low", "default", "defaults"):
        _thresholds.update(LOW_THRESHOLDS if spec == "low" else DEFAULT_THRESHOLDS)
    else:
        new = {}  # read it all first: a bad part leaves the thresholds as they were
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, value = part.partition("=")
            value = value.strip()
            if value in ("never", "inf", "none"):
                new[_category(name)] = NEVER
            else:
                try:
                    n = float(value)
                except ValueError:
                    raise ValueError(
                        f"PUREDL_ACCEL_THRESHOLDS: cannot read {part!r} (want name=number)"
                    ) from None
                if not _valid_number(n):
                    raise ValueError(f"PUREDL_ACCEL_THRESHOLDS: {part!r} is not a non-negative number")
                new[_category(name)] = int(n) if n.is_integer() else n
        _thresholds.update(new)
    _threshold_source = f"PUREDL_ACCEL_THRESHOLDS={spec}"


def calibrate(**kwargs):
    """Measure where torch starts to beat pure for each category on this machine, and apply it.

    Saves the thresholds to :func:`config_path` (which AUTO loads at import), prints a table and
    writes a PNG plot of time against size for pure, torch and auto. See
    ``puredl.calibration.calibrate`` for the arguments.
    """
    from puredl.calibration import calibrate as _calibrate

    return _calibrate(**kwargs)


# =========================================================================== import-time settings

_refresh()
if not os.environ.get("PUREDL_ACCEL_NO_CONFIG"):
    load_config()


def _apply_environment() -> None:
    """PUREDL_ACCEL_THRESHOLDS, PUREDL_ACCEL_ADAPTIVE and PUREDL_ACCEL; a bad value is reported on
    stderr and ignored (as a bad accel.json is), so that no command, ``puredl --help`` included,
    dies of it."""
    spec = os.environ.get("PUREDL_ACCEL_THRESHOLDS")
    if spec:
        try:
            _apply_env_thresholds(spec)
        except ValueError as exc:
            print(f"[accel] ignoring PUREDL_ACCEL_THRESHOLDS={spec!r}: {exc}", file=sys.stderr)
    adaptive = os.environ.get("PUREDL_ACCEL_ADAPTIVE", "").strip().lower()
    if adaptive in ("0", "off", "false", "no"):
        set_adaptive(False)
    elif adaptive not in ("", "1", "on", "true", "yes"):
        print(f"[accel] ignoring PUREDL_ACCEL_ADAPTIVE={adaptive!r}: expected 1 or 0", file=sys.stderr)
    mode = os.environ.get("PUREDL_ACCEL")
    if mode:
        try:
            set_acceleration(mode)
        except (ValueError, ImportError) as exc:
            print(f"[accel] ignoring PUREDL_ACCEL={mode!r}: {exc}; running {_mode.value}", file=sys.stderr)


_apply_environment()
