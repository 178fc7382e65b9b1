"""LoRA adapters on PEFT: add, load, freeze, merge and save, scoped to the language model.

The seed recipe's ``LoRAConfig(r, alpha, dropout, target_modules=["q_proj", "v_proj",
"embeddings"])`` maps onto ``peft.LoraConfig`` with three puredl rules:

* names match inside the language model only (MedGemma 4B's vision tower also has q_proj/v_proj),
  so the PEFT config lists the exact module paths;
* ``"embeddings"`` means ``model.get_input_embeddings()``. Gemma 3 ties it to the output layer,
  so the embedding LoRA is trained as one tied pair (PEFT ``ensure_weight_tying``) and merged once
  into the shared matrix: merged logits equal base-plus-adapter logits;
* the scale multiplies the rank-r intermediate instead of the layer output (``lora_scale``):
  the same values and gradients without a pass over Gemma's [tokens, 262k] logits;
* saved folders are plain PEFT adapters (adapter_config.json + adapter_model.safetensors, never
  a full copy of the embedding matrix) that ``peft.PeftModel.from_pretrained`` loads.

>>> cfg = LoRAConfig(r=64, alpha=128, dropout=0.05, use_rslora=True)
>>> cfg.scaling
16.0
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from puredl._atomic import replace_dir  # the one folder-replace (refuses folders puredl did not write)
from puredl._optional import require
from puredl.finetune.lora_scale import fold_lora_scale

EMBEDDINGS = "embeddings"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SHORT_TARGETS_KEY = "puredl.target_modules"
EMBEDDING_NAMES = ("embed_tokens", "wte", "word_embeddings")  # for adapters saved by other tools


@dataclass
class LoRAConfig:
    """Settings of one LoRA adapter: the one home of the LoRA defaults and their documentation.

    The run config's ``model.lora_*`` keys take their defaults and help from these fields
    (``puredl.finetune.config.ModelSection``), so the two cannot disagree.
    """

    r: int = field(
        default=16, metadata={"help": "LoRA rank r of the update B @ A (the seed recipe uses 64)."}
    )
    alpha: float = field(
        default=32.0,
        metadata={"help": "LoRA alpha; the update is scaled by alpha/r, or alpha/sqrt(r) with rsLoRA."},
    )
    dropout: float = field(
        default=0.05,
        metadata={"help": "Dropout on the LoRA input of linear layers (PEFT ignores it on embeddings)."},
    )
    use_rslora: bool = field(
        default=False, metadata={"help": "Rank-stabilised LoRA: scale by alpha/sqrt(r) instead of alpha/r."}
    )
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "v_proj"],
        metadata={
            "help": "Module names matched inside the language model only; 'embeddings' means the input "
            "embedding (tied to the output layer in Gemma 3, trained as one tied pair)."
        },
    )

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoRAConfig.r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRAConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("LoRAConfig.target_modules must name at least one module")
        self.target_modules = list(self.target_modules)

    @property
    def scaling(self) -> float:
        """The factor PEFT multiplies B @ A by."""
        return self.alpha / math.sqrt(self.r) if self.use_rslora else self.alpha / self.r


@dataclass
class LoRAAdapter:
    """A saved adapter folder, as returned by ``load_lora`` (weights are read when it is added)."""

    path: Path
    config: LoRAConfig
    module_names: list[str]


# ---------------------------------------------------------------- naming


def language_model_prefix(model: Any) -> str:
    """Dotted path of the language model inside ``model`` ('' when the model is one).

    ``Gemma3ForCausalLM`` -> ``'model'``; ``Gemma3ForConditionalGeneration`` ->
    ``'model.language_model'``.
    """
    model = _unwrap(model)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None:
        return ""
    for name, module in model.named_modules():
        if module is decoder:
            return name
    return ""


def resolve_target_modules(model: Any, target_modules: list[str]) -> list[str]:
    """Full module paths for the short names, matched inside the language model only.

    Raises ``ValueError`` naming the unmatched names and the available ones.
    """
    model = _unwrap(model)
    prefix = language_model_prefix(model)
    wanted = set(target_modules)
    found: list[str] = []
    matched: set[str] = set()
    if EMBEDDINGS in wanted:
        emb = model.get_input_embeddings()
        found += [n for n, m in model.named_modules() if m is emb][:1]
        matched.add(EMBEDDINGS)
    available: set[str] = set()
    for name, module in model.named_modules():
        inside = not prefix or name.startswith(prefix + ".")
        short = name.rsplit(".", 1)[-1]
        if not inside or "lora_" in name or name.endswith(".base_layer") or not _is_adaptable(module):
            continue
        available.add(short)
        if short in wanted:
            found.append(name)
            matched.add(short)
    missing = wanted - matched
    if missing:
        where = f"inside {prefix!r}" if prefix else "in the model"
        raise ValueError(
            f"LoRA target_modules {sorted(missing)} match no layer {where}; available names: "
            f"{', '.join(sorted(available))} and {EMBEDDINGS!r}"
        )
    return found


def _is_adaptable(module: Any) -> bool:
    torch = require("torch", "llm", "LoRA")
    # a layer already wrapped by PEFT (another adapter) is still a target
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    return isinstance(base, (torch.nn.Linear, torch.nn.Embedding))


def _unwrap(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    peft = require("peft", "llm", "LoRA")
    if isinstance(model, peft.PeftModel):
        return model.get_base_model()
    return model


def _embeddings_tied(model: Any) -> bool:
    model = _unwrap(model)
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or inp is None:
        return False
    out_w = getattr(out, "base_layer", out).weight
    inp_w = getattr(inp, "base_layer", inp).weight
    return out_w.data_ptr() == inp_w.data_ptr()


def to_peft_config(model: Any, config: LoRAConfig) -> Any:
    """The ``peft.LoraConfig`` for ``config`` on this model (exact, language-model-only paths)."""
    peft = require("peft", "llm", "LoRA")
    names = resolve_target_modules(model, config.target_modules)
    base = _unwrap(model)
    return peft.LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        use_rslora=config.use_rslora,
        target_modules=names,
        bias="none",
        task_type="CAUSAL_LM",
        ensure_weight_tying=EMBEDDINGS in config.target_modules and _embeddings_tied(base),
        base_model_name_or_path=getattr(base.config, "_name_or_path", None) or None,
    )


# ---------------------------------------------------------------- add / load / merge / save


def add_lora(
    model: Any, lora: LoRAConfig | LoRAAdapter, trainable: bool = True, name: str | None = None
) -> Any:
    """Add a new (``LoRAConfig``) or saved (``LoRAAdapter``) adapter; return the PEFT model.

    All adapters added so far stay active (their updates add up). Only adapters added with
    ``trainable=True`` get ``requires_grad``; the base model is always frozen.

    >>> model = add_lora(base, LoRAConfig(r=4, alpha=8))             # doctest: +SKIP
    >>> model = add_lora(base, load_lora("runs/x/phase0/lora_0"), trainable=False)  # doctest: +SKIP
    """
    peft = require("peft", "llm", "LoRA")
    was_training = model.training
    wrapped = isinstance(model, peft.PeftModel)
    existing = list(model.peft_config) if wrapped else []
    name = name or f"lora_{len(existing)}"
    if name in existing:
        raise ValueError(f"an adapter named {name!r} is already on the model ({existing})")
    trainable_before = _trainable_adapters(model) if wrapped else set()
    with warnings.catch_warnings():
        # PEFT warns about tied weights even when they are tied on purpose (ensure_weight_tying)
        warnings.filterwarnings("ignore", message=".*tie.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        if isinstance(lora, LoRAAdapter):
            try:
                if wrapped:
                    model.load_adapter(str(lora.path), adapter_name=name, is_trainable=trainable)
                else:
                    model = peft.PeftModel.from_pretrained(
                        model, str(lora.path), adapter_name=name, is_trainable=trainable
                    )
            except (ValueError, KeyError, RuntimeError) as exc:
                raise ValueError(f"adapter {lora.path} does not fit this model: {exc}") from exc
        else:
            peft_cfg = to_peft_config(model, lora)
            if wrapped:
                model.add_adapter(name, peft_cfg)
            else:
                model = peft.get_peft_model(model, peft_cfg, adapter_name=name)
    _activate(model, existing + [name], trainable_before | ({name} if trainable else set()))
    fold_lora_scale(model)  # the scale multiplies [tokens, r], not the 262k-wide output (same values)
    model.train(was_training)  # PEFT switches to train mode; keep the caller's mode
    return model


def _trainable_adapters(model: Any) -> set[str]:
    names = set()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            for adapter in model.peft_config:
                if pname.endswith(f".{adapter}") or f".{adapter}." in pname:
                    names.add(adapter)
    return names


def _activate(model: Any, active: list[str], trainable: set[str]) -> None:
    """Make ``active`` adapters all apply, and only ``trainable`` ones require grad."""
    model.base_model.set_adapter(active)
    for pname, p in model.named_parameters():
        owner = _adapter_of(pname, model.peft_config)
        p.requires_grad_(owner is not None and owner in trainable)


def _adapter_of(param_name: str, adapters: Any) -> str | None:
    if "lora_" not in param_name:
        return None
    for adapter in adapters:
        if param_name.endswith(f".{adapter}") or f".{adapter}." in param_name:
            return adapter
    return None


def trainable_parameters(model: Any) -> dict[str, Any]:
    """``{name: parameter}`` of every parameter that receives gradients."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def load_lora(path: str | Path) -> LoRAAdapter:
    """Read a saved adapter folder's config (weights load when ``add_lora`` applies it).

    >>> load_lora("no/such/dir")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    FileNotFoundError: no/such/dir: not a LoRA adapter folder (adapter_config.json missing)
    """
    path = Path(path)
    cfg_file = path / ADAPTER_CONFIG
    if not cfg_file.is_file() or not (path / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{path}: not a LoRA adapter folder ({ADAPTER_CONFIG} or {ADAPTER_WEIGHTS} missing)"
        )
    raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    targets = raw.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    short = _saved_short_targets(path) or sorted(
        {EMBEDDINGS if t.endswith(EMBEDDING_NAMES) else t.rsplit(".", 1)[-1] for t in targets}
    )
    config = LoRAConfig(
        r=int(raw.get("r", 8)),
        alpha=float(raw.get("lora_alpha", 8)),
        dropout=float(raw.get("lora_dropout", 0.0)),
        use_rslora=bool(raw.get("use_rslora", False)),
        target_modules=list(short),
    )
    return LoRAAdapter(path=path, config=config, module_names=targets)


