"""safetensors save/load: format details, interop with the safetensors library, corruption, atomicity."""

from __future__ import annotations

import json
import random
import struct
from array import array

import pytest

from puredl.io import (
    SafetensorsError,
    read_safetensors,
    read_safetensors_metadata,
    write_safetensors,
)


def _craft(path, header: dict, data: bytes, pad: bool = True) -> str:
    """Write a safetensors file by hand, so that tests can break any part of it."""
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-(8 + len(raw)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)
    return str(path)


SAMPLE = {
    "w": ("float32", (2, 3), array("f", [0.5, -1.25, 3.0, 1e-8, -0.0, 7.75])),
    "d": ("float64", (), array("d", [3.141592653589793])),
    "idx": ("int64", (4,), array("q", [0, -1, 2**40, -(2**62)])),
    "mask": ("bool", (3,), array("b", [1, 0, 1])),
    "empty": ("float32", (0, 5), array("f")),
}


# --------------------------------------------------------------------------- pure layer


def test_round_trip_pure_layer(tmp_path):
    path = tmp_path / "sample.safetensors"
    write_safetensors(path, SAMPLE, {"epoch": "7", "note": "héllo"})
    got = read_safetensors(path)
    assert list(got) == sorted(SAMPLE)
    for name, (dtype, shape, data) in SAMPLE.items():
        assert got[name][0] == dtype
        assert got[name][1] == shape
        assert got[name][2].typecode == data.typecode
        assert got[name][2].tolist() == data.tolist()
    assert read_safetensors_metadata(path) == {"epoch": "7", "note": "héllo"}


def test_file_layout_follows_the_spec(tmp_path):
    path = tmp_path / "layout.safetensors"
    write_safetensors(path, SAMPLE, {"k": "v"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, "data section must start 8-byte aligned"
    header_text = raw[8 : 8 + n].decode()
    assert set(header_text[header_text.rindex("}") + 1 :]) <= {" "}, "header padded with spaces only"
    header = json.loads(header_text)
    assert header.pop("__metadata__") == {"k": "v"}
    assert list(header) == sorted(header), "tensor entries are sorted by name"
    spans = sorted(tuple(e["data_offsets"]) for e in header.values())
    position = 0
    for begin, end in spans:
        assert begin == position
        position = end
    assert position == len(raw) - 8 - n, "tensors tile the data section exactly"
    # Every tensor starts at a multiple of its element size.
    sizes = {"F32": 4, "F64": 8, "I64": 8, "BOOL": 1}
    for entry in header.values():
        assert entry["data_offsets"][0] % sizes[entry["dtype"]] == 0
    # The bytes are little-endian IEEE / two's complement.
    w = header["w"]["data_offsets"]
    assert struct.unpack("<6f", raw[8 + n + w[0] : 8 + n + w[1]]) == tuple(SAMPLE["w"][2])


def test_no_metadata_means_no_metadata_key(tmp_path):
    path = tmp_path / "plain.safetensors"
    write_safetensors(path, {"x": ("float32", (1,), array("f", [1.0]))})
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert "__metadata__" not in json.loads(path.read_bytes()[8 : 8 + n])
    assert read_safetensors_metadata(path) == {}


def test_write_accepts_safetensors_codes_and_plain_sequences(tmp_path):
    path = tmp_path / "codes.safetensors"
    write_safetensors(path, {"a": ("F64", (2,), [1, 2]), "m": ("BOOL", (2,), [True, 5])})
    got = read_safetensors(path)
    assert got["a"] == ("float64", (2,), array("d", [1.0, 2.0]))
    assert got["m"] == ("bool", (2,), array("b", [1, 1]))


@pytest.mark.parametrize(
    "tensors, metadata, message",
    [
        ({"x": ("float32", (3,), array("f", [1.0, 2.0]))}, None, "holds 3 elements but the data has 2"),
        ({"x": ("complex64", (1,), array("f", [1.0]))}, None, "cannot write dtype 'complex64'"),
        ({"x": ("float32", (-1,), array("f", [1.0]))}, None, "non-negative ints"),
        ({"__metadata__": ("float32", (1,), array("f", [1.0]))}, None, "reserved"),
        ({"": ("float32", (1,), array("f", [1.0]))}, None, "non-empty strings"),
        ({"x": ("float32", (1,))}, None, "expected (dtype_name, shape, array)"),
        ({"x": ("float32", (1,), array("f", [1.0]))}, {"epoch": 3}, "metadata must map str to str"),
    ],
)
def test_write_rejects_bad_input_before_touching_disk(tmp_path, tensors, metadata, message):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(ValueError) as info:
        write_safetensors(path, tensors, metadata)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


class _ExplodingArray(array):
    """An array whose bytes cannot be produced: the write fails after the header went out."""

    def tobytes(self):  # noqa: D102
        raise OSError("simulated disk failure")


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"old": ("float32", (1,), array("f", [42.0]))})
    before = path.read_bytes()
    tensors = {
        "a": ("float32", (2,), array("f", [1.0, 2.0])),
        "z": ("float32", (2,), _ExplodingArray("f", [3.0, 4.0])),
    }
    with pytest.raises(OSError, match="simulated disk failure"):
        write_safetensors(path, tensors)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"], "temp file removed"


