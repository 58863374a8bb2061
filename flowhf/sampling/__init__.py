"""Sampling: generation with exploration, log-prob recomputation, replay."""

from flowhf.sampling.generate import Completions, draw_temperature, sample_completions
from flowhf.sampling.logprobs import SequenceScores, completion_log_probs

__all__ = ["Completions", "SequenceScores", "completion_log_probs", "draw_temperature", "sample_completions"]
