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
    _model.activate(_mode is AccelMode.AUTO and _adaptive_on)  # AUTO's torch threads: AUTO only
    if _sample_in > 1 << 40:  # parked while there was nothing to time: count down afresh
        # (not 1: a block with adaptive=False, in a benchmark's every round, would otherwise make
        # the next AUTO call a timed one each time, as if timing were part of its steady state)
        _sample_in = _model.next_gap()


def _torch_loaded(tb) -> None:
    global _tb, _sample_in
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


# =========================================================================== the door

# AUTO's cost model (puredl.adaptive): calls until the next timed one, and the model itself.
# Only AUTO touches them; PURE and TORCH never read them.
_sample_in = 1


def _new_model() -> _adaptive.CostModel:
    threads = _adaptive_threads.ThreadPolicy() if _adaptive_threads.ENABLED else None
    return _adaptive.CostModel(threads=threads)


_model = _new_model()
_overridden = _model.by_op  # ops where observed costs overrule a threshold
# ops with a size whose torch calls run on one thread (the thread policy's, when it has one)
_one_thread = _model.threads.by_op if _model.threads is not None else {}
_ONE_THREAD = ("one thread",)  # _decide's sample for an untimed call to run on one torch thread
_PURE_FIXED_S = 4e-6  # a pure op's cost before its first element (priors of the cost model only)


def run(op: str, category: str, work: int, tensors, kernel: str, head: tuple, *tail):
    """Run one op: choose its backend, call ``kernel(*head, *impls, *tail)`` there and return
    ``(backend, result)``; ``impls`` are the tensors' storage on that backend.

    The one door to the backends: it counts the call (``get_stats``), logs the decision
    (``enable_logging``), falls back to pure when a torch kernel fails in AUTO (other modes
    re-raise, naming the op, kernel and mode), and reads the clock around the calls AUTO's cost
    model samples. ``work`` is the op's size in its category's units (see ``select``).

    >>> import puredl as pd
    >>> from puredl import accel
    >>> with accel.using("pure"):  # (any mode: PURE runs it on pure)
    ...     be, out = run("add", "elementwise", 2, (pd.ones(2), pd.ones(2)), "binary", ("add",), pd.float32)
    >>> be.NAME, be.tolist(out)
    ('pure', [2.0, 2.0])
    """
    on_pure = _fast  # PURE, no logging: one loop, one count, the kernel
    if _fast_auto:
        global _sample_in
        _sample_in -= 1
        # the common case costs this countdown and one lookup: no timed call due, no observed
        # override for this op (or not for this size); then a small op on pure data stays on pure
        on_pure = (
            _sample_in > 0
            and work < _thresholds[category]
            and (
                op not in _overridden
                or (int(work).bit_length() >> 1, False) not in _overridden[op]  # adaptive.bucket
            )
        )
    if on_pure:
        for t in tensors:
            if t._be is not _pure:
                break
        else:
            stats = _st._stats  # (count_pure, inlined: the per-op path saves a call)
            stats.pure_count += 1
            row = stats.per_op.get(op)
            if row is None:
                row = stats.per_op[op] = [0, 0, 0]
            row[0] += 1
            # one or two tensors (nearly every op) without building a list: a list comprehension
            # is a function call of its own before Python 3.12
            n = len(tensors)
            if n == 1:
                return _pure, getattr(_pure, kernel)(*head, t._impl, *tail)
            if n == 2:
                a, b = tensors
                return _pure, getattr(_pure, kernel)(*head, a._impl, b._impl, *tail)
            if n == 3:
                a, b, c = tensors
                return _pure, getattr(_pure, kernel)(*head, a._impl, b._impl, c._impl, *tail)
            return _pure, getattr(_pure, kernel)(*head, *[t._impl for t in tensors], *tail)
    if _fast_torch:  # TORCH mode, data already on torch's CPU backend
        tcpu = _tb
        for t in tensors:
            if t._be is not tcpu:
                break
        else:
            _count_torch(op)
            try:
                return tcpu, getattr(tcpu, kernel)(*head, *[t._impl for t in tensors], *tail)
            except RuntimeError as exc:
                return _failed(op, tcpu, tensors, kernel, head, tail, exc)
    be, impls, sample = _decide(op, category, work, tensors)
    fn = getattr(be, kernel)
    try:
        if sample is None:
            return be, fn(*head, *impls, *tail)
        if sample is _ONE_THREAD:
            return be, _model.threads.one_thread(fn, *head, *impls, *tail)
        result = fn(*head, *impls, *tail)
    except RuntimeError as exc:
        if be is _pure:
            raise
        if sample is not None and sample is not _ONE_THREAD:
            _model.drop(sample[0])
        return _failed(op, be, tensors, kernel, head, tail, exc)
    _observe(sample, _model.clock() - sample[5])
    return be, result