def test_failed_first_write_creates_nothing(tmp_path):
    path = tmp_path / "new.safetensors"
    with pytest.raises(OSError):
        write_safetensors(path, {"z": ("float32", (1,), _ExplodingArray("f", [3.0]))})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- corruption


def _good_file(tmp_path) -> str:
    path = tmp_path / "good.safetensors"
    write_safetensors(path, SAMPLE)
    return str(path)


def _expect_error(path, *phrases):
    with pytest.raises(SafetensorsError) as info:
        read_safetensors(path)
    text = str(info.value)
    assert str(path) in text, text
    for phrase in phrases:
        assert phrase in text, text
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("keep", [0, 5, 8, 20, -1])
def test_truncated_files_raise(tmp_path, keep):
    good = _good_file(tmp_path)
    raw = open(good, "rb").read()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(raw[:keep] if keep >= 0 else raw[:keep])
    phrase = "shorter than the 8-byte header" if 0 <= keep < 8 else "truncated"
    _expect_error(cut, phrase)


def test_garbage_header_raises(tmp_path):
    path = tmp_path / "garbage.safetensors"
    junk = b"\x89PNG not json at all!!"
    path.write_bytes(struct.pack("<Q", len(junk)) + junk)
    _expect_error(path, "header is not valid JSON")


def test_random_bytes_raise(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(bytes(range(256)) * 4)
    # The first 8 bytes read as an enormous header length.
    _expect_error(path, "exceeds")


def test_header_must_be_an_object(tmp_path):
    _expect_error(_craft(tmp_path / "list.st", [1, 2], b""), "must be a JSON object")


def test_duplicate_names_raise(tmp_path):
    path = tmp_path / "dup.safetensors"
    entry = '{"dtype":"F32","shape":[1],"data_offsets":[%d,%d]}'
    raw = ('{"a":' + entry % (0, 4) + ',"a":' + entry % (4, 8) + "}").encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    _expect_error(path, "duplicate key 'a'")


def _entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


@pytest.mark.parametrize(
    "header, data, phrases",
    [
        ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 4, 12)}, 12, ["'a' and 'b' overlap"]),
        ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [1], 8, 12)}, 8, ["run past", "'b'"]),
        ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [1], 12, 16)}, 16, ["belong to no tensor"]),
        ({"a": _entry("F32", [2], 0, 8)}, 12, ["trailing bytes"]),
        ({"a": _entry("F32", [3], 0, 8)}, 8, ["needs 12 bytes", "span 8"]),
        ({"a": _entry("F32", [2], 8, 0)}, 8, ["end before they begin"]),
        ({"a": _entry("Q7", [2], 0, 8)}, 8, ["'Q7' is not a safetensors dtype"]),
        ({"a": _entry("F8_E4M3", [8], 0, 8)}, 8, ["'F8_E4M3' is not supported by puredl"]),
        ({"a": _entry("F32", [-2], 0, 8)}, 8, ["shape must be a list of non-negative ints"]),
        ({"a": _entry("F32", [2], 0, "8")}, 8, ["data_offsets must be [begin, end] ints"]),
        ({"a": {"dtype": "F32", "shape": [2]}}, 8, ["must have dtype, shape and data_offsets"]),
        ({"__metadata__": {"k": 1}, "a": _entry("F32", [2], 0, 8)}, 8, ["__metadata__ must map strings"]),
    ],
)
def test_corrupted_headers_raise(tmp_path, header, data, phrases):
    _expect_error(_craft(tmp_path / "bad.safetensors", header, bytes(data)), *phrases)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_safetensors(tmp_path / "nope.safetensors")


