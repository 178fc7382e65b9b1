"""``finfo`` and ``iinfo``: the numeric limits of each dtype, with torch's attribute names.

>>> from puredl import dtypes as dt
>>> finfo(dt.float16).max, finfo(dt.bfloat16).eps, iinfo(dt.int8).min
(65504.0, 0.0078125, -128)
"""

from __future__ import annotations

from puredl import dtypes as dt

# bits, significand bits (without the implicit one), exponent bits, decimal digits of resolution
_FLOAT_FORMAT = {
    dt.float16: (16, 10, 5, 3),
    dt.bfloat16: (16, 7, 8, 2),
    dt.float32: (32, 23, 8, 6),
    dt.float64: (64, 52, 11, 15),
}


class finfo:  # noqa: N801 - torch's name
    """Limits of a floating point dtype (the default float dtype when none is given), as torch.finfo."""

    __slots__ = ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution", "dtype")

    def __init__(self, dtype: object = None):
        d = dt.get_default_dtype() if dtype is None else dt.as_dtype(dtype)
        if d not in _FLOAT_FORMAT:
            raise TypeError(f"finfo() requires a floating point input type, got {d!r}; use iinfo for it")
        bits, mant, exp, digits = _FLOAT_FORMAT[d]
        bias = (1 << (exp - 1)) - 1
        self.bits = bits
        self.eps = 2.0**-mant
        self.max = (2.0 - 2.0**-mant) * 2.0**bias
        self.min = -self.max
        self.tiny = self.smallest_normal = 2.0 ** (1 - bias)
        self.resolution = 10.0**-digits
        self.dtype = d.name

    def __repr__(self) -> str:
        return (
            f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, eps={self.eps:g}, "
            f"smallest_normal={self.smallest_normal:g}, tiny={self.tiny:g}, dtype={self.dtype})"
        )


class iinfo:  # noqa: N801 - torch's name
    """Limits of an integer dtype, as torch.iinfo."""

    __slots__ = ("bits", "max", "min", "dtype")

    def __init__(self, dtype: object):
        d = dt.as_dtype(dtype)
        if d.is_floating_point or d is dt.bool_:
            raise TypeError(f"iinfo() requires an integer input type, got {d!r}; use finfo for floats")
        self.bits = 8 * d.itemsize
        self.min = 0 if d is dt.uint8 else -(1 << (self.bits - 1))
        self.max = (1 << self.bits) - 1 if d is dt.uint8 else (1 << (self.bits - 1)) - 1
        self.dtype = d.name

    def __repr__(self) -> str:
        return f"iinfo(min={self.min:g}, max={self.max:g}, dtype={self.dtype})"
