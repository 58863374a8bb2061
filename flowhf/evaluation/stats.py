"""Statistics for the evaluation: Welch's one-sided t-test and bootstrap confidence intervals.

``metric_cis`` bootstraps every metric by resampling the ``n`` completions with replacement
(prompt, completion and reward move together). Top-K metrics are recomputed *inside* each
resample: the top-K set is re-selected from the resampled rewards, so the interval covers
the uncertainty of which completions make the top K, not only of their values. A
completion drawn twice can enter the top K twice; its pair then has distance 0, which
lowers the diversity of that resample, the usual price of the plain bootstrap on a
pairwise statistic. Intervals are percentile intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from flowhf.evaluation.metrics import (
    _as_rewards,
    _check_k,
    l2_normalise,
    nearest_cosine_distance,
    ngram_lists,
    token_lengths,
)


def welch_one_sided(a: Any, b: Any, alternative: str = "greater") -> dict[str, float]:
    """Welch's unequal-variance t-test of mean(a) vs mean(b), one-sided by default.

    ``alternative="greater"`` tests H1: mean(a) > mean(b) (a model beats the baseline).
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(
            f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}"
        )
    xa, xb = _as_rewards(a), _as_rewards(b)
    if xa.size < 2 or xb.size < 2:
        raise ValueError(
            f"Welch's t-test needs >= 2 values per sample, got {xa.size} and {xb.size}"
        )
    res = sps.ttest_ind(xa, xb, equal_var=False, alternative=alternative)
    return {
        "t": float(res.statistic),
        "df": float(res.df),
        "p": float(res.pvalue),
        "alternative": alternative,
        "mean_a": float(xa.mean()),
        "mean_b": float(xb.mean()),
        "n_a": int(xa.size),
        "n_b": int(xb.size),
    }


