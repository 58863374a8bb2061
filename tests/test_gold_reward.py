"""Gold vs proxy reward models: the gold's extra pairs, their kinds, and what each model sees."""

from __future__ import annotations

import pytest
import torch

from flowhf.config.reward_model import RewardModelConfig, proxy_and_gold
from flowhf.data import load_preference_pairs, load_rows
from flowhf.reward_model.gold_pairs import (
    GOLD_KINDS,
    PARTIAL_KINDS,
    gold_pairs,
    partial_answer,
    rejected_answer,
    write_gold_pairs,
)
from flowhf.reward_model.train import accuracy_by_kind

ROW = {
    "qid": "q1",
    "topic": "python",
    "question": "How do I reverse a list? I tried sort.",
    "response_j": "Use slicing:\n\n```python\nxs[::-1]\n```\n\nor `xs.reverse()` to reverse in place. Both are fine here.",
    "response_k": "No idea.",
    "rejected_kind": "vague",
}


def test_shipped_gold_files_are_current_and_balanced():
    write_gold_pairs(
        check=True
    )  # raises when the files are stale (regenerate: flowhf data gold-pairs)
    for split in ("train", "test"):
        extra = load_rows(f"stackexchange_gold_extra:{split}", required=["rejected_kind"])
        base = load_rows(f"stackexchange:{split}", required=["question"])
        assert len(extra) == 2 * len(base)  # two pairs per question
        for kinds in (GOLD_KINDS, PARTIAL_KINDS):
            counts = {kind: sum(r["rejected_kind"] == kind for r in extra) for kind in kinds}
            assert min(counts.values()) >= 0.6 * len(base) / len(kinds), counts
        assert {r["question"] for r in extra} == {
            r["question"] for r in base
        }  # no test question in train's extra


def test_each_kind_is_what_its_name_says():
    answer = ROW["response_j"]
    assert rejected_answer("one_word", ROW) in (
        "None",
        "Yes.",
        "No.",
        "It depends.",
        "Thanks!",
        "OK",
        "Use",
    )
    assert ROW["question"] in rejected_answer(
        "restates_question", ROW
    ) or "How do I reverse a list?" in rejected_answer("restates_question", ROW)
    repeated = rejected_answer("repetition", ROW)
    assert (
        repeated.count("Use slicing:") >= 3
        or repeated.count("Use slicing:") == 1
        and len(repeated.split()) == 8
    )
    words = len(answer.split())
    early, late = rejected_answer("cut_early", ROW), rejected_answer("cut_late", ROW)
    assert answer.startswith(early) and answer.startswith(late)  # a prefix, layout (newlines) kept
    assert (
        1 <= len(early.split()) <= round(0.15 * words)
        and round(0.80 * words) <= len(late.split()) < words
    )
    whole, partial = gold_pairs([ROW])
    assert (
        whole["response_j"] == answer
        and whole["rejected_kind"] in GOLD_KINDS
        and whole["qid"] == "q1-gold"
    )
    assert (
        partial["response_j"] == partial_answer(ROW) and partial["rejected_kind"] in PARTIAL_KINDS
    )
    long_row = {**ROW, "response_j": " ".join(f"w{i}" for i in range(100))}
    assert 20 <= len(partial_answer(long_row).split()) <= 30 and long_row["response_j"].startswith(
        partial_answer(long_row)
    )


def test_proxy_never_trains_on_a_gold_kind(tmp_path):
    proxy, gold = proxy_and_gold(RewardModelConfig(), tmp_path)
    assert (
        proxy.extra_train_data is None and gold.extra_train_data == "stackexchange_gold_extra:train"
    )
    assert proxy.seed != gold.seed and proxy.output_dir != gold.output_dir
    assert (
        proxy.extra_test_data == gold.extra_test_data == "stackexchange_gold_extra:test"
    )  # both judged on every kind
    proxy_kinds = {p["kind"] for p in load_preference_pairs(proxy.train_data)}
    gold_kinds = proxy_kinds | {p["kind"] for p in load_preference_pairs(gold.extra_train_data)}
    assert proxy_kinds.isdisjoint(GOLD_KINDS + PARTIAL_KINDS) and gold_kinds == proxy_kinds | set(
        GOLD_KINDS + PARTIAL_KINDS
    )