def merge_lora(model: Any, adapter_names: list[str] | None = None) -> Any:
    """Fold the active adapters into the base weights and return the plain transformers model.

    A weight shared by the tied embedding and output layer gets its update once (PEFT's own
    ``merge_and_unload`` would add it twice), so merged logits equal unmerged logits.
    """
    torch = require("torch", "llm", "LoRA")
    peft = require("peft", "llm", "LoRA")
    tuners = require("peft.tuners.lora", "llm", "LoRA")
    if not isinstance(model, peft.PeftModel):
        return model
    names = adapter_names or list(model.peft_config)
    merged: dict[str, set[int]] = {n: set() for n in names}
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, tuners.LoraLayer):
                continue
            weight = module.get_base_layer().weight
            # a tied weight is one Parameter (or one storage) seen from two modules: merge it once
            keys = {id(weight), weight.data_ptr()}
            todo = [n for n in names if (n in module.lora_A or n in module.lora_embedding_A)]
            todo = [n for n in todo if not keys & merged[n]]
            if todo:
                module.merge(adapter_names=todo, safe_merge=True)
                for n in todo:
                    merged[n] |= keys | {weight.data_ptr()}
    base = model.unload()
    for p in base.parameters():
        p.requires_grad_(False)
    return base


def save_lora(model: Any, path: str | Path, adapter_name: str | None = None) -> Path:
    """Write one adapter as a PEFT folder (atomically: temp folder, then rename).

    ``adapter_name`` defaults to the single trainable adapter. The embedding matrix itself is
    never saved (only its low-rank factors).
    """
    peft = require("peft", "llm", "LoRA")
    st = require("safetensors.torch", "llm", "saving adapters")
    if not isinstance(model, peft.PeftModel):
        raise ValueError("save_lora needs a model with a LoRA adapter (see add_lora)")
    if adapter_name is None:
        trainable = sorted(_trainable_adapters(model))
        adapter_name = trainable[0] if len(trainable) == 1 else list(model.peft_config)[-1]
    if adapter_name not in model.peft_config:
        raise ValueError(f"no adapter named {adapter_name!r} (have {list(model.peft_config)})")
    state = peft.get_peft_model_state_dict(model, adapter_name=adapter_name, save_embedding_layers=False)
    # tied factors are views of one another; safetensors wants independent, contiguous tensors
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}
    cfg = model.peft_config[adapter_name]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        cfg.save_pretrained(str(tmp))
        # puredl's short target names ride in the safetensors header, which PEFT ignores
        meta = {"format": "pt", SHORT_TARGETS_KEY: json.dumps(_short_targets(model, adapter_name))}
        st.save_file(state, str(tmp / ADAPTER_WEIGHTS), metadata=meta)
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _saved_short_targets(path: Path) -> list[str] | None:
    """The short target names save_lora stored in the weights file's header (None if absent)."""
    st = require("safetensors", "llm", "reading adapters")
    with st.safe_open(str(path / ADAPTER_WEIGHTS), framework="pt") as fh:
        text = (fh.metadata() or {}).get(SHORT_TARGETS_KEY)
    try:
        names = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _short_targets(model: Any, adapter_name: str) -> list[str]:
    """The adapter's targets as short names ('embeddings' for the input embedding).

    Read from the modules that carry the adapter, not from the PEFT config: PEFT rewrites long
    target lists into minimal suffixes, and adds the tied output layer by itself.
    """
    tuners = require("peft.tuners.lora", "llm", "LoRA")
    base = _unwrap(model)
    emb = base.get_input_embeddings()
    emb = emb.get_base_layer() if hasattr(emb, "get_base_layer") else emb
    emb_ptr = emb.weight.data_ptr()
    short: list[str] = []
    for name, module in base.named_modules():
        if not isinstance(module, tuners.LoraLayer):
            continue
        if adapter_name not in module.lora_A and adapter_name not in module.lora_embedding_A:
            continue
        layer = module.get_base_layer()
        if layer is emb:
            s = EMBEDDINGS
        elif layer.weight.data_ptr() == emb_ptr:
            continue  # the output layer tied to the embedding rides along with "embeddings"
        else:
            s = name.rsplit(".", 1)[-1]
        if s not in short:
            short.append(s)
    return sorted(short)


