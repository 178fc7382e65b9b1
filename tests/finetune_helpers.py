"""Shared fixtures for the fine-tuning tests: a tiny Gemma 3 and a tokenizer trained on the spot.

Both are built in milliseconds without any network or cached download, so every fine-tuning test
can run on a real ``Gemma3ForCausalLM`` (same module names, scaled and tied embedding, sliding and
full attention layers) instead of a mock.

>>> tok = tiny_tokenizer()
>>> model = tiny_gemma3(vocab_size=len(tok))
>>> model(**tok(["감기 증상"], return_tensors="pt")).logits.shape[-1] == len(tok)
True
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

# Korean everyday, health-news, dictionary and MCQ style lines written for these tests.
TINY_CORPUS: list[str] = [
    "안녕하세요. 오늘은 날씨가 맑고 따뜻합니다.",
    "저는 아침마다 공원에서 천천히 걷습니다.",
    "물을 자주 마시면 건강에 도움이 됩니다.",
    "감기에 걸리면 충분히 쉬고 따뜻한 물을 마시세요.",
    "고혈압은 혈관에 높은 압력이 계속되는 상태입니다.",
    "당뇨병 환자는 혈당을 규칙적으로 확인해야 합니다.",
    "두통이 계속되면 병원에 가서 진료를 받으세요.",
    "의사는 환자의 증상을 자세히 물어보았습니다.",
    "간호사가 체온과 혈압을 측정했습니다.",
    "폐렴은 폐에 염증이 생기는 질환입니다.",
    "고혈압: hypertension. 혈압이 정상보다 높은 상태.",
    "당뇨병: diabetes mellitus. 혈당이 높게 유지되는 대사 질환.",
    "폐렴: pneumonia. 폐에 생기는 염증.",
    "두통: headache. 머리에 느껴지는 통증.",
    "골절: fracture. 뼈가 부러지는 것.",
    "빈혈: anemia. 혈액 속 적혈구가 부족한 상태.",
    "질문: 고혈압의 영어 이름은? A. anemia B. hypertension C. fracture D. headache E. asthma 정답: B",
    "질문: 뼈가 부러진 상태는? A. 골절 B. 빈혈 C. 폐렴 D. 두통 E. 천식 정답: A",
    "The patient has a fever and a cough.",
    "Take the medicine twice a day after meals.",
]

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def _bundled_texts() -> list[str]:
    """Text from the package's bundled fine-tuning data, when it is there (issue 7's files)."""
    data_dir = Path(__file__).resolve().parents[1] / "src" / "puredl" / "finetune" / "data"
    texts: list[str] = []
    for path in sorted(data_dir.glob("*.jsonl")) if data_dir.is_dir() else []:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                texts.extend(str(v) for v in row.values() if isinstance(v, str))
    return texts


@lru_cache(maxsize=4)
def tiny_tokenizer(vocab_size: int = 512, use_bundled: bool = True):
    """A BPE tokenizer (Metaspace pre-tokenizer) trained now on ``TINY_CORPUS`` (+ bundled data if present).

    Returns a transformers fast tokenizer with pad/eos/bos/unk set (pad id 0, eos 1, bos 2) and
    right padding.  Cached, so every caller gets the same object; do not mutate it.

    >>> tiny_tokenizer().pad_token_id
    0
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(TINY_CORPUS) + (_bundled_texts() if use_bundled else [])
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    fast.padding_side = "right"
    return fast


