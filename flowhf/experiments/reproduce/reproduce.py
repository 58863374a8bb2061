"""The `flowhf reproduce` pipeline (flags: `flowhf.cli.reproduce`): every stage of the report's
comparison, cached per stage.

Stages run in order (``flowhf.config.preset.STAGES``). Each writes ``DIR/<stage>/DONE`` (last,
by rename) holding its JSON result and the size of every output it wrote; on ``--resume`` a
stage is skipped only when its DONE verifies (every output listed still there, same size).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from flowhf.config.preset import BASELINE_METHODS, FLOWHF_METHODS, STAGES, Preset
from flowhf.errors import ConfigError
from flowhf.experiments.reproduce.presets import load_preset
from flowhf.experiments.reproduce.progress import RunClock, StageProgress, format_seconds


def build_plan(
    preset: str | Preset, output_dir: str | os.PathLike, only: list[str] | None = None
) -> dict[str, Any]:
    """The full plan (preset settings, stages to run, budgets, GPU-hour estimate) as a dict;
    ``preset``: a `Preset` or what `load_preset` reads (a shipped name or a preset file)."""
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    bad = sorted(set(only or []) - set(STAGES))
    if bad:
        raise ConfigError(
            f"unknown stage(s) {bad} in --only; stages are {list(STAGES)}",
            "pick stages from that list",
        )
    stages = [s for s in STAGES if not only or s in only]
    plan = {
        "preset": preset.to_dict(),
        "output_dir": str(output_dir),
        "stages": stages,
        "budget_per_method": preset.budget,
    }
    if preset.stage_hours:
        plan["estimated_gpu_hours"] = sum(preset.stage_hours.get(s, 0) for s in stages)
    return plan


def format_plan(plan: dict[str, Any]) -> str:
    """Human-readable plan printed by --dry-run and at the start of a run."""
    p = plan["preset"]
    lines = [
        f"flowhf reproduce: preset {p['name']} -> {plan['output_dir']}",
        f"  policy:           {p['policy']}",
        f"  SFT data:         {p['sft_data']}",
        f"  train prompts:    {p['train_prompts']}",
        f"  eval prompts:     {p['eval_prompts']} (Table 1), {p['toxicity_prompts']} (Table 2)",
        f"  SE reward:        {p['se_reward'] or 'trained in stage reward_model: ' + json.dumps(p['reward_model'])}",
        f"  gold judge:       {p['gold_reward'] or ('trained beside the proxy (flowhf.config.reward_model.proxy_and_gold)' if not p['se_reward'] else 'the SE reward itself (no gold)')}",
        f"  toxicity reward:  {p['toxicity_reward']}",
        f"  budget / method:  {json.dumps(p['budget'])} (SFT: {json.dumps(p['sft_budget'] or p['budget'])})",
        f"  eval:             n={p['eval_n']}, K={p['eval_k']}, max_new_tokens={p['eval_max_new_tokens']}, "
        f"temperature={p['eval_temperature']}",
        f"  hardware:         {p['gpu']}"
        + (f", accelerate config {p['accelerate_config']}" if p["accelerate_config"] else ""),
        f"  per-prompt:       {json.dumps(p['per_prompt']) if p['per_prompt'] is not None else 'off'}",
        f"  sweep:            {json.dumps(p['sweep'])} x seeds {p['sweep_seeds']}"
        if p["sweep"]
        else "  sweep:            none",
        "  stages:           " + " -> ".join(plan["stages"]),
    ]
    if p["accelerate_config"]:
        lines.append(
            f"  launch:           accelerate launch --config_file {p['accelerate_config']} "
            f"-m flowhf.cli reproduce --preset {p['name']} --output-dir {plan['output_dir']}"
        )
    if p["stage_seconds"]:
        total = sum(p["stage_seconds"].get(s, 0) for s in plan["stages"])
        lines.append(f"  estimated wall-clock: {format_seconds(total)} for the planned stages")
    if "estimated_gpu_hours" in plan:
        lines.append(
            f"  estimated GPU hours: {plan['estimated_gpu_hours']} "
            f"(per stage: {json.dumps(p['stage_hours'])})"
        )
    lines += [f"  note: {n}" for n in p["notes"]]
    return "\n".join(lines)


def read_done(stage_dir: Path, log=print) -> dict[str, Any] | None:
    """The cached result of a finished stage, or None when it must run: no DONE, or a DONE
    that does not verify (unreadable, or an output it lists missing or of another size)."""
    done = stage_dir / "DONE"
    if not done.is_file():
        return None
    try:
        result = json.loads(done.read_text(encoding="utf-8"))
        problem = _unverified(stage_dir.parent, result.get("outputs"))
    except (json.JSONDecodeError, AttributeError) as err:
        problem = f"DONE is not a JSON object ({err})"
    if problem:
        log(f"[reproduce] {stage_dir.name}: DONE not trusted ({problem}); the stage runs again")
        return None
    return result


def _unverified(root: Path, outputs: dict | None) -> str | None:
    if outputs is None:
        return "it lists no outputs"
    for rel, size in outputs.items():
        path = root / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != size:
            return f"{rel} has {path.stat().st_size} bytes, DONE recorded {size}"
    return None


def stage_outputs(root: Path, stage_dir: Path, result: dict) -> dict[str, int]:
    """{path relative to the run folder: size} of the stage folder's files and of files the
    result names elsewhere (report.md)."""
    files = (
        [p for p in stage_dir.rglob("*") if p.is_file() and p.name != "DONE"]
        if stage_dir.is_dir()
        else []
    )
    files += [Path(v) for v in result.values() if isinstance(v, str) and Path(v).is_file()]
    return {
        str(p.resolve().relative_to(root.resolve())): p.stat().st_size
        for p in dict.fromkeys(files)
        if p.resolve().is_relative_to(root.resolve())
    }


def fresh_stage_dir(ctx, stage: str) -> None:
    """An unfinished stage never starts from another attempt's leftovers: its folder is
    emptied, except a FlowHF stage resumed from its own checkpoints (config checked on resume)
    and a resumed sweep, which keeps its finished points."""
    import shutil

    directory = ctx.stage_dir(stage)
    if ctx.resume and stage in FLOWHF_METHODS and (directory / "checkpoints").is_dir():
        return
    if ctx.resume and stage == "sweep":  # finished points are kept (experiments/reproduce/sweep.py)
        return
    if directory.exists():
        shutil.rmtree(directory)


# Stages one process runs alone; in a multi-process launch the others wait for reward_model
# (later stages need it) and stop before eval/report (long single-process work: a barrier
# would time out).
MAIN_ONLY_STAGES = ("reward_model", "eval", "report")
NO_BARRIER_STAGES = tuple(s for s in MAIN_ONLY_STAGES if s != "reward_model")


def run_reproduce(
    preset: str | Preset,
    output_dir: str | os.PathLike,
    only: list[str] | None = None,
    resume: bool = False,
    log=print,
    overwrite: bool = False,
) -> dict[str, dict]:
    """Run (or skip when cached) every planned stage; returns {stage: result}.

    Under ``torchrun`` / ``accelerate launch`` every process runs the training stages (the TRL
    and FlowHF trainers are data-parallel); rank 0 alone writes plan.json and DONE files and
    runs the reward model, evaluation and report.
    """
    from flowhf.run_dir import claim_run_dir

    preset = (
        preset if isinstance(preset, Preset) else load_preset(preset)
    )  # checked before the folder is touched
    plan = build_plan(preset, output_dir, only)
    require_trl_for(plan["stages"], preset)
    with claim_run_dir(output_dir, resume, overwrite, log=log):
        return _run_stages(preset, Path(output_dir), plan, resume, log)


def require_trl_for(stages: list[str], preset: Preset | None = None) -> None:
    """A `MissingExtra` error, before anything loads, when a planned stage trains with TRL (SFT,
    PPO, GRPO, a sweep of ``preset`` with PPO / GRPO points) and TRL (with PPO when PPO runs)
    is absent. Without ``preset`` (before it is read) the sweep is not looked at."""
    from flowhf.experiments.baselines.requires import require_trl
    from flowhf.experiments.reproduce.grid import sweep_points

    methods = set(stages) & {"sft", *BASELINE_METHODS}
    if "sweep" in stages and preset is not None:
        methods |= {p.method for p in sweep_points(preset)} & set(BASELINE_METHODS)
    if methods:
        require_trl(f"flowhf reproduce (stages {', '.join(sorted(methods))})", ppo="ppo" in methods)


def _stage_functions() -> dict:
    """Stage name -> its function (imported here: the stages load torch and TRL)."""
    from flowhf.experiments.reproduce import report_stage, stages
    from flowhf.experiments.reproduce.sweep import stage_sweep

    return {
        "sft": stages.stage_sft,
        "reward_model": stages.stage_reward_model,
        "ppo": stages.stage_ppo,
        "grpo": stages.stage_grpo,
        **{m: stages.flowhf_stage(m) for m in FLOWHF_METHODS},
        "eval": stages.stage_eval,
        "sweep": stage_sweep,
        "report": report_stage.stage_report,
    }


def _timed(stage_function, ctx, bar) -> dict:
    """The stage's result, run under its progress ``bar``, with the seconds it took."""
    started = time.perf_counter()
    with bar:
        result = stage_function(ctx)
    return {**result, "seconds": round(time.perf_counter() - started, 1)}


