"""The output layer at the scored rows only equals the model's own full-logits forward.

Every log-likelihood engine (perplexity, continuations, shared-prompt options, harness-exact
scoring) and the training loss run the decoder once and the output layer (LoRA-adapted and tied,
then Gemma's final soft-capping) at the scored positions only. The reference here is the same
model behind a wrapper that exposes nothing but ``forward``: its own full [batch, length, vocab]
logits, soft-capping included.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from finetune_helpers import (  # noqa: E402
    TINY_CORPUS,
    tiny_gemma3,
    tiny_gemma3_config,
    tiny_gemma3_multimodal,
    tiny_tokenizer,
)
from puredl.finetune import loglik as L  # noqa: E402
from puredl.finetune import scoring as S  # noqa: E402
from puredl.finetune.batching import IGNORE_INDEX, collate, encode_example  # noqa: E402
from puredl.finetune.lora import LoRAConfig, add_lora  # noqa: E402
from puredl.finetune.output_layer import decoder_and_head, logits_at  # noqa: E402
from puredl.finetune.trainer import batch_loss_sum  # noqa: E402

ATOL = 1e-5
SOFTCAP = 2.0  # small enough that the tiny model's logits are visibly bent by tanh


class FullLogits(torch.nn.Module):
    """The model seen only through its forward: full logits from its own output layer and soft-cap."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config  # the harness-exact engine reads the context length from it
        self.train(model.training)  # a new Module is in training mode; restoring that would enable dropout

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        return SimpleNamespace(logits=out.logits)


def capped_gemma3():
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(4)
    config = tiny_gemma3_config(len(tiny_tokenizer()))
    config.final_logit_softcapping = SOFTCAP
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # larger (tied) output weights: logits of several units, bent by the cap
        model.get_output_embeddings().weight.mul_(40.0)
    return model


def with_output_lora():
    """The tiny model with a LoRA on the tied embedding/output layer (and q/v), factors non-zero."""
    torch.manual_seed(0)
    model = add_lora(
        tiny_gemma3(seed=2), LoRAConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj", "embeddings"])
    )
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


MODELS = {
    "plain": lambda: tiny_gemma3(seed=1),
    "lora_on_output_layer": with_output_lora,
    "softcapped": capped_gemma3,
    "multimodal": lambda: tiny_gemma3_multimodal(seed=1).eval(),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    return MODELS[request.param]()


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def questions():
    qs = [
        L.ChoiceQuestion("질문: 고혈압의 영어 이름은?", ["hypertension", "anemia", "fracture"], 0, " "),
        L.ChoiceQuestion("뼈가 부러진 상태는?", ["골절", "빈혈 환자의 혈액", "두통"], 2, " "),
        L.ChoiceQuestion("", ["감기", "고혈압 환자의 혈압"], 1),
    ]
    return qs + [
        L.ChoiceQuestion(text[:12], [text[12:20], text[20:], "물"], 1, " ") for text in TINY_CORPUS[:6]
    ]


def assert_close_lists(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=ATOL, rel=0), (got, want)


def test_the_models_differ_where_the_tests_need_them_to(tok):
    """The LoRA and the soft-cap really change the scores, so agreeing on them means something."""
    pairs = [("질문: 고혈압", " hypertension"), ("안녕하세요.", " 오늘은 날씨가 맑고 따뜻합니다.")]
    lora = with_output_lora()
    adapted = L.continuation_logprobs(lora, tok, pairs)
    with lora.disable_adapter():
        base = L.continuation_logprobs(lora, tok, pairs)
    assert max(abs(a - b) for (a, _), (b, _) in zip(adapted, base)) > 0.1
    capped = capped_gemma3()
    bent = L.continuation_logprobs(capped, tok, pairs)
    capped.config.final_logit_softcapping = None
    straight = L.continuation_logprobs(capped, tok, pairs)
    assert max(abs(a - b) for (a, _), (b, _) in zip(bent, straight)) > 0.1
    assert decoder_and_head(FullLogits(lora)) is None and decoder_and_head(lora) is not None


def test_token_nlls_equal_full_logits(model, tok):
    texts = TINY_CORPUS[:7] + ["감기"]
    for batch_size in (1, 3, 8):
        got = L.token_nlls(model, tok, texts, batch_size=batch_size, max_length=24)
        want = L.token_nlls(FullLogits(model), tok, texts, batch_size=batch_size, max_length=24)
        assert [len(g) for g in got] == [len(w) for w in want]
        for g, w in zip(got, want):
            assert_close_lists(g, w)


def test_continuation_logprobs_equal_full_logits(model, tok):
    pairs = [(q.prompt, cont) for q in questions() for cont in q.continuations]
    for batch_size in (1, 5, 16):
        got = L.continuation_logprobs(model, tok, pairs, batch_size=batch_size)
        want = L.continuation_logprobs(FullLogits(model), tok, pairs, batch_size=batch_size)
        assert [n for _, n in got] == [n for _, n in want]
        assert_close_lists([s for s, _ in got], [s for s, _ in want])


def test_shared_prompt_options_and_picks_equal_full_logits(model, tok):
    qs = questions()
    got = L.score_choices(model, tok, qs, L.SCORINGS, batch_size=7)
    want = L.score_choices(FullLogits(model), tok, qs, L.SCORINGS, batch_size=7)
    for scoring in L.SCORINGS:
        for g, w in zip(got[scoring], want[scoring]):
            assert_close_lists(g.scores, w.scores)
            assert g.chosen == w.chosen and g.credit == w.credit


@pytest.mark.parametrize("method", S.METHODS)
def test_harness_scoring_loglikelihoods_and_picks_equal_full_logits(model, tok, method):
    items = [
        SimpleNamespace(question=q.prompt or "?", options=q.options, answer=q.answer) for q in questions()
    ]
    shots = [items[-2:]] * len(items) if method == "letter" else None
    got = S.score_questions(model, tok, items, method, shots, batch_size=3)
    want = S.score_questions(FullLogits(model), tok, items, method, shots, batch_size=3)
    for g, w in zip(got, want):
        assert_close_lists(g.loglikelihoods, w.loglikelihoods)
        assert_close_lists(g.scores, w.scores)
        assert g.pred == w.pred


def test_training_loss_equals_transformers_with_soft_capping_and_an_output_layer_lora():
    tok = tiny_tokenizer()
    examples = [encode_example(tok, TINY_CORPUS[i], "질문:" if i % 2 else "", 40) for i in range(4)]
    batch = collate(examples, pad_id=tok.pad_token_id)
    n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    for model in (capped_gemma3(), with_output_lora()):
        with torch.no_grad():
            ref = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
            )
            torch.testing.assert_close(batch_loss_sum(model, batch) / n, ref.loss, rtol=1e-5, atol=1e-5)


def test_logits_at_takes_only_the_last_positions_from_a_model_without_a_decoder(tok):
    seen = []

    class LastOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, logits_to_keep=0):
            seen.append(logits_to_keep)
            full = (
                torch.arange(input_ids.shape[1], dtype=torch.float32)
                .view(1, -1, 1)
                .expand(*input_ids.shape, 3)
            )
            return SimpleNamespace(logits=full[:, -logits_to_keep:] if logits_to_keep else full)

    ids = torch.zeros(2, 6, dtype=torch.long)
    got = logits_at(LastOnly(), [0, 1, 1], [3, 5, 4], input_ids=ids)
    assert seen == [3] and got[:, 0].tolist() == [3.0, 5.0, 4.0]
