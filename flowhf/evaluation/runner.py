"""Evaluate several models the way the report's section 4.4 does, and write every output.

For each model: generate one completion for each of ``n`` test prompts, score them with the
reward, compute the metrics (reward stats, top-K diversity / novelty, extras), their
bootstrap intervals, and Welch's one-sided t-test of every model's rewards against the
baseline's. Outputs in ``output_dir``: metrics.json, completions.jsonl, report.md,
score_distributions.png and, when training run dirs are given, training_curves.png.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from flowhf.config.budget import Progress, progress_is_shown, publish_progress
from flowhf.config.evaluation import EvalArgs
from flowhf.errors import ConfigError
from flowhf.evaluation.embeddings import TextEmbedder
from flowhf.evaluation.metrics import compute_metrics
from flowhf.evaluation.per_prompt import evaluate_per_prompt, summarise
from flowhf.evaluation.plots import plot_score_distributions, plot_training_curves
from flowhf.evaluation.report import (
    ReportInfo,
    jsonable,
    write_completions_jsonl,
    write_metrics_json,
    write_report_md,
)
from flowhf.evaluation.sampling import (  # noqa: F401  (also importable here)
    SamplingPlan,
    length_metrics,
    sample_and_score,
    score,
)
from flowhf.evaluation.stats import CompletionSample, metric_cis, welch_one_sided
from flowhf.io import atomic_write_text
from flowhf.models.modes import eval_mode

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


@dataclass
class EvalInputs:
    """What the models are evaluated on: the prompts and the headline reward, with what goes
    beside them.

    ``reward_columns`` are extra per-prompt columns passed to the reward (aligned with
    ``prompts``); ``reference_completions`` (the training completions D0) give the novelty;
    ``judges`` are more rewards scoring the same completions (e.g. ``{"proxy": proxy_rm}`` beside
    a gold ``reward``: metric ``NAME_reward`` and a field per completion); ``metadata`` (e.g. the
    reward spec and data sources) is recorded in metrics.json.
    """

    prompts: Sequence[str]
    reward: Callable
    reference_completions: Sequence[str] | None = None
    reward_columns: Mapping[str, Sequence] = field(default_factory=dict)
    judges: Mapping[str, Callable] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


def evaluate_models(
    models: Sequence[ModelSpec],
    inputs: EvalInputs,
    args: EvalArgs,
    embedder: TextEmbedder,
    reference_model: ModelSpec | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``models`` on ``args.n`` of ``inputs.prompts`` and write all outputs to
    ``args.output_dir``; returns one result per model.

    ``reference_model`` adds a per-token KL of each model's samples to it; ``args.per_prompt``
    adds the per-prompt diversity metrics (`flowhf.evaluation.per_prompt`, prefix ``pp_``,
    per_prompt.jsonl). Each result holds ``model``, ``metrics``, ``ci`` plus ``rewards`` and
    ``completions``.
    """
    check_request(models, inputs, args)
    session = _Session.start(inputs, args, embedder)
    ref_name, ref_m, ref_tok, ref_loaded_here = (None, None, None, False)
    if reference_model is not None:
        ref_name, ref_m, ref_tok, ref_loaded_here = load_model(reference_model, args.device)
    with eval_mode(ref_m) if ref_m is not None else contextlib.nullcontext():
        session.reference = (ref_m, ref_tok) if ref_m is not None else None
        for number, spec in enumerate(
            tqdm(
                models,
                desc=f"evaluating ({args.task})",
                unit="model",
                leave=False,
                disable=progress_is_shown(),
            )
        ):  # (a reproduce stage bar shows it instead)
            publish_progress(Progress(number, len(models), f"models ({args.task})"))
            session.evaluate(spec, ref_name)
    if ref_loaded_here:
        ref_m = session.reference = None
        release_memory()
    session.write(ref_name)
    return session.results


