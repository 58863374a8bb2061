"""Load rows from shipped data, local files or `datasets` specs, with strict validation.

One entry point, `load_rows`, reads any supported source into a list of plain dicts and
checks the columns the caller needs. A bad row raises `DataError` naming the source, the
row (1-based line for JSONL/CSV, 1-based record otherwise) and the key, plus how to fix it;
nothing is silently dropped.

Sources:
- shipped names: ``stackexchange:train``, ``stackexchange:test`` (or ``stackexchange`` with
  ``split=``), ``stackexchange_gold_extra:train`` / ``:test`` (`flowhf.reward_model.gold_pairs`),
  ``toxicity_probes``, ``sentiment_prompts``;
- local files: ``.jsonl``, ``.json`` (a list of objects), ``.csv``, ``.parquet``;
- ``hf:NAME[:CONFIG]`` or any other ``datasets.load_dataset`` path (``split`` defaults to train).

``columns`` maps *our* column names to the source's: ``{"prompt": "question"}`` means "our
``prompt`` is the file's ``question`` column". Mapped values are added under our name; the
source's own columns are kept too, so extra columns still reach rewards as ``**columns``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from flowhf.errors import UserError
from flowhf.io import iter_jsonl

SHIPPED_FILES = {
    "stackexchange:train": "stackexchange_train.jsonl",
    "stackexchange:test": "stackexchange_test.jsonl",
    # the gold reward model's extra rejected kinds (flowhf/reward_model/gold_pairs.py)
    "stackexchange_gold_extra:train": "stackexchange_gold_extra_train.jsonl",
    "stackexchange_gold_extra:test": "stackexchange_gold_extra_test.jsonl",
    "toxicity_probes": "toxicity_probes.jsonl",
    "sentiment_prompts": "sentiment_prompts.jsonl",
}
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# Column layout of lvwerra/stack-exchange-paired (and our shipped copy) -> preference names.
STACKEXCHANGE_PAIR_COLUMNS = {
    "prompt": "question",
    "chosen": "response_j",
    "rejected": "response_k",
}
PAIR_KEYS = ("prompt", "chosen", "rejected")
KIND_COLUMN = (
    "rejected_kind"  # what is wrong with the rejected answer (shipped pairs: truncated, rude, ...)
)

Row = dict[str, Any]


class DataError(UserError, ValueError):
    """A data source is missing, unreadable, or has a row that fails validation."""

    default_hint = "fix the data at the file and line named, or point the config at another source"


def shipped_path(name: str) -> Path:
    """Path of a shipped data file (``stackexchange:train``, ``toxicity_probes``, ...)."""
    if name not in SHIPPED_FILES:
        raise DataError(f"unknown shipped dataset {name!r}; choose one of {sorted(SHIPPED_FILES)}")
    path = Path(str(resources.files("flowhf.data") / "shipped" / SHIPPED_FILES[name]))
    if not path.is_file():
        raise DataError(
            f"shipped dataset {name!r} is missing: {path} does not exist; reinstall flowhf "
            "or regenerate the StackExchange splits with `flowhf data splits`"
        )
    return path


def load_rows(
    source: str | Path,
    *,
    columns: dict[str, str] | None = None,
    required: list[str],
    split: str | None = None,
    limit: int | None = None,
) -> list[Row]:
    """Read ``source`` into a list of dicts and check every ``required`` key is non-empty.

    ``required`` uses our names; ``columns`` says which source column feeds each of them.
    ``limit`` keeps the first N rows (only those are read and validated).
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")
    columns = dict(columns or {})
    label, raw = _open_source(source, split)
    rows: list[Row] = []
    for row_number, raw_row in raw:
        rows.append(_check_row(label, row_number, raw_row, columns, required))
        if limit is not None and len(rows) >= limit:
            break  # before reading further: rows past the limit are never parsed
    if not rows:
        raise DataError(f"{label}: no rows found; the source is empty")
    return rows


