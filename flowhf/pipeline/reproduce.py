"""`flowhf reproduce`: every stage of the report's comparison, cached per stage.

Stages run in order (see ``presets.STAGES``). Each writes ``DIR/<stage>/DONE`` holding its
JSON result; a stage with DONE is skipped on a re-run, one without is rerun (the FlowHF
trainer stages continue from their last checkpoint with --resume). ``--dry-run`` prints the
plan and writes nothing, loads nothing and touches no network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from flowhf.pipeline.presets import PRESETS, STAGES, get_preset
from flowhf.pipeline.progress import RunClock, StageProgress, format_seconds


def build_plan(preset_name: str, output_dir: str | os.PathLike, only: list[str] | None = None) -> dict[str, Any]:
    """The full plan (preset settings, stages to run, budgets, GPU-hour estimate) as a dict."""
    preset = get_preset(preset_name)
    bad = sorted(set(only or []) - set(STAGES))
    if bad:
        raise ValueError(f"unknown stage(s) {bad} in --only; stages are {list(STAGES)}")
    stages = [s for s in STAGES if not only or s in only]
    plan = {"preset": preset.to_dict(), "output_dir": str(output_dir), "stages": stages,
            "budget_per_method": preset.budget}
    if preset.stage_hours:
        plan["estimated_gpu_hours"] = sum(preset.stage_hours.get(s, 0) for s in stages)
    return plan


def format_plan(plan: dict[str, Any]) -> str:
    """Human-readable plan printed by --dry-run and at the start of a run."""
    p = plan["preset"]
    lines = [f"flowhf reproduce: preset {p['name']} -> {plan['output_dir']}",
             f"  policy:           {p['policy']}",
             f"  SFT data:         {p['sft_data']}",
             f"  train prompts:    {p['train_prompts']}",
             f"  eval prompts:     {p['eval_prompts']} (Table 1), {p['toxicity_prompts']} (Table 2)",
             f"  SE reward:        {p['se_reward'] or 'trained in stage reward_model: ' + json.dumps(p['reward_model'])}",
             f"  toxicity reward:  {p['toxicity_reward']}",
             f"  budget / method:  {json.dumps(p['budget'])} (SFT: {json.dumps(p['sft_budget'] or p['budget'])})",
             f"  eval:             n={p['eval_n']}, K={p['eval_k']}, max_new_tokens={p['eval_max_new_tokens']}, "
             f"temperature={p['eval_temperature']}",
             f"  hardware:         {p['gpu']}" + (f", accelerate config {p['accelerate_config']}" if p["accelerate_config"] else ""),
             "  stages:           " + " -> ".join(plan["stages"])]
    if p["accelerate_config"]:
        lines.append(f"  launch:           accelerate launch --config_file {p['accelerate_config']} "
                     f"-m flowhf.cli reproduce --preset {p['name']} --output-dir {plan['output_dir']}")
    if p["stage_seconds"]:
        total = sum(p["stage_seconds"].get(s, 0) for s in plan["stages"])
        lines.append(f"  estimated wall-clock: {format_seconds(total)} for the planned stages")
    if "estimated_gpu_hours" in plan:
        lines.append(f"  estimated GPU hours: {plan['estimated_gpu_hours']} "
                     f"(per stage: {json.dumps(p['stage_hours'])})")
    lines += [f"  note: {n}" for n in p["notes"]]
    return "\n".join(lines)


def read_done(stage_dir: Path) -> dict[str, Any] | None:
    """The cached result of a finished stage, or None when it has not finished."""
    done = stage_dir / "DONE"
    if not done.is_file():
        return None
    try:
        return json.loads(done.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{done}: not valid JSON ({err}); delete it to rerun the stage") from err


# Stages one process runs alone; in a multi-process launch the others wait for reward_model
# (later stages need it) and stop before eval/report (long single-process work: a barrier
# would time out).
MAIN_ONLY_STAGES = ("reward_model", "eval", "report")
NO_BARRIER_STAGES = tuple(s for s in MAIN_ONLY_STAGES if s != "reward_model")


def run_reproduce(preset_name: str, output_dir: str | os.PathLike, only: list[str] | None = None,
                  resume: bool = False, log=print) -> dict[str, dict]:
    """Run (or skip when cached) every planned stage; returns {stage: result}.

    Under ``torchrun`` / ``accelerate launch`` every process runs the training stages (the TRL
    and FlowHF trainers are data-parallel); rank 0 alone writes plan.json and DONE files and
    runs the reward model, evaluation and report.
    """
    from flowhf import distributed
    from flowhf.pipeline.stages import STAGE_FUNCS, Context

    distributed.init_process_group()
    main = distributed.is_main_process()
    out = Path(output_dir)
    plan = build_plan(preset_name, out, only)
    ctx = Context(preset=get_preset(preset_name), out=out, resume=resume)
    cached = {s: read_done(ctx.stage_dir(s)) for s in STAGES}  # decided once, before any process writes
    distributed.barrier()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "plan.json").write_text(json.dumps(plan, indent=2), encoding="utf-8")
        log(format_plan(plan))
    else:
        log = lambda *_: None  # noqa: E731  (one process prints)
    to_run = [s for s in plan["stages"] if cached[s] is None]
    clock = RunClock(to_run, ctx.preset.stage_seconds)
    run_started = time.perf_counter()
    for stage in STAGES:  # earlier finished stages feed later ones even when not selected
        if cached[stage] is not None:
            ctx.results[stage] = cached[stage]
            if stage in plan["stages"]:
                log(f"[reproduce] {stage}: skipped (DONE exists)")
            continue
        if stage not in plan["stages"]:
            continue
        if not main and stage in MAIN_ONLY_STAGES:
            if stage == "reward_model":
                distributed.barrier()  # rank 0 trains it and writes DONE
                ctx.results[stage] = read_done(ctx.stage_dir(stage))
            continue
        distributed.init_process_group()
        started = time.perf_counter()
        with StageProgress(stage, to_run.index(stage) + 1, clock, log=log) if main else contextlib.nullcontext():
            result = STAGE_FUNCS[stage](ctx)
        result = {**result, "seconds": round(time.perf_counter() - started, 1)}
        clock.finish(stage, result["seconds"])
        if main:
            ctx.stage_dir(stage).mkdir(parents=True, exist_ok=True)
            (ctx.stage_dir(stage) / "DONE").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        ctx.results[stage] = result
        if stage not in NO_BARRIER_STAGES:
            distributed.barrier()
        log(f"[reproduce] {stage}: done in {result['seconds']} s "
            f"(run so far {format_seconds(time.perf_counter() - run_started)}, ETA {format_seconds(clock.remaining())})")
    return ctx.results


def add_reproduce_parser(subparsers) -> argparse.ArgumentParser:
    """Register `flowhf reproduce` (sets ``args.func``)."""
    parser = subparsers.add_parser(
        "reproduce", help="Run the report's full comparison (SFT, RM, PPO, GRPO, TB, FL, FlowHF, eval, report).",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smoke", help="Models, data and budget.")
    parser.add_argument("--output-dir", required=True, help="Folder for every stage's outputs and report.md.")
    parser.add_argument("--only", nargs="+", metavar="STAGE", choices=STAGES, help=f"Run only these of {list(STAGES)}.")
    parser.add_argument("--resume", action="store_true", help="Unfinished FlowHF stages continue from their checkpoint.")
    parser.add_argument("--dry-run", action="store_true", help="Print the plan; load nothing, write nothing.")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    if args.dry_run:
        print(format_plan(build_plan(args.preset, args.output_dir, args.only)))
        return 0
    results = run_reproduce(args.preset, args.output_dir, args.only, args.resume)
    if "report" in results and "report" in results["report"]:
        print(report_summary(results["report"]["report"]))
    return 0


def report_summary(report_path: str | os.PathLike) -> str:
    """Table 1, Table 2 and the time-to-reach table of a report.md, then the report's path."""
    keep, lines = False, []
    for line in Path(report_path).read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            keep = line.startswith(("## Table 1", "## Table 2", "## Time to reach"))
        if keep and not line.startswith("Cells:"):
            lines.append(line)
    return "\n".join(lines + ["", f"Full report (plots, t-tests, wall-clock per stage): {Path(report_path).resolve()}"])


if __name__ == "__main__":  # python -m flowhf.pipeline.reproduce ...
    _parser = argparse.ArgumentParser(prog="flowhf")
    add_reproduce_parser(_parser.add_subparsers(dest="command", required=True))
    _args = _parser.parse_args()
    raise SystemExit(_args.func(_args))
