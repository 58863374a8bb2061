"""The training prompts: any dataset a TRL script passes, read once and checked row by row.

`train_dataset` may be a `datasets.Dataset`, an `IterableDataset` (read once into memory;
``data.limit`` caps it), a list of dicts or any iterable of mappings; without one, the rows
come from ``data.dataset`` (`flowhf.data.loading`). A prompt is a text or TRL's
conversational format, a list of ``{"role", "content"}`` messages; one format per dataset.
Every other column reaches TRL-style reward functions by name (`reward_columns`), as TRL
passes them, except ``completion`` / ``completion_ids``, which TRL leaves out too.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from flowhf.data.loading import DataError, load_rows
from flowhf.rewards.functions import RESERVED
from flowhf.sampling.prompts import is_conversation

NOT_PASSED = (
    "completion",
    "completion_ids",
)  # columns TRL does not pass to reward functions either


def training_rows(train_dataset: Any, cfg) -> list[dict]:
    """The rows to train on (see the module docstring), checked."""
    data = cfg.data
    if train_dataset is None:
        rows = load_rows(
            data.dataset, required=[data.prompt_column], split=data.split, limit=data.limit
        )
    else:
        rows = read_dataset(train_dataset, data.limit)
    check_rows(rows, cfg)
    return rows


def read_dataset(dataset: Any, limit: int | None) -> list[dict]:
    """Rows of a Dataset / IterableDataset / list / iterable of mappings, the first ``limit`` ones."""
    if isinstance(dataset, (str, bytes, Mapping)):
        raise DataError(
            f"train_dataset must be rows (a datasets.Dataset, an IterableDataset or a list of dicts), "
            f"got {type(dataset).__name__}",
            "to read a file or a hub dataset, set data.dataset instead",
        )
    try:
        rows = list(itertools.islice(iter(dataset), limit))
    except TypeError:
        raise DataError(
            f"train_dataset must be rows (a datasets.Dataset, an IterableDataset or a list of dicts), "
            f"got {type(dataset).__name__}"
        ) from None
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(
                f"train_dataset row {i + 1}: expected a dict of columns, got {type(row).__name__}",
                "give each row as {'prompt': ..., <other columns>}",
            )
    return [dict(row) for row in rows]


def check_rows(rows: list[dict], cfg) -> None:
    """Every row has a prompt (text or messages, one format for all), the columns the config
    names, and no column named like a keyword the trainer passes to reward functions."""
    col, sampling = cfg.data.prompt_column, cfg.sampling
    if not rows:
        raise DataError("the training dataset has no rows", "give at least one prompt")
    first_is_chat = is_conversation(rows[0].get(col))
    for i, row in enumerate(rows):
        _check_prompt(i + 1, row.get(col), col, first_is_chat)
        if sampling.offpolicy_fraction > 0 and not row.get(sampling.offpolicy_column):
            raise DataError(
                f"dataset row {i + 1}: missing off-policy column {sampling.offpolicy_column!r} "
                "(sampling.offpolicy_column)"
            )
    columns = reward_columns(rows, col)
    clash = [c for c in columns if c in RESERVED]
    if clash:
        raise DataError(
            f"dataset column {clash[0]!r} has the name of a keyword reward functions receive "
            f"({', '.join(RESERVED)})",
            f"rename the column {clash[0]!r}",
        )
    missing = [c for c in cfg.data.reward_columns or [] if c not in columns]
    if missing:
        raise DataError(
            f"data.reward_columns names {missing[0]!r}, which no dataset row has; the columns are "
            f"{columns}",
            "fix data.reward_columns or the dataset",
        )


def _check_prompt(number: int, prompt: Any, col: str, chat: bool) -> None:
    if chat != is_conversation(prompt):
        kinds = ("a list of chat messages", "a text")
        raise DataError(
            f"dataset row {number}: prompt column {col!r} is {kinds[not is_conversation(prompt)]} but row 1's "
            f"is {kinds[not chat]}",
            "give every prompt in one format",
        )
    if chat:
        for m, message in enumerate(prompt):
            if not isinstance(message.get("content"), (str, list)) or not isinstance(
                message.get("role"), str
            ):
                raise DataError(
                    f"dataset row {number}: prompt message {m + 1} is {message!r:.80}; a message is "
                    "{'role': 'user', 'content': '...'}"
                )
    elif not isinstance(prompt, str) or not prompt.strip():
        raise DataError(
            f"dataset row {number}: missing or empty prompt column {col!r}",
            "set data.prompt_column",
        )


def reward_columns(rows: list[dict], prompt_column: str) -> list[str]:
    """Every column but the prompt (and TRL's `NOT_PASSED`), in first-seen order: what
    reward functions receive as keywords (a row without one gives None)."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(k for k in row if k != prompt_column and k not in NOT_PASSED))
    return list(seen)
