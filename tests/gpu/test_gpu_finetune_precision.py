"""Fine-tuning on cuda:0: bf16 (``training.precision``), SDPA attention, scored-row evaluation.

Skipped without a GPU; not yet run on one. The tolerances come from bfloat16's precision and from
the same runs on CPU (autocast over float32 weights moved the step losses by under 0.01%, bf16
weights by 0.04%): 0.5% and 2% leave room for cuBLAS's different kernels.
"""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.gpu

BF16_WEIGHTS_LOSS_RTOL = 2e-2  # bf16 storage of the frozen base + bf16 autocast
BF16_AUTOCAST_LOSS_RTOL = 5e-3  # float32 weights, bf16 autocast (as on CPU)


def _train(torch_cuda, tmp_path, weights_dtype, amp):
    from finetune_helpers import TINY_CORPUS, tiny_gemma3, tiny_tokenizer
    from puredl.finetune.batching import encode_example
    from puredl.finetune.lora import LoRAConfig, add_lora
    from puredl.finetune.trainer import TrainPlan, train_adapter

    torch = torch_cuda
    tok = tiny_tokenizer()
    examples = [encode_example(tok, TINY_CORPUS[i], "질문:" if i % 2 else "", 40) for i in range(8)]
    torch.manual_seed(0)
    model = add_lora(
        tiny_gemma3().to("cuda:0", weights_dtype),
        LoRAConfig(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "embeddings"]),
    )
    plan = TrainPlan(
        epochs=1,
        batch_size=4,
        grad_accum=1,
        learning_rate=1e-2,
        scheduler="constant",
        warmup=0,
        total_steps=2,
        seed=0,
    )
    result = train_adapter(
        model,
        examples,
        plan,
        adapter_name="lora_0",
        pad_id=0,
        work_dir=tmp_path,
        device="cuda:0",
        amp_dtype=amp,
    )
    return model, result


@pytest.mark.parametrize(
    "weights, rtol", [("bfloat16", BF16_WEIGHTS_LOSS_RTOL), ("float32", BF16_AUTOCAST_LOSS_RTOL)]
)
def test_bf16_precision_trains_on_cuda_close_to_fp32_with_float32_lora_weights(
    torch_cuda, tmp_path, weights, rtol
):
    from puredl.finetune.devices import amp_dtype
    from puredl.finetune.loading import resolve_dtype

    torch = torch_cuda
    dtype = getattr(torch, weights)
    if weights == "bfloat16":
        assert resolve_dtype("auto", "cuda:0", "bf16") is dtype  # what training.precision bf16 loads
    model, low = _train(torch, tmp_path / "bf16", dtype, amp_dtype("bf16"))
    _, full = _train(torch, tmp_path / "fp32", torch.float32, amp_dtype("fp32"))
    assert all(math.isfinite(x) for x in low.losses)
    for a, b in zip(low.losses, full.losses):
        assert a == pytest.approx(b, rel=rtol)
    assert all(
        p.dtype is torch.float32 and p.device.type == "cuda" for p in model.parameters() if p.requires_grad
    )


def test_cuda_loads_with_sdpa_and_matches_eager_attention(torch_cuda, tmp_path):
    from finetune_helpers import save_tiny_model, tiny_tokenizer
    from puredl.finetune import loglik as L
    from puredl.finetune.loading import load_model_and_tokenizer

    torch = torch_cuda
    folder = save_tiny_model(tmp_path / "tiny")
    model, tok = load_model_and_tokenizer(str(folder), device="cuda:0")
    assert model.config._attn_implementation == "sdpa"
    import transformers

    eager = transformers.AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager").to(
        "cuda:0"
    )
    enc = tiny_tokenizer()(["감기 증상이 있습니다", "고혈압"], return_tensors="pt", padding=True).to("cuda:0")
    with torch.no_grad():
        got = model(**enc).logits
        want = eager.eval()(**enc).logits
    mask = enc["attention_mask"].bool()
    torch.testing.assert_close(got[mask], want[mask], rtol=1e-4, atol=1e-4)
    # scored-row evaluation on the GPU equals the model's own forward
    pairs = [("질문: 고혈압", " hypertension"), ("안녕하세요.", " 오늘은 날씨가 맑습니다.")]
    scored = L.continuation_logprobs(model, tok, pairs)
    for (prompt, cont), (s, n) in zip(pairs, scored):
        a = tok(prompt)["input_ids"]
        b = tok(cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(
                model(input_ids=torch.tensor([a + b], device="cuda:0")).logits[0].float(), -1
            )
        assert n == len(b)
        assert s == pytest.approx(sum(float(logp[len(a) - 1 + j, t]) for j, t in enumerate(b)), abs=1e-4)
