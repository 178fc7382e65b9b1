"""DeviceMemory, HostMemory, Stream and Event semantics on the fake runtime, checked byte by byte."""

from __future__ import annotations

import array

import pytest

from puredl import cuda
from puredl.cuda.testing import FakeDevice, FakeRuntime, use_fake

BANDWIDTH = 1e12  # bytes per second of the fake's virtual clock


@pytest.fixture
def fake():
    devices = [FakeDevice("Fake A", bandwidth=BANDWIDTH), FakeDevice("Fake B", bandwidth=BANDWIDTH)]
    with use_fake(FakeRuntime(devices)) as installed:
        yield installed


def test_round_trip_of_every_host_buffer_kind(fake):
    floats = array.array("f", [1.5, -2.0, 3.25])
    cases = [b"hello", bytearray(b"world"), floats, memoryview(b"view!"), memoryview(floats)]
    for source in cases:
        expected = memoryview(source).tobytes()
        with cuda.DeviceMemory(len(expected)) as mem:
            mem.copy_from_host(source)
            assert bytes(mem.copy_to_host()) == expected
            out = array.array("f", [0.0] * 3) if isinstance(source, array.array) else bytearray(len(expected))
            assert mem.copy_to_host(out) is out
            assert memoryview(out).tobytes() == expected


def test_memset_and_partial_counts(fake):
    with cuda.DeviceMemory(8) as mem:
        mem.copy_from_host(b"abcdefgh")
        mem.memset(ord("z"), nbytes=3)
        assert bytes(mem.copy_to_host()) == b"zzzdefgh"
        mem.copy_from_host(b"12", nbytes=1)
        assert bytes(mem.copy_to_host(nbytes=4)) == b"1zzd"
        out = bytearray(b"........")
        mem.copy_to_host(out, nbytes=2)
        assert out == bytearray(b"1z......")
        mem.memset(0)
        assert bytes(mem.copy_to_host()) == bytes(8)


def test_copy_to_on_one_device(fake):
    with cuda.DeviceMemory(6) as a, cuda.DeviceMemory(10) as b, cuda.Stream() as s:
        a.copy_from_host(b"abcdef")
        b.memset(ord("."))
        a.copy_to(b)
        assert bytes(b.copy_to_host()) == b"abcdef...."
        b.memset(ord("-"), stream=s)
        a.copy_to(b, nbytes=2, stream=s)
        s.synchronize()
        assert bytes(b.copy_to_host()) == b"ab--------"
        with pytest.raises(ValueError, match="10 bytes do not fit in 6 bytes"):
            b.copy_to(a)


@pytest.mark.parametrize("peer", [True, False])
def test_copy_between_devices(peer):
    with use_fake(FakeRuntime([FakeDevice(), FakeDevice()], peer=peer)) as fake:
        with cuda.DeviceMemory(4, device=0) as a, cuda.DeviceMemory(4, device=1) as b:
            a.copy_from_host(b"peer")
            a.copy_to(b)
            assert bytes(b.copy_to_host()) == b"peer"
            with cuda.Stream(device=1) as s:
                b.memset(0, stream=s)
                b.copy_to(a, stream=s)  # a stream on the source device is fine too
                s.synchronize()
            assert bytes(a.copy_to_host()) == bytes(4)
            with cuda.Stream(device=0) as s0:
                a.copy_from_host(b"two!")
                a.copy_to(b, stream=s0)
                s0.synchronize()
            assert bytes(b.copy_to_host()) == b"two!"
        assert fake.peer_enabled == ({(0, 1), (1, 0)} if peer else set())
        assert "cudaMemcpyPeer" in fake.names() and "cudaMemcpyPeerAsync" in fake.names()
        assert cuda.current_device() == 0


def test_multi_gpu_iteration_allocation_and_copies(fake):
    blocks = [cuda.DeviceMemory(3, device=props.index) for props in cuda.devices()]
    try:
        blocks[0].copy_from_host(b"abc")
        for block in blocks[1:]:
            blocks[0].copy_to(block)
        assert [bytes(b.copy_to_host()) for b in blocks] == [b"abc", b"abc"]
        assert [b.device for b in blocks] == [0, 1]
    finally:
        for block in blocks:
            block.close()
    assert fake.live()["device_memory"] == 0


def test_async_copies_with_pinned_memory(fake):
    with cuda.HostMemory(5) as host, cuda.DeviceMemory(5) as mem, cuda.Stream() as s:
        host.write(b"pinnd")
        mem.copy_from_host(host, stream=s)
        host.write(b"-----")
        mem.copy_to_host(host, nbytes=3, stream=s)
        s.synchronize()
        assert host.read() == b"pin--"
        assert host.read(2, offset=1) == b"in"
        assert bytes(host.view()[3:]) == b"--"


def test_async_copies_refuse_pageable_buffers(fake):
    with cuda.DeviceMemory(4) as mem, cuda.Stream() as s:
        with pytest.raises(TypeError, match="with a stream needs pinned HostMemory"):
            mem.copy_from_host(b"abcd", stream=s)
        with pytest.raises(TypeError, match="with a stream needs pinned HostMemory"):
            mem.copy_to_host(bytearray(4), stream=s)
        with pytest.raises(TypeError, match="with a stream needs pinned HostMemory"):
            mem.copy_to_host(stream=s)


