"""What an objective needs from the trainer, stated once beside its loss.

Each objective file ends with a ``SPEC = ObjectiveSpec(...)``; `flowhf.objectives.registry`
lists them. Config validation, head construction, the reward's prefix check, the trainer's
dispatch and the exact-target harness all read the spec, so adding an objective is one new
file plus one registry line (or one `register_objective` call), never an edit of the
trainer.

Settings are duck-typed: any object with the fields of
`flowhf.config.training.ObjectiveArgs` (objective, logz, penalty, huber_delta,
subtb_lambda, subtb_energies, pg_kl_coef, ...). The objectives layer does not import the
training layer above it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowhf._torch import torch
from flowhf.objectives.regression import Penalty


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
    log_q: torch.Tensor | None = (
        None  # [B] sampler's log-prob of each row, NaN if not sampled now (importance log Z)
    )
    known_log_z: torch.Tensor | None = (
        None  # [B] log sum of R over the prompt's known completions (importance log Z)
    )
    known_member: torch.Tensor | None = None  # [B] bool: the row is one of those known completions


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar
    residual: torch.Tensor  # [B] per-trajectory residual (TB) or per-trajectory loss
    log_z: torch.Tensor  # [B] the log Z in use (learned, batch estimate or implied by flows)


LossFn = Callable[[Any, ObjectiveInputs, Penalty], LossOutput]  # (settings, inputs, penalty)


@dataclass(frozen=True)
class LogZMode:
    """One estimator of log Z(x) for objectives that take log Z as an input (TB).

    ``head`` names the learned head that produces ``ObjectiveInputs.log_z`` (built by
    `flowhf.training.heads`), or is None when log Z is computed from the batch itself.
    """

    name: str
    estimate: Callable[[ObjectiveInputs], torch.Tensor]  # [B] log Z from the inputs
    head: str | None = None
    min_group_size: int = 1  # samples of one prompt a batch must hold
    known_set: bool = (
        False  # reads the replay buffer's completions as an exact part of Z (known_log_z)
    )
    help: str = ""


def _never(settings) -> bool:
    return False


@dataclass(frozen=True)
class ObjectiveSpec:
    """Everything the trainer must know about one objective.

    Args:
        name: the value of ``objective.objective``.
        loss: ``loss(settings, inputs, penalty) -> LossOutput``.
        flow_head: whether the loss reads a state-flow head (``inputs.log_flow``).
        prefix_rewards: ``settings -> bool``, whether rewards of every prefix are needed
            (``inputs.prefix_log_reward``); e.g. SubTB only with forward-looking energies.
        min_group_size: samples of one prompt a batch must hold (2 for leave-one-out).
        logz_modes: the log Z estimators the objective accepts, by name; empty when log Z
            is not an input of the loss.
        implied_log_z: what ``LossOutput.log_z`` is when there is no estimator: 'flow' (read
            off the flow head) or 'none' (NaN, not a GFlowNet).
        help: one line for the CLI and the config's help text.
    """

    name: str
    loss: LossFn
    flow_head: bool = False
    prefix_rewards: Callable[[Any], bool] = _never
    min_group_size: int = 1
    logz_modes: Mapping[str, LogZMode] = field(default_factory=dict)
    implied_log_z: str = "none"
    help: str = ""

    def logz_mode(self, settings) -> LogZMode | None:
        """The chosen log Z estimator, or None when this objective takes no log Z."""
        if not self.logz_modes:
            return None
        if settings.logz not in self.logz_modes:
            raise ValueError(
                f"objective.logz={settings.logz!r}: {self.name} accepts {', '.join(self.logz_modes)}"
            )
        return self.logz_modes[settings.logz]

    def logz_label(self, settings) -> str:
        """How a run's log Z is described in tables: the estimator, 'flow' or 'none'."""
        return settings.logz if self.logz_modes else self.implied_log_z

    def needs_prefix_rewards(self, settings) -> bool:
        return bool(self.prefix_rewards(settings))

    def group_size(self, settings) -> int:
        """Smallest number of samples per prompt these settings can train with."""
        mode = self.logz_mode(settings)
        return max(self.min_group_size, mode.min_group_size if mode else 1)

    def heads(self, settings) -> tuple[str, ...]:
        """Names of the learned heads these settings train beside the policy."""
        mode = self.logz_mode(settings)
        return (("flow_head",) if self.flow_head else ()) + (
            (mode.head,) if mode and mode.head else ()
        )

    def check_inputs(self, settings, x: ObjectiveInputs) -> None:
        """Name the missing input rather than fail inside the maths."""
        if self.flow_head and x.log_flow is None:
            raise ValueError(f"objective {self.name!r} needs a flow head output (log_flow)")
        if self.needs_prefix_rewards(settings) and x.prefix_log_reward is None:
            raise ValueError(f"objective {self.name!r} needs prefix rewards (prefix_log_reward)")