def test_accuracy_by_kind_hand_example():
    pairs = [{"kind": "a"}, {"kind": "b"}, {"kind": "a"}, {}, {"kind": "a"}]
    out = accuracy_by_kind(pairs, torch.tensor([True, False, False, True, True]))
    assert out == {
        "eval/accuracy/a": pytest.approx(2 / 3),
        "eval/n_pairs/a": 3,
        "eval/accuracy/b": 0.0,
        "eval/n_pairs/b": 1,
    }


def test_gold_proxy_rows_by_hand():
    from flowhf.evaluation.gold_proxy import gold_proxy_rows, length_slope

    records = [
        {"model": "a", "reward": 1.0, "proxy_reward": 4.0, "length": 2, "ended": True},
        {"model": "a", "reward": 3.0, "proxy_reward": 6.0, "length": 4, "ended": False},
        {"model": "b", "reward": 5.0, "proxy_reward": 2.0, "length": 6, "ended": True},
    ]
    assert length_slope([1, 3, 5], [2, 4, 6]) == pytest.approx(1.0)  # gold rises one per token
    rows = gold_proxy_rows(records, {"gold": (1.0, 2.0), "proxy": (0.0, 4.0)})
    a, b = rows
    assert a["gold"] == 2.0 and a["proxy"] == 5.0 and a["tokens"] == 3.0 and a["eos_rate"] == 0.5
    # pooled mean length 4: a's answers are 1 token shorter on average -> +1 gold at equal length
    assert a["gold_lc"] == pytest.approx(3.0) and b["gold_lc"] == pytest.approx(3.0)
    assert (
        a["gold_z"] == pytest.approx(0.5)
        and a["proxy_z"] == pytest.approx(1.25)
        and a["gap"] == pytest.approx(0.75)
    )
    assert (
        "proxy"
        not in gold_proxy_rows(
            [{k: v for k, v in r.items() if k != "proxy_reward"} for r in records], {}
        )[0]
    )


def test_reward_model_table_per_kind_with_wilson_intervals():
    from flowhf.experiments.analysis.gold_proxy import (
        format_reward_models_markdown,
        kind_accuracies,
        wilson,
    )

    low, high = wilson(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    base = {"train/n_pairs": 10, "eval/accuracy": 0.9, "eval/n_pairs": 30, "train/score_std": 2.0}
    proxy = {
        **base,
        "eval/accuracy/rude": 1.0,
        "eval/n_pairs/rude": 10,
        "eval/accuracy/partial_over_one_word": 0.2,
        "eval/n_pairs/partial_over_one_word": 20,
    }
    gold = {**proxy, "eval/accuracy/partial_over_one_word": 0.9}
    assert kind_accuracies(proxy)["rude"]["n"] == 10
    text = format_reward_models_markdown(proxy, gold)
    assert (
        "| rude | both | 10 | 1.00 [" in text
        and "| partial_over_one_word | gold only | 20 | 0.20 [" in text
    )
    assert text.index("| rude |") < text.index(
        "| partial_over_one_word |"
    )  # kinds both saw come first


def test_gold_pairs_command_checks_and_rewrites(tmp_path, capsys):
    """`flowhf data gold-pairs [--check]`: a current folder passes, a stale file is a user error
    naming the command that regenerates it, and the command then writes the same files."""
    import shutil

    from flowhf.cli.main import main
    from flowhf.data.splits import SHIPPED_DIR, TEST_FILE, TRAIN_FILE
    from flowhf.reward_model.gold_pairs import GOLD_FILES

    for name in (TRAIN_FILE, TEST_FILE, *GOLD_FILES.values()):
        shutil.copy(SHIPPED_DIR / name, tmp_path / name)
    check = ["data", "gold-pairs", "--out-dir", str(tmp_path), "--check"]
    assert main(check) == 0
    stale = tmp_path / GOLD_FILES[TEST_FILE]
    stale.write_text("")
    assert main(check) == 2
    assert "regenerate it with `flowhf data gold-pairs`" in capsys.readouterr().err
    assert main(check[:-1]) == 0 and main(check) == 0
    assert stale.read_text() == (SHIPPED_DIR / GOLD_FILES[TEST_FILE]).read_text()
