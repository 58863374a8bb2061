"""Which learned heads a run trains beside the policy, and what each reads from it.

The objective's spec names the heads (`ObjectiveSpec.heads`); this module builds them and
turns the policy's scores into the head outputs of `ObjectiveInputs`. The trainer and the
exact-target harness both go through it, so the harness checks the trainer's wiring.

Both log Z estimators are called the same way, ``head(prompt_hidden, prompt_mask) -> [B]``;
the scalar one only reads the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from flowhf.models.heads import FlowHead, PromptLogZHead, ScalarLogZ
from flowhf.objectives import get_objective
from flowhf.sampling.logprobs import SequenceScores


@dataclass(frozen=True)
class HeadKind:
    """How to build one named head and feed it."""

    build: Callable[[int, object], torch.nn.Module]  # (hidden_size, objective settings) -> head
    output: str  # the ObjectiveInputs field it fills
    learning_rate: str  # the OptimArgs field holding its learning rate
    reads_hidden: bool  # whether the policy must return hidden states for it
    call: Callable[[torch.nn.Module, SequenceScores, torch.Tensor], torch.Tensor]


def _log_z_call(head, scores: SequenceScores, prompt_mask: torch.Tensor) -> torch.Tensor:
    return head(scores.prompt_hidden, prompt_mask)  # [B]


# Names are those of checkpoints and saved runs (flowhf_heads.json): keep them stable.
HEAD_KINDS = {
    "flow_head": HeadKind(
        build=lambda hidden, o: FlowHead(hidden),
        output="log_flow",
        learning_rate="head_learning_rate",
        reads_hidden=True,
        call=lambda head, scores, prompt_mask: head(scores.hidden),
    ),
    "log_z_head": HeadKind(
        build=lambda hidden, o: PromptLogZHead(hidden, init=o.logz_init),
        output="log_z",
        learning_rate="head_learning_rate",
        reads_hidden=True,
        call=_log_z_call,
    ),
    "log_z": HeadKind(
        build=lambda hidden, o: ScalarLogZ(init=o.logz_init),
        output="log_z",
        learning_rate="logz_learning_rate",
        reads_hidden=False,
        call=_log_z_call,
    ),
}


def build_heads(settings, hidden_size: int) -> dict[str, torch.nn.Module]:
    """The heads trained beside the policy for ``settings`` (an ObjectiveArgs), by name."""
    return {
        name: HEAD_KINDS[name].build(hidden_size, settings)
        for name in get_objective(settings.objective).heads(settings)
    }


def heads_read_hidden(heads: dict) -> bool:
    """Whether the policy's log-prob pass must also return hidden states."""
    return any(HEAD_KINDS[name].reads_hidden for name in heads)


def head_outputs(
    heads: dict, scores: SequenceScores, prompt_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """ObjectiveInputs fields (log_flow, log_z) computed by the heads from the policy's states."""
    return {
        HEAD_KINDS[name].output: HEAD_KINDS[name].call(head, scores, prompt_mask)
        for name, head in heads.items()
    }