def select(op: str, category: str, work: int, tensors):
    """Pick the backend for one op and return ``(backend, [impl of each tensor on it])``, counted
    and logged; the caller runs the kernels (for ops of several kernels; :func:`run` is the door).

    ``work`` is the op's size: output elements for elementwise, activation, reduction (input
    elements) and shape ops, multiply-adds for matmul.
    """
    if _fast:
        for t in tensors:
            if t._be is not _pure:
                break
        else:
            _count_pure(op)
            return _pure, [t._impl for t in tensors]
    elif _fast_auto:  # (no countdown: nothing to time here)
        if work < _thresholds[category] and op not in _overridden:
            for t in tensors:
                if t._be is not _pure:
                    break
            else:
                _count_pure(op)
                return _pure, [t._impl for t in tensors]
    elif _fast_torch:
        tcpu = _tb
        for t in tensors:
            if t._be is not tcpu:
                break
        else:
            _count_torch(op)
            return tcpu, [t._impl for t in tensors]
    be, impls, sample = _decide(op, category, work, tensors)
    if sample is not None and sample is not _ONE_THREAD:  # no kernel call to time here
        _model.drop(sample[0])
    return be, impls


def _decide(op: str, category: str, work: int, tensors):
    """``(backend, impls, sample)``: the choice, counted and logged; ``sample`` when AUTO times
    this call: ``(key, op, work, use_torch, prior, start)``."""
    global _sample_in
    tcpu = _tb
    mode = _mode
    adapt = False
    if mode is AccelMode.AUTO:
        if tcpu is None or not _adaptive_on:
            _sample_in = 1 << 62  # nothing to time: keep the door's countdown off this path
        else:
            if _logging:  # the door counts down only on its fast path
                _sample_in -= 1
            adapt = _sample_in <= 0 or op in _overridden or op in _one_thread
    if not _logging and not adapt:
        # the common cases first: AUTO below threshold on pure data, TORCH on torch data
        if mode is AccelMode.AUTO:
            for t in tensors:
                if t._be is not _pure:
                    break
            else:
                if work < _thresholds[category] or tcpu is None:
                    _count_pure(op)
                    return _pure, [t._impl for t in tensors], None
        elif mode is AccelMode.TORCH:
            for t in tensors:
                if t._be is not tcpu:
                    break
            else:
                _count_torch(op)
                return tcpu, [t._impl for t in tensors], None
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
        return _on_device(op, device_be, tensors) + (None,)
    reason = ""
    sample = None
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
                sample = (key, op, work, use_torch, prior, 0.0)
            elif use_torch and op in _one_thread and key[1:] in _one_thread[op]:
                sample = _ONE_THREAD
                if _logging:
                    reason = f"on one torch thread (its calls stalled on torch's threads); {reason}"
    if _logging:
        _log(op, tensors, "torch" if use_torch else "pure", reason)
    if sample is not None and sample is not _ONE_THREAD:
        # the clock starts before the inputs move: their cost is the choice's too
        sample = sample[:5] + (_model.clock(),)
    if use_torch:
        _count_torch(op)
        if n_torch == len(tensors):
            return tcpu, [t._impl for t in tensors], sample
        return tcpu, [torch_impl(t) for t in tensors], sample
    _count_pure(op)
    if n_torch:
        return _pure, [pure_impl(t) for t in tensors], sample
    return _pure, [t._impl for t in tensors], sample


