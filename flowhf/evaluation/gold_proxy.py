"""Gold vs proxy reward per model, and the gold reward with length regressed out: the
per-completion figures (`flowhf.evaluation.per_prompt` needs them); the report's tables of them are
`flowhf.experiments.analysis.gold_proxy`.

After Gao, Schulman and Hilton (2022): a policy trained on a proxy reward model is judged by a
gold one it never saw. Reward hacking reads as the proxy rising while the gold does not. The two
models have their own scales, so each score is standardised by the mean and std of that model's
scores over its training answers (chosen and rejected), and the gap is ``proxy_z - gold_z`` in
those units: 0 when the proxy's verdict agrees with the gold's, positive when the proxy
over-rates the policy.

Length-controlled gold (in the spirit of AlpacaEval 2.0's length control): one least-squares
line ``gold = a + b * tokens`` is fitted over every evaluated completion of every model, and a
model's figure is its mean of ``gold - b * (tokens - mean tokens)``: what its gold would be at
the pooled mean length. It separates "better answers" from "longer (or shorter) answers".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def length_slope(rewards: Sequence[float], lengths: Sequence[float]) -> float:
    """Least-squares slope of reward on length (0 when every length is the same)."""
    r, n = np.asarray(rewards, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    return float(np.cov(n, r, bias=True)[0, 1] / n.var()) if n.var() > 0 else 0.0


def gold_proxy_rows(
    records: Sequence[Mapping[str, Any]],
    scales: Mapping[str, tuple[float, float]],
    slope: float | None = None,
) -> list[dict]:
    """One row per model from completions.jsonl records (``reward`` = gold, ``proxy_reward``,
    ``length``, ``ended``); ``scales`` = {"gold": (mean, std), "proxy": (mean, std)} of each
    reward model's training scores (missing: raw units); ``slope``: `length_slope` of the records
    when the caller has it already."""
    if slope is None:
        slope = length_slope([r["reward"] for r in records], [r["length"] for r in records])
    pooled_length = float(np.mean([r["length"] for r in records]))
    rows = []
    for model in dict.fromkeys(r["model"] for r in records):
        mine = [r for r in records if r["model"] == model]
        gold = np.array([r["reward"] for r in mine])
        lengths = np.array([r["length"] for r in mine], dtype=np.float64)
        row = {
            "model": model,
            "gold": float(gold.mean()),
            "gold_lc": float(np.mean(gold - slope * (lengths - pooled_length))),
            "gold_z": _z(gold.mean(), scales.get("gold")),
            "tokens": float(lengths.mean()),
            "eos_rate": float(np.mean([bool(r["ended"]) for r in mine])),
        }
        if "proxy_reward" in mine[0]:
            proxy = float(np.mean([r["proxy_reward"] for r in mine]))
            row.update(proxy=proxy, proxy_z=_z(proxy, scales.get("proxy")))
            row["gap"] = row["proxy_z"] - row["gold_z"]
        rows.append(row)
    return rows


def _z(value: float, scale: tuple[float, float] | None) -> float:
    mean, std = scale if scale else (0.0, 1.0)
    return (float(value) - mean) / std
