"""Sentiment reward: the VADER compound score of the completion, in [-1, 1].

VADER (Hutto & Gilbert 2014) is a lexicon + rules model: no weights to download, fast on CPU,
deterministic. +1 is very positive, -1 very negative, 0 neutral (also for the empty string).
For a negative-sentiment target use a negative weight (``-1*sentiment``).
"""

from __future__ import annotations

from typing import Any

import torch

from flowhf.rewards.base import Reward


class SentimentReward(Reward):
    """VADER compound score of each completion (the prompt is not scored)."""

    name = "sentiment"

    def __init__(self, **base_kwargs: Any) -> None:
        super().__init__(**base_kwargs)
        self._analyzer = None  # built on first use: importing the lexicon takes ~0.1 s

    @property
    def analyzer(self):
        if self._analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._analyzer = SentimentIntensityAnalyzer()
        return self._analyzer

    def score(self, prompts: list[str], completions: list[str], **columns: Any) -> torch.Tensor:
        scores = [self.analyzer.polarity_scores(text)["compound"] for text in completions]
        return torch.tensor(scores, dtype=torch.float32)
