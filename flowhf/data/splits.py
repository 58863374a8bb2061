"""Merge the StackExchange part files into the shipped train/test splits.

Run ``flowhf data splits`` (``--check`` only verifies the shipped files are up to date;
flags: `flowhf.cli.data`). The split is stratified by topic (``test_fraction`` of every topic in test) and
hash-based: questions are ranked by sha256(seed, question text), so file order never matters
and adding rows moves at most the rows at a topic's quota boundary. Rows sharing a question
(compared case- and whitespace-insensitively) land on the same side: no question leaks.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

from flowhf.data.loading import DataError, load_rows
from flowhf.io import atomic_write_text

FIELDS = ["qid", "topic", "question", "response_j", "response_k", "rejected_kind"]
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
PARTS_DIR = SHIPPED_DIR / "_parts"
PART_GLOB = "se_part*.jsonl"
TRAIN_FILE, TEST_FILE = "stackexchange_train.jsonl", "stackexchange_test.jsonl"


def read_parts(parts_dir: Path = PARTS_DIR) -> list[dict]:
    """Every row of every part file, validated (non-empty fields, unique qid, distinct answers)."""
    paths = sorted(parts_dir.glob(PART_GLOB))
    if not paths:
        raise DataError(f"no part files matching {PART_GLOB} in {parts_dir}")
    rows, seen = [], {}
    for path in paths:
        for number, row in enumerate(load_rows(path, required=FIELDS), start=1):
            where = f"{path}: row {number} (qid {row['qid']!r})"
            qid = str(row["qid"])
            if qid in seen:
                raise DataError(
                    f"{where}: duplicate qid, already used at {seen[qid]}; give it a new qid"
                )
            if _norm(row["response_j"]) == _norm(row["response_k"]):
                raise DataError(
                    f"{where}: response_j and response_k are identical; the pair carries no preference"
                )
            seen[qid] = where
            rows.append(row)
    return rows


def split_rows(
    rows: list[dict], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Stratified, hash-based train/test split; input order is kept inside each side.

    Within a topic, question groups are ranked by sha256(seed, question) and the first ones
    go to test until the topic's quota (see `_allocate`) is filled.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    groups: dict[str, list[int]] = defaultdict(list)  # normalised question -> row indices
    for index, row in enumerate(rows):
        groups[_norm(row["question"])].append(index)
    by_topic: dict[str, list[str]] = defaultdict(list)
    for question, indices in groups.items():
        by_topic[str(rows[indices[0]]["topic"])].append(question)
    sizes = {topic: sum(len(groups[q]) for q in questions) for topic, questions in by_topic.items()}
    targets = _allocate(sizes, test_fraction, seed)
    test_indices: set[int] = set()
    for topic, questions in by_topic.items():
        target, taken = targets[topic], 0
        for question in sorted(questions, key=lambda q: _rank(seed, q)):
            if taken >= target:
                break
            test_indices.update(groups[question])
            taken += len(groups[question])
    train = [_ordered(row) for i, row in enumerate(rows) if i not in test_indices]
    test = [_ordered(row) for i, row in enumerate(rows) if i in test_indices]
    return train, test


def _allocate(sizes: dict[str, int], test_fraction: float, seed: int) -> dict[str, int]:
    """Test rows per topic: floor(share) each, then the rows still needed to reach
    round(test_fraction * total) go to the topics with the largest remainders, so the overall
    test share is as close to test_fraction as whole rows allow."""
    exact = {topic: test_fraction * size for topic, size in sizes.items()}
    targets = {topic: int(value) for topic, value in exact.items()}
    missing = round(test_fraction * sum(sizes.values())) - sum(targets.values())
    by_remainder = sorted(exact, key=lambda t: (-(exact[t] - targets[t]), _rank(seed, t)))
    for topic in by_remainder[: max(missing, 0)]:
        targets[topic] += 1
    return targets


def write_splits(
    out_dir: Path = SHIPPED_DIR,
    parts_dir: Path = PARTS_DIR,
    test_fraction: float = 0.2,
    seed: int = 0,
    check: bool = False,
) -> dict[str, int]:
    """Build the splits from the parts and write them (or, with ``check``, compare only)."""
    train, test = split_rows(read_parts(parts_dir), test_fraction, seed)
    _assert_disjoint(train, test)
    outputs = {out_dir / TRAIN_FILE: train, out_dir / TEST_FILE: test}
    for path, rows in outputs.items():
        write_or_check(path, rows, check, "flowhf data splits")
    return {"train": len(train), "test": len(test)}


def write_or_check(path: Path, rows: list[dict], check: bool, command: str) -> None:
    """Write ``rows`` as JSONL to ``path`` or, with ``check``, only compare: a file that differs
    from what ``command`` would write is an error saying to run it."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if not check:
        atomic_write_text(path, text)
    elif not path.is_file() or path.read_text(encoding="utf-8") != text:
        raise DataError(f"{path} is stale or missing; regenerate it with `{command}`")


def topic_counts(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[str(row["topic"])] += 1
    return dict(sorted(counts.items()))


def _assert_disjoint(train: list[dict], test: list[dict]) -> None:
    shared = {_norm(r["question"]) for r in train} & {_norm(r["question"]) for r in test}
    if shared:  # cannot happen with grouping; kept as a guard against future edits
        raise DataError(
            f"{len(shared)} question(s) appear in both splits, e.g. {next(iter(shared))[:80]!r}"
        )


def _norm(text: str) -> str:
    """Whitespace- and case-insensitive form used to detect the same question twice."""
    return " ".join(str(text).split()).lower()


def _rank(seed: int, question: str) -> str:
    return hashlib.sha256(f"{seed}\x00{question}".encode()).hexdigest()


def _ordered(row: dict) -> dict:
    """Canonical field order first, any extra fields after."""
    return {
        **{key: row[key] for key in FIELDS},
        **{k: v for k, v in row.items() if k not in FIELDS},
    }
