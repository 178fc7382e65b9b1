"""Named fault points for the fault-injection tests: ``PUREDL_FAULT_AT=NAME[@N]`` kills the process.

The N-th time (default 1st) this process reaches ``fault_point(NAME)`` it sends itself SIGKILL,
so a test can stop a run at an exact place (mid-step, mid-checkpoint, mid-adapter-save,
mid-report) and check that ``--resume`` finishes as if nothing had happened. Several points
may be listed, comma-separated. Unset (always, outside tests) it costs one dict lookup.

>>> fault_point("nothing-armed")  # PUREDL_FAULT_AT unset: returns
"""

from __future__ import annotations

import os
import signal

ENV = "PUREDL_FAULT_AT"
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """SIGKILL this process when ``PUREDL_FAULT_AT`` names this point (and its hit count is reached)."""
    armed = os.environ.get(ENV)
    if not armed:
        return
    _hits[name] = _hits.get(name, 0) + 1
    for spec in armed.split(","):
        point, _, nth = spec.strip().partition("@")
        if point == name and _hits[name] == (int(nth) if nth else 1):
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
