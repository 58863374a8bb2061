"""Data loading (every source type, column mapping, each error path) and the StackExchange splits."""

from __future__ import annotations

import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the Hub

import pytest

from flowhf.cli.main import main as cli_main
from flowhf.data import (
    DataError,
    load_preference_pairs,
    load_prompts,
    load_rows,
    shipped_path,
    splits,
)

ROWS = [
    {"id": 1, "question": "How do I sort?", "good": "Use sorted().", "bad": "No idea."},
    {"id": 2, "question": "What is a tuple?", "good": "An immutable sequence.", "bad": "A list."},
    {"id": 3, "question": "Why 'yield'?", "good": "Lazy generators.", "bad": "Speed, always."},
]
MAPPING = {"prompt": "question", "chosen": "good", "rejected": "bad"}


def _jsonl(path, rows, extra_lines: dict[int, str] | None = None):
    lines = [json.dumps(r) for r in rows]
    for index, text in (extra_lines or {}).items():
        lines.insert(index, text)
    path.write_text("\n".join(lines) + "\n")
    return path


def _csv(path, rows):
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
def test_local_files_load_with_column_mapping(tmp_path, kind):
    path = tmp_path / f"pairs.{kind}"
    {
        "jsonl": _jsonl,
        "csv": _csv,
        "parquet": _parquet,
        "json": lambda p, r: p.write_text(json.dumps(r)) and p,
    }[kind](path, ROWS)
    rows = load_rows(path, columns=MAPPING, required=["prompt", "chosen", "rejected"])
    assert [r["prompt"] for r in rows] == [r["question"] for r in ROWS]
    assert (
        rows[1]["chosen"] == "An immutable sequence." and rows[1]["question"] == "What is a tuple?"
    )
    assert str(rows[2]["id"]) == "3"  # unmapped columns are kept (CSV reads them as text)
    assert load_preference_pairs(path, columns=MAPPING, limit=2) == [
        {"prompt": r["question"], "chosen": r["good"], "rejected": r["bad"]} for r in ROWS[:2]
    ]
    assert load_prompts(path, "question") == [r["question"] for r in ROWS]


def test_stackexchange_layout_is_mapped_automatically(tmp_path):
    rows = [{"qid": 7, "question": "q", "response_j": "good", "response_k": "bad"}]
    pairs = load_preference_pairs(_jsonl(tmp_path / "se.jsonl", rows))
    assert pairs == [{"prompt": "q", "chosen": "good", "rejected": "bad"}]
    assert load_prompts(tmp_path / "se.jsonl") == ["q"]  # by layout, whatever the file is called


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_missing_key_names_file_row_key_and_fix(tmp_path, kind):
    rows = [dict(r) for r in ROWS]
    rows[1] = {k: v for k, v in rows[1].items() if k != "bad"} if kind == "jsonl" else rows[1]
    if kind != "jsonl":  # tabular files cannot lack a column in one row only: drop it everywhere
        rows = [{k: v for k, v in r.items() if k != "bad"} for r in rows]
    path = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}[kind](tmp_path / f"d.{kind}", rows)
    with pytest.raises(DataError) as err:
        load_rows(path, columns=MAPPING, required=["prompt", "chosen", "rejected"])
    message = str(err.value)
    row = {"jsonl": 2, "csv": 2, "parquet": 1}[kind]  # CSV: line 2 is the first data line
    assert f"{path}: row {row}: missing key 'bad' (mapped to 'rejected')" in message
    assert "columns={'rejected': '<your column>'}" in message


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_empty_value_names_file_row_and_key(tmp_path, kind):
    rows = [dict(r) for r in ROWS]
    rows[2]["good"] = "   " if kind != "parquet" else None
    path = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}[kind](tmp_path / f"d.{kind}", rows)
    with pytest.raises(
        DataError, match=rf"d\.{kind}: row {3 if kind != 'csv' else 4}: empty value for key 'good'"
    ):
        load_preference_pairs(path, columns=MAPPING)


