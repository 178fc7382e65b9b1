"""torch's everyday surface outside the op table (issue #13): devices, cuda, modes, legacy constructors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import puredl as pd

torch = pytest.importorskip("torch")


# --------------------------------------------------------------------------- device


@pytest.mark.parametrize("args", [("cpu",), ("cuda",), ("cuda:0",), ("cuda:3",), ("cuda", 1)])
def test_device_matches_torch(args):
    mine, theirs = pd.device(*args), torch.device(*args)
    assert (mine.type, mine.index) == (theirs.type, theirs.index)
    assert str(mine) == str(theirs)
    assert repr(mine) == repr(theirs)
    assert pd.device(mine) is mine and mine == pd.device(str(theirs))


@pytest.mark.parametrize("args", [("gpu",), ("cuda:x",), ("cuda:0", 1), ("cuda", -1), ("cuda:-1",)])
def test_bad_devices_raise_like_torch(args):
    with pytest.raises(RuntimeError):
        torch.device(*args)
    with pytest.raises(RuntimeError):
        pd.device(*args)


def test_device_works_where_a_device_string_does():
    x = pd.ones(2, device=pd.device("cpu"))
    assert x.device == pd.device("cpu") == "cpu"
    assert x.to(pd.device("cpu")) is x
    assert {pd.device("cpu"): 1}["cpu"] == 1


def test_default_device_is_cpu_and_cuda_is_checked_when_set():
    assert pd.get_default_device() == "cpu" and pd.get_default_device().type == "cpu"
    pd.set_default_device("cpu")
    assert pd.zeros(2).device == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pd.set_default_device("cuda")
        assert pd.get_default_device() == "cpu"
    pd.set_default_device(None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_default_device_places_new_tensors_on_cuda():
    pd.set_default_device("cuda")
    try:
        assert pd.zeros(2).device == "cuda:0" and pd.tensor([1.0]).device == "cuda:0"
    finally:
        pd.set_default_device("cpu")
    assert pd.zeros(2).device == "cpu"


def test_accelerator_agrees_with_torch():
    assert pd.accelerator.is_available() == torch.accelerator.is_available()
    cur = pd.accelerator.current_accelerator()
    want = torch.accelerator.current_accelerator()
    assert (cur is None) == (want is None)
    if want is not None:
        assert cur.type == want.type


# --------------------------------------------------------------------------- cuda


def test_cuda_is_reachable_after_a_bare_import_without_loading_anything_else():
    code = (
        "import sys, puredl\n"
        "assert 'puredl.cuda' not in sys.modules\n"
        "print(puredl.cuda.is_available(), puredl.cuda.manual_seed(0), puredl.cuda.manual_seed_all(0))\n"
        "assert 'torch' not in sys.modules\n"
    )
    # PUREDL_ACCEL=torch imports torch on purpose; the default (pure) mode must not
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUREDL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1:] == ["None", "None"]


def test_cuda_manual_seed_reaches_torch_when_it_is_loaded():
    pd.cuda.manual_seed_all(123)
    pd.cuda.manual_seed(123)
    with pytest.raises(TypeError, match="int seed"):
        pd.cuda.manual_seed("1")


def test_cuda_availability_agrees_with_torch_on_a_machine_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert pd.cuda.is_available() is False


# --------------------------------------------------------------------------- inference_mode


def test_inference_mode_records_no_graph_and_nests_like_torch():
    x = pd.ones(2, requires_grad=True)
    tx = torch.ones(2, requires_grad=True)
    with pd.inference_mode(), torch.inference_mode():
        assert (x * 2).requires_grad == (tx * 2).requires_grad == False  # noqa: E712
        assert pd.is_inference_mode_enabled() and torch.is_inference_mode_enabled()
        with pd.inference_mode(False), torch.inference_mode(False):
            # torch: inference_mode(False) turns grad mode back on
            assert pd.is_grad_enabled() == torch.is_grad_enabled() == True  # noqa: E712
    assert not pd.is_inference_mode_enabled()
    assert (x * 2).requires_grad

    @pd.inference_mode()
    def f(a):
        return a * 2

    @pd.inference_mode
    def g(a):
        return a * 2

    assert not f(x).requires_grad and not g(x).requires_grad and pd.is_grad_enabled()


# --------------------------------------------------------------------------- legacy constructors


@pytest.mark.parametrize(
    "name, args",
    [
        ("Tensor", ([1, 2],)),
        ("Tensor", ([[1.5], [2.0]],)),
        ("Tensor", (2, 3)),
        ("Tensor", ()),
        ("Tensor", ((2, 3),)),
        ("FloatTensor", ([1, 2],)),
        ("DoubleTensor", ([1, 2],)),
        ("LongTensor", ([1, 2],)),
        ("LongTensor", (3,)),
        ("BoolTensor", ([True, False],)),
    ],
)
def test_legacy_constructors_match_torch(name, args):
    mine, theirs = getattr(pd, name)(*args), getattr(torch, name)(*args)
    assert tuple(mine.shape) == tuple(theirs.shape)
    assert mine.dtype.name == str(theirs.dtype).replace("torch.", "")
    if args and not all(isinstance(a, int) for a in args):  # sized ones are uninitialized in torch
        assert mine.tolist() == theirs.tolist()
    assert isinstance(mine, pd.Tensor)
    assert mine.type() == theirs.type()


def test_legacy_isinstance_checks_the_dtype():
    assert isinstance(pd.tensor([1]), pd.LongTensor) and not isinstance(pd.tensor([1.0]), pd.LongTensor)
    assert isinstance(pd.tensor([1.0]), pd.FloatTensor)
    with pytest.raises(TypeError):
        torch.LongTensor(torch.ones(2))
    with pytest.raises(TypeError, match="expected int64"):
        pd.LongTensor(pd.ones(2))


def test_parameter_still_builds_itself():
    p = pd.nn.Parameter(pd.ones(2))
    assert p.requires_grad and isinstance(p, pd.Tensor)


@pytest.mark.parametrize("spec", ["", ".4f", ".2e", "8.3f", "g"])
def test_format_of_a_0d_tensor_matches_torch(spec):
    for value in (2.5, -0.123456789, 3):
        assert format(pd.tensor(value), spec) == format(torch.tensor(value), spec)


def test_format_of_a_bigger_tensor_raises_like_torch():
    for shape in ((1,), (2,), (2, 2)):
        with pytest.raises(TypeError, match="unsupported format string"):
            torch.ones(shape).__format__(".2f")
        with pytest.raises(TypeError, match="unsupported format string"):
            f"{pd.ones(shape):.2f}"
        assert f"{pd.ones(shape)}" == str(pd.ones(shape))


@pytest.mark.parametrize(
    "spec", ["torch.DoubleTensor", "torch.LongTensor", "torch.FloatTensor", "float64", "int64", "bool"]
)
def test_type_converts_like_torch(spec):
    mine, theirs = (
        pd.tensor([1.5, -2.0, 0.0]).type(spec),
        torch.tensor([1.5, -2.0, 0.0]).type(getattr(torch, spec) if "." not in spec else spec),
    )
    assert mine.type() == theirs.type() and mine.tolist() == theirs.tolist()
    assert pd.ones(1).type(pd.LongTensor).type() == "torch.LongTensor"
    with pytest.raises(ValueError, match="invalid type"):
        pd.ones(1).type("torch.NoSuchTensor")


# --------------------------------------------------------------------------- numpy


def test_numpy_round_trips_with_torch_dtypes():
    np = pytest.importorskip("numpy")
    for values, dtype in (
        ([[1.5, 2.0]], "float32"),
        ([1.0, 2.0], "float64"),
        ([1, -2], "int64"),
        ([3, -4], "int32"),
        ([3, -4], "int16"),
        ([3, 250], "uint8"),
        ([True, False], "bool"),
    ):
        mine = pd.tensor(values, dtype=getattr(pd, dtype) if dtype != "bool" else pd.bool).numpy()
        theirs = torch.tensor(values, dtype=getattr(torch, dtype)).numpy()
        assert mine.dtype == theirs.dtype and (mine == theirs).all() and mine.shape == theirs.shape
        back = pd.from_numpy(theirs)
        assert back.dtype.name == dtype and back.tolist() == torch.from_numpy(theirs).tolist()
    strided = np.arange(12, dtype=np.float64).reshape(3, 4).T
    assert pd.from_numpy(strided).tolist() == strided.tolist()
    # int32 keeps its dtype, as torch's; int8 (no storage of its own) widens to int16
    assert pd.from_numpy(np.array([1, 2], dtype=np.int32)).dtype is pd.int32
    assert pd.from_numpy(np.array([-1, 2], dtype=np.int8)).tolist() == [-1, 2]


def test_numpy_refuses_what_torch_refuses():
    pytest.importorskip("numpy")
    with pytest.raises(RuntimeError, match="requires grad"):
        pd.ones(2, requires_grad=True).numpy()
    assert pd.ones(2, requires_grad=True).detach().numpy().tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="expected np.ndarray"):
        pd.from_numpy([1, 2])


def test_numpy_missing_names_numpy(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_numpy(name, *args, **kwargs):
        if name == "numpy" or name.startswith("numpy."):
            raise ImportError("No module named 'numpy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "numpy", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_numpy)
    with pytest.raises(ImportError, match=r"numpy is needed .*pip install 'puredl\[numpy\]'"):
        pd.ones(2).numpy()


# --------------------------------------------------------------------------- Generator


def test_generator_has_torchs_interface_and_reproduces_its_draws():
    g = pd.Generator()
    t = torch.Generator()
    assert g.initial_seed() == t.initial_seed()
    assert g.manual_seed(7) is g and g.initial_seed() == t.manual_seed(7).initial_seed() == 7
    first = pd.randn(3, generator=pd.Generator().manual_seed(1)).tolist()
    assert pd.randn(3, generator=pd.Generator().manual_seed(1)).tolist() == first
    state = g.get_state()
    a = pd.rand(2, generator=g).tolist()
    g.set_state(state)
    assert pd.rand(2, generator=g).tolist() == a
    assert g.device == "cpu" and isinstance(g.seed(), int)
    with pytest.raises(TypeError):
        g.manual_seed("1")


def test_generator_drives_data_splits_and_loaders():
    from puredl.utils.data import DataLoader, random_split

    def split(seed):
        return [
            list(s) for s in random_split(range(10), [0.5, 0.5], generator=pd.Generator().manual_seed(seed))
        ]

    assert split(3) == split(3)
    order = [
        b.tolist()
        for b in DataLoader(range(6), batch_size=6, shuffle=True, generator=pd.Generator().manual_seed(2))
    ]
    again = [
        b.tolist()
        for b in DataLoader(range(6), batch_size=6, shuffle=True, generator=pd.Generator().manual_seed(2))
    ]
    assert order == again and sorted(order[0]) == list(range(6))


@pytest.mark.parametrize(
    "make",
    [
        lambda np: np.array([[1.5, 2.0]]),
        lambda np: np.array([[1.5, 2.0]], dtype=np.float32),
        lambda np: np.arange(6).reshape(2, 3).T,
        lambda np: np.float64(2.5),
        lambda np: np.array([True, False]),
    ],
)
def test_tensor_from_numpy_values_matches_torch(make):
    np = pytest.importorskip("numpy")
    a = make(np)
    mine, theirs = pd.tensor(a), torch.tensor(a)
    assert mine.tolist() == theirs.tolist() and tuple(mine.shape) == tuple(theirs.shape)
    assert mine.dtype.name == str(theirs.dtype).replace("torch.", "")
    assert pd.tensor(a, dtype=pd.float32).dtype is pd.float32
    assert pd.tensor(a, dtype=pd.float64, requires_grad=True).requires_grad


# --------------------------------------------------------------------------- Tensor.data assignment


def test_data_assignment_matches_torch():
    w, wt = pd.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    (wt * wt).sum().backward()
    w.data += -0.5 * w.grad  # the makemore lectures' update
    wt.data += -0.5 * wt.grad
    assert w.tolist() == wt.tolist() and w.requires_grad and w.is_leaf
    w.data = pd.zeros(3, dtype=pd.float64)
    wt.data = torch.zeros(3, dtype=torch.float64)
    assert tuple(w.shape) == tuple(wt.shape) and w.dtype is pd.float64 and w.requires_grad
    w.grad = wt.grad = None
    (w * 2).sum().backward()
    (wt * 2).sum().backward()
    assert w.grad.tolist() == wt.grad.tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(RuntimeError, match="floating point"):
        wt.data = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="floating point"):
        w.data = pd.zeros(3, dtype=pd.int64)
    with pytest.raises(TypeError, match="has to be a tensor"):
        wt.data = [1.0]
    with pytest.raises(TypeError, match="has to be a tensor"):
        w.data = [1.0]
