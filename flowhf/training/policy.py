"""The policy the trainer's three parts share: the model as accelerate prepared it, its bundle
(tokenizer, reference) and how it runs (device, bf16 autocast, the tokens it may emit); and
`Trajectories`, a step's batch on its device, as the scorer and the update read it.

The rollout samples from it, the scorer runs its reference, the update trains it; each reads
it here rather than from the trainer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator

from flowhf.models.loading import PolicyBundle
from flowhf.sampling.prompts import eos_ids
from flowhf.training.batch import TrajectoryBatch


@dataclass
class Policy:
    """One process's policy. ``model`` is the bundle's model until `prepare` wraps it."""

    bundle: PolicyBundle
    accelerator: Accelerator
    autocast_bf16: bool = False  # model.autocast_bf16
    chat_template: bool = True  # model.chat_template: how prompts are encoded for it
    sample_dtype: torch.dtype = torch.float32  # the fast sampler's copy (`sampler.sampling_dtype`)
    allowed_tokens: torch.Tensor | None = None  # [V] bool; None: every token
    model: torch.nn.Module = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.bundle.model
        self.eos_ids = eos_ids(self.bundle.model, self.bundle.tokenizer)

    @property
    def tokenizer(self):
        return self.bundle.tokenizer

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def prepare(self, *objects):
        """``accelerator.prepare`` the model together with ``objects`` (optimiser, scheduler,
        heads: they must be prepared with it); returns the prepared ``objects``."""
        self.model, *prepared = self.accelerator.prepare(self.bundle.model, *objects)
        return prepared

    def unwrapped(self) -> torch.nn.Module:
        """The model without accelerate's wrapper (what samplers and checkpoints read)."""
        return self.accelerator.unwrap_model(self.model)

    def autocast(self):
        """bf16 autocast when model.autocast_bf16, else nothing."""
        if self.autocast_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclass
class Trajectories:
    """A step's token tensors on the training device: what the scorer and the update read."""

    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_mask: torch.Tensor  # [B, P]
    ids: torch.Tensor  # [B, T] completion actions
    mask: torch.Tensor  # [B, T]
    group_ids: torch.Tensor  # [B] prompt of each row
    log_q: torch.Tensor | None  # [B] the sampler's log-prob of each row (NaN: not sampled now)

    @classmethod
    def of(cls, batch: TrajectoryBatch, device: torch.device) -> Trajectories:
        return cls(
            batch.prompt_ids.to(device),
            batch.prompt_mask.to(device),
            batch.ids.to(device),
            batch.mask.to(device),
            batch.group_ids.to(device),
            batch.log_q.to(device) if batch.log_q is not None else None,
        )
