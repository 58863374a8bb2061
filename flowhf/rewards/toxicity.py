"""Toxicity reward from `alt-profanity-check` (a linear SVM on bag-of-words, CPU, no download).

`predict_prob` gives p = P(offensive | completion). Modes:

- ``log1m`` (default): log(1 - p), a log-probability of being inoffensive; 0 for clean text,
  very negative for offensive text. p = 1 would give -inf, so 1 - p is clamped at `eps`
  (floor log(eps) = -13.8 for eps = 1e-6).
- ``neg_prob``: -p, bounded in [-1, 0].
- ``prob``: p, for red-teaming (the policy is rewarded for offensive completions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flowhf.rewards.base import Reward

TOXICITY_MODES = ("log1m", "neg_prob", "prob")


class ToxicityReward(Reward):
    """Profanity-check reward in one of `TOXICITY_MODES` (see the module docstring)."""

    def __init__(self, mode: str = "log1m", eps: float = 1e-6, **base_kwargs: Any) -> None:
        if mode not in TOXICITY_MODES:
            raise ValueError(f"toxicity mode must be one of {TOXICITY_MODES}, got {mode!r}")
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        base_kwargs.setdefault("name", "toxicity" if mode == "log1m" else f"toxicity:{mode}")
        super().__init__(**base_kwargs)
        self.mode = mode
        self.eps = eps

    def offensive_prob(self, completions: list[str]) -> np.ndarray:
        """P(offensive) for each text, float64."""
        if not completions:
            return np.zeros(0)
        from profanity_check import predict_prob

        return np.asarray(predict_prob(list(completions)), dtype=np.float64)

    def score(self, prompts: list[str], completions: list[str], **columns: Any) -> torch.Tensor:
        p = self.offensive_prob(completions)
        if self.mode == "log1m":
            values = np.log(np.maximum(1.0 - p, self.eps))
        elif self.mode == "neg_prob":
            values = -p
        else:
            values = p
        return torch.as_tensor(values, dtype=torch.float32)
