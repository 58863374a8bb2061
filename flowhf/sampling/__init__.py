"""Sampling: generation with exploration, log-prob recomputation, replay."""

from flowhf.sampling.generate import (
    Completions,
    SampleSettings,
    draw_temperature,
    sample_completions,
)
from flowhf.sampling.logprobs import SequenceScores, completion_log_probs
from flowhf.sampling.replay import ReplayBuffer, ReplayItem

__all__ = [
    "Completions",
    "ReplayBuffer",
    "ReplayItem",
    "SampleSettings",
    "SequenceScores",
    "completion_log_probs",
    "draw_temperature",
    "sample_completions",
]
