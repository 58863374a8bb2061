"""Evaluate several models the way the report's section 4.4 does, and write every output.

For each model: generate one completion for each of ``n`` test prompts, score them with the
reward, compute the metrics (reward stats, top-K diversity / novelty, extras), their
bootstrap intervals, and Welch's one-sided t-test of every model's rewards against the
baseline's. Outputs in ``output_dir``: metrics.json, completions.jsonl, report.md,
score_distributions.png and, when training run dirs are given, training_curves.png.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from flowhf.config.budget import Progress, progress_is_shown, publish_progress
from flowhf.errors import ConfigError
from flowhf.evaluation.embeddings import TextEmbedder
from flowhf.evaluation.generation import GenerationSettings
from flowhf.evaluation.metrics import compute_metrics
from flowhf.evaluation.per_prompt import PerPromptSettings, evaluate_per_prompt, summarise
from flowhf.evaluation.plots import plot_score_distributions, plot_training_curves
from flowhf.evaluation.report import (
    jsonable,
    write_completions_jsonl,
    write_metrics_json,
    write_report_md,
)
from flowhf.evaluation.sampling import length_metrics, sample_and_score, score  # noqa: F401  (also importable here)
from flowhf.evaluation.stats import metric_cis, welch_one_sided
from flowhf.io import atomic_write_text

logger = logging.getLogger(__name__)

# A model is a path / Hub id (loaded with flowhf.models.loading), a (name, path) pair (a path
# shown under another name), or an already-built (name, model, tokenizer) triple (tests,
# notebooks, a model still in memory after training).
ModelSpec = str | os.PathLike | tuple[str, Any] | tuple[str, Any, Any]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(spec: ModelSpec, device: str | None = None) -> tuple[str, Any, Any, bool]:
    """(display name, model, tokenizer, loaded_here) for one model spec.

    A model loaded here is moved to ``device`` (default: CUDA when available); a given
    (name, model, tokenizer) triple stays where its owner put it.
    """
    name = None
    if isinstance(spec, tuple):
        if len(spec) == 2:
            name, spec = spec
        elif len(spec) == 3:
            name, model, tokenizer = spec
            return str(name), model, tokenizer, False
        else:
            raise ValueError(
                "a model given as a tuple must be (name, path) or (name, model, tokenizer)"
            )
    try:
        from flowhf.models.loading import load_causal_lm
    except ImportError as err:
        raise ImportError(
            f"cannot load {spec!r}: flowhf.models.loading.load_causal_lm is unavailable ({err}); "
            "pass (name, model, tokenizer) instead"
        ) from err
    model, tokenizer = load_causal_lm(str(spec))
    return str(name or spec), model.to(device or default_device()), tokenizer, True


def _spec_name(spec: ModelSpec) -> str:
    return str(spec[0]) if isinstance(spec, tuple) else str(spec)


def select_prompts(prompts: Sequence[str], n: int) -> tuple[list[str], int]:
    """The first ``n`` prompts; with fewer than ``n`` they are cycled (and a warning says so)."""
    if not prompts:
        raise ConfigError(
            "no evaluation prompts", "pass --prompts FILE or a task with a test split"
        )
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise ValueError(f"prompt {bad[0]} is empty or not a string ({len(bad)} such prompts)")
    if len(prompts) < n:
        warnings.warn(
            f"only {len(prompts)} prompts for n={n}: cycling them, so some prompts get several "
            "completions (lower --n to evaluate each prompt once)",
            stacklevel=3,
        )
    return [prompts[i % len(prompts)] for i in range(n)], min(len(prompts), n)


def release_memory() -> None:
    """Collect a dropped model now, so the next one does not load beside it."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _select_columns(columns: Mapping[str, Sequence], n_prompts: int, n: int) -> dict[str, list]:
    """Reward columns aligned with ``prompts``, selected exactly as ``select_prompts`` does."""
    for key, values in columns.items():
        if len(values) != n_prompts:
            raise ValueError(
                f"reward column {key!r} has {len(values)} rows for {n_prompts} prompts"
            )
    return {key: [values[i % n_prompts] for i in range(n)] for key, values in columns.items()}


