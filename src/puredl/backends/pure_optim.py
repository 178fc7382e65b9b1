"""The pure backend's fused optimizer updates: one list comprehension per term over flat storage.

An optimizer step on a small model is dominated by per-op overhead; updating each parameter
with one comprehension over its flat buffer is several times cheaper than a chain of in-place
tensor ops. The kernels write the parameter and its state in place, term for term as
``torch.optim`` writes it, and return False (writing nothing) when a buffer is not one flat
contiguous run: the optimizer then takes its tensor-op path.
"""

from __future__ import annotations

import math
from array import array

from puredl.backends.pure import PureArray, is_contiguous, numel, values


def _flat(a: PureArray | None) -> array | None:
    """The ``array.array`` holding exactly ``a``'s elements in row-major order, or None."""
    if a is None or a.offset or len(a.buf) != numel(a.shape):
        return None
    if a._strides is not None and not is_contiguous(a):  # (row-major needs no call)
        return None
    if type(a.buf) is not array:  # float16/bfloat16/int8 (tagged): a raw write would skip the rounding
        return None
    return a.buf


def sgd_update(
    w: PureArray,
    g: PureArray,
    buf: PureArray | None,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    first: bool,
) -> bool:
    """torch.optim.SGD's single-tensor update of ``w`` (and its momentum buffer ``buf``, which
    takes the gradient itself when ``first``) in place; False when a buffer is not flat."""
    wb, bb = _flat(w), _flat(buf)
    if wb is None or (momentum and bb is None):
        return False
    g = values(g)
    if maximize:
        g = [-x for x in g]
    if weight_decay:
        g = [x + weight_decay * v for x, v in zip(g, wb)]
    if momentum:
        if first:
            bb[:] = array(bb.typecode, g)
        elif dampening == 0.0:
            bb[:] = array(bb.typecode, [momentum * b + x for b, x in zip(bb, g)])
        else:
            keep = 1.0 - dampening
            bb[:] = array(bb.typecode, [momentum * b + keep * x for b, x in zip(bb, g)])
        g = [x + momentum * b for x, b in zip(g, bb)] if nesterov else bb
    wb[:] = array(wb.typecode, [v - lr * x for v, x in zip(wb, g)])
    return True


def adam_update(
    w: PureArray,
    g: PureArray,
    m: PureArray,
    v: PureArray,
    vmax: PureArray | None,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
    step_size: float,
    bc2_sqrt: float,
) -> bool:
    """torch.optim.Adam / AdamW's single-tensor update of ``w``, its moments ``m``, ``v`` (and
    ``vmax`` for amsgrad) in place; False when a buffer is not flat."""
    wb, mb, vb, vmb = _flat(w), _flat(m), _flat(v), _flat(vmax)
    if wb is None or mb is None or vb is None or (vmax is not None and vmb is None):
        return False
    g = values(g)
    if maximize:
        g = [-x for x in g]
    if weight_decay:
        if decoupled:
            keep = 1.0 - lr * weight_decay
            wb[:] = array(wb.typecode, [x * keep for x in wb])
        else:
            g = [x + weight_decay * y for x, y in zip(g, wb)]
    tc = wb.typecode
    a1, a2 = 1.0 - beta1, 1.0 - beta2
    mb[:] = array(tc, [mi + a1 * (gi - mi) for mi, gi in zip(mb, g)])  # torch's lerp
    vb[:] = array(tc, [vi * beta2 + a2 * gi * gi for vi, gi in zip(vb, g)])
    if vmb is not None:
        vmb[:] = array(tc, [a if a >= b else b for a, b in zip(vmb, vb)])
        vb = vmb
    sqrt = math.sqrt
    wb[:] = array(tc, [x - step_size * mi / (sqrt(vi) / bc2_sqrt + eps) for x, mi, vi in zip(wb, mb, vb)])
    return True
