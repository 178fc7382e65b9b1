"""Shared-prompt option scoring (one row per question, 4-D tree mask) against separate rows.

The tiny Gemma 3 has a sliding window of 16 tokens, and the questions here run past it, so the
sliding layers' mask is exercised as well as the full-attention one.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from finetune_helpers import tiny_gemma3, tiny_tokenizer  # noqa: E402
from puredl.finetune import datasets as D  # noqa: E402
from puredl.finetune import loglik as L  # noqa: E402
from puredl.finetune import metrics as M  # noqa: E402
from puredl.finetune import model_io  # noqa: E402
from puredl.finetune import shared_prompt as SP  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_gemma3(len(tok), seed=5)


def questions() -> list[L.ChoiceQuestion]:
    pool = [e for e in D.load_term_entries("all") if e.split == "train"][:8]
    terms = M.term_questions(pool[:3], pool)
    mcq = M.mcq_letter_questions(D.load_mcq("test", None, 2)) + M.mcq_cloze_questions(
        D.load_mcq("test", None, 2)
    )
    return terms + mcq + [L.ChoiceQuestion("", ["감기", "고혈압 환자의 혈압"], 1)]


def assert_same(got, want, atol=1e-4):
    assert len(got) == len(want)
    for g_q, w_q in zip(got, want):
        assert [n for _, n in g_q] == [n for _, n in w_q]
        for (g, _), (w, _) in zip(g_q, w_q):
            assert g == pytest.approx(w, abs=atol, rel=1e-5)


@pytest.mark.parametrize("batch_size", [1, 7, 16])
def test_shared_rows_score_exactly_what_separate_rows_score(model, tok, batch_size):
    qs = questions()
    assert max(len(model_io.context_ids(tok, q.prompt)) for q in qs) > 16  # past the sliding window
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the probe must agree: no fallback
        shared = L.option_logprobs(model, tok, qs, batch_size)
    assert_same(shared, L.option_logprobs(model, tok, qs, batch_size, share_prompt=False))


def test_shared_rows_read_each_prompt_once(model, tok):
    qs = questions()
    seen = []
    # the decoder runs once per batch (the output layer only at the scored positions)
    hook = model.get_decoder().register_forward_pre_hook(
        lambda mod, args, kw: seen.append(kw["input_ids"].numel()), with_kwargs=True
    )
    try:
        L.option_logprobs(model, tok, qs, 16)
        shared_tokens = sum(seen[1:])  # seen[0] is the probe's separate rows
        seen.clear()
        L.option_logprobs(model, tok, qs, 16, share_prompt=False)
        separate_tokens = sum(seen)
    finally:
        hook.remove()
    assert shared_tokens < 0.6 * separate_tokens


def test_too_long_questions_take_the_separate_path(model, tok):
    qs = questions()
    want = L.option_logprobs(model, tok, qs, 8, share_prompt=False, max_length=24)
    assert any(SP.encode(tok, q.prompt, q.continuations, 24) is None for q in qs)  # some need trimming
    assert_same(L.option_logprobs(model, tok, qs, 8, max_length=24), want)


class IgnoresMasks(torch.nn.Module):
    """A model that reads any 4-D mask as plain causal attention over the whole row."""

    def __init__(self, base, fail: bool = False):
        super().__init__()
        self.base, self.fail = base, fail

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False, logits_to_keep=0):
        if isinstance(attention_mask, dict) or (attention_mask is not None and attention_mask.dim() == 4):
            if self.fail:
                raise ValueError("4-D masks are not supported")
            attention_mask, position_ids = None, None
        return self.base(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            logits_to_keep=logits_to_keep,
        )


@pytest.mark.parametrize("fail", [False, True])
def test_a_model_without_4d_masks_is_caught_by_the_probe_and_scored_separately(model, tok, fail):
    qs = questions()[:4]
    wrapped = IgnoresMasks(model, fail)
    with pytest.warns(RuntimeWarning, match="scoring every option separately"):
        got = L.option_logprobs(wrapped, tok, qs, 8)
    assert_same(got, L.option_logprobs(model, tok, qs, 8, share_prompt=False))


def test_an_option_without_tokens_is_named(model, tok):
    with pytest.raises(ValueError, match="continuation '' has no tokens"):
        L.option_logprobs(model, tok, [L.ChoiceQuestion("질문", ["감기", ""], 0)])
