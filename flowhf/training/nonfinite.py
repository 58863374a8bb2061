"""Why a training step was skipped: the non-finite quantity, its likely cause and the fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from flowhf.errors import UserError


class NonFiniteStep(UserError, RuntimeError):
    """Training stopped: steps kept being non-finite, or no update was applied at all."""


# The quantity a skipped step names -> (its likely cause, what to change).
_CAUSES = {
    "log_reward": (
        "the target log R: the reward or the reference log-probs",
        "check the reward's values; a very negative reward wants target.reward_floor",
    ),
    "log_pf": ("the policy's log-probs: the model diverged", "lower optim.learning_rate"),
    "log_z": ("log Z diverged", "lower optim.logz_learning_rate or use objective.logz=batch"),
    "grad_norm": (
        "exploding gradients",
        "lower the learning rates, set optim.max_grad_norm or objective.penalty=huber",
    ),
    "loss": (
        "the loss overflowed",
        "lower the learning rates, use objective.penalty=huber or objective.logz=batch",
    ),
}


def _cause_key(bad: str) -> str:
    return next((k for k in ("log_reward", "log_pf", "log_z", "grad_norm") if k in bad), "loss")


def likely_cause(bad: str) -> str:
    return _CAUSES[_cause_key(bad)][0]


def fix_for(bad: str) -> str:
    return _CAUSES[_cause_key(bad)][1]


def record_skip(output_dir: Path, rank: int, step: int, reason: str) -> None:
    """Log a skipped step with the offending quantity: stderr and ``skipped_steps.jsonl``
    (``skipped_steps.rankR.jsonl`` for process R >= 1)."""
    print(f"[flowhf] step {step}: skipped, {reason}; nothing was applied", file=sys.stderr)
    output_dir.mkdir(parents=True, exist_ok=True)
    name = "skipped_steps.jsonl" if rank == 0 else f"skipped_steps.rank{rank}.jsonl"
    with open(output_dir / name, "a") as f:
        f.write(json.dumps({"step": step, "reason": reason}) + "\n")


def finite_rewards(values, rewards, target, reward_name: str, step: int, what: str = ""):
    """``values`` when all finite. Otherwise, by target.nonfinite_reward: an error naming the
    reward, the step, the prompt and the completion, or the reward floor in their place.
    ``rewards``: the `flowhf.rewards.functions.RewardBatch` the values are of."""
    import torch

    from flowhf.errors import RewardError
    from flowhf.sampling.prompts import message_text

    bad = ~torch.isfinite(values)
    if not bad.any():
        return values
    if target.nonfinite_reward == "floor":
        return torch.where(bad, torch.full_like(values, target.reward_floor), values)
    flat = bad.reshape(len(values), -1)
    row = int(flat.any(1).nonzero()[0])
    value = values.reshape(len(values), -1)[row][flat[row]][0].item()
    raise RewardError(
        f"reward {reward_name!r} gave a {what}value of {value} at step {step} for prompt "
        f"{message_text(rewards.prompts[row], 'user')[:80]!r} and completion {rewards.completions[row][:80]!r}; "
        "NaN and ±inf rewards are errors by default"
    )