def _percentile_interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _check_bootstrap_args(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    values: Any,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Percentile bootstrap ``(1 - alpha)`` interval of ``statistic`` over ``values``.

    Resamples the first axis of ``values`` with replacement ``n_boot`` times using
    ``numpy.random.default_rng(seed)``. Returns the estimate on the full sample, the
    interval bounds and how many resamples gave a finite statistic.
    """
    _check_bootstrap_args(n_boot, alpha)
    arr = np.asarray(values)
    if arr.shape[0] == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    samples = np.empty(n_boot)
    for b in range(n_boot):
        samples[b] = statistic(arr[rng.integers(0, arr.shape[0], arr.shape[0])])
    low, high = _percentile_interval(samples, alpha)
    return {
        "estimate": float(statistic(arr)),
        "low": low,
        "high": high,
        "n_valid": int(np.isfinite(samples).sum()),
    }


class _NgramIndex:
    """Integer ids of every text's n-grams, so distinct-n of a resample is a np.unique."""

    def __init__(self, texts: Sequence[str], n: int) -> None:
        ids: dict[tuple[str, ...], int] = {}
        self.per_text = [
            np.array([ids.setdefault(g, len(ids)) for g in grams], dtype=np.int64)
            for grams in ngram_lists(texts, n)
        ]

    def distinct(self, idx: np.ndarray) -> float:
        chosen = np.concatenate([self.per_text[i] for i in idx])
        return float(np.unique(chosen).size / chosen.size) if chosen.size else float("nan")


def _pairwise_mean_unit(unit: np.ndarray) -> float:
    """``pairwise_cosine_distance_mean`` on already-normalised rows (no warning when K < 2)."""
    count = unit.shape[0]
    if count < 2:
        return float("nan")
    total = unit.sum(axis=0)
    return float(1.0 - (float(total @ total) - count) / (count * (count - 1)))


# Metrics that a with-replacement resample biases (duplicates count as zero-distance pairs
# or repeated n-grams); their intervals are bias-shifted, see metric_cis.
DUPLICATE_BIASED = ("diversity", "diversity_all", "distinct_1", "distinct_2")


@dataclass
class CompletionSample:
    """One model's ``n`` scored completions, the unit the bootstrap resamples: rewards and
    embeddings, and optionally the texts (distinct-n, length; ``tokenizer`` counts its tokens) and
    the per-completion KL sums and token counts to a reference model."""

    rewards: Any
    embeddings: Any
    completions: Sequence[str] | None = None
    tokenizer: Any | None = None
    kl_sums: Any | None = None
    kl_counts: Any | None = None


class _Resampled:
    """Per-completion quantities computed once (nearest distance to D0, n-gram ids, lengths, KL
    sums), so each resample only re-indexes them."""

    def __init__(self, sample: CompletionSample, ref_embeddings: Any | None, k: int) -> None:
        self.rewards = _as_rewards(sample.rewards)
        n = self.rewards.size
        _check_k(k, n)
        self.k, self.unit = k, l2_normalise(sample.embeddings)
        if self.unit.shape[0] != n:
            raise ValueError(f"embeddings have {self.unit.shape[0]} rows for {n} rewards")
        self.nearest = None
        if ref_embeddings is not None and np.asarray(ref_embeddings).size:
            self.nearest = nearest_cosine_distance(self.unit, ref_embeddings)
        self.grams = self.lengths = None
        if sample.completions is not None:
            if len(sample.completions) != n:
                raise ValueError(f"{len(sample.completions)} completions for {n} rewards")
            self.grams = {i: _NgramIndex(sample.completions, i) for i in (1, 2)}
            self.lengths = token_lengths(sample.completions, sample.tokenizer)
        if (sample.kl_sums is None) != (sample.kl_counts is None):
            raise ValueError("pass both kl_sums and kl_counts, or neither")
        self.kl = None
        if sample.kl_sums is not None:
            self.kl = tuple(
                np.asarray(v, dtype=np.float64) for v in (sample.kl_sums, sample.kl_counts)
            )
            if self.kl[0].shape != (n,) or self.kl[1].shape != (n,):
                raise ValueError(f"kl_sums / kl_counts need one entry per completion ({n})")

    def metrics(self, idx: np.ndarray) -> dict[str, float]:
        """Every metric of the completions ``idx`` (a resample), the top K re-selected in it."""
        arr, r = self.rewards, self.rewards[idx]
        top = idx[np.argsort(-r, kind="stable")[: self.k]]
        row = {
            "mean_reward": r.mean(),
            "std_reward": r.std(ddof=0),
            "topk_mean": arr[top].mean(),
            "topk_std": arr[top].std(ddof=0),
            "diversity": _pairwise_mean_unit(self.unit[top]),
            "diversity_all": _pairwise_mean_unit(self.unit[idx]),
        }
        if self.nearest is not None:
            row["novelty"] = self.nearest[top].mean()
        if self.grams is not None:
            row["distinct_1"] = self.grams[1].distinct(idx)
            row["distinct_2"] = self.grams[2].distinct(idx)
            row["mean_length"] = self.lengths[idx].mean()
        if self.kl is not None:
            counts = self.kl[1][idx].sum()
            row["kl_per_token"] = self.kl[0][idx].sum() / counts if counts else np.nan
        return row


def metric_cis(
    sample: CompletionSample,
    ref_embeddings: Any | None,
    k: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals ``{metric: [low, high]}`` for every metric
    (bias-shifted for the duplicate-sensitive ones in DUPLICATE_BIASED).

    Per-completion quantities are computed once (`_Resampled`), which keeps 1000 resamples
    cheap even with a large D0. Metrics match ``compute_metrics`` keys.
    """
    _check_bootstrap_args(n_boot, alpha)
    resampled = _Resampled(sample, ref_embeddings, k)
    n = resampled.rewards.size
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        for key, value in resampled.metrics(rng.integers(0, n, n)).items():
            samples.setdefault(key, []).append(float(value))
    estimate = resampled.metrics(np.arange(n))
    out = {}
    for key, vals in samples.items():
        low, high = _percentile_interval(np.array(vals), alpha)
        if key in DUPLICATE_BIASED:
            # A resample repeats completions; repeats are pairs at distance 0 and repeated
            # n-grams, so these metrics are biased low in every resample. Shift the
            # percentile interval by the bootstrap bias (mean of resamples - estimate).
            bias = float(np.nanmean(vals)) - float(estimate[key])
            low, high = low - bias, high - bias
        out[key] = [low, high]
    return out
