"""Progressive LoRA fine-tuning of real language models (extra ``llm``: torch, transformers, peft).

``import puredl.finetune`` needs only the standard library; the heavy modules load on first use.

>>> from puredl.finetune import LoRAConfig   # doctest: +SKIP
>>> LoRAConfig(r=64, alpha=128, dropout=0.05, use_rslora=True).scaling  # doctest: +SKIP
16.0

Main entry points: ``load_config``, ``load_model_and_tokenizer``, ``LoRAConfig``, ``add_lora``,
``load_lora``, ``merge_lora``, ``save_lora``, ``run_all`` (see docs/finetune.md).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FinetuneConfig": "puredl.finetune.config",
    "load_config": "puredl.finetune.config",
    "config_from_dict": "puredl.finetune.config",
    "describe_defaults": "puredl.finetune.config",
    "LoRAConfig": "puredl.finetune.lora",
    "LoRAAdapter": "puredl.finetune.lora",
    "add_lora": "puredl.finetune.lora",
    "load_lora": "puredl.finetune.lora",
    "merge_lora": "puredl.finetune.lora",
    "save_lora": "puredl.finetune.lora",
    "trainable_parameters": "puredl.finetune.lora",
    "load_model_and_tokenizer": "puredl.finetune.loading",
    "cache_dir": "puredl.finetune.loading",
    "run_all": "puredl.finetune.pipeline",
    "make_context": "puredl.finetune.pipeline",
    "FinetuneError": "puredl.finetune.errors",
    "ConfigError": "puredl.finetune.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'puredl.finetune' has no attribute {name!r}")
