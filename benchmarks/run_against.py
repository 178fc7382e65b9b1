"""Run a benchmark script against the puredl of a given source tree, filling in API the old code lacks.

benchmarks/compare_commits.py runs today's benchmark scripts against an older puredl too. Where the
old package lacks something a script uses, a stand-in with the old behaviour is put in first
(each is named on stderr, and in the comparison's report):

- ``accel.set_adaptive`` / ``accel.reset_adaptive``: no-ops (the old AUTO has no cost model);
- ``accel.using(mode, thresholds, adaptive)``: the third argument is dropped;
- ``calibration.time_modes(..., stat="best")``: settings cut to ``(mode, thresholds)``, ``stat``
  dropped (the old one keeps the best round; any other ``stat`` is refused);
- ``AccelStats.moves``: an empty list (no cost model, so nothing moved);
- ``puredl.accel.calibration`` (where accel became a package): the old ``puredl.calibration``;
- ``accel.format_work``: the old ``accel._human``.

On a tree that has them all this adds nothing. Usage:

    PYTHONPATH=TREE/src python benchmarks/run_against.py TREE/src SCRIPT [ARGS...]
"""

from __future__ import annotations

import importlib
import inspect
import os
import runpy
import sys
import time

SHIMS_PREFIX = "run_against: stand-ins for the old API:"


def calibration_module():
    """puredl's calibration module wherever this tree keeps it (accel/ or beside it), or None."""
    for name in ("puredl.accel.calibration", "puredl.calibration"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def fill_in_old_api(accel=None, calibration=None, modules: dict | None = None) -> list[str]:
    """Put in the stand-ins the loaded puredl needs; returns their names (empty on today's code).

    ``accel``, ``calibration`` and ``modules`` (default: the loaded ones and ``sys.modules``) let a
    test hand in stand-ins of its own.
    """
    if accel is None:
        from puredl import accel
    calibration = calibration or calibration_module()
    modules = sys.modules if modules is None else modules
    added = []
    package_name = "puredl.accel.calibration"
    old_name = calibration is not None and getattr(calibration, "__name__", "") != package_name
    if old_name and package_name not in modules:
        modules[package_name] = calibration  # accel was one module then
        accel.calibration = calibration
        added.append("puredl.accel.calibration")
    if not hasattr(accel, "format_work") and hasattr(accel, "_human"):
        accel.format_work = accel._human
        added.append("accel.format_work")
    for name in ("set_adaptive", "reset_adaptive"):
        if not hasattr(accel, name):
            setattr(accel, name, lambda *args, **kwargs: None)
            added.append(f"accel.{name}")
    if "adaptive" not in inspect.signature(accel.using).parameters:
        old_using = accel.using

        def using(mode=None, thresholds=None, adaptive=None):
            return old_using(mode, thresholds)

        accel.using = using
        added.append("accel.using(adaptive)")
    if calibration is not None and "warmup" not in inspect.signature(calibration.time_modes).parameters:
        old_time_modes = calibration.time_modes
        has_stat = "stat" in inspect.signature(old_time_modes).parameters

        def time_modes(op, tensors, settings, min_time=0.03, rounds=3, stat="best", warmup=(0, 0.0)):
            if stat != "best" and not has_stat:
                raise SystemExit(f"run_against: the old time_modes keeps the best round only, not {stat!r}")
            for setting in settings.values():  # the untimed calls the new code makes before its own first one
                with accel.using(*setting):
                    begun, n = time.perf_counter(), 0
                    while n < warmup[0] or time.perf_counter() - begun < warmup[1]:
                        op.run(*tensors)
                        n += 1
                        if time.perf_counter() - begun > 20 * warmup[1] > 0:
                            break
            if has_stat:
                return old_time_modes(op, tensors, settings, min_time, rounds, stat)
            two = {label: tuple(setting[:2]) for label, setting in settings.items()}
            return old_time_modes(op, tensors, two, min_time, rounds)

        calibration.time_modes = time_modes
        added.append("calibration.time_modes(stat, warmup)")
    result_type = getattr(calibration, "CategoryResult", None)
    fields = getattr(result_type, "__dataclass_fields__", {})
    if result_type is not None and "attempts" not in fields and not hasattr(result_type, "attempts"):
        result_type.attempts = ()  # calibrate() measured each grid once then
        added.append("CategoryResult.attempts")
    stats_type = type(accel.get_stats())
    if not hasattr(stats_type, "moves"):
        stats_type.moves = property(lambda self: [])
        added.append("AccelStats.moves")
    return added


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: run_against.py SRC SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    src, script, args = os.path.realpath(argv[0]), os.path.abspath(argv[1]), argv[2:]
    import puredl

    where = os.path.realpath(puredl.__file__)
    if not where.startswith(src + os.sep):
        print(f"run_against: puredl came from {where}, not from {src} (is PYTHONPATH set?)", file=sys.stderr)
        return 2
    added = fill_in_old_api()
    if added:
        print(f"{SHIMS_PREFIX} {', '.join(added)}", file=sys.stderr)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(script))  # as `python SCRIPT` does: its neighbours import
    runpy.run_path(script, run_name="__main__")  # its sys.exit(code) ends this process as it would
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