def load_prompts(
    source: str | Path,
    column: str = "prompt",
    *,
    columns: dict[str, str] | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """The ``column`` of every row as a list of strings (StackExchange: its ``question``)."""
    if columns is None and column == "prompt":
        keys = _first_row_keys(source, split)
        if (
            "prompt" not in keys and STACKEXCHANGE_PAIR_COLUMNS["prompt"] in keys
        ):  # StackExchange layout
            columns = {"prompt": STACKEXCHANGE_PAIR_COLUMNS["prompt"]}
    rows = load_rows(source, columns=columns, required=[column], split=split, limit=limit)
    return [str(row[column]) for row in rows]


def load_preference_pairs(
    source: str | Path,
    *,
    columns: dict[str, str] | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> list[dict[str, str]]:
    """Preference pairs as ``{"prompt", "chosen", "rejected"}`` dicts (plus ``"kind"`` when the
    source has a ``rejected_kind`` column: held-out accuracy is then also reported per kind).

    Without ``columns``, sources in the StackExchange layout (``question`` / ``response_j``
    preferred / ``response_k`` rejected) are mapped automatically; anything else must have
    ``prompt``/``chosen``/``rejected`` columns or pass a mapping.
    """
    if columns is None:
        keys = _first_row_keys(source, split)
        if not set(PAIR_KEYS) <= keys and set(STACKEXCHANGE_PAIR_COLUMNS.values()) <= keys:
            columns = dict(STACKEXCHANGE_PAIR_COLUMNS)
    rows = load_rows(source, columns=columns, required=list(PAIR_KEYS), split=split, limit=limit)
    return [
        {
            **{key: str(row[key]) for key in PAIR_KEYS},
            **({"kind": str(row[KIND_COLUMN])} if KIND_COLUMN in row else {}),
        }
        for row in rows
    ]


def _first_row_keys(source: str | Path, split: str | None) -> set[str]:
    """The first row's keys (the source's layout), reading that row only."""
    _, raw = _open_source(source, split)
    first = next(iter(raw), (0, {}))[1]
    if hasattr(raw, "close"):
        raw.close()  # release the file handle of the file readers
    return set(first) if isinstance(first, dict) else set()


def _check_row(
    label: str, row_number: int, raw: Any, columns: dict[str, str], required: list[str]
) -> Row:
    """Validate one raw row and add the mapped columns under our names."""
    if not isinstance(raw, dict):
        raise DataError(
            f"{label}: row {row_number}: expected an object with named fields, got {type(raw).__name__}"
        )
    row = dict(raw)
    for ours, theirs in columns.items():
        if theirs in raw:
            row[ours] = raw[theirs]
    for key in required:
        source_key = columns.get(key, key)
        mapped = f" (mapped to {key!r})" if source_key != key else ""
        if source_key not in raw:
            raise DataError(
                f"{label}: row {row_number}: missing key {source_key!r}{mapped}; the row has keys "
                f"{sorted(raw)}. Fix: rename the column to {source_key!r}, or map yours with "
                f"columns={{{key!r}: '<your column>'}}"
            )
        value = raw[source_key]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(
                f"{label}: row {row_number}: empty value for key {source_key!r}{mapped}. Fix: fill it in "
                "or remove the row (rows are never skipped silently)"
            )
    return row


def _open_source(source: str | Path, split: str | None) -> tuple[str, Iterable[tuple[int, Any]]]:
    """Resolve ``source`` to a label for messages and an iterator of (row number, raw row)."""
    text = str(source)
    if text == "stackexchange":
        if split not in ("train", "test"):
            raise DataError(
                "source 'stackexchange' needs split='train' or split='test' (or use 'stackexchange:test')"
            )
        text, split = f"stackexchange:{split}", None
    if text in SHIPPED_FILES:
        _no_split(text, split)
        path = shipped_path(text)
        return str(path), _read_jsonl(path)
    path = Path(text).expanduser()
    if path.suffix.lower() in LOCAL_SUFFIXES:
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
        _no_split(text, split)
        return str(path), _read_local(path)
    if text.startswith("hf:"):
        name, _, config = text[3:].partition(":")
        return _load_hf(name, config or None, split)
    return _load_hf(text, None, split)


def _no_split(source: str, split: str | None) -> None:
    if split is not None:
        raise DataError(
            f"{source!r} has no splits but split={split!r} was given; drop the split "
            "(or use 'stackexchange:train' / 'stackexchange:test' for the shipped pairs)"
        )


def _read_local(path: Path) -> Iterator[tuple[int, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".csv"):
        _check_utf8(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path)
    return _read_parquet(path)


def _check_utf8(path: Path) -> None:
    """A text data file that is not UTF-8 is an error naming the file, line and byte."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """One JSON object per line; blank lines are allowed, line numbers stay 1-based."""
    return iter_jsonl(path, _malformed_line)


def _malformed_line(path: Path, line_number: int, err: json.JSONDecodeError) -> DataError:
    return DataError(
        f"{path}: line {line_number}: malformed JSON ({err.msg} at column {err.colno}); "
        "each line must be one complete JSON object"
    )


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}: malformed JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None
    if not isinstance(data, list):
        raise DataError(
            f"{path}: expected a JSON list of row objects, got {type(data).__name__}; "
            "use .jsonl for one object per line"
        )
    yield from enumerate(data, start=1)


def _read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows numbered by the file line they start on (the header is line 1)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        end_of_previous = 1
        for record in reader:
            start = end_of_previous + 1
            end_of_previous = reader.line_num
            if None in record:  # more fields than header names: data would be lost
                raise DataError(
                    f"{path}: line {start}: more values than header columns {reader.fieldnames}"
                )
            yield start, record


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    yield from enumerate(table.to_pylist(), start=1)


def _load_hf(
    name: str, config: str | None, split: str | None
) -> tuple[str, Iterable[tuple[int, Any]]]:
    """Rows from ``datasets.load_dataset(name, config, split=split or "train")``."""
    import datasets

    split = split or "train"
    label = f"dataset {name!r}" + (f" config {config!r}" if config else "") + f" split {split!r}"
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # datasets raises many types; the message is what matters
        raise DataError(
            f"could not load {label}: {err}. If this was meant to be a local file, use one of "
            f"{LOCAL_SUFFIXES}; shipped names are {sorted(SHIPPED_FILES)}"
        ) from err
    return label, enumerate(dataset, start=1)
