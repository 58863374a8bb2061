"""Reward transforms: normalisation (running or fixed affine) and a log-reward floor.

Why: a GFlowNet target is log R = beta * r + ..., so the SCALE of r matters (it sets how peaked
the target is), and very negative rewards (log(1 - p) near p = 1) make residuals explode.

Order of operations, applied elementwise:

1. normalisation
   - ``"none"``:    r
   - ``"affine"``:  r * scale + shift              (fixed; reproducible, no state)
   - ``"running"``: clip((r - mean) / (std + eps), -clip, clip), where mean / std are running
     statistics of the FULL-completion rewards seen so far (exact cumulative statistics, or an
     exponential moving average when `momentum` is set). The batch is added to the statistics
     before it is normalised, so the first batch is already centred.
2. floor: max(r, floor), a lower clamp on the (normalised) reward, i.e. a log-reward floor.

Prefix rewards are transformed with the SAME statistics as the full-completion rewards of that
batch and never update them, so column T of `score_prefixes` equals what `__call__` returns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from flowhf.rewards.base import Reward, check_batch
from flowhf.target import floor_reward, scale_reward

NORMALIZE_MODES = ("none", "affine", "running")


@dataclass
class RewardTransform:
    """Options for normalising a reward and flooring it (see the module docstring)."""

    normalize: str = field(default="none", metadata={"help": "none | affine | running"})
    scale: float = field(default=1.0, metadata={"help": "affine: multiply the reward by this"})
    shift: float = field(default=0.0, metadata={"help": "affine: then add this"})
    clip: float | None = field(
        default=5.0,
        metadata={"help": "running: clip normalised rewards to [-clip, clip]; None = no clip"},
    )
    momentum: float | None = field(
        default=None,
        metadata={
            "help": "running: EMA weight of each new batch in (0, 1]; None = exact cumulative stats"
        },
    )
    eps: float = field(
        default=1e-6, metadata={"help": "running: added to the std to avoid dividing by 0"}
    )
    floor: float | None = field(
        default=None,
        metadata={"help": "clamp the (normalised) reward below at this value; None = off"},
    )

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        if self.momentum is not None and not 0.0 < self.momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1] or None, got {self.momentum}")
        if self.clip is not None and self.clip <= 0:
            raise ValueError(f"clip must be > 0 or None, got {self.clip}")
        # Running statistics (float64 so millions of updates do not drift).
        self.count = 0
        self.mean = 0.0
        self.var = 0.0

    def update(self, rewards: torch.Tensor) -> None:
        """Add a batch of full-completion rewards to the running statistics."""
        if self.normalize != "running":
            return
        x = rewards.detach().double().flatten()
        x = x[torch.isfinite(x)]  # -inf log-rewards would poison the mean
        n = int(x.numel())
        if n == 0:
            return
        b_mean = float(x.mean())
        b_var = float(x.var(unbiased=False))
        if self.count == 0:
            self.mean, self.var = b_mean, b_var
        elif self.momentum is None:
            # Chan et al. parallel update of mean / population variance.
            total = self.count + n
            delta = b_mean - self.mean
            self.var = (
                self.var * self.count + b_var * n + delta**2 * self.count * n / total
            ) / total
            self.mean += delta * n / total
        else:
            m = self.momentum
            delta = b_mean - self.mean
            self.mean += m * delta
            self.var = (1 - m) * (self.var + m * delta**2) + m * b_var
        self.count += n

    def apply(self, rewards: torch.Tensor) -> torch.Tensor:
        """Transform rewards (any shape) with the current statistics; never updates them."""
        out = rewards.to(torch.float32)
        if self.normalize == "affine":
            out = scale_reward(out, self.scale, self.shift)
        elif self.normalize == "running":
            out = (out - self.mean) / (self.var**0.5 + self.eps)
            if self.clip is not None:
                out = out.clamp(-self.clip, self.clip)
        return floor_reward(out, self.floor).to(torch.float32)

    def state_dict(self) -> dict[str, Any]:
        """Options and running statistics, for checkpoints (plain floats, JSON-friendly)."""
        state = asdict(self)
        state.update(count=self.count, mean=self.mean, var=self.var)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.mean = float(state["mean"])
        self.var = float(state["var"])


class TransformedReward(Reward):
    """A reward followed by a `RewardTransform`.

    Running statistics are updated from full-completion rewards only, in `__call__` and in
    `score_prefixes` (its last column), unless `update_stats` is False (set it for evaluation).
    """

    def __init__(
        self, inner: Reward, transform: RewardTransform, update_stats: bool = True
    ) -> None:
        super().__init__(name=inner.name, prefix_stride=inner.prefix_stride)
        self.inner = inner
        self.transform = transform
        self.update_stats = update_stats

    def set_prefix_stride(self, stride: int) -> None:
        super().set_prefix_stride(stride)
        if hasattr(self, "inner"):
            self.inner.set_prefix_stride(stride)

    def score(self, prompts: list[str], completions: list[str], **columns: Any) -> torch.Tensor:
        raw = self.inner(prompts, completions, **columns)
        if self.update_stats:
            self.transform.update(raw)
        return self.transform.apply(raw)

    def score_prefixes(
        self, prompts: list[str], completion_ids: list[list[int]], tokenizer: Any, **columns: Any
    ) -> torch.Tensor:
        check_batch(prompts, completion_ids, columns, self.name)
        raw = self.inner.score_prefixes(prompts, completion_ids, tokenizer, **columns)
        if self.update_stats:
            self.transform.update(raw[:, -1])  # last column = full-completion rewards
        return self.transform.apply(raw)
