"""PPO baseline with TRL's `PPOTrainer` (``trl.experimental.ppo`` in TRL 1.12).

Same prompts, reward and generation length as the GRPO / FlowHF runs: each PPO update samples
one completion of up to ``max_completion_length`` tokens for each of ``batch_size`` prompts
(default 8 x 32, the same tokens per step as GRPO's one prompt x 8), stopping at EOS.

Reward: ``reward_spec`` is either
- a FlowHF reward spec or callable (default path): wrapped by
  `flowhf.experiments.baselines.reward_adapters.PPOTextReward`, an nn.Module that TRL's ``get_reward`` accepts
  (backbone + ``.score``) and that scores the decoded raw prompt + completion text with the FlowHF
  reward. Non-neural rewards (VADER sentiment, toxicity) and classifiers with their own tokenizer
  work this way, and PPO sees the same numbers GRPO and FlowHF see; or
- an nn.Module sequence classifier sharing the policy's vocabulary (TRL's native route: it reads
  the policy's token ids of the templated prompt + response directly).

Pad token: see `flowhf.experiments.baselines.ppo_models` (PPO needs pad != EOS; SmolLM2 reuses an unused
special token). The saved tokenizer is the caller's original one (pad = EOS for SmolLM2), so the
output folder loads like the input folder. TRL's PPO loop ignores ``should_training_stop``, so
the budget callback raises `BudgetExhausted` after the step that used the budget up; it is caught
here and the model is saved as usual.
"""

from __future__ import annotations

import copy
from typing import Any

from peft import PeftModel
from torch import nn

from flowhf.config.baselines import PPOArgs
from flowhf.experiments.baselines.budget import BudgetExhausted
from flowhf.experiments.baselines.common import finish_run, start_run, step_cap, trainer_kwargs
from flowhf.experiments.baselines.ppo_models import build_value_model, ensure_distinct_pad
from flowhf.experiments.baselines.requires import require_trl
from flowhf.experiments.baselines.reward_adapters import PPOCountingRM, PPOTextReward
from flowhf.experiments.baselines.run_parts import (
    PathLike,
    RewardSpec,
    Started,
    build_trainer,
    read_rows,
    rl_args,
    shared_settings,
)
from flowhf.sampling.prompts import encode_prompt


def build_reward_module(
    reward: Any,
    tokenizer: Any,
    rows: list[dict],
    prompt_ids: list[list[int]],
    counter,
    vocab_size: int,
) -> nn.Module:
    """The PPO reward model: native classifier (nn.Module) or a FlowHF reward wrapped for text.

    ``vocab_size``: the policy's vocabulary before any added pad token (pad positions are masked
    to id 0 before TRL calls the reward model, so an added pad id never reaches it).
    """
    if isinstance(reward, nn.Module):
        rm_rows = (
            reward.get_input_embeddings().num_embeddings
            if hasattr(reward, "get_input_embeddings")
            else None
        )
        if rm_rows is not None and rm_rows < vocab_size:
            raise ValueError(
                f"the reward model has {rm_rows} token embeddings but the policy tokenizer has {vocab_size} "
                "tokens: TRL feeds the policy's token ids to the RM unchanged, so they must share a vocabulary. "
                "Pass a FlowHF reward spec (e.g. 'classifier:PATH') to score decoded text instead."
            )
        return PPOCountingRM(reward, prompt_ids, counter)
    from flowhf.rewards import build_reward

    built = build_reward(reward)
    extra = {k: [row.get(k) for row in rows] for k in rows[0] if k != "prompt"}
    return PPOTextReward(
        built, tokenizer, [str(r["prompt"]) for r in rows], prompt_ids, extra, counter
    )


