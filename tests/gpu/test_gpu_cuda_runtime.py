"""puredl.cuda on a real GPU: queries against torch, memory contents, timing, errors, cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from puredl import cuda
from puredl.cuda import _binding

pytestmark = pytest.mark.gpu


def test_queries_are_sane():
    count = cuda.device_count()
    assert count >= 1
    for props in cuda.devices():
        assert props.name and props.compute_capability[0] >= 5
        assert props.multiprocessor_count > 0 and props.warp_size == 32
        free, total = cuda.get_device_memory(props.index)
        assert 0 < free <= total <= props.total_memory * 1.01
    assert cuda.parse_device(f"cuda:{count - 1}") == ("cuda", count - 1)
    with pytest.raises(ValueError, match="does not exist"):
        cuda.parse_device(f"cuda:{count}")
    assert cuda.driver_version() is not None and cuda.runtime_version() is not None


def test_queries_match_torch(torch_cuda):
    torch = torch_cuda
    assert cuda.device_count() == torch.cuda.device_count()
    for i in range(cuda.device_count()):
        assert cuda.get_device_name(i) == torch.cuda.get_device_name(i)
        assert cuda.get_device_properties(i).compute_capability == torch.cuda.get_device_capability(i)
        assert cuda.get_device_properties(i).multiprocessor_count == (
            torch.cuda.get_device_properties(i).multi_processor_count
        )


def test_round_trips_and_memset():
    data = os.urandom(1 << 20)
    with cuda.DeviceMemory(len(data)) as a, cuda.DeviceMemory(len(data)) as b:
        a.copy_from_host(data)
        assert bytes(a.copy_to_host()) == data
        a.copy_to(b)
        assert bytes(b.copy_to_host()) == data
        b.memset(0x5A, nbytes=1000)
        assert bytes(b.copy_to_host()) == b"\x5a" * 1000 + data[1000:]


def test_async_round_trip_through_pinned_memory():
    data = os.urandom(4 << 20)
    with cuda.Stream() as s, cuda.HostMemory(len(data)) as host, cuda.DeviceMemory(len(data)) as mem:
        host.write(data)
        mem.copy_from_host(host, stream=s)
        mem.memset(0, nbytes=16, stream=s)
        mem.copy_to_host(host, stream=s)
        s.synchronize()
        assert s.query() is True
        assert host.read() == bytes(16) + data[16:]


def test_copy_matches_torch(torch_cuda):
    torch = torch_cuda
    reference = torch.randint(0, 256, (1 << 20,), dtype=torch.uint8, device="cuda")
    expected = reference.cpu().numpy().tobytes()
    with cuda.DeviceMemory(len(expected)) as a, cuda.DeviceMemory(len(expected)) as b:
        a.copy_from_host(expected)
        a.copy_to(b)
        assert bytes(b.copy_to_host()) == expected


def test_event_timing_grows_with_work():
    with cuda.Stream() as s, cuda.Event() as start, cuda.Event() as end, cuda.DeviceMemory(256 << 20) as m:

        def timed(nbytes):
            start.record(s)
            for _ in range(10):
                m.memset(0, nbytes=nbytes, stream=s)
            end.record(s)
            end.synchronize()
            return start.elapsed_time(end)

        timed(256 << 20)  # warm-up
        small, large = timed(1 << 20), timed(256 << 20)
        assert 0 < small < large


def test_out_of_memory_is_a_clear_error_and_leaves_the_runtime_usable(torch_cuda):
    free, total = cuda.get_device_memory()
    with pytest.raises(cuda.CudaError) as info:
        cuda.DeviceMemory(total * 4)
    assert info.value.name == "cudaErrorMemoryAllocation"
    assert "free of" in str(info.value)
    with cuda.DeviceMemory(1 << 20) as mem:
        mem.memset(0)
    # The failure was cleared: torch's next launch must not pick it up.
    torch = torch_cuda
    assert float(torch.ones(4, device="cuda").sum()) == 4.0


def test_real_error_mapping():
    rt = _binding.runtime()
    with pytest.raises(cuda.CudaError) as info:
        _binding.check(rt, rt.cudaFree(0xDEAD0000), "cudaFree", 0xDEAD0000)
    assert info.value.name.startswith("cudaError") and info.value.description
    assert info.value.call == "cudaFree(3735879680)"


def test_closed_handles_are_refused():
    mem = cuda.DeviceMemory(16)
    mem.close()
    mem.close()
    with pytest.raises(cuda.ClosedHandleError):
        mem.memset(0)


def test_unclosed_objects_at_exit_are_released_quietly():
    code = textwrap.dedent(
        """
        from puredl import cuda
        s = cuda.Stream(); e = cuda.Event(); m = cuda.DeviceMemory(1 << 20); h = cuda.HostMemory(1 << 20)
        m.memset(0, stream=s); e.record(s)
        keep = [m]; keep.append(keep)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok"
    assert result.stderr == ""


def test_multi_gpu_allocation_and_peer_copy(torch_cuda):
    count = cuda.device_count()
    if count < 2:
        pytest.skip("needs two GPUs")
    torch = torch_cuda
    data = os.urandom(1 << 20)
    blocks = [cuda.DeviceMemory(len(data), device=i) for i in range(count)]
    try:
        blocks[0].copy_from_host(data)
        for i in range(1, count):
            assert cuda.can_access_peer(i, 0) == torch.cuda.can_device_access_peer(i, 0)
            blocks[0].copy_to(blocks[i])
            assert bytes(blocks[i].copy_to_host()) == data
            with cuda.Stream(device=i) as s:
                blocks[i].memset(7, stream=s)
                blocks[i].copy_to(blocks[0], stream=s)
                s.synchronize()
            assert bytes(blocks[0].copy_to_host()) == b"\x07" * len(data)
            blocks[0].copy_from_host(data)
    finally:
        for block in blocks:
            block.close()
    assert cuda.current_device() == 0


def test_example_runs():
    from puredl.examples import cuda_basic

    assert cuda_basic.main(["--size", str(1 << 20)]) == 0
