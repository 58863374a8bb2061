"""Metric logging for training runs: JSONL + CSV always at hand, TensorBoard / W&B when installed.

Files written under `output_dir`:
- `metrics.jsonl`: one object per `log` call, `{"step", "time", <metrics>}`. Non-finite values are
  written as JSON `null` (strict JSON readers reject NaN/Infinity tokens, and strings would turn a
  numeric column into text); the object then also carries `"nonfinite": {key: "nan"|"inf"|"-inf"}`
  so nothing is lost. The key is present only when some value was non-finite.
- `metrics.csv`: header `step,time,<keys in first-seen order>`. When a key appears for the first
  time, the file is rewritten with the wider header (atomically, via a temporary file), so the CSV
  is valid at every moment of a run, including after a crash. Missing values are empty cells;
  non-finite values are `nan`, `inf`, `-inf` (pandas reads them as floats). Keys changing is rare,
  so the rewrite cost is paid a handful of times per run.
- `histograms.jsonl`: `{"step", "name", "bin_edges", "counts", "count", "nonfinite"}` per histogram
  (the per-token log-prob and flow distributions of the FlowHF report's Figure 2);
  `plot_histograms` turns it into a PNG.
Resuming into the same folder first cuts every log back to the checkpoint's step
(`cut_logs_back`; TensorBoard through ``purge_step``), then appends and keeps the CSV columns,
so an interrupted and resumed run has the same rows as an uninterrupted one.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

BACKENDS = ("jsonl", "csv", "tensorboard", "wandb")


def check_metric_key(key: object) -> str:
    """Metric keys must be namespaced (`train/loss`): a clear error instead of a mixed-up dashboard."""
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) < 2 or any(not p or p != p.strip() for p in parts):
        raise ValueError(
            f"metric key {key!r} is not namespaced: use '<namespace>/<name>', e.g. 'train/loss' or 'eval/diversity'"
        )
    return key


def to_float(key: str, value: object) -> float:
    """A Python float from a number, 0-d/1-element tensor or numpy scalar."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        n = value.numel() if isinstance(value, torch.Tensor) else value.size
        if n != 1:
            raise ValueError(
                f"metric {key!r}: expected a single number, got an array of shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"metric {key!r}: expected a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"metric {key!r}: expected a number, got {type(value).__name__}") from err


