"""Run one compat program with real torch or with puredl standing in for it, and print its RESULT.

``python run_program.py torch|puredl PROGRAM.py``: for ``puredl``, the program's ``import torch``
(and ``torch.nn``, ``from torch.utils.data import ...``) resolve to puredl's modules, exactly as if
each import line had been changed to ``import puredl as torch``. The program leaves a JSON-able
``RESULT``.
"""

from __future__ import annotations

import builtins
import json
import runpy
import sys


def _puredl_import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
    """``__import__`` for the program alone: ``torch`` and ``torch.x.y`` resolve to puredl's."""
    if level == 0 and (name == "torch" or name.startswith("torch.")):
        name = "puredl" + name[len("torch") :]
    return builtins.__import__(name, globals, locals, fromlist, level)


def main() -> None:
    lib, program = sys.argv[1], sys.argv[2]
    init: dict = {}
    if lib == "puredl":
        # only the program's own imports are redirected (its builtins); puredl itself may still
        # import the real torch, as it does in PUREDL_ACCEL=torch mode
        init["__builtins__"] = {**vars(builtins), "__import__": _puredl_import}
    elif lib != "torch":
        raise SystemExit(f"unknown library {lib!r}")
    names = runpy.run_path(program, init_globals=init, run_name="__main__")
    used = names["torch"].__name__
    if used != lib:  # the comparison means nothing if the program ran on the wrong library
        raise SystemExit(f"{program} ran on {used}, not {lib}")
    print("RESULT " + json.dumps(names["RESULT"]))


if __name__ == "__main__":
    main()
