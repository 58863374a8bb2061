"""The metrics of one training step (namespaced `train/...`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowhf.objectives import LossOutput
from flowhf.sampling.logprobs import SequenceScores
from flowhf.training.batch import TrajectoryBatch


def _std(x: torch.Tensor) -> float:
    return float(x.std(unbiased=False)) if x.numel() > 1 else 0.0


@dataclass
class StepRecord:
    """What one training step produced, named (the step's metrics are computed from it)."""

    batch: TrajectoryBatch
    reward: torch.Tensor  # [B] floored reward
    log_reward: torch.Tensor  # [B] target log R
    scores: SequenceScores  # the policy's log-probs (and entropy) of the batch
    ref_log_pf: torch.Tensor  # [B, T] reference log-probs
    out: LossOutput
    beta: float
    temperature: float
    skipped: str | None  # the non-finite quantity when the update was skipped
    grad_norm: float
    lr: float  # the policy's learning rate
    skipped_total: int
    times: tuple[float, float, float, float]  # start, sampled, scored, updated (perf_counter)


def step_metrics(r: StepRecord) -> dict:
    batch, reward, scores, out = r.batch, r.reward, r.scores, r.out
    t0, t_sample, t_reward, t_end = r.times
    mask = batch.mask.to(scores.log_pf.device)
    tokens = mask.sum()
    lengths = mask.sum(dim=1)
    log_ratio = (scores.log_pf.detach().float() - r.ref_log_pf) * mask  # [B, T]
    has_policy = "policy" in batch.sources  # decided in Python: no device sync
    policy_rows = torch.tensor([s == "policy" for s in batch.sources], device=mask.device)
    on_policy = log_ratio[policy_rows].sum(dim=1) if has_policy else log_ratio.sum(dim=1)
    on_tokens = mask[policy_rows].sum() if has_policy else tokens
    residual = out.residual.float()
    step_time = t_end - t0
    metrics = {
        "train/loss": float(out.loss.detach()),
        "train/log_z": float(out.log_z.float().nanmean()) if out.log_z.numel() else float("nan"),
        "train/reward_mean": float(reward.mean()),
        "train/reward_std": _std(reward),
        # the policy's own samples only: replay rows are the buffer's best and would inflate it
        "train/reward_mean_policy": float(reward[policy_rows.to(reward.device)].mean())
        if has_policy
        else float("nan"),
        "train/log_reward_mean": float(r.log_reward.mean()),
        # Monte-Carlo KL(pi || p_ref) on the policy's own samples (replay/off-policy rows excluded)
        "train/kl_per_seq": float(on_policy.mean()),
        "train/kl_per_token": float(on_policy.sum() / on_tokens.clamp_min(1)),
        "train/entropy": float(scores.entropy.sum() / tokens.clamp_min(1))
        if scores.entropy is not None
        else float("nan"),
        "train/completion_length": float(lengths.float().mean()),
        "train/eos_rate": float(batch.ended_with_eos.float().mean()),
        "train/residual_mean": float(residual.mean()),
        "train/residual_std": _std(residual),
        "train/grad_norm": r.grad_norm,
        "train/beta": float(r.beta),
        "train/temperature": float(r.temperature),
        "train/lr": float(r.lr),
        "train/skipped_steps": float(r.skipped_total),
        "train/step_time": step_time,
        "train/sample_time": t_sample - t0,
        "train/reward_time": t_reward - t_sample,
        "train/update_time": t_end - t_reward,
        "train/tokens_per_second": float(tokens) / max(step_time, 1e-9),
    }
    metrics["train/skipped"] = 1.0 if r.skipped else 0.0
    return metrics


def histogram_tensors(
    log_pf: torch.Tensor, mask: torch.Tensor, log_flow: torch.Tensor | None
) -> dict:
    """Per-token log-probs and state flows (the report's Figure 2), real positions only."""
    out = {"train/token_log_prob": log_pf.detach().float()[mask > 0].cpu()}
    if log_flow is not None:
        out["train/log_flow"] = log_flow.detach().float()[:, :-1][mask > 0].cpu()
    return out
