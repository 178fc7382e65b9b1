"""Every example in puredl's docstrings runs and prints what it says (docs that cannot rot).

Modules that need an optional extra which is not installed are skipped, by name.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import puredl

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(puredl.__path__, "puredl.") if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional extra (torch, transformers, ...) that is not installed
        pytest.skip(f"{name} needs {exc.name or exc}")
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
