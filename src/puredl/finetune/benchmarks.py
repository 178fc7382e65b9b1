"""Multiple-choice benchmark files: KMMLU, KorMedMCQA and puredl's own MCQ JSONL, plus few-shot picks.

- ``kmmlu``: CSV/JSONL with ``question, A, B, C, D, answer`` (1-based), optional ``Category``.
- ``kormedmcqa``: JSONL/CSV with ``question, A..E, answer`` (1-based), optional ``subject``, ``cot``.
- ``jsonl``: puredl's MCQ layout (``finetune/data/medical_mcq.jsonl``): ``question``, ``A``..``E``
  or ``options`` (list or dict), ``answer`` 1-based or a letter, optional ``id``, ``subject``,
  ``split``, ``cot``/``explanation``.

Texts are kept exactly as written (the harness strips only the question), so prompts match
lm-evaluation-harness byte for byte. 4 or 5 options (``kmmlu`` is always 4). A malformed row
raises ``BenchmarkFormatError`` naming file, line and field.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "k.jsonl"
>>> _ = p.write_text('{"question": "1+1?", "A": "1", "B": "2", "C": "3", "D": "4", "answer": 2}\\n')
>>> item = load_benchmark(p, "kmmlu")[0]
>>> item.options, item.answer, item.id
(('1', '2', '3', '4'), 1, 'k:1')
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from puredl.finetune.errors import FinetuneError

FORMATS = ("kmmlu", "kormedmcqa", "jsonl")
SAMPLERS = ("random", "first_n")
FEWSHOT_SEED = 1234  # lm-evaluation-harness's default fewshot_random_seed
DEFAULT_SAMPLER = {"kmmlu": "random", "kormedmcqa": "first_n", "jsonl": "first_n"}  # as the harness's tasks
_CATEGORY_KEYS = {"kmmlu": ("category",), "kormedmcqa": ("subject",), "jsonl": ("subject", "category")}


class BenchmarkError(FinetuneError, ValueError):
    """A benchmark evaluation cannot run as asked (the message says what to change)."""


class BenchmarkFormatError(BenchmarkError):
    """A benchmark file is missing, unreadable, or has a row without a needed field."""


@dataclass(frozen=True)
class BenchmarkItem:
    """One question: texts as written, ``answer`` 0-based."""

    id: str
    question: str
    options: tuple[str, ...]
    answer: int
    category: str = ""
    split: str = ""
    cot: str = ""


def load_benchmark(path: str | Path, fmt: str, split: str | None = None) -> list[BenchmarkItem]:
    """All questions of a benchmark file (only those whose ``split`` field equals ``split`` if given)."""
    if fmt not in FORMATS:
        raise BenchmarkFormatError(f"unknown benchmark format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path = Path(path)
    items = [_item(row, fmt, path, line) for line, row in _rows(path)]
    if split is not None:
        splits = sorted({i.split for i in items})
        items = [i for i in items if i.split == split]
        if not items:
            raise BenchmarkFormatError(f"{path}: no rows with split {split!r} (splits present: {splits})")
    if not items:
        raise BenchmarkFormatError(f"{path}: no questions")
    return items


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row with lower-cased keys) for a .jsonl, .json or .csv file."""
    if not path.is_file():
        raise BenchmarkFormatError(f"benchmark file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkFormatError(f"cannot read benchmark file {path}: {exc}") from exc
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if not header:
            raise BenchmarkFormatError(f"{path}: empty CSV file (expected a header row)")
        keys = [h.strip().lower() for h in header]
        line = reader.line_num + 1
        for values in reader:
            if values:
                if len(values) != len(keys):
                    raise BenchmarkFormatError(
                        f"{path}:{line}: {len(values)} fields, the header has {len(keys)}"
                    )
                yield line, dict(zip(keys, values))
            line = reader.line_num + 1
    elif suffix in (".jsonl", ".json"):
        if suffix == ".json" and text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BenchmarkFormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
            for i, row in enumerate(rows, start=1):
                yield i, _as_dict(row, f"{path}[{i - 1}]")
            return
        for i, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise BenchmarkFormatError(f"{path}:{i}: not valid JSON ({exc.msg})") from exc
                yield i, _as_dict(row, f"{path}:{i}")
    else:
        raise BenchmarkFormatError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json or .csv)")


def _as_dict(row: object, where: str) -> dict:
    if not isinstance(row, dict):
        raise BenchmarkFormatError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    return {str(k).strip().lower(): v for k, v in row.items()}