def _observe(sample: tuple, seconds: float) -> None:
    key, op, work, use_torch, prior, _ = sample
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
    global _model, _overridden, _one_thread, _sample_in
    _model.activate(False)  # (a timed call under way puts torch's count back)
    _model = model if model is not None else _new_model()
    _overridden = _model.by_op
    _one_thread = _model.threads.by_op if _model.threads is not None else {}
    _model.activate(_mode is AccelMode.AUTO and _adaptive_on)
    _sample_in = 1


def _on_device(op: str, be, tensors) -> tuple:
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


# =========================================================================== in place and device moves


def run_inplace(op: str, tensors, kernel: str, head: tuple, *tail):
    """Run an in-place kernel: ``kernel(target, *head, *others, *tail)``; ``tensors`` is the target,
    one input it reads, then the buffers it also writes (setitem: target and value; sgd: parameter,
    gradient, momentum; adam: parameter, gradient, moments). It runs on the backend that holds the
    target: torch when a pure target meets torch inputs on the CPU, writing through zero-copy views
    of every pure buffer it writes; float16/bfloat16/int8 pure storage has no such view, so then pure
    runs it (on a pure target) or nothing does (a torch target: the result is False, and the caller
    takes its tensor-op path). Counted and logged as :func:`run`; a torch failure on a pure target
    falls back to pure in AUTO; returns the kernel's result.
    """
    target = tensors[0]
    be = target._be
    impls = None
    if be is _pure:
        for t in tensors:
            if t._be is not _pure:
                # a torch input on the CPU: torch writes through views of the pure buffers, unless
                # one has no view: then pure writes them, reading copies of the torch inputs
                if _views_for_writes(tensors):
                    be, impls = _tb, list(map(torch_impl, tensors))
                break
        if be is _pure:
            if _logging:
                _log(op, tensors, "pure", "in place, where the target lives")
            stats = _st._stats  # (count_pure, inlined)
            stats.pure_count += 1
            row = stats.per_op.get(op)
            if row is None:
                row = stats.per_op[op] = [0, 0, 0]
            row[0] += 1
            n = len(tensors)  # (no list for the common arities, as in run)
            if t._be is not _pure:  # torch inputs, read as pure copies
                out = getattr(_pure, kernel)(target._impl, *head, *[pure_impl(t) for t in tensors[1:]], *tail)
            elif n == 3:
                _, b, c = tensors
                out = getattr(_pure, kernel)(target._impl, *head, b._impl, c._impl, *tail)
            elif n == 2:
                out = getattr(_pure, kernel)(target._impl, *head, t._impl, *tail)
            else:
                others = [t._impl for t in tensors]
                out = getattr(_pure, kernel)(others.pop(0), *head, *others, *tail)
            if out is False:  # the kernel declined (nothing written): the caller's ops are counted
                _st.uncount(op, False)
            return out
    if impls is None:
        for t in tensors:
            if t._be is not be:  # a torch target and pure inputs: views, or copies of what is only read
                if not _views_for_writes(tensors):
                    return False  # a pure buffer to write that torch cannot reach
                impls = [t._impl if t._be is be else torch_impl(t) for t in tensors]
                break
        else:
            impls = [t._impl for t in tensors]
    if _logging:
        _log(op, tensors, "torch", f"in place, where the target lives ({be.DEVICE})")
    _count_torch(op)  # (once per parameter update, not per op: the call costs nothing that shows)
    try:
        if not head:  # (the optimizers' updates: no slicing)
            out = getattr(be, kernel)(*impls, *tail)
        else:
            out = getattr(be, kernel)(impls[0], *head, *impls[1:], *tail)
        if out is False:  # the kernel declined (nothing written): the caller's ops are counted
            _st.uncount(op, True)
        return out
    except RuntimeError as exc:
        if target._be is not _pure:
            _failed(op, be, tensors, kernel, head, tail, exc, fallback=False)
        _failed(op, be, tensors, kernel, head, tail, exc, fallback=_mode is AccelMode.AUTO)
        return getattr(_pure, kernel)(target._impl, *head, *[pure_impl(t) for t in tensors[1:]], *tail)


