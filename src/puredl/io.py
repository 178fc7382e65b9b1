"""Save and load tensors in the safetensors format, read and written in pure Python.

Layout of a safetensors file (https://github.com/huggingface/safetensors):
8-byte little-endian header length N, N bytes of JSON header
(``{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, "__metadata__": {...}}``),
then the raw little-endian tensor bytes, which the offsets index without holes or overlaps.

Two layers:

- the pure layer works on ``(dtype_name, shape, array.array)`` triples and needs no Tensor:
  :func:`write_safetensors`, :func:`read_safetensors`, :func:`read_safetensors_metadata`;
- the Tensor layer on top: :func:`save`, :func:`load`, :func:`load_metadata`.

>>> import puredl, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> puredl.save({"w": puredl.tensor([[1.0, 2.0]])}, path)
>>> puredl.load(path)["w"].tolist()
[[1.0, 2.0]]
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import tempfile
from array import array
from collections.abc import Mapping
from typing import Any, Union

from puredl.backends.pure_narrow import (
    BFloat16Buffer,
    Float16Buffer,
    Int8Buffer,
    round_bfloat16,
    round_float16,
)

PathLike = Union[str, "os.PathLike[str]"]
TensorRecord = tuple[str, tuple[int, ...], array]

# The safetensors crate refuses headers above 100 MB; so do we, before allocating them.
MAX_HEADER_BYTES = 100_000_000

# puredl dtype name -> (safetensors code, array typecode, bytes per element in the file)
_WRITE_FORMATS: dict[str, tuple[str, str, int]] = {
    "float64": ("F64", "d", 8),
    "float32": ("F32", "f", 4),
    "float16": ("F16", "f", 2),  # held in float32 storage, written as IEEE half
    "bfloat16": ("BF16", "f", 2),  # held in float32 storage, written as its top two bytes
    "int8": ("I8", "b", 1),
    "int64": ("I64", "q", 8),
    "int32": ("I32", "i", 4),
    "int16": ("I16", "h", 2),
    "uint8": ("U8", "B", 1),
    "bool": ("BOOL", "b", 1),
}
_CODE_TO_NAME = {code: name for name, (code, _, _) in _WRITE_FORMATS.items()}

# safetensors code -> (bytes per element, puredl dtype name it loads as)
_READ_FORMATS: dict[str, tuple[int, str]] = {
    "F64": (8, "float64"),
    "F32": (4, "float32"),
    "F16": (2, "float16"),
    "BF16": (2, "bfloat16"),
    "I64": (8, "int64"),
    "I32": (4, "int32"),
    "I16": (2, "int16"),
    "I8": (1, "int8"),
    "U32": (4, "int64"),
    "U16": (2, "int64"),
    "U8": (1, "uint8"),
    "BOOL": (1, "bool"),
}
# Codes the format defines that puredl cannot represent; named in the error message.
_KNOWN_UNSUPPORTED = {"U64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"}

# array typecodes for fixed-width integers (array's 'l'/'i' widths vary by platform).
_INT_TYPECODES = {
    (size, signed): next(tc for tc in candidates if array(tc).itemsize == size)
    for (size, signed), candidates in {
        (1, True): "b",
        (1, False): "B",
        (2, True): "h",
        (2, False): "H",
        (4, True): "il",
        (4, False): "IL",
        (8, True): "q",
    }.items()
}
_INT_CODES = {"I64": (8, True), "I32": (4, True), "I16": (2, True), "I8": (1, True)}
_INT_CODES.update({"U32": (4, False), "U16": (2, False), "U8": (1, False)})

_BIG_ENDIAN = sys.byteorder == "big"


class SafetensorsError(ValueError):
    """A safetensors file is malformed or holds something puredl cannot load."""


# --------------------------------------------------------------------------- writing


def write_safetensors(
    path: PathLike,
    tensors: Mapping[str, TensorRecord],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``{name: (dtype_name, shape, array)}`` to ``path`` as a safetensors file, atomically.

    ``dtype_name`` is a puredl name (``float32``, ``float64``, ``int64``, ``bool``) or the
    matching safetensors code (``F32``, ``F64``, ``I64``, ``BOOL``). The data goes to a temporary
    file in the same folder, which replaces ``path`` only once it is complete: a failure leaves
    no partial file and any previous file at ``path`` intact.

    >>> import tempfile, os
    >>> from array import array
    >>> p = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> write_safetensors(p, {"x": ("float32", (2,), array("f", [1.0, 2.0]))}, {"note": "hi"})
    >>> read_safetensors(p)["x"]
    ('float32', (2,), array('f', [1.0, 2.0]))
    """
    path = os.fspath(path)
    entries = [_prepare_entry(path, name, record) for name, record in _items(path, tensors)]
    header_bytes = _header_bytes(path, entries, metadata)

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file 0600; give it the mode open() would (0666 less the umask)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header_bytes)))
            f.write(header_bytes)
            for _, code, _, data, _ in entries:
                f.write(
                    _little_endian_bytes(data) if code not in ("F16", "BF16") else _encode_half(code, data)
                )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        # Whatever failed (a value, the disk, Ctrl-C), the half-written file must not survive.
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise


