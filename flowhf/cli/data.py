"""``flowhf data splits [--check]`` and ``flowhf data gold-pairs [--check]``: regenerate (or
only verify) the shipped StackExchange splits (`flowhf.data.splits`) and the gold reward
model's extra pairs (`flowhf.reward_model.gold_pairs`); run gold-pairs after splits."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowhf.data.splits import PARTS_DIR, SHIPPED_DIR


def add_data_parser(sub) -> None:
    data = sub.add_parser("data", help="regenerate or check the shipped data files")
    commands = data.add_subparsers(dest="data_command", required=True)
    splits = commands.add_parser(
        "splits", help="merge the StackExchange part files into the shipped train/test splits"
    )
    splits.add_argument(
        "--parts-dir", type=Path, default=PARTS_DIR, help="folder holding se_part*.jsonl"
    )
    splits.add_argument(
        "--out-dir", type=Path, default=SHIPPED_DIR, help="where the split files are written"
    )
    splits.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of every topic put in test"
    )
    splits.add_argument("--seed", type=int, default=0, help="seed mixed into the question hash")
    _add_check_flag(splits, "the split files")
    splits.set_defaults(func=_splits)
    gold = commands.add_parser(
        "gold-pairs", help="the gold reward model's extra pairs, from the shipped splits"
    )
    gold.add_argument(
        "--out-dir", type=Path, default=SHIPPED_DIR, help="folder holding the split files"
    )
    _add_check_flag(gold, "the gold files")
    gold.set_defaults(func=_gold_pairs)


def _add_check_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--check", action="store_true", help=f"verify {what} are current; write nothing"
    )


def _splits(args: argparse.Namespace) -> int:
    from flowhf.data.loading import load_rows
    from flowhf.data.splits import FIELDS, TEST_FILE, TRAIN_FILE, topic_counts, write_splits

    sizes = write_splits(args.out_dir, args.parts_dir, args.test_fraction, args.seed, args.check)
    verb = "up to date" if args.check else "written"
    print(
        f"stackexchange splits {verb}: train={sizes['train']} test={sizes['test']} ({args.out_dir})"
    )
    if not args.check:
        train, test = (
            load_rows(args.out_dir / name, required=FIELDS) for name in (TRAIN_FILE, TEST_FILE)
        )
        print(f"per topic: train {topic_counts(train)}\n           test  {topic_counts(test)}")
    return 0


def _gold_pairs(args: argparse.Namespace) -> int:
    from flowhf.reward_model.gold_pairs import write_gold_pairs

    sizes = write_gold_pairs(args.out_dir, args.check)
    print(f"gold pairs {'up to date' if args.check else 'written'}: {sizes}")
    return 0
