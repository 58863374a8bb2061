"""Per-prompt diversity: how many different good answers a model gives to the SAME question.

The report's diversity compares the top-K answers of DIFFERENT prompts at temperature 0.1,
which mostly measures how different the prompts' topics are. What a GFlowNet promises is
diversity among its answers to one prompt, at the temperature it was trained to sample at. For
a fixed subset of prompts (``n_prompts`` evenly spaced ones) each model draws ``k`` completions per
prompt at ``temperature`` (1.0: the trained policy itself), and per prompt we measure

- ``pairwise_distance``: mean cosine distance between the k answers' embeddings (i != j);
- ``distinct_1`` / ``distinct_2``: distinct-n over the k answers of the prompt;
- ``distinct_answers``: how many different answers among the k, counted as NoveltyBench
  (Zhang et al. 2025) counts functional classes among 10 samples: the answers are clustered by
  complete linkage on cosine distance and two answers are "the same" when their cluster's
  every pair lies within ``threshold`` (0.15: MiniLM puts rewordings of one sentence at
  0.02-0.12 and different answers to one programming question at 0.2-0.6);
- ``reward`` (and e.g. ``proxy_reward``): mean score of the k answers under each reward given;
- ``eos_rate`` / ``mean_length``: share of answers that ended with EOS, and their token count.

A model's figure is the mean over prompts, with a percentile bootstrap interval over prompts
(the prompt is the unit that was sampled). Distinct-2 of a prompt whose answers are all one word
is undefined and left out of that mean (``distinct_2_prompts`` says how many prompts count).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from flowhf.config.evaluation import PerPromptSettings  # noqa: F401  (its old home)
from flowhf.evaluation.metrics import distinct_n, l2_normalise, pairwise_cosine_distance_mean
from flowhf.evaluation.sampling import SamplingPlan, length_metrics, sample_and_score, score


def distinct_answers(embeddings: Any, threshold: float) -> int:
    """Clusters of complete linkage on cosine distance cut at ``threshold``: every pair of
    answers inside one cluster is closer than ``threshold``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    unit = l2_normalise(embeddings)
    if unit.shape[0] < 2:
        return unit.shape[0]
    distances = np.clip(pdist(unit, "cosine"), 0.0, 2.0)
    return int(fcluster(linkage(distances, "complete"), t=threshold, criterion="distance").max())


def prompt_metrics(
    texts: Sequence[str],
    embeddings: Any,
    ended: Sequence[bool],
    lengths: Sequence[int],
    threshold: float,
) -> dict[str, float]:
    """Every metric of one prompt's k answers (rewards are added by the caller)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # distinct-2 of one-word answers is nan by design
        d1, d2 = distinct_n(texts, 1), distinct_n(texts, 2)
    return {
        "pairwise_distance": pairwise_cosine_distance_mean(embeddings),
        "distinct_1": d1,
        "distinct_2": d2,
        "distinct_answers": float(distinct_answers(embeddings, threshold)),
        "eos_rate": float(np.mean(ended)),
        "mean_length": float(np.mean(lengths)),
    }


def completion_level(
    rows: Sequence[Mapping[str, Any]], scales: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Figures over every completion of `evaluate_per_prompt`'s rows (not prompt means): the
    gold-vs-proxy gap in z-units (`flowhf.evaluation.gold_proxy`) and the correlation of each
    reward with length (`flowhf.evaluation.sampling.length_metrics`)."""
    from flowhf.evaluation.gold_proxy import gold_proxy_rows

    records = [
        {
            "model": "m",
            "reward": gold,
            "length": n,
            "ended": e,
            **(
                {"proxy_reward": row["scores"]["proxy_reward"][i]}
                if "proxy_reward" in row["scores"]
                else {}
            ),
        }
        for row in rows
        for i, (gold, n, e) in enumerate(zip(row["scores"]["reward"], row["lengths"], row["ended"]))
    ]
    summary = gold_proxy_rows(records, scales)[0]
    out = {key: summary[key] for key in ("gold_z", "proxy_z", "gap") if key in summary}
    lengths, ended = [r["length"] for r in records], [r["ended"] for r in records]
    out["corr_reward_length"] = length_metrics([r["reward"] for r in records], ended, lengths)[
        "corr_reward_length"
    ]
    if "proxy_reward" in records[0]:
        out["corr_proxy_length"] = length_metrics(
            [r["proxy_reward"] for r in records], ended, lengths
        )["corr_reward_length"]
    return out


