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

Every row of a split gets two pairs, their kinds chosen by hashing its qid (balanced, and the
files never depend on row order):

- the row's preferred answer ``response_j`` over one of the five kinds above;
- ``partial_over_KIND``: the preferred answer's first 20-30 words (a started real answer, cut the
  way a policy with a short token budget cuts it) over a non-answer (one_word, restates_question
  or repetition). The proxy's chosen answers are always whole, so it never learns that a cut real
  answer beats no answer; a policy that ends early at its first word exploits exactly that.

Test rows give the held-out pairs that measure whether a reward model knows each kind
(`benchmarks/gold_reward.py`).

Run ``flowhf data gold-pairs`` after regenerating the splits (``--check`` only verifies the
shipped files are current).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flowhf.data.loading import DataError, load_rows
from flowhf.data.splits import FIELDS, SHIPPED_DIR, TEST_FILE, TRAIN_FILE, write_or_check

GOLD_KINDS = ("one_word", "restates_question", "repetition", "cut_early", "cut_late")
NON_ANSWERS = ("one_word", "restates_question", "repetition")
PARTIAL_KINDS = tuple(f"partial_over_{kind}" for kind in NON_ANSWERS)
GOLD_FILES = {
    TRAIN_FILE: "stackexchange_gold_extra_train.jsonl",
    TEST_FILE: "stackexchange_gold_extra_test.jsonl",
}
ONE_WORD_REPLIES = (
    "None",
    "Yes.",
    "No.",
    "It depends.",
    "Thanks!",
    "OK",
)  # not "": the loaders refuse empty fields


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
        forms = (
            question,
            f"So the question is: {question}",
            f"{_first_sentence(question)} That is a good question.",
        )
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


def partial_answer(row: dict) -> str:
    """The preferred answer's first 20-30 words (layout kept), picked from the qid."""
    answer = str(row["response_j"])
    words = len(answer.split())
    return _cut(answer, min(1.0, 20 / words), min(1.0, 30 / words), f"partial-{row['qid']}")


def gold_pairs(rows: list[dict]) -> list[dict]:
    """Two extra pairs per row, in the shipped layout (``rejected_kind`` names the gold kind)."""
    out = []
    for row in rows:
        qid = str(row["qid"])
        kind = GOLD_KINDS[_pick(qid, "kind", len(GOLD_KINDS))]
        worse = NON_ANSWERS[_pick(qid, "partial", len(NON_ANSWERS))]
        for suffix, chosen, rejected, name in (
            ("gold", row["response_j"], rejected_answer(kind, row), kind),
            (
                "gold-partial",
                partial_answer(row),
                rejected_answer(worse, row),
                f"partial_over_{worse}",
            ),
        ):
            if str(rejected).strip() == str(chosen).strip():
                raise DataError(
                    f"qid {qid!r}: the {name} pair's answers are equal; the pair carries no preference"
                )
            out.append(
                {
                    **{key: row[key] for key in FIELDS},
                    "qid": f"{qid}-{suffix}",
                    "response_j": chosen,
                    "response_k": rejected,
                    "rejected_kind": name,
                }
            )
    return out


def write_gold_pairs(out_dir: Path = SHIPPED_DIR, check: bool = False) -> dict[str, int]:
    """Write (or, with ``check``, compare) the gold files of both splits; returns their sizes."""
    sizes = {}
    for split_file, gold_file in GOLD_FILES.items():
        rows = gold_pairs(load_rows(out_dir / split_file, required=FIELDS))
        write_or_check(out_dir / gold_file, rows, check, "flowhf data gold-pairs")
        sizes[gold_file] = len(rows)
    return sizes
