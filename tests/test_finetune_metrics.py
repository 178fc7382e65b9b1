"""Capability metrics on a tiny Gemma 3, checked against torch and against models steered right or wrong."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from finetune_helpers import tiny_gemma3, tiny_tokenizer  # noqa: E402
from puredl.finetune import datasets as D  # noqa: E402
from puredl.finetune import metrics as M  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_gemma3(len(tok), seed=3)


class UniformLM(torch.nn.Module):
    """Every next token equally likely: log p = -log(V) for each token, by hand."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab) + 0 * self.anchor)


class SteeredLM(torch.nn.Module):
    """The tiny model plus ``bonus`` on each next token of the given "right" token sequences.

    With a large positive bonus it prefers every right answer; with a negative one it avoids
    them. It reads only the real tokens (attention mask), so left padding cannot fool it.
    """

    def __init__(self, base, right: list[list[int]], bonus: float):
        super().__init__()
        self.base, self.bonus = base, bonus
        self.trie: dict = {}  # token -> subtree; a node's keys are the tokens to boost after it
        for seq in right:
            node = self.trie
            for token in seq:
                node = node.setdefault(token, {})

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False, logits_to_keep=0):
        logits = self.base(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).logits.clone()
        if isinstance(attention_mask, dict):  # per-layer-type 4-D masks: the full-attention one
            attention_mask = attention_mask["full_attention"]
        for row in range(input_ids.shape[0]):
            for pos in range(input_ids.shape[1]):
                # the tokens this position reads: real ones up to it (2-D mask) or its 4-D mask row
                if attention_mask is None:
                    seen = list(range(pos + 1))
                elif attention_mask.dim() == 2:
                    seen = (
                        [p for p in range(pos + 1) if attention_mask[row, p]]
                        if attention_mask[row, pos]
                        else []
                    )
                else:
                    seen = [p for p in range(pos + 1) if attention_mask[row, 0, pos, p] == 0]
                node = self.trie
                for p in seen:
                    node = node.get(int(input_ids[row, p]), {}) if node else {}
                for nxt in node:
                    logits[row, pos, nxt] += self.bonus
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def right_sequences(tok, questions: list[M.ChoiceQuestion]) -> list[list[int]]:
    """prompt (with <bos>) + right continuation, tokenized the way the metrics do."""
    out = []
    for q in questions:
        prompt = start_ids(tok, q.prompt)
        out.append(prompt + tok(q.options[q.answer], add_special_tokens=False)["input_ids"])
    return out


def start_ids(tok, prompt: str) -> list[int]:
    """The prompt with special tokens; ``<bos>`` alone when that is empty (the metrics' rule)."""
    return tok(prompt, add_special_tokens=True)["input_ids"] or [tok.bos_token_id]


def reference_nll(model, tok, text: str) -> tuple[float, int]:
    """Independent torch computation: one unpadded sequence, cross-entropy summed over its tokens."""
    ids = start_ids(tok, "") + tok(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ids + [tok.eos_token_id]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].double()
    nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
    return float(nll), ids.shape[1] - 1


# ----------------------------------------------------------------------------- fluency


