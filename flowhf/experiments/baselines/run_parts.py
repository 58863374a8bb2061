"""The steps the TRL baseline runners (SFT, GRPO, PPO) share beyond `common`: read a started
run's training rows, build TRL's trainer with the run's LoRA and callbacks, and the settings
every ``result.json`` records."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from flowhf.experiments.baselines.common import TrlRun, load_training_rows, lora_config
from flowhf.sampling.prompts import uses_chat_template

PathLike = str | os.PathLike
RewardSpec = Any  # anything `flowhf.rewards.build_reward` accepts: a spec string, dict or callable


@dataclass
class Started:
    """A started run with its training rows and whether its prompts get the chat template."""

    run: TrlRun
    rows: list[dict[str, Any]]
    chat: bool


def read_rows(run: TrlRun, a: Any, source: PathLike, needed: list[str]) -> Started:
    """The training rows of ``source`` (columns ``needed``) for a started run, and whether its
    prompts get the chat template."""
    chat = uses_chat_template(run.tokenizer, a.use_chat_template)
    return Started(run, load_training_rows(source, needed, a.columns, a.split, a.limit), chat)


def build_trainer(trainer_class: type, run: TrlRun, config: Any, **parts: Any) -> Any:
    """TRL's ``trainer_class`` on ``config`` with the run's LoRA and callbacks beside ``parts``."""
    return trainer_class(
        args=config, peft_config=lora_config(run.lora), callbacks=run.recorder.callbacks, **parts
    )


def shared_settings(started: Started, a: Any, config_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The settings every baseline's ``result.json`` records (after its own)."""
    return {
        "rows": len(started.rows),
        "chat_template": started.chat,
        "lr": a.lr,
        "seed": a.seed,
        "lora": started.run.lora,
        "trl_config": config_kwargs,
    }


def rl_args(
    args_class: type,
    model: Any,
    prompts_source: PathLike,
    reward_spec: Any,
    output_dir: PathLike,
    options: dict[str, Any],
) -> Any:
    """An RL runner's config (`GRPOArgs` / `PPOArgs`) from its call's arguments."""
    return args_class(
        model=model,
        prompts_source=prompts_source,
        reward_spec=reward_spec,
        output_dir=output_dir,
        **options,
    )
