"""The scorer: a batch's rewards (and every prefix's, for FL / SubTB energies) and its target
log R = beta r + alpha log p_ref (`flowhf.target`).

It reads the target group only (`TargetArgs`). It checkpoints nothing: beta is a function of
the step number and the rewards of the batch, except a reward spec with `normalize: running`,
whose running mean and variance are not saved (a resumed run restarts them).
`step_target` is the target's one assembly, shared with the exact-target harness
(`flowhf.experiments.enumerable.train`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowhf.config.training import TargetArgs
from flowhf.rewards.functions import RewardBatch, RewardFunctions
from flowhf.sampling import completion_log_probs
from flowhf.target import floor_reward, prefix_target_log_reward, target_log_reward
from flowhf.training.batch import TrajectoryBatch
from flowhf.training.nonfinite import finite_rewards
from flowhf.training.policy import Policy, Trajectories


@dataclass
class Rewards:
    """A batch's rewards after the non-finite policy and the floor (CPU tensors)."""

    reward: torch.Tensor  # [B]
    prefix_reward: torch.Tensor | None  # [B, T+1] the reward of every prefix (FL, SubTB)
    nonfinite: int  # non-finite final rewards (floored under target.nonfinite_reward=floor)


@dataclass
class Target:
    """The target of a step's trajectories (`flowhf.target`)."""

    reward: torch.Tensor  # [B] reward r, floored
    beta: float  # today's beta (a schedule may move it)
    ref_log_pf: torch.Tensor  # [B, T] reference log-probs
    log_reward: torch.Tensor  # [B] beta r + alpha log p_ref
    prefix_log_reward: torch.Tensor | None  # [B, T+1] the same of every prefix


def step_target(
    reward: torch.Tensor,
    prefix_reward: torch.Tensor | None,
    beta: float,
    alpha: float,
    ref_log_pf: torch.Tensor,
    mask: torch.Tensor,
) -> Target:
    """log R of every row (and of every prefix, given prefix rewards) on ``mask``'s device."""
    device = mask.device
    log_reward = target_log_reward(reward.to(device), beta, alpha, ref_log_pf, mask)  # [B]
    prefix = None
    if prefix_reward is not None:
        prefix = prefix_target_log_reward(prefix_reward.to(device), beta, alpha, ref_log_pf, mask)
    return Target(reward, beta, ref_log_pf, log_reward, prefix)


class Scorer:
    """Rewards and the target of a batch.

    Args:
        target: the config's target group.
        reward: the reward functions (`build_reward_functions`).
        policy: the shared `flowhf.training.policy.Policy` (tokenizer, reference, autocast).
        needs_prefix: whether the objective reads every prefix's reward (the update says).
    """

    def __init__(
        self, target: TargetArgs, reward: RewardFunctions, policy: Policy, needs_prefix: bool
    ):
        self.args, self.reward, self.policy, self.needs_prefix = (
            target,
            reward,
            policy,
            needs_prefix,
        )
        self.beta = target.beta_per_reward()

    def rewards(self, batch: TrajectoryBatch, step: int) -> Rewards:
        """The rewards of the batch's texts (``step``: 1-based, for error messages)."""
        tokens = batch.completion_lists()
        texts = self.policy.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        scored = RewardBatch(batch.prompts, texts, tokens, batch.columns, batch.row_numbers)
        raw = self.reward(scored).float().cpu()  # [B]
        nonfinite = int((~torch.isfinite(raw)).sum())
        reward = self._finite(raw, scored, step)
        prefix = None
        if self.needs_prefix:
            prefix = self.reward.score_prefixes(scored, self.policy.tokenizer).float().cpu()
            prefix = self._finite(prefix[:, : batch.ids.shape[1] + 1], scored, step, "prefix ")
        return Rewards(reward, prefix, nonfinite)

    def _finite(self, values, scored: RewardBatch, step: int, what: str = "") -> torch.Tensor:
        """Non-finite rewards: an error, or floored (`flowhf.training.nonfinite.finite_rewards`);
        then the reward floor."""
        finite = finite_rewards(values, scored, self.args, self.reward.name, step, what)
        return floor_reward(finite, self.args.reward_floor)

    def target(self, x: Trajectories, rewards: Rewards, step: int) -> Target:
        """log R under the reference (whose log-probs also give the KL metric); ``step``: 0-based."""
        p = self.policy
        with p.bundle.reference_mode() as reference, p.autocast():
            ref_log_pf = completion_log_probs(
                reference, x.prompt_ids, x.prompt_mask, x.ids, x.mask, p.allowed_tokens
            ).log_pf.float()
        return step_target(
            rewards.reward,
            rewards.prefix_reward,
            self.beta(step),
            self.args.alpha,
            ref_log_pf,
            x.mask,
        )

    def metrics(self, rewards: Rewards) -> dict:
        """train/reward/NAME per reward function (several of them), what they log_metric'ed and
        the non-finite count (under target.nonfinite_reward=floor)."""
        means = self.reward.last_means if len(self.reward.items) > 1 else {}
        metrics = {
            **{f"train/reward/{k}": v for k, v in means.items()},
            **{f"train/{k}": v for k, v in self.reward.log.pop().items()},
        }
        if self.args.nonfinite_reward == "floor":
            metrics["train/nonfinite_rewards"] = float(rewards.nonfinite)
        return metrics


def build_reward_functions(spec, target: TargetArgs, **sources) -> RewardFunctions:
    """The reward functions of ``spec`` under the target group's weights, non-finite policy and
    prefix stride (``sources``: `RewardFunctions.build`'s other keywords)."""
    reward = RewardFunctions.build(spec, weights=target.reward_weights, **sources)
    if target.nonfinite_reward == "floor":
        reward.allow_nonfinite()  # the scorer floors them (and counts them) itself
    reward.set_prefix_stride(target.prefix_stride)
    return reward
