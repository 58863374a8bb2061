"""``flowhf reward train --config FILE [--set key=value ...] [--overwrite]``: train a
Bradley-Terry reward model (`flowhf.reward_model.train`) on preference pairs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from flowhf.cli.flags import add_run_dir_flags, add_set_flag
from flowhf.config.reward_model import RewardModelConfig, load_reward_config


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML file of RewardModelConfig keys (e.g. configs/reward_model.yaml)"
    )
    add_set_flag(parser, "override a config key (repeatable)")
    add_run_dir_flags(parser, overwrite="delete a reward model already in output_dir")
    parser.epilog = "config keys:\n" + "\n".join(
        f"  {f.name} (default {f.default!r}): {f.metadata['help']}"
        for f in dataclasses.fields(RewardModelConfig)
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(func=run_reward_train)


def add_reward_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``reward train`` on the ``flowhf`` CLI; ``args.func(args)`` returns the exit code."""
    reward = subparsers.add_parser("reward", help="reward-model tools")
    commands = reward.add_subparsers(dest="reward_command", required=True)
    _add_train_args(
        commands.add_parser("train", help="train a Bradley-Terry reward model on preference pairs")
    )
    return reward


def run_reward_train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from flowhf.reward_model.train import train_reward_model
    from flowhf.run_dir import claim_run_dir

    config = load_reward_config(args.config, args.set)  # user errors: flowhf.errors.guarded
    with claim_run_dir(config.output_dir, overwrite=args.overwrite):  # before the backbone loads
        metrics = train_reward_model(config)
    print(json.dumps(metrics, indent=2))
    return 0


def train_reward_cli(argv: list[str] | None = None) -> int:
    """``flowhf reward train`` as a function: ``argv`` is what follows ``train``."""
    parser = argparse.ArgumentParser(
        prog="flowhf reward train", description="Train a Bradley-Terry reward model."
    )
    _add_train_args(parser)
    from flowhf.errors import guarded

    return guarded(lambda: run_reward_train(parser.parse_args(argv)))
