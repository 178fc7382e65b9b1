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
