"""Wall-clock to reach a reference run's final training reward (the report's compute claim).

Every run (FlowHF or TRL baseline) writes ``metrics.jsonl`` with ``train/reward_mean`` and
``train/elapsed_seconds`` (the budget clock). FlowHF runs also log ``train/reward_mean_policy``,
the mean over the policy's own samples (replay rows excluded); it is used when present so that
replayed high-reward completions do not count as reached reward.

Per-step batch means are noisy (8 completions), so both the reference's FINAL value and each
run's curve are trailing means over ``window`` logged steps: a run "reaches" the reference at
the first step whose trailing mean is >= the reference's final trailing mean.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from flowhf.training.logging import read_metrics

REWARD_KEYS = ("train/reward_mean_policy", "train/reward_mean")


def reward_curve(run_dir: str | Path) -> list[tuple[float, float]]:
    """[(elapsed_seconds, batch mean reward)] of a run, in logged order."""
    curve = []
    for row in read_metrics(run_dir):
        reward = next((row[k] for k in REWARD_KEYS if k in row and _finite(row[k])), None)
        if reward is None or not _finite(row.get("train/elapsed_seconds")):
            continue  # e.g. SFT lines (no reward) or a step whose every reward was None
        curve.append((float(row["train/elapsed_seconds"]), float(reward)))
    return curve


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def trailing_means(values: list[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def time_to_reach(run_dir: str | Path, threshold: float, window: int = 5) -> dict[str, Any]:
    """First elapsed second where the run's trailing-mean reward >= threshold (None if never)."""
    return _reach(reward_curve(run_dir), threshold, window)


def _reach(curve: list[tuple[float, float]], threshold: float, window: int) -> dict[str, Any]:
    smooth = trailing_means([r for _, r in curve], window)
    for (elapsed, _), value in zip(curve, smooth):
        if value >= threshold:
            return {"seconds": elapsed, "reached": True, "final": smooth[-1], "steps": len(curve)}
    return {
        "seconds": None,
        "reached": False,
        "final": smooth[-1] if smooth else None,
        "steps": len(curve),
    }


def reach_table(
    run_dirs: dict[str, str | Path], reference: str = "ppo", window: int = 5
) -> dict[str, Any]:
    """Time for every run to reach ``reference``'s final trailing-mean training reward."""
    ref_curve = reward_curve(run_dirs[reference])
    if not ref_curve:
        raise ValueError(f"{run_dirs[reference]}: the reference run {reference!r} logged no reward")
    target = trailing_means([r for _, r in ref_curve], window)[-1]
    curves = {name: reward_curve(path) for name, path in run_dirs.items() if name != reference}
    rows = {name: _reach(curve, target, window) for name, curve in curves.items() if curve}
    return {
        "reference": reference,
        "target": target,
        "window": window,
        "reference_seconds": ref_curve[-1][0],
        "runs": rows,
    }


def format_reach_markdown(table: dict[str, Any]) -> str:
    """The table as markdown (one row per run)."""
    ref = table["reference"]
    lines = [
        f"Wall-clock (training budget clock) for each run to reach {ref.upper()}'s final training reward "
        f"({table['target']:.3f}, trailing mean over {table['window']} logged steps; {ref.upper()} itself "
        f"ended at {table['reference_seconds']:.0f} s).",
        "",
        "| run | reached | seconds to reach | final training reward | still above at the end | logged steps |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in table["runs"].items():
        seconds = f"{row['seconds']:.0f}" if row["reached"] else "not reached"
        final = f"{row['final']:.3f}" if row["final"] is not None else "-"
        above = "yes" if row["final"] is not None and row["final"] >= table["target"] else "no"
        lines.append(
            f"| {name} | {'yes' if row['reached'] else 'no'} | {seconds} | {final} | {above} | {row['steps']} |"
        )
    return "\n".join(lines)
