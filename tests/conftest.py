"""Shared test settings and fixtures (keep small; append fixtures below)."""

from __future__ import annotations

import os
import sys

import pytest

# tests import the helper modules beside them (torch_ref, finetune_helpers)
sys.path.insert(0, os.path.dirname(__file__))

from hypothesis import HealthCheck, settings  # noqa: E402

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