def test_bad_arguments_are_named(fake):
    with cuda.DeviceMemory(4) as mem:
        with pytest.raises(ValueError, match="memset value must be a byte"):
            mem.memset(256)
        with pytest.raises(ValueError, match="memset value must be a byte"):
            mem.memset(-1)
        with pytest.raises(ValueError, match="memset: 5 bytes do not fit in 4 bytes"):
            mem.memset(0, nbytes=5)
        with pytest.raises(ValueError, match="copy_from_host: 5 bytes do not fit in 4 bytes"):
            mem.copy_from_host(b"12345")
        with pytest.raises(TypeError, match="needs a writable buffer"):
            mem.copy_to_host(b"read")
        with pytest.raises(TypeError, match="not str"):
            mem.copy_from_host("text")
        with pytest.raises(TypeError, match="needs a DeviceMemory"):
            mem.copy_to(bytearray(4))
        with pytest.raises(TypeError, match="stream must be a puredl.cuda.Stream"):
            mem.memset(0, stream=0)
        with pytest.raises(ValueError, match="must be a non-negative int"):
            mem.memset(0, nbytes=-1)
    for size in (0, -1, 1.5, "8", True):
        with pytest.raises(ValueError, match="DeviceMemory size must be a positive int"):
            cuda.DeviceMemory(size)
    with pytest.raises(ValueError, match="HostMemory size must be a positive int"):
        cuda.HostMemory(0)
    with cuda.HostMemory(2) as host:
        with pytest.raises(ValueError, match="bytes 1..4 do not fit in 2 bytes"):
            host.write(b"abc", offset=1)
        with pytest.raises(ValueError, match="bytes 3..3 do not fit"):
            host.read(offset=3)


def test_a_stream_on_another_device_is_refused(fake):
    with cuda.DeviceMemory(4, device=0) as mem, cuda.Stream(device=1) as s, cuda.Event(device=0) as e:
        with pytest.raises(ValueError, match="is on cuda:1 but the memory is on cuda:0"):
            mem.memset(0, stream=s)
        with pytest.raises(ValueError, match="the devices differ"):
            e.record(s)


def test_event_timing_follows_the_work_recorded_between_events(fake):
    nbytes = 1 << 20
    with cuda.Stream() as s, cuda.Event() as start, cuda.Event() as end, cuda.DeviceMemory(nbytes) as a:
        with cuda.DeviceMemory(nbytes) as b:
            start.record(s)
            a.memset(0, stream=s)
            end.record(s)
            end.synchronize()
            assert start.elapsed_time(end) == pytest.approx(nbytes / BANDWIDTH * 1e3)
            start.record(s)
            a.copy_to(b, stream=s)
            end.record(s)
            s.synchronize()
            # A copy reads and writes every byte.
            assert start.elapsed_time(end) == pytest.approx(2 * nbytes / BANDWIDTH * 1e3)


def test_events_on_another_device_record_there(fake):
    with cuda.Event(device=1) as start, cuda.Event(device=1) as end, cuda.Stream(device=1) as s:
        start.record()  # the default stream of cuda:1, although cuda:0 is current
        end.record(s)
        end.synchronize()
        assert start.elapsed_time(end) == 0.0
    assert cuda.current_device() == 0


def test_event_misuse(fake):
    with cuda.Event(timing=False) as plain, cuda.Event() as a, cuda.Event() as b:
        with pytest.raises(ValueError, match="never recorded"):
            a.elapsed_time(b)
        a.record()
        plain.record()
        with pytest.raises(ValueError, match="timing=False"):
            a.elapsed_time(plain)
        with pytest.raises(TypeError, match="needs another Event"):
            a.elapsed_time(1.0)
        with pytest.raises(TypeError, match="stream must be a puredl.cuda.Stream"):
            a.record(stream="default")


def test_event_flags(fake):
    with cuda.Event() as timed, cuda.Event(timing=False, blocking=True) as blocking:
        assert fake.events[int(timed.handle)].flags == 0
        assert fake.events[int(blocking.handle)].flags == 2 | 1


def test_queries_report_busy_then_idle(fake):
    with cuda.Stream(non_blocking=True) as s, cuda.Event() as e:
        assert fake.streams[int(s.handle)].flags == 1
        e.record(s)
        fake.busy.update({int(s.handle), int(e.handle)})
        assert s.query() is False and e.query() is False
        assert fake.last_error == 0  # "not ready" was cleared, not left for torch to find
        e.synchronize()
        assert e.query() is True
        s.synchronize()
        assert s.query() is True


def test_wait_event(fake):
    with cuda.Stream() as a, cuda.Stream() as b, cuda.Event(timing=False) as e:
        e.record(a)
        b.wait_event(e)
        assert fake.calls[-1] == ("cudaStreamWaitEvent", (b.handle, e.handle, 0))


def test_blocking_operations_wait_for_the_default_stream(fake):
    with cuda.DeviceMemory(4) as a, cuda.DeviceMemory(4) as b:
        a.memset(1)
        a.copy_to(b)
    # stream=None means "done when the call returns": each op is followed by a synchronize.
    names = [n for n in fake.names() if n in ("cudaMemsetAsync", "cudaMemcpyAsync", "cudaStreamSynchronize")]
    assert names == ["cudaMemsetAsync", "cudaStreamSynchronize", "cudaMemcpyAsync", "cudaStreamSynchronize"]


def test_repr_says_where_and_whether_closed(fake):
    mem = cuda.DeviceMemory(16, device=1)
    assert repr(mem).startswith("DeviceMemory(16 bytes on cuda:1, ptr=0x")
    mem.close()
    assert repr(mem) == "DeviceMemory(16 bytes on cuda:1, closed)"
    with cuda.Stream() as s:
        assert repr(s).startswith("Stream(cuda:0, handle=0x")
    assert repr(s) == "Stream(cuda:0, closed)"
