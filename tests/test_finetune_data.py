"""The bundled Korean medical data (counts, fields, splits, no duplicates) and the file loaders."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from puredl.finetune import datasets as D

HANGUL = re.compile("[\uac00-\ud7a3]")


def rows(kind: str) -> list[dict]:
    lines = D.BUNDLED[kind].read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# ----------------------------------------------------------------------------- bundled files


@pytest.mark.parametrize("kind", D.KINDS)
def test_every_record_has_a_unique_id_and_a_train_or_test_split(kind):
    data = rows(kind)
    assert len({r["id"] for r in data}) == len(data)
    splits = Counter(r["split"] for r in data)
    assert set(splits) == {"train", "test"}
    assert 0.15 <= splits["test"] / len(data) <= 0.3  # a real held-out share, most data for training


def test_korean_text_has_400_unique_sentences_of_both_styles():
    data = rows("korean_text")
    texts = [r["text"] for r in data]
    assert len(texts) >= 400
    assert len(set(texts)) == len(texts)
    assert Counter(r["style"] for r in data).keys() == {"everyday", "health_news"}
    assert min(Counter(r["style"] for r in data).values()) >= 150
    for t in texts:
        assert HANGUL.search(t), t
        assert t == t.strip() and t[-1] in ".?!", t


def test_medical_dictionary_has_300_entries_without_duplicate_terms():
    data = rows("medical_terms")
    assert len(data) >= 300
    for r in data:
        assert HANGUL.search(r["ko"]) and HANGUL.search(r["definition"]), r
        assert re.fullmatch(r"[A-Za-z0-9 ,'()\-]+", r["en"]), r
        assert r["definition"].endswith("."), r
    assert len({r["ko"] for r in data}) == len(data)
    assert len({r["en"].lower() for r in data}) == len(data)
    assert len(Counter(r["category"] for r in data)) >= 10


def test_mcq_has_200_questions_with_five_distinct_options_and_an_answer_in_range():
    data = rows("medical_mcq")
    assert len(data) >= 200
    assert len({r["question"] for r in data}) == len(data)
    for r in data:
        options = [r[letter] for letter in "ABCDE"]
        assert all(o.strip() for o in options) and len(set(options)) == 5, r
        assert isinstance(r["answer"], int) and 1 <= r["answer"] <= 5, r
        assert HANGUL.search(r["question"]), r
    # the right answer is spread over the five letters (no "always C" shortcut)
    letters = Counter(r["answer"] for r in data)
    assert set(letters) == {1, 2, 3, 4, 5} and min(letters.values()) >= len(data) // 5 - 2


def test_train_and_test_splits_are_disjoint():
    for kind, key in [("korean_text", "text"), ("medical_terms", "ko"), ("medical_terms", "en")]:
        data = rows(kind)
        train = {r[key] for r in data if r["split"] == "train"}
        test = {r[key] for r in data if r["split"] == "test"}
        assert train and test and not train & test, (kind, key)
    mcq = rows("medical_mcq")
    train = {r["question"] for r in mcq if r["split"] == "train"}
    assert not train & {r["question"] for r in mcq if r["split"] == "test"}


# ----------------------------------------------------------------------------- loaders on bundled data


def test_split_loaders_match_the_files():
    for kind, load in [
        ("korean_text", D.load_korean_texts),
        ("medical_terms", D.load_term_entries),
        ("medical_mcq", D.load_mcq),
    ]:
        data = rows(kind)
        for split in ("train", "test"):
            assert len(load(split)) == sum(r["split"] == split for r in data)
        assert len(load("all")) == len(data)


def test_mcq_loader_converts_answers_to_zero_based_indices():
    first = rows("medical_mcq")[0]
    q = D.load_mcq(first["split"])[0]
    assert q.question == first["question"]
    assert q.options == tuple(first[x] for x in "ABCDE")
    assert q.answer == first["answer"] - 1 and q.answer_letter == "ABCDE"[first["answer"] - 1]


def test_phase_examples_use_the_training_formats():
    term = D.load_term_entries("train")[0]
    assert sorted(e.text for e in D.load_phase_examples("medical_terms", max_samples=1)) == sorted(
        [f"{term.ko}({term.en}): {term.definition}", f"{term.en}({term.ko}): {term.definition}"]
    )  # both directions of the entry are taught
    q = D.load_mcq("train")[0]
    ex = D.load_phase_examples("medical_mcq", max_samples=1)[0]
    assert ex.prompt.endswith("\n정답:") and q.question in ex.prompt
    assert all(f"{x}. {o}" in ex.prompt for x, o in zip("ABCDE", q.options))
    assert ex.text == f" {q.answer_letter}. {q.answer_text}"
    text = D.load_korean_texts("train")[0]
    assert D.load_phase_examples("korean_text", max_samples=1)[0] == D.TextExample(text)


def test_max_samples_keeps_the_first_records_and_seed_only_reorders():
    first10 = [line for e in D.load_term_entries("train")[:10] for line in D.term_lines(e)]
    a = [e.text for e in D.load_phase_examples("medical_terms", max_samples=10, seed=1)]
    b = [e.text for e in D.load_phase_examples("medical_terms", max_samples=10, seed=2)]
    assert len(a) == 20 and sorted(a) == sorted(b) == sorted(first10)  # max_samples counts entries
    assert a != b  # seeds give different orders
    assert a == [e.text for e in D.load_phase_examples("medical_terms", max_samples=10, seed=1)]
    assert len(D.load_phase_examples("korean_text", "test")) == len(D.load_korean_texts("test"))


def test_the_transfer_template_never_appears_in_training_text():
    for kind in D.KINDS:
        for ex in D.load_phase_examples(kind):
            for prompt, _ in D.TERM_TRANSFER_TEMPLATES.values():
                fixed = prompt.split("{")[-1].split("}")[-1]  # the words after the term: '"의 영어 이름은 "'
                assert fixed.strip() not in ex.text + ex.prompt


def test_term_probes_are_the_start_of_a_training_line():
    entry = D.load_term_entries("train")[0]
    lines = D.term_lines(entry)
    for direction, (prompt, cont) in D.TERM_PROBES.items():
        probe = prompt.format(ko=entry.ko, en=entry.en) + cont.format(ko=entry.ko, en=entry.en)
        assert lines[D.TERM_DIRECTIONS.index(direction)].startswith(probe)
    with pytest.raises(ValueError, match="unknown direction"):
        D.term_text(entry, "ko_to_fr")


def test_cloze_prompt_hides_the_options():
    q = D.load_mcq("test")[0]
    prompt = D.mcq_cloze_prompt(q)
    assert q.question in prompt and prompt.endswith("정답:") and not any(o in prompt for o in q.options)


# ----------------------------------------------------------------------------- user files


def test_kormedmcqa_csv_with_integer_answers_and_no_split_column(tmp_path):
    path = tmp_path / "doctor-test.csv"
    path.write_text(
        "subject,year,period,q_number,question,A,B,C,D,E,answer,cot\n"
        'doctor,2023,1,7,"혈당을 낮추는 호르몬은?",인슐린,글루카곤,코르티솔,에피네프린,성장호르몬,1,\n'
        'doctor,2023,1,8,"가장 긴 뼈는?",척골,대퇴골,경골,비골,상완골,2,"대퇴골이 가장 길다."\n',
        encoding="utf-8-sig",  # a BOM like spreadsheet exports
    )
    qs = D.load_mcq("test", path)
    assert [q.answer for q in qs] == [0, 1]
    assert qs[1].options[1] == "대퇴골" and qs[1].explanation == "대퇴골이 가장 길다." and qs[1].id == "8"
    assert len(D.load_mcq("train", path)) == 2  # no split column: the file serves any split
    ex = D.load_phase_examples("medical_mcq", "train", str(path), seed=0)
    assert any(e.text == " B. 대퇴골\n해설: 대퇴골이 가장 길다." for e in ex)


def test_jsonl_answers_as_letters_or_digit_strings_and_options_as_a_list(tmp_path):
    path = tmp_path / "mcq.jsonl"
    records = [
        {"question": "q1", "A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "answer": "C", "split": "dev"},
        {"question": "q2", "options": ["v", "w", "x", "y", "z"], "answer": "5", "split": "train"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    assert [(q.question, q.answer) for q in D.load_mcq("test", path)] == [("q1", 2)]  # dev counts as test
    assert [(q.question, q.answer, q.options[4]) for q in D.load_mcq("train", path)] == [("q2", 4, "z")]


def test_user_dictionary_and_text_files(tmp_path):
    terms = tmp_path / "terms.csv"
    terms.write_text("korean,english,definition,split\n두통,headache,머리가 아픔.,train\n", encoding="utf-8")
    assert D.load_term_entries("all", terms) == [
        D.TermEntry("두통", "headache", "머리가 아픔.", split="train")
    ]
    text = tmp_path / "ko.txt"
    text.write_text("첫 문장이다.\n\n  둘째 문장이다.  \n", encoding="utf-8")
    assert D.load_korean_texts("test", text) == ["첫 문장이다.", "둘째 문장이다."]
    listed = tmp_path / "ko.json"
    listed.write_text(json.dumps([{"sentence": "하나.", "split": "train"}, {"text": "둘.", "split": "test"}]))
    assert D.load_korean_texts("train", listed) == ["하나."]


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "answer": 6}\n',
            "is not 1-5 or A-E",
        ),
        ('{"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": 1}\n', "missing option E"),
        ('{"A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "answer": 1}\n', "missing the question"),
        ('{"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "E": "e"}\n', "missing answer"),
        ("not json\n", "not valid JSON"),
        ("[1, 2]\n", "expected a JSON object"),
        (
            '{"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "answer": 1, '
            '"split": "x"}\n',
            "unknown split",
        ),
    ],
)
def test_bad_mcq_records_name_the_file_line_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"question": "ok", "A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "answer": 1}\n' + content
    )
    with pytest.raises(D.DataError, match=message) as err:
        D.load_mcq("test", path)
    assert f"{path}:2" in str(err.value)


def test_other_bad_input_gets_clear_errors(tmp_path):
    with pytest.raises(D.DataError, match="not found"):
        D.load_phase_examples("korean_text", path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="unknown data kind 'recipes'"):
        D.load_phase_examples("recipes")
    with pytest.raises(ValueError, match="split must be one of"):
        D.load_mcq("validation")
    (tmp_path / "t.txt").write_text("x\n")
    with pytest.raises(D.DataError, match="only accepted for korean_text"):
        D.load_mcq("test", tmp_path / "t.txt")
    (tmp_path / "terms.jsonl").write_text('{"ko": "두통"}\n')
    with pytest.raises(D.DataError, match="missing the English term"):
        D.load_term_entries("all", tmp_path / "terms.jsonl")
    with pytest.raises(ValueError, match="max_samples"):
        D.load_korean_texts("train", max_samples=-1)


def test_the_right_answer_is_the_longest_option_in_about_a_fifth_of_the_held_out_questions():
    from puredl.finetune.metrics import longest_option_credits

    held = D.load_mcq("test")
    share = sum(longest_option_credits(held)) / len(held)
    assert 0.15 <= share <= 0.25, share  # near chance (20%): length alone does not find the answer
