"""What the acceleration layer is set to: mode, thresholds and cost constants, logging, AUTO's
adaptivity, and where the settings came from (built-in defaults, the user config file, the
environment, a setter).

Dispatch keeps fast copies of these settings; every setter ends in :func:`_refresh`, which hands
them over (``on_change``), so the per-op path reads nothing from here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from enum import Enum

from puredl.accel.availability import torch_available, torch_backend


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

_mode = AccelMode.PURE
_logging = False
_log_file = None
_adaptive_on = True
_thresholds: dict[str, float] = dict(DEFAULT_THRESHOLDS)  # one dict for the process: updated, never rebound
_costs: dict = json.loads(json.dumps(DEFAULT_COSTS))
_threshold_source = "built-in defaults"
# work units that a torch-resident input adds to running on pure, per category (from _costs)
_move_fixed: dict[str, float] = {}
_move_elem: dict[str, float] = {}
_listeners: list[Callable[[], None]] = []


def on_change(fn: Callable[[], None]) -> None:
    """Call ``fn()`` after every change of a setting (dispatch refreshes its fast copies)."""
    _listeners.append(fn)


def _refresh() -> None:
    units = _costs["pure_unit_s"]
    for cat in CATEGORIES:
        # a torch-resident input costs a copy to go to pure, and saves the view that torch would need
        _move_fixed[cat] = (_costs["move_fixed_s"] + _costs["view_fixed_s"]) / units[cat]
        _move_elem[cat] = _costs["move_elem_s"] / units[cat]
    for fn in _listeners:
        fn()


# =========================================================================== mode


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


# =========================================================================== thresholds and costs


def canonical_category(name: str) -> str:
    """The dispatch category a threshold name means (``"add"`` -> ``"elementwise"``); ValueError if none.

    >>> canonical_category("relu")
    'activation'
    """
    cat = _ALIASES.get(str(name).strip().lower())
    if cat is None:
        raise ValueError(f"unknown threshold {name!r}; expected one of {', '.join(CATEGORIES)}")
    return cat


_category = canonical_category


def _checked_threshold(name: str, n) -> float:
    if n is None or n == math.inf:
        return NEVER
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0 or n != n:
        raise ValueError(
            f"set_threshold: {name!r} needs a non-negative number (or None for never), got {n!r}"
        )
    return int(n) if float(n).is_integer() else n


def set_threshold(name: str, n: float | None) -> None:
    """AUTO runs ops of category ``name`` on torch from ``n`` units of work (None or inf: never).

    >>> set_threshold("matmul", 500_000); get_threshold("matmul")
    500000
    >>> reset_thresholds()
    """
    global _threshold_source
    _thresholds[canonical_category(name)] = _checked_threshold(name, n)
    _threshold_source = "set_threshold()"


def set_thresholds(thresholds: dict, costs: dict | None = None, source: str = "set_thresholds()") -> None:
    """Set several thresholds at once (all checked before any is applied), optionally the cost
    constants too (``DEFAULT_COSTS``' layout), and say where they came from (:func:`threshold_source`).

    >>> set_thresholds({"matmul": 1000, "add": None}, source="a test"); threshold_source()
    'a test'
    >>> get_threshold("elementwise")
    inf
    >>> reset_thresholds()
    """
    global _threshold_source, _costs
    new = {canonical_category(k): _checked_threshold(k, v) for k, v in thresholds.items()}
    if costs is not None:
        merged = json.loads(json.dumps(DEFAULT_COSTS))
        units = costs["pure_unit_s"].items()
        merged["pure_unit_s"].update(
            {canonical_category(k): float(v) for k, v in units if _valid_number(v) and v > 0}
        )
        for k in ("move_fixed_s", "move_elem_s", "view_fixed_s"):
            if _valid_number(costs.get(k)):
                merged[k] = float(costs[k])
        _costs = merged
    _thresholds.update(new)
    _threshold_source = source
    _refresh()


def get_threshold(name: str) -> float:
    """The threshold of a category (``math.inf`` means AUTO never uses torch for it)."""
    return _thresholds[canonical_category(name)]


def get_thresholds() -> dict[str, float]:
    return dict(_thresholds)


def get_costs() -> dict:
    """The cost constants AUTO weighs data movement with (a copy; ``DEFAULT_COSTS``' layout)."""
    return json.loads(json.dumps(_costs))


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


# =========================================================================== logging and adaptivity


def enable_logging(enabled: bool = True, file=None) -> None:
    """Print every dispatch decision: ``[accel] matmul 1000x1000 @ 1000x1000 -> torch (1.0G >= 4.1k)``."""
    global _logging, _log_file
    _logging = bool(enabled)
    _log_file = file
    _refresh()


def is_logging() -> bool:
    return _logging


def log_file():
    """Where the decision log goes (stdout unless :func:`enable_logging` was given a file)."""
    return _log_file or sys.stdout


def set_adaptive(enabled: bool = True) -> None:
    """Let AUTO time its calls and override thresholds on evidence (default) or not."""
    global _adaptive_on
    _adaptive_on = bool(enabled)
    _refresh()


def is_adaptive() -> bool:
    return _adaptive_on


# =========================================================================== a block with other settings


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
        restore(saved)
        if _adaptive_on != saved_adaptive:
            set_adaptive(saved_adaptive)


def restore(saved: tuple) -> None:
    """Back to ``(mode, thresholds, threshold source)`` as saved (``get_current_mode()``, ...)."""
    global _mode, _threshold_source
    _mode, th, _threshold_source = saved
    _thresholds.clear()
    _thresholds.update(th)
    _refresh()


_restore = restore


# =========================================================================== user config file


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
            cat = canonical_category(cat)
            if v is None:
                new[cat] = NEVER
            elif _valid_number(v):
                new[cat] = v
            else:
                raise ValueError(f"threshold {cat!r} is {v!r}")
        costs = data.get("costs")
        if costs is not None:
            units = {
                k: float(v)
                for k, v in costs["pure_unit_s"].items()
                if canonical_category(k) and _valid_number(v)
            }
            merged = json.loads(json.dumps(DEFAULT_COSTS))
            merged["pure_unit_s"].update({canonical_category(k): v for k, v in units.items() if v > 0})
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
        "thresholds": {canonical_category(k): (None if v == math.inf else v) for k, v in thresholds.items()},
        "costs": costs or _costs,
        "info": info or {},
    }
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
    return path


# =========================================================================== the environment


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
                new[canonical_category(name)] = NEVER
            else:
                try:
                    n = float(value)
                except ValueError:
                    raise ValueError(
                        f"PUREDL_ACCEL_THRESHOLDS: cannot read {part!r} (want name=number)"
                    ) from None
                if not _valid_number(n):
                    raise ValueError(f"PUREDL_ACCEL_THRESHOLDS: {part!r} is not a non-negative number")
                new[canonical_category(name)] = int(n) if n.is_integer() else n
        _thresholds.update(new)
    _threshold_source = f"PUREDL_ACCEL_THRESHOLDS={spec}"
    _refresh()


def apply_import_time_settings() -> None:
    """The user config file (unless PUREDL_ACCEL_NO_CONFIG), then PUREDL_ACCEL_THRESHOLDS,
    PUREDL_ACCEL_ADAPTIVE and PUREDL_ACCEL; a bad value is reported on stderr and ignored (as a
    bad accel.json is), so that no command, ``puredl --help`` included, dies of it."""
    _refresh()
    if not os.environ.get("PUREDL_ACCEL_NO_CONFIG"):
        load_config()
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
