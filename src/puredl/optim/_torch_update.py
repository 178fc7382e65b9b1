"""Optimizer updates written straight onto torch storage (parameters on the torch backend, CPU or CUDA).

A step through puredl tensor ops costs one wrapped op per term (six to ten per parameter);
these functions run torch's own in-place update, term for term as ``torch.optim`` writes it
(so results match torch bit for bit), with no puredl op in between. They return False when a
tensor is on neither torch nor (for torch's CPU backend) pure storage, or sits on another
device, and the caller falls back to tensor ops. Pure storage is updated through a zero-copy view.
"""

from __future__ import annotations

from puredl import dtypes as dt
from puredl.backends import pure as _pure
from puredl.tensor import Tensor, _wrap, bump_version


def update_backend(p: Tensor):
    """The torch backend to update ``p`` on (its gradient's, else its own), or None if neither is torch."""
    for be in (p.grad._be, p._be):
        if getattr(be, "NAME", None) == "torch":
            return be
    return None


def torch_storage(t: Tensor | None, be):
    """``t``'s storage as a torch tensor on backend ``be``: its own, or a zero-copy view of pure
    storage when ``be`` is torch's CPU backend (so in-place updates land in ``t``); else None."""
    if t is None:
        return None
    if t._be is be:
        return t._impl
    if t._be is _pure and be.DEVICE == "cpu" and t.dtype not in dt.NARROW:  # half storage: no zero-copy view
        from puredl import accel

        return accel.torch_impl(t)
    return None


def sgd(p: Tensor, state: dict, group: dict) -> bool:
    """torch.optim.SGD's single-tensor update of ``p`` in place; False if ``p`` is not on torch."""
    be = update_backend(p)
    if be is None:
        return False
    w, g = torch_storage(p, be), torch_storage(p.grad, be)
    if w is None or g is None or g.dtype != w.dtype:
        return False
    momentum = group["momentum"]
    buf_t = state.get("momentum_buffer")
    buf = torch_storage(buf_t, be)
    if momentum and buf_t is not None and buf is None:
        return False
    lr, wd = group["lr"], group["weight_decay"]
    if group["maximize"]:
        g = -g
    if wd:
        g = g.add(w, alpha=wd)
    if momentum:
        if buf is None:
            buf = g.clone()
            state["momentum_buffer"] = _wrap(buf, be)
        else:
            buf.mul_(momentum).add_(g, alpha=1.0 - group["dampening"])
        g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
    w.add_(g, alpha=-lr)
    bump_version(p)
    return True


def adam(p: Tensor, state: dict, group: dict, decoupled: bool, step_size: float, bc2_sqrt: float) -> bool:
    """torch.optim.Adam / AdamW's single-tensor update of ``p`` in place; False if not all on torch."""
    be = update_backend(p)
    if be is None:
        return False
    w, g = torch_storage(p, be), torch_storage(p.grad, be)
    m, v = torch_storage(state["exp_avg"], be), torch_storage(state["exp_avg_sq"], be)
    amsgrad = group["amsgrad"]
    vmax = torch_storage(state["max_exp_avg_sq"], be) if amsgrad else None
    if w is None or g is None or m is None or v is None or (amsgrad and vmax is None) or g.dtype != w.dtype:
        return False
    b1, b2 = group["betas"]
    lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
    if group["maximize"]:
        g = -g
    if wd:
        if decoupled:
            w.mul_(1.0 - lr * wd)
        else:
            g = g.add(w, alpha=wd)
    m.lerp_(g, 1.0 - b1)
    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
    if amsgrad:
        torch = _torch_module()
        torch.maximum(vmax, v, out=vmax)
        v = vmax
    denom = (v.sqrt() / bc2_sqrt).add_(eps)
    w.addcdiv_(m, denom, value=-step_size)
    bump_version(p)
    return True


def _torch_module():
    from puredl import accel

    return accel.torch_backend().torch
