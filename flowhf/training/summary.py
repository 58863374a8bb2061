"""After a run: a curves PNG and a short text summary from the run's metrics.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

from flowhf.training.logging import read_metrics

CURVE_KEYS = ("train/reward_mean", "train/kl_per_token", "train/log_z", "train/loss")


def plot_run_curves(run_dir: str | Path, keys=CURVE_KEYS, smooth: int = 10) -> Path:
    """Plot `keys` against the step (raw and a moving average) into <run_dir>/curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2))
    for ax, key in zip(axes, keys):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, alpha=0.35, lw=1)
            if len(ys) >= smooth:
                avg = [
                    sum(ys[max(0, i - smooth + 1) : i + 1])
                    / len(ys[max(0, i - smooth + 1) : i + 1])
                    for i in range(len(ys))
                ]
                ax.plot(xs, avg, lw=2)
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    from flowhf.io import atomic_path

    out = Path(run_dir) / "curves.png"
    with atomic_path(out) as tmp:  # a kill never leaves half a figure
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return out


def write_run_summary(run_dir: str | Path, window: int = 10) -> str:
    """First/last-window means of the key metrics, written to summary.json and returned as text."""
    rows = read_metrics(run_dir)

    def mean(key, part):
        vals = [
            r[key] for r in part if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
        ]
        return sum(vals) / len(vals) if vals else float("nan")

    first, last = rows[:window], rows[-window:]
    summary = {
        "steps": rows[-1]["step"] if rows else 0,
        "seconds": sum(r.get("train/step_time") or 0 for r in rows),
        **{f"first/{k}": mean(k, first) for k in CURVE_KEYS},
        **{f"last/{k}": mean(k, last) for k in CURVE_KEYS},
        "skipped_steps": rows[-1].get("train/skipped_steps", 0) if rows else 0,
    }
    png = plot_run_curves(run_dir)
    summary["curves_png"] = str(png)
    hist = Path(run_dir) / "histograms.jsonl"
    if hist.is_file() and hist.stat().st_size:
        from flowhf.training.logging import plot_histograms

        summary["histograms_png"] = str(plot_histograms(hist, Path(run_dir) / "histograms.png"))
    from flowhf.io import atomic_write_text

    atomic_write_text(Path(run_dir) / "summary.json", json.dumps(summary, indent=1))
    lines = [f"run {run_dir}: {summary['steps']} steps, {summary['seconds']:.0f} s of training"]
    for k in CURVE_KEYS:
        lines.append(
            f"  {k:<22} first {window}: {summary['first/' + k]:>9.4f}   last {window}: {summary['last/' + k]:>9.4f}"
        )
    lines.append(f"  curves: {png}")
    if "histograms_png" in summary:
        lines.append(f"  log-prob / flow histograms: {summary['histograms_png']}")
    return "\n".join(lines)
