"""The `flowhf` command line.

    flowhf train --config FILE [--set key=value ...] --output-dir DIR [--resume | --overwrite]
    flowhf eval --model DIR_OR_ID [--model ...] --task {stackexchange,toxicity} ...
    flowhf compare DIR ... --output report.md
    flowhf reward train --config FILE [--set key=value ...]
    flowhf baseline CONFIG [--set key=value ...]   one TRL baseline (configs/baselines/)
    flowhf reproduce --preset {smoke,cpu,paper,FILE} [--set key=value ...] --output-dir DIR [--only STAGE ...] [--resume] [--dry-run]
    flowhf exact [--objective ...]      the exact-target benchmark (benchmarks/exact_target.py)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowhf", description="GFlowNet fine-tuning of Hugging Face causal LMs."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of errors (also FLOWHF_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a policy with a GFlowNet objective")
    train.add_argument("--config", help="YAML config (see configs/)")
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. --set target.beta=10"
    )
    train.add_argument("--output-dir", help="run directory (overrides logging.output_dir)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the run directory from its newest verified checkpoint",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in the run directory and start again",
    )
    train.add_argument(
        "--help-config", action="store_true", help="list every config option with its help"
    )
    train.set_defaults(func=_train)

    from flowhf.cli.evaluate import add_compare_parser, add_eval_parser

    add_eval_parser(sub)
    add_compare_parser(sub)

    from flowhf.cli.baseline import add_baseline_parser

    add_baseline_parser(sub)

    from flowhf.reward_model.train import add_reward_parser

    add_reward_parser(sub)

    from flowhf.experiments.reproduce.reproduce import add_reproduce_parser

    add_reproduce_parser(sub)

    sub.add_parser(
        "exact",
        help="exact-target benchmark (same flags as benchmarks/exact_target.py)",
        add_help=False,
    )

    bench = sub.add_parser("bench", help="benchmarks on a real LM")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    from flowhf.experiments.lmtask.bench import build_parser as lm_target_parser
    from flowhf.experiments.lmtask.bench import run_from_args

    lm_target = bench_sub.add_parser(
        "lm-target", help="exact distribution matching on SmolLM2 vs GRPO / PPO"
    )
    lm_target_parser(lm_target).set_defaults(func=run_from_args)

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
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