def _current_umask() -> int:
    try:  # Linux states it without changing it (os.umask briefly changes it for every thread)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _items(path: str, tensors: Mapping[str, TensorRecord]) -> list[tuple[str, TensorRecord]]:
    if not isinstance(tensors, Mapping):
        raise TypeError(f"{path}: tensors must be a mapping name -> record, got {type(tensors).__name__}")
    return list(tensors.items())


def _prepare_entry(path: str, name: Any, record: Any) -> tuple[str, str, tuple[int, ...], array, int]:
    """Check one record and return (name, code, shape, array in the stored typecode, itemsize)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: tensor names must be non-empty strings, got {name!r}")
    if name == "__metadata__":
        raise ValueError(f"{path}: '__metadata__' is reserved by the safetensors format; rename the tensor")
    try:
        dtype_name, shape, data = record
    except (TypeError, ValueError):
        raise ValueError(
            f"{path}: tensor {name!r}: expected (dtype_name, shape, array), got {record!r}"
        ) from None
    dtype_name = _CODE_TO_NAME.get(dtype_name, dtype_name)
    if dtype_name not in _WRITE_FORMATS:
        raise ValueError(
            f"{path}: tensor {name!r}: cannot write dtype {dtype_name!r}; "
            f"supported: {', '.join(_WRITE_FORMATS)}"
        )
    code, typecode, itemsize = _WRITE_FORMATS[dtype_name]
    shape = _check_shape(path, name, shape)
    if not isinstance(data, array) or data.typecode != typecode:
        data = array(typecode, data)
    if dtype_name == "bool" and any(v not in (0, 1) for v in data):
        data = array("b", (1 if v else 0 for v in data))
    if len(data) != math.prod(shape):
        raise ValueError(
            f"{path}: tensor {name!r}: shape {shape} holds {math.prod(shape)} elements "
            f"but the data has {len(data)}"
        )
    return name, code, shape, data, itemsize


def _check_shape(path: str, name: str, shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(
            f"{path}: tensor {name!r}: shape must be a sequence of ints, got {shape!r}"
        ) from None
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise ValueError(f"{path}: tensor {name!r}: shape must hold non-negative ints, got {shape!r}")
    return dims


def _header_bytes(path: str, entries: list, metadata: Mapping[str, str] | None) -> bytes:
    header: dict[str, Any] = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise ValueError(f"{path}: metadata must map str to str, got {metadata!r}")
        header["__metadata__"] = dict(metadata)
    # Widest elements first keeps every tensor aligned to its itemsize (as the safetensors crate does).
    entries.sort(key=lambda e: (-e[4], e[0]))
    offset = 0
    layout = {}
    for name, code, shape, data, itemsize in entries:
        nbytes = len(data) * itemsize
        layout[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header.update(sorted(layout.items()))
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    # Pad with spaces to a multiple of 8 so the data section starts aligned.
    return raw + b" " * (-(8 + len(raw)) % 8)


def _encode_half(code: str, data: array) -> bytes:
    """float32 storage as little-endian F16 or BF16 bytes (values rounded first, as a cast would)."""
    if code == "F16":
        return struct.pack(f"<{len(data)}e", *round_float16(data))
    raw = round_bfloat16(data).tobytes()  # exact for bfloat16 values: the low two bytes are zero
    out = bytearray(len(raw) // 2)
    hi = (0, 1) if _BIG_ENDIAN else (2, 3)  # the float32's top two bytes, in file (little-endian) order
    out[0::2] = raw[hi[1] :: 4] if _BIG_ENDIAN else raw[hi[0] :: 4]
    out[1::2] = raw[hi[0] :: 4] if _BIG_ENDIAN else raw[hi[1] :: 4]
    return bytes(out)


def _little_endian_bytes(data: array) -> bytes:
    if _BIG_ENDIAN and data.itemsize > 1:
        data = array(data.typecode, data)
        data.byteswap()
    return data.tobytes()


# --------------------------------------------------------------------------- reading


def read_safetensors(path: PathLike) -> dict[str, TensorRecord]:
    """Read a safetensors file into ``{name: (dtype_name, shape, array)}``, sorted by name.

    F16 and BF16 come back as ``float16``/``bfloat16`` (values in float32 storage), U32/U16 as
    ``int64``, the other types as themselves. A truncated or malformed file raises
    :class:`SafetensorsError` (a ValueError) naming the file and the problem.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        entries, _, data_start = _read_header(path, f)
        out: dict[str, TensorRecord] = {}
        for name in sorted(entries):
            code, shape, (begin, end) = entries[name]
            f.seek(data_start + begin)
            raw = f.read(end - begin)
            if len(raw) != end - begin:
                raise SafetensorsError(f"{path}: file is truncated inside tensor {name!r}")
            out[name] = (_READ_FORMATS[code][1], shape, _decode(code, raw))
    return out


