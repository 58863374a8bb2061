"""Sample completions of one model and score them: the one path every evaluation uses.

`sample_and_score` draws (seeded per model, so a model's samples do not depend on the order
models are evaluated in), `score` checks a reward's output at the boundary (one finite score per
completion, naming where it failed), `length_metrics` relates reward to length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from flowhf.evaluation.generation import GenerationSettings, completion_logprobs, generate_batch
from flowhf.evaluation.metrics import per_token_kl_sums

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


def sample_and_score(
    name: str,
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    reward: Callable,
    generation: GenerationSettings,
    seed: int,
    columns: Mapping[str, Sequence],
    reference: tuple[Any, Any] | None,
) -> dict[str, Any]:
    """Completions, rewards, whether each ended with EOS, token lengths (EOS included) and (with a
    reference model) per-completion KL sums of one model."""
    model.eval()
    torch.manual_seed(seed)  # same seed per model: each model's samples do not depend on order
    completions: list[str] = []
    rewards, kl_sums, kl_counts, ended, lengths = [], [], [], [], []
    size = generation.batch_size
    for start in range(0, len(prompts), size):
        batch_prompts = prompts[start : start + size]
        batch = generate_batch(model, tokenizer, batch_prompts, generation)
        cols = {key: list(values[start : start + size]) for key, values in columns.items()}
        where = f"model {name!r}, prompts {start}..{start + len(batch_prompts) - 1}"
        rewards.append(score(reward, batch_prompts, batch.texts, cols, where))
        completions.extend(batch.texts)
        ended.extend(batch.ended)
        lengths.extend(batch.lengths)
        if reference is not None:
            sums, counts = per_token_kl_sums(
                completion_logprobs(model, batch),
                completion_logprobs(reference[0], batch),
                batch.completion_mask,
            )
            kl_sums.append(sums)
            kl_counts.append(counts)
        logger.info("%s: %d/%d completions", name, len(completions), len(prompts))
    out = {
        "completions": completions,
        "rewards": np.concatenate(rewards),
        "ended": ended,
        "lengths": lengths,
    }
    if reference is not None:
        out["kl_sums"], out["kl_counts"] = np.concatenate(kl_sums), np.concatenate(kl_counts)
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
