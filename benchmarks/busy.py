"""A reproducible busy machine: one process spinning on one core while a benchmark runs.

>>> with busy_core(60) as what:   # doctest: +SKIP
...     run_the_sweep()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

# The busy process: spins until its time limit or until its parent (this benchmark) is gone.
BUSY_LOOP = """
import os, sys, time
end, parent = time.monotonic() + float(sys.argv[1]), os.getppid()
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(200_000):
        pass
"""


@contextlib.contextmanager
def busy_core(limit_s: float) -> Iterator[str]:
    """One process spinning on one core (the last this process may use) for the block; yields
    a description. It is stopped when the block ends, and ends itself after ``limit_s``."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(limit_s)])
    try:
        where = "one core"
        if hasattr(os, "sched_setaffinity"):
            cpu = max(os.sched_getaffinity(0))
            os.sched_setaffinity(proc.pid, {cpu})
            where = f"CPU {cpu}"
        yield f"loaded: a busy process (pid {proc.pid}) spinning on {where} for the whole run"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_average() -> str:
    """What ``uptime`` says (or os.getloadavg where there is no uptime)."""
    if shutil.which("uptime"):
        out = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        if out:
            return out
    if hasattr(os, "getloadavg"):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "load average: unknown"