def test_perplexity_is_exp_of_the_token_weighted_mean_nll(model, tok):
    texts = D.load_korean_texts("test")[:7]
    parts = [reference_nll(model, tok, t) for t in texts]
    total, count = sum(p[0] for p in parts), sum(p[1] for p in parts)
    assert len({p[1] for p in parts}) > 1  # texts of different lengths: weighting matters
    for batch_size in (1, 3, 8):
        res = M.validate_fluency(model, tok, texts, batch_size=batch_size)
        assert res["tokens"] == count and res["texts"] == 7
        assert res["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
        assert res["score"] == res["perplexity"]
        for (nll, n), (ref_nll, ref_n) in zip(res["per_text_nll"], parts):  # each text, in order
            assert n == ref_n and nll == pytest.approx(ref_nll, rel=1e-5)
    # the check above can tell token weighting from text weighting on these texts
    text_weighted = math.exp(sum(n / c for n, c in parts) / len(parts))
    assert res["perplexity"] != pytest.approx(text_weighted, rel=1e-5)


def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size(tok):
    res = M.validate_fluency(UniformLM(len(tok)), tok, ["감기 증상이 있다.", "물을 마신다."])
    assert res["perplexity"] == pytest.approx(len(tok), rel=1e-5)


# ----------------------------------------------------------------------------- continuation scoring


def test_continuation_logprobs_match_torch_and_ignore_padding(model, tok):
    pairs = [
        ("질문: 고혈압", ' hypertension"'),
        ("안녕하세요. 오늘은 날씨가", " 맑고 따뜻합니다."),
        ("x", " 간호사가 체온과 혈압을 측정했습니다. 의사는 환자의 증상을 자세히 물어보았습니다."),
        ("", "빈혈"),
    ]
    expected = []
    for prompt, cont in pairs:
        a = start_ids(tok, prompt)
        b = tok(cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([a + b])).logits[0].double(), -1)
        expected.append((sum(float(logp[len(a) - 1 + j, t]) for j, t in enumerate(b)), len(b)))
    for batch_size in (1, 2, 4):
        got = M.continuation_logprobs(model, tok, pairs, batch_size=batch_size)
        assert [n for _, n in got] == [n for _, n in expected]
        for (s, _), (e, _) in zip(got, expected):
            assert s == pytest.approx(e, abs=1e-3)


def test_uniform_model_scores_each_token_minus_log_vocab(tok):
    ((score, n),) = M.continuation_logprobs(UniformLM(len(tok)), tok, [("두통", " 머리가 아프다")])
    assert n == len(tok(" 머리가 아프다", add_special_tokens=False)["input_ids"])
    assert score == pytest.approx(-n * math.log(len(tok)), rel=1e-6)


def test_ties_give_fractional_credit(tok):
    q = M.ChoiceQuestion("질문", [" 가", " 나", " 다", " 라", " 마"], answer=2)
    (outcome,) = M.score_choices(UniformLM(len(tok)), tok, [q])
    assert outcome.credit == pytest.approx(0.2)  # a 5-way tie: chance, not 0% and not 100%
    assert outcome.correct_prob == pytest.approx(0.2)


# ----------------------------------------------------------------------------- terminology


def test_term_questions_are_fixed_five_way_both_directions():
    pool = D.load_term_entries("all")
    entries = pool[:6] + [e for e in pool if e.split == "test"][:3]
    qs = M.term_questions(entries, pool)
    assert len(qs) == 2 * len(entries)
    assert [q.options for q in qs] == [q.options for q in M.term_questions(entries, pool)]  # deterministic
    for entry, (ko_en, en_ko) in zip(entries, zip(qs[::2], qs[1::2])):
        assert (ko_en.direction, en_ko.direction) == ("ko_to_en", "en_to_ko")
        assert ko_en.options[ko_en.answer] == f'{entry.en}"' and en_ko.options[en_ko.answer] == f'{entry.ko}"'
        assert ko_en.answer == en_ko.answer and len(set(ko_en.options)) == 5
        assert entry.ko in ko_en.prompt and entry.en in en_ko.prompt
        assert ko_en.group == ("taught" if entry.split == "train" else "heldout")
        for opt in ko_en.options:  # no distractor contains the answer or sits inside it
            if opt != ko_en.options[ko_en.answer]:
                assert entry.en.lower() not in opt.lower() and opt[:-1].lower() not in entry.en.lower()
    assert {q.answer for q in qs} != {qs[0].answer}  # the right answer is not always in one place


def test_terminology_is_100_percent_for_a_model_steered_to_the_right_terms_and_0_against(model, tok):
    pool = D.load_term_entries("all")
    entries = [e for e in pool if e.split == "train"][:4] + [e for e in pool if e.split == "test"][:4]
    right = right_sequences(tok, M.term_questions(entries, pool))
    good = M.validate_terminology(SteeredLM(model, right, 30.0), tok, entries, pool=pool, batch_size=7)
    bad = M.validate_terminology(SteeredLM(model, right, -30.0), tok, entries, pool=pool, batch_size=7)
    for key in ("accuracy", "taught_accuracy", "heldout_accuracy", "ko_to_en_accuracy", "en_to_ko_accuracy"):
        assert good[key] == 1.0 and bad[key] == 0.0, key
    assert good["correct_prob"] > 0.99 and bad["correct_prob"] < 0.01
    assert (good["n_taught"], good["n_heldout"], good["questions"]) == (4, 4, 16)
    assert good["score"] == good["accuracy"]
    plain = M.validate_terminology(model, tok, entries, pool=pool)
    assert 0.0 <= plain["accuracy"] <= 1.0


