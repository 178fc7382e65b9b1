"""The dispatch decision: which backend runs an op, with its inputs' storage there.

Every op asks ``select(op, category, work, tensors)`` for a backend and its inputs' storage on
that backend. ``work`` is the op's size: output elements for elementwise, activation, reduction
(input elements) and shape ops, multiply-adds for matmul. AUTO sends an op to torch when
``work`` plus the cost of moving torch-resident inputs back to pure reaches the category's
threshold, so data stays where it was last computed. CUDA tensors always run on their device.

``select`` is on every op's hot path: PURE mode with pure inputs returns after one loop. AUTO
also keeps a cost model (``puredl.adaptive``): one call in 32-95 is timed (more of dear ops),
and where the other backend observes clearly cheaper on this machine now (one core busy stalls
torch's thread pool), the observed choice overrides the threshold; between timed calls AUTO
pays one countdown and one lookup.
"""

from __future__ import annotations

import sys

from puredl import adaptive as _adaptive
from puredl import adaptive_threads as _adaptive_threads
from puredl.accel import settings as _settings
from puredl.accel import stats as _st
from puredl.accel.availability import on_torch_loaded
from puredl.accel.settings import AccelMode, _move_elem, _move_fixed, _thresholds
from puredl.accel.stats import count_pure as _count_pure
from puredl.accel.stats import count_torch as _count_torch
from puredl.accel.stats import format_work as _human
from puredl.backends import pure as _pure
from puredl.backends.contract import COMPUTE_KERNELS

# fast copies of the settings (refreshed by _refresh on every change): the per-op path reads these
_mode = AccelMode.PURE
_logging = False
_adaptive_on = True
_fast = True  # PURE mode and no logging: the hot path in select() returns at once
_fast_auto = False  # AUTO mode and no logging
_fast_torch = False  # TORCH mode and no logging
_tb = None  # the torch backend once loaded


def _refresh() -> None:
    global _mode, _logging, _adaptive_on, _fast, _fast_auto, _fast_torch, _sample_in
    _mode, _logging, _adaptive_on = _settings._mode, _settings._logging, _settings._adaptive_on
    _fast = _mode is AccelMode.PURE and not _logging
    _fast_auto = _mode is AccelMode.AUTO and not _logging
    _fast_torch = _mode is AccelMode.TORCH and not _logging
    if _timer is not None:  # a timed call due in AUTO must not time a kernel of another mode
        _drop_timer()
    _model.activate(_mode is AccelMode.AUTO and _adaptive_on)  # AUTO's torch threads: AUTO only
    if _sample_in > 1 << 40:  # parked while there was nothing to time: look again
        _sample_in = 1


def _torch_loaded(tb) -> None:
    global _tb, _sample_in
    tb.on_kernel_failure = torch_kernel_failed  # the fallback policy lives here, not in the backend
    _tb = tb
    _sample_in = 1  # AUTO may time calls from now on


