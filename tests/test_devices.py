"""Devices and torch interop: parsing, CPU-only errors, mixing devices, memory sharing, CUDA (gpu marker)."""

from __future__ import annotations

import pytest

import puredl as pd
from puredl import accel, devices

torch = pytest.importorskip("torch")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(
    "text,parsed", [("cpu", ("cpu", None)), ("CUDA", ("cuda", 0)), ("cuda:3", ("cuda", 3))]
)
def test_parse_device(text, parsed):
    assert devices.parse_device(text) == parsed


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda:-1", ""])
def test_bad_device_names_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid device"):
        devices.parse_device(bad)


def test_cpu_move_is_the_same_tensor():
    t = pd.rand(3)
    assert t.to("cpu") is t and t.cpu() is t and t.to(device="CPU") is t


def test_list_devices_always_has_cpu():
    found = devices.list_devices()
    assert found[0] == "cpu"
    assert len(found) == 1 + (torch.cuda.device_count() if torch.cuda.is_available() else 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_asking_for_cuda_without_it_says_what_to_check():
    with pytest.raises(devices.DeviceUnavailableError) as e:
        pd.tensor([1.0, 2.0], device="cuda:0")
    msg = str(e.value)
    assert "cuda:0" in msg and "CUDA is not available" in msg and "device='cpu'" in msg
    if torch.version.cuda is None:
        assert "CPU-only build" in msg and "install a CUDA build of torch" in msg
    else:
        assert "nvidia-smi" in msg and "CUDA_VISIBLE_DEVICES" in msg
    with pytest.raises(devices.DeviceUnavailableError):
        pd.rand(2).to("cuda")
    with pytest.raises(devices.DeviceUnavailableError):
        pd.zeros(2, device="cuda:1")


# --------------------------------------------------------------------------- interop


def test_from_torch_shares_memory_and_is_a_leaf():
    src = torch.arange(6, dtype=torch.float32).reshape(2, 3).requires_grad_(True)
    t = pd.from_torch(src)
    assert t.shape == (2, 3) and t.dtype is pd.float32 and t.device == "cpu"
    assert t.is_leaf and not t.requires_grad
    with torch.no_grad():
        src[0, 0] = 42.0
    assert t[0, 0].item() == 42.0
    t[1, 2] = -1.0
    assert src[1, 2].item() == -1.0


@pytest.mark.parametrize(
    "tdtype,pdtype", [(torch.float16, pd.float16), (torch.bfloat16, pd.bfloat16), (torch.int8, pd.int8)]
)
def test_from_torch_keeps_the_half_floats_and_int8(tdtype, pdtype):
    t = pd.from_torch(torch.tensor([1, 2, 3], dtype=tdtype))
    assert t.dtype is pdtype and t.tolist() == [1, 2, 3]
    assert t.to_torch().dtype is tdtype


def test_from_torch_rejects_what_it_cannot_hold():
    with pytest.raises(TypeError, match="expected a torch.Tensor"):
        pd.from_torch([1.0, 2.0])
    with pytest.raises(TypeError, match="complex64 is not supported"):
        pd.from_torch(torch.zeros(2, dtype=torch.complex64))


def test_to_torch_shares_memory_with_pure_storage():
    t = pd.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=pd.float64)
    x = t.to_torch()
    assert x.dtype is torch.float64 and x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    x[1, 0] = 30.0
    assert t[1, 0].item() == 30.0
    assert t.T.to_torch().tolist() == [[1.0, 30.0], [2.0, 4.0]]  # strided views cross too
    u = pd.from_torch(torch.ones(2))
    assert u.to_torch().data_ptr() == u._impl.data_ptr()


def test_tensor_factory_accepts_torch_tensors():
    t = pd.tensor(torch.tensor([1.5, 2.5]), dtype=pd.float64)
    assert t.dtype is pd.float64 and t.tolist() == [1.5, 2.5]


def test_ops_on_torch_backed_tensors_in_pure_mode_run_on_pure():
    accel.set_acceleration("pure")
    x = pd.from_torch(torch.tensor([1.0, 2.0]))
    y = x * 2.0 + pd.tensor([1.0, 1.0])
    assert y._be.NAME == "pure" and y.tolist() == [3.0, 5.0]


# --------------------------------------------------------------------------- mixing devices


def test_mixing_devices_is_a_clear_error():
    """The meta device stands in for a GPU: torch-backed, not the CPU."""
    m = pd.from_torch(torch.empty(2, 3, device="meta"))
    assert m.device == "meta"
    for other in (pd.ones(2, 3), pd.from_torch(torch.ones(2, 3))):
        with pytest.raises(
            accel.DeviceMismatchError, match="add: expected all tensors on the same device, got cpu"
        ):
            m + other
    with pytest.raises(accel.DeviceMismatchError, match="matmul"):
        pd.ones(3, 2) @ m
    # a 0-d CPU tensor may join, as torch allows for scalars
    out = m * pd.tensor(2.0)
    assert out.device == "meta" and out.shape == (2, 3)


# --------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@needs_cuda
def test_cuda_tensor_ops_stay_on_the_device():
    accel.set_acceleration("pure")  # the mode does not move device data
    x = pd.tensor([[1.0, 2.0], [3.0, 4.0]], device="cuda:0")
    assert x.device == "cuda:0" and x._be.NAME == "torch"
    y = (x @ x).relu().sum(0)
    assert y.device == "cuda:0" and y.tolist() == [22.0, 32.0]
    with pytest.raises(accel.DeviceMismatchError):
        x + pd.ones(2, 2)


@pytest.mark.gpu
@needs_cuda
def test_to_device_carries_gradients_back():
    w = pd.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    wc = w.to("cuda:0")
    x = pd.tensor([[1.0, 1.0]], device="cuda:0")
    loss = (x @ wc).sum()
    loss.backward()
    assert w.grad.device == "cpu" and w.grad.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    back = wc.to("cpu")
    assert back.device == "cpu" and back.tolist() == w.tolist()


@pytest.mark.gpu
@needs_cuda
def test_from_torch_on_cuda_shares_memory():
    src = torch.zeros(3, device="cuda:0")
    t = pd.from_torch(src)
    t[1] = 5.0
    assert src[1].item() == 5.0 and t.to_torch().data_ptr() == src.data_ptr()


@pytest.mark.gpu
@needs_cuda
def test_a_cuda_round_trip_is_counted_and_logged_by_accel():
    import io

    accel.set_acceleration("pure")
    accel.reset_stats()
    log = io.StringIO()
    accel.enable_logging(True, file=log)
    w = pd.tensor([1.0, 2.0], requires_grad=True)
    (w.to("cuda:0") * 3.0).sum().backward()  # the gradient moves back: a second "to"
    accel.enable_logging(False)
    assert accel.get_stats().op("to") == (1, 1, 0)  # to the GPU on torch; back to pure (PURE mode)
    lines = [ln for ln in log.getvalue().splitlines() if ln.startswith("[accel] to ")]
    assert lines == [
        "[accel] to 2 -> torch (a move from cpu to cuda:0)",
        "[accel] to 2 -> pure (a move from cuda:0 to cpu)",
    ]
    assert w.grad.tolist() == [3.0, 3.0] and w.grad._be.NAME == "pure"