# --------------------------------------------------------------------------- interop with safetensors


def test_puredl_files_open_in_safetensors_torch(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open

    path = tmp_path / "ours.safetensors"
    write_safetensors(path, SAMPLE, {"producer": "puredl"})
    theirs = st.load_file(str(path))
    expected_dtypes = {
        "float32": torch.float32,
        "float64": torch.float64,
        "int64": torch.int64,
        "bool": torch.bool,
    }
    assert sorted(theirs) == sorted(SAMPLE)
    for name, (dtype, shape, data) in SAMPLE.items():
        t = theirs[name]
        assert t.dtype == expected_dtypes[dtype]
        assert tuple(t.shape) == shape
        want = [bool(v) for v in data] if dtype == "bool" else data.tolist()
        assert t.flatten().tolist() == want, name
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"producer": "puredl"}


def test_safetensors_torch_files_load_in_puredl(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    g = torch.Generator().manual_seed(0)
    ref = {
        "f32": torch.randn(3, 4, generator=g),
        "f64": torch.randn(5, generator=g, dtype=torch.float64),
        "i64": torch.randint(-(2**40), 2**40, (2, 2), generator=g),
        "bool": torch.rand(7, generator=g) > 0.5,
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 2),
        "i32": torch.randint(-(2**31), 2**31 - 1, (6,), generator=g, dtype=torch.int32),
        "i16": torch.tensor([-32768, 0, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, -1, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 128, 255], dtype=torch.uint8),
    }
    path = tmp_path / "theirs.safetensors"
    st.save_file(ref, str(path), metadata={"format": "pt"})
    got = read_safetensors(path)
    expected = {
        torch.float32: "float32",
        torch.float64: "float64",
        torch.int64: "int64",
        torch.bool: "bool",
        torch.int32: "int32",
        torch.int16: "int16",
        torch.int8: "int8",
        torch.uint8: "uint8",
    }
    for name, t in ref.items():
        dtype, shape, data = got[name]
        assert dtype == expected[t.dtype], name
        assert shape == tuple(t.shape), name
        if t.dtype == torch.bool:
            assert data.tolist() == [int(v) for v in t.flatten().tolist()]
        else:
            assert data.tolist() == t.flatten().tolist(), name
    assert read_safetensors_metadata(path) == {"format": "pt"}


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_loads_as_its_own_dtype(tmp_path, half):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    g = torch.Generator().manual_seed(1)
    values = torch.randn(4, 5, generator=g) * 100
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-7, 6e4])
    t = torch.cat([values.flatten(), special]).to(getattr(torch, half))
    path = tmp_path / f"{half}.safetensors"
    st.save_file({"h": t}, str(path))
    dtype, shape, data = read_safetensors(path)["h"]
    assert dtype == half and shape == (26,)
    assert data.tolist() == t.float().tolist()
    nan_path = tmp_path / "nan.safetensors"
    st.save_file({"n": torch.tensor([float("nan")], dtype=getattr(torch, half))}, str(nan_path))
    (value,) = read_safetensors(nan_path)["n"][2]
    assert value != value


def test_unicode_names_round_trip_with_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "names.safetensors"
    write_safetensors(path, {"층.가중치": ("float32", (1,), array("f", [1.0]))})
    assert list(st.load_file(str(path))) == ["층.가중치"]
    assert list(read_safetensors(path)) == ["층.가중치"]


# --------------------------------------------------------------------------- Tensor layer: save / load


def _state():
    import puredl

    g = random.Random(0)
    return {
        "layer.weight": puredl.tensor([[g.uniform(-1, 1) for _ in range(3)] for _ in range(4)]),
        "layer.bias": puredl.tensor([g.uniform(-1, 1) for _ in range(4)], dtype=puredl.float64),
        "steps": puredl.tensor(12345678901),
        "mask": puredl.tensor([True, False, True]),
    }


