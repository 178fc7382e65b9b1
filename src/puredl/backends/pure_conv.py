"""Pure kernels for the CNN family and top-k: im2col / col2im (``unfold`` / ``fold``) and ``topk``.

A convolution is ``im2col`` followed by the pure matmul fast path; pooling is ``im2col`` and a
reduction. Both kernels copy whole strided runs of a row at once (array slicing runs in C), so
the Python loop is over (image, channel, kernel offset, output row), never over pixels.
"""

from __future__ import annotations

import math
import operator
from array import array
from itertools import accumulate

from puredl.backends.pure import (
    PureArray,
    _as,
    _moved_last,
    binary,
    matmul,
    numel,
    permute,
    reduce_sum,
    reshape,
    values,
)


def _out_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _padded_planes(v, tc: str, planes: int, h: int, w: int, pads: tuple, pad_value) -> array:
    """Every (h, w) plane of ``v`` surrounded by ``pads`` = (top, bottom, left, right) of ``pad_value``."""
    pt, pb, pl, pr = pads
    if not (pt or pb or pl or pr):
        return v if isinstance(v, array) else array(tc, v)
    wp = w + pl + pr
    fill_row = array(tc, [pad_value]) * wp
    left, right = array(tc, [pad_value]) * pl, array(tc, [pad_value]) * pr
    out = array(tc)
    for p in range(planes):
        base = p * h * w
        out.extend(fill_row * pt)
        for r in range(h):
            out.extend(left)
            out.extend(v[base + r * w : base + (r + 1) * w])
            out.extend(right)
        out.extend(fill_row * pb)
    return out


def im2col(
    a: PureArray, kernel: tuple, stride: tuple, pads: tuple, dilation: tuple, pad_value=0.0
) -> PureArray:
    """(N, C, H, W) -> (N, C*kh*kw, OH*OW): every kernel window as a column (torch's ``unfold``)."""
    n, c, h, w = a.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    tc = a.buf.typecode
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    oh, ow = _out_size(hp, kh, sh, dh), _out_size(wp, kw, sw, dw)
    if oh <= 0 or ow <= 0:
        raise ValueError(
            f"unfold: kernel {kernel} (dilation {dilation}) is larger than the padded input ({hp}, {wp})"
        )
    src = _padded_planes(values(a), tc, n * c, h, w, pads, pad_value)
    out = array(tc)
    span = (ow - 1) * sw + 1
    plane = hp * wp
    for p in range(n * c):
        base = p * plane
        for i in range(kh):
            for j in range(kw):
                first = base + i * dh * wp + j * dw
                for r in range(oh):
                    start = first + r * sh * wp
                    out.extend(src[start : start + span : sw])
    return _as(a.dtype, PureArray(out, (n, c * kh * kw, oh * ow)))


def col2im(
    cols: PureArray, shape: tuple, kernel: tuple, stride: tuple, pads: tuple, dilation: tuple
) -> PureArray:
    """The adjoint of ``im2col``: sum every column back into its window of an (N, C, H, W) array."""
    n, c, h, w = shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    pt, pb, pl, pr = pads
    tc = cols.buf.typecode
    hp, wp = h + pt + pb, w + pl + pr
    oh, ow = _out_size(hp, kh, sh, dh), _out_size(wp, kw, sw, dw)
    cv = values(cols)
    plane = hp * wp
    acc = array(tc, [0]) * (n * c * plane)
    span = (ow - 1) * sw + 1
    add = operator.add
    pos = 0
    for p in range(n * c):
        base = p * plane
        for i in range(kh):
            for j in range(kw):
                first = base + i * dh * wp + j * dw
                for r in range(oh):
                    start = first + r * sh * wp
                    seg = slice(start, start + span, sw)
                    acc[seg] = array(tc, map(add, acc[seg], cv[pos : pos + ow]))
                    pos += ow
    if not (pt or pb or pl or pr):
        return _as(cols.dtype, PureArray(acc, (n, c, h, w)))
    out = array(tc)
    for p in range(n * c):
        base = p * plane + pt * wp + pl
        for r in range(h):
            out.extend(acc[base + r * wp : base + r * wp + w])
    return _as(cols.dtype, PureArray(out, (n, c, h, w)))