def tiny_gemma3_config(vocab_size: int = 512, num_layers: int = 2, hidden_size: int = 64):
    """A Gemma3TextConfig shaped like Gemma 3 270M in miniature (tied, scaled embedding)."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=512,
        sliding_window=16,
        # one sliding and one full attention layer, like the 5:1 pattern of the real model
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(num_layers)],
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
    )


def tiny_gemma3(vocab_size: int | None = None, seed: int = 0, num_layers: int = 2, hidden_size: int = 64):
    """A randomly initialised ``Gemma3ForCausalLM`` (2 layers, hidden 64), in eval mode, float32.

    ``vocab_size`` defaults to the size of ``tiny_tokenizer()``.

    >>> tiny_gemma3(vocab_size=100).config.tie_word_embeddings
    True
    """
    import torch
    from transformers import Gemma3ForCausalLM

    if vocab_size is None:
        vocab_size = len(tiny_tokenizer())
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(tiny_gemma3_config(vocab_size, num_layers, hidden_size))
    model.config.use_cache = False
    return model.eval()


def save_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny model and its tokenizer as a Hugging Face folder (for loader/CLI tests)."""
    folder = Path(folder)
    tok = tiny_tokenizer()
    tiny_gemma3(len(tok), seed=seed).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_gemma3_multimodal(vocab_size: int | None = None, seed: int = 0, num_layers: int = 2):
    """A tiny ``Gemma3ForConditionalGeneration`` (MedGemma's shape: vision tower + language model)."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

    if vocab_size is None:
        vocab_size = len(tiny_tokenizer())
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    cfg = Gemma3Config(
        text_config=tiny_gemma3_config(vocab_size, num_layers).to_dict(),
        vision_config=vision.to_dict(),
        mm_tokens_per_image=4,
    )
    torch.manual_seed(seed)
    return Gemma3ForConditionalGeneration(cfg).eval()


# ---------------------------------------------------------------- pipeline stand-ins for the tiny model


class TinyExample:
    """Same fields as ``puredl.finetune.datasets.TextExample``."""

    def __init__(self, text: str, prompt: str = "") -> None:
        self.text = text
        self.prompt = prompt


def tiny_examples(kind: str, split: str = "train", path=None, max_samples=None, seed: int = 0) -> list:
    """Deterministic examples per phase kind, drawn from ``TINY_CORPUS`` (a stand-in data loader)."""
    lines = {
        "korean_text": TINY_CORPUS[:10],
        "medical_terms": TINY_CORPUS[10:16],
        "medical_mcq": TINY_CORPUS[16:18],
    }[kind]
    if kind == "medical_mcq":
        out = [
            TinyExample(text=line.split("정답:")[1].strip(), prompt=line.split("정답:")[0] + "정답:")
            for line in lines
        ]
    else:
        out = [TinyExample(text=line) for line in lines]
    out = out * 2 if split == "train" else out[:3]
    return out[:max_samples] if max_samples else out


def tiny_evaluate(model, tokenizer, capabilities, data_paths=None, max_eval=None, device="cpu", **_) -> dict:
    """Token-weighted perplexity per capability on its test examples (``score`` = -perplexity)."""
    import math

    import torch

    kinds = {"fluency": "korean_text", "terminology": "medical_terms", "reasoning": "medical_mcq"}
    out = {}
    for cap in capabilities:
        nll, n = 0.0, 0
        for ex in tiny_examples(kinds[cap], split="test"):
            ids = tokenizer(ex.prompt + ex.text, return_tensors="pt")["input_ids"].to(device)
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            n += ids.shape[1] - 1
        ppl = math.exp(nll / n)
        out[cap] = {"perplexity": ppl, "score": -ppl}
    return out


def tiny_hooks():
    """``PipelineHooks`` for the tiny model: stand-in data and metrics, the real forgetting check."""
    from puredl.finetune.hooks import CAPABILITIES_DEFAULT, PipelineHooks, default_hooks

    real = default_hooks()
    return PipelineHooks(
        load_examples=tiny_examples,
        evaluate=tiny_evaluate,
        check_forgetting=real.check_forgetting,
        write_report=None,
        format_table=None,
        capabilities=dict(CAPABILITIES_DEFAULT),
    )


def tiny_config_text(model_dir: str | Path, out_dir: str | Path, **training) -> str:
    """An SDN config for the tiny model (three phases, a few steps each)."""
    settings = {
        "epochs": 1,
        "batch_size": 2,
        "learning_rate": 0.01,
        "max_length": 48,
        "checkpoint_every": 2,
        "seed": 3,
        "device": "cpu",
    }
    settings.update(training)
    lines = [
        'project: "tiny"',
        "model:",
        f'  name: "{model_dir}"',
        "  lora_r: 4",
        "  lora_alpha: 8",
        "  lora_dropout: 0.0",
        '  target_modules: ["q_proj", "v_proj"]',
        "training:",
    ]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in settings.items()]
    lines += [
        "phases:",
        '  - {name: "fluency", data: "korean_text", target_modules: ["q_proj", "v_proj", "embeddings"]}',
        '  - {name: "terms", data: "medical_terms"}',
        '  - {name: "mcq", data: "medical_mcq"}',
        "output:",
        f'  dir: "{out_dir}"',
    ]
    return "\n".join(lines) + "\n"


def run_tiny_pipeline(config_path: str, resume: bool = False, compare: str | None = None) -> dict:
    """``run-all`` on the tiny model with the stand-in hooks (used in-process and by a subprocess)."""
    from puredl.finetune.config import load_config
    from puredl.finetune.pipeline import make_context, run_all

    cfg = load_config(config_path)
    ctx = make_context(cfg, resume=resume, hooks=tiny_hooks(), out=lambda s: print(s, flush=True))
    summary, _ = run_all(ctx, compare=compare)
    return summary


if __name__ == "__main__":  # python tests/finetune_helpers.py CONFIG [--resume]  (the SIGKILL test's child)
    import sys

    run_tiny_pipeline(sys.argv[1], resume="--resume" in sys.argv[2:])


def tiny_plan(**kw):
    """A one-step, constant-LR TrainPlan for tiny-model tests; keywords override the defaults."""
    from puredl.finetune.trainer import TrainPlan

    base = dict(
        epochs=1,
        batch_size=4,
        grad_accum=1,
        learning_rate=1e-2,
        scheduler="constant",
        warmup=0,
        total_steps=1,
        seed=0,
        max_grad_norm=0.0,
    )
    base.update(kw)
    return TrainPlan(**base)
