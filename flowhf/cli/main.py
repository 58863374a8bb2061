"""The `flowhf` command line.

    flowhf train --config FILE [--set key=value ...] --output-dir DIR [--resume | --overwrite]
    flowhf eval --model DIR_OR_ID [--model ...] --task {stackexchange,toxicity} ...
    flowhf compare DIR ... --output report.md
    flowhf reward train --config FILE [--set key=value ...]
    flowhf baseline CONFIG [--set key=value ...]   one TRL baseline (configs/baselines/)
    flowhf reproduce --preset {smoke,cpu,paper,FILE} [--set key=value ...] --output-dir DIR [--only STAGE ...] [--resume] [--dry-run]
    flowhf exact [--objective ...]      the exact-target benchmark (benchmarks/exact_target.py)
    flowhf bench lm-target --task FILE ...   exact distribution matching on SmolLM2
    flowhf data splits|gold-pairs [--check]  regenerate (or check) the shipped data files
    flowhf demo                         the README's main job on the embedded default

A mistake the user can fix (a config or data problem, a missing model, an occupied output
folder, a corrupt checkpoint) prints one line ``flowhf: error: ...`` and a hint, and exits
with code 2; ``--debug`` (anywhere on the line) or ``FLOWHF_DEBUG=1`` shows the traceback.
Any other exception is an internal error: traceback, exit code 1.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from flowhf.cli.baseline import add_baseline_parser
from flowhf.cli.bench import LM_TARGET, add_bench_parser
from flowhf.cli.data import add_data_parser
from flowhf.cli.flags import add_run_dir_flags, add_set_flag
from flowhf.cli.reproduce import add_reproduce_parser
from flowhf.cli.reward import add_reward_parser
from flowhf.errors import guarded


def _train(args: argparse.Namespace) -> int:
    from flowhf.config.training import FlowHFConfig, describe
    from flowhf.errors import ConfigError

    if args.help_config:
        print(describe())
        return 0
    if not args.config:
        raise ConfigError(
            "flowhf train: --config FILE is required",
            "see configs/*.yaml, e.g. --config configs/smoke.yaml",
        )
    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"logging.output_dir={args.output_dir}")
    config = FlowHFConfig.from_yaml(args.config, overrides)
    from flowhf.run_dir import claim_run_dir

    # the folder is checked (and locked) before the model loads
    with claim_run_dir(config.logging.output_dir, args.resume, args.overwrite, config.to_dict()):
        from flowhf.training.summary import write_run_summary
        from flowhf.training.trainer import FlowHFTrainer

        trainer = FlowHFTrainer(args=config)
        trainer.train(resume=args.resume)
        if trainer.accelerator.is_main_process:
            print(write_run_summary(config.logging.output_dir))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from flowhf.experiments.reproduce.demo import run_demo

    return run_demo(quick=args.quick)


def _add_train_parser(sub) -> None:
    train = sub.add_parser("train", help="train a policy with a GFlowNet objective")
    train.add_argument("--config", help="YAML config (see configs/)")
    add_set_flag(train, "override, e.g. --set target.beta=10")
    train.add_argument("--output-dir", help="run directory (overrides logging.output_dir)")
    add_run_dir_flags(
        train,
        resume="continue the run in the run directory from its newest verified checkpoint",
        overwrite="delete the run already in the run directory and start again",
    )
    train.add_argument(
        "--help-config", action="store_true", help="list every config option with its help"
    )
    train.set_defaults(func=_train)


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand; each registers its flags only (handlers import the heavy modules)."""
    parser = argparse.ArgumentParser(
        prog="flowhf", description="GFlowNet fine-tuning of Hugging Face causal LMs."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of errors (also FLOWHF_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    from flowhf.cli.evaluate import add_compare_parser, add_eval_parser

    add_eval_parser(sub)
    add_compare_parser(sub)
    add_baseline_parser(sub)
    add_reward_parser(sub)
    add_reproduce_parser(sub)
    sub.add_parser(
        "exact",
        help="exact-target benchmark (same flags as benchmarks/exact_target.py)",
        add_help=False,
    )
    add_bench_parser(sub)
    add_data_parser(sub)
    demo = sub.add_parser("demo", help="the README's main job on the embedded default")
    demo.add_argument("--quick", action="store_true", help="a shorter run (for a first look)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    return guarded(lambda: _dispatch(argv), debug)


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["exact"]:  # its own parser: every flag of benchmarks/exact_target.py
        from flowhf.cli.exact import main as exact_main

        return exact_main(argv[1:])
    if argv[:2] == ["bench", LM_TARGET]:  # its parser names the methods, which import torch
        from flowhf.cli.bench import main as lm_target_main

        return lm_target_main(argv[2:], prog=f"flowhf bench {LM_TARGET}")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
