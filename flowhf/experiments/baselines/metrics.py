"""TRL log history -> FlowHF's ``metrics.jsonl`` (namespaced keys, one line per logging step).

FlowHF's own runs log ``train/reward_mean``, ``train/loss``, ``train/kl_per_token`` ... through
`flowhf.training.logging.MetricsLogger`; the baselines write through the same logger so one
plotting call compares both. TRL names are mapped as follows (anything unlisted keeps its TRL
name under ``train/``, so nothing is lost):

- SFT / GRPO (HF Trainer): ``loss`` -> ``train/loss``, ``reward`` -> ``train/reward_mean``,
  ``reward_std`` -> ``train/reward_std``, ``kl`` -> ``train/kl_per_token`` (GRPO's ``kl`` is the
  mean per-token KL to the reference), ``completions/mean_length`` ->
  ``train/completion_length_mean``, ``learning_rate`` -> ``train/learning_rate``.
- PPO: ``objective/scores`` -> ``train/reward_mean`` (reward-model score before the KL penalty, the
  quantity GRPO's ``reward`` is), ``objective/kl`` -> ``train/kl`` (summed over the sequence),
  ``objective/rlhf_reward`` -> ``train/rlhf_reward``, ``loss/policy_avg`` -> ``train/policy_loss``,
  ``loss/value_avg`` -> ``train/value_loss``, ``lr`` -> ``train/learning_rate``. PPO logs no single
  loss; ``train/loss`` is computed as ``policy_avg + vf_coef * value_avg``, the quantity it minimises.

Every line also carries ``train/tokens_generated`` (cumulative) and ``train/elapsed_seconds`` so
curves can be drawn against the budget. End-of-run summaries (``train_runtime``, ...) are not
per-step metrics: they go to ``result.json`` instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from flowhf.experiments.baselines.budget import BudgetCallback

KEY_MAP: dict[str, str] = {
    "loss": "train/loss",
    "grad_norm": "train/grad_norm",
    "learning_rate": "train/learning_rate",
    "lr": "train/learning_rate",
    "epoch": "train/epoch",
    "entropy": "train/entropy",
    "num_tokens": "train/num_tokens",
    "mean_token_accuracy": "train/mean_token_accuracy",
    "step_time": "train/step_time",
    # GRPO
    "reward": "train/reward_mean",
    "reward_std": "train/reward_std",
    "kl": "train/kl_per_token",
    "completions/mean_length": "train/completion_length_mean",
    # PPO
    "objective/scores": "train/reward_mean",
    "objective/kl": "train/kl",
    "objective/rlhf_reward": "train/rlhf_reward",
    "objective/non_score_reward": "train/non_score_reward",
    "objective/entropy": "train/entropy_sum",
    "loss/policy_avg": "train/policy_loss",
    "loss/value_avg": "train/value_loss",
    "eps": "train/episodes_per_second",
    "episode": "train/episode",
}
# Logged once at the end of Trainer.train(): run summaries, not step metrics.
SUMMARY_KEYS = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "train_loss",
)
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_./-]+")


def map_key(key: str) -> str:
    """FlowHF name of a TRL log key (see the module docstring)."""
    if key in KEY_MAP:
        return KEY_MAP[key]
    parts = [_BAD_CHARS.sub("_", p.strip()) for p in key.split("/")]
    return "train/" + "/".join(p for p in parts if p)


def map_logs(
    logs: Mapping[str, Any], vf_coef: float | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Split TRL ``logs`` into (namespaced step metrics, end-of-run summary).

    Non-numeric and None values (GRPO logs None when every reward of a batch was None) are left
    out: they carry no number to plot. ``vf_coef`` (PPO) adds the combined ``train/loss``.
    """
    metrics: dict[str, float] = {}
    summary: dict[str, Any] = {}
    for key, value in logs.items():
        if key in SUMMARY_KEYS:
            summary[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        metrics[map_key(key)] = float(value)
    if vf_coef is not None and "loss/policy_avg" in logs and "loss/value_avg" in logs:
        metrics["train/loss"] = float(logs["loss/policy_avg"]) + vf_coef * float(
            logs["loss/value_avg"]
        )
    return metrics, summary


class MetricsCallback(TrainerCallback):
    """Writes each TRL log call as one ``metrics.jsonl`` / ``metrics.csv`` line via FlowHF's logger."""

    def __init__(
        self,
        output_dir: str | Path,
        budget: BudgetCallback,
        vf_coef: float | None = None,
        enabled: bool = True,
    ) -> None:
        from flowhf.training.logging import MetricsLogger

        # ``enabled=False`` on every process but rank 0: the numbers are kept, nothing is written
        self.logger = MetricsLogger(output_dir, report_to=("jsonl", "csv")) if enabled else None
        self.budget = budget
        self.vf_coef = vf_coef
        self.last: dict[str, float] = {}
        self.summary: dict[str, Any] = {}
        self.rows = 0

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs=None,
        **kwargs,
    ):
        metrics, summary = map_logs(logs or {}, self.vf_coef)
        if summary:  # the end-of-train summary call (its only other key is the epoch)
            self.summary.update(summary)
            return
        if not metrics:
            return
        metrics["train/tokens_generated"] = float(self.budget.counter.total)
        metrics["train/elapsed_seconds"] = float(self.budget.elapsed_now())
        if self.logger is not None:
            self.logger.log(int(state.global_step), metrics)
        self.last = {k: v for k, v in metrics.items() if math.isfinite(v)}
        self.rows += 1

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        self.close()

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