def test_jsonl_line_numbers_count_blank_lines_and_flag_malformed_json(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ROWS, {1: "", 3: '{"question": "broken",'})
    with pytest.raises(DataError, match=r"d\.jsonl: line 4: malformed JSON"):
        load_rows(path, required=["question"])
    path = _jsonl(tmp_path / "e.jsonl", ROWS, {1: "", 2: '["not", "an", "object"]'})
    with pytest.raises(DataError, match=r"e\.jsonl: row 3: expected an object"):
        load_rows(path, required=["question"])
    path = _jsonl(
        tmp_path / "f.jsonl", [ROWS[0], {"question": ""}], {1: ""}
    )  # blank line 2 -> row on line 3
    with pytest.raises(DataError, match=r"f\.jsonl: row 3: empty value for key 'question'"):
        load_rows(path, required=["question"])


def test_csv_row_numbers_follow_multiline_fields(tmp_path):
    rows = [dict(ROWS[0], good="line one\nline two"), dict(ROWS[1], bad="")]
    path = _csv(tmp_path / "m.csv", rows)  # record 1 spans lines 2-3, record 2 is line 4
    with pytest.raises(DataError, match=r"m\.csv: row 4: empty value for key 'bad'"):
        load_preference_pairs(path, columns=MAPPING)
    (tmp_path / "x.csv").write_text("question,good\nq,a,extra\n")
    with pytest.raises(DataError, match=r"x\.csv: line 2: more values than header"):
        load_rows(tmp_path / "x.csv", required=["question"])


def test_limit_split_and_source_errors(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ROWS, {2: "{broken"})
    assert len(load_rows(path, required=["question"], limit=2)) == 2  # the bad line 3 is never read
    with pytest.raises(DataError, match="has no splits"):
        load_rows(path, required=["question"], split="test")
    with pytest.raises(DataError, match="data file not found"):
        load_rows(tmp_path / "absent.jsonl", required=["question"])
    with pytest.raises(DataError, match="unknown shipped dataset"):
        shipped_path("imdb")
    with pytest.raises(DataError, match="no rows"):
        load_rows(_jsonl(tmp_path / "empty.jsonl", []), required=["question"])
    with pytest.raises(DataError, match="needs split"):
        load_rows("stackexchange", required=["question"])