def _text(value: object) -> str | None:
    """A field as text, as the harness's Jinja would render it; None when absent or blank."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text if text.strip() else None


def _item(row: dict, fmt: str, path: Path, line: int) -> BenchmarkItem:
    where = f"{path}:{line}"
    question = _text(row.get("question"))
    if question is None:
        raise BenchmarkFormatError(f"{where}: field 'question' is missing or empty")
    options = _options(row, fmt, where)
    answer = _answer(row.get("answer"), len(options), fmt, where)
    category = next((t for k in _CATEGORY_KEYS[fmt] if (t := _text(row.get(k))) is not None), "")
    ident = _text(row.get("id")) or f"{path.stem}:{line}"
    cot = _text(row.get("cot")) or _text(row.get("explanation")) or ""
    return BenchmarkItem(ident, question, options, answer, category, _text(row.get("split")) or "", cot)


def _options(row: dict, fmt: str, where: str) -> tuple[str, ...]:
    listed = row.get("options") if fmt == "jsonl" else None
    if isinstance(listed, list):
        row = {**row, **{k: v for k, v in zip("abcde", listed)}}
        if len(listed) not in (4, 5):
            raise BenchmarkFormatError(f"{where}: field 'options' lists {len(listed)} options; need 4 or 5")
    elif isinstance(listed, dict):
        row = {**row, **{str(k).strip().lower(): v for k, v in listed.items()}}
    options = []
    for letter in "abcd":
        text = _text(row.get(letter))
        if text is None:
            raise BenchmarkFormatError(f"{where}: field '{letter.upper()}' (option) is missing or empty")
        options.append(text)
    fifth = _text(row.get("e"))
    if fifth is not None:
        if fmt == "kmmlu":
            raise BenchmarkFormatError(
                f"{where}: field 'E' found, but KMMLU rows have 4 options A-D (use --format kormedmcqa)"
            )
        options.append(fifth)
    return tuple(options)


def _answer(raw: object, n_options: int, fmt: str, where: str) -> int:
    """1-based answer (int, float or digit string; a letter too in puredl's jsonl) -> 0-based."""
    text = "" if raw is None or isinstance(raw, bool) else str(raw).strip()
    if isinstance(raw, float) and raw.is_integer():
        text = str(int(raw))
    if text.isdigit() and 1 <= int(text) <= n_options:
        return int(text) - 1
    if fmt == "jsonl" and len(text) == 1 and text.upper() in "ABCDE"[:n_options]:
        return "ABCDE".index(text.upper())
    allowed = f"1-{n_options}" + (f" or A-{'ABCDE'[n_options - 1]}" if fmt == "jsonl" else "")
    shown = "missing" if raw is None else repr(raw)
    raise BenchmarkFormatError(f"{where}: field 'answer' is {shown}; expected {allowed}")


def fewshot_sets(
    items: Sequence[BenchmarkItem],
    pool: Sequence[BenchmarkItem],
    k: int,
    sampler: str = "first_n",
    seed: int = FEWSHOT_SEED,
) -> list[list[BenchmarkItem]]:
    """The k examples shown before each item, drawn as lm-evaluation-harness draws them.

    ``random`` (the harness's default sampler, used by kmmlu): one ``random.Random(seed)`` for the
    whole run, ``sample(pool, k)`` per item in order. ``first_n`` (kormedmcqa): the pool's first k.
    When the pool holds the item itself (same split), the item is left out, as the harness does.

    >>> pool = [BenchmarkItem(str(i), "q", ("a", "b", "c", "d"), 0) for i in range(3)]
    >>> [s.id for s in fewshot_sets(pool[:1], pool, 2)[0]]
    ['1', '2']
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown few-shot sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    if k <= 0:
        return [[] for _ in items]
    pool = list(pool)
    ids = {p.id for p in pool}
    if k > len(pool) - (1 if any(i.id in ids for i in items) else 0):
        raise BenchmarkFormatError(f"{k}-shot asked, but the few-shot pool has only {len(pool)} questions")
    rnd = random.Random(seed)
    out = []
    for item in items:
        if sampler == "first_n":
            out.append([p for p in pool if p != item][:k])
        elif item in pool:
            out.append([p for p in rnd.sample(pool, k + 1) if p != item][:k])
        else:
            out.append(rnd.sample(pool, k))
    return out
