"""Atomic file and folder writes for the whole package, and the naming of their temporaries.

Every file puredl writes goes to ``.NAME.tmp-PID`` beside its target and is renamed over it, so
a process killed at any moment leaves the old file or the new one, never half of one. Folders
go the same way (``replace_dir``), and a folder is only ever replaced when puredl made it:
it carries the ``.puredl`` marker, is empty, or holds nothing the new folder would not
rewrite. Temporaries left by killed processes are recognised by name and swept.

>>> import tempfile
>>> p = Path(tempfile.mkdtemp()) / "a.json"
>>> _ = write_json(p, {"x": 1}); p.read_text()
'{\\n  "x": 1\\n}'
>>> is_stale_temporary(p.with_name(".a.json.tmp-999999999"))
True
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from puredl._faults import fault_point

MARKER = ".puredl"  # written into folders whose whole content puredl owns (a merged model folder)
_TEMP = re.compile(r"^\..+\.(?:tmp|old)-(\d+)$")  # .NAME.tmp-PID / .NAME.old-PID (files and folders)
# tempfile.mkdtemp(prefix=".NAME-") folders of save_lora and older checkpoints (no pid in the name)
_MKDTEMP = re.compile(r"^\.(?:ckpt|lora|lora_\d+|adapter|sequential)-[a-z0-9_]{8}$")


class UnsafeReplaceError(OSError):
    """``replace_dir`` was asked to replace a folder that puredl did not write."""


def temp_path(path: Path) -> Path:
    """``.NAME.tmp-PID`` beside ``path`` (the one temporary name puredl uses)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            fault_point(f"write:{path.name}")
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # a full disk must not leave the temporary behind
        if exc.filename is None:  # write() and fsync() errors do not say which file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (paths become strings, tensors numbers)."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def mark_as_puredl_output(folder: Path, kind: str) -> None:
    """Write the ``.puredl`` marker: this folder's whole content is puredl's to replace."""
    (Path(folder) / MARKER).write_text(json.dumps({"written_by": "puredl", "kind": kind}) + "\n")


def is_replaceable(dst: Path, src: Path | None = None) -> bool:
    """Whether replacing folder ``dst`` loses nothing a user made.

    True when ``dst`` is missing or empty, carries the ``.puredl`` marker, or (given the new
    content ``src``) every file in it would be rewritten by ``src``.
    """
    dst = Path(dst)
    if not dst.exists():
        return True
    if not dst.is_dir():
        return False
    if (dst / MARKER).is_file() or not any(dst.iterdir()):
        return True
    if src is None:
        return False
    for path in dst.rglob("*"):
        if not path.is_dir() and not (Path(src) / path.relative_to(dst)).exists():
            return False
    return True


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing a ``dst`` puredl wrote with as short a gap as possible.

    Raises ``UnsafeReplaceError`` (nothing moved) when ``dst`` holds anything ``src`` would not
    rewrite and no ``.puredl`` marker: a folder puredl did not create is never removed.
    """
    src, dst = Path(src), Path(dst)
    if not is_replaceable(dst, src):
        raise UnsafeReplaceError(
            f"{dst} already exists and holds files puredl did not write; refusing to replace it "
            "(choose another folder, or empty it yourself)"
        )
    fault_point(f"replace_dir:{dst.name}")
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def move_into(src: Path, dst: Path) -> None:
    """Move every entry of folder ``src`` into ``dst`` (same names replaced, the rest kept); drop ``src``."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        target = dst / entry.name
        if entry.is_dir() and target.is_dir():
            move_into(entry, target)
        elif entry.is_dir() and target.exists():
            raise UnsafeReplaceError(f"{target} is a file where a folder must go; refusing to replace it")
        elif target.is_dir():
            raise UnsafeReplaceError(f"{target} is a folder where a file must go; refusing to replace it")
        else:
            os.replace(entry, target)
    src.rmdir()


def is_stale_temporary(path: Path, folder_locked: bool = False) -> bool:
    """A puredl temporary (``.NAME.tmp-PID`` / ``.NAME.old-PID``) whose process is gone.

    ``folder_locked``: this process holds the folder's run lock, so every temporary in it that
    is not this process's own is stale (pid reuse cannot fool it, and pid-less names count).
    """
    name = Path(path).name
    match = _TEMP.match(name)
    if folder_locked:
        return (bool(match) and int(match.group(1)) != os.getpid()) or bool(_MKDTEMP.match(name))
    return bool(match) and not pid_alive(int(match.group(1)))


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OverflowError:
        return False
    return True


def sweep_stale_temporaries(folder: Path, folder_locked: bool = False) -> list[Path]:
    """Remove temporaries of puredl's own naming left by killed processes under ``folder``.

    Only names puredl makes are touched, and only when the process that made them is dead;
    returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    for path in sorted(folder.rglob(".*"), key=lambda p: len(p.parts)):
        if not is_stale_temporary(path, folder_locked) or not path.exists():
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
