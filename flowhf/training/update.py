"""The update: a step's objective inputs, its loss and the optimiser step, never applied with a
non-finite loss or gradient.

It reads the objective and optim groups only (`ObjectiveArgs`, `OptimArgs`), and owns the
learned heads (flow / log Z), the optimiser and the learning-rate schedule, which with the
trainable weights are its state. `step_inputs` is the one assembly of `ObjectiveInputs`: the
exact-target harness (`flowhf.experiments.enumerable.train`) calls it too, so it runs the
trainer's path from the target down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from flowhf.config.training import ObjectiveArgs, OptimArgs
from flowhf.objectives import LossOutput, ObjectiveInputs, get_objective
from flowhf.sampling import completion_log_probs
from flowhf.sampling.logprobs import SequenceScores
from flowhf.training.heads import build_heads, head_outputs, heads_read_hidden
from flowhf.training.loss import objective_loss
from flowhf.training.nonfinite import NonFiniteStep, fix_for, likely_cause, record_skip
from flowhf.training.optim import build_optimizer, build_scheduler
from flowhf.training.policy import Policy, Trajectories
from flowhf.training.scorer import Target


def step_inputs(
    x: Trajectories,
    target: Target,
    scores: SequenceScores,
    heads: dict[str, torch.nn.Module],
    known: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> ObjectiveInputs:
    """The objective's inputs of one step: the policy's log-probs and heads, the target (with
    the reward pg maximises) and the replay buffer's known set (`Rollout.known_set`) if any."""
    device = x.mask.device
    known_set = {}
    if known is not None:
        known_set = {"known_log_z": known[0].to(device), "known_member": known[1].to(device)}
    return ObjectiveInputs(
        log_pf=scores.log_pf.float(),
        mask=x.mask,
        log_reward=target.log_reward,
        group_ids=x.group_ids,
        prefix_log_reward=target.prefix_log_reward,
        reward=target.beta * target.reward.to(device),
        ref_log_pf=target.ref_log_pf,
        log_q=x.log_q,
        **known_set,
        **head_outputs(heads, scores, x.prompt_mask),
    )


@dataclass
class Updated:
    """What one update did."""

    scores: SequenceScores  # the policy's log-probs (and entropy, hidden states) of the batch
    inputs: ObjectiveInputs
    out: LossOutput
    skipped: str | None  # the non-finite quantity when nothing was applied
    grad_norm: float
    lr: float  # the policy's learning rate after the step


