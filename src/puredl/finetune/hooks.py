"""Where the pipeline gets its data, metrics, forgetting check and report (issue 7's modules).

The pipeline talks to them only through these five callables, so tests can hand in small
hand-checkable stand-ins and the real modules can evolve on their own.

>>> CAPABILITIES_DEFAULT["medical_mcq"]
'reasoning'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# the contract's mapping; puredl.finetune.metrics.CAPABILITIES is used when it is there
CAPABILITIES_DEFAULT = {"korean_text": "fluency", "medical_terms": "terminology", "medical_mcq": "reasoning"}


@dataclass
class PipelineHooks:
    """The data/metrics/report functions the pipeline calls (see the module docstring)."""

    load_examples: Callable[..., list[Any]]
    evaluate: Callable[..., dict[str, dict[str, float]]] | None
    check_forgetting: Callable[..., list[dict]] | None
    write_report: Callable[..., Any] | None
    format_table: Callable[[dict], str] | None
    capabilities: dict[str, str]


def _optional_attr(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def default_hooks() -> PipelineHooks:
    """The real modules: ``puredl.finetune.datasets/metrics/forgetting/report``."""
    load = _optional_attr("puredl.finetune.datasets", "load_phase_examples")
    if load is None:
        load = _missing_datasets
    caps = _optional_attr("puredl.finetune.metrics", "CAPABILITIES") or CAPABILITIES_DEFAULT
    return PipelineHooks(
        load_examples=load,
        evaluate=_optional_attr("puredl.finetune.metrics", "evaluate_capabilities"),
        check_forgetting=_optional_attr("puredl.finetune.forgetting", "check_catastrophic_forgetting"),
        write_report=_optional_attr("puredl.finetune.report", "write_report"),
        format_table=_optional_attr("puredl.finetune.report", "format_table"),
        capabilities=dict(caps),
    )


def _missing_datasets(kind: str, *args: Any, **kwargs: Any) -> list[Any]:
    from puredl.finetune.errors import FinetuneError

    raise FinetuneError(
        f"cannot load {kind!r} examples: puredl.finetune.datasets is not available in this install "
        "(reinstall puredl with its bundled fine-tuning data)"
    )