def summarise(
    rows: Sequence[Mapping[str, float]], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(mean over prompts of every metric, its percentile bootstrap interval over prompts)."""
    keys = [
        key for key, value in rows[0].items() if isinstance(value, (int, float)) and key != "index"
    ]
    table = np.array([[row[key] for key in keys] for row in rows], dtype=np.float64)  # [P, M]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(rows), (n_boot, len(rows)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column of nan (no prompt with bigrams)
        means = np.nanmean(table, axis=0)
        boot = np.nanmean(table[draws], axis=1)  # [n_boot, M]
        low, high = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    metrics = {key: float(v) for key, v in zip(keys, means)}
    metrics["distinct_2_prompts"] = float(np.isfinite(table[:, keys.index("distinct_2")]).sum())
    return metrics, {key: [float(a), float(b)] for key, a, b in zip(keys, low, high)}


def evaluate_per_prompt(
    model: Any,
    tokenizer: Any,
    plan: SamplingPlan,
    rewards: Mapping[str, Callable],
    settings: PerPromptSettings,
    embedder: Any,
) -> list[dict[str, Any]]:
    """One row per prompt: its k completions and every metric (plus one mean score per reward).

    ``plan`` holds the prompts to choose from, the reward's extra columns aligned with them, the
    generation settings (their temperature replaced by ``settings.temperature``) and the seed;
    ``rewards`` maps a name (the row's key) to a reward callable, the headline first.
    """
    from flowhf.evaluation.tasks import evenly_spaced

    keep = evenly_spaced(len(plan.prompts), settings.n_prompts)
    chosen = [plan.prompts[i] for i in keep]
    repeated = SamplingPlan(
        [p for p in chosen for _ in range(settings.k)],
        replace(plan.generation, temperature=settings.temperature, do_sample=True),
        plan.seed,
        {
            key: [values[i] for i in keep for _ in range(settings.k)]
            for key, values in plan.columns.items()
        },
    )
    names = list(rewards)
    sampled = sample_and_score("per-prompt", model, tokenizer, repeated, rewards[names[0]])
    scores = {names[0]: sampled["rewards"]}
    for name in names[1:]:
        scores[name] = score(
            rewards[name],
            repeated.prompts,
            sampled["completions"],
            repeated.columns,
            f"per-prompt reward {name!r}",
        )
    emb = np.asarray(embedder.embed(sampled["completions"]))
    k = settings.k
    return [
        _prompt_row(i, prompt, sampled, scores, emb, slice(i * k, (i + 1) * k), settings.threshold)
        for i, prompt in enumerate(chosen)
    ]


def _prompt_row(
    index: int,
    prompt: str,
    sampled: Mapping[str, Any],
    scores: Mapping[str, np.ndarray],
    emb: np.ndarray,
    part: slice,
    threshold: float,
) -> dict[str, Any]:
    """The row of one prompt, whose k answers are ``part`` of the sampled completions."""
    row = {
        "index": index,
        "prompt": prompt,
        "completions": sampled["completions"][part],
        **prompt_metrics(
            sampled["completions"][part],
            emb[part],
            sampled["ended"][part],
            sampled["lengths"][part],
            threshold,
        ),
    }
    row.update({name: float(np.mean(values[part])) for name, values in scores.items()})
    row.update(
        scores={name: [float(v) for v in values[part]] for name, values in scores.items()},
        lengths=[int(n) for n in sampled["lengths"][part]],
        ended=[bool(e) for e in sampled["ended"][part]],
    )
    return row