def check_request(models: Sequence[ModelSpec], inputs: EvalInputs, args: EvalArgs) -> None:
    """The user errors (ConfigError) of an evaluation, raised before any model loads."""
    if not models:
        raise ValueError("evaluate_models needs at least one model")
    n, k = args.n, args.k
    if n < 1 or not 1 <= k <= n:
        raise ConfigError(
            f"n={n}, top-k={k}: need n >= 1 and 1 <= top-k <= n", "change --n / --top-k"
        )
    names = [_spec_name(m) for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique, got {names}", "give each --model once")
    if args.baseline is not None and args.baseline not in names:
        raise ConfigError(
            f"baseline {args.baseline!r} is not one of the evaluated models {names}",
            "--baseline takes one of the --model values as written",
        )
    if inputs.reference_completions is not None and len(inputs.reference_completions) == 0:
        raise ValueError("reference_completions is empty: pass None to skip novelty")


@dataclass
class _Session:
    """One `evaluate_models` call: its inputs and settings, what is measured once (the selected
    prompts, D0's embeddings), and what every model adds (results and records)."""

    inputs: EvalInputs
    args: EvalArgs
    embedder: TextEmbedder
    plan: SamplingPlan
    n_unique: int
    ref_emb: Any
    reference: tuple[Any, Any] | None = None
    results: list = field(default_factory=list)
    records: list = field(default_factory=list)
    per_prompt_records: list = field(default_factory=list)

    @classmethod
    def start(cls, inputs: EvalInputs, args: EvalArgs, embedder: TextEmbedder) -> _Session:
        prompts, n_unique = select_prompts(inputs.prompts, args.n)
        columns = _select_columns(inputs.reward_columns or {}, len(inputs.prompts), args.n)
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        refs = inputs.reference_completions
        ref_emb = embedder.embed_cached(list(refs)) if refs else None
        plan = SamplingPlan(prompts, args.generation, args.seed, columns)
        return cls(inputs, args, embedder, plan, n_unique, ref_emb)

    def evaluate(self, spec: ModelSpec, ref_name: str | None) -> None:
        """Sample, score and measure one model; add its result and records."""
        name, model, tokenizer, loaded_here = load_model(spec, self.args.device)
        ref = self.reference
        if ref is not None and len(ref[1]) != len(tokenizer):
            raise ValueError(
                f"reference model {ref_name!r} has a {len(ref[1])}-token vocabulary but "
                f"{name!r} has {len(tokenizer)}: KL needs the same tokenizer"
            )
        sampled = sample_and_score(
            name, model, tokenizer, self.plan, self.inputs.reward, self.reference
        )
        extra = _judge_scores(self.inputs.judges or {}, self.plan, sampled, name)
        metrics, cis = self._measure(sampled, tokenizer, extra)
        if self.args.per_prompt is not None:
            self._per_prompt(name, model, tokenizer, metrics, cis)
        self.results.append(
            {
                "model": name,
                "metrics": metrics,
                "ci": cis,
                "rewards": sampled["rewards"].tolist(),
                "completions": sampled["completions"],
            }
        )
        self.records += completion_records(name, self.plan.prompts, sampled, extra)
        model = None  # drop our reference; a model we loaded is then freed before the next
        if loaded_here:
            release_memory()

    def _measure(
        self, sampled: Mapping[str, Any], tokenizer: Any, extra: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, float], dict[str, list[float]]]:
        """(metrics, their bootstrap intervals) of one model's sampled completions."""
        args, emb = self.args, self.embedder.embed(sampled["completions"])
        kl = None
        if self.reference is not None:
            kl = float(sampled["kl_sums"].sum() / max(sampled["kl_counts"].sum(), 1.0))
        metrics = compute_metrics(
            sampled["rewards"],
            sampled["completions"],
            emb,
            self.ref_emb,
            args.k,
            tokenizer=tokenizer,
            kl_per_token=kl,
        )
        sample = CompletionSample(
            sampled["rewards"],
            emb,
            sampled["completions"],
            tokenizer,
            sampled.get("kl_sums"),
            sampled.get("kl_counts"),
        )
        cis = metric_cis(
            sample, self.ref_emb, args.k, n_boot=args.n_boot, seed=args.seed, alpha=args.alpha
        )
        metrics.update(length_metrics(sampled["rewards"], sampled["ended"], sampled["lengths"]))
        metrics.update(
            {f"{judge}_reward": float(np.mean(values)) for judge, values in extra.items()}
        )
        return metrics, cis

    def _per_prompt(self, name: str, model: Any, tokenizer: Any, metrics: dict, cis: dict) -> None:
        """Add the per-prompt diversity metrics (``pp_``) and rows of one model."""
        args, judges = self.args, self.inputs.judges or {}
        rewards = {"reward": self.inputs.reward, **{f"{j}_reward": fn for j, fn in judges.items()}}
        plan = replace(self.plan, prompts=self.plan.prompts[: self.n_unique])
        rows = evaluate_per_prompt(model, tokenizer, plan, rewards, args.per_prompt, self.embedder)
        pp_metrics, pp_ci = summarise(rows, args.n_boot, args.seed, args.alpha)
        metrics.update({f"pp_{key}": value for key, value in pp_metrics.items()})
        cis.update({f"pp_{key}": value for key, value in pp_ci.items()})
        self.per_prompt_records += [{"model": name, **row} for row in rows]

    def write(self, ref_name: str | None) -> None:
        """metrics.json, completions.jsonl, report.md, the figures (and per_prompt.jsonl)."""
        args, output_dir = self.args, Path(self.args.output_dir)
        tests = welch_tests(self.results, args.baseline)
        files = write_outputs(self.results, self.records, tests, args)
        if args.per_prompt is not None:
            text = "".join(
                json.dumps(jsonable(row), ensure_ascii=False) + "\n"
                for row in self.per_prompt_records
            )
            files["per_prompt"] = atomic_write_text(output_dir / "per_prompt.jsonl", text).name
        write_metrics_json(self._payload(tests, files, ref_name), output_dir / "metrics.json")

    def _payload(self, tests: list, files: dict, ref_name: str | None) -> dict[str, Any]:
        """metrics.json: the settings, the tests, the files and every model's metrics."""
        args, inputs = self.args, self.inputs
        refs = inputs.reference_completions
        return {
            **dict(inputs.metadata or {}),
            "task": args.task,
            "n": args.n,
            "k": args.k,
            "n_unique_prompts": self.n_unique,
            "seeds": {"generation": args.seed, "bootstrap": args.seed},
            "bootstrap": {
                "n_boot": args.n_boot,
                "alpha": args.alpha,
                "resampling": "completions, top-K re-selected per resample",
            },
            "generation": dataclasses.asdict(args.generation),
            "embedding_model": getattr(self.embedder, "name", type(self.embedder).__name__),
            "reference_completions": len(refs) if refs else None,
            "reward_columns": sorted(self.plan.columns),
            "reference_model": ref_name,
            "baseline": args.baseline,
            "tests": tests,
            "files": files,
            "judges": sorted(inputs.judges or {}),
            "per_prompt": dataclasses.asdict(args.per_prompt) if args.per_prompt else None,
            "models": [{key: r[key] for key in ("model", "metrics", "ci")} for r in self.results],
        }


