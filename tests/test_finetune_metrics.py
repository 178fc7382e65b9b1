"""Capability validators on a tiny Gemma 3, checked against torch, hand computation and steered models."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from finetune_helpers import tiny_gemma3, tiny_tokenizer  # noqa: E402
from puredl.finetune import datasets as D  # noqa: E402
from puredl.finetune import loglik as L  # noqa: E402
from puredl.finetune import metrics as M  # noqa: E402
from puredl.finetune.stats import binomial_ci  # noqa: E402


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


def right_sequences(tok, questions: list[L.ChoiceQuestion]) -> list[list[int]]:
    """prompt (with <bos>) + right continuation, tokenized the way the metrics do."""
    out = []
    for q in questions:
        prompt = start_ids(tok, q.prompt)
        out.append(prompt + tok(q.continuations[q.answer], add_special_tokens=False)["input_ids"])
    return out


def start_ids(tok, prompt: str) -> list[int]:
    """The prompt with special tokens; ``<bos>`` alone when that is empty (the metrics' rule)."""
    return tok(prompt, add_special_tokens=True)["input_ids"] or [tok.bos_token_id]


def reference_nll(model, tok, text: str, eos: bool = True) -> tuple[float, int]:
    """Independent torch computation: one unpadded sequence, cross-entropy summed over its tokens."""
    ids = start_ids(tok, "") + tok(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ids + ([tok.eos_token_id] if eos else [])])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].double()
    nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
    return float(nll), ids.shape[1] - 1