def tied_parameter_groups(model: Any) -> tuple[list[tuple[str, Any]], list[tuple[Any, Any, bool]]]:
    """Trainable parameters to optimize, and the tied copies whose gradients fold into them.

    PEFT's tied output-layer LoRA factors are separate Parameters over the embedding LoRA's
    storage (transposed). An optimizer that stepped both would apply the update twice with
    two sets of moments; instead the copy's gradient is added to the owner's and only the
    owner is optimized. Returns ``(named owners, [(owner, copy, transposed)])``.
    """
    owners: list[tuple[str, Any]] = []
    by_storage: dict[tuple[int, int], Any] = {}
    tied: list[tuple[Any, Any, bool]] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (p.untyped_storage().data_ptr(), p.numel())
        owner = by_storage.get(key)
        if owner is None:
            by_storage[key] = p
            owners.append((name, p))
            continue
        if p.shape == owner.shape:
            tied.append((owner, p, False))
        elif p.dim() == 2 and p.shape == owner.shape[::-1]:
            tied.append((owner, p, True))
        else:
            raise RuntimeError(f"parameter {name} shares storage with another of a different shape")
    return owners, tied


def fold_tied_gradients(tied: list[tuple[Any, Any, bool]]) -> None:
    """Add each tied copy's gradient into its owner's (the total derivative) and clear the copy's."""
    for owner, copy, transposed in tied:
        if copy.grad is None:
            continue
        grad = copy.grad.t() if transposed else copy.grad
        owner.grad = grad.clone() if owner.grad is None else owner.grad + grad
        copy.grad = None
