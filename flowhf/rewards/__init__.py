"""Reward callables with one signature, prefix scoring, and the `build_reward(spec)` registry.

    reward(prompts: list[str], completions: list[str], **columns) -> Tensor[B] float32
    reward.score_prefixes(prompts, completion_ids, tokenizer, **columns) -> Tensor[B, T+1]

Adapters are imported lazily by the registry, so `import flowhf.rewards` stays light; the
classes below import their heavy dependencies (vaderSentiment, sentence-transformers, ...) only
when first used.
"""

from flowhf.rewards.base import Reward, pad_prefix_rows, prefix_positions
from flowhf.rewards.classifier import ClassifierReward
from flowhf.rewards.combine import CombinedReward
from flowhf.rewards.embedding import EmbeddingReward
from flowhf.rewards.python_fn import PythonReward, python_reward
from flowhf.rewards.registry import available_rewards, build_reward
from flowhf.rewards.sentiment import SentimentReward
from flowhf.rewards.toxicity import ToxicityReward
from flowhf.rewards.transform import RewardTransform, TransformedReward

__all__ = [
    "ClassifierReward",
    "CombinedReward",
    "EmbeddingReward",
    "PythonReward",
    "Reward",
    "RewardTransform",
    "SentimentReward",
    "ToxicityReward",
    "TransformedReward",
    "available_rewards",
    "build_reward",
    "pad_prefix_rows",
    "prefix_positions",
    "python_reward",
]