class Update:
    """Objective inputs -> loss -> backward, clip, optimiser and schedule step.

    Builds the heads, optimiser and schedule, and prepares them with the policy's model.

    Args:
        objective / optim: the config's objective and optim groups.
        policy: the shared `flowhf.training.policy.Policy`.
        max_steps: the run's step budget (the schedule decays over it).
        output_dir: where skipped steps are recorded (`flowhf.training.nonfinite.record_skip`).
    """

    def __init__(
        self,
        objective: ObjectiveArgs,
        optim: OptimArgs,
        policy: Policy,
        max_steps: int,
        output_dir: Path,
    ):
        self.objective, self.optim, self.policy, self.output_dir = (
            objective,
            optim,
            policy,
            output_dir,
        )
        self.spec = get_objective(objective.objective)
        heads = build_heads(objective, policy.bundle.model.config.hidden_size)
        optimizer = build_optimizer(policy.bundle.model, heads, optim)
        scheduler = build_scheduler(optimizer, optim, max_steps)
        self.optimizer, self.scheduler, *prepared = policy.prepare(
            optimizer, scheduler, *heads.values()
        )
        self.heads = dict(zip(heads.keys(), prepared))

    @property
    def needs_prefix_rewards(self) -> bool:
        """Whether the objective reads every prefix's reward (FL, SubTB energies)."""
        return self.spec.needs_prefix_rewards(self.objective)

    @property
    def reads_known_set(self) -> bool:
        """Whether the log Z estimator sums the replay buffer's known set (``importance``)."""
        mode = self.spec.logz_mode(self.objective)
        return bool(mode and mode.known_set)

    def scores(self, x: Trajectories) -> SequenceScores:
        """The policy's log-probs of the batch, with gradient (and what the heads read)."""
        p = self.policy
        p.model.train()
        with p.autocast():
            return completion_log_probs(
                p.model,
                x.prompt_ids,
                x.prompt_mask,
                x.ids,
                x.mask,
                p.allowed_tokens,
                with_hidden=heads_read_hidden(self.heads),
                with_entropy=True,
            )

    def step(self, x: Trajectories, target: Target, known, state) -> Updated:
        """One update on the batch (``known``: `Rollout.known_set`'s, when `reads_known_set`);
        ``state``: the run's `RunState`, whose skip counters it keeps."""
        scores = self.scores(x)
        inputs = step_inputs(x, target, scores, self.heads, known)
        out = objective_loss(self.objective, inputs)
        named = {"log_reward": target.log_reward, "log_pf": inputs.log_pf, "log_z": out.log_z}
        skipped, grad_norm = self._apply(out.loss, named, state)
        lr = self.optimizer.param_groups[0]["lr"]
        return Updated(scores, inputs, out, skipped, grad_norm, lr)

    def _apply(self, loss: torch.Tensor, named: dict, state) -> tuple[str | None, float]:
        """Backward + clip + step. Returns (name of the non-finite quantity if skipped, grad norm)."""
        self.optimizer.zero_grad(set_to_none=True)
        bad, grad_norm = (None if torch.isfinite(loss) else "train/loss"), float("nan")
        if bad is None:
            self.policy.accelerator.backward(loss)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            max_norm = self.optim.max_grad_norm or float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if not torch.isfinite(torch.tensor(grad_norm)):
                bad = "train/grad_norm"
        if bad is not None:
            return self._skip(bad, named, state), grad_norm
        self.optimizer.step()
        self.scheduler.step()
        state.skipped_in_a_row = 0
        return None, grad_norm

    def _skip(self, bad: str, named: dict, state) -> str:
        """Drop the step's gradient, count and record it; stop after optim.max_skipped_steps."""
        for name, value in named.items():  # name the culprit upstream of the loss if there is one
            if value is not None and not torch.isfinite(value.detach()).all():
                bad = f"{bad} (non-finite {name})"
                break
        self.optimizer.zero_grad(set_to_none=True)
        state.skipped_in_a_row += 1
        state.skipped_total += 1
        rank = self.policy.accelerator.process_index
        record_skip(self.output_dir, rank, state.global_step + 1, bad)
        if state.skipped_in_a_row >= self.optim.max_skipped_steps:
            raise NonFiniteStep(
                f"{state.skipped_in_a_row} consecutive steps skipped for a non-finite {bad}; "
                f"likely cause: {likely_cause(bad)}",
                fix_for(bad),
            )
        return bad

    # ------------------------------------------------------------------ state

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.policy.unwrapped().named_parameters() if p.requires_grad}

    def state_dict(self) -> dict:
        """Trainable weights, heads (``name.key``), optimiser + schedule, as CPU tensors."""
        unwrap = self.policy.accelerator.unwrap_model
        return {
            "trainable": {
                n: p.detach().cpu().contiguous() for n, p in self.trainable_parameters().items()
            },
            "heads": {
                f"{name}.{k}": v.detach().cpu().contiguous()
                for name, head in self.heads.items()
                for k, v in unwrap(head).state_dict().items()
            },
            "optimizer": {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Put back a `state_dict` of the same model and settings (else ValueError, unchanged)."""
        params = self.trainable_parameters()
        mismatch = set(params) ^ set(state["trainable"])
        if mismatch:
            raise ValueError(
                f"checkpoint parameters do not match the model ({sorted(mismatch)[:5]} ...); "
                "resume with the same model and LoRA settings"
            )
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state["trainable"][name].to(p.device, p.dtype))
        for name, head in self.heads.items():
            self.policy.accelerator.unwrap_model(head).load_state_dict(
                {
                    k.split(".", 1)[1]: v
                    for k, v in state["heads"].items()
                    if k.split(".", 1)[0] == name
                }
            )
        self.optimizer.load_state_dict(state["optimizer"]["optimizer"])
        self.scheduler.load_state_dict(state["optimizer"]["scheduler"])
