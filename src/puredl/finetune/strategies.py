"""The anti-forgetting strategies a run can use or compare (``run-all --compare sequential,replay,olora``).

Every strategy shares the base model and phase 0 (LoRA_0 is trained once); they differ from
phase 1 on:

- ``progressive``: merge the earlier adapters and freeze them, train a fresh LoRA_k (IncLoRA in
  the O-LoRA paper's terms). The config's own run; ``training.replay_ratio`` and
  ``training.olora_lambda`` switch the two options below on for it.
- ``sequential``: one LoRA continued through all phases, nothing merged or frozen (the baseline).
  After phase 0 it trains only the modules that the progressive phase k trains (its embedding
  factors stay as phase 0 left them), so the comparison is not confounded by more modules.
  What still differs: fresh factors per phase and total rank.
- ``replay``: progressive + rehearsal of earlier training examples (``puredl.finetune.replay``).
- ``olora``: progressive + the O-LoRA orthogonality penalty (``puredl.finetune.olora``).

>>> [s.name for s in parse_compare("sequential,olora")]
['sequential', 'olora']
>>> parse_compare("replay")[0].replay_ratio, parse_compare("olora", olora_lambda=2.0)[0].olora_lambda
(0.25, 2.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from puredl.finetune.errors import FinetuneError

STRATEGIES = ("sequential", "replay", "olora")
DEFAULT_REPLAY_RATIO = 0.25  # the research note's design value (Scialom: 1% already helps)
DEFAULT_OLORA_LAMBDA = 0.5  # the O-LoRA paper's order of magnitude


@dataclass(frozen=True)
class Strategy:
    """How phases 1.. are trained (phase 0 is shared by every strategy)."""

    name: str
    one_lora: bool = False  # sequential: one adapter continued, nothing merged
    replay_ratio: float = 0.0
    olora_lambda: float = 0.0

    def describe(self) -> str:
        """One line for logs and the report.

        >>> Strategy("replay", replay_ratio=0.25).describe()
        'replay: merge and freeze each phase, fresh LoRA per phase; replay 25% of n_k per epoch'
        """
        if self.one_lora:
            text = "one LoRA continued through all phases (after phase 0: same modules as progressive)"
        else:
            text = "merge and freeze each phase, fresh LoRA per phase"
        if self.replay_ratio:
            text += f"; replay {100 * self.replay_ratio:g}% of n_k per epoch"
        if self.olora_lambda:
            text += f"; O-LoRA penalty lambda {self.olora_lambda:g}"
        return f"{self.name}: {text}"

    def settings(self) -> dict[str, Any]:
        return asdict(self)


def configured(replay_ratio: float = 0.0, olora_lambda: float = 0.0) -> Strategy:
    """The config's own run: progressive, with whatever replay / O-LoRA the config switches on."""
    return Strategy("progressive", replay_ratio=replay_ratio, olora_lambda=olora_lambda)


def parse_compare(text: str | None, replay_ratio: float = 0.0, olora_lambda: float = 0.0) -> list[Strategy]:
    """``"sequential,replay,olora"`` (any subset, any order) -> strategies to run beside the config's.

    ``replay`` uses ``replay_ratio`` when the config sets one (else 0.25) and ``olora`` uses
    ``olora_lambda`` when set (else 0.5); each comparison strategy uses only its own option.
    """
    if not text:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise FinetuneError(
            f"--compare {text!r}: unknown strategy {unknown or text!r}; choose any of "
            f"{', '.join(STRATEGIES)} separated by commas (e.g. --compare sequential,replay)"
        )
    if len(set(names)) != len(names):
        raise FinetuneError(f"--compare {text!r} names a strategy twice")
    made = {
        "sequential": Strategy("sequential", one_lora=True),
        "replay": Strategy("replay", replay_ratio=replay_ratio or DEFAULT_REPLAY_RATIO),
        "olora": Strategy("olora", olora_lambda=olora_lambda or DEFAULT_OLORA_LAMBDA),
    }
    return [made[n] for n in names]


def restrict_trainable(model: Any, adapter_name: str, modules: set[str]) -> list[str]:
    """Freeze ``adapter_name``'s factors outside ``modules`` (short names, 'embeddings' included).

    Returns the parameter names left trainable. The sequential baseline calls this after phase
    0 so it trains the modules progressive's phase k trains, not the embedding LoRA too.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    emb = base.get_input_embeddings()
    emb_layer = emb.get_base_layer() if hasattr(emb, "get_base_layer") else emb
    emb_ptr = emb_layer.weight.data_ptr()
    keep: list[str] = []
    for mod_name, module in model.named_modules():
        if not hasattr(module, "lora_A") or not hasattr(module, "get_base_layer"):
            continue
        layer = module.get_base_layer()
        is_embedding = (
            layer is emb_layer
            or getattr(layer, "weight", None) is not None
            and (layer.weight.data_ptr() == emb_ptr)
        )
        short = "embeddings" if is_embedding else mod_name.rsplit(".", 1)[-1]
        train = short in modules
        for pname, param in module.named_parameters(prefix=mod_name):
            if f".{adapter_name}" not in pname or "base_layer" in pname:
                continue
            param.requires_grad_(train)
            if train:
                keep.append(pname)
    return keep
