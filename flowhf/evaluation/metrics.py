"""Evaluation metrics of the FlowHF report (section 4.4), as pure numpy functions.

The report scores ``n`` completions (one per test prompt) with a reward and gives:

- Mean / Std Reward over all ``n`` completions,
- Top K Mean / Top K Std over the ``k`` highest-reward completions,
- Diversity: mean pairwise cosine distance between the sentence embeddings of the top-K
  completions, over ordered pairs ``i != j``,
- Novelty: mean over the top-K completions of the minimum cosine distance to the
  training completions D0.

Both standard deviations are *population* standard deviations (``ddof=0``): the report's
Top K Std is the spread of a fixed set of K numbers, not an estimate of a wider population,
and using the same ``ddof`` for Std Reward keeps the two columns comparable.

Extra metrics (not in the report's tables, useful to read them): ``diversity_all`` (the
same pairwise distance over all ``n`` completions), distinct-1/2, mean length, and the
per-token KL to a reference model estimated on the policy's own samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

# Reference embeddings (D0) can hold tens of thousands of rows; comparing against them in
# chunks bounds the memory of the K x N similarity matrix.
_REF_CHUNK_ROWS = 8192


def _as_rewards(rewards: Any) -> np.ndarray:
    """Rewards as a finite 1-D float64 array; raises a clear error otherwise."""
    if hasattr(rewards, "detach"):  # torch tensor, without importing torch here
        rewards = rewards.detach().cpu().numpy()
    arr = np.asarray(rewards, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"rewards must be a non-empty 1-D array, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"rewards contain {bad.size} non-finite value(s) (first at index {bad[0]}: "
            f"{arr[bad[0]]}); fix the reward function so every completion gets a finite score"
        )
    return arr


def _check_k(k: int, n: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n:
        raise ValueError(f"k={k} is larger than the number of completions n={n}; use k <= n")


def l2_normalise(emb: Any) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float64 (cosine similarity becomes a dot product).

    A zero row has no direction, so its cosine distance is undefined: it is an error.
    """
    arr = np.asarray(emb, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array [rows, dim], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("embeddings contain non-finite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise ValueError(
            f"embedding row {zero[0]} is all zeros: cosine distance is undefined for it"
        )
    return arr / norms


def top_k_indices(rewards: Any, k: int) -> np.ndarray:
    """Indices of the ``k`` highest rewards, best first.

    Ties are broken by position (the earlier completion wins) through a stable sort, so the
    selection is deterministic and does not depend on the sorting algorithm.
    """
    arr = _as_rewards(rewards)
    _check_k(k, arr.size)
    return np.argsort(-arr, kind="stable")[:k]


def reward_stats(rewards: Any, k: int) -> dict[str, float]:
    """Mean / std of all rewards and of the top-``k`` rewards (population std, ddof=0)."""
    arr = _as_rewards(rewards)
    top = arr[top_k_indices(arr, k)]
    return {
        "mean_reward": float(arr.mean()),
        "std_reward": float(arr.std(ddof=0)),
        "topk_mean": float(top.mean()),
        "topk_std": float(top.std(ddof=0)),
    }


def pairwise_cosine_distance_mean(emb: Any) -> float:
    """Mean cosine distance ``1 - cos(e_i, e_j)`` over all ordered pairs ``i != j``.

    With unit rows ``E``, the Gram matrix ``S = E E^T`` holds every cosine similarity and
    its diagonal is 1, so the off-diagonal sum is ``1^T E E^T 1 - K = ||sum_i e_i||^2 - K``.
    Computing that matrix product through the summed vector is exact and needs O(K d)
    memory instead of O(K^2), which matters for ``diversity_all`` over many completions.

    With fewer than two rows there is no pair: returns nan and warns why.
    """
    unit = l2_normalise(emb)
    count = unit.shape[0]
    if count < 2:
        warnings.warn(
            f"pairwise diversity needs at least 2 embeddings, got {count}: returning nan",
            stacklevel=2,
        )
        return float("nan")
    total = unit.sum(axis=0)
    off_diag_similarity = float(total @ total) - count
    return float(1.0 - off_diag_similarity / (count * (count - 1)))


def nearest_cosine_distance(emb: Any, ref_emb: Any) -> np.ndarray:
    """Per row of ``emb``: the minimum cosine distance to any row of ``ref_emb``.

    Computed as ``1 - max_j (E R^T)_ij``, a matrix product over chunks of the reference.
    """
    unit = l2_normalise(emb)
    ref = l2_normalise(ref_emb)
    if ref.shape[0] == 0:
        raise ValueError("reference embeddings are empty: novelty needs at least one row")
    if unit.shape[1] != ref.shape[1]:
        raise ValueError(
            f"embedding dims differ: completions {unit.shape[1]} vs reference {ref.shape[1]}; "
            "embed both with the same model"
        )
    best = np.full(unit.shape[0], -np.inf)
    for start in range(0, ref.shape[0], _REF_CHUNK_ROWS):
        sims = unit @ ref[start : start + _REF_CHUNK_ROWS].T
        best = np.maximum(best, sims.max(axis=1))
    # Rounding can push a similarity a hair above 1; a distance is never negative.
    return np.clip(1.0 - best, 0.0, 2.0)


def novelty(emb: Any, ref_emb: Any | None) -> float:
    """Mean over rows of ``emb`` of the minimum cosine distance to the reference (D0).

    Without reference completions novelty is undefined: returns nan and warns why.
    """
    if ref_emb is None or np.asarray(ref_emb).size == 0:
        warnings.warn(
            "novelty needs reference (training) completions D0: returning nan", stacklevel=2
        )
        return float("nan")
    return float(nearest_cosine_distance(emb, ref_emb).mean())


def ngram_lists(texts: Sequence[str], n: int) -> list[list[tuple[str, ...]]]:
    """Whitespace-token n-grams of every text (n-grams never cross text boundaries)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out = []
    for text in texts:
        tokens = text.split()
        out.append([tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)])
    return out


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): unique n-grams / total n-grams over all texts.

    Tokens are whitespace-separated words, case kept. With no n-gram at all (every text
    shorter than ``n`` words) the ratio is undefined: returns nan and warns why.
    """
    grams = [g for per_text in ngram_lists(texts, n) for g in per_text]
    if not grams:
        warnings.warn(f"distinct-{n}: no text has {n} or more words, returning nan", stacklevel=2)
        return float("nan")
    return len(set(grams)) / len(grams)


def token_lengths(texts: Sequence[str], tokenizer: Any | None = None) -> np.ndarray:
    """Length of every text: tokenizer tokens (no special tokens added) or whitespace words."""
    if tokenizer is None:
        return np.array([len(text.split()) for text in texts], dtype=np.float64)
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return np.array([len(row) for row in ids], dtype=np.float64)


def mean_length(texts: Sequence[str], tokenizer: Any | None = None) -> float:
    """Mean completion length in tokenizer tokens when a tokenizer is given, else in words."""
    if len(texts) == 0:
        raise ValueError("mean_length needs at least one text")
    return float(token_lengths(texts, tokenizer).mean())


def per_token_kl_sums(
    policy_logprobs: Any, ref_logprobs: Any, mask: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Per completion: sum over its tokens of ``log pi - log ref``, and its token count."""
    arrays = []
    for _name, value in (
        ("policy_logprobs", policy_logprobs),
        ("ref_logprobs", ref_logprobs),
        ("mask", mask),
    ):
        if hasattr(value, "detach"):
            value = value.detach().float().cpu().numpy()
        arrays.append(np.asarray(value, dtype=np.float64))
    lp, lr, m = arrays
    if not (lp.shape == lr.shape == m.shape) or lp.ndim != 2:
        raise ValueError(
            f"policy_logprobs, ref_logprobs and mask must share one [B, T] shape, got "
            f"{lp.shape}, {lr.shape}, {m.shape}"
        )
    return ((lp - lr) * m).sum(axis=1), m.sum(axis=1)


def per_token_kl(policy_logprobs: Any, ref_logprobs: Any, mask: Any) -> float:
    """Monte-Carlo per-token KL(pi || ref) on the policy's own samples.

    ``sum_t mask * (log pi - log ref) / sum_t mask`` pooled over all tokens of all
    completions (token-weighted, so long completions weigh more, like a per-token KL
    penalty in RLHF). Unbiased for KL only when the samples come from ``pi`` itself
    (temperature 1, no top-p); under tempered sampling it is the expected log-ratio on the
    evaluated samples.
    """
    sums, counts = per_token_kl_sums(policy_logprobs, ref_logprobs, mask)
    if counts.sum() == 0:
        raise ValueError("per_token_kl: the mask selects no token")
    return float(sums.sum() / counts.sum())


def compute_metrics(
    rewards: Any,
    completions: Sequence[str],
    embeddings: Any,
    ref_embeddings: Any | None,
    k: int,
    *,
    tokenizer: Any | None = None,
    kl_per_token: float | None = None,
) -> dict[str, float]:
    """Every evaluation metric for one model's ``n`` completions.

    ``embeddings[i]`` embeds ``completions[i]`` whose score is ``rewards[i]``; the top-K
    set used by ``diversity`` and ``novelty`` is the one of ``top_k_indices``.
    """
    arr = _as_rewards(rewards)
    emb = np.asarray(embeddings)
    if not (arr.size == len(completions) == emb.shape[0]):
        raise ValueError(
            f"rewards ({arr.size}), completions ({len(completions)}) and embeddings "
            f"({emb.shape[0]}) must have one entry per completion"
        )
    top = top_k_indices(arr, k)
    metrics = reward_stats(arr, k)
    metrics["diversity"] = pairwise_cosine_distance_mean(emb[top])
    # No D0 (e.g. the toxicity task) is an expected setting, not a surprise: nan, no warning.
    no_reference = ref_embeddings is None or np.asarray(ref_embeddings).size == 0
    metrics["novelty"] = float("nan") if no_reference else novelty(emb[top], ref_embeddings)
    metrics["diversity_all"] = pairwise_cosine_distance_mean(emb)
    metrics["distinct_1"] = distinct_n(completions, 1)
    metrics["distinct_2"] = distinct_n(completions, 2)
    metrics["mean_length"] = mean_length(completions, tokenizer)
    if kl_per_token is not None:
        metrics["kl_per_token"] = float(kl_per_token)
    return metrics
