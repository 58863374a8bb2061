"""Policy models: loading (Hub id, folder, GGUF, embedded SmolLM2), LoRA, flow / log Z heads."""

from flowhf.models.heads import (
    FlowHead,
    PromptLogZHead,
    ScalarLogZ,
    TrainedPolicy,
    load_heads,
    load_trained,
    save_heads,
    save_policy,
)
from flowhf.models.loading import (
    DEFAULT_MODEL,
    PolicyBundle,
    convert_gguf,
    default_model_dir,
    load_causal_lm,
    load_policy,
    load_tokenizer,
    prepare_tokenizer,
    resolve_model_path,
)
from flowhf.models.lora import LoraSettings, apply_lora

__all__ = [
    "DEFAULT_MODEL",
    "FlowHead",
    "LoraSettings",
    "PolicyBundle",
    "PromptLogZHead",
    "ScalarLogZ",
    "TrainedPolicy",
    "apply_lora",
    "convert_gguf",
    "default_model_dir",
    "load_causal_lm",
    "load_heads",
    "load_policy",
    "load_tokenizer",
    "load_trained",
    "prepare_tokenizer",
    "resolve_model_path",
    "save_heads",
    "save_policy",
]
