"""Benchmark files, log-likelihood scoring and ``puredl finetune eval`` against lm-evaluation-harness.

The reference is lm-eval 0.4.13 itself: its kmmlu default task YAML (prompt, choices, few-shot
sampler) run by ``simple_evaluate`` with ``HFLM`` on the same local file and the same model. The
model is a tiny random Gemma 3, briefly taught random letters so that its picks depend on the
question; the tokenizer is a BPE trained on the spot, or (slow) the embedded Gemma 3 tokenizer,
whose BOS handling is what the harness's Gemma path exercises.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from puredl.finetune.benchmarks import (
    BenchmarkFormatError,
    BenchmarkItem,
    fewshot_sets,
    load_benchmark,
)
from puredl.finetune.scoring import (
    cloze_prompt,
    cloze_scores,
    encode_request,
    fewshot_context,
    letter_prompt,
    pmi_scores,
)

WORDS = ["고혈압", "당뇨병", "폐렴", "천식", "빈혈", "위염", "간염", "골절", "두통", "발열", "기침", "설사"]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _kmmlu_rows(n: int, seed: int, n_options: int = 4) -> list[dict]:
    """KMMLU-shaped rows: stray spaces around questions (the harness strips them), two categories."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        opts = rnd.sample(WORDS, n_options)
        long_option = "증상이 오래 지속되는 만성 질환" if i % 3 == 0 else opts[0]
        row = {"question": f" {rnd.choice(WORDS)}과 관련된 것은 무엇인가? ({i}) "}
        row.update({"ABCDE"[j]: (long_option if j == 0 else o) for j, o in enumerate(opts)})
        row.update({"answer": rnd.randint(1, n_options), "Category": rnd.choice(["Health", "Biology"])})
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- loaders


def test_kmmlu_csv_four_options_one_based_answer_and_category(tmp_path):
    path = tmp_path / "kmmlu.csv"
    path.write_text(
        "question,answer,A,B,C,D,Category,Human Accuracy\n"
        '"혈압이 높은 상태는?",2,저혈압,고혈압,빈혈,"골절, 외상",Health,0.5\n'
        '"여러 줄\n질문",4,a,b,c,d,Biology,0.1\n',
        encoding="utf-8",
    )
    items = load_benchmark(path, "kmmlu")
    assert [i.answer for i in items] == [1, 3]
    assert items[0].options == ("저혈압", "고혈압", "빈혈", "골절, 외상")
    assert items[0].category == "Health" and items[1].question == "여러 줄\n질문"
    assert [i.id for i in items] == ["kmmlu:2", "kmmlu:3"]


def test_kormedmcqa_jsonl_five_options_subject_and_cot(tmp_path):
    row = {"subject": "doctor", "question": "Q", "A": "a", "B": "b", "C": "c", "D": "d", "E": "e"}
    path = _write_jsonl(tmp_path / "kmed.jsonl", [{**row, "answer": 5, "cot": "이유"}])
    (item,) = load_benchmark(path, "kormedmcqa")
    assert item.options == ("a", "b", "c", "d", "e") and item.answer == 4
    assert item.category == "doctor" and item.cot == "이유"


def test_kormedmcqa_and_jsonl_accept_four_options(tmp_path):
    path = _write_jsonl(
        tmp_path / "four.jsonl", [{"question": "Q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": 4}]
    )
    assert load_benchmark(path, "kormedmcqa")[0].options == ("a", "b", "c", "d")
    assert load_benchmark(path, "jsonl")[0].answer == 3


def test_puredl_jsonl_bundled_file_letters_options_list_and_split():
    bundled = Path(__file__).resolve().parents[1] / "src/puredl/finetune/data/medical_mcq.jsonl"
    items = load_benchmark(bundled, "jsonl")
    assert len(items) == sum(1 for line in bundled.read_text(encoding="utf-8").splitlines() if line.strip())
    assert all(len(i.options) == 5 for i in items)
    test = load_benchmark(bundled, "jsonl", split="test")
    assert 0 < len(test) < len(items) and {i.split for i in test} == {"test"}


def test_puredl_jsonl_options_list_and_letter_answer(tmp_path):
    path = _write_jsonl(
        tmp_path / "own.jsonl",
        [{"id": "q1", "question": "Q", "options": ["a", "b", "c", "d"], "answer": "c"}],
    )
    (item,) = load_benchmark(path, "jsonl")
    assert (item.id, item.options, item.answer) == ("q1", ("a", "b", "c", "d"), 2)


