"""The torch oracle: real torch where it is installed, else a stand-in whose every use skips the test.

So a suite that compares with torch still runs its torch-free tests on a Python without torch
(CI's extra Pythons), and each comparison skips with the reason instead of passing silently.
"""

from __future__ import annotations

import os
import sys

import pytest


def no_oracle_reason() -> str:
    """Why comparisons skip here: the Python, and the reason CI gives (PUREDL_NO_ORACLE_REASON)."""
    why = os.environ.get("PUREDL_NO_ORACLE_REASON") or "torch is not installed"
    return f"torch oracle not installed for Python {sys.version_info[0]}.{sys.version_info[1]}: {why}"


def _skip():
    # allowed at module level too: a module that uses torch while importing skips as a whole
    raise pytest.skip.Exception(no_oracle_reason(), allow_module_level=True)


class MissingTorch:
    """Stands in for the torch module: any attribute skips the test (or module) that asked for it."""

    def __getattr__(self, name: str):
        if name.startswith("_") or name == "pytestmark":  # pytest's collection looks these up
            raise AttributeError(name)
        _skip()


class MissingTable(dict):
    """Stands in for a table keyed by torch objects: any lookup skips."""

    def __getitem__(self, key):
        _skip()

    def get(self, key, default=None):
        _skip()

    def __contains__(self, key) -> bool:
        _skip()


try:
    import torch
except ImportError:
    torch = MissingTorch()

HAVE_TORCH = not isinstance(torch, MissingTorch)
