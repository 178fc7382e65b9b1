"""`puredl accel info | calibrate | reset`: show, measure and clear the acceleration settings.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["calibrate", "--no-save"]).save
False
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="accel_command", metavar="ACTION")
    sub.add_parser("info", help="torch/CUDA availability, mode, thresholds and where they came from")
    cal = sub.add_parser(
        "calibrate", help="measure where torch beats pure on this machine and save the thresholds"
    )
    cal.add_argument("--no-save", dest="save", action="store_false", help="measure and print only")
    cal.add_argument("--config", default=None, help="config file to write (default: the user config file)")
    cal.add_argument("--plot", default="accel_calibration.png", help="PNG of time against size ('' for none)")
    cal.add_argument(
        "--categories",
        nargs="+",
        default=None,
        metavar="NAME",
        help="only these (elementwise matmul reduction activation shape)",
    )
    cal.add_argument("--min-time", type=float, default=0.02, help="seconds of timing per point")
    sub.add_parser("reset", help="delete the user config file (back to the built-in defaults)")


def info_text() -> str:
    """The ``puredl accel info`` report."""
    from puredl import accel, devices

    lines = ["puredl acceleration"]
    lines.append(
        f"  mode:            {accel.get_current_mode().value}"
        f"  (PUREDL_ACCEL={os.environ.get('PUREDL_ACCEL', '')})"
    )
    if accel.torch_available():
        torch = accel.torch_backend().torch
        lines.append(f"  torch:           {torch.__version__} ({torch.get_num_threads()} CPU threads)")
        cuda = "CUDA " + torch.version.cuda if torch.version.cuda else "CPU-only build"
        lines.append(f"  torch build:     {cuda}; devices: {', '.join(devices.list_devices())}")
    else:
        lines.append(
            "  torch:           not installed (pip install 'puredl[torch]'); AUTO runs everything on pure"
        )
    lines.append(f"  thresholds from: {accel.threshold_source()}")
    for cat, value in accel.get_thresholds().items():
        unit = "multiply-adds" if cat == "matmul" else "elements"
        default = accel.DEFAULT_THRESHOLDS[cat]
        value, default = accel.format_work(value), accel.format_work(default)
        lines.append(f"    {cat:<12} {value:>8} {unit:<14} (default {default})")
    path = accel.config_path()
    lines.append(f"  config file:     {path} ({'present' if os.path.exists(path) else 'absent'})")
    lines.append(
        f"  auto cost model: {'on' if accel.is_adaptive() else 'off'}"
        f"  (PUREDL_ACCEL_ADAPTIVE={os.environ.get('PUREDL_ACCEL_ADAPTIVE', '')})"
    )
    policy = accel.adaptive_model().threads
    if policy is None:
        lines.append("  torch threads:   torch's own count (AUTO's per-size thread policy off)")
    else:
        single = ", ".join(f"{k[0]} {accel.format_work(1 << (2 * k[1] - 1))}+" for k in sorted(policy.single))
        lines.append(
            "  torch threads:   AUTO's per-size thread policy on; on one thread: " + (single or "no size yet")
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from puredl import accel

    action = args.accel_command or "info"
    if action == "info":
        print(info_text())
        return 0
    if action == "reset":
        path = accel.config_path()
        if os.path.exists(path):
            os.remove(path)
            print(f"removed {path}; AUTO uses the built-in defaults")
        else:
            print(f"no config file at {path}; AUTO already uses the built-in defaults")
        return 0
    if not accel.torch_available():
        print("puredl accel calibrate: torch is not installed; pip install 'puredl[torch]'", file=sys.stderr)
        return 1
    accel.reset_thresholds()  # measure against the built-in defaults, not an older calibration
    result = accel.calibrate(
        save=args.save,
        path=args.config,
        plot=args.plot or None,
        categories=tuple(args.categories) if args.categories else None,
        min_time=args.min_time,
    )
    if not args.save:
        print("not saved (--no-save)")
    return 0 if result.thresholds else 1
