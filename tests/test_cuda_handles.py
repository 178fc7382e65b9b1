"""Owner objects: idempotent close, `with`, closed-use errors, cleanup order, finalize at GC and at exit."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from puredl import cuda
from puredl.cuda.testing import FakeDevice, FakeRuntime, cudaError_t, use_fake

RELEASES = ("cudaFree", "cudaFreeHost", "cudaStreamDestroy", "cudaEventDestroy")


@pytest.fixture
def fake():
    with use_fake(FakeRuntime([FakeDevice("Fake A"), FakeDevice("Fake B")])) as installed:
        yield installed


def released(fake):
    return [name for name in fake.names() if name in RELEASES]


def make_all():
    return [cuda.Stream(), cuda.Event(), cuda.DeviceMemory(64), cuda.HostMemory(64)]


def test_close_releases_once_and_is_idempotent(fake):
    objects = make_all()
    assert fake.live() == {"device_memory": 1, "host_memory": 1, "streams": 1, "events": 1}
    for obj in objects:
        assert not obj.closed
        obj.close()
        obj.close()
        assert obj.closed
    assert fake.live() == {"device_memory": 0, "host_memory": 0, "streams": 0, "events": 0}
    assert sorted(released(fake)) == sorted(RELEASES)  # each exactly once


def test_with_blocks_release_in_reverse_order(fake):
    with cuda.Stream() as s, cuda.Event() as e, cuda.DeviceMemory(8) as m, cuda.HostMemory(8) as h:
        assert fake.live()["device_memory"] == 1
    assert released(fake) == ["cudaFreeHost", "cudaFree", "cudaEventDestroy", "cudaStreamDestroy"]
    assert all(obj.closed for obj in (s, e, m, h))


def test_an_exception_in_the_block_still_releases_and_propagates(fake):
    with pytest.raises(KeyError, match="boom"):
        with cuda.DeviceMemory(8), cuda.Stream():
            raise KeyError("boom")
    assert released(fake) == ["cudaStreamDestroy", "cudaFree"]


@pytest.mark.parametrize(
    ("make", "use", "action"),
    [
        (lambda: cuda.Stream(), lambda s: s.synchronize(), "synchronize"),
        (lambda: cuda.Stream(), lambda s: s.query(), "query"),
        (lambda: cuda.Event(), lambda e: e.record(), "record"),
        (lambda: cuda.Event(), lambda e: e.synchronize(), "synchronize"),
        (lambda: cuda.DeviceMemory(8), lambda m: m.memset(0), "memset"),
        (lambda: cuda.DeviceMemory(8), lambda m: m.copy_to_host(), "copy from it"),
        (lambda: cuda.DeviceMemory(8), lambda m: m.copy_from_host(b"x"), "copy into it"),
        (lambda: cuda.HostMemory(8), lambda h: h.read(), "read"),
        (lambda: cuda.HostMemory(8), lambda h: h.view(), "view"),
        (lambda: cuda.DeviceMemory(8), lambda m: m.__enter__(), "enter a `with` block"),
    ],
)
def test_using_a_closed_object_raises_a_clear_error(fake, make, use, action):
    obj = make()
    obj.close()
    calls_before = len(fake.calls)
    with pytest.raises(cuda.ClosedHandleError) as info:
        use(obj)
    message = str(info.value)
    assert f"cannot {action}" in message and "closed" in message and type(obj).__name__ in message
    assert len(fake.calls) == calls_before  # refused before reaching CUDA


def test_closed_arguments_are_refused_too(fake):
    with cuda.DeviceMemory(8) as a, cuda.Stream() as s:
        b = cuda.DeviceMemory(8)
        b.close()
        with pytest.raises(cuda.ClosedHandleError, match="cannot copy into it"):
            a.copy_to(b)
        s2 = cuda.Stream()
        s2.close()
        with pytest.raises(cuda.ClosedHandleError):
            a.memset(0, stream=s2)
        start, end = cuda.Event(), cuda.Event()
        start.record(s)
        end.record(s)
        end.close()
        with pytest.raises(cuda.ClosedHandleError):
            start.elapsed_time(end)
        start.close()


def test_garbage_collection_releases_unclosed_objects(fake):
    objects = make_all()
    cycle = [objects[2]]
    cycle.append(cycle)  # the allocation also sits in a reference cycle
    del objects, cycle
    gc.collect()
    assert fake.live() == {"device_memory": 0, "host_memory": 0, "streams": 0, "events": 0}


def test_explicit_close_reports_a_failure_and_counts_as_closed(fake):
    mem = cuda.DeviceMemory(8)
    fake.fail("cudaFree", cudaError_t.cudaErrorIllegalAddress)
    with pytest.raises(cuda.CudaError, match="cudaFree.*cudaErrorIllegalAddress"):
        mem.close()
    assert mem.closed
    mem.close()  # no second attempt
    assert released(fake) == ["cudaFree"]


def test_garbage_collection_swallows_release_failures(fake, capsys):
    mem = cuda.DeviceMemory(8)
    fake.fail("cudaFree", cudaError_t.cudaErrorIllegalAddress)
    del mem
    gc.collect()
    assert released(fake) == ["cudaFree"]
    assert "Exception" not in capsys.readouterr().err


def test_memory_on_another_device_is_freed_on_that_device(fake):
    # The fake refuses to free an allocation unless its device is current.
    mem = cuda.DeviceMemory(16, device="cuda:1")
    assert mem.device == 1 and cuda.current_device() == 0
    mem.close()
    assert fake.live()["device_memory"] == 0
    assert cuda.current_device() == 0


def test_a_view_keeps_pinned_memory_alive(fake):
    host = cuda.HostMemory(4)
    view = host.view()
    view[:] = b"wxyz"
    del host
    gc.collect()
    assert fake.live()["host_memory"] == 1  # the view still points into it
    assert bytes(view) == b"wxyz"
    del view
    gc.collect()
    assert fake.live()["host_memory"] == 0


SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import atexit
    import weakref
    from puredl import cuda
    from puredl.cuda._binding import set_runtime
    from puredl.cuda.testing import FakeDevice, FakeRuntime

    fake = FakeRuntime([FakeDevice(), FakeDevice()])
    set_runtime(fake)
    RELEASES = ("cudaFree", "cudaFreeHost", "cudaStreamDestroy", "cudaEventDestroy")

    def report():
        print("released", [n for n in fake.names() if n in RELEASES])
        print("live", sorted(fake.live().items()))

    # A finalizer made before the objects': at exit finalizers run newest first, so this one runs
    # after theirs (whatever other module, torch included, registered exit hooks before us).
    weakref.finalize(fake, report)

    stream = cuda.Stream()
    event = cuda.Event()
    mem0 = cuda.DeviceMemory(64)
    mem1 = cuda.DeviceMemory(64, device=1)
    host = cuda.HostMemory(64)
    cycle = [mem0]
    cycle.append(cycle)
    if MODE == "unloading":
        # Runs before the finalizers: every release now fails as when the runtime is gone.
        atexit.register(lambda: setattr(fake, "unloading", True))
    print("created", sorted(fake.live().items()))
    """
)


@pytest.mark.parametrize("mode", ["normal", "unloading"])
def test_unclosed_objects_are_released_quietly_at_interpreter_exit(mode):
    code = f"MODE = {mode!r}\n" + SHUTDOWN_SCRIPT
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "created [('device_memory', 2), ('events', 1), ('host_memory', 1), ('streams', 1)]"
    if mode == "normal":
        # Newest first, each exactly once.
        assert (
            lines[1]
            == "released ['cudaFreeHost', 'cudaFree', 'cudaFree', 'cudaEventDestroy', 'cudaStreamDestroy']"
        )
        assert lines[2] == "live [('device_memory', 0), ('events', 0), ('host_memory', 0), ('streams', 0)]"
    else:
        # Every release was tried and failed without a word (device frees stop at cudaGetDevice).
        assert lines[1] == "released ['cudaFreeHost', 'cudaEventDestroy', 'cudaStreamDestroy']"
        assert lines[2] == "live [('device_memory', 2), ('events', 1), ('host_memory', 1), ('streams', 1)]"
