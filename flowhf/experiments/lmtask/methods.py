"""One runner per method on a distribution task, all from the same start and under one budget.

Every method gets: the warm-started SmolLM2 (`warmstart.py`) with fresh LoRA adapters of the
same shape, the task's prompts encoded by the same chat template, the same `AnswerSetReward`,
the same completion limit and the same wall-clock budget. FlowHF methods train through
`FlowHFTrainer` with `configs/lm_target.yaml` plus the task's target (beta, alpha); GRPO and PPO
are TRL's trainers through `flowhf.experiments.baselines` with their project defaults. Each returns the
trained model, which `ExactTarget.evaluate` then measures exactly (in eval mode, by
`flowhf.models.modes.eval_mode`, which puts the model's own mode back).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from flowhf.config.baselines import baseline_options
from flowhf.experiments import CONFIGS
from flowhf.experiments.lmtask.reward import AnswerSetReward
from flowhf.experiments.lmtask.task import LMTask

CONFIG = CONFIGS / "lm_target.yaml"
# FlowHF methods: the recommended config, then each objective / log Z mode on the same config.
FLOWHF_METHODS = {
    "recommended": [],
    "tb-batch": ["objective.objective=tb", "objective.logz=batch"],
    "tb-scalar": ["objective.objective=tb", "objective.logz=scalar"],
    "tb-prompt": ["objective.objective=tb", "objective.logz=prompt"],
    "fl": ["objective.objective=fl"],
    "subtb": ["objective.objective=subtb", "objective.subtb_energies=false"],
    "pg": ["objective.objective=pg", "replay.replay_ratio=0"],
}
TRL_METHODS = ("grpo", "ppo")
# what makes the comparison fair is fixed for every method: a baseline override may not change it
METHODS = ("untrained", *FLOWHF_METHODS, *TRL_METHODS)
# recommended is TB with the importance log Z (configs/lm_target.yaml); tb-batch swaps in the VarGrad one
DEFAULT_SWEEP = METHODS


@dataclass
class RunSpec:
    method: str
    seconds: float
    seed: int
    output_dir: Path
    config: Path = CONFIG
    overrides: tuple[str, ...] = ()  # extra --set overrides for FlowHF methods
    baseline_overrides: tuple[
        str, ...
    ] = ()  # extra --baseline-set KEY=VALUE for GRPO / PPO (their runner's keys)
    callbacks: tuple = ()  # transformers TrainerCallbacks for FlowHF methods (e.g. exact.ExactTrace)


@dataclass
class StartModel:
    """The loaded starting model every method trains from (each run consumes it: LoRA goes in place)."""

    model: torch.nn.Module
    tokenizer: object
    folder: Path  # where it was loaded from (recorded in configs and results)
    eos_ids: list[
        int
    ]  # where a completion ends: the exact target's EOS set, shared by every reward


@dataclass
class Trained:
    model: torch.nn.Module
    steps: int
    seconds: float
    details: dict


def train_method(task: LMTask, start: StartModel, spec: RunSpec) -> Trained:
    if spec.method not in METHODS:
        raise ValueError(f"unknown method {spec.method!r}: use one of {', '.join(METHODS)}")
    if spec.method == "untrained":
        return Trained(start.model, 0, 0.0, {})
    if spec.method in FLOWHF_METHODS:
        return _train_flowhf(task, start, spec)
    return _train_trl(task, start, spec)


def flowhf_config(task: LMTask, start_dir: Path, spec: RunSpec):
    from flowhf.config.training import FlowHFConfig

    overrides = [
        f"model.name={start_dir}",
        f"target.beta={task.beta}",
        f"target.alpha={task.alpha}",
        f"sampling.max_new_tokens={task.max_new_tokens}",
        f"sampling.prompts_per_step={len(task.items)}",
        f"optim.max_seconds={spec.seconds}",
        f"optim.seed={spec.seed}",
        f"logging.output_dir={spec.output_dir}",
        *FLOWHF_METHODS[spec.method],
        *spec.overrides,
    ]
    return FlowHFConfig.from_yaml(spec.config, overrides)


def adapter_shape(config: Path) -> dict:
    """The LoRA shape of the FlowHF config, so GRPO and PPO get exactly the same adapters."""
    from flowhf.config.training import FlowHFConfig
    from flowhf.models.lora import lora_shape

    return lora_shape(FlowHFConfig.from_yaml(config).model)


def _train_flowhf(task: LMTask, start: StartModel, spec: RunSpec) -> Trained:
    from flowhf.training.trainer import FlowHFTrainer

    config = flowhf_config(task, start.folder, spec)
    reward = AnswerSetReward(task, start.tokenizer, start.eos_ids)
    trainer = FlowHFTrainer(
        start.model,
        reward,
        config,
        [{"prompt": p} for p in task.prompts],
        start.tokenizer,
        callbacks=list(spec.callbacks),
    )
    if set(trainer.eos_ids) != set(start.eos_ids):
        raise RuntimeError(
            f"the trainer stops at EOS ids {trainer.eos_ids}, the exact target at {start.eos_ids}"
        )
    begin = time.perf_counter()
    last = trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    details = {
        "config": config.to_dict(),
        "final_metrics": {k: v for k, v in last.items() if isinstance(v, (int, float))},
    }
    return Trained(
        model,
        trainer.state.global_step,
        round(trainer.state.train_seconds, 2),
        {**details, "total_seconds": round(time.perf_counter() - begin, 2)},
    )


def _train_trl(task: LMTask, start: StartModel, spec: RunSpec) -> Trained:
    from flowhf.models.loading import load_causal_lm

    spec.output_dir.mkdir(parents=True, exist_ok=True)
    # PPO samples one completion per prompt row and needs >= batch_size rows: repeat the prompts
    # so each PPO update sees 8 completions, as one GRPO group of 8 does.
    copies = 1 if spec.method == "grpo" else math.ceil(8 / len(task.items))
    prompts_file = spec.output_dir / "prompts.jsonl"
    prompts_file.write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in task.prompts * copies)
    )
    reward = AnswerSetReward(task, start.tokenizer, start.eos_ids)
    common = dict(
        budget={"seconds": spec.seconds},
        max_completion_length=task.max_new_tokens,
        lora=adapter_shape(spec.config),
        tokenizer=start.tokenizer,
        seed=spec.seed,
    )
    common.update(baseline_options(spec.method, spec.baseline_overrides))
    torch.manual_seed(spec.seed)
    if spec.method == "grpo":
        from flowhf.experiments.baselines.grpo import run_grpo

        result = run_grpo(start.model, prompts_file, reward, spec.output_dir, **common)
    else:
        from flowhf.experiments.baselines.ppo import run_ppo

        result = run_ppo(start.model, prompts_file, reward, spec.output_dir, **common)
    model, _ = load_causal_lm(result["model_dir"], dtype="float32")
    keep = (
        "steps",
        "wall_clock_seconds",
        "tokens_generated",
        "final_reward_mean",
        "stopped_by",
        "settings",
    )
    return Trained(
        model,
        int(result["steps"]),
        float(result["wall_clock_seconds"]),
        {k: result.get(k) for k in keep},
    )
