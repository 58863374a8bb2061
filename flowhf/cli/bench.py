"""``flowhf bench lm-target`` (and ``benchmarks/lm_target.py``): exact distribution matching on
SmolLM2, FlowHF objectives vs TRL GRPO / PPO (`flowhf.experiments.lmtask.bench`).

One run: warm start (cached) -> exact target from the starting model -> train `method` for
`seconds` -> exact metrics (+ optional sampling check) -> JSON. `--all` runs every method on a
task, skipping those whose JSON already exists (a killed sweep resumes), then writes a
markdown table and one bar plot of learned vs target per method.

Its parser names the methods, which live beside torch: `flowhf` therefore lists ``bench
lm-target`` without building it (`add_bench_parser`) and hands its flags here (`main`), so
``flowhf --help`` loads nothing heavy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

LM_TARGET = "lm-target"


def add_bench_parser(sub) -> None:
    """``flowhf bench {lm-target}`` in the top-level help; `main` parses lm-target's flags."""
    bench = sub.add_parser("bench", help="benchmarks on a real LM")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    bench_sub.add_parser(
        LM_TARGET, help="exact distribution matching on SmolLM2 vs GRPO / PPO", add_help=False
    )


def build_parser(prog: str = "lm_target") -> argparse.ArgumentParser:
    from flowhf.experiments.lmtask.bench import RESULTS
    from flowhf.experiments.lmtask.methods import METHODS

    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", help="task YAML (see benchmarks/lm_tasks/)")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="only write summary.md / summary.png of --out-dir (and each task's table and plot again)",
    )
    parser.add_argument("--method", choices=METHODS, help="one method (or --all)")
    parser.add_argument(
        "--all", action="store_true", help="every method, resumable; writes table + plot"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        help="with --all: only these methods, in this order (default: every method)",
    )
    parser.add_argument(
        "--seconds", type=float, default=600.0, help="wall-clock training budget per method"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="result JSON of one run")
    parser.add_argument(
        "--out-dir", type=Path, default=RESULTS, help="with --all: folder of JSON, table and plot"
    )
    _add_start_flags(parser)
    return parser


def _add_start_flags(parser: argparse.ArgumentParser) -> None:
    """The start model, the sampling check, the trace and the overrides of each method."""
    parser.add_argument(
        "--sample-check",
        type=int,
        default=0,
        help="also draw N samples and compare with the exact figures",
    )
    parser.add_argument(
        "--model", default="smollm2", help="starting model (every method starts from it)"
    )
    parser.add_argument(
        "--no-warm-start",
        dest="warm_start",
        action="store_false",
        help="start from --model itself, without the generic bare-answer warm start",
    )
    parser.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="N",
        help="FlowHF methods: every N steps record the exact TV, coverage and answer probabilities in the JSON's 'trace'",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="FlowHF config override (key=value)",
    )
    parser.add_argument(
        "--baseline-set",
        dest="baseline_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="GRPO / PPO option (their runner's keys: lr=3e-4, beta=0, kl_coef=0.1, num_generations=16)",
    )


def main(argv: list[str] | None = None, prog: str = "lm_target") -> int:
    args = build_parser(prog).parse_args(argv)
    return run_from_args(args)


def check_args(args) -> None:
    """What a run needs, checked before any model loads (user errors, one CLI line each): a
    task file that loads, --method or --all, --set overrides that the FlowHF config accepts and
    --baseline-set options that GRPO / PPO accept."""
    from flowhf.errors import ConfigError
    from flowhf.experiments.baselines.requires import require_trl
    from flowhf.experiments.lmtask.methods import (
        CONFIG,
        DEFAULT_SWEEP,
        METHODS,
        TRL_METHODS,
        baseline_options,
    )
    from flowhf.experiments.lmtask.task import load_task

    if not args.task:
        raise ConfigError(
            "flowhf bench lm-target: --task FILE is required (or --summary)",
            "shipped tasks are in benchmarks/lm_tasks/, e.g. --task benchmarks/lm_tasks/numbers_uniform.yaml",
        )
    if not (args.all or args.method):
        raise ConfigError(
            "flowhf bench lm-target: give --method METHOD or --all",
            f"methods: {', '.join(METHODS)}",
        )
    if args.all and args.trace:
        raise ConfigError(
            "flowhf bench lm-target: --trace records one run's learning curve",
            "use it with --method METHOD, not --all",
        )
    load_task(args.task)
    methods = (args.methods or DEFAULT_SWEEP) if args.all else [args.method]
    for method in [m for m in methods if m in TRL_METHODS]:
        baseline_options(method, tuple(args.baseline_overrides))
        require_trl(f"flowhf bench lm-target --method {method}", ppo=method == "ppo")
    if args.overrides:
        from flowhf.config.training import FlowHFConfig

        FlowHFConfig.from_yaml(CONFIG, list(args.overrides))


def run_from_args(args) -> int:
    import os

    import torch

    from flowhf.experiments.lmtask.bench import (
        RunOptions,
        Start,
        run_all,
        run_one,
        summarize,
        table_rows,
    )
    from flowhf.experiments.lmtask.methods import DEFAULT_SWEEP

    if args.summary:
        print(summarize(args.out_dir).read_text())
        return 0
    check_args(args)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    options = RunOptions(
        args.seconds,
        args.seed,
        Start(args.model, args.warm_start),
        args.sample_check,
        tuple(args.overrides),
        tuple(args.baseline_overrides),
        args.trace,
    )
    if args.all:
        run_all(args.task, args.out_dir, tuple(args.methods or DEFAULT_SWEEP), options)
        return 0
    result = run_one(args.task, args.method, args.json, options)
    print(table_rows([result]))
    if "sampling_check" in result:
        print(
            f"sampling check: max |z| {result['sampling_check']['max_abs_z']:.2f}, min chi2 p {result['sampling_check']['min_chi2_p']:.3f}"
        )
    return 0