def test_save_load_round_trip(tmp_path):
    import puredl
    from puredl.tensor import Tensor

    state = _state()
    path = tmp_path / "model.safetensors"
    puredl.io.save(state, path, metadata={"epoch": "3"})
    loaded = puredl.io.load(path)
    assert list(loaded) == sorted(state)
    for name, t in state.items():
        got = loaded[name]
        assert isinstance(got, Tensor) and not got.requires_grad
        assert got.shape == t.shape and got.dtype is t.dtype, name
        assert got.tolist() == t.tolist(), name
    assert puredl.io.load_metadata(path) == {"epoch": "3"}


def test_save_writes_logical_row_major_order(tmp_path):
    import puredl

    x = puredl.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    path = tmp_path / "t.safetensors"
    puredl.io.save({"xt": x.T, "x": x}, path)
    loaded = puredl.io.load(path)
    assert loaded["xt"].shape == (3, 2) and loaded["xt"].tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    assert loaded["x"].tolist() == x.tolist()


def test_save_accepts_parameters(tmp_path):
    import puredl

    nn = pytest.importorskip("puredl.nn")
    p = nn.Parameter(puredl.tensor([[0.25, -0.5]]))
    path = tmp_path / "p.safetensors"
    puredl.io.save({"p": p}, path)
    assert puredl.io.load(path)["p"].tolist() == [[0.25, -0.5]]
    model = nn.Linear(3, 2)
    puredl.io.save(model.state_dict(), path)
    loaded = puredl.io.load(path)
    assert sorted(loaded) == sorted(model.state_dict())
    for name, value in model.state_dict().items():
        assert loaded[name].tolist() == value.tolist()
    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(loaded)
    x = puredl.tensor([[0.5, -1.0, 2.0]])
    assert fresh(x).tolist() == model(x).tolist()


def test_save_refuses_values_that_would_need_pickle(tmp_path):
    # nested checkpoints (issue #13) made lists and numbers savable; objects still are not
    import puredl

    path = tmp_path / "bad.safetensors"
    with pytest.raises(TypeError, match="value at 'w/1' is a object, which would need pickle"):
        puredl.io.save({"w": [1.0, object()]}, path)
    with pytest.raises(TypeError, match="key .* is a tuple; keys must be str"):
        puredl.io.save({(1, 2): puredl.tensor([1.0])}, path)
    with pytest.raises(TypeError, match="value at the top level is a set"):
        puredl.io.save({puredl.tensor([1.0])}, path)
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import puredl
    from puredl.tensor import Tensor

    path = tmp_path / "ckpt.safetensors"
    puredl.io.save({"w": puredl.tensor([1.0])}, path)
    before = path.read_bytes()
    bad = puredl.tensor([2.0, 3.0])
    original = Tensor.to_array

    def failing_to_array(self):
        if self is bad:
            raise OSError("simulated failure while reading the tensor")
        return original(self)

    monkeypatch.setattr(Tensor, "to_array", failing_to_array)
    with pytest.raises(OSError, match="simulated failure"):
        puredl.io.save({"a": puredl.tensor([0.0]), "w": bad}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_puredl_save_opens_in_safetensors_torch(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    import puredl

    state = _state()
    path = tmp_path / "ours.safetensors"
    puredl.io.save(state, path)
    theirs = st.load_file(str(path))
    for name, t in state.items():
        ref = torch.tensor(t.tolist(), dtype=getattr(torch, t.dtype.name))
        assert theirs[name].dtype == ref.dtype, name
        assert torch.equal(theirs[name], ref), name


def test_safetensors_torch_files_load_as_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    import puredl

    g = torch.Generator().manual_seed(2)
    ref = {
        "w": torch.randn(3, 5, generator=g),
        "h": torch.randn(4, generator=g).half(),
        "bf": torch.randn(2, 2, generator=g).bfloat16(),
        "ids": torch.tensor([[1, 2], [3, 4]], dtype=torch.int32),
        "d": torch.randn(2, generator=g, dtype=torch.float64),
    }
    path = tmp_path / "theirs.safetensors"
    st.save_file(ref, str(path))
    loaded = puredl.io.load(path)
    want_dtype = {"w": "float32", "h": "float16", "bf": "bfloat16", "ids": "int32", "d": "float64"}
    for name, t in ref.items():
        assert loaded[name].dtype.name == want_dtype[name], name
        assert loaded[name].shape == tuple(t.shape), name
        expected = (
            t.tolist() if t.dtype in (torch.int32, torch.float64, torch.float32) else t.float().tolist()
        )
        assert loaded[name].tolist() == expected, name
