"""Run a baseline from a YAML config (``configs/baselines/*.yaml``).

A config is ``method: sft | grpo | ppo`` plus the runner's keyword arguments under their own
names (``model``, ``output_dir``, ``budget: {seconds, generated_tokens, max_steps}``, ``lora:
{r, alpha, dropout, target_modules}`` or null, ...). The keys of each method are the fields of
a dataclass below (`BaselineArgs` plus the method's own), with help text like every FlowHF
config, and are read through the loading every config shares (`flowhf.config.fields`): unknown keys
name the closest valid one, values are type-checked, required keys must be there. Overrides
use dotted keys with YAML values: ``budget.max_steps=2``, ``lora=null``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flowhf.config.fields import (
    AT_LEAST_ONE,
    NESTED,
    NON_NEGATIVE,
    POSITIVE,
    Range,
    apply_overrides,
    build_dataclass,
    help_field as _f,
    parse_assignment,
)
from flowhf.errors import ConfigError
from flowhf.io import read_yaml_mapping

_REQUIRED = dataclasses.MISSING


@dataclass(kw_only=True)
class BaselineArgs:
    """Keys every TRL baseline takes (defaults as in the runners' signatures)."""

    model: str = _f(
        _REQUIRED, "Policy: 'smollm2', a local folder or a Hub id (the SFT model for RLHF runs)."
    )
    output_dir: str = _f(
        _REQUIRED, "Run folder: metrics.jsonl / .csv, budget.json, result.json, model/."
    )
    budget: dict = _f(
        _REQUIRED, "{seconds, generated_tokens, max_steps}: the first limit reached ends the run."
    )
    lora: dict | None = _f(
        None, "{r, alpha, dropout, target_modules} of LoRA adapters, or null for full fine-tuning."
    )
    seed: int = _f(0, "Seed of TRL, data order and initialisation.")
    columns: dict | None = _f(
        None,
        "Our names (prompt, completion) -> source columns; StackExchange is mapped automatically.",
    )
    split: str | None = _f(None, "Split of a `datasets` source.")
    limit: int | None = _f(None, "Use only the first N rows.", allowed=AT_LEAST_ONE)
    use_chat_template: bool = _f(
        True, "Wrap prompts in the tokenizer's chat template (as FlowHF does)."
    )
    trl_overrides: dict | None = _f(None, "Extra fields of the TRL config, applied last.")
    overwrite: bool = _f(
        False, "Delete a run already in output_dir (otherwise such a folder is refused)."
    )


@dataclass(kw_only=True)
class SFTArgs(BaselineArgs):
    train_source: str = _f(
        _REQUIRED, "Prompt/completion pairs: shipped name, local file or hf:NAME."
    )
    max_length: int = _f(512, "Token limit of prompt + completion.", allowed=AT_LEAST_ONE)
    lr: float = _f(2e-4, "Learning rate.", allowed=POSITIVE)
    batch_size: int = _f(8, "Pairs per step.", allowed=AT_LEAST_ONE)
    epochs: float | None = _f(
        None, "Passes over the data; null repeats it until the budget ends.", allowed=POSITIVE
    )


@dataclass(kw_only=True)
class RLArgs(BaselineArgs):
    """Keys of the two reward-driven baselines (GRPO, PPO)."""

    prompts_source: str = _f(_REQUIRED, "Prompts: shipped name, local file or hf:NAME.")
    reward_spec: Any = _f(
        _REQUIRED, "Reward spec for flowhf.rewards.build_reward (string, mapping or list)."
    )
    max_completion_length: int = _f(32, "Completion length limit in tokens.", allowed=AT_LEAST_ONE)
    lr: float = _f(1e-4, "Learning rate.", allowed=POSITIVE)
    temperature: float = _f(1.0, "Sampling temperature.", allowed=POSITIVE)


@dataclass(kw_only=True)
class GRPOArgs(RLArgs):
    num_generations: int = _f(
        8, "Completions per prompt (the group of GRPO's advantage).", allowed=Range(2)
    )
    batch_size: int | None = _f(
        None, "Completions per step (a multiple of num_generations; null = one prompt)."
    )
    beta: float = _f(0.04, "KL to the reference (TRL's default would be 0).", allowed=NON_NEGATIVE)


@dataclass(kw_only=True)
class PPOArgs(RLArgs):
    batch_size: int = _f(8, "Prompts (= completions) per PPO update.", allowed=AT_LEAST_ONE)
    value_lora: bool = _f(True, "Train the value model with LoRA adapters too.")
    kl_coef: float = _f(0.05, "KL penalty coefficient.", allowed=NON_NEGATIVE)
    num_ppo_epochs: int = _f(
        4, "Optimisation passes over each rollout batch.", allowed=AT_LEAST_ONE
    )


METHOD_ARGS = {"sft": SFTArgs, "grpo": GRPOArgs, "ppo": PPOArgs}
# What every compared method shares; tuning one method may not change it (lm-target, reproduce sweeps).
FIXED_FOR_FAIRNESS = (
    "model",
    "prompts_source",
    "reward_spec",
    "output_dir",
    "budget",
    "max_completion_length",
    "lora",
    "tokenizer",
    "seed",
    "use_chat_template",
    "columns",
    "split",
    "limit",
)


def baseline_options(method: str, overrides: tuple[str, ...]) -> dict:
    """GRPO / PPO runner options from ``KEY=VALUE`` items (``lr=3e-4``, ``beta=0``), checked against
    the runner's arguments (`flowhf.config.baselines`); the keys that keep the comparison fair
    (model, prompts, reward, budget, lengths, LoRA shape, seed) are refused."""
    options = dict(parse_assignment(item, "lr=3e-4") for item in overrides)
    fixed = sorted(set(options) & set(FIXED_FOR_FAIRNESS))
    if fixed:
        raise ConfigError(
            f"--baseline-set {', '.join(fixed)}: every method gets the same {', '.join(fixed)}",
            "tune the method's own knobs instead, e.g. lr, beta (GRPO), kl_coef (PPO), num_generations",
        )
    required = {
        "model": "-",
        "prompts_source": "-",
        "reward_spec": "-",
        "output_dir": "-",
        "budget": {},
    }
    try:
        checked = build_dataclass(
            METHOD_ARGS[method], {**required, **options}, f"--baseline-set for {method}"
        )
    except ConfigError as error:
        tunable = [
            f.name
            for f in dataclasses.fields(METHOD_ARGS[method])
            if f.name not in FIXED_FOR_FAIRNESS
        ]
        raise ConfigError(str(error), f"{method}'s own keys: {', '.join(tunable)}") from None
    return {
        key: getattr(checked, key) for key in options
    }  # typed: YAML reads 3e-4 (no dot) as a string


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML mapping at ``path`` with ``key.sub=value`` overrides applied."""
    config = read_yaml_mapping(path, "baseline config")
    apply_overrides(config, overrides, NESTED)
    return config


def apply_override(config: dict[str, Any], item: str) -> None:
    """Set ``a.b=value`` in ``config`` (value parsed as YAML)."""
    apply_overrides(config, [item], NESTED)


def check_config(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(method, keyword arguments of its runner) for ``config``; unknown, mistyped or missing
    keys raise ConfigError. The runners are `flowhf.experiments.baselines.RUNNERS`."""
    method = config.get("method")
    if method not in METHOD_ARGS:
        raise ConfigError(
            f"config key 'method' must be one of {sorted(METHOD_ARGS)}, got {method!r}"
        )
    kwargs = {k: v for k, v in config.items() if k != "method"}
    build_dataclass(METHOD_ARGS[method], kwargs, f"config for method {method!r}")
    return method, kwargs
