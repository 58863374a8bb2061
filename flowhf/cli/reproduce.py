"""`flowhf reproduce`: every stage of the report's comparison, cached per stage.

Stages run in order (``flowhf.config.preset.STAGES``). Each writes ``DIR/<stage>/DONE`` (last, by
rename) holding its JSON result and the size of every output it wrote. One run per folder: a
folder holding an earlier reproduce is refused unless ``--resume`` (continue it) or
``--overwrite`` (delete it). On ``--resume`` a stage is skipped only when its DONE verifies
(every output listed still there, same size); any other stage reruns from an emptied folder,
except a FlowHF trainer stage with checkpoints, which continues from its own newest one.
``--dry-run`` prints the plan and writes nothing, loads nothing and touches no network.
``--preset`` is a shipped preset or a preset YAML file (``base: smoke`` and the keys to change),
``--set key=value`` changes one key; both are checked
(`flowhf.experiments.reproduce.presets.load_preset`) before anything else.
"""

from __future__ import annotations

import argparse

from flowhf.cli.flags import add_run_dir_flags, add_set_flag
from flowhf.config.preset import PRESETS, STAGES


def add_reproduce_parser(subparsers) -> argparse.ArgumentParser:
    """Register `flowhf reproduce` (sets ``args.func``)."""
    parser = subparsers.add_parser(
        "reproduce",
        help="Run the report's full comparison (SFT, RM, PPO, GRPO, TB, FL, FlowHF, eval, report).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        default="smoke",
        metavar="NAME_OR_FILE",
        help=f"Models, data and budget: one of {', '.join(sorted(PRESETS))}, or a preset YAML file "
        "(`base: smoke` plus the keys to change; keys as in flowhf/config/preset.py).",
    )
    add_set_flag(
        parser,
        "Change one preset key, e.g. --set eval_n=8 --set budget.max_steps=5 (checked like the file).",
    )
    parser.add_argument(
        "--output-dir", required=True, help="Folder for every stage's outputs and report.md."
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="STAGE",
        choices=STAGES,
        help=f"Run only these of {list(STAGES)}.",
    )
    add_run_dir_flags(
        parser,
        resume="Continue the reproduce in --output-dir: verified stages are skipped, FlowHF stages "
        "continue from their checkpoint, other unfinished stages rerun from an emptied folder.",
        overwrite="Delete the reproduce already in --output-dir and start again.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="Print the plan; load nothing, write nothing."
    )
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from flowhf.experiments.reproduce.presets import load_preset
    from flowhf.experiments.reproduce.reproduce import (
        build_plan,
        format_plan,
        report_summary,
        require_trl_for,
        run_reproduce,
    )

    if not args.dry_run:
        require_trl_for(args.only or list(STAGES))  # first: TRL missing is the one thing to fix
    preset = load_preset(args.preset, args.set)  # every value checked before anything loads
    if args.dry_run:
        print(format_plan(build_plan(preset, args.output_dir, args.only)))
        return 0
    results = run_reproduce(
        preset, args.output_dir, args.only, args.resume, overwrite=args.overwrite
    )
    if "report" in results and "report" in results["report"]:
        print(report_summary(results["report"]["report"]))
    return 0
