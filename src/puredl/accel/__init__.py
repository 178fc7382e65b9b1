"""Acceleration layer: which backend runs each op (PURE, TORCH or AUTO), statistics and logging.

The package, one concept a file:

- ``availability``: whether torch (and CUDA) can run, and the torch backend once loaded;
- ``settings``: mode, thresholds and cost constants, logging, the user config file, the environment;
- ``stats``: where ops ran (counts per backend and per op), as a table;
- ``dispatch``: the decision for one op (``select``), AUTO's timed calls, the fallback;
- ``calibration``: timing pure against torch to set the thresholds (above the rest: public setters only);
- ``cli``: ``puredl accel info | calibrate | reset``.

>>> from puredl import accel
>>> with accel.using("auto"):  # the mode for a block; set_acceleration() sets it for good
...     accel.get_current_mode().value
'auto'
>>> accel.get_threshold("matmul") > 0
True
"""

from __future__ import annotations

from puredl.accel.availability import cuda_available, torch_available, torch_backend, torch_version
from puredl.accel.dispatch import (
    DeviceMismatchError,
    adaptive_model,
    move,
    pure_impl,
    reset_adaptive,
    run,
    run_inplace,
    select,
    torch_impl,
)
from puredl.accel.settings import (
    AUTO,
    CATEGORIES,
    DEFAULT_COSTS,
    DEFAULT_THRESHOLDS,
    LOW_THRESHOLDS,
    NEVER,
    PURE,
    TORCH,
    AccelMode,
    apply_import_time_settings,
    canonical_category,
    config_path,
    enable_logging,
    get_costs,
    get_current_mode,
    get_threshold,
    get_thresholds,
    is_adaptive,
    is_logging,
    load_config,
    reset_thresholds,
    restore,
    save_config,
    set_acceleration,
    set_adaptive,
    set_threshold,
    set_thresholds,
    threshold_source,
    using,
)
from puredl.accel.stats import (
    AccelStats,
    OpStats,
    format_stats,
    format_work,
    get_stats,
    print_stats,
    reset_stats,
)


def calibrate(**kwargs):
    """Measure where torch starts to beat pure for each category on this machine, and apply it.

    Saves the thresholds to :func:`config_path` (which AUTO loads at import), prints a table and
    writes a PNG plot of time against size for pure, torch and auto. See
    ``puredl.accel.calibration.calibrate`` for the arguments.
    """
    from puredl.accel.calibration import calibrate as _calibrate

    return _calibrate(**kwargs)


__all__ = [
    "AUTO",
    "CATEGORIES",
    "DEFAULT_COSTS",
    "DEFAULT_THRESHOLDS",
    "LOW_THRESHOLDS",
    "NEVER",
    "PURE",
    "TORCH",
    "AccelMode",
    "AccelStats",
    "DeviceMismatchError",
    "OpStats",
    "adaptive_model",
    "calibrate",
    "canonical_category",
    "config_path",
    "cuda_available",
    "enable_logging",
    "format_stats",
    "format_work",
    "get_costs",
    "get_current_mode",
    "get_stats",
    "get_threshold",
    "get_thresholds",
    "is_adaptive",
    "is_logging",
    "load_config",
    "print_stats",
    "pure_impl",
    "reset_adaptive",
    "reset_stats",
    "reset_thresholds",
    "run",
    "run_inplace",
    "move",
    "restore",
    "save_config",
    "select",
    "set_acceleration",
    "set_adaptive",
    "set_threshold",
    "set_thresholds",
    "threshold_source",
    "torch_available",
    "torch_backend",
    "torch_impl",
    "torch_version",
    "using",
]

apply_import_time_settings()
