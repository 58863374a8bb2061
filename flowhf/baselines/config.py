"""Run a baseline from a YAML config (``configs/baselines/*.yaml``).

A config is ``method: sft | grpo | ppo`` plus the runner's keyword arguments under their own
names (``model``, ``output_dir``, ``budget: {seconds, generated_tokens, max_steps}``, ``lora:
{r, alpha, dropout, target_modules}`` or null, ...). Unknown keys are an error listing the valid
ones, so a typo never silently falls back to a default. Overrides use dotted keys with YAML
values: ``budget.max_steps=2``, ``lora=null``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml


def runners() -> dict[str, Callable[..., dict[str, Any]]]:
    from flowhf.baselines.grpo import run_grpo
    from flowhf.baselines.ppo import run_ppo
    from flowhf.baselines.sft import run_sft

    return {"sft": run_sft, "grpo": run_grpo, "ppo": run_ppo}


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML mapping at ``path`` with ``key.sub=value`` overrides applied."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"baseline config not found: {path}")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a baseline config must be a YAML mapping, got {type(config).__name__}")
    for item in overrides:
        apply_override(config, item)
    return config


def apply_override(config: dict[str, Any], item: str) -> None:
    """Set ``a.b=value`` in ``config`` (value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {item!r} must look like key=value (e.g. budget.max_steps=2)")
    parts = key.strip().split(".")
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"override {item!r}: {part!r} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = yaml.safe_load(raw)


def check_config(config: dict[str, Any]) -> tuple[Callable[..., dict[str, Any]], dict[str, Any]]:
    """(runner, keyword arguments) for ``config``; unknown or missing keys raise ValueError."""
    method = config.get("method")
    table = runners()
    if method not in table:
        raise ValueError(f"config key 'method' must be one of {sorted(table)}, got {method!r}")
    runner = table[method]
    kwargs = {k: v for k, v in config.items() if k != "method"}
    params = inspect.signature(runner).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for method {method!r}; valid keys: {sorted(params)}")
    missing = sorted(n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs)
    if missing:
        raise ValueError(f"config for method {method!r} is missing required key(s) {missing}")
    return runner, kwargs


def run_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run the baseline described by the YAML file at ``path``; returns its result dict."""
    runner, kwargs = check_config(load_config(path, overrides))
    return runner(**kwargs)