def test_datasets_specs(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "ds"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", ROWS)
    assert load_prompts(str(folder), "prompt", columns={"prompt": "question"}) == [
        r["question"] for r in ROWS
    ]
    with pytest.raises(
        DataError, match=r"could not load dataset 'nobody/no-such-set' split 'train'"
    ):
        load_rows("hf:nobody/no-such-set", required=["prompt"])


SHIPPED = {
    "stackexchange:train": (splits.FIELDS, 448),
    "stackexchange:test": (splits.FIELDS, 112),
    "stackexchange_gold_extra:train": (splits.FIELDS, 896),
    "stackexchange_gold_extra:test": (splits.FIELDS, 224),
    "toxicity_probes": (["pid", "prompt", "category"], 120),
    "sentiment_prompts": (["pid", "prompt"], 200),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_files_load(name):
    required, size = SHIPPED[name]
    try:
        shipped_path(name)
    except DataError as err:
        pytest.skip(f"shipped file not present yet: {err}")
    rows = load_rows(name, required=required)
    assert len(rows) == size
    assert len(load_prompts(name)) == size  # stackexchange prompts are its questions
    if name.startswith("stackexchange"):
        pairs = load_preference_pairs(name)
        assert pairs[0] == {
            "prompt": rows[0]["question"],
            "chosen": rows[0]["response_j"],
            "rejected": rows[0]["response_k"],
            "kind": rows[0]["rejected_kind"],
        }


def test_shipped_splits_are_current_and_disjoint():
    if not list(splits.PARTS_DIR.glob(splits.PART_GLOB)):
        pytest.skip(f"no part files in {splits.PARTS_DIR}")
    splits.write_splits(check=True)  # raises if the shipped files differ from a fresh build
    train, test = (
        load_rows("stackexchange:train", required=["question"]),
        load_rows("stackexchange:test", required=["question"]),
    )
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert not {r["qid"] for r in train} & {r["qid"] for r in test}


def _synthetic(n_topics=4, per_topic=11, seed=0):
    rng = random.Random(seed)
    return [
        {
            "qid": f"{t}-{i}",
            "topic": f"topic{t}",
            "question": f"question {t} {i} {rng.random()}",
            "response_j": "good",
            "response_k": "bad",
            "rejected_kind": "vague",
        }
        for t in range(n_topics)
        for i in range(per_topic)
    ]


def test_split_is_deterministic_stratified_and_order_independent():
    rows = _synthetic()
    train, test = splits.split_rows(rows, 0.2, seed=0)
    assert len(test) == round(0.2 * 44) == 9 and len(train) == 35
    for topic, count in splits.topic_counts(test).items():
        assert count in (2, 3), (topic, count)  # 11 * 0.2 = 2.2 per topic, plus the remainder
    assert splits.split_rows(rows, 0.2, seed=0) == (train, test)
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    assert {r["qid"] for r in splits.split_rows(shuffled, 0.2, seed=0)[1]} == {
        r["qid"] for r in test
    }
    assert {r["qid"] for r in splits.split_rows(rows, 0.2, seed=1)[1]} != {r["qid"] for r in test}


def test_duplicate_questions_stay_on_one_side():
    rows = _synthetic(n_topics=1, per_topic=10)
    for i in range(5):  # each question appears twice, once with different spacing / case
        rows[2 * i + 1]["question"] = "  " + rows[2 * i]["question"].upper()
    for seed in range(5):
        train, test = splits.split_rows(rows, 0.2, seed=seed)
        assert len(test) == 2
        assert not {splits._norm(r["question"]) for r in train} & {
            splits._norm(r["question"]) for r in test
        }


def test_read_parts_validates_rows(tmp_path):
    rows = _synthetic(n_topics=1, per_topic=3)
    _jsonl(tmp_path / "se_part1.jsonl", rows[:2])
    _jsonl(tmp_path / "se_part2.jsonl", [rows[2], dict(rows[2], question="other")])
    with pytest.raises(DataError, match=r"se_part2\.jsonl: row 2 \(qid '0-2'\): duplicate qid"):
        splits.read_parts(tmp_path)
    _jsonl(tmp_path / "se_part2.jsonl", [dict(rows[2], response_k="GOOD ")])
    with pytest.raises(DataError, match="identical"):
        splits.read_parts(tmp_path)
    _jsonl(tmp_path / "se_part2.jsonl", [dict(rows[2], rejected_kind="")])
    with pytest.raises(
        DataError, match=r"se_part2\.jsonl: row 1: empty value for key 'rejected_kind'"
    ):
        splits.read_parts(tmp_path)


def test_write_splits_round_trip_and_check(tmp_path, capsys):
    parts, out = tmp_path / "parts", tmp_path / "out"
    parts.mkdir(), out.mkdir()
    _jsonl(parts / "se_part1.jsonl", _synthetic())
    assert splits.write_splits(out, parts) == {"train": 35, "test": 9}
    first = (out / splits.TEST_FILE).read_text()
    check = ["data", "splits", "--parts-dir", str(parts), "--out-dir", str(out), "--check"]
    assert cli_main(check) == 0
    assert (out / splits.TEST_FILE).read_text() == first
    (out / splits.TRAIN_FILE).write_text("")
    assert cli_main(check) == 2  # a user error: `flowhf: error: ...` and a hint
    assert "is stale or missing; regenerate it with `flowhf data splits`" in capsys.readouterr().err
