"""``inference_mode``: torch's faster no_grad, which in puredl is exactly no_grad.

>>> import puredl as pd
>>> x = pd.ones(2, requires_grad=True)
>>> with pd.inference_mode():
...     (x * 2).requires_grad
False
"""

from __future__ import annotations

import functools

from puredl.autograd import _GradMode

_inference_depth = 0


class inference_mode(_GradMode):  # noqa: N801 - torch's name
    """Context manager and decorator: no graph is recorded (``inference_mode(False)`` does nothing).

    torch also marks tensors made inside as "inference tensors" that cannot enter autograd
    later; puredl does not, so code that is correct under torch runs the same here.
    """

    def __new__(cls, mode=True):
        if callable(mode):  # bare @inference_mode, as torch allows
            return cls(True)(mode)
        return super().__new__(cls)

    def __init__(self, mode: bool = True):
        self.mode = bool(mode)
        self.enabled = not mode  # torch: inference_mode(False) turns grad mode on

    def __enter__(self):
        global _inference_depth
        _inference_depth += self.mode
        return super().__enter__()

    def __exit__(self, *exc):
        global _inference_depth
        _inference_depth -= self.mode
        return super().__exit__(*exc)

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(mode):
                return fn(*args, **kwargs)

        return wrapper


def is_inference_mode_enabled() -> bool:
    """True inside ``with inference_mode():``."""
    return _inference_depth > 0