def _write_done(ctx, stage: str, result: dict) -> None:
    """The stage's DONE (written last, by rename): its result and the size of every output."""
    from flowhf.io import atomic_write_text

    ctx.stage_dir(stage).mkdir(parents=True, exist_ok=True)
    result["outputs"] = stage_outputs(ctx.out, ctx.stage_dir(stage), result)
    atomic_write_text(ctx.stage_dir(stage) / "DONE", json.dumps(result, indent=2, default=str))


def _run_stages(preset: Preset, out: Path, plan: dict, resume: bool, log) -> dict[str, dict]:
    from transformers.utils import logging as hf_logging

    from flowhf import distributed
    from flowhf.experiments.reproduce.stages import Context
    from flowhf.io import atomic_write_text

    stage_funcs = _stage_functions()

    hf_logging.disable_progress_bar()  # one bar per stage, not one per weight load
    distributed.init_process_group()
    main = distributed.is_main_process()
    ctx = Context(preset=preset, out=out, resume=resume)
    cached = {
        s: read_done(ctx.stage_dir(s), log if main else (lambda *_: None)) for s in STAGES
    }  # decided once
    distributed.barrier()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "plan.json", json.dumps(plan, indent=2))
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
                log(f"[reproduce] {stage}: skipped (DONE verified)")
            continue
        if stage not in plan["stages"]:
            continue
        if not main and stage in MAIN_ONLY_STAGES:
            if stage == "reward_model":
                distributed.barrier()  # rank 0 trains it and writes DONE
                ctx.results[stage] = read_done(ctx.stage_dir(stage))
            continue
        distributed.init_process_group()
        if main:
            fresh_stage_dir(ctx, stage)
        if stage not in MAIN_ONLY_STAGES:
            distributed.barrier()  # no process starts the stage before its folder is ready
        bar = (
            StageProgress(stage, to_run.index(stage) + 1, clock, log=log)
            if main
            else contextlib.nullcontext()
        )
        result = _timed(stage_funcs[stage], ctx, bar)
        clock.finish(stage, result["seconds"])
        if main:
            _write_done(ctx, stage, result)
        ctx.results[stage] = result
        if stage not in NO_BARRIER_STAGES:
            distributed.barrier()
        log(
            f"[reproduce] {stage}: done in {result['seconds']} s "
            f"(run so far {format_seconds(time.perf_counter() - run_started)}, ETA {format_seconds(clock.remaining())})"
        )
    return ctx.results


def report_summary(report_path: str | os.PathLike) -> str:
    """Table 1, Table 2 and the time-to-reach table of a report.md, then the report's path."""
    keep, lines = False, []
    for line in Path(report_path).read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            keep = line.startswith(("## Table 1", "## Table 2", "## Time to reach"))
        if keep and not line.startswith("Cells:"):
            lines.append(line)
    return "\n".join(
        lines
        + ["", f"Full report (plots, t-tests, wall-clock per stage): {Path(report_path).resolve()}"]
    )