def read_safetensors_metadata(path: PathLike) -> dict[str, str]:
    """The ``__metadata__`` map of a safetensors file ({} when it has none)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        return _read_header(path, f)[1]


def _read_header(
    path: str, f: Any
) -> tuple[dict[str, tuple[str, tuple[int, ...], tuple[int, int]]], dict, int]:
    """Parse and validate the header; return (entries, metadata, byte offset of the data section)."""
    file_size = os.fstat(f.fileno()).st_size
    prefix = f.read(8)
    if len(prefix) < 8:
        raise SafetensorsError(
            f"{path}: not a safetensors file: {file_size} bytes, shorter than the 8-byte header length"
        )
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > MAX_HEADER_BYTES and prefix.startswith((b"PK\x03\x04", b"\x80")):
        # torch.save writes a zip of pickles (or a bare pickle): say so rather than "corrupted"
        raise SafetensorsError(
            f"{path}: this is a pickle file (torch.save's format); puredl never unpickles. Convert it "
            "once where torch is installed: safetensors.torch.save_file(torch.load(path), new_path) "
            "for a state dict, or puredl.from_torch on each tensor and puredl.save"
        )
    if header_len > MAX_HEADER_BYTES:
        raise SafetensorsError(
            f"{path}: header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit "
            "(not a safetensors file, or corrupted)"
        )
    if 8 + header_len > file_size:
        raise SafetensorsError(
            f"{path}: file is truncated: header says {header_len} bytes but only {file_size - 8} follow"
        )
    raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, _DuplicateKey) as exc:
        raise SafetensorsError(f"{path}: header is not valid JSON: {exc}") from None
    except RecursionError:
        # json's decoder recurses per nesting level; no real header nests more than 3 deep
        raise SafetensorsError(
            f"{path}: header JSON is nested too deeply to be a safetensors header"
        ) from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header must be a JSON object, got {type(header).__name__}")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings, got {metadata!r}")

    data_start = 8 + header_len
    data_size = file_size - data_start
    entries = {name: _parse_entry(path, name, info, data_size) for name, info in header.items()}
    _check_coverage(path, entries, data_size)
    return entries, metadata, data_start


def _parse_entry(
    path: str, name: str, info: Any, data_size: int
) -> tuple[str, tuple[int, ...], tuple[int, int]]:
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise SafetensorsError(f"{where}: entry must have dtype, shape and data_offsets, got {info!r}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str):
        raise SafetensorsError(f"{where}: dtype must be a string such as 'F32', got {code!r}")
    if code not in _READ_FORMATS:
        why = "is not supported by puredl" if code in _KNOWN_UNSUPPORTED else "is not a safetensors dtype"
        raise SafetensorsError(f"{where}: dtype {code!r} {why}; readable: {', '.join(_READ_FORMATS)}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise SafetensorsError(f"{where}: shape must be a list of non-negative ints, got {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise SafetensorsError(f"{where}: data_offsets must be [begin, end] ints, got {offsets!r}")
    begin, end = offsets
    if end < begin:
        raise SafetensorsError(f"{where}: data_offsets {offsets} end before they begin")
    if end > data_size:
        raise SafetensorsError(
            f"{where}: data_offsets {offsets} run past the data section of {data_size} bytes "
            "(file truncated or offsets corrupted)"
        )
    expected = math.prod(shape) * _READ_FORMATS[code][0]
    if end - begin != expected:
        raise SafetensorsError(
            f"{where}: shape {shape} of {code} needs {expected} bytes but data_offsets {offsets} "
            f"span {end - begin}"
        )
    return code, tuple(shape), (begin, end)


def _check_coverage(path: str, entries: dict, data_size: int) -> None:
    """Tensors must tile the data section exactly: no overlaps, no holes (the format's rule)."""
    position, previous = 0, None
    for name, (_, _, (begin, end)) in sorted(entries.items(), key=lambda item: item[1][2]):
        if begin < position:
            raise SafetensorsError(
                f"{path}: tensors {previous!r} and {name!r} overlap (bytes {begin}..{position} shared)"
            )
        if begin > position:
            raise SafetensorsError(
                f"{path}: bytes {position}..{begin} of the data section belong to no tensor"
            )
        position, previous = end, name
    if position != data_size:
        raise SafetensorsError(
            f"{path}: data section has {data_size} bytes but the tensors cover {position} "
            "(trailing bytes or a corrupted header)"
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"duplicate key {key!r}")
        out[key] = value
    return out


def _decode(code: str, raw: bytes) -> array:
    """Turn little-endian bytes of safetensors dtype ``code`` into a puredl storage array."""
    if code == "F16":
        return Float16Buffer("f", struct.unpack(f"<{len(raw) // 2}e", raw))
    if code == "BF16":
        # bfloat16 is the top half of a float32: put its two bytes above two zero bytes.
        widened = bytearray(2 * len(raw))
        hi = (0, 1) if _BIG_ENDIAN else (2, 3)
        widened[hi[0] :: 4] = raw[1::2] if _BIG_ENDIAN else raw[0::2]
        widened[hi[1] :: 4] = raw[0::2] if _BIG_ENDIAN else raw[1::2]
        return BFloat16Buffer("f", bytes(widened))
    if code in ("F32", "F64"):
        out = array("f" if code == "F32" else "d")
    elif code == "BOOL":
        out = array("b")
    elif code == "I8":
        return Int8Buffer("b", raw)
    else:
        out = array(_INT_TYPECODES[_INT_CODES[code]])
    out.frombytes(raw)
    if _BIG_ENDIAN and out.itemsize > 1:
        out.byteswap()
    if code == "BOOL":
        return array("b", (1 if v else 0 for v in out)) if any(v not in (0, 1) for v in out) else out
    kept = {"I64": "q", "I32": "i", "I16": "h", "U8": "B", "U32": "q", "U16": "q"}
    if code in kept and out.typecode != kept[code]:
        return array(kept[code], out)
    return out


# --------------------------------------------------------------------------- Tensor layer


def save(obj: Any, path: PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Save tensors to a safetensors file: a ``{name: Tensor}`` map or a nested checkpoint.

    A flat map (e.g. ``model.state_dict()``) becomes a plain safetensors file any tool reads.
    A nested checkpoint (``{"model": sd, "optimizer": opt.state_dict(), "iter": 5}``: dicts,
    lists, tuples, numbers, str, bool, None and Tensors) keeps its structure as JSON in the
    file's metadata (see :mod:`puredl.serialization`); nothing is pickled, and what would need
    pickle is refused. Parameters are saved as plain tensors. The write is atomic: a failure
    leaves any previous file at ``path`` untouched. ``metadata`` is an optional str -> str map.

    >>> import puredl, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> puredl.save({"b": puredl.tensor([0.5])}, p, metadata={"epoch": "3"})
    >>> puredl.io.load_metadata(p)
    {'epoch': '3'}
    """
    from puredl import serialization

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"save: expected a file path, got {type(path).__name__} (puredl writes files, not file objects)"
        )
    if serialization.is_flat_state_dict(obj):
        tensors, tree = dict(obj), None
    else:
        tensors, tree = serialization.encode(obj)
    if tree is not None:
        if metadata is not None and serialization.TREE_KEY in metadata:
            raise ValueError(f"save: metadata key {serialization.TREE_KEY!r} is reserved by puredl")
        metadata = {**(metadata or {}), serialization.TREE_KEY: tree}
    records: dict[str, TensorRecord] = {
        name: (value.dtype.name, tuple(value.shape), value.to_array()) for name, value in tensors.items()
    }
    write_safetensors(path, records, metadata)


def load(
    path: PathLike, map_location: Any = None, *, weights_only: bool | None = None, mmap: bool | None = None
) -> Any:
    """Load what :func:`save` wrote: ``{name: Tensor}`` (sorted by name) or the nested checkpoint.

    Every dtype keeps its own (F16 float16, BF16 bfloat16, I8 int8, ...) except U32/U16, which
    load as int64. ``map_location`` moves the tensors as in ``torch.load`` (a device, a dict
    ``{"cuda:0": "cpu"}`` or a callable ``fn(tensor, location)``). ``weights_only`` and
    ``mmap`` are accepted for torch compatibility: nothing is ever unpickled, and the file is
    read into memory. Errors name the file and what is wrong with it.

    >>> import puredl, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> puredl.save({"idx": puredl.tensor([1, 2, 3])}, p)
    >>> puredl.load(p)["idx"].dtype.name
    'int64'
    """
    import puredl
    from puredl import serialization
    from puredl.tensor import Tensor

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"load: expected a file path, got {type(path).__name__} (puredl reads files, not file objects)"
        )
    move = serialization.location_mapper(map_location)
    tensors = {}
    for name, (dtype_name, shape, data) in read_safetensors(path).items():
        t = Tensor.from_array(data, shape, dtype=getattr(puredl, dtype_name))
        tensors[name] = t if move is None else move(t)
    tree = read_safetensors_metadata(path).get(serialization.TREE_KEY)
    if tree is None:
        return tensors
    return serialization.decode(tree, tensors, os.fspath(path))


def load_metadata(path: PathLike) -> dict[str, str]:
    """The str -> str metadata stored with :func:`save` ({} when none)."""
    return read_safetensors_metadata(path)


__all__ = [
    "SafetensorsError",
    "load",
    "load_metadata",
    "read_safetensors",
    "read_safetensors_metadata",
    "save",
    "write_safetensors",
]