@pytest.mark.parametrize(
    "row, fmt, field",
    [
        ({"A": "a", "B": "b", "C": "c", "D": "d", "answer": 1}, "kmmlu", "'question'"),
        ({"question": "Q", "A": "a", "B": "b", "D": "d", "answer": 1}, "kmmlu", "'C'"),
        ({"question": "Q", "A": "a", "B": "b", "C": " ", "D": "d", "answer": 1}, "kormedmcqa", "'C'"),
        ({"question": "Q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": 5}, "kmmlu", "'answer'"),
        ({"question": "Q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": 0}, "kormedmcqa", "'answer'"),
        ({"question": "Q", "A": "a", "B": "b", "C": "c", "D": "d"}, "kmmlu", "'answer' is missing"),
        ({"question": "Q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "B"}, "kmmlu", "'answer'"),
        ({"question": "Q", "A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "answer": 1}, "kmmlu", "'E'"),
    ],
)
def test_malformed_row_names_file_line_and_field(tmp_path, row, fmt, field):
    good = {"question": "Q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": 1}
    path = _write_jsonl(tmp_path / "bad.jsonl", [good, good, row])
    with pytest.raises(BenchmarkFormatError) as info:
        load_benchmark(path, fmt)
    message = str(info.value)
    assert message.startswith(f"{path}:3: field ") and field in message
    assert "\n" not in message


def test_broken_json_and_short_csv_row_name_the_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(
        '{"question": "Q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": 1}\n\n{"question": \n'
    )
    with pytest.raises(BenchmarkFormatError, match=re.escape(f"{path}:3: not valid JSON")):
        load_benchmark(path, "kmmlu")
    csv_path = tmp_path / "short.csv"
    csv_path.write_text("question,A,B,C,D,answer\nQ,a,b,c,d,1\nQ,a,b,c\n")
    with pytest.raises(BenchmarkFormatError, match=re.escape(f"{csv_path}:3: 4 fields, the header has 6")):
        load_benchmark(csv_path, "kmmlu")
    with pytest.raises(BenchmarkFormatError, match="not found"):
        load_benchmark(tmp_path / "missing.csv", "kmmlu")
    with pytest.raises(BenchmarkFormatError, match="no rows with split 'dev'"):
        load_benchmark(_write_jsonl(tmp_path / "s.jsonl", _kmmlu_rows(2, 0)), "kmmlu", split="dev")


def test_fewshot_samplers_follow_the_harness_rules():
    pool = [BenchmarkItem(str(i), "q", ("a", "b", "c", "d"), 0) for i in range(6)]
    items = [BenchmarkItem(f"t{i}", "q", ("a", "b", "c", "d"), 0) for i in range(3)]
    rnd = random.Random(1234)  # one generator for the run, one draw of k per item, in order
    assert fewshot_sets(items, pool, 2, "random") == [rnd.sample(pool, 2) for _ in items]
    assert fewshot_sets(items, pool, 2, "first_n") == [pool[:2]] * 3
    same_split = fewshot_sets(pool[:2], pool, 3, "first_n")
    assert [[s.id for s in shots] for shots in same_split] == [["1", "2", "3"], ["0", "2", "3"]]
    with pytest.raises(BenchmarkFormatError, match="pool has only 6"):
        fewshot_sets(items, pool, 7)


def test_prompts_byte_for_byte():
    q = BenchmarkItem("1", "  혈압이 높은 상태는?\n", (" 저혈압", "고혈압 ", "빈혈", "골절"), 1)
    assert letter_prompt(q.question, q.options) == (
        "혈압이 높은 상태는?\nA.  저혈압\nB. 고혈압 \nC. 빈혈\nD. 골절\n정답\uff1a"
    )
    assert cloze_prompt(q.question) == "혈압이 높은 상태는?\n정답\uff1a"
    two_shot = fewshot_context("letter", q, [q, q])
    assert two_shot == (letter_prompt(q.question, q.options) + " B\n\n") * 2 + letter_prompt(
        q.question, q.options
    )
    assert fewshot_context("cloze", q, [q]) == cloze_prompt(q.question) + " 고혈압 \n\n" + cloze_prompt(
        q.question
    )


# ----------------------------------------------------------------------------- scoring on a stub model


class CharTokenizer:
    """One token per character; BOS (id 1) prepended by default, like Gemma's tokenizer."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0
    alphabet = " \n.：ABCDEabcdefgh가나다정답?"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if text.startswith("<bos>"):
            text = text[len("<bos>") :]
            return [1] + [3 + self.alphabet.index(c) for c in text]
        return ([1] if add_special_tokens else []) + [3 + self.alphabet.index(c) for c in text]

    def decode(self, ids) -> str:
        ids = [ids] if isinstance(ids, int) else ids
        return "".join("<bos>" if i == 1 else self.alphabet[i - 3] for i in ids)


def _prefix_model(vocab: int, seed: int = 0):
    """logits[t] = A[token t] + sum of B[tokens 0..t]: every earlier token counts, and a test can redo it."""
    torch = pytest.importorskip("torch")

    class PrefixSum(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            gen = torch.Generator().manual_seed(seed)
            self.a = torch.nn.Parameter(torch.randn(vocab, vocab, generator=gen) * 3)
            self.b = torch.nn.Parameter(torch.randn(vocab, vocab, generator=gen))

        def forward(self, input_ids):
            return type("Out", (), {"logits": self.a[input_ids] + self.b[input_ids].cumsum(dim=1)})()

    return PrefixSum()


def _hand_loglikelihood(model, ids: list[int], n_cont: int) -> float:
    """Sum of log P(ids[i] | ids[:i]) over the last n_cont tokens, in float64, one position at a time."""
    import torch

    a, b = model.a.detach().double(), model.b.detach().double()
    total = 0.0
    for i in range(len(ids) - n_cont, len(ids)):
        logits = a[ids[i - 1]] + sum(b[j] for j in ids[:i])
        total += float(torch.log_softmax(logits, dim=-1)[ids[i]])
    return total


def test_encode_request_moves_trailing_space_and_uses_bos_for_empty_context():
    tok = CharTokenizer()
    assert encode_request(tok, "가 ", "A") == ([1, tok.encode("가")[1]], tok.encode(" A", False))
    assert encode_request(tok, "", " A") == ([1], tok.encode(" A", False))


def test_cloze_divides_by_characters_and_pmi_subtracts_the_unconditional_loglikelihood():
    pytest.importorskip("torch")
    from puredl.finetune.scoring import score_questions

    tok = CharTokenizer()
    model = _prefix_model(3 + len(tok.alphabet), seed=3)
    q = BenchmarkItem("1", "가나?", ("ab", "abcdefgh", "c", "hhd"), 1)
    context = "가나?\n정답："
    ctx_ids = tok.encode(context)
    lls = [_hand_loglikelihood(model, ctx_ids + tok.encode(" " + o, False), len(o) + 1) for o in q.options]
    uncond = [_hand_loglikelihood(model, [1] + tok.encode(" " + o, False), len(o) + 1) for o in q.options]

    (cloze,) = score_questions(model, tok, [q], "cloze", batch_size=3)
    assert cloze.prompt == context and cloze.choices == [" ab", " abcdefgh", " c", " hhd"]
    assert cloze.loglikelihoods == pytest.approx(lls, abs=1e-5)
    assert cloze.scores == pytest.approx([ll / len(o) for ll, o in zip(lls, q.options)], abs=1e-5)
    assert cloze.pred == max(range(4), key=lambda i: lls[i] / len(q.options[i]))
    (pmi,) = score_questions(model, tok, [q], "pmi", batch_size=2)
    assert pmi.scores == pytest.approx([c - u for c, u in zip(lls, uncond)], abs=1e-5)
    assert pmi.pred == max(range(4), key=lambda i: lls[i] - uncond[i])
    (letter,) = score_questions(model, tok, [q], "letter")
    letter_ctx = tok.encode(letter_prompt(q.question, q.options))
    hand = [_hand_loglikelihood(model, letter_ctx + tok.encode(" " + c, False), 2) for c in "ABCD"]
    assert letter.loglikelihoods == pytest.approx(hand, abs=1e-5)


def test_metric_formulas_by_hand():
    assert cloze_scores([-3.0, -3.0], ["가", "가나다"]) == [-3.0, -1.0]  # characters, not bytes
    assert pmi_scores([-2.0, -5.0], [-4.0, -9.0]) == [2.0, 4.0]


# ----------------------------------------------------------------------------- against lm-evaluation-harness


def _gemma_tokenizer():
    from transformers import AutoTokenizer

    from puredl.finetune.loading import ensure_embedded_model

    return AutoTokenizer.from_pretrained(str(ensure_embedded_model("gemma-3-270m")))


def _tiny_tokenizer():
    from finetune_helpers import tiny_tokenizer

    return tiny_tokenizer()


def _teach_random_letters(model, tok, items, seed: int = 0, steps: int = 30) -> None:
    """A few Adam steps towards a random letter per prompt, so the picks differ between questions."""
    import torch

    rnd = random.Random(seed)
    pairs = []
    for item in items:
        ids = tok.encode(letter_prompt(item.question, item.options))
        target = tok.encode(letter_prompt(item.question, item.options) + " " + rnd.choice("ABCD"))[len(ids) :]
        pairs.append((torch.tensor([ids + target[:-1]]), target[-1]))
    # the (tied) embedding learns only for a small vocabulary: Gemma's 262k rows would take minutes
    embedding = model.get_input_embeddings().weight
    embedding.requires_grad_(len(tok) < 10_000)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(
            torch.nn.functional.cross_entropy(model(x, logits_to_keep=1).logits[0], torch.tensor([t]))
            for x, t in pairs
        )
        loss.backward()
        opt.step()
    embedding.requires_grad_(True)
    model.eval()


def _task_yaml(folder: Path, name: str, include: Path, data_files: dict[str, Path], extra: str = "") -> None:
    files = "\n".join(f"    {split}: {path}" for split, path in data_files.items())
    head = f"task: {name}\ninclude: {include}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
    (folder / f"{name}.yaml").write_text(f"{head}{files}\n{extra}", encoding="utf-8")


def _kormedmcqa_yaml(folder: Path, name: str, data_files: dict[str, Path], shots: int) -> None:
    """KorMedMCQA's own prompt and first-n few-shot text, read from the installed template, scored as acc."""
    import lm_eval

    template = (Path(lm_eval.__file__).parent / "tasks/kormedmcqa/_template_yaml").read_text(encoding="utf-8")
    prompt = re.search(r'^doc_to_text\s*:\s*(".*")$', template, re.M).group(1)
    shot = re.search(r'^  doc_to_text\s*:\s*(".*")$', template, re.M).group(1)
    assert "정답\uff1a" in prompt and "first_n" in template
    files = "\n".join(f"    {split}: {path}" for split, path in data_files.items())
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n{files}\n"
        f"test_split: test\nfewshot_split: fewshot\n"
        f'fewshot_config:\n  sampler: first_n\n  doc_to_text: {shot}\n  doc_to_target: ""\n'
        f"output_type: multiple_choice\ndoc_to_text: {prompt}\n"
        f'doc_to_choice: ["A", "B", "C", "D", "E"]\ndoc_to_target: "{{{{answer-1}}}}"\n'
        f"num_fewshot: {shots}\nmetric_list:\n  - metric: acc\n",
        encoding="utf-8",
    )


@pytest.fixture(scope="module", params=["bpe", pytest.param("gemma", marks=pytest.mark.slow)])
def harness_run(request, tmp_path_factory):
    """Files, model and the harness's per-sample results for every task, run once per tokenizer."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    lm_eval = pytest.importorskip("lm_eval")
    threads = torch.get_num_threads()
    # one thread: on a shared, loaded CPU two OpenMP threads make each tiny forward 20-50x slower
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        yield _run_harness(lm_eval, request.param, tmp_path_factory.mktemp(f"harness-{request.param}"))
    torch.set_num_threads(threads)


def _run_harness(lm_eval, tokenizer: str, tmp: Path) -> dict:
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from finetune_helpers import tiny_gemma3

    tok = _gemma_tokenizer() if tokenizer == "gemma" else _tiny_tokenizer()
    model = tiny_gemma3(vocab_size=len(tok), seed=0)
    files = {
        "test": _write_jsonl(tmp / "kmmlu_test.jsonl", _kmmlu_rows(14, seed=1)),
        "dev": _write_jsonl(tmp / "kmmlu_dev.jsonl", _kmmlu_rows(6, seed=2)),
        "med_test": _write_jsonl(tmp / "kmed_test.jsonl", _kmmlu_rows(8, seed=3, n_options=5)),
        "med_shots": _write_jsonl(tmp / "kmed_fewshot.jsonl", _kmmlu_rows(3, seed=4, n_options=5)),
    }
    _teach_random_letters(model, tok, load_benchmark(files["test"], "kmmlu"))
    model_dir = tmp / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)

    default = Path(lm_eval.__file__).parent / "tasks/kmmlu/default/_default_kmmlu_yaml"
    kmmlu = {"test": files["test"], "dev": files["dev"]}
    cloze = 'doc_to_text: "{{question.strip()}}\\n정답："\ndoc_to_choice: "{{[A, B, C, D]}}"\n'
    tasks = {
        "local_kmmlu_0shot": ("letter", 0, "num_fewshot: 0\n"),
        "local_kmmlu_5shot": ("letter", 5, "num_fewshot: 5\n"),
        "local_kmmlu_cloze": ("cloze", 0, cloze + "metric_list:\n  - metric: acc_norm\n"),
        "local_kmmlu_pmi": ("pmi", 0, cloze + "metric_list:\n  - metric: acc_mutual_info\n"),
    }
    for name, (_, _, extra) in tasks.items():
        _task_yaml(tmp, name, default, kmmlu, extra)
    _kormedmcqa_yaml(
        tmp, "local_kormedmcqa_2shot", {"test": files["med_test"], "fewshot": files["med_shots"]}, 2
    )
    out = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tok, batch_size=1),
        tasks=[*tasks, "local_kormedmcqa_2shot"],
        task_manager=TaskManager(include_path=str(tmp)),
        log_samples=True,
    )
    samples = {name: sorted(rows, key=lambda r: r["doc_id"]) for name, rows in out["samples"].items()}
    return {
        "files": files,
        "model": model,
        "tok": tok,
        "model_dir": model_dir,
        "results": out["results"],
        "samples": samples,
    }


def _harness_lls(sample: dict, n: int) -> list[float]:
    return [float(r[0][0]) for r in sample["resps"][:n]]


def test_finetune_eval_kmmlu_letter_equals_the_harness_kmmlu_task(harness_run, tmp_path):
    """MUST SHOW: `puredl finetune eval --format kmmlu --scoring letter` = the harness's kmmlu task."""
    from puredl.cli import main

    for shots, task in ((0, "local_kmmlu_0shot"), (5, "local_kmmlu_5shot")):
        out = tmp_path / f"{shots}.json"
        argv = [
            "finetune",
            "eval",
            "--model",
            str(harness_run["model_dir"]),
            "--benchmark",
            str(harness_run["files"]["test"]),
        ]
        argv += ["--format", "kmmlu", "--scoring", "letter", "--output", str(out)]
        argv += ["--shots", str(shots), "--dev", str(harness_run["files"]["dev"])] if shots else []
        assert main(argv) == 0
        result = json.loads(out.read_text(encoding="utf-8"))
        samples = harness_run["samples"][task]
        assert result["n"] == len(samples) == 14
        for item, sample in zip(result["items"], samples):
            harness_lls = _harness_lls(sample, 4)
            assert item["prompt"] == sample["arguments"][0][0]  # the very same text, byte for byte
            assert item["choices"] == [a[1] for a in sample["arguments"]] == [" A", " B", " C", " D"]
            assert item["scores"] == pytest.approx(harness_lls, abs=1e-4)
            assert item["pred"] == max(range(4), key=lambda i: harness_lls[i])
            assert item["correct"] == bool(sample["acc"])
        assert result["accuracy"] == harness_run["results"][task]["acc,none"]
        assert len({i["pred"] for i in result["items"]}) > 1, "the picks must vary for this test to bite"
        lo, hi = result["ci95"]
        assert lo <= result["accuracy"] <= hi and result["shots"] == shots and result["scoring"] == "letter"
        assert set(result["per_category"]) == {"Health", "Biology"}
        assert result["macro_accuracy"] == pytest.approx(
            sum(v["accuracy"] for v in result["per_category"].values()) / 2
        )


@pytest.mark.parametrize(
    "method, task, metric",
    [("cloze", "local_kmmlu_cloze", "acc_norm"), ("pmi", "local_kmmlu_pmi", "acc_mutual_info")],
)
def test_cloze_and_pmi_equal_the_harness_acc_norm_and_acc_mutual_info(harness_run, method, task, metric):
    from puredl.finetune.scoring import score_questions

    items = load_benchmark(harness_run["files"]["test"], "kmmlu")
    scored = score_questions(harness_run["model"], harness_run["tok"], items, method, batch_size=5)
    samples = harness_run["samples"][task]
    for item, s, sample in zip(items, scored, samples):
        assert s.prompt == sample["arguments"][0][0]
        assert s.choices == [a[1] for a in sample["arguments"][:4]] == [" " + o for o in item.options]
        assert s.loglikelihoods == pytest.approx(_harness_lls(sample, 4), abs=1e-4)
        if method == "pmi":
            uncond = [float(r[0][0]) for r in sample["resps"][4:]]
            assert s.scores == pytest.approx(
                [c - u for c, u in zip(_harness_lls(sample, 4), uncond)], abs=1e-4
            )
        assert s.correct == bool(sample[metric])
    accuracy = sum(s.correct for s in scored) / len(scored)
    assert accuracy == harness_run["results"][task][f"{metric},none"]
    assert len({s.pred for s in scored}) > 1


def test_kormedmcqa_five_options_two_shot_equals_the_harness(harness_run):
    from puredl.finetune.benchmark_eval import evaluate_items

    items = load_benchmark(harness_run["files"]["med_test"], "kormedmcqa")
    pool = load_benchmark(harness_run["files"]["med_shots"], "kormedmcqa")
    result = evaluate_items(
        harness_run["model"],
        harness_run["tok"],
        items,
        "letter",
        fewshot_sets(items, pool, 2, "first_n"),
        show_progress=False,
    )
    samples = harness_run["samples"]["local_kormedmcqa_2shot"]
    for item, sample in zip(result["items"], samples):
        assert item["prompt"] == sample["arguments"][0][0]
        assert item["scores"] == pytest.approx(_harness_lls(sample, 5), abs=1e-4)
        assert item["correct"] == bool(sample["acc"])
    assert result["accuracy"] == harness_run["results"]["local_kormedmcqa_2shot"]["acc,none"]


# ----------------------------------------------------------------------------- the command's own behaviour


def test_eval_command_errors_are_one_line(tmp_path, capsys):
    from puredl.cli import main

    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "Q", "A": "a", "B": "b", "C": "c", "answer": 1}])
    argv = [
        "finetune",
        "eval",
        "--model",
        "x",
        "--benchmark",
        str(bad),
        "--format",
        "kmmlu",
        "--output",
        str(tmp_path / "o.json"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}:1: field 'D' (option) is missing or empty"
    good = _write_jsonl(tmp_path / "good.jsonl", _kmmlu_rows(2, 0))
    assert main([*argv[:5], str(good), *argv[6:], "--shots", "2"]) == 2
    assert "needs few-shot examples" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_result_file_is_written_atomically(tmp_path):
    from puredl.finetune.benchmark_eval import write_result

    path = tmp_path / "sub" / "out.json"
    write_result(path, {"accuracy": 0.5, "text": "정답："})
    assert json.loads(path.read_text(encoding="utf-8")) == {"accuracy": 0.5, "text": "정답："}
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]
    with pytest.raises(TypeError):
        write_result(path, {"bad": object()})
    assert json.loads(path.read_text(encoding="utf-8"))["accuracy"] == 0.5  # the old file survives
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_batches_of_mixed_lengths_equal_one_row_at_a_time_and_hand_values():
    pytest.importorskip("torch")
    from puredl.finetune.scoring import _batches, _Row, loglikelihoods

    tok = CharTokenizer()
    model = _prefix_model(3 + len(tok.alphabet), seed=5)
    requests = [("가" * n + "?", " " + "abcdefgh"[: 1 + n % 5]) for n in range(1, 12)] + [("", " hh")]
    hand = []
    for ctx, cont in requests:
        ids = ([1] if not ctx else tok.encode(ctx)) + tok.encode(cont, False)
        hand.append(_hand_loglikelihood(model, ids, len(cont)))
    assert loglikelihoods(model, tok, requests, batch_size=1) == pytest.approx(hand, abs=1e-5)
    assert loglikelihoods(model, tok, requests, batch_size=5) == pytest.approx(hand, abs=1e-5)
    rows = [_Row(list(range(n)), [(0, [1, 2])]) for n in (100, 90, 30, 29, 28)]
    assert [len(b) for b in _batches(rows, batch_size=8, max_span=20)] == [2, 3]
    assert [len(b) for b in _batches(rows, batch_size=2, max_span=1000)] == [2, 2, 1]


def test_config_supplies_the_model(harness_run, tmp_path):
    from puredl.cli import main

    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  name: {harness_run['model_dir']}\n", encoding="utf-8")
    out = tmp_path / "out.json"
    argv = ["finetune", "eval", "--config", str(config), "--benchmark", str(harness_run["files"]["test"])]
    assert main([*argv, "--format", "kmmlu", "--limit", "5", "--threads", "1", "--output", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["model"] == str(harness_run["model_dir"]) and result["adapters"] == [] and result["n"] == 5
    samples = harness_run["samples"]["local_kmmlu_0shot"][:5]
    assert [i["correct"] for i in result["items"]] == [bool(s["acc"]) for s in samples]
