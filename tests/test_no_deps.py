"""puredl works with the standard library alone: a subprocess that cannot see any installed package."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    # -I: ignore PYTHON* variables and the user site; -S: no site-packages at all
    prelude = f"import sys; sys.path.insert(0, {SRC!r})\n"
    # PUREDL_ACCEL=torch (one of CI's modes) cannot hold where torch is absent: run the default
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUREDL_")}
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(SRC),
        env=env,
    )


def test_import_and_compute_with_the_standard_library_only():
    proc = _run_isolated(
        """
        import importlib.util
        for name in ("torch", "numpy", "hypothesis", "pytest"):
            assert importlib.util.find_spec(name) is None, f"{name} is visible: the test is not isolated"

        import puredl as pd

        pd.manual_seed(0)
        x = pd.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        w = pd.randn(2, 3, requires_grad=True)
        y = (x @ w).relu().softmax(-1)[pd.tensor([1, 0])].log().mean() + x.t().sum(0).max()
        y.backward()
        assert x.grad.shape == (2, 2) and w.grad.shape == (2, 3)
        z = pd.where(x > 2, x, 0.0).exp().sum(1, keepdim=True) / pd.arange(1, 3).reshape(2, 1)
        print(repr(x.grad.detach()), z.tolist(), pd.zeros(2, dtype=pd.int64) + 1)

        with pd.no_grad():
            assert not (x * 2).requires_grad

        # only the standard library and puredl itself were imported
        third_party = sorted(
            name for name in sys.modules
            if name.split(".")[0] not in (*sys.stdlib_module_names, "puredl", "__main__")
        )
        assert not third_party, third_party
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
    assert "tensor([[" in proc.stdout


def test_optional_features_name_the_extra_to_install():
    proc = _run_isolated(
        """
        import puredl as pd
        try:
            pd.ones(2).to_torch()
        except Exception as e:
            print(type(e).__name__, e)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'puredl[torch]'" in proc.stdout, proc.stdout


def test_cli_help_works_with_the_standard_library_only():
    proc = _run_isolated(
        """
        import contextlib, io
        from puredl.cli import SUBCOMMANDS, main
        for argv in (["--help"], *[[name, "--help"] for name in SUBCOMMANDS]):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    main(argv)
                except SystemExit as e:
                    assert e.code == 0, (argv, e.code)
            assert "usage:" in out.getvalue(), argv
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
