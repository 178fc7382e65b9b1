"""The three phases' data: bundled Korean medical files and loaders for user files in the same formats.

Each bundled file (``puredl/finetune/data/*.jsonl``, written for this project) has a fixed
``"split"`` field, ``train`` or ``test``:

- ``korean_text.jsonl``: Korean sentences, everyday and health-news style (``text``, ``style``);
- ``medical_terms.jsonl``: a medical dictionary (``ko``, ``en``, ``definition``, ``category``);
- ``medical_mcq.jsonl``: five-option questions in the KorMedMCQA layout (``question``, ``A``..``E``,
  ``answer`` 1-5, ``subject``).

User files may be JSONL, JSON (a list of objects) or CSV (KorMedMCQA's own CSVs load as they
are), plus plain text (one sentence per line) for ``korean_text``. A record without a split
field belongs to every split: pass separate files for training and evaluation. ``max_samples``
keeps the first N records of the split (the bundled files are stored shuffled), so the
terminology metric knows which terms a run with ``max_samples >= max_eval`` was taught.

>>> examples = load_phase_examples("medical_terms", max_samples=2)
>>> len(examples), examples[0].prompt
(4, '')
>>> load_mcq("test")[0].answer_letter in "ABCDE"
True
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
KINDS = ("korean_text", "medical_terms", "medical_mcq")
BUNDLED = {kind: DATA_DIR / f"{kind}.jsonl" for kind in KINDS}
SPLITS = ("train", "test", "all")
LETTERS = "ABCDE"

# split names used by other datasets (KorMedMCQA has train/dev/test) -> ours
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "test": "test",
    "dev": "test",
    "valid": "test",
    "validation": "test",
    "eval": "test",
    "heldout": "test",
    "held-out": "test",
}
# accepted column names for each field, first match wins
_TEXT_KEYS = ("text", "sentence", "content")
_KO_KEYS = ("ko", "korean", "term_ko", "term")
_EN_KEYS = ("en", "english", "term_en")
_DEF_KEYS = ("definition", "definition_ko", "meaning", "description")
_EXPLANATION_KEYS = ("cot", "explanation", "rationale")


class DataError(ValueError):
    """A data file is missing, unreadable or has a record without a needed field."""


@dataclass
class TextExample:
    """One training example: ``prompt`` (context, masked out of the loss) then ``text`` (trained on).

    >>> TextExample("혈압이 높다.").prompt
    ''
    """

    text: str
    prompt: str = ""


@dataclass(frozen=True)
class TermEntry:
    """A dictionary entry: Korean term, English term, short Korean definition."""

    ko: str
    en: str
    definition: str = ""
    category: str = ""
    split: str = ""
    id: str = ""


@dataclass(frozen=True)
class MCQuestion:
    """A multiple-choice question; ``answer`` is the 0-based index of the right option.

    >>> MCQuestion("?", ("a", "b", "c", "d", "e"), 1).answer_letter
    'B'
    """

    question: str
    options: tuple[str, ...]
    answer: int
    subject: str = ""
    split: str = ""
    id: str = ""
    explanation: str = field(default="", compare=False)

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]

    @property
    def answer_text(self) -> str:
        return self.options[self.answer]


# ----------------------------------------------------------------------------- prompt templates
# Training formats (what the phases train on) and the probes the metrics ask with.

MCQ_INSTRUCTION = "다음 질문에 가장 알맞은 답을 고르시오."
TERM_DIRECTIONS = ("ko_to_en", "en_to_ko")
# terminology probes in the trained format: the training line's start, then the other term up to
# the "):" that follows it in training (one token in Gemma's vocabulary, so the probe ends on
# exactly the tokens that training saw)
TERM_PROBES = {
    "ko_to_en": ("{ko}(", "{en}):"),
    "en_to_ko": ("{en}(", "{ko}):"),
}
# the transfer probe: a quoted question never used in training; the closing quote ends the term
TERM_TRANSFER_TEMPLATES = {
    "ko_to_en": ('한국어 의학 용어 "{ko}"의 영어 이름은 "', '{en}"'),
    "en_to_ko": ('영어 의학 용어 "{en}"의 한국어 이름은 "', '{ko}"'),
}


def term_text(entry: TermEntry, direction: str = "ko_to_en") -> str:
    """A phase-1 training line of a dictionary entry: ``ko(en): definition`` (or ``en(ko): ...``).

    >>> term_text(TermEntry("고혈압", "hypertension", "혈압이 높은 상태."))
    '고혈압(hypertension): 혈압이 높은 상태.'
    >>> term_text(TermEntry("고혈압", "hypertension"), "en_to_ko")
    'hypertension(고혈압)'
    """
    if direction not in TERM_DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {', '.join(TERM_DIRECTIONS)}")
    first, second = (entry.ko, entry.en) if direction == "ko_to_en" else (entry.en, entry.ko)
    return f"{first}({second}): {entry.definition}" if entry.definition else f"{first}({second})"


def term_lines(entry: TermEntry) -> list[str]:
    """Both training lines of an entry, ``ko(en): def`` and ``en(ko): def``: both directions are taught."""
    return [term_text(entry, d) for d in TERM_DIRECTIONS]


def mcq_prompt(q: MCQuestion) -> str:
    """The question with its lettered options, ending in ``정답:`` (the answer follows)."""
    lines = [MCQ_INSTRUCTION, f"질문: {q.question}"]
    lines += [f"{LETTERS[i]}. {opt}" for i, opt in enumerate(q.options)]
    lines.append("정답:")
    return "\n".join(lines)


def mcq_answer_text(q: MCQuestion, index: int) -> str:
    """The continuation for option ``index``: `` B. option text`` (what phase 2 trains on)."""
    return f" {LETTERS[index]}. {q.options[index]}"


def mcq_cloze_prompt(q: MCQuestion) -> str:
    """The question without its options (cloze probe, OLMES CF style); the answer text follows ``정답:``.

    >>> mcq_cloze_prompt(MCQuestion("혈압의 단위는?", ("a", "b", "c", "d", "e"), 0))
    '질문: 혈압의 단위는?\\n정답:'
    """
    return f"질문: {q.question}\n정답:"


def mcq_example(q: MCQuestion) -> TextExample:
    """Phase-2 training example: the question is the (masked) prompt, the right answer the target."""
    target = mcq_answer_text(q, q.answer)
    if q.explanation:
        target += f"\n해설: {q.explanation}"
    return TextExample(text=target, prompt=mcq_prompt(q))


# ----------------------------------------------------------------------------- reading files


def _records(path: Path, kind: str) -> Iterator[tuple[str, dict]]:
    """(where, record) for every record of a JSONL / JSON / CSV / TXT file."""
    if not path.is_file():
        raise DataError(f"{kind} data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {kind} data file {path}: {exc}") from exc
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        for i, row in enumerate(reader, start=2):
            yield f"{path}:{i}", {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    elif suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(rows, list):
            raise DataError(f"{path}: a .json data file must hold a list of objects")
        for i, row in enumerate(rows):
            yield f"{path}[{i}]", _as_record(row, f"{path}[{i}]")
    elif suffix == ".txt":
        if kind != "korean_text":
            raise DataError(f"{path}: plain-text files are only accepted for korean_text (use JSONL or CSV)")
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield f"{path}:{i}", {"text": line.strip()}
    else:  # .jsonl and anything else: one JSON object per line
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{i}: not valid JSON ({exc.msg})") from exc
            yield f"{path}:{i}", _as_record(row, f"{path}:{i}")


def _as_record(row: object, where: str) -> dict:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return {str(k).strip().lower(): v for k, v in row.items()}


def _field(row: dict, keys: tuple[str, ...], where: str, what: str, required: bool = True) -> str:
    for key in keys:
        value = row.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    if required:
        raise DataError(f"{where}: missing {what} (expected one of the fields {', '.join(keys)})")
    return ""


def _split_of(row: dict, where: str) -> str:
    raw = row.get("split")
    if raw is None or not str(raw).strip():
        return ""
    name = _SPLIT_ALIASES.get(str(raw).strip().lower())
    if name is None:
        raise DataError(f"{where}: unknown split {raw!r} (use train or test)")
    return name


def _check_split(split: str | None) -> str:
    split = "all" if split is None else split
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def _keep(record_split: str, split: str) -> bool:
    return split == "all" or not record_split or record_split == split


def _limit(items: list, max_samples: int | None) -> list:
    if max_samples is None:
        return items
    if max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
    return items[:max_samples]


def _path(kind: str, path: str | Path | None) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)}")
    return BUNDLED[kind] if path is None else Path(path).expanduser()


# ----------------------------------------------------------------------------- structured loaders


def load_korean_texts(
    split: str | None = "test", path: str | Path | None = None, max_samples: int | None = None
) -> list[str]:
    """Korean sentences of a split (bundled, or a JSONL/JSON/CSV with ``text`` or a .txt file).

    >>> len(load_korean_texts("train")) > len(load_korean_texts("test")) > 50
    True
    """
    split = _check_split(split)
    out = []
    for where, row in _records(_path("korean_text", path), "korean_text"):
        if _keep(_split_of(row, where), split):
            out.append(_field(row, _TEXT_KEYS, where, "the text"))
    return _limit(out, max_samples)


def load_term_entries(
    split: str | None = "all", path: str | Path | None = None, max_samples: int | None = None
) -> list[TermEntry]:
    """Dictionary entries (``ko``, ``en``, ``definition``) of a split; ``all`` keeps every entry.

    >>> e = load_term_entries("train")[0]
    >>> bool(e.ko and e.en and e.definition), e.split
    (True, 'train')
    """
    split = _check_split(split)
    out = []
    for where, row in _records(_path("medical_terms", path), "medical_terms"):
        s = _split_of(row, where)
        if _keep(s, split):
            out.append(
                TermEntry(
                    ko=_field(row, _KO_KEYS, where, "the Korean term"),
                    en=_field(row, _EN_KEYS, where, "the English term"),
                    definition=_field(row, _DEF_KEYS, where, "the definition", required=False),
                    category=_field(row, ("category",), where, "", required=False),
                    split=s,
                    id=_field(row, ("id",), where, "", required=False),
                )
            )
    return _limit(out, max_samples)


def parse_answer(raw: object, where: str = "answer") -> int:
    """KorMedMCQA answers: 1-5 (int or digit string) or a letter A-E; returns the 0-based index.

    >>> parse_answer(2), parse_answer("5"), parse_answer("c"), parse_answer("D.")
    (1, 4, 2, 3)
    """
    if isinstance(raw, bool) or raw is None:
        raise DataError(f"{where}: missing answer (1-5 or A-E)")
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    text = str(raw).strip().rstrip(".)").strip().upper()
    if text in {"1", "2", "3", "4", "5"}:
        return int(text) - 1
    if len(text) == 1 and text in LETTERS:
        return LETTERS.index(text)
    raise DataError(f"{where}: answer {raw!r} is not 1-5 or A-E")


def _options(row: dict, where: str) -> tuple[str, ...]:
    listed = row.get("options")
    if isinstance(listed, dict):
        row = {**row, **{str(k).strip().lower(): v for k, v in listed.items()}}
    elif isinstance(listed, list):
        if len(listed) != 5:
            raise DataError(f"{where}: 'options' must list 5 options (A-E), got {len(listed)}")
        row = {**row, **dict(zip("abcde", listed))}
    return tuple(_field(row, (letter,), where, f"option {letter.upper()}") for letter in "abcde")


def load_mcq(
    split: str | None = "test", path: str | Path | None = None, max_samples: int | None = None
) -> list[MCQuestion]:
    """Multiple-choice questions in the KorMedMCQA layout: ``question``, ``A``..``E``, ``answer``.

    ``answer`` may be 1-5 (KorMedMCQA's integers) or a letter A-E; ``cot``/``explanation`` is kept.

    >>> q = load_mcq("train")[0]
    >>> len(q.options), q.split
    (5, 'train')
    """
    split = _check_split(split)
    out = []
    for where, row in _records(_path("medical_mcq", path), "medical_mcq"):
        s = _split_of(row, where)
        if _keep(s, split):
            out.append(
                MCQuestion(
                    question=_field(row, ("question",), where, "the question"),
                    options=_options(row, where),
                    answer=parse_answer(row.get("answer"), f"{where}: answer"),
                    subject=_field(row, ("subject",), where, "", required=False),
                    split=s,
                    id=_field(row, ("id", "q_number"), where, "", required=False),
                    explanation=_field(row, _EXPLANATION_KEYS, where, "", required=False),
                )
            )
    return _limit(out, max_samples)


# ----------------------------------------------------------------------------- the pipeline's loader


def load_phase_examples(
    kind: str,
    split: str = "train",
    path: str | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> list[TextExample]:
    """Training (or evaluation) examples of one phase, as ``TextExample``s.

    ``kind`` is ``korean_text`` (plain sentences), ``medical_terms`` (two lines per entry,
    ``ko(en): definition`` and ``en(ko): definition``; ``max_samples`` counts entries) or
    ``medical_mcq`` (question + options as the masked prompt,
    `` B. answer`` as the target).
    ``max_samples`` keeps the split's first N records; ``seed`` shuffles their order.

    >>> ex = load_phase_examples("medical_mcq", max_samples=1)[0]
    >>> ex.prompt.endswith("정답:"), ex.text.startswith(" ")
    (True, True)
    """
    if kind == "korean_text":
        examples = [TextExample(t) for t in load_korean_texts(split, path, max_samples)]
    elif kind == "medical_terms":  # both directions of each entry: max_samples counts entries
        examples = [
            TextExample(line) for e in load_term_entries(split, path, max_samples) for line in term_lines(e)
        ]
    elif kind == "medical_mcq":
        examples = [mcq_example(q) for q in load_mcq(split, path, max_samples)]
    else:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)}")
    random.Random(seed).shuffle(examples)
    return examples
