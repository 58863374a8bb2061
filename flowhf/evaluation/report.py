"""Writers for the evaluation outputs: report.md, metrics.json, completions.jsonl.

``report.md`` follows the report's layout: Table 1 (StackExchange) or Table 2 (toxicity)
with the columns ``Model | Mean Reward | Std Reward | Top K Mean | Top K Std | Diversity |
Novelty``, each cell with its 95% bootstrap interval when one was computed, then a table of
extra metrics and the Welch one-sided t-tests against the baseline.

A *result* is one model's dict: ``{"model": name, "metrics": {key: value},
"ci": {key: [low, high]}, ...}`` (the runner adds n, k and the paths it wrote).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowhf.io import atomic_path, atomic_write_text

MAIN_COLUMNS = (
    ("Mean Reward", "mean_reward"),
    ("Std Reward", "std_reward"),
    ("Top K Mean", "topk_mean"),
    ("Top K Std", "topk_std"),
    ("Diversity", "diversity"),
    ("Novelty", "novelty"),
)
EXTRA_COLUMNS = (
    ("Diversity (all n)", "diversity_all"),
    ("Distinct-1", "distinct_1"),
    ("Distinct-2", "distinct_2"),
    ("Mean Length (text re-tokenised)", "mean_length"),
    ("EOS rate", "eos_rate"),
    ("Corr(reward, length)", "corr_reward_length"),
    ("KL / token", "kl_per_token"),
)
PER_PROMPT_COLUMNS = (
    ("Reward", "pp_reward"),
    ("Pairwise distance", "pp_pairwise_distance"),
    ("Distinct answers", "pp_distinct_answers"),
    ("Distinct-1", "pp_distinct_1"),
    ("Distinct-2", "pp_distinct_2"),
    ("EOS rate", "pp_eos_rate"),
    ("Generated tokens", "pp_mean_length"),
)
_TABLE_TITLES = {
    "stackexchange": "Table 1: StackExchange",
    "toxicity": "Table 2: Toxicity",
}


def format_cell(value: Any, ci: Sequence[float] | None = None, digits: int = 3) -> str:
    """``value [low, high]``; ``n/a`` for a missing or nan value (e.g. novelty without D0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.{digits}f}"
    if ci is not None and len(ci) == 2 and all(c is not None and math.isfinite(c) for c in ci):
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a markdown table: the header row, the rule, one line per row of cells."""
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(cells) + " |" for cells in rows),
    ]


def _table(results: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> list[str]:
    def cells(res: Mapping[str, Any]) -> list[str]:
        metrics, cis = res.get("metrics", {}), res.get("ci", {}) or {}
        return [res["model"], *(format_cell(metrics.get(key), cis.get(key)) for _, key in columns)]

    return markdown_table(["Model", *(title for title, _ in columns)], map(cells, results))


def _test_line(test: Mapping[str, Any]) -> str:
    relation = {"greater": ">", "less": "<", "two-sided": "!="}[test.get("alternative", "greater")]
    return (
        f"- {test['model']} vs {test['baseline']} ({test.get('metric', 'reward')}, "
        f"H1: mean {relation} baseline): t = {test['t']:.3f}, df = {test['df']:.1f}, "
        f"p = {test['p']:.3g}"
    )


@dataclass
class ReportInfo:
    """What report.md says beside the results: the task (its table title), n and K, the baseline
    and the t-tests against it, free notes."""

    task: str
    baseline: str | None = None
    tests: Sequence[Mapping[str, Any]] = ()
    n: int | None = None
    k: int | None = None
    notes: Sequence[str] = ()


_MAIN_NOTE = (
    "Cells: estimate [95% percentile bootstrap interval over completions]. Std columns are "
    "population std (ddof=0). Diversity: mean pairwise cosine distance of the top-K "
    "completions' embeddings (i != j); Novelty: mean over the top K of the minimum cosine "
    "distance to the training completions D0 (n/a without D0). Mean Length is the report's: the "
    "decoded text re-tokenised, EOS not counted; the other tables count the generated tokens, EOS included."
)
_PER_PROMPT_NOTE = (
    "k answers to each of the same prompts at the training "
    "temperature (`flowhf.evaluation.per_prompt`); cells: mean over prompts [95% bootstrap interval "
    "over prompts]."
)


def write_report_md(
    results: Sequence[Mapping[str, Any]], path: str | os.PathLike, info: ReportInfo
) -> Path:
    """Write the report-layout markdown tables for ``results`` (one entry per model)."""
    if not results:
        raise ValueError("write_report_md needs at least one model result")
    title = _TABLE_TITLES.get(info.task, f"Table: {info.task}")
    setting = ", ".join(
        s for s in (f"n = {info.n}" if info.n else "", f"K = {info.k}" if info.k else "") if s
    )
    lines = [f"# Evaluation: {info.task}", "", f"## {title}" + (f" ({setting})" if setting else "")]
    lines += ["", *_table(results, MAIN_COLUMNS), "", _MAIN_NOTE, "", "## Extra metrics", ""]
    judges = _judge_keys(results)
    lines += _table(
        results, EXTRA_COLUMNS + tuple((f"{key[:-7].title()} reward", key) for key in judges)
    )
    if any("pp_pairwise_distance" in r.get("metrics", {}) for r in results):
        lines += ["", "## Per-prompt diversity", "", _PER_PROMPT_NOTE, ""]
        lines += _table(
            results,
            PER_PROMPT_COLUMNS
            + tuple((f"{key[:-7].title()} reward", f"pp_{key}") for key in judges),
        )
    tests = list(info.tests or [])
    if info.baseline is not None or tests:
        lines += ["", f"## Welch one-sided t-tests vs baseline ({info.baseline or 'n/a'})", ""]
        lines += [_test_line(t) for t in tests] or ["- no other model to compare"]
    if info.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in info.notes]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, "\n".join(lines) + "\n")  # a kill never leaves half a report


def _judge_keys(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The judges' metric keys (``NAME_reward``) of any result, sorted."""
    return sorted(
        {
            key
            for r in results
            for key in r.get("metrics", {})
            if key.endswith("_reward") and not key.startswith("pp_")
        }
        - {key for _, key in MAIN_COLUMNS}
    )


def jsonable(value: Any) -> Any:
    """nan / inf become null so metrics.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return jsonable(value.item())
    return value


def write_metrics_json(payload: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` (config + per-model results) as indented strict JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n")


def write_completions_jsonl(records: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """One JSON object per completion: model, prompt, completion, reward (+ any extras)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:  # never half a file
        for rec in records:
            missing = [key for key in ("model", "prompt", "completion", "reward") if key not in rec]
            if missing:
                raise ValueError(f"completion record lacks {missing}: {dict(rec)!r}")
            fh.write(json.dumps(jsonable(dict(rec)), ensure_ascii=False) + "\n")
    return path


def read_completions_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records written by ``write_completions_jsonl``; a bad line names file and line."""
    from flowhf.io import read_jsonl

    return read_jsonl(path, required=("model", "reward"))
