"""One place that turns per-trajectory quantities into the training loss of any objective.

Both the LM trainer and the exact-target benchmark call `objective_loss`, so the benchmark
proves the exact code path the trainer runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowhf.objectives import (
    batch_log_z,
    detailed_balance,
    forward_looking,
    get_penalty,
    implied_log_z,
    reinforce_loo,
    subtb_state_log_flow,
    subtrajectory_balance,
    trajectory_balance,
)

FLOW_OBJECTIVES = ("fl", "db", "subtb")
LOGZ_MODES = ("scalar", "prompt", "batch")


@dataclass
class ObjectiveSettings:
    objective: str = "tb"  # tb | fl | db | subtb | pg
    logz: str = "batch"  # TB only: scalar | prompt | batch
    penalty: str = "squared"  # squared | huber
    huber_delta: float = 1.0
    subtb_lambda: float = 1.0
    subtb_energies: bool = True  # SubTB flows parametrised forward-looking (F = F~ R(s))
    pg_kl_coef: float = 0.0  # pg only: KL penalty to the reference


@dataclass
class ObjectiveInputs:
    log_pf: torch.Tensor  # [B, T] policy log-probs of the actions (with grad)
    mask: torch.Tensor  # [B, T]
    log_reward: torch.Tensor  # [B] target log R(y|x)
    group_ids: torch.Tensor  # [B] prompt id of each row
    log_z: torch.Tensor | None = None  # [B] learned log Z (TB scalar/prompt modes)
    log_flow: torch.Tensor | None = None  # [B, T+1] flow head output (fl/db/subtb)
    prefix_log_reward: torch.Tensor | None = None  # [B, T+1] log R of every prefix (fl, subtb)
    reward: torch.Tensor | None = None  # [B] raw reward (pg maximises beta * r + ...)
    ref_log_pf: torch.Tensor | None = None  # [B, T] reference log-probs (pg KL)


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar
    residual: torch.Tensor  # [B] per-trajectory residual (TB) or per-trajectory loss
    log_z: torch.Tensor  # [B] the log Z in use (learned, batch estimate or implied by flows)


def objective_loss(settings: ObjectiveSettings, x: ObjectiveInputs) -> LossOutput:
    """Loss of `settings.objective` on a batch; see each objective's module for the maths."""
    penalty = get_penalty(settings.penalty, settings.huber_delta)
    name = settings.objective
    B, T = x.log_pf.shape
    if name == "tb":
        log_z = _tb_log_z(settings, x)  # [B]
        residual = trajectory_balance(x.log_pf, x.mask, x.log_reward, log_z)  # [B]
        return LossOutput(penalty(residual).mean(), residual.detach(), log_z.detach())
    if name in FLOW_OBJECTIVES and x.log_flow is None:
        raise ValueError(f"objective {name!r} needs a flow head output (log_flow)")
    if name == "fl":
        if x.prefix_log_reward is None:
            raise ValueError("objective 'fl' needs prefix rewards (prefix_log_reward)")
        residual = forward_looking(x.log_pf, x.mask, x.log_flow, x.prefix_log_reward)  # [B, T]
        per_traj = penalty(residual).sum(dim=1)  # the report sums over transitions
        log_z = implied_log_z(x.log_flow, x.prefix_log_reward)
        return LossOutput(per_traj.mean(), residual.sum(dim=1).detach(), log_z.detach())
    if name == "db":
        residual = detailed_balance(x.log_pf, x.mask, x.log_flow, x.log_reward)  # [B, T]
        return LossOutput(penalty(residual).sum(dim=1).mean(), residual.sum(dim=1).detach(), x.log_flow[:, 0].detach().float())
    if name == "subtb":
        prefix = x.prefix_log_reward if settings.subtb_energies else None
        if settings.subtb_energies and prefix is None:
            raise ValueError("SubTB with forward-looking energies needs prefix_log_reward (or subtb_energies=False)")
        per_traj = subtrajectory_balance(
            x.log_pf, x.mask, x.log_flow, x.log_reward, settings.subtb_lambda, prefix, "geometric", penalty
        )  # [B]
        log_z = subtb_state_log_flow(x.log_flow, x.mask, x.log_reward, prefix)[:, 0]
        return LossOutput(per_traj.mean(), per_traj.detach(), log_z.detach())
    if name == "pg":
        reward = x.log_reward if x.reward is None else x.reward
        per_traj = reinforce_loo(x.log_pf, x.mask, reward, x.group_ids, x.ref_log_pf, settings.pg_kl_coef)
        return LossOutput(per_traj.mean(), per_traj.detach(), torch.full((B,), float("nan")))
    raise ValueError(f"unknown objective {name!r}: use one of tb, fl, db, subtb, pg")


def _tb_log_z(settings: ObjectiveSettings, x: ObjectiveInputs) -> torch.Tensor:
    if settings.logz == "batch":
        log_pf_sum = (x.log_pf.float() * x.mask).sum(dim=1)
        return batch_log_z(log_pf_sum, x.log_reward, x.group_ids)
    if settings.logz in ("scalar", "prompt"):
        if x.log_z is None:
            raise ValueError(f"logz={settings.logz!r} needs the learned log Z (log_z)")
        return x.log_z
    raise ValueError(f"unknown logz mode {settings.logz!r}: use one of {LOGZ_MODES}")
