"""Figures of the evaluation: per-model score distributions and training curves.

``plot_score_distributions`` overlays one histogram (density) plus a Gaussian KDE per model,
the layout of the report's Figure 3. ``plot_training_curves`` reads each run's
``metrics.jsonl`` (one JSON object per logged step, with a ``step`` key and namespaced
metric keys such as ``train/loss``) and draws one panel per metric key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: evaluation runs on servers without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

DEFAULT_CURVE_KEYS = (
    "train/reward_mean",
    "train/loss",
    "train/log_z",
    "train/kl_per_token",
    "train/completion_length",
    "train/entropy",
)
# A panel's key -> the names runs log it under, first found wins. FlowHF's policy-only reward
# mean excludes replayed completions (the buffer's best), so it is the fair curve to compare.
CURVE_ALIASES = {
    "train/reward_mean": ("train/reward_mean_policy", "train/reward_mean"),
    "train/completion_length": ("train/completion_length", "train/completion_length_mean"),
}


def plot_score_distributions(
    scores_by_model: Mapping[str, Any], path: str | os.PathLike, title: str = "Score distributions"
) -> Path:
    """Overlaid density histograms + KDE of each model's reward scores, saved as PNG."""
    if not scores_by_model:
        raise ValueError("plot_score_distributions needs at least one model's scores")
    arrays = {name: np.asarray(s, dtype=np.float64).ravel() for name, s in scores_by_model.items()}
    for name, arr in arrays.items():
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError(f"scores of model {name!r} are empty or non-finite")
    everything = np.concatenate(list(arrays.values()))
    low, high = float(everything.min()), float(everything.max())
    if high == low:  # one value everywhere: widen so the bins have a width
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 31)
    grid = np.linspace(low, high, 400)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, arr in arrays.items():
        hist = ax.hist(arr, bins=bins, density=True, alpha=0.35, label=name)
        color = hist[2][0].get_facecolor()
        # A KDE needs spread: with one distinct value the covariance is singular.
        if np.unique(arr).size > 1:
            ax.plot(grid, gaussian_kde(arr)(grid), color=color[:3], linewidth=1.8)
    ax.set_xlabel("reward")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def read_metrics_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.jsonl`` (`flowhf.training.logging.read_metrics`)."""
    from flowhf.training.logging import read_metrics

    return read_metrics(path, required=("step",))


def _series(
    rows: Sequence[Mapping[str, Any]], key: str, source: Path, x_key: str = "step"
) -> tuple[list[float], list[float]]:
    """(x, values) of one key (or its first alias the run logged). Rows without it have no point."""
    names = CURVE_ALIASES.get(key, (key,))
    key = next((name for name in names if any(row.get(name) is not None for row in rows)), names[0])
    xs, values = [], []
    for row in rows:
        value = row.get(key)
        if value is None or row.get(x_key) is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{source}: step {row['step']} has non-numeric {key}={value!r}")
        xs.append(float(row[x_key]))
        values.append(float(value))
    return xs, values


def plot_training_curves(
    run_dirs: Mapping[str, str | os.PathLike],
    path: str | os.PathLike,
    keys: Sequence[str] = DEFAULT_CURVE_KEYS,
) -> Path:
    """One panel per metric key, one line per run; keys absent in a run are skipped there.

    Each run keeps one colour in every panel. The x axis is the budget clock
    (``train/elapsed_seconds``) when every run logs it, as methods compared under one
    wall-clock budget take steps of very different cost; otherwise the step. Panels whose
    values span more than three orders of magnitude use a symmetric log scale. A key logged
    by no run gets no panel; if no run logged any of ``keys`` that is an error naming them.
    """
    if not run_dirs:
        raise ValueError("plot_training_curves needs at least one run dir")
    runs = {name: (Path(d), read_metrics_jsonl(d)) for name, d in run_dirs.items()}
    timed = all(
        rows and all(r.get("train/elapsed_seconds") is not None for r in rows)
        for _, rows in runs.values()
    )
    x_key = "train/elapsed_seconds" if timed else "step"
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(runs)}
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for key in keys:
        for name, (source, rows) in runs.items():
            xs, values = _series(rows, key, source, x_key)
            if xs:
                panels.setdefault(key, {})[name] = (xs, values)
    if not panels:
        raise ValueError(f"none of the runs {list(run_dirs)} logged any of the keys {list(keys)}")

    cols = min(2, len(panels))
    rows_n = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6 * cols, 3.6 * rows_n), squeeze=False)
    for ax, (key, lines) in zip(axes.flat, panels.items()):
        for name, (xs, values) in lines.items():
            ax.plot(xs, values, label=name, linewidth=1.4, color=colours[name])
        magnitudes = [abs(v) for _, values in lines.values() for v in values if v != 0]
        if magnitudes and max(magnitudes) / max(min(magnitudes), 1e-12) > 1e3:
            ax.set_yscale("symlog", linthresh=max(min(magnitudes), 1e-3))
        ax.set_title(key + (" (policy samples)" if key == "train/reward_mean" else ""))
        ax.set_xlabel("seconds of training budget" if timed else "step")
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    from flowhf.io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a kill never leaves half a figure
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
