"""The saved-run format: a trained policy folder that other tools can load as it is.

A run folder is a plain PeftModel (adapter) or AutoModel folder plus the tokenizer and
``flowhf_heads.safetensors`` + ``flowhf_heads.json``: the heads' weights, their classes and
constructor arguments, and the run's meta (objective, config, base model). Only the known
head classes (`flowhf.models.heads.HEAD_CLASSES`) are rebuilt; nothing is imported by name
from the file.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from peft import PeftModel
from safetensors.torch import load_file, save_file

from flowhf.io import atomic_files
from flowhf.models.card import RunSummary, write_model_card
from flowhf.models.heads import HEAD_CLASSES
from flowhf.models.loading import load_causal_lm, load_tokenizer

HEADS_WEIGHTS = "flowhf_heads.safetensors"
HEADS_CONFIG = "flowhf_heads.json"
FORMAT_VERSION = 1


def save_heads(
    directory: str | os.PathLike, heads: dict[str, nn.Module], meta: dict | None = None
) -> None:
    """Write heads (weights in safetensors, class + constructor args in JSON) and ``meta``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, spec = {}, {}
    for name, head in heads.items():
        if type(head).__name__ not in HEAD_CLASSES:
            raise TypeError(
                f"save_heads: head {name!r} is a {type(head).__name__}; "
                f"expected one of {sorted(HEAD_CLASSES)}."
            )
        if "." in name:
            raise ValueError(f"save_heads: head name {name!r} must not contain '.'.")
        spec[name] = {"class": type(head).__name__, "kwargs": head.init_kwargs()}
        for key, value in head.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().to("cpu", torch.float32).contiguous()
    document = {"format_version": FORMAT_VERSION, "heads": spec, "meta": meta or {}}
    try:
        text = json.dumps(document, indent=2, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"save_heads: meta must be JSON-serialisable ({err}).") from err
    save_file(tensors, str(directory / HEADS_WEIGHTS), metadata={"format": "pt"})
    (directory / HEADS_CONFIG).write_text(text + "\n")


def load_heads(
    directory: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[dict[str, nn.Module], dict]:
    """Rebuild the heads saved by ``save_heads``; returns (heads, meta).

    Only the known head classes can be built (nothing is imported by name from the file).
    A folder without heads gives ({}, {}).
    """
    directory = Path(directory)
    config_path = directory / HEADS_CONFIG
    if not config_path.is_file():
        return {}, {}
    document = json.loads(config_path.read_text())
    if document.get("format_version") != FORMAT_VERSION:
        version = document.get("format_version")
        raise ValueError(f"{config_path}: unsupported format_version {version!r}.")
    tensors = load_file(str(directory / HEADS_WEIGHTS)) if document["heads"] else {}
    heads: dict[str, nn.Module] = {}
    for name, entry in document["heads"].items():
        cls = HEAD_CLASSES.get(entry.get("class"))
        if cls is None:
            raise ValueError(
                f"{config_path}: head {name!r} has unknown class {entry.get('class')!r}."
            )
        head = cls(**entry["kwargs"])
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        head.load_state_dict(state, strict=True)
        heads[name] = head.to(device) if device is not None else head
    return heads, document.get("meta", {})


def save_policy(
    bundle,
    directory: str | os.PathLike,
    heads: dict[str, nn.Module] | None = None,
    meta: dict | None = None,
    base_model: str | None = None,
    summary: RunSummary | None = None,
) -> Path:
    """Save a ``PolicyBundle``: adapter (LoRA) or full model, tokenizer, heads, and a model card
    (README.md, `flowhf.models.card`; ``summary``: the last metrics it shows).

    The files are written to a temporary folder and renamed into ``directory`` (heads JSON
    last; `flowhf.io.atomic_files`): a run folder killed mid-save never holds half a model.

    Under LoRA the adapter config records the base model's concrete path/id (``base_model``,
    else the loaded model's ``name_or_path``), so that plain
    ``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), directory)``
    works; the user-facing spec (e.g. "smollm2") goes into flowhf_heads.json's meta.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    meta.setdefault("lora", bundle.is_lora)
    if bundle.source is not None:
        meta.setdefault("source", bundle.source)
    if bundle.is_lora:
        base = base_model or getattr(bundle.model.get_base_model(), "name_or_path", "") or ""
        if base and Path(base).is_dir():
            base = str(Path(base).resolve())  # so the run folder loads from any working dir
        if not base:
            warnings.warn(
                "save_policy: the base model's path is unknown (model built in memory); the "
                "adapter config has no base_model_name_or_path. Pass base_model=... to record it.",
                stacklevel=2,
            )
        for config in bundle.model.peft_config.values():
            config.base_model_name_or_path = base or None
        meta["base_model"] = base or None
    with atomic_files(directory, last=(HEADS_CONFIG,)) as tmp:
        bundle.model.save_pretrained(tmp)
        if bundle.tokenizer is not None:
            bundle.tokenizer.save_pretrained(tmp)
        write_model_card(directory, meta, summary, into=tmp)  # after PEFT's own README.md
        save_heads(tmp, heads or {}, meta)
    return directory


@dataclass
class TrainedPolicy:
    """A saved run loaded back: the model ready to generate, its tokenizer, heads and meta."""

    model: nn.Module
    tokenizer: object | None
    heads: dict[str, nn.Module] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


def load_trained(
    directory: str | os.PathLike,
    *,
    base_model: str | None = None,
    dtype: str | torch.dtype = "float32",
    merge: bool = False,
    is_trainable: bool = False,
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
) -> TrainedPolicy:
    """Load a folder written by ``save_policy``.

    LoRA folders get their base from ``base_model``, else the adapter config, else the
    recorded source spec; adapters stay separate unless ``merge=True``. The model is in
    eval mode unless ``is_trainable``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"load_trained: no such run folder {directory}.")
    heads, meta = load_heads(directory)
    adapter_config = directory / "adapter_config.json"
    if adapter_config.is_file():
        recorded = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        base = base_model or recorded or meta.get("source")
        if not base:
            raise ValueError(
                f"load_trained: {adapter_config} names no base model; pass base_model=...."
            )
        base_model_obj, base_tok = load_causal_lm(
            base, dtype=dtype, trust_remote_code=trust_remote_code, cache_dir=cache_dir
        )
        model = PeftModel.from_pretrained(base_model_obj, str(directory), is_trainable=is_trainable)
        if merge:
            model = model.merge_and_unload()
    else:
        model, base_tok = load_causal_lm(
            directory, dtype=dtype, trust_remote_code=trust_remote_code, cache_dir=cache_dir
        )
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json")
    tokenizer = base_tok
    if any((directory / name).is_file() for name in tokenizer_files):
        tokenizer = load_tokenizer(directory, trust_remote_code=trust_remote_code)
    model.train(is_trainable)
    return TrainedPolicy(model=model, tokenizer=tokenizer, heads=heads, meta=meta)