def evaluate_models(
    models: Sequence[ModelSpec],
    prompts: Sequence[str],
    reward: Callable,
    *,
    reference_completions: Sequence[str] | None,
    n: int,
    k: int,
    generation: GenerationSettings,
    embedder: TextEmbedder,
    seed: int,
    output_dir: str | os.PathLike,
    run_dirs: Mapping[str, str | os.PathLike] | None = None,
    baseline: str | None = None,
    reference_model: ModelSpec | None = None,
    task: str = "custom",
    n_boot: int = 1000,
    alpha: float = 0.05,
    reward_columns: Mapping[str, Sequence] | None = None,
    device: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    judges: Mapping[str, Callable] | None = None,
    per_prompt: PerPromptSettings | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``models`` on ``n`` prompts and write all outputs; returns one result per model.

    ``reward_columns`` are extra per-prompt columns passed to the reward (aligned with the
    selected prompts). ``reference_model`` adds a per-token KL of each model's samples to it.
    ``metadata`` (e.g. the reward spec and data sources) is recorded in metrics.json.
    ``judges`` are more rewards scoring the same completions (e.g. ``{"proxy": proxy_rm}`` beside
    a gold ``reward``): metric ``NAME_reward`` and a field per completion. ``per_prompt`` adds the
    per-prompt diversity metrics (`flowhf.evaluation.per_prompt`, prefix ``pp_``, per_prompt.jsonl).
    Each result holds ``model``, ``metrics``, ``ci`` plus ``rewards`` and ``completions``.
    """
    if not models:
        raise ValueError("evaluate_models needs at least one model")
    if n < 1 or not 1 <= k <= n:  # user errors (ConfigError), raised before any model loads
        raise ConfigError(
            f"n={n}, top-k={k}: need n >= 1 and 1 <= top-k <= n", "change --n / --top-k"
        )
    names = [_spec_name(m) for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique, got {names}", "give each --model once")
    if baseline is not None and baseline not in names:
        raise ConfigError(
            f"baseline {baseline!r} is not one of the evaluated models {names}",
            "--baseline takes one of the --model values as written",
        )
    if reference_completions is not None and len(reference_completions) == 0:
        raise ValueError("reference_completions is empty: pass None to skip novelty")
    eval_prompts, n_unique = select_prompts(prompts, n)
    columns = _select_columns(reward_columns or {}, len(prompts), n)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    ref_emb = embedder.embed_cached(list(reference_completions)) if reference_completions else None
    reference, ref_name, ref_loaded_here = None, None, False
    if reference_model is not None:
        ref_name, ref_m, ref_tok, ref_loaded_here = load_model(reference_model, device)
        reference = (ref_m.eval(), ref_tok)

    results, records, per_prompt_records = [], [], []
    for number, spec in enumerate(
        tqdm(
            models,
            desc=f"evaluating ({task})",
            unit="model",
            leave=False,
            disable=progress_is_shown(),
        )
    ):  # (a reproduce stage bar shows it instead)
        publish_progress(Progress(number, len(models), f"models ({task})"))
        name, model, tokenizer, loaded_here = load_model(spec, device)
        if reference is not None and len(reference[1]) != len(tokenizer):
            raise ValueError(
                f"reference model {ref_name!r} has a {len(reference[1])}-token vocabulary but "
                f"{name!r} has {len(tokenizer)}: KL needs the same tokenizer"
            )
        sampled = sample_and_score(
            name, model, tokenizer, eval_prompts, reward, generation, seed, columns, reference
        )
        kl = None
        if reference is not None:
            kl = float(sampled["kl_sums"].sum() / max(sampled["kl_counts"].sum(), 1.0))
        emb = embedder.embed(sampled["completions"])
        metrics = compute_metrics(
            sampled["rewards"],
            sampled["completions"],
            emb,
            ref_emb,
            k,
            tokenizer=tokenizer,
            kl_per_token=kl,
        )
        cis = metric_cis(
            sampled["rewards"],
            emb,
            ref_emb,
            k,
            completions=sampled["completions"],
            tokenizer=tokenizer,
            kl_sums=sampled.get("kl_sums"),
            kl_counts=sampled.get("kl_counts"),
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
        )
        extra = _judge_scores(judges or {}, eval_prompts, sampled, columns, name)
        metrics.update(length_metrics(sampled["rewards"], sampled["ended"], sampled["lengths"]))
        metrics.update(
            {f"{judge}_reward": float(np.mean(values)) for judge, values in extra.items()}
        )
        result = {
            "model": name,
            "metrics": metrics,
            "ci": cis,
            "rewards": sampled["rewards"].tolist(),
            "completions": sampled["completions"],
        }
        if per_prompt is not None:
            rows = evaluate_per_prompt(
                model,
                tokenizer,
                eval_prompts[:n_unique],
                {"reward": reward, **{f"{j}_reward": fn for j, fn in (judges or {}).items()}},
                per_prompt,
                generation,
                embedder,
                seed,
                columns,
            )
            pp_metrics, pp_ci = summarise(rows, n_boot, seed, alpha)
            metrics.update({f"pp_{key}": value for key, value in pp_metrics.items()})
            cis.update({f"pp_{key}": value for key, value in pp_ci.items()})
            per_prompt_records += [{"model": name, **row} for row in rows]
        results.append(result)
        records += [
            {
                "model": name,
                "index": i,
                "prompt": p,
                "completion": c,
                "reward": float(r),
                "ended": bool(sampled["ended"][i]),
                "length": int(sampled["lengths"][i]),
                **{f"{judge}_reward": float(values[i]) for judge, values in extra.items()},
            }
            for i, (p, c, r) in enumerate(
                zip(eval_prompts, sampled["completions"], sampled["rewards"])
            )
        ]
        model = None  # drop our reference; a model we loaded is then freed before the next
        if loaded_here:
            release_memory()
    if ref_loaded_here:
        reference = None
        release_memory()

    tests = welch_tests(results, baseline)
    files = write_outputs(
        results,
        records,
        tests,
        output_dir,
        task=task,
        n=n,
        k=k,
        baseline=baseline,
        run_dirs=run_dirs,
    )
    if per_prompt is not None:
        text = "".join(
            json.dumps(jsonable(row), ensure_ascii=False) + "\n" for row in per_prompt_records
        )
        files["per_prompt"] = atomic_write_text(output_dir / "per_prompt.jsonl", text).name
    payload = {
        **dict(metadata or {}),
        "task": task,
        "n": n,
        "k": k,
        "n_unique_prompts": n_unique,
        "seeds": {"generation": seed, "bootstrap": seed},
        "bootstrap": {
            "n_boot": n_boot,
            "alpha": alpha,
            "resampling": "completions, top-K re-selected per resample",
        },
        "generation": dataclasses.asdict(generation),
        "embedding_model": getattr(embedder, "name", type(embedder).__name__),
        "reference_completions": len(reference_completions) if reference_completions else None,
        "reward_columns": sorted(columns),
        "reference_model": ref_name,
        "baseline": baseline,
        "tests": tests,
        "files": files,
        "judges": sorted(judges or {}),
        "per_prompt": dataclasses.asdict(per_prompt) if per_prompt is not None else None,
        "models": [{key: r[key] for key in ("model", "metrics", "ci")} for r in results],
    }
    write_metrics_json(payload, output_dir / "metrics.json")
    return results


def _judge_scores(
    judges: Mapping[str, Callable],
    prompts: list[str],
    sampled: Mapping[str, Any],
    columns: Mapping[str, Sequence],
    model: str,
) -> dict[str, np.ndarray]:
    """Every judge's scores of the completions one model sampled."""
    return {
        name: score(
            judge, prompts, sampled["completions"], columns, f"model {model!r}, judge {name!r}"
        )
        for name, judge in judges.items()
    }


def welch_tests(results: Sequence[Mapping[str, Any]], baseline: str | None) -> list[dict[str, Any]]:
    """Welch one-sided test (H1: model mean reward > baseline's) for every non-baseline model."""
    if baseline is None:
        return []
    base = next(r for r in results if r["model"] == baseline)
    return [
        {
            "model": r["model"],
            "baseline": baseline,
            "metric": "reward",
            **welch_one_sided(r["rewards"], base["rewards"]),
        }
        for r in results
        if r["model"] != baseline
    ]


def write_outputs(
    results: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    tests: Sequence[Mapping[str, Any]],
    output_dir: Path,
    *,
    task: str,
    n: int,
    k: int,
    baseline: str | None,
    run_dirs: Mapping[str, str | os.PathLike] | None,
) -> dict[str, str]:
    """completions.jsonl, report.md and the figures; returns {kind: file name}."""
    files = {
        "completions": write_completions_jsonl(records, output_dir / "completions.jsonl").name,
        "report": write_report_md(
            results, output_dir / "report.md", task, baseline, tests, n=n, k=k
        ).name,
        "score_distributions": plot_score_distributions(
            {r["model"]: r["rewards"] for r in results},
            output_dir / "score_distributions.png",
            title=f"Reward distributions ({task}, n={n})",
        ).name,
    }
    if run_dirs:
        files["training_curves"] = plot_training_curves(
            run_dirs, output_dir / "training_curves.png"
        ).name
    files["metrics"] = "metrics.json"
    return files
