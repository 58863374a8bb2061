"""``flowhf baseline CONFIG.yaml [--set key=value ...] [--overwrite]``: run one TRL baseline
(SFT, GRPO or PPO) from a YAML config (configs/baselines/)."""

from __future__ import annotations

import argparse
import json
import os

from flowhf.cli.flags import add_run_dir_flags, add_set_flag

SUMMARY_KEYS = (
    "method",
    "steps",
    "tokens_generated",
    "wall_clock_seconds",
    "stopped_by",
    "final_reward_mean",
    "model_dir",
)


def add_baseline_parser(sub) -> None:
    parser = sub.add_parser("baseline", help="run one TRL baseline (SFT / GRPO / PPO) from a YAML")
    parser.add_argument("config", help="YAML config, e.g. configs/baselines/grpo.yaml")
    add_set_flag(
        parser,
        "Override a config key (dotted, YAML value), e.g. --set budget.max_steps=2",
        dest="overrides",
    )
    add_run_dir_flags(parser, overwrite="delete a run already in output_dir")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + (["overwrite=true"] if args.overwrite else [])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download at run time
    from flowhf.experiments.baselines import run_config

    result = run_config(args.config, overrides)
    print(json.dumps({k: result[k] for k in SUMMARY_KEYS}, indent=2))
    return 0
