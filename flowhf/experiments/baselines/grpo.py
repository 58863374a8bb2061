"""GRPO baseline with TRL's `GRPOTrainer`, rewarded by any FlowHF reward.

One optimizer step = ``batch_size`` completions = ``batch_size / num_generations`` prompts with
``num_generations`` samples each (default 8 = one prompt x 8 completions, the same 8 x 32 tokens
per step the FlowHF runs use). With a chat template the prompts are conversational (TRL renders
them exactly as FlowHF does); the reward wrapper hands the FlowHF reward the raw question and the
plain completion text (`flowhf.experiments.baselines.reward_adapters.grpo_reward_function`).

Defaults that differ from TRL's: ``beta=0.04`` (TRL 1.12 defaults to 0, no KL; the RLHF
comparison keeps a KL to the reference like FlowHF's alpha * log p_ref term; with LoRA the
reference is the adapter-free model, no copy), float32, no gradient checkpointing, constant LR,
logging every step.
"""

from __future__ import annotations

from typing import Any

from flowhf.config.baselines import GRPOArgs
from flowhf.experiments.baselines.common import finish_run, start_run, step_cap, trainer_kwargs
from flowhf.experiments.baselines.requires import require_trl
from flowhf.experiments.baselines.reward_adapters import grpo_reward_function
from flowhf.experiments.baselines.run_parts import (
    PathLike,
    RewardSpec,
    build_trainer,
    read_rows,
    rl_args,
    shared_settings,
)
from flowhf.sampling.prompts import as_conversation


def grpo_examples(rows: list[dict[str, Any]], chat: bool) -> list[dict[str, Any]]:
    """Dataset rows for GRPOTrainer: ``prompt`` (conversational or text) + the other columns."""
    examples = []
    for row in rows:
        example = {k: v for k, v in row.items() if k != "prompt"}
        prompt = str(row["prompt"])
        example["prompt"] = as_conversation(prompt) if chat else prompt
        examples.append(example)
    return examples


def run_grpo(
    model: Any,
    prompts_source: PathLike,
    reward_spec: RewardSpec,
    output_dir: PathLike,
    *,
    tokenizer: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Train ``model`` with TRL's GRPOTrainer on ``reward_spec``; returns the result dict.

    ``options``: the other keys of `flowhf.config.baselines.GRPOArgs`, where each is described
    (``budget`` is required). ``reward_spec``: anything `flowhf.rewards.build_reward` accepts
    ("sentiment", "toxicity", "classifier:PATH", a dict, a callable with the FlowHF reward
    signature). ``batch_size``: completions per optimizer step (default ``num_generations``:
    one prompt).
    """
    require_trl("run_grpo (TRL's GRPOTrainer)")  # before any model loads
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from flowhf.rewards import build_reward

    a = rl_args(GRPOArgs, model, prompts_source, reward_spec, output_dir, options)
    batch_size = a.batch_size or a.num_generations
    if batch_size % a.num_generations:
        raise ValueError(
            f"batch_size ({batch_size}) must be a multiple of num_generations ({a.num_generations}): every "
            "prompt's group of completions must fit in one step"
        )
    reward = build_reward(reward_spec)
    run = start_run("grpo", model, tokenizer, a)
    started = read_rows(run, a, prompts_source, ["prompt"])
    config_kwargs = {
        **trainer_kwargs(a, run.recorder),
        "per_device_train_batch_size": batch_size,
        "num_generations": a.num_generations,
        "max_completion_length": a.max_completion_length,
        "temperature": a.temperature,
        "beta": a.beta,
        "data_seed": a.seed,
        "max_steps": step_cap(run.recorder.budget),
        **(a.trl_overrides or {}),
    }
    trainer = build_trainer(
        GRPOTrainer,
        run,
        GRPOConfig(**config_kwargs),
        model=run.policy,
        reward_funcs=grpo_reward_function(reward, run.recorder.counter),
        train_dataset=Dataset.from_list(grpo_examples(started.rows, started.chat)),
        processing_class=run.tokenizer,
    )
    trainer.train()

    settings = {
        "prompts_source": prompts_source,
        "reward": reward_spec if isinstance(reward_spec, (str, dict, list)) else repr(reward),
        "num_generations": a.num_generations,
        "max_completion_length": a.max_completion_length,
        "batch_size": batch_size,
        "beta": a.beta,
        "temperature": a.temperature,
        **shared_settings(started, a, config_kwargs),
    }
    return finish_run(run, trainer.model, run.tokenizer, settings)
