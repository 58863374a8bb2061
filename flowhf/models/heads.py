"""Small learned heads beside the policy: the flow head and the log Z estimators.

- ``FlowHead``: log F~(s) for every state, used by FL / DB / SubTB (a linear map of the
  policy's hidden states). Zero-initialised so log F~ starts at 0 and the initial
  residuals are those of the plain prefix energies.
- ``PromptLogZHead``: log Z(x) from the mean-pooled prompt hidden states (a small MLP).
- ``ScalarLogZ``: one learned log Z shared by every prompt.

Parameters are float32 always, even when the backbone runs in bfloat16: the heads are tiny
and log Z can reach hundreds of nats, where bfloat16 keeps only ~3 significant digits.

Heads are saved as ``flowhf_heads.safetensors`` + ``flowhf_heads.json`` (class names and
constructor arguments) next to the adapter or model, so a run directory stays a plain
PeftModel / AutoModel folder that other tools can load.
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

HEADS_WEIGHTS = "flowhf_heads.safetensors"
HEADS_CONFIG = "flowhf_heads.json"
FORMAT_VERSION = 1


class _Float32Module(nn.Module):
    """Keeps its parameters float32 through ``.to(dtype)`` / ``.bfloat16()`` calls, which a
    trainer may apply to a container that also holds the backbone; device moves still work."""

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for param in self.parameters():
            if param.dtype != torch.float32:
                param.data = param.data.float()
        return self

    def init_kwargs(self) -> dict:
        """Constructor arguments, stored in flowhf_heads.json to rebuild the head."""
        raise NotImplementedError


class FlowHead(_Float32Module):
    """Linear map of hidden states [B, S, H] to log F~ [B, S] (float32)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.hidden_size = int(hidden_size)
        self.linear = nn.Linear(self.hidden_size, 1, dtype=torch.float32)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def init_kwargs(self) -> dict:
        return {"hidden_size": self.hidden_size}

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        _check_hidden(hidden_states, self.hidden_size, "FlowHead")
        return self.linear(hidden_states.float()).squeeze(-1)  # [B, S]


class PromptLogZHead(_Float32Module):
    """log Z(x) [B] from prompt hidden states [B, S, H] mean-pooled over a prompt mask [B, S].

    LayerNorm -> Linear -> GELU -> Linear. The last layer starts at zero weights and bias
    ``init``, so every prompt starts at log Z = init. Pass ``hidden_states.detach()`` to keep
    log Z gradients out of the backbone.
    """

    def __init__(self, hidden_size: int, hidden: int = 128, init: float = 0.0):
        super().__init__()
        self.hidden_size, self.hidden, self.init = int(hidden_size), int(hidden), float(init)
        self.norm = nn.LayerNorm(self.hidden_size, dtype=torch.float32)
        self.fc1 = nn.Linear(self.hidden_size, self.hidden, dtype=torch.float32)
        self.fc2 = nn.Linear(self.hidden, 1, dtype=torch.float32)
        nn.init.zeros_(self.fc2.weight)
        nn.init.constant_(self.fc2.bias, self.init)

    def init_kwargs(self) -> dict:
        return {"hidden_size": self.hidden_size, "hidden": self.hidden, "init": self.init}

    def forward(self, hidden_states: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        _check_hidden(hidden_states, self.hidden_size, "PromptLogZHead")
        if prompt_mask.shape != hidden_states.shape[:2]:
            raise ValueError(
                f"PromptLogZHead: prompt_mask shape {tuple(prompt_mask.shape)} must equal the "
                f"hidden states' [B, S] = {tuple(hidden_states.shape[:2])}."
            )
        mask = prompt_mask.to(device=hidden_states.device, dtype=torch.float32)
        counts = mask.sum(dim=1, keepdim=True)  # [B, 1]
        if bool((counts == 0).any()):
            rows = torch.nonzero(counts.squeeze(1) == 0).flatten().tolist()
            raise ValueError(f"PromptLogZHead: prompt rows {rows} have an all-zero prompt_mask.")
        pooled = (hidden_states.float() * mask.unsqueeze(-1)).sum(dim=1) / counts  # [B, H]
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(pooled)))).squeeze(-1)  # [B]


class ScalarLogZ(_Float32Module):
    """One learned log Z, broadcast to the batch: the prompt-independent estimator."""

    def __init__(self, init: float = 0.0):
        super().__init__()
        self.init = float(init)
        self.log_z = nn.Parameter(torch.tensor(self.init, dtype=torch.float32))

    def init_kwargs(self) -> dict:
        return {"init": self.init}

    def forward(
        self,
        hidden_states: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        *,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """[B] copies of log Z; B from ``batch_size`` or the first dim of the given tensors
        (same call shape as PromptLogZHead, so the trainer can swap estimators)."""
        ref = hidden_states if hidden_states is not None else prompt_mask
        if batch_size is None:
            if ref is None:
                raise ValueError(
                    "ScalarLogZ needs batch_size= or a [B, ...] tensor to size its output."
                )
            batch_size = ref.shape[0]
        return self.log_z.expand(int(batch_size))


def _check_hidden(hidden_states: torch.Tensor, hidden_size: int, who: str) -> None:
    if hidden_states.dim() != 3 or hidden_states.shape[-1] != hidden_size:
        raise ValueError(
            f"{who}: expected hidden states [B, S, {hidden_size}], "
            f"got {tuple(hidden_states.shape)}."
        )


HEAD_CLASSES: dict[str, type[_Float32Module]] = {
    cls.__name__: cls for cls in (FlowHead, PromptLogZHead, ScalarLogZ)
}


# ----------------------------------------------------------------------------- save / load


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
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        head.load_state_dict(state, strict=True)
        heads[name] = head.to(device) if device is not None else head
    return heads, document.get("meta", {})


def save_policy(
    bundle,
    directory: str | os.PathLike,
    heads: dict[str, nn.Module] | None = None,
    meta: dict | None = None,
    base_model: str | None = None,
) -> Path:
    """Save a ``PolicyBundle``: adapter (LoRA) or full model, tokenizer, heads.

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
    bundle.model.save_pretrained(directory)
    if bundle.tokenizer is not None:
        bundle.tokenizer.save_pretrained(directory)
    save_heads(directory, heads or {}, meta)
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
    from flowhf.models.loading import load_causal_lm, load_tokenizer  # avoid import cycle

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
