"""Run one compat program with real torch or with puredl standing in for it, and print its RESULT.

``python run_program.py torch|puredl PROGRAM.py``: for ``puredl``, ``import torch`` (and
``torch.nn``, ``torch.utils.data``, ...) resolve to puredl's modules, exactly as if each import
line had been changed to ``import puredl as torch``. The program leaves a JSON-able ``RESULT``.
"""

from __future__ import annotations

import json
import runpy
import sys

ALIASES = {
    "torch": "puredl",
    "torch.nn": "puredl.nn",
    "torch.nn.functional": "puredl.nn.functional",
    "torch.optim": "puredl.optim",
    "torch.utils": "puredl.utils",
    "torch.utils.data": "puredl.utils.data",
    "torch.autograd": "puredl.autograd",
}


def _stand_in_puredl() -> None:
    import importlib

    for name, target in ALIASES.items():
        sys.modules[name] = importlib.import_module(target)


def main() -> None:
    lib, program = sys.argv[1], sys.argv[2]
    if lib == "puredl":
        _stand_in_puredl()
    elif lib != "torch":
        raise SystemExit(f"unknown library {lib!r}")
    result = runpy.run_path(program, run_name="__main__")["RESULT"]
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
