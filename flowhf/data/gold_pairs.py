"""Extra StackExchange preference pairs that only the GOLD reward model trains on.

`flowhf reproduce` trains two reward models (after Gao, Schulman and Hilton 2022, "Scaling
Laws for Reward Model Overoptimization"): the policies optimise the PROXY, trained on the
shipped pairs (``stackexchange:train``, five rejected kinds: truncated, rude, vague, wrong,
off_topic); the evaluation's headline is the GOLD, trained on those pairs plus these, whose
rejected answers are failure modes the proxy never saw and a policy can find by itself:

- ``one_word``: a one-word reply ("None", "Yes.", "OK");
- ``restates_question``: the question (or its first sentence) handed back;
- ``repetition``: the preferred answer's first sentence, or its first words, repeated;
- ``cut_early``: the preferred answer cut within its first 15% of words;
- ``cut_late``: cut after 80-95% of its words (the shipped ``truncated`` kind cuts at 20-55%).

Every row of a split gets one pair of one kind, chosen by hashing its qid, so the kinds are
balanced (about 90 rows each in train) and the files never depend on row order. The chosen
answer is the row's own preferred answer ``response_j``. Test rows give the held-out pairs
that measure whether a reward model knows each kind (`benchmarks/gold_reward.py`).

Run ``python -m flowhf.data.gold_pairs`` after regenerating the splits (``--check`` only
verifies the shipped files are current).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

from flowhf.data.loading import DataError, load_rows
from flowhf.data.splits import FIELDS, SHIPPED_DIR, TEST_FILE, TRAIN_FILE

GOLD_KINDS = ("one_word", "restates_question", "repetition", "cut_early", "cut_late")
GOLD_FILES = {TRAIN_FILE: "stackexchange_gold_extra_train.jsonl", TEST_FILE: "stackexchange_gold_extra_test.jsonl"}
ONE_WORD_REPLIES = ("None", "Yes.", "No.", "It depends.", "Thanks!", "OK")  # not "": the loaders refuse empty fields


def _pick(qid: str, salt: str, n: int) -> int:
    """A deterministic choice in [0, n) from the row's qid (order-free, reproducible)."""
    return int(hashlib.sha256(f"{salt}\x00{qid}".encode()).hexdigest(), 16) % n


def _first_sentence(text: str, max_words: int = 25) -> str:
    sentence = re.split(r"(?<=[.!?:])\s|\n", text.strip(), maxsplit=1)[0]
    return " ".join(sentence.split()[:max_words])


def _cut(text: str, low: float, high: float, qid: str) -> str:
    """``text`` up to the end of its ``round(f * words)``-th word, for an f in [low, high] picked
    from the qid (at least one word, never all); layout (newlines, code blocks) is kept."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    f = low + (high - low) * _pick(qid, "cut", 1000) / 999
    return text[: ends[max(1, min(len(ends) - 1, round(f * len(ends)))) - 1]]


def rejected_answer(kind: str, row: dict) -> str:
    """The rejected answer of ``kind`` made from one StackExchange row."""
    qid, question, answer = str(row["qid"]), str(row["question"]), str(row["response_j"])
    if kind == "one_word":
        replies = ONE_WORD_REPLIES + (answer.split()[0],)
        return replies[_pick(qid, kind, len(replies))]
    if kind == "restates_question":
        forms = (question, f"So the question is: {question}", f"{_first_sentence(question)} That is a good question.")
        return forms[_pick(qid, kind, len(forms))]
    if kind == "repetition":
        sentence = _first_sentence(answer)
        if _pick(qid, kind, 2):
            return " ".join([" ".join(sentence.split()[:4])] * 8)
        return " ".join([sentence] * (3 + _pick(qid, "times", 4)))
    if kind == "cut_early":
        return _cut(answer, 0.03, 0.15, qid)
    if kind == "cut_late":
        return _cut(answer, 0.80, 0.95, qid)
    raise ValueError(f"unknown gold kind {kind!r}; kinds are {GOLD_KINDS}")


def gold_pairs(rows: list[dict]) -> list[dict]:
    """One extra pair per row, in the shipped layout (``rejected_kind`` names the gold kind)."""
    out = []
    for row in rows:
        kind = GOLD_KINDS[_pick(str(row["qid"]), "kind", len(GOLD_KINDS))]
        rejected = rejected_answer(kind, row)
        if rejected.strip() == str(row["response_j"]).strip():
            raise DataError(f"qid {row['qid']!r}: the {kind} answer equals the preferred one; the pair carries no preference")
        out.append({**{key: row[key] for key in FIELDS}, "qid": f"{row['qid']}-gold", "response_k": rejected,
                    "rejected_kind": kind})
    return out


def write_gold_pairs(out_dir: Path = SHIPPED_DIR, check: bool = False) -> dict[str, int]:
    """Write (or, with ``check``, compare) the gold files of both splits; returns their sizes."""
    sizes = {}
    for split_file, gold_file in GOLD_FILES.items():
        rows = gold_pairs(load_rows(out_dir / split_file, required=FIELDS))
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        path = out_dir / gold_file
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                raise DataError(f"{path} is stale or missing; regenerate it with `python -m flowhf.data.gold_pairs`")
        else:
            path.write_text(text, encoding="utf-8")
        sizes[gold_file] = len(rows)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowhf.data.gold_pairs", description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=SHIPPED_DIR, help="folder holding the split files")
    parser.add_argument("--check", action="store_true", help="verify the gold files are current; write nothing")
    args = parser.parse_args(argv)
    try:
        sizes = write_gold_pairs(args.out_dir, args.check)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"gold pairs {'up to date' if args.check else 'written'}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
