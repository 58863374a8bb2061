"""Sample completions of one model and score them: the one path every evaluation uses.

`sample_and_score` draws for a `SamplingPlan` (seeded per model, so a model's samples do not depend on the order
models are evaluated in), `score` checks a reward's output at the boundary (one finite score per
completion, naming where it failed), `length_metrics` relates reward to length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flowhf.config.evaluation import GenerationSettings
from flowhf.evaluation.generation import completion_logprobs, generate_batch
from flowhf.evaluation.metrics import per_token_kl_sums
from flowhf.models.modes import eval_mode

logger = logging.getLogger(__name__)


def score(
    reward: Callable,
    prompts: list[str],
    completions: list[str],
    columns: Mapping[str, Sequence],
    where: str,
) -> np.ndarray:
    """Call ``reward(prompts, completions, **columns)`` and check it gives one finite score each."""
    out = reward(prompts, completions, **columns)
    arr = (
        torch.as_tensor(out).detach().float().cpu().reshape(-1).numpy() if out is not None else None
    )
    if arr is None or arr.shape[0] != len(completions):
        got = None if arr is None else arr.shape[0]
        raise ValueError(
            f"reward returned {got} scores for {len(completions)} completions ({where})"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"reward returned non-finite scores ({where}): {arr[~np.isfinite(arr)][:3]}"
        )
    return arr.astype(np.float64)


@dataclass
class SamplingPlan:
    """What a model is asked for: the prompts (one completion each), the reward's extra columns
    aligned with them, how to sample and the seed."""

    prompts: list[str]
    generation: GenerationSettings
    seed: int
    columns: Mapping[str, Sequence] = field(default_factory=dict)


def sample_and_score(
    name: str,
    model: Any,
    tokenizer: Any,
    plan: SamplingPlan,
    reward: Callable,
    reference: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Completions, rewards, whether each ended with EOS, token lengths (EOS included) and (with a
    reference model) per-completion KL sums of one model (sampled in eval mode, its training
    mode restored after)."""
    with eval_mode(model):
        torch.manual_seed(plan.seed)  # same seed per model: samples do not depend on order
        parts = [
            _sample_batch(name, model, tokenizer, plan, reward, reference, start)
            for start in range(0, len(plan.prompts), plan.generation.batch_size)
        ]
    out = {
        "completions": [text for part in parts for text in part["completions"]],
        "rewards": np.concatenate([part["rewards"] for part in parts]),
        "ended": [e for part in parts for e in part["ended"]],
        "lengths": [n for part in parts for n in part["lengths"]],
    }
    if reference is not None:
        out["kl_sums"] = np.concatenate([part["kl_sums"] for part in parts])
        out["kl_counts"] = np.concatenate([part["kl_counts"] for part in parts])
    return out


def _sample_batch(
    name: str,
    model: Any,
    tokenizer: Any,
    plan: SamplingPlan,
    reward: Callable,
    reference: tuple[Any, Any] | None,
    start: int,
) -> dict[str, Any]:
    """`sample_and_score` of the batch of prompts from ``start``."""
    stop = start + plan.generation.batch_size
    prompts = plan.prompts[start:stop]
    batch = generate_batch(model, tokenizer, prompts, plan.generation)
    cols = {key: list(values[start:stop]) for key, values in plan.columns.items()}
    where = f"model {name!r}, prompts {start}..{start + len(prompts) - 1}"
    out = {
        "completions": batch.texts,
        "rewards": score(reward, prompts, batch.texts, cols, where),
        "ended": batch.ended,
        "lengths": batch.lengths,
    }
    if reference is not None:
        out["kl_sums"], out["kl_counts"] = per_token_kl_sums(
            completion_logprobs(model, batch),
            completion_logprobs(reference[0], batch),
            batch.completion_mask,
        )
    logger.info("%s: %d/%d completions", name, start + len(prompts), len(plan.prompts))
    return out


def length_metrics(
    rewards: Sequence[float], ended: Sequence[bool], lengths: Sequence[int]
) -> dict[str, float]:
    """EOS rate, mean token length and the Pearson correlation of reward with length (nan when
    either is constant): a reward that rises with length alone is rewarding length."""
    r, n = np.asarray(rewards, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    corr = float(np.corrcoef(r, n)[0, 1]) if r.std() > 0 and n.std() > 0 else float("nan")
    return {
        "eos_rate": float(np.mean(ended)),
        "mean_tokens": float(n.mean()),
        "corr_reward_length": corr,
    }