def nonfinite_label(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def optional_import(module: str, backend: str):
    """Import `module` or warn once (per logger) that `backend` is skipped."""
    try:
        return importlib.import_module(module)
    except ImportError:
        warnings.warn(
            f"report_to includes {backend!r} but `{module}` cannot be imported; skipping {backend} "
            f"logging (pip install {backend} to enable it)",
            stacklevel=3,
        )
        return None


class CsvWriter:
    """Appends rows to a CSV whose header grows when new keys appear (rewritten atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = ["step", "time"]
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                self.columns = next(csv.reader(f))  # resume: keep the existing columns
        else:
            self._rewrite([])
        self._file = path.open("a", newline="")

    def _rewrite(self, rows: list[dict]) -> None:
        from flowhf.io import atomic_path

        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            self._file.close()
            with self.path.open(newline="") as f:
                old_rows = list(csv.DictReader(f))
            self.columns += new
            self._rewrite(old_rows)
            self._file = self.path.open("a", newline="")
        csv.DictWriter(self._file, fieldnames=self.columns, restval="").writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class MetricsLogger:
    """Logs namespaced scalar metrics (and optional histograms) to files and dashboards.

    Args:
        output_dir: folder for metrics.jsonl / metrics.csv / histograms.jsonl / tensorboard/.
        report_to: any of "jsonl", "csv", "tensorboard", "wandb". TensorBoard and W&B are used
            only when importable; otherwise a warning is shown once and they are skipped.
        run_name: TensorBoard sub-folder and W&B run name.
        histogram_every: log histograms every this many steps (0 disables them).
        wandb_project / config: W&B project and run config (ignored without wandb).
        purge_step: on resume, TensorBoard drops its events from this step on.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        report_to: Iterable[str] = ("jsonl", "csv"),
        run_name: str | None = None,
        histogram_every: int = 0,
        wandb_project: str | None = None,
        config: Mapping | None = None,
        purge_step: int | None = None,
    ) -> None:
        self.report_to = [report_to] if isinstance(report_to, str) else list(report_to)
        unknown = [b for b in self.report_to if b not in BACKENDS]
        if unknown:
            raise ValueError(
                f"report_to has unknown backend(s) {unknown}; choose from {list(BACKENDS)}"
            )
        if histogram_every < 0:
            raise ValueError(
                f"histogram_every must be >= 0 (0 disables histograms), got {histogram_every}"
            )
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.histogram_every = histogram_every
        self._jsonl = (
            (self.output_dir / "metrics.jsonl").open("a") if "jsonl" in self.report_to else None
        )
        self._csv = CsvWriter(self.output_dir / "metrics.csv") if "csv" in self.report_to else None
        self._hist_file = None  # opened on first histogram
        self._tb = None
        if "tensorboard" in self.report_to:
            module = optional_import("torch.utils.tensorboard", "tensorboard")
            if module is not None:
                log_dir = self.output_dir / "tensorboard" / (run_name or "")
                self._tb = module.SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        self._wandb = None
        if "wandb" in self.report_to:
            self._wandb = optional_import("wandb", "wandb")
            if (
                self._wandb is not None and self._wandb.run is None
            ):  # respect a run the user started
                self._wandb.init(
                    project=wandb_project,
                    name=run_name,
                    dir=str(self.output_dir),
                    config=dict(config or {}),
                )
        self._closed = False

    def log(self, step: int, metrics: Mapping[str, object]) -> None:
        """Record `metrics` (namespaced key -> number) at `step` in every enabled backend."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        step = int(step)
        values = {}
        for key, value in metrics.items():
            check_metric_key(key)
            values[key] = to_float(key, value)
        nonfinite = {k: nonfinite_label(v) for k, v in values.items() if not math.isfinite(v)}
        now = time.time()
        if self._jsonl is not None:
            record = {
                "step": step,
                "time": now,
                **{k: (None if k in nonfinite else v) for k, v in values.items()},
            }
            if nonfinite:
                record["nonfinite"] = nonfinite
            self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
            self._jsonl.flush()
        if self._csv is not None:
            self._csv.write({"step": step, "time": now, **values})  # csv writes nan/inf/-inf
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)

    def should_log_histograms(self, step: int) -> bool:
        return self.histogram_every > 0 and step % self.histogram_every == 0

    def log_histograms(
        self, step: int, tensors: Mapping[str, torch.Tensor], bins: int = 50
    ) -> bool:
        """Histogram each tensor's values if `step` is a histogram step. Returns whether it logged.

        Pass only real entries (e.g. `log_pf[mask.bool()]`): padding would pile up at 0.
        Non-finite values are left out of the bins and counted in the record's `nonfinite`.
        """
        if not self.should_log_histograms(step):
            return False
        if self._hist_file is None:
            self._hist_file = (self.output_dir / "histograms.jsonl").open("a")
        for name, tensor in tensors.items():
            check_metric_key(name)
            values = torch.as_tensor(tensor).detach().float().cpu().reshape(-1).numpy()
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                warnings.warn(
                    f"log_histograms: {name!r} has no finite values at step {step}; histogram skipped",
                    stacklevel=2,
                )
                continue
            counts, edges = np.histogram(finite, bins=bins)
            record = {
                "step": int(step),
                "name": name,
                "bin_edges": [float(f"{e:.6g}") for e in edges],
                "counts": counts.tolist(),
                "count": int(finite.size),
                "nonfinite": int(values.size - finite.size),
            }
            self._hist_file.write(json.dumps(record) + "\n")
            if self._tb is not None:
                self._tb.add_histogram(name, finite, step)
            if self._wandb is not None:
                self._wandb.log(
                    {name: self._wandb.Histogram(np_histogram=(counts, edges))}, step=step
                )
        self._hist_file.flush()
        return True

    def close(self) -> None:
        """Flush and close every backend (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for handle in (self._jsonl, self._hist_file, self._csv):
            if handle is not None:
                handle.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None and self._wandb.run is not None:
            self._wandb.finish()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_histograms(path: str | os.PathLike) -> list[dict]:
    """Records of a histograms.jsonl file, with the line number in errors."""
    return read_jsonl(path, required=("step", "name", "bin_edges", "counts"))


def plot_histograms(
    histograms_jsonl: str | os.PathLike, png_path: str | os.PathLike, max_steps: int = 4
) -> Path:
    """One panel per histogram name, overlaying the densities at up to `max_steps` steps
    spread evenly over the run (first and last included), as in the FlowHF report's Figure 2."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg without touching pyplot state
    from matplotlib.figure import Figure

    records = read_histograms(histograms_jsonl)
    if not records:
        raise ValueError(f"{histograms_jsonl}: no histogram records to plot")
    names = list(dict.fromkeys(r["name"] for r in records))
    fig = Figure(figsize=(5 * len(names), 3.6))
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        by_step = {r["step"]: r for r in records if r["name"] == name}
        steps = sorted(by_step)
        picks = sorted(
            {
                steps[round(j * (len(steps) - 1) / max(max_steps - 1, 1))]
                for j in range(min(max_steps, len(steps)))
            }
        )
        for step in picks:
            edges = np.asarray(by_step[step]["bin_edges"], dtype=float)
            counts = np.asarray(by_step[step]["counts"], dtype=float)
            density = counts / max(counts.sum(), 1.0) / np.diff(edges)  # comparable across steps
            ax.stairs(density, edges, label=f"step {step}")
        ax.set_title(name)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    from flowhf.io import atomic_path

    with atomic_path(png_path) as tmp:  # a kill never leaves half a figure
        fig.savefig(tmp, dpi=110)
    return png_path


class ProgressBar:
    """tqdm bar over optimisation steps showing a few key metrics.

    Disabled when `disable=True` or when the output stream is not a TTY (log files stay clean).
    `initial` supports resuming: the bar starts at the restored step.
    """

    def __init__(
        self,
        total_steps: int,
        keys: Iterable[str] = ("train/loss", "train/reward_mean", "train/log_z"),
        initial: int = 0,
        disable: bool = False,
        file=None,
    ) -> None:
        from tqdm import tqdm

        stream = file if file is not None else sys.stderr
        self.keys = tuple(keys)
        self.disabled = bool(disable) or not (hasattr(stream, "isatty") and stream.isatty())
        self._bar = tqdm(
            total=total_steps,
            initial=initial,
            disable=self.disabled,
            file=stream,
            dynamic_ncols=True,
            desc="FlowHF",
        )

    def update(self, step: int, metrics: Mapping[str, object] | None = None) -> None:
        """Move the bar to absolute `step` (not an increment) and show the tracked metrics."""
        if self.disabled:
            return
        metrics = metrics or {}
        shown = {
            k.split("/")[-1]: f"{to_float(k, metrics[k]):.4g}" for k in self.keys if k in metrics
        }
        if shown:
            self._bar.set_postfix(shown, refresh=False)
        self._bar.update(step - self._bar.n)

    def postfix(self) -> str:
        return "" if self.disabled else str(self._bar.postfix or "")

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Reading back lives in log_files.py; these names stay importable from here.
from flowhf.training.log_files import cut_logs_back, read_jsonl, read_metrics  # noqa: E402,F401