def completion_records(
    name: str,
    prompts: Sequence[str],
    sampled: Mapping[str, Any],
    extra: Mapping[str, np.ndarray],
) -> list[dict[str, Any]]:
    """completions.jsonl's records of one model: prompt, completion, reward, judges' scores."""
    return [
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
        for i, (p, c, r) in enumerate(zip(prompts, sampled["completions"], sampled["rewards"]))
    ]


def _judge_scores(
    judges: Mapping[str, Callable], plan: SamplingPlan, sampled: Mapping[str, Any], model: str
) -> dict[str, np.ndarray]:
    """Every judge's scores of the completions one model sampled."""
    return {
        name: score(
            judge,
            plan.prompts,
            sampled["completions"],
            plan.columns,
            f"model {model!r}, judge {name!r}",
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
    args: EvalArgs,
) -> dict[str, str]:
    """completions.jsonl, report.md and the figures in ``args.output_dir``; returns
    {kind: file name}."""
    output_dir, task, n = Path(args.output_dir), args.task, args.n
    info = ReportInfo(task, args.baseline, tests, n=n, k=args.k)
    files = {
        "completions": write_completions_jsonl(records, output_dir / "completions.jsonl").name,
        "report": write_report_md(results, output_dir / "report.md", info).name,
        "score_distributions": plot_score_distributions(
            {r["model"]: r["rewards"] for r in results},
            output_dir / "score_distributions.png",
            title=f"Reward distributions ({task}, n={n})",
        ).name,
    }
    if args.run_dirs:
        files["training_curves"] = plot_training_curves(
            args.run_dirs, output_dir / "training_curves.png"
        ).name
    files["metrics"] = "metrics.json"
    return files
