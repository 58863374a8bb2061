"""Reading run logs back: JSONL rows, a run's metrics, and cutting logs back to a step on resume."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from flowhf.io import atomic_path, read_jsonl


def read_metrics(run: str | os.PathLike, required: tuple[str, ...] = ()) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` (FlowHF or TRL baseline); ``run`` is the run
    folder or the file itself. The one reader of the format `MetricsLogger` writes."""
    path = Path(run)
    if path.is_dir() or not path.suffix:
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no metrics.jsonl; is {run} a FlowHF or baseline run directory?"
        )
    return read_jsonl(path, required)


def cut_logs_back(output_dir: str | os.PathLike, step: int) -> dict[str, int]:
    """Drop the rows logged after ``step`` (a resumed run's checkpoint step) from metrics.jsonl,
    metrics.csv, histograms.jsonl and skipped_steps*.jsonl; a torn last line of a killed write
    goes too. Files are rewritten by rename. Returns {file: rows dropped}."""
    folder, dropped = Path(output_dir), {}
    for path in [
        folder / "metrics.jsonl",
        folder / "histograms.jsonl",
        *sorted(folder.glob("skipped_steps*.jsonl")),
    ]:
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
            dropped[path.name] = _rewrite_if(
                path, lines, kept, "".join(f"{line}\n" for line in kept)
            )
    csv_path = folder / "metrics.csv"
    if csv_path.is_file() and csv_path.stat().st_size:
        with csv_path.open(newline="") as fh:
            reader = csv.reader(fh)
            header, rows = next(reader), list(reader)
        kept = [r for r in rows if len(r) == len(header) and _is_at_most(r[0], step)]
        out = [header, *kept]
        dropped["metrics.csv"] = _rewrite_if(csv_path, rows, kept, None, out)
    return {k: v for k, v in dropped.items() if v}


def _step_of(line: str) -> int | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row.get("step") if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def _is_at_most(text: str, step: int) -> bool:
    try:
        return float(text) <= step
    except ValueError:
        return False


def _rewrite_if(
    path: Path, before: list, kept: list, text: str | None, csv_rows: list | None = None
) -> int:
    if len(kept) == len(before):
        return 0
    with atomic_path(path) as tmp:
        if csv_rows is not None:
            with tmp.open("w", newline="") as fh:
                csv.writer(fh).writerows(csv_rows)
        else:
            tmp.write_text(text, encoding="utf-8")
    return len(before) - len(kept)
