"""Shared test settings and fixtures (keep small; append fixtures below)."""

from __future__ import annotations

import os
import sys

import pytest

# tests import the helper modules beside them (torch_ref, finetune_helpers)
sys.path.insert(0, os.path.dirname(__file__))

from hypothesis import HealthCheck, settings  # noqa: E402

from oracle import no_oracle_reason  # noqa: E402

# few, small examples keep the op suite to seconds; CI can raise it with HYPOTHESIS_PROFILE=thorough
settings.register_profile(
    "puredl", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.register_profile("thorough", parent=settings.get_profile("puredl"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "puredl"))


@pytest.fixture
def float64_default():
    """Run a test with float64 as the default float dtype, restoring the previous default after."""
    import puredl as pd

    prev = pd.get_default_dtype()
    pd.set_default_dtype(pd.float64)
    yield
    pd.set_default_dtype(prev)


# ----------------------------------------------------------------------------- acceleration modes
# PUREDL_ACCEL=pure|torch|auto and PUREDL_ACCEL_THRESHOLDS=low|default|name=n,... are read by
# puredl.accel at import, so the same suites run under every mode:
#   PUREDL_ACCEL=torch pytest tests/...        PUREDL_ACCEL=auto PUREDL_ACCEL_THRESHOLDS=low pytest tests/...


def pytest_report_header(config):
    from puredl import accel

    th = ", ".join(f"{k}={v}" for k, v in accel.get_thresholds().items())
    mode = accel.get_current_mode().value
    return [f"puredl accel: mode={mode}; thresholds ({accel.threshold_source()}): {th}", _oracle_header()]


@pytest.fixture
def fixed_placement():
    """The same backend for each op in every run of a test that compares runs bit for bit: AUTO's
    cost model places ops by observed times (a busy machine moved one once), and pure and torch
    round differently; the thresholds alone decide here."""
    from puredl import accel

    with accel.using(adaptive=False):
        yield


@pytest.fixture(autouse=True)
def _restore_accel_settings():
    """Undo a test's changes to the acceleration mode, thresholds, logging and AUTO's cost model."""
    from puredl import accel

    saved = (accel.get_current_mode(), accel.get_thresholds(), accel.threshold_source(), accel.is_logging())
    adaptive = accel.is_adaptive()
    accel.reset_adaptive()  # AUTO's observed costs do not leak from one test into the next
    yield
    accel.set_adaptive(adaptive)
    accel.reset_adaptive()
    accel.restore(saved[:3])
    if accel.is_logging() != saved[3]:
        accel.enable_logging(saved[3])


# ----------------------------------------------------------------------------- the torch oracle
# Where torch is not installed, a comparison with it skips (oracle.py's stand-in, or a suite's
# pytest.importorskip) naming the Python and why (CI passes PUREDL_NO_ORACLE_REASON).


def _oracle_header() -> str:
    try:
        import torch
    except ImportError:
        return f"puredl oracle: NONE, comparisons with torch skip ({no_oracle_reason()})"
    return f"puredl oracle: torch {torch.__version__}"


def _reword_torch_skip(report) -> None:
    """Replace importorskip's "could not import 'torch'" in a skip report with the reason above."""
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and "could not import 'torch'" in str(longrepr[2]):
        report.longrepr = (longrepr[0], longrepr[1], f"Skipped: {no_oracle_reason()}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _reword_torch_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _reword_torch_skip(outcome.get_result())
