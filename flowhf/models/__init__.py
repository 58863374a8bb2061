"""Policy models: loading (Hub id, folder, GGUF, embedded SmolLM2), LoRA, flow / log Z heads,
the cache (`flowhf.models.cache`).

Names are imported on first use, so a module that only needs the cache (a reward, the
evaluation's embedder) does not pay for peft and the model classes.
"""

import importlib

_WHERE = {
    "FlowHead": "heads",
    "PromptLogZHead": "heads",
    "ScalarLogZ": "heads",
    "TrainedPolicy": "saved_run",
    "load_heads": "saved_run",
    "load_trained": "saved_run",
    "save_heads": "saved_run",
    "save_policy": "saved_run",
    "DEFAULT_MODEL": "loading",
    "PolicyBundle": "loading",
    "convert_gguf": "loading",
    "default_model_dir": "loading",
    "load_causal_lm": "loading",
    "load_policy": "loading",
    "load_tokenizer": "loading",
    "prepare_tokenizer": "loading",
    "resolve_model_path": "loading",
    "LoraSettings": "lora",
    "apply_lora": "lora",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"flowhf.models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'flowhf.models' has no attribute {name!r}")
