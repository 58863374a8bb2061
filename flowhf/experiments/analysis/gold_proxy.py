"""The report's gold-vs-proxy tables: the rows of `flowhf.evaluation.gold_proxy` per model, and the
two reward models' held-out pairwise accuracy per rejected kind with Wilson intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from flowhf.evaluation.report import format_cell, markdown_table


def format_gold_proxy_markdown(rows: Sequence[Mapping[str, Any]], slope_note: str) -> str:
    """Gold vs proxy per model (`flowhf.evaluation.gold_proxy.gold_proxy_rows`), then the note."""
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
    lines = markdown_table(
        ["Model", *(title for _, title in cols)],
        ([row["model"], *(format_cell(row.get(key)) for key, _ in cols)] for row in rows),
    )
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