def run_ppo(
    model: Any,
    prompts_source: PathLike,
    reward_spec: RewardSpec | nn.Module,
    output_dir: PathLike,
    *,
    tokenizer: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Train ``model`` with TRL's PPOTrainer; returns the result dict (see the module docstring).

    ``options``: the other keys of `flowhf.config.baselines.PPOArgs`, where each is described
    (``budget`` is required). ``batch_size``: prompts (= completions) per PPO update; one
    update = one step of the budget.
    """
    require_trl("run_ppo (TRL's PPOTrainer)", ppo=True)  # before any model loads
    from datasets import Dataset
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    a = rl_args(PPOArgs, model, prompts_source, reward_spec, output_dir, options)
    run = start_run("ppo", model, tokenizer, a, raise_on_stop=True, vf_coef=None)
    recorder, policy, original_tokenizer = run.recorder, run.policy, run.tokenizer
    tokenizer = copy.deepcopy(original_tokenizer)  # the pad change stays inside this run
    original_generation = copy.deepcopy(policy.generation_config)
    pad = ensure_distinct_pad(tokenizer, policy)
    tokenizer.padding_side = "left"  # TRL's PPO expects left-padded queries

    started = read_rows(run, a, prompts_source, ["prompt"])
    rows = started.rows
    if len(rows) < a.batch_size:
        raise ValueError(
            f"{prompts_source}: {len(rows)} prompt rows but batch_size={a.batch_size}; TRL's PPO drops the last "
            "incomplete batch, so it needs at least batch_size prompts (lower batch_size or add prompts)"
        )
    prompt_ids = [encode_prompt(tokenizer, str(row["prompt"]), a.use_chat_template) for row in rows]
    reward_model = build_reward_module(
        reward_spec, tokenizer, rows, prompt_ids, recorder.counter, len(original_tokenizer)
    )
    config_kwargs = _ppo_config_kwargs(a, recorder)
    args = PPOConfig(**config_kwargs)
    recorder.metrics_callback.vf_coef = args.vf_coef
    trainer = build_trainer(
        PPOTrainer,
        run,
        args,
        processing_class=tokenizer,
        model=policy,
        ref_model=None,
        reward_model=reward_model,
        train_dataset=Dataset.from_dict({"input_ids": prompt_ids}),
        value_model=build_value_model(policy, pad["pad_token_id"], run.lora, a.value_lora),
    )
    try:
        trainer.train()
    except BudgetExhausted:
        pass  # the step that used the budget up has finished and been logged

    trained = trainer.accelerator.unwrap_model(trainer.model).policy
    base = trained.get_base_model() if isinstance(trained, PeftModel) else trained
    base.generation_config = original_generation  # TRL rewrote its eos_token_id for the rollouts
    keep_tokenizer = original_tokenizer if pad["how"] != "added" else tokenizer
    settings = _ppo_settings(started, a, pad, config_kwargs)
    return finish_run(run, trained, keep_tokenizer, settings)


def _ppo_config_kwargs(a: PPOArgs, recorder: Any) -> dict[str, Any]:
    """PPOConfig's keywords: the shared ones, PPO's own, then the run's trl_overrides."""
    return {
        **trainer_kwargs(a, recorder),
        "per_device_train_batch_size": a.batch_size,
        "gradient_accumulation_steps": 1,
        "num_mini_batches": 1,
        "num_ppo_epochs": a.num_ppo_epochs,
        "total_episodes": step_cap(recorder.budget) * a.batch_size,
        "response_length": a.max_completion_length,
        "stop_token": "eos",
        "temperature": a.temperature,
        "kl_coef": a.kl_coef,
        "num_sample_generations": 0,
        **(a.trl_overrides or {}),
    }


def _ppo_settings(
    started: Started, a: PPOArgs, pad: dict[str, Any], config_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """What result.json records of a PPO run."""
    reward_spec = a.reward_spec
    return {
        "prompts_source": a.prompts_source,
        "reward": reward_spec
        if isinstance(reward_spec, (str, dict, list))
        else repr(type(reward_spec)),
        "reward_route": "native_classifier"
        if isinstance(reward_spec, nn.Module)
        else "flowhf_text_reward",
        "max_completion_length": a.max_completion_length,
        "batch_size": a.batch_size,
        "kl_coef": a.kl_coef,
        "num_ppo_epochs": a.num_ppo_epochs,
        "temperature": a.temperature,
        "value_lora": a.value_lora,
        "pad": pad,
        **shared_settings(started, a, config_kwargs),
    }
