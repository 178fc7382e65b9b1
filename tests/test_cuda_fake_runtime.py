"""The fake runtime must speak cuda-bindings' protocol, or the fake-based tests prove nothing."""

from __future__ import annotations

import inspect

import pytest

from puredl.cuda.testing import FakeRuntime, cudaError_t, cudaMemcpyKind

real = pytest.importorskip("cuda.bindings.runtime")

FAKE_CALLS = sorted(
    name for name in dir(FakeRuntime) if name.startswith("cuda") and callable(getattr(FakeRuntime, name))
)
FAKE_CALLS = [name for name in FAKE_CALLS if inspect.isfunction(getattr(FakeRuntime, name))]


def test_the_fake_covers_the_calls_puredl_makes():
    assert "cudaMalloc" in FAKE_CALLS and "cudaMemcpyPeerAsync" in FAKE_CALLS
    assert len(FAKE_CALLS) >= 30


@pytest.mark.parametrize("name", FAKE_CALLS)
def test_fake_calls_have_the_real_parameter_names(name):
    real_params = list(inspect.signature(getattr(real, name)).parameters)
    fake_params = list(inspect.signature(getattr(FakeRuntime, name)).parameters)[1:]  # drop self
    assert fake_params == real_params


def test_error_codes_match_the_real_enum():
    for member in cudaError_t:
        assert int(getattr(real.cudaError_t, member.name)) == member.value, member.name
    for member in cudaMemcpyKind:
        assert int(getattr(real.cudaMemcpyKind, member.name)) == member.value, member.name


def test_flag_constants_match():
    for name in (
        "cudaStreamDefault",
        "cudaStreamNonBlocking",
        "cudaEventDefault",
        "cudaEventBlockingSync",
        "cudaEventDisableTiming",
        "cudaHostAllocDefault",
        "cudaHostAllocPortable",
    ):
        assert int(getattr(real, name)) == getattr(FakeRuntime, name), name


def test_error_descriptions_match_the_real_runtime():
    fake = FakeRuntime()
    for member in cudaError_t:
        real_name = real.cudaGetErrorName(getattr(real.cudaError_t, member.name))[1]
        real_text = real.cudaGetErrorString(getattr(real.cudaError_t, member.name))[1]
        assert fake.cudaGetErrorName(member)[1] == real_name
        assert fake.cudaGetErrorString(member)[1] == real_text


def test_results_have_the_real_shape_on_failure():
    # Without a driver the real runtime answers (err, None) for a call with one output and
    # (err,) for a call with none; the fake in driver=False mode must do the same.
    fake = FakeRuntime(driver=False)
    real_count, fake_count = real.cudaGetDeviceCount(), fake.cudaGetDeviceCount()
    if int(real_count[0]) == 0:
        pytest.skip("this machine has a working CUDA driver")
    assert len(fake_count) == len(real_count) == 2 and fake_count[1] is None
    assert int(fake_count[0]) == int(real_count[0])
    assert len(fake.cudaFree(0)) == len(real.cudaFree(0)) == 1
    assert len(fake.cudaMemGetInfo()) == len(real.cudaMemGetInfo()) == 3