def conv2d(
    x: PureArray, w: PureArray, b, stride: tuple, pads: tuple, dilation: tuple, groups: int
) -> PureArray:
    """(N, C, H, W) * (O, C/groups, kh, kw) -> (N, O, OH, OW): im2col, then one (grouped) matmul."""
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    dtype = x.dtype
    cols = im2col(x, (kh, kw), stride, pads, dilation)  # (N, C*kh*kw, L)
    k, length = cg * kh * kw, cols.shape[2]
    g = groups
    out = matmul(reshape(w, (g, o // g, k)), reshape(cols, (n, g, k, length)), dtype)  # (N, G, O/G, L)
    oh = _out_size(x.shape[2] + pads[0] + pads[1], kh, stride[0], dilation[0])
    out = reshape(out, (n, o, oh, length // oh))
    return out if b is None else binary("add", out, reshape(b, (1, o, 1, 1)), dtype)


def conv2d_backward(
    g: PureArray, x: PureArray, w: PureArray, stride: tuple, pads: tuple, dilation: tuple, groups: int
):
    """(grad of x, grad of w, grad of the bias) of ``conv2d``: a matmul each, then col2im for x."""
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    dtype = g.dtype
    k, length, gr = cg * kh * kw, g.shape[2] * g.shape[3], groups
    g4 = reshape(g, (n, gr, o // gr, length))
    w3 = reshape(w, (gr, o // gr, k))
    cols = reshape(im2col(x, (kh, kw), stride, pads, dilation), (n, gr, k, length))
    gcols = matmul(permute(w3, (0, 2, 1)), g4, dtype)  # (N, G, K, L)
    gx = col2im(reshape(gcols, (n, c * kh * kw, length)), x.shape, (kh, kw), stride, pads, dilation)
    gw = reduce_sum(matmul(g4, permute(cols, (0, 1, 3, 2)), dtype), (0,), False, dtype)  # (G, O/G, K)
    gb = reduce_sum(g, (0, 2, 3), False, dtype)
    return gx, reshape(gw, w.shape), gb


def topk(a: PureArray, k: int, dim: int, largest: bool, sorted_: bool) -> tuple:
    """(values, int64 indices) of the ``k`` largest (or smallest) along ``dim``; NaN counts as largest."""
    vs, kept, group = _moved_last(a, (dim,))
    isnan = math.isnan
    out_v, out_i = [], []
    for s in range(0, len(vs), max(group, 1)):  # an empty dim has no rows
        row = vs[s : s + group]
        order = sorted(range(group), key=lambda j: (isnan(row[j]), row[j]), reverse=largest)[:k]
        out_i.extend(order)
        out_v.extend([row[j] for j in order])
    vals = _moved_back(_as(a.dtype, PureArray(array(a.buf.typecode, out_v), kept + (k,))), dim)
    idx = _moved_back(PureArray(array("q", out_i), kept + (k,)), dim)
    return vals, idx


def _moved_back(moved: PureArray, dim: int) -> PureArray:
    """Undo ``_moved_last(a, (dim,))``: the last dimension of ``moved`` goes back to ``dim``."""
    nd = len(moved.shape)
    order = [d for d in range(nd) if d != dim] + [dim]
    inverse = [0] * nd
    for pos, d in enumerate(order):
        inverse[d] = pos
    return permute(moved, tuple(inverse))


def cumsum(a: PureArray, dim: int) -> PureArray:
    """Running sums along ``dim``, accumulated in Python numbers (double, as torch's CPU kernel
    accumulates float32) and rounded once per element."""
    vs, kept, group = _moved_last(a, (dim,))
    out = array(a.buf.typecode)
    for s in range(0, len(vs), max(group, 1)):  # an empty dim has no rows
        out.extend(accumulate(vs[s : s + group]))
    return _moved_back(_as(a.dtype, PureArray(out, kept + (group,))), dim)


def sort(a: PureArray, dim: int, descending: bool, stable: bool) -> tuple:
    """(values, int64 indices) along ``dim`` in order; Python's sort is stable, so ``stable`` holds always."""
    return topk(a, a.shape[dim], dim, descending, True)


__all__ = ["col2im", "conv2d", "conv2d_backward", "cumsum", "im2col", "numel", "sort", "topk"]
