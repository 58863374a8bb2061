"""Evaluation inputs of the report's two tasks, and of user-supplied files.

- ``stackexchange``: prompts are the test-split questions; D0 (for novelty) is the
  train-split preferred answers ``response_j``; the default reward is the StackExchange reward
  model (``stackexchange-rm``, trained on first use and cached).
- ``toxicity``: prompts are the shipped toxicity probes; no D0 unless given (novelty is
  then n/a); the default reward is ``toxicity``.

Prompt and reference files go through ``flowhf.data.load_rows`` (JSONL / JSON / CSV /
Parquet / ``hf:`` specs, validated row by row); a ``.txt`` file holds one text per line.
The other columns of the prompt rows are handed to the reward as ``**columns``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowhf.errors import ConfigError

TASKS = ("stackexchange", "toxicity")
DEFAULT_REWARDS = {"toxicity": "toxicity", "stackexchange": "stackexchange-rm"}


@dataclass
class TaskInputs:
    """Prompts (with their extra columns for the reward) and optional D0 completions."""

    prompts: list[str]
    reward_columns: dict[str, list[Any]] = field(default_factory=dict)
    reference_completions: list[str] | None = None
    prompt_source: str = ""
    reference_source: str | None = None


def evenly_spaced(total: int, n: int) -> list[int]:
    """``min(n, total)`` indices spread evenly over ``range(total)``: a subset of a file ordered
    by topic (the shipped StackExchange test split) still covers every topic."""
    n = min(n, total)
    return [(i * total) // n for i in range(n)]


def spread(inputs: TaskInputs, n: int) -> TaskInputs:
    """The evenly spaced ``n`` prompts of ``inputs`` (and their reward columns)."""
    keep = evenly_spaced(len(inputs.prompts), n)
    columns = {key: [values[i] for i in keep] for key, values in inputs.reward_columns.items()}
    return TaskInputs(
        [inputs.prompts[i] for i in keep],
        columns,
        inputs.reference_completions,
        inputs.prompt_source,
        inputs.reference_source,
    )


def _read_txt(path: Path) -> list[str]:
    """Non-blank lines of a text file; a blank line inside the file is an error (no silent drop)."""
    from flowhf.data.loading import DataError

    if not path.is_file():
        raise DataError(f"text file {path} does not exist", "check the path")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not UTF-8 text (byte {err.start})", "save the file as UTF-8"
        ) from None
    while lines and not lines[-1].strip():
        lines.pop()
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise DataError(f"{path}, line {blank[0]}: blank line", "remove it (one text per line)")
    if not lines:
        raise DataError(f"{path}: no text lines", "one text per line")
    return lines


def read_texts(source: str, column: str) -> tuple[list[str], dict[str, list[Any]]]:
    """Texts of ``column`` in ``source`` and the other columns shared by every row."""
    if source.endswith(".txt"):
        return _read_txt(Path(source)), {}
    from flowhf.data import load_rows

    columns = (
        {column: "question"}
        if source.split(":")[0] == "stackexchange" and column == "prompt"
        else None
    )
    rows = load_rows(source, columns=columns, required=[column])
    shared = set(rows[0]).intersection(*rows[1:]) - {column}
    extras = {key: [row[key] for row in rows] for key in sorted(shared)}
    return [str(row[column]) for row in rows], extras


def task_inputs(
    task: str,
    prompts_source: str | None = None,
    reference_source: str | None = None,
    prompt_column: str = "prompt",
    reference_column: str | None = None,
) -> TaskInputs:
    """Prompts and D0 of ``task``, each overridable by a file / dataset spec."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {TASKS}")
    default_prompts = "stackexchange:test" if task == "stackexchange" else "toxicity_probes"
    prompt_src = prompts_source or default_prompts
    prompts, extras = read_texts(prompt_src, prompt_column)

    ref_src = reference_source
    ref_col = reference_column or "completion"
    if ref_src is None and task == "stackexchange":
        ref_src, ref_col = "stackexchange:train", reference_column or "response_j"
    reference = read_texts(ref_src, ref_col)[0] if ref_src else None
    return TaskInputs(prompts, extras, reference, prompt_src, ref_src)