class DivergedLM(torch.nn.Module):
    """Huge logits on token 0 only: every other token costs ~1e5 nats, far past exp's range."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        logits = torch.zeros(*input_ids.shape, self.vocab) + 0 * self.anchor
        logits[..., 0] = 1e5
        return SimpleNamespace(logits=logits)


# ----------------------------------------------------------------------------- fluency


@pytest.mark.parametrize("eos", [False, True])
def test_perplexity_is_exp_of_the_token_weighted_mean_nll_with_and_without_eos(model, tok, eos):
    texts = D.load_korean_texts("test")[:7]
    parts = [reference_nll(model, tok, t, eos) for t in texts]
    total, count = sum(p[0] for p in parts), sum(p[1] for p in parts)
    assert len({p[1] for p in parts}) > 1  # texts of different lengths: weighting matters
    key = "heldout_eos" if eos else "heldout_no_eos"
    for batch_size in (1, 3, 8):
        res = M.validate_fluency(model, tok, texts, batch_size=batch_size)
        m = res["measures"][key]
        assert m["tokens"] == count and m["texts"] == 7 and m["eos"] is eos
        assert m["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
        for (nll, n), (ref_nll, ref_n) in zip(m["per_text_nll"], parts):  # each text, in order
            assert n == ref_n and nll == pytest.approx(ref_nll, rel=1e-5)
    # the check above can tell token weighting from text weighting on these texts
    text_weighted = math.exp(sum(n / c for n, c in parts) / len(parts))
    assert m["perplexity"] != pytest.approx(text_weighted, rel=1e-5)


def test_fluency_primary_is_without_eos_and_the_eos_variant_counts_one_more_token_per_text(model, tok):
    texts = D.load_korean_texts("test")[:5]
    res = M.validate_fluency(model, tok, texts)
    no_eos, eos = res["measures"]["heldout_no_eos"], res["measures"]["heldout_eos"]
    assert res["primary"] == "heldout_no_eos" == M.capability("fluency").primary
    assert res["score"] == res["perplexity"] == no_eos["perplexity"]
    assert res["per_text_nll"] == no_eos["per_text_nll"] and res["perplexity_eos"] == eos["perplexity"]
    assert eos["tokens"] == no_eos["tokens"] + len(texts)
    for (a, n), (b, k) in zip(no_eos["per_text_nll"], eos["per_text_nll"]):
        assert k == n + 1 and b > a  # the <eos> adds its own (positive) NLL


def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size(tok):
    res = M.validate_fluency(UniformLM(len(tok)), tok, ["감기 증상이 있다.", "물을 마신다."])
    for m in res["measures"].values():
        assert m["perplexity"] == pytest.approx(len(tok), rel=1e-5)


def test_a_diverged_model_gives_infinite_perplexity_not_an_overflow(tok):
    res = M.validate_fluency(DivergedLM(len(tok)), tok, ["감기 증상이 있다."])
    assert res["nll_per_token"] > 1e4  # exp() of this overflows a float
    assert res["perplexity"] == math.inf == res["perplexity_eos"] == res["score"]
    assert L.perplexity(float("nan"), 3) == math.inf and L.perplexity(math.log(7.0) * 2, 2) == pytest.approx(
        7.0
    )


# ----------------------------------------------------------------------------- continuation scoring


def test_continuation_logprobs_match_torch_and_ignore_padding(model, tok):
    pairs = [
        ("질문: 고혈압", ' hypertension"'),
        ("안녕하세요. 오늘은 날씨가", " 맑고 따뜻합니다."),
        ("x", " 간호사가 체온과 혈압을 측정했습니다. 의사는 환자의 증상을 자세히 물어보았습니다."),
        ("", "빈혈"),
    ]
    expected = [torch_logprob(model, tok, p, c) for p, c in pairs]
    for batch_size in (1, 2, 4):
        got = L.continuation_logprobs(model, tok, pairs, batch_size=batch_size)
        assert [n for _, n in got] == [n for _, n in expected]
        for (s, _), (e, _) in zip(got, expected):
            assert s == pytest.approx(e, abs=1e-3)


def torch_logprob(model, tok, prompt: str, cont: str) -> tuple[float, int]:
    """log p(cont | <bos> prompt) from one unpadded torch forward pass, in float64."""
    a = start_ids(tok, prompt)
    b = tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([a + b])).logits[0].double(), -1)
    return sum(float(logp[len(a) - 1 + j, t]) for j, t in enumerate(b)), len(b)


def test_uniform_model_scores_each_token_minus_log_vocab(tok):
    ((score, n),) = L.continuation_logprobs(UniformLM(len(tok)), tok, [("두통", " 머리가 아프다")])
    assert n == len(tok(" 머리가 아프다", add_special_tokens=False)["input_ids"])
    assert score == pytest.approx(-n * math.log(len(tok)), rel=1e-6)


def test_ties_give_fractional_credit(tok):
    q = L.ChoiceQuestion("질문", ["가", "나", "다", "라", "마"], answer=2, delimiter=" ")
    (outcome,) = L.score_choices(UniformLM(len(tok)), tok, [q], ("sum",))["sum"]
    assert outcome.credit == pytest.approx(0.2)  # a 5-way tie: chance, not 0% and not 100%
    assert outcome.correct_prob == pytest.approx(0.2) and outcome.margin == pytest.approx(0.0)


def test_sum_mean_char_and_pmi_scores_match_hand_computation_from_torch(model, tok):
    q = L.ChoiceQuestion("고혈압(", ["hypertension):", "anemia):", "두통):"], answer=0, delimiter=" ")
    graded = L.score_choices(model, tok, [q], L.SCORINGS)
    cond = [torch_logprob(model, tok, q.prompt, " " + opt) for opt in q.options]
    bare = [torch_logprob(model, tok, "", opt)[0] for opt in q.options]  # lm-eval: the choice alone
    want = {
        "sum": [s for s, _ in cond],
        "mean": [s / n for s, n in cond],
        "char": [s / len(opt) for (s, _), opt in zip(cond, q.options)],  # the delimiter is not counted
        "pmi": [s - u for (s, _), u in zip(cond, bare)],
    }
    assert len({n for _, n in cond}) > 1 and len({len(o) for o in q.options}) > 1  # the variants differ
    for scoring, expected in want.items():
        (outcome,) = graded[scoring]
        assert outcome.scores == pytest.approx(expected, abs=1e-3), scoring
        assert outcome.chosen == max(range(3), key=expected.__getitem__)
        best_other = max(e for i, e in enumerate(expected) if i != q.answer)
        assert outcome.margin == pytest.approx(expected[q.answer] - best_other, abs=1e-3)
        probs = [math.exp(s) for s, _ in cond]
        assert outcome.correct_prob == pytest.approx(probs[0] / sum(probs), rel=1e-3)


# ----------------------------------------------------------------------------- terminology


def test_term_questions_use_the_trained_format_in_both_directions():
    taught = D.load_term_entries("train")[:8]
    qs = M.term_questions(taught, taught)
    assert len(qs) == 2 * len(taught)
    assert [q.options for q in qs] == [q.options for q in M.term_questions(taught, taught)]  # deterministic
    lines = {line for e in taught for line in D.term_lines(e)}
    for entry, (ko_en, en_ko) in zip(taught, zip(qs[::2], qs[1::2])):
        assert (ko_en.direction, en_ko.direction) == ("ko_to_en", "en_to_ko")
        assert (ko_en.prompt, en_ko.prompt) == (f"{entry.ko}(", f"{entry.en}(")
        assert (
            ko_en.options[ko_en.answer] == f"{entry.en}):" and en_ko.options[en_ko.answer] == f"{entry.ko}):"
        )
        # prompt + right option is the start of a training line, token for token
        assert any(line.startswith(ko_en.prompt + ko_en.options[ko_en.answer]) for line in lines)
        assert any(line.startswith(en_ko.prompt + en_ko.options[en_ko.answer]) for line in lines)
        assert ko_en.answer == en_ko.answer and len(set(ko_en.options)) == 5
        assert ko_en.cluster == en_ko.cluster == entry.id  # the two directions are one cluster
        for opt in ko_en.options:  # no distractor contains the answer or sits inside it
            if opt != ko_en.options[ko_en.answer]:
                assert entry.en.lower() not in opt.lower() and opt[:-2].lower() not in entry.en.lower()
    assert {q.answer for q in qs} != {qs[0].answer}  # the right answer is not always in one place


def test_terminology_distractors_never_mix_taught_and_heldout_entries():
    groups = M.terminology_entries(n_taught=48)
    taught, held = groups["taught_pool"], groups["heldout_pool"]
    assert len(groups["taught"]) == 48 and len(groups["heldout"]) == 24 and len(groups["transfer"]) == 24
    assert groups["taught"] == taught[:48] and groups["heldout"] == held[:24]
    assert all(e.split == "train" for e in taught) and all(e.split == "test" for e in held)
    terms = {
        "taught": {s for e in taught for s in (e.ko, e.en)},
        "heldout": {s for e in held for s in (e.ko, e.en)},
        "transfer": {s for e in taught for s in (e.ko, e.en)},
    }
    sets = M.terminology_question_sets(**groups)
    assert set(sets) == {"taught", "heldout", "transfer"}
    for name, qs in sets.items():
        for q in qs:
            for opt in q.options:
                term = opt.removesuffix("):").removesuffix('"')
                assert term in terms[name], (name, opt)
    # the taught group is only what the run trained: fewer trained entries shrink it
    assert len(M.terminology_entries(n_taught=16)["taught"]) == 16
    small = M.terminology_entries(max_eval=3, n_taught=6)  # 3 asked, distractors from all 6 taught
    assert len(small["taught"]) == 3 and len(small["taught_pool"]) == 6
    pool_terms = {s for e in small["taught_pool"] for s in (e.ko, e.en)}
    for q in M.terminology_question_sets(**small)["taught"]:
        assert {o.removesuffix("):") for o in q.options} <= pool_terms


def test_terminology_is_100_percent_for_a_model_steered_to_the_right_terms_and_0_against(model, tok):
    pool = D.load_term_entries("all")
    taught = [e for e in pool if e.split == "train"][:6]
    held = [e for e in pool if e.split == "test"][:6]
    sets = M.terminology_question_sets(taught, held, transfer=taught[:3])
    right = right_sequences(tok, [q for qs in sets.values() for q in qs])
    kwargs = {"transfer": taught[:3], "batch_size": 7}
    good = M.validate_terminology(SteeredLM(model, right, 30.0), tok, taught, held, **kwargs)
    bad = M.validate_terminology(SteeredLM(model, right, -30.0), tok, taught, held, **kwargs)
    assert set(good["measures"]) == {
        "taught", "taught_char", "taught_pmi", "heldout", "heldout_char", "heldout_pmi", "transfer"
    }  # fmt: skip
    for name in ("taught", "taught_char", "heldout", "heldout_char", "transfer"):
        g, b = good["measures"][name], bad["measures"][name]
        assert g["accuracy"] == 1.0 and b["accuracy"] == 0.0, name
        assert g["by_direction"] == {d: 1.0 for d in g["by_direction"]}
    assert good["measures"]["taught"]["n"] == 12 and good["measures"]["transfer"]["n"] == 3
    assert good["measures"]["taught"]["clusters"] == [e.id for e in taught for _ in range(2)]
    assert good["score"] == good["accuracy"] == good["taught_accuracy"] == 1.0 and good["primary"] == "taught"
    assert good["correct_prob"] > 0.99 and bad["correct_prob"] < 0.01
    assert (good["n_taught"], good["n_heldout"]) == (6, 6)
    assert good["ci95"] == pytest.approx(list(binomial_ci(12, 12)))


def test_terminology_without_taught_entries_reports_heldout_as_primary(model, tok):
    held = [e for e in D.load_term_entries("all") if e.split == "test"][:5]
    res = M.validate_terminology(model, tok, [], held, scorings=("sum",))
    assert (
        res["taught_accuracy"] is None and res["primary"] == "heldout" and set(res["measures"]) == {"heldout"}
    )


def test_terminology_needs_enough_distinct_terms_in_a_group(model, tok):
    few = [D.TermEntry("두통", "headache"), D.TermEntry("빈혈", "anemia")]
    with pytest.raises(ValueError, match="same group"):
        M.validate_terminology(model, tok, few)


# ----------------------------------------------------------------------------- reasoning


def test_reasoning_letters_and_cloze_are_100_percent_when_steered_and_0_against(model, tok):
    taught, held = D.load_mcq("train")[:5], D.load_mcq("test")[:6]
    qs = M.mcq_letter_questions(taught + held) + M.mcq_cloze_questions(held)
    assert qs[0].continuations == [" A", " B", " C", " D", " E"] and qs[0].prompt == D.mcq_prompt(taught[0])
    assert qs[-1].prompt == D.mcq_cloze_prompt(held[-1]) and held[-1].options[0] not in qs[-1].prompt
    right = right_sequences(tok, qs)
    good = M.validate_reasoning(SteeredLM(model, right, 30.0), tok, taught, held, heldout_letter=True)
    bad = M.validate_reasoning(SteeredLM(model, right, -30.0), tok, taught, held, heldout_letter=True)
    for name in ("taught", "heldout", "heldout_letter"):
        assert good["measures"][name]["accuracy"] == 1.0 and bad["measures"][name]["accuracy"] == 0.0, name
    assert good["primary"] == "taught" and good["score"] == 1.0 and good["n"] == 5
    assert (
        good["measures"]["heldout"]["scoring"] == "char" and good["measures"]["taught"]["scoring"] == "letter"
    )
    # a model that cannot tell the letters apart scores chance, whatever the options' lengths
    flat = M.validate_reasoning(UniformLM(len(tok)), tok, taught, held, heldout_letter=True)
    assert flat["measures"]["taught"]["accuracy"] == pytest.approx(0.2)
    assert flat["measures"]["heldout_letter"]["accuracy"] == pytest.approx(0.2)


def test_reasoning_reports_trap_items_and_the_longest_option_baseline(model, tok):
    taught, held = D.load_mcq("train")[:32], D.load_mcq("test")
    traps = M.trap_items(held, taught)
    assert sum(traps) == 8  # the research note's count for 32 taught / 71 held-out questions
    for q, trap in zip(held, traps):
        wrong = {o.strip() for i, o in enumerate(q.options) if i != q.answer}
        assert trap == bool(wrong & {t.answer_text.strip() for t in taught})
    res = M.validate_reasoning(UniformLM(len(tok)), tok, taught, held)
    assert "heldout_letter" not in res["measures"]  # off by default: the costliest probe
    trap, clean, cloze = (res["measures"][k] for k in ("heldout_trap", "heldout_nontrap", "heldout"))
    assert (trap["n"], clean["n"], res["n_trap"]) == (8, 63, 8)
    assert sorted(trap["items"] + clean["items"]) == list(range(71))
    assert [cloze["credits"][i] for i in trap["items"]] == trap["credits"]
    longest = res["measures"]["heldout_longest"]
    by_hand = []
    for q in held:
        lengths = [len(o) for o in q.options]
        winners = [i for i, n in enumerate(lengths) if n == max(lengths)]
        by_hand.append(1 / len(winners) if q.answer in winners else 0.0)
    assert longest["credits"] == by_hand and longest["chance"] == pytest.approx(0.2)
    assert longest["scoring"] == "longest option"


# ----------------------------------------------------------------------------- all together


def test_accuracy_entries_carry_n_ci_and_per_item_credits():
    m = M.accuracy_measure([1.0, 0.0, 0.5, 1.0, 1.0], "sum", 0.2, clusters=["a", "a", "b", "b", "c"])
    assert m["n"] == 5 and m["accuracy"] == pytest.approx(0.7)
    assert m["ci95"] == pytest.approx(list(binomial_ci(4, 5)))  # 3.5 right rounds to 4 (half to even)
    assert m["clusters"] == ["a", "a", "b", "b", "c"] and m["credits"] == [1.0, 0.0, 0.5, 1.0, 1.0]


def test_evaluate_capabilities_measures_the_same_items_every_time(model, tok):
    was = model.training
    model.train()  # evaluation must switch to eval mode and then restore training mode
    caps = ["fluency", "medical_terms", "reasoning"]
    res = M.evaluate_capabilities(model, tok, caps, max_eval=6, progress=False, taught={"medical_mcq": 4})
    assert model.training and set(res) == {"fluency", "medical_terms", "reasoning"}
    model.train(was)
    assert res["fluency"]["texts"] == 6 and res["fluency"]["perplexity"] > 1
    assert (res["medical_terms"]["n_taught"], res["medical_terms"]["n_heldout"]) == (6, 6)
    assert res["reasoning"]["n_taught"] == 4 and res["reasoning"]["n_heldout"] == 6  # only what was taught
    for entry in res.values():
        for m in entry["measures"].values():
            assert ("per_text_nll" in m) != ("credits" in m)
    again = M.evaluate_capabilities(model, tok, caps, max_eval=6, progress=False, taught={"medical_mcq": 4})
    assert again == res


def test_evaluate_capabilities_reads_user_files_by_capability_or_kind(model, tok, tmp_path):
    path = tmp_path / "exam.csv"
    lines = ["question,A,B,C,D,E,answer"] + [f"질문 {i}?,가,나,다,라,마,{i % 5 + 1}" for i in range(4)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for key in ("reasoning", "medical_mcq"):
        res = M.evaluate_capabilities(model, tok, ["reasoning"], data_paths={key: str(path)}, progress=False)
        assert res["reasoning"]["n_heldout"] == 4 and res["reasoning"]["n_taught"] == 4  # no split: both


def test_validate_prints_a_line_per_capability_and_writes_json(model, tok, tmp_path):
    # what ``puredl finetune validate`` runs: format_metrics for the lines, write_json for --output
    from puredl._atomic import write_json

    res = M.evaluate_capabilities(model, tok, ["fluency", "reasoning"], max_eval=2, progress=False)
    lines = M.format_metrics(res)
    assert lines.startswith("fluency") and "heldout_no_eos ppl" in lines.split("\n")[0]
    assert lines.split("\n")[1].startswith("reasoning") and "chance 20.0%" in lines
    out = tmp_path / "sub" / "metrics.json"
    out.parent.mkdir()
    write_json(out, res)
    assert json.loads(out.read_text(encoding="utf-8")) == res
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_bad_arguments_are_named(model, tok):
    with pytest.raises(ValueError, match="unknown capability 'grammar'"):
        M.evaluate_capabilities(model, tok, ["grammar"])
    with pytest.raises(ValueError, match="max_eval"):
        M.evaluate_capabilities(model, tok, ["fluency"], max_eval=0)
    q = L.ChoiceQuestion("질문", ["가", "나"], 0)
    with pytest.raises(ValueError, match="scoring"):
        L.score_choices(model, tok, [q], ("max",))
    with pytest.raises(ValueError, match="at least one"):
        M.validate_fluency(model, tok, [])
    with pytest.raises(ValueError, match="empty text"):
        M.validate_fluency(model, tok, ["감기", ""])
    with pytest.raises(ValueError, match="at least one"):
        M.validate_reasoning(model, tok, [])