def test_terminology_reports_a_missing_group_as_none(model, tok):
    pool = D.load_term_entries("all")
    res = M.validate_terminology(model, tok, [e for e in pool if e.split == "test"][:2], pool=pool)
    assert res["taught_accuracy"] is None and res["heldout_accuracy"] is not None


def test_terminology_needs_enough_distinct_terms(model, tok):
    few = [D.TermEntry("두통", "headache"), D.TermEntry("빈혈", "anemia")]
    with pytest.raises(ValueError, match="wrong answers"):
        M.validate_terminology(model, tok, few)


# ----------------------------------------------------------------------------- reasoning


def test_reasoning_is_100_percent_when_steered_to_the_answers_and_0_against(model, tok):
    questions = D.load_mcq("test")[:5]
    right = right_sequences(tok, M.mcq_questions(questions))
    assert M.validate_reasoning(SteeredLM(model, right, 30.0), tok, questions)["accuracy"] == 1.0
    res = M.validate_reasoning(SteeredLM(model, right, -30.0), tok, questions, scoring="sum")
    assert res["accuracy"] == 0.0 and res["questions"] == 5 and res["score"] == 0.0
    assert M.validate_reasoning(UniformLM(len(tok)), tok, questions)["accuracy"] == pytest.approx(0.2)


# ----------------------------------------------------------------------------- all together


def test_evaluate_capabilities_measures_the_same_items_every_time(model, tok):
    was = model.training
    model.train()  # evaluation must switch to eval mode and then restore training mode
    res = M.evaluate_capabilities(
        model, tok, ["fluency", "medical_terms", "reasoning"], max_eval=3, progress=False
    )
    assert model.training and set(res) == {"fluency", "medical_terms", "reasoning"}
    model.train(was)
    assert res["fluency"]["texts"] == 3 and res["fluency"]["perplexity"] > 1
    assert (res["medical_terms"]["n_taught"], res["medical_terms"]["n_heldout"]) == (3, 3)
    assert res["reasoning"]["questions"] == 3
    again = M.evaluate_capabilities(
        model, tok, ["fluency", "medical_terms", "reasoning"], max_eval=3, progress=False
    )
    assert again == res


def test_evaluate_capabilities_reads_user_files_by_capability_or_kind(model, tok, tmp_path):
    path = tmp_path / "exam.csv"
    lines = ["question,A,B,C,D,E,answer"] + [f"질문 {i}?,가,나,다,라,마,{i % 5 + 1}" for i in range(4)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for key in ("reasoning", "medical_mcq"):
        res = M.evaluate_capabilities(model, tok, ["reasoning"], data_paths={key: str(path)}, progress=False)
        assert res["reasoning"]["questions"] == 4


def test_validate_main_prints_a_line_per_capability_and_writes_json(model, tok, tmp_path):
    lines: list[str] = []
    out = tmp_path / "sub" / "metrics.json"
    res = M.validate_main(model, tok, ["fluency", "reasoning"], max_eval=2, output=out, out=lines.append)
    assert lines[0].startswith("fluency") and "perplexity" in lines[0]
    assert "reasoning" in lines[0].split("\n")[1] and "chance 20.0%" in lines[0]
    assert json.loads(out.read_text(encoding="utf-8")) == res
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_bad_arguments_are_named(model, tok):
    with pytest.raises(ValueError, match="unknown capability 'grammar'"):
        M.evaluate_capabilities(model, tok, ["grammar"])
    with pytest.raises(ValueError, match="max_eval"):
        M.evaluate_capabilities(model, tok, ["fluency"], max_eval=0)
    with pytest.raises(ValueError, match="scoring"):
        M.validate_reasoning(model, tok, D.load_mcq("test")[:1], scoring="max")
    with pytest.raises(ValueError, match="at least one"):
        M.validate_fluency(model, tok, [])