def _views_for_writes(tensors) -> bool:
    """Whether torch can write each pure buffer ``run_inplace`` writes (all but ``tensors[1]``)
    through a zero-copy view (float16/bfloat16/int8 pure storage has none)."""
    shares = _tb.shares_memory
    for t in (tensors[0], *tensors[2:]):
        if t._be is _pure and not shares(t._impl):
            return False
    return True


def move(t, target: str) -> tuple:
    """``(impl, backend)`` of ``t``'s data on device ``target`` ("cpu" or "cuda:N"), counted as
    the op "to" and logged; back on the CPU the data lands on pure in PURE mode, on torch otherwise."""
    from puredl.accel.availability import torch_backend

    tb = torch_backend()
    if target == "cpu":  # from a CUDA device
        impl = tb.to_device(t._impl, "cpu")
        if _mode is AccelMode.PURE:
            out, be = tb.to_pure(impl), _pure
        else:
            out, be = impl, tb
    else:
        out, be = tb.to_device(t._impl, target), tb.device_backend(target)
    if _logging:
        _log("to", (t,), be.NAME, f"a move from {t.device} to {target}")
    if be is _pure:
        _count_pure("to")
    else:
        _count_torch("to")
    return out, be


# =========================================================================== fallback

_fallback_logged: set = set()


def _failed(op: str, be, tensors, kernel: str, head: tuple, tail: tuple, exc: RuntimeError, fallback=None):
    """A torch kernel raised: AUTO runs it on pure (the result goes back to ``be``); other modes
    re-raise with the op, kernel and mode named. ``fallback=False``: re-raise; ``True``: only count
    and report the fallback (the caller runs pure)."""
    tb = _tb
    if fallback is False or (fallback is None and _mode is not AccelMode.AUTO):
        args = ", ".join(f"{t.dtype.name}{list(t.shape)} on {be.DEVICE}" for t in tensors)
        where = f"kernel {kernel}, {args or 'no tensor arguments'}, mode {_mode.value}"
        msg = f"torch backend failed in {op} ({where}): {exc}"
        try:
            err = type(exc)(msg)
        except Exception:  # an exception type that wants other arguments
            err = RuntimeError(msg)
        raise err from exc
    if fallback:
        _reported_fallback(op, exc)
        return None
    Tensor = tb.torch.Tensor

    def on_pure(args):
        return [tb.to_pure(a) if isinstance(a, Tensor) else a for a in args]

    # a user error raises here, with pure's message
    result = getattr(_pure, kernel)(*on_pure(head), *[pure_impl(t) for t in tensors], *on_pure(tail))
    _reported_fallback(op, exc)
    PureArray = _pure.PureArray
    if isinstance(result, tuple):  # arrays go back to torch; Python scalars stay as they are
        return be, tuple(be.from_pure(r) if isinstance(r, PureArray) else r for r in result)
    return be, be.from_pure(result) if isinstance(result, PureArray) else result


def _reported_fallback(op: str, exc: RuntimeError) -> None:
    _st.uncount_torch(op)
    _st.count_fallback(op)
    if op not in _fallback_logged:
        _fallback_logged.add(op)
        print(
            f"[accel] fallback: {op} failed on torch ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "ran on pure instead (logged once per op)",
            file=sys.stderr,
        )


_refresh()
_settings.on_change(_refresh)
on_torch_loaded(_torch_loaded)