_SYMBOL = {"matmul": "@", "add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def _describe(op: str, tensors: tuple) -> str:
    shapes = ["x".join(map(str, t.shape)) or "scalar" for t in tensors]
    if op == "linear" and len(shapes) >= 2:  # x @ W.T (+ b)
        return f"linear {shapes[0]} @ ({shapes[1]}).T" + (f" + {shapes[2]}" if len(shapes) == 3 else "")
    sym = _SYMBOL.get(op)
    if sym and len(shapes) == 2:
        return f"{op} {shapes[0]} {sym} {shapes[1]}"
    return f"{op} {', '.join(shapes)}"


def _log(op: str, tensors: tuple, backend: str, reason: str) -> None:
    print(f"[accel] {_describe(op, tensors)} -> {backend} ({reason})", file=_settings.log_file())


# =========================================================================== storage across backends


class DeviceMismatchError(RuntimeError):
    """An op got tensors on different devices (for example cpu and cuda:0)."""


def torch_impl(t) -> object:
    """``t``'s storage as a CPU torch tensor: the impl itself, or a zero-copy view of pure storage."""
    be = t._be
    if be is not _pure:
        return t._impl
    impl = t._impl
    try:
        cached = t._alt
    except AttributeError:
        cached = None
    if cached is not None and cached[0] is impl:
        return cached[1]
    view = _tb.from_pure(impl)
    if t.dtype.itemsize == 2 and t.dtype.typecode == "f":
        return view  # float16/bfloat16: a converted copy, stale after an in-place change: not cached
    t._alt = (impl, view)  # shares memory, so it stays valid as long as the impl does
    return view


def pure_impl(t) -> _pure.PureArray:
    """``t``'s storage on the pure backend (a copy when it lives in torch)."""
    return t._impl if t._be is _pure else _tb.to_pure(t._impl)


def _move_cost(t, category: str) -> float:
    """Work units that a torch-resident input adds to running on pure (copy out + the view saved)."""
    n = 1
    for s in t.shape:
        n *= s
    return _move_fixed[category] + n * _move_elem[category]


# =========================================================================== the decision

_last_op = ""
# AUTO's cost model (puredl.adaptive): calls until the next timed one, and the model itself.
# Only AUTO touches them; PURE and TORCH never read them.
_sample_in = 1
_model = _adaptive.CostModel(threads=_adaptive_threads.ThreadPolicy())
_overridden = _model.by_op  # ops where observed costs overrule a threshold
_PURE_FIXED_S = 4e-6  # a pure op's cost before its first element (priors of the cost model only)


def select(op: str, category: str, work: int, tensors: tuple):
    """Pick the backend for one op and return ``(backend, [impl of each tensor on it])``."""
    if _fast:
        for t in tensors:
            if t._be is not _pure:
                break
        else:
            _count_pure(op)
            return _pure, [t._impl for t in tensors]
    elif _fast_auto:
        global _sample_in
        _sample_in -= 1
        # the common case costs this countdown and one lookup: no timed call due, no observed
        # override for this op (or not for this size)
        if _sample_in > 0 and work < _thresholds[category]:
            ov = _overridden.get(op)
            if ov is None or (int(work).bit_length() >> 1, False) not in ov:  # adaptive.bucket
                for t in tensors:  # a small op on pure data: stay on pure
                    if t._be is not _pure:
                        break
                else:
                    _count_pure(op)
                    return _pure, [t._impl for t in tensors]
    elif _fast_torch:  # TORCH mode, data already on torch's CPU backend
        tcpu = _tb
        for t in tensors:
            if t._be is not tcpu:
                break
        else:
            global _last_op
            _last_op = op
            _count_torch(op)
            return tcpu, [t._impl for t in tensors]
    return _select(op, category, work, tensors)


def _select(op: str, category: str, work: int, tensors: tuple):
    global _last_op, _sample_in
    _last_op = op
    tcpu = _tb
    mode = _mode
    adapt = False
    if mode is AccelMode.AUTO:
        if _timer is not None:  # the last timed call never reached a kernel on its backend
            _drop_timer()
        if tcpu is None or not _adaptive_on:
            _sample_in = 1 << 62  # nothing to time: keep select()'s countdown off this path
        else:
            if _logging:  # select() counts down only on the fast path
                _sample_in -= 1
            adapt = _sample_in <= 0 or op in _overridden
    if (
        not _logging and not adapt
    ):  # the common cases first: AUTO below threshold on pure data, TORCH on torch data
        if mode is AccelMode.AUTO:
            for t in tensors:
                if t._be is not _pure:
                    break
            else:
                if work < _thresholds[category] or tcpu is None:
                    _count_pure(op)
                    return _pure, [t._impl for t in tensors]
        elif mode is AccelMode.TORCH:
            for t in tensors:
                if t._be is not tcpu:
                    break
            else:
                _count_torch(op)
                return tcpu, [t._impl for t in tensors]
    device_be = None
    n_torch = 0
    for t in tensors:
        be = t._be
        if be is _pure:
            continue
        if be is tcpu:
            n_torch += 1
        elif device_be is None:
            device_be = be
        elif be is not device_be:
            raise DeviceMismatchError(
                f"{op}: expected all tensors on the same device, got {device_be.DEVICE} and {be.DEVICE}"
            )
    if device_be is not None:
        return _on_device(op, device_be, tensors)
    reason = ""
    if mode is AccelMode.TORCH:
        use_torch, reason = True, "mode torch"
    elif mode is AccelMode.PURE:
        use_torch, reason = False, "mode pure"
    elif tcpu is None:
        use_torch, reason = False, "auto: torch not installed"
    else:
        limit = _thresholds[category]
        move = 0.0
        if n_torch:
            for t in tensors:
                if t._be is tcpu:
                    move += _move_cost(t, category)
            use_torch = work + move >= limit
            if _logging:
                cmp = ">=" if use_torch else "<"
                reason = f"{_human(work)} + {_human(move)} to move off torch {cmp} {_human(limit)}"
        else:
            use_torch = work >= limit
            if _logging:
                reason = f"{_human(work)} {'>=' if use_torch else '<'} {_human(limit)}"
        if adapt:
            key = (op, _adaptive.bucket(work), n_torch > 0)
            prior = use_torch
            use_torch = _model.decide(key, prior)
            if use_torch is not prior and _logging:
                reason = f"observed cheaper than the threshold's choice; {reason}"
            if _sample_in <= 0:  # a timed call
                unit = _settings._costs["pure_unit_s"][category]
                prior_pure = _PURE_FIXED_S + (work + move) * unit
                prior_torch = _PURE_FIXED_S + limit * unit  # equal costs at the threshold
                explore, _sample_in = _model.plan(key, use_torch, prior_pure, prior_torch)
                if explore:
                    use_torch = not use_torch
                    _st._stats.explored_count += 1
                    if _logging:
                        reason = f"exploring: timing the other backend; {reason}"
                _start_timer(tcpu if use_torch else _pure, key, op, work, use_torch, prior)
    if _logging:
        _log(op, tensors, "torch" if use_torch else "pure", reason)
    if use_torch:
        _count_torch(op)
        if n_torch == len(tensors):
            return tcpu, [t._impl for t in tensors]
        return tcpu, [torch_impl(t) for t in tensors]
    _count_pure(op)
    if n_torch:
        return _pure, [pure_impl(t) for t in tensors]
    return _pure, [t._impl for t in tensors]


# ---- timing one call of AUTO: the chosen backend's compute kernels are swapped, for that one
# call, for versions that read the clock and put the originals back. The op calls the kernel
# itself (accel does not), so this is how accel sees when it returns; PURE and TORCH never pay.

_timer = None  # (backend, {kernel: original}, key, op, work, use_torch, prior, start) while one is due


_kernel_of: dict[str, str] = {}  # op -> the kernel its last timed call ran: swap only that one


def _start_timer(be, key: tuple, op: str, work: float, use_torch: bool, prior: bool) -> None:
    global _timer
    known = _kernel_of.get(op)
    names = (known,) if known is not None else COMPUTE_KERNELS
    originals = {}
    for name in names:
        timed = _TIMED.get((be, name))
        if timed is None:
            timed = _TIMED[(be, name)] = _timed_kernel(be, name)
        fn = getattr(be, name)
        if fn is timed:  # a stand-in left behind: never take it for the original
            fn = _ORIGINAL[(be, name)]
        originals[name] = _ORIGINAL[(be, name)] = fn
        setattr(be, name, timed)
    _timer = (be, originals, key, op, work, use_torch, prior, _model.clock())


def _stop_timer():
    global _timer
    timer = _timer
    _timer = None
    if timer is not None:
        be, originals = timer[0], timer[1]
        for name, fn in originals.items():
            setattr(be, name, fn)
    return timer


def _put_back_every_kernel() -> None:
    """Every stand-in still on a backend replaced by what it stood in for."""
    _stop_timer()
    for (be, name), timed in _TIMED.items():
        if getattr(be, name) is timed:
            setattr(be, name, _ORIGINAL[(be, name)])


def _drop_timer() -> None:
    timer = _stop_timer()
    if timer is not None:
        _model.drop(timer[2])
        _kernel_of.pop(timer[3], None)  # the op ran another kernel (add of a scalar): swap them all


def _timed_kernel(be, name: str):
    def timed(*args):
        timer = _stop_timer()  # originals back first: a kernel calling another is not timed twice
        if timer is None or timer[0] is not be:  # another thread took the timed call: just run
            fn = getattr(be, name)
            return (_ORIGINAL[(be, name)] if fn is timed else fn)(*args)
        result = timer[1][name](*args)
        _observe(timer, _model.clock() - timer[7])
        _kernel_of[timer[3]] = name
        return result

    timed.__name__ = name
    return timed


_TIMED: dict[tuple, object] = {}  # (backend, kernel) -> its timed stand-in, made on first use
_ORIGINAL: dict[tuple, object] = {}  # (backend, kernel) -> what the stand-in last replaced


def _observe(timer, seconds: float) -> None:
    _, _, key, op, work, use_torch, prior, _ = timer
    stats = _st._stats
    stats.timed_count += 1
    move = _model.observe(key, op, work, use_torch, seconds, prior)
    if move is not None:
        stats.moves.append(move)
        if _logging:
            print(f"[accel] {move}", file=_settings.log_file())


def adaptive_model() -> _adaptive.CostModel:
    """AUTO's cost model (its keys, recent timings and overrides: ``adaptive_model().table()``)."""
    return _model


def reset_adaptive(model: _adaptive.CostModel | None = None) -> None:
    """Forget what AUTO observed (or start from ``model``, e.g. one with a test clock)."""
    global _model, _overridden, _sample_in
    _put_back_every_kernel()
    _model.activate(False)  # torch's own thread count back
    _model = model if model is not None else _adaptive.CostModel(threads=_adaptive_threads.ThreadPolicy())
    _overridden = _model.by_op
    _model.activate(_mode is AccelMode.AUTO and _adaptive_on)
    _sample_in = 1


def _on_device(op: str, be, tensors: tuple):
    """Every input on ``be``'s device; 0-d CPU tensors come along (as torch allows for scalars)."""
    impls = []
    for t in tensors:
        if t._be is be:
            impls.append(t._impl)
        elif t.shape == ():
            impls.append(torch_impl(t).to(be.DEVICE))
        else:
            raise DeviceMismatchError(
                f"{op}: expected all tensors on the same device, got {t.device} and {be.DEVICE}; "
                f"move one with .to({be.DEVICE!r}) or .to('cpu')"
            )
    if _logging:
        _log(op, tensors, "torch", f"on {be.DEVICE}")
    _count_torch(op)
    return be, impls


# =========================================================================== fallback

_fallback_logged: set = set()


def torch_kernel_failed(kernel: str, args: tuple, exc: Exception):
    """Called by a torch kernel that raised: AUTO retries on pure; other modes re-raise with context."""
    op = _last_op or kernel
    if _mode is not AccelMode.AUTO:
        where = f"kernel {kernel}, {_describe_args(args)}, mode {_mode.value}"
        msg = f"torch backend failed in {op} ({where}): {exc}"
        try:
            err = type(exc)(msg)
        except Exception:  # an exception type that wants other arguments
            err = RuntimeError(msg)
        raise err from exc
    tb = _tb
    dev = "cpu"
    pure_args = []
    for a in args:
        if isinstance(a, tb.torch.Tensor):
            dev = tb.device(a)
            pure_args.append(tb.to_pure(a))
        elif isinstance(a, list):
            pure_args.append([tb.to_pure(x) if isinstance(x, tb.torch.Tensor) else x for x in a])
        else:
            pure_args.append(a)
    result = getattr(_pure, kernel)(*pure_args)  # a user error raises here, with pure's message
    _st.uncount_torch(op)
    _st.count_fallback(op)
    if op not in _fallback_logged:
        _fallback_logged.add(op)
        print(
            f"[accel] fallback: {op} failed on torch ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "ran on pure instead (logged once per op)",
            file=sys.stderr,
        )
    if isinstance(result, tuple):  # arrays go back to torch; Python scalars stay as they are
        return tuple(tb.from_pure(r, dev) if isinstance(r, _pure.PureArray) else r for r in result)
    return tb.from_pure(result, dev) if isinstance(result, _pure.PureArray) else result


def _describe_args(args: tuple) -> str:
    parts = []
    for a in args:
        shape = getattr(a, "shape", None)
        if shape is not None and not isinstance(a, _pure.PureArray):
            parts.append(f"{str(a.dtype).replace('torch.', '')}{list(shape)} on {_tb.device(a)}")
        elif isinstance(a, list) and a and hasattr(a[0], "shape"):
            parts.append(f"{len(a)} tensors")
    return ", ".join(parts) or "no tensor arguments"


_refresh()
_settings.on_change(_refresh)
on_torch_loaded(_torch_loaded)
