"""Stage ``sweep`` of `flowhf reproduce`: each method's regularisation knob on a grid, over seeds.

One comparison point says little: a method can buy reward with diversity and back. Every point
of ``Preset.sweep`` (method, knob value, seed) trains from the SFT model with the preset's one
budget and is judged like the main evaluation's per-prompt table: k answers to each of the same
prompts, gold and proxy rewards, per-prompt diversity. `flowhf.experiments.analysis.frontier` turns the
points into the frontier (gold reward against per-prompt diversity, one line per method, mean and
95% interval across seeds) and the matched-gold tests of the report.

Resumable point by point: ``sweep/<point>/result.json`` is written last, and a point holding one
is skipped on ``--resume``; a FlowHF point continues from its own checkpoints, a TRL point
restarts from an emptied folder. Points run seed by seed (every method's seed-0 frontier first),
and ``sft`` (the shared start) is measured once per seed as every line's origin.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flowhf.config.preset import BASELINE_METHODS
from flowhf.errors import ConfigError
from flowhf.experiments.reproduce.grid import SweepPoint, sweep_points
from flowhf.experiments.reproduce.stages import train_baseline, train_flowhf

RESULT = "result.json"


def stage_sweep(ctx) -> dict[str, Any]:
    """Train and judge every point not finished yet; returns {point name: result}. Under a
    multi-process launch every process trains (data-parallel) and the main one judges and writes."""
    from flowhf import distributed
    from flowhf.io import atomic_write_text

    main, points, results = distributed.is_main_process(), sweep_points(ctx.preset), {}
    start = start_models(ctx)
    for number, point in enumerate(points, start=1):
        folder = ctx.stage_dir("sweep") / point.name
        if (folder / RESULT).is_file():
            results[point.name] = check_start(
                json.loads((folder / RESULT).read_text(encoding="utf-8")), start, folder / RESULT
            )
            continue
        if main:
            print(f"[reproduce] sweep point {number}/{len(points)}: {point.name}", flush=True)
            resumable = (
                point.method not in BASELINE_METHODS and (folder / "train" / "checkpoints").is_dir()
            )
            if folder.exists() and not resumable:
                shutil.rmtree(
                    folder
                )  # a TRL run, or a FlowHF one without a checkpoint, restarts whole
        distributed.barrier()
        trained = train_point(ctx, point, folder / "train")
        if main:
            result = {
                **asdict(point),
                "name": point.name,
                "model_dir": trained["model_dir"],
                "start": start,
                "steps": trained.get("steps", (trained.get("result") or {}).get("steps")),
                "metrics": judge_point(ctx, trained["model_dir"], point.seed),
            }
            folder.mkdir(parents=True, exist_ok=True)  # (the SFT start trains nothing into it)
            atomic_write_text(
                folder / RESULT, json.dumps(result, indent=2, default=str)
            )  # last: the point is done
            results[point.name] = result
        distributed.barrier()
    return {"points": results, "sweep_dir": str(ctx.stage_dir("sweep"))}


def start_models(ctx) -> dict[str, str]:
    """SHA-256 of what every point starts from: the SFT model's weights and each reward model's
    (a given reward spec stands for itself). A point records it, so that points finished in
    another run folder (another session, restored from a commit) are only mixed with points
    of the same start: the SFT and reward-model stages are deterministic on one machine type,
    and this checks it rather than assumes it."""
    from flowhf.models.cache import file_sha256

    out = {}
    for name, where in (
        ("sft", ctx.model_dir("sft")),
        ("proxy", ctx.se_reward()),
        ("gold", ctx.gold_reward()),
    ):
        folder = Path(where.removeprefix("classifier:").split("#")[0])
        files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        out[name] = ",".join(file_sha256(f)[:16] for f in files) if files else where
    return out


def check_start(result: dict, start: dict[str, str], path: Path) -> dict:
    """``result`` when it was trained from ``start`` (or predates the record); else a clear error."""
    theirs = result.get("start")
    if theirs is not None and theirs != start:
        differ = ", ".join(k for k in start if theirs.get(k) != start[k])
        raise ConfigError(
            f"{path}: this sweep point was trained from other start models ({differ} differ) than "
            "this run's SFT / reward-model stages; mixing them would compare unlike runs",
            "delete the point's folder to retrain it here, or resume the run folder it came from",
        )
    return result


def train_point(ctx, point: SweepPoint, out: Path) -> dict[str, Any]:
    """Train one point from the SFT model (the SFT start itself is not retrained)."""
    if point.method == "sft":
        return {"model_dir": ctx.model_dir("sft")}
    if point.method in BASELINE_METHODS:
        return train_baseline(ctx, point.method, out, {point.knob: point.value, "seed": point.seed})
    return train_flowhf(
        ctx,
        point.method,
        out,
        [f"{point.knob}={point.value}", f"optim.seed={point.seed}"],
        resume=(out / "checkpoints").is_dir(),
    )


def judge_point(ctx, model_dir: str, seed: int) -> dict[str, float]:
    """Per-prompt metrics of one model (`flowhf.evaluation.per_prompt`), gold and proxy, plus the
    completion-level gold-vs-proxy gap and reward-length correlations (`completion_level`)."""
    from flowhf.config.evaluation import GenerationSettings, PerPromptSettings
    from flowhf.evaluation.embeddings import Embedder
    from flowhf.evaluation.per_prompt import completion_level, evaluate_per_prompt, summarise
    from flowhf.evaluation.runner import load_model, release_memory
    from flowhf.evaluation.sampling import SamplingPlan
    from flowhf.evaluation.tasks import task_inputs
    from flowhf.rewards import build_reward

    p = ctx.preset
    inputs = task_inputs("stackexchange", prompts_source=p.eval_prompts)
    rewards = {"reward": build_reward(ctx.gold_reward())}
    if ctx.gold_reward() != ctx.se_reward():
        rewards["proxy_reward"] = build_reward(ctx.se_reward())
    settings = PerPromptSettings(**(p.per_prompt or {}))
    gen = GenerationSettings(max_new_tokens=p.eval_max_new_tokens, batch_size=16)
    _, model, tokenizer, _ = load_model(model_dir)
    plan = SamplingPlan(inputs.prompts, gen, seed, inputs.reward_columns or {})
    rows = evaluate_per_prompt(model, tokenizer, plan, rewards, settings, Embedder())
    model = None
    release_memory()
    metrics, ci = summarise(rows, p.n_boot, seed)
    return {**metrics, **completion_level(rows, ctx.judge_scales()), "ci": ci}
