"""Merge several evaluation output dirs into one report and one score-distribution figure.

Each dir holds the ``metrics.json`` and ``completions.jsonl`` written by ``evaluate_models``
(for example one ``flowhf eval`` per trained model). The per-model rows are taken from the
metrics files as they are; the rewards for the figure and the t-tests come from the
completions files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flowhf.errors import InputError
from flowhf.evaluation.plots import plot_score_distributions
from flowhf.evaluation.report import ReportInfo, read_completions_jsonl, write_report_md
from flowhf.evaluation.stats import welch_one_sided

EVAL_HINT = "pass the folders `flowhf eval` wrote (each holds metrics.json and completions.jsonl)"


def load_evaluation(directory: str | os.PathLike) -> dict[str, Any]:
    """metrics.json of one evaluation dir plus its rewards per model from completions.jsonl."""
    directory = Path(directory)
    metrics_path = directory / "metrics.json"
    if not metrics_path.is_file():
        raise InputError(
            f"{metrics_path} not found: {directory} is not an evaluation folder", EVAL_HINT
        )
    try:
        payload = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(
            f"{metrics_path}: not valid JSON ({err})",
            EVAL_HINT + "; rerun `flowhf eval` for this one",
        ) from None
    for key in ("task", "models"):
        if not isinstance(payload, dict) or key not in payload:
            raise InputError(
                f"{metrics_path}: missing key {key!r} (not a metrics.json of `flowhf eval`)",
                EVAL_HINT,
            )
    rewards: dict[str, list[float]] = {}
    for rec in read_completions_jsonl(directory / "completions.jsonl"):
        rewards.setdefault(rec["model"], []).append(float(rec["reward"]))
    for res in payload["models"]:
        if res["model"] not in rewards:
            raise InputError(
                f"{directory / 'completions.jsonl'} has no completions of model {res['model']!r}",
                "the folder's metrics.json and completions.jsonl come from different runs: rerun `flowhf eval`",
            )
    payload["rewards"] = rewards
    return payload


def compare_evaluations(
    dirs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    baseline: str | None = None,
) -> dict[str, Path]:
    """Write one merged report.md at ``output`` and ``<stem>_score_distributions.png`` beside it.

    All dirs must come from the same task. A model name seen in two dirs is an error (rename
    the models or compare the dirs separately), so no result is silently overwritten.
    """
    if not dirs:
        raise InputError("compare_evaluations needs at least one evaluation dir", EVAL_HINT)
    evaluations = [(Path(d), load_evaluation(d)) for d in dirs]
    tasks = {ev["task"] for _, ev in evaluations}
    if len(tasks) != 1:
        raise InputError(
            f"evaluations come from different tasks {sorted(tasks)}", "compare one task at a time"
        )
    results, scores, origin = [], {}, {}
    for directory, ev in evaluations:
        for res in ev["models"]:
            name = res["model"]
            if name in origin:
                raise InputError(
                    f"model {name!r} appears in both {origin[name]} and {directory}",
                    "rename the model in one of the evaluations, or compare the folders separately",
                )
            origin[name] = directory
            results.append(res)
            scores[name] = np.asarray(ev["rewards"][name])
    if baseline is not None and baseline not in scores:
        raise InputError(
            f"--baseline {baseline!r} is not among the compared models {list(scores)}",
            "give one of those names (as passed to `flowhf eval --model`)",
        )
    tests = [
        {
            "model": name,
            "baseline": baseline,
            "metric": "reward",
            **welch_one_sided(s, scores[baseline]),
        }
        for name, s in scores.items()
        if baseline is not None and name != baseline
    ]
    settings = {(ev.get("n"), ev.get("k")) for _, ev in evaluations}
    notes = [f"{name}: from {origin[name]}" for name in scores]
    if len(settings) > 1:
        notes.append(f"the evaluations used different (n, K) settings: {sorted(settings, key=str)}")
    n, k = next(iter(settings)) if len(settings) == 1 else (None, None)
    task = tasks.pop()
    output = Path(output)
    report = write_report_md(results, output, ReportInfo(task, baseline, tests, n, k, notes))
    figure = plot_score_distributions(
        scores,
        output.with_name(f"{output.stem}_score_distributions.png"),
        title=f"Reward distributions ({task})",
    )
    return {"report": report, "score_distributions": figure}
