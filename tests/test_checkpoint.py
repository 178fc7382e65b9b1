"""Nested checkpoints (issue #13), file mode and malformed headers (issue #14)."""

from __future__ import annotations

import json
import math
import os
import struct
from array import array

import pytest

import puredl as pd
from puredl import nn, optim
from puredl.io import SafetensorsError, read_safetensors, write_safetensors


def _trained(seed: int = 0):
    pd.manual_seed(seed)
    model = nn.Linear(3, 2)
    opt = optim.Adam(model.parameters(), lr=0.1)
    x = pd.randn(4, 3)
    for _ in range(2):
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()
    return model, opt, x


def test_nested_checkpoint_round_trips_and_resumes_identically(tmp_path):
    model, opt, x = _trained()
    path = tmp_path / "ckpt.pt"
    pd.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "iter": 5,
            "config": {"lr": 0.1, "layers": [3, 2], "name": "lin", "warm": None, "on": True},
        },
        path,
    )
    ck = pd.load(path)
    assert ck["iter"] == 5
    assert ck["config"] == {"lr": 0.1, "layers": [3, 2], "name": "lin", "warm": None, "on": True}
    assert ck["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)  # tuples stay tuples
    assert set(ck["optimizer"]["state"]) == {0, 1}  # int keys stay ints

    model2, opt2 = nn.Linear(3, 2), None
    model2.load_state_dict(ck["model"])
    opt2 = optim.Adam(model2.parameters(), lr=0.1)
    opt2.load_state_dict(ck["optimizer"])
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        (m(x) ** 2).mean().backward()
        o.step()
    assert model2.weight.tolist() == model.weight.tolist()
    assert model2.bias.tolist() == model.bias.tolist()


def test_values_that_json_cannot_hold_exactly_come_back_exactly(tmp_path):
    obj = {"nan": math.nan, "inf": -math.inf, "big": 2**70, "f": 0.1, 3: "int key", None: [(), []]}
    pd.save(obj, tmp_path / "c")
    back = pd.load(tmp_path / "c")
    assert math.isnan(back.pop("nan")) and back.pop("inf") == -math.inf
    del obj["nan"], obj["inf"]
    assert back == obj


def test_a_shared_tensor_is_stored_once_and_loads_as_one_object(tmp_path):
    t = pd.tensor([1.0, 2.0])
    pd.save({"a": t, "b": [t], "c": pd.tensor([3])}, tmp_path / "c")
    back = pd.load(tmp_path / "c")
    assert back["a"] is back["b"][0]
    assert len(read_safetensors(tmp_path / "c")) == 2


def test_nested_files_are_plain_safetensors_for_other_tools(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    model, opt, _ = _trained()
    pd.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "c")
    loaded = st.load_file(str(tmp_path / "c"))
    assert loaded["model/weight"].tolist() == model.weight.tolist()
    assert loaded["optimizer/state/0/exp_avg"].shape == (2, 3)


def test_a_flat_file_written_before_nesting_existed_still_loads_as_a_dict(tmp_path):
    write_safetensors(tmp_path / "old", {"w": ("float32", (2,), array("f", [1.0, 2.0]))}, {"epoch": "3"})
    back = pd.load(tmp_path / "old")
    assert list(back) == ["w"] and back["w"].tolist() == [1.0, 2.0]
    # and a flat state dict is still written without the structure key
    pd.save({"w": pd.tensor([1.0])}, tmp_path / "new")
    assert pd.io.load_metadata(tmp_path / "new") == {}


def test_map_location_forms(tmp_path):
    pd.save({"w": pd.tensor([1.0]), "n": 1}, tmp_path / "c")
    for where in ("cpu", pd.device("cpu"), {"cuda:0": "cpu"}, lambda storage, loc: storage):
        back = pd.load(tmp_path / "c", map_location=where, weights_only=True)
        assert back["w"].device == "cpu" and back["w"].tolist() == [1.0] and back["n"] == 1
    seen = []
    pd.load(tmp_path / "c", map_location=lambda t, loc: seen.append(loc))
    assert seen == ["cpu"]


def test_map_location_cuda_moves_tensors_when_torch_has_cuda(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pd.save({"w": [pd.tensor([1.0, 2.0])]}, tmp_path / "c")
    back = pd.load(tmp_path / "c", map_location="cuda:0")
    assert back["w"][0].device == "cuda:0" and back["w"][0].tolist() == [1.0, 2.0]


def test_file_objects_are_refused_with_a_clear_error(tmp_path):
    import io

    with pytest.raises(TypeError, match="expected a file path, got BytesIO"):
        pd.save({"w": pd.tensor([1.0])}, io.BytesIO())
    with pytest.raises(TypeError, match="expected a file path"):
        pd.load(io.BytesIO())


def test_reserved_metadata_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        pd.save({"x": 1}, tmp_path / "c", metadata={"puredl.checkpoint": "x"})


def _craft_with_tree(path, tree: str) -> str:
    write_safetensors(path, {"t": ("float32", (1,), array("f", [1.0]))}, {"puredl.checkpoint": tree})
    return str(path)


@pytest.mark.parametrize(
    "tree, phrase",
    [
        ("{not json", "not valid JSON"),
        ('{"version": 99, "tree": 1}', "format version 99"),
        ('{"version": 1, "tree": {"tensor": "missing"}}', "names tensor 'missing'"),
        ('{"version": 1, "tree": {"set": [1]}}', "malformed node"),
        ('{"version": 1, "tree": {"dict": [[1]]}}', "malformed dict entry"),
        ('{"version": 1, "tree": ' + '{"list": [' * 5000 + "1" + "]}" * 5000 + "}", "nested too deeply"),
    ],
)
def test_malformed_structures_raise_the_readers_error(tmp_path, tree, phrase):
    with pytest.raises(SafetensorsError, match=phrase):
        pd.load(_craft_with_tree(tmp_path / "c", tree))


# --------------------------------------------------------------------------- issue #14


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_follow_the_umask_like_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        pd.save({"w": pd.tensor([1.0])}, tmp_path / "saved")
        with open(tmp_path / "opened", "wb"):
            pass
    finally:
        os.umask(old)
    mode = os.stat(tmp_path / "saved").st_mode & 0o777
    assert mode == os.stat(tmp_path / "opened").st_mode & 0o777 == 0o666 & ~umask


def _raw_header(path, raw: bytes, data: bytes = b"") -> str:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)
    return str(path)


@pytest.mark.parametrize("dtype", [{"a": 1}, ["F32"], 32, None, True])
def test_a_dtype_of_the_wrong_json_type_is_a_safetensors_error(tmp_path, dtype):
    header = {"t": {"dtype": dtype, "shape": [1], "data_offsets": [0, 4]}}
    with pytest.raises(SafetensorsError, match="dtype must be a string"):
        read_safetensors(_raw_header(tmp_path / "f", json.dumps(header).encode(), b"\0" * 4))


@pytest.mark.parametrize("opening, closing", [("[", "]"), ('{"a":', "}")])
def test_deeply_nested_header_json_is_a_safetensors_error(tmp_path, opening, closing):
    raw = ('{"__metadata__":' + opening * 100_000 + "1" + closing * 100_000 + "}").encode()
    with pytest.raises(SafetensorsError, match="nested too deeply"):
        read_safetensors(_raw_header(tmp_path / "f", raw))


def test_fuzzed_headers_only_ever_raise_the_readers_error(tmp_path):
    import random

    rng = random.Random(0)
    values = [None, 1, -1, 1.5, "x", [], {}, [1], [[1]], {"a": 1}, True, "F32", [0, 4], [1, 2, 3]]
    for _ in range(800):
        info = {
            k: rng.choice(values + [good] * 4)
            for k, good in (("dtype", "F32"), ("shape", [1]), ("data_offsets", [0, 4]))
        }
        header = {"t": info} if rng.random() > 0.2 else rng.choice(values)
        if isinstance(header, dict) and rng.random() < 0.3:
            header["__metadata__"] = rng.choice(values)
        path = _raw_header(tmp_path / "f", json.dumps(header).encode(), b"\0" * 4)
        try:
            read_safetensors(path)
        except SafetensorsError:
            pass


@pytest.mark.parametrize("zipfile", [True, False])
def test_a_torch_pickle_file_is_refused_as_pickle_not_as_corruption(tmp_path, zipfile):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(SafetensorsError, match="this is a pickle file .* puredl never unpickles"):
        pd.load(path)


def test_saving_a_whole_module_says_to_save_its_state_dict(tmp_path):
    with pytest.raises(
        TypeError, match=r"is a Linear, which would need pickle.*save its .state_dict\(\) instead"
    ):
        pd.save(nn.Linear(2, 1), tmp_path / "m.pt")
    with pytest.raises(TypeError, match=r"value at 'opt' is a SGD.*state_dict"):
        pd.save({"opt": optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)}, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []
