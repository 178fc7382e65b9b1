"""Storage for the dtypes array.array has no typecode of its own: float16, bfloat16 and int8.

float16 and bfloat16 live in float32 ('f') buffers and int8 in signed char ('b') buffers, like
float32 and bool; a buffer subclass tags them with their dtype (views share the buffer, so they
keep the tag). :func:`narrow` is the one place that makes such a buffer, and it stores only
values the dtype can hold, as torch computes them: a float result is rounded to float32 first
(torch's half kernels compute in float32), then to the nearest half (ties to even, overflow to
inf); int8 arithmetic wraps around (two's complement) as torch's does.

>>> from puredl import dtypes as dt
>>> list(narrow(dt.float16, [0.1, 70000.0, 1.0 + 2**-11]))
[0.0999755859375, inf, 1.0]
>>> list(narrow(dt.bfloat16, [0.1])), list(narrow(dt.int8, [127 + 1], wrap=True))
([0.10009765625], [-128])
"""

from __future__ import annotations

import math
import struct
from array import array

from puredl import dtypes as dt


class Float16Buffer(array):
    """An 'f' buffer whose values are all exactly representable in float16."""

    __slots__ = ()
    dtype = dt.float16


class BFloat16Buffer(array):
    """An 'f' buffer whose values are all exactly representable in bfloat16."""

    __slots__ = ()
    dtype = dt.bfloat16


class Int8Buffer(array):
    """A 'b' buffer of int8 values (a plain 'b' buffer is bool's)."""

    __slots__ = ()
    dtype = dt.int8


BUFFER = {dt.float16: Float16Buffer, dt.bfloat16: BFloat16Buffer, dt.int8: Int8Buffer}
_U32 = next(tc for tc in "IL" if array(tc).itemsize == 4)


def _half_one(x: float, _pack=struct.pack, _unpack=struct.unpack) -> float:
    try:
        return _unpack("e", _pack("e", x))[0]
    except OverflowError:  # beyond half's largest finite value after rounding: inf, as a C cast gives
        return math.copysign(math.inf, x)


def round_float16(f32: array) -> list | tuple:
    """float32 values rounded to the nearest float16 (ties to even), overflow to +-inf."""
    n = len(f32)
    try:
        return struct.unpack(f"{n}e", struct.pack(f"{n}e", *f32))
    except OverflowError:
        return [_half_one(x) for x in f32]


def round_bfloat16(f32: array) -> array:
    """float32 values rounded to the nearest bfloat16 (ties to even), as torch rounds them."""
    bits = array(_U32, f32.tobytes())
    out = array(
        _U32,
        [
            0x7FC00000  # NaN: torch's canonical bfloat16 NaN
            if (u & 0x7FFFFFFF) > 0x7F800000
            else (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
            for u in bits
        ],
    )
    return array("f", out.tobytes())


def narrow(dtype: dt.DType, values, wrap: bool = False) -> array:
    """A tagged buffer of ``dtype`` (float16, bfloat16 or int8) holding ``values`` as that dtype holds them.

    Floats are rounded (never refused); integers outside int8 raise OverflowError unless ``wrap``,
    which wraps them around like torch's int8 arithmetic.
    """
    cls = BUFFER[dtype]
    if dtype is dt.int8:
        if not wrap:
            return cls("b", values)
        values = values if isinstance(values, (list, array)) else list(values)
        try:
            return cls("b", values)
        except OverflowError:
            return cls("b", [(int(x) + 128) % 256 - 128 for x in values])
    f32 = values if isinstance(values, array) and values.typecode == "f" else array("f", values)
    if dtype is dt.float16:
        return cls("f", round_float16(f32))
    return cls("f", round_bfloat16(f32))
