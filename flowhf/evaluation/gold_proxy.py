"""Gold vs proxy reward per model, and the gold reward with length regressed out.

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

import math
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


def format_gold_proxy_markdown(rows: Sequence[Mapping[str, Any]], slope_note: str) -> str:
    cols = [
        ("gold", "Gold"),
        ("gold_lc", "Gold, length-controlled"),
        ("proxy", "Proxy"),
        ("gold_z", "Gold (z)"),
        ("proxy_z", "Proxy (z)"),
        ("gap", "Proxy - gold (z)"),
        ("tokens", "Generated tokens"),
        ("eos_rate", "EOS rate"),
    ]
    lines = [
        "| Model | " + " | ".join(title for _, title in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for row in rows:
        cells = [_cell(row.get(key)) for key, _ in cols]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", slope_note])


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on n trials."""
    if n == 0:
        return float("nan"), float("nan")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def kind_accuracies(metrics: Mapping[str, Any]) -> dict[str, dict]:
    """{kind: {accuracy, n, ci}} from a reward model's metrics (``eval/accuracy/KIND``)."""
    out = {}
    for key, value in metrics.items():
        if key.startswith("eval/accuracy/"):
            kind = key.split("/", 2)[2]
            n = int(metrics[f"eval/n_pairs/{kind}"])
            out[kind] = {"accuracy": value, "n": n, "ci": wilson(value, n)}
    return out


def format_reward_models_markdown(proxy: Mapping[str, Any], gold: Mapping[str, Any]) -> str:
    """Held-out pairwise accuracy per rejected kind of the proxy and the gold (metrics dicts)."""
    from flowhf.reward_model.gold_pairs import GOLD_KINDS, PARTIAL_KINDS

    only_gold = GOLD_KINDS + PARTIAL_KINDS
    p_kinds, g_kinds = kind_accuracies(proxy), kind_accuracies(gold)
    lines = [
        "| rejected kind | trained on by | n | proxy accuracy [95% CI] | gold accuracy [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for kind in sorted(g_kinds, key=lambda k: (k in only_gold, k)):
        cells = [
            f"{r['accuracy']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]" if r else "n/a"
            for r in (p_kinds.get(kind), g_kinds[kind])
        ]
        lines.append(
            f"| {kind} | {'gold only' if kind in only_gold else 'both'} | {g_kinds[kind]['n']} | "
            + " | ".join(cells)
            + " |"
        )
    for name, m in (("proxy", proxy), ("gold", gold)):
        lines.append(
            f"\n{name}: {m['train/n_pairs']} training pairs, held-out accuracy {m['eval/accuracy']:.3f} "
            f"on {m['eval/n_pairs']} pairs, training score std {m['train/score_std']:.3g}."
        )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.3f}"
    )
