"""What `flowhf bench lm-target` / `benchmarks/lm_target.py` run (flags: `flowhf.cli.bench`):
train a method on a task, measure it exactly.

One run: warm start (cached) -> exact target from the starting model -> train `method` for
`seconds` -> exact metrics (+ optional sampling check) -> JSON. `--all` runs every method on a
task, skipping those whose JSON already exists (a killed sweep resumes), then writes a
markdown table and one bar plot of learned vs target per method.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from flowhf.errors import InputError, UserError
from flowhf.experiments.lmtask.methods import (
    DEFAULT_SWEEP,
    FLOWHF_METHODS,
    METHODS,
    TRL_METHODS,
    RunSpec,
    StartModel,
    train_method,
)
from flowhf.experiments.lmtask.task import load_task
from flowhf.io import atomic_write_text

RESULTS = Path("benchmarks/results/lm_target")


@dataclass(frozen=True)
class Start:
    """The model every method starts from: `model`, format-warm-started unless `warm_start` is off."""

    model: str = "smollm2"
    warm_start: bool = True

    def folder(self) -> Path:
        from flowhf.experiments.lmtask.warmstart import warm_start_dir
        from flowhf.models.loading import resolve_model_path

        return (
            warm_start_dir(self.model) if self.warm_start else Path(resolve_model_path(self.model))
        )


@dataclass(frozen=True)
class RunOptions:
    """How each method runs: the budget, the seed, the start and any overrides."""

    seconds: float = 600.0
    seed: int = 0
    start: Start = Start()
    sample_check: int = 0  # also draw this many samples and compare with the exact figures
    overrides: tuple[str, ...] = ()  # FlowHF config overrides (--set)
    baseline_overrides: tuple[str, ...] = ()  # GRPO / PPO runner options (--baseline-set)
    trace_every: int = 0  # FlowHF methods: exact figures every this-many steps (--trace)


def run_one(
    task_path: str, method: str, out_json: Path | None, options: RunOptions = RunOptions()
) -> dict:
    from flowhf.experiments.lmtask.exact import ExactTarget, ExactTrace
    from flowhf.models.loading import load_causal_lm

    task = load_task(task_path)
    start_dir = options.start.folder()
    reference, tokenizer = load_causal_lm(str(start_dir), dtype="float32")
    target = ExactTarget.build(task, reference, tokenizer)
    # the target is fixed now: the same loaded model is the start every method trains from
    starting = StartModel(reference, tokenizer, start_dir, target.eos_ids)
    run_dir = (
        Path("runs/lm_target") / task.name / f"{method}-seed{options.seed}"
    )  # scratch: the JSON is the result
    shutil.rmtree(run_dir, ignore_errors=True)
    trace = ExactTrace(target, options.trace_every) if options.trace_every else None
    spec = RunSpec(
        method=method,
        seconds=options.seconds,
        seed=options.seed,
        output_dir=run_dir,
        overrides=options.overrides,
        baseline_overrides=options.baseline_overrides,
        callbacks=(trace,) if trace else (),
    )
    trained = train_method(task, starting, spec)
    applied = (
        options.baseline_overrides
        if method in TRL_METHODS
        else options.overrides
        if method in FLOWHF_METHODS
        else ()
    )
    result = {
        "task": task.name,
        "task_file": str(task_path),
        "method": method,
        "seed": options.seed,
        "budget_seconds": options.seconds,
        "overrides": list(applied),
        "steps": trained.steps,
        "seconds": trained.seconds,
        "start_model": str(start_dir),
        "load_average": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(),
        **target.evaluate(trained.model),
        "details": trained.details,
    }
    if trace:
        result["trace"] = trace.points
    if options.sample_check:
        result["sampling_check"] = target.sampling_check(
            trained.model, task.max_new_tokens, n=options.sample_check, seed=options.seed
        )
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_json, json.dumps(result, indent=1) + "\n")
    return result


def run_all(
    task_path: str, out_dir: Path, methods=DEFAULT_SWEEP, options: RunOptions = RunOptions()
) -> list[dict]:
    """Every method in turn, one JSON each (existing ones skipped); the sampling check for
    `recommended` only."""
    task = load_task(task_path)
    results = []
    for method in methods:
        path = out_dir / f"{task.name}__{method}__seed{options.seed}.json"
        if path.exists():
            print(f"[lm-target] {path} exists: skipped (delete it to rerun)")
            results.append(json.loads(path.read_text()))
            continue
        t0 = time.perf_counter()
        try:
            check = options.sample_check if method == "recommended" else 0
            results.append(run_one(task_path, method, path, replace(options, sample_check=check)))
        except UserError:  # the same mistake would fail every method: stop at once
            raise
        except (
            Exception
        ):  # one failing method must not lose the others; no JSON, so a rerun retries it
            traceback.print_exc()
            print(
                f"[lm-target] {task.name} {method}: FAILED (see the traceback above); continuing",
                file=sys.stderr,
            )
            continue
        print(
            f"[lm-target] {task.name} {method}: tv {results[-1]['tv']:.3f} coverage "
            f"{results[-1]['coverage']}/{results[-1]['answers_total']} ({time.perf_counter() - t0:.0f} s)"
        )
    if not results:
        return results
    write_table(results, out_dir / f"{task.name}__seed{options.seed}.md")
    plot_distributions(results, out_dir / f"{task.name}__seed{options.seed}.png")
    return results


def table_rows(results: list[dict]) -> str:
    head = "| method | TV | KL(target‖model) | answer mass | coverage | top share | entropy | steps | seconds |"
    lines = [head, "|" + "---|" * 9]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['tv']:.3f} | {r['kl']:.3f} | {r['answer_mass']:.3f} | "
            f"{r['coverage']}/{r['answers_total']} | {r['top_share']:.3f} | {r['entropy']:.2f} | {r['steps']} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def write_table(results: list[dict], path: Path) -> None:
    if not results:
        return
    r0 = results[0]
    header = (
        f"# {r0['task']} (seed {r0['seed']}, {r0['budget_seconds']:.0f} s per method)\n\n"
        f"Target entropy among answers {r0['target_entropy']:.2f} nats, target top share {r0['target_top_share']:.3f}.\n\n"
    )
    path.write_text(header + table_rows(results) + "\n")


def plot_distributions(results: list[dict], path: Path) -> None:
    """One panel per method: the model's exact probability of each answer (bars) vs the target (line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prompts = len(results[0]["per_prompt"])
    fig, axes = plt.subplots(
        len(results),
        prompts,
        figsize=(
            max(8, 0.22 * len(results[0]["per_prompt"][0]["distribution"]["answers"])) * prompts,
            1.9 * len(results),
        ),
        squeeze=False,
        sharex="col",
    )
    for row, r in enumerate(results):
        for col, pp in enumerate(r["per_prompt"]):
            d, ax = pp["distribution"], axes[row][col]
            names = d["answers"] + ["(other)"]
            x = range(len(names))
            ax.bar(
                x,
                d["model"],
                color="tab:blue" if r["method"] not in ("grpo", "ppo", "pg") else "tab:red",
                alpha=0.8,
            )
            ax.step(x, d["target"], where="mid", color="black", linewidth=1.2)
            ax.set_ylim(0, max(max(d["target"]), min(1.0, max(d["model"]))) * 1.15)
            ax.set_ylabel(r["method"], fontsize=8)
            ax.set_title(
                f"TV {pp['tv']:.2f}, coverage {pp['coverage']}/{pp['answers_total']}",
                fontsize=8,
                loc="right",
            )
            ax.tick_params(labelsize=6)
            if row == len(results) - 1:
                ax.set_xticks(list(x), names, rotation=90)
    fig.suptitle(
        f"{results[0]['task']}: exact model probabilities (bars) vs target (line), same start and budget",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(out_dir: Path) -> Path:
    """summary.md (every task x method found) and summary.png (TV and coverage per task, per method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*__*__seed*.json"))]
    if not results:
        raise InputError(
            f"no results in {out_dir} (no TASK__METHOD__seedN.json files)",
            "run --all first, or point --out-dir at the folder it wrote",
        )
    tasks = list(dict.fromkeys(r["task"] for r in results))
    methods = [m for m in METHODS if any(r["method"] == m for r in results)]
    lines = []
    for task in tasks:
        rows = sorted(
            (r for r in results if r["task"] == task),
            key=lambda r: (METHODS.index(r["method"]), r["seed"]),
        )
        lines += [f"### {task}", "", table_rows(rows), ""]
        for seed in sorted(
            {r["seed"] for r in rows}
        ):  # each task's own table and plot, every method found
            write_table([r for r in rows if r["seed"] == seed], out_dir / f"{task}__seed{seed}.md")
            plot_distributions(
                [r for r in rows if r["seed"] == seed], out_dir / f"{task}__seed{seed}.png"
            )
    (out_dir / "summary.md").write_text("\n".join(lines))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        for ax, key in zip(axes, ("tv", "coverage")):
            values = []
            for task in tasks:
                found = [r for r in results if r["task"] == task and r["method"] == method]
                value = (
                    np.mean(
                        [r[key] / (r["answers_total"] if key == "coverage" else 1) for r in found]
                    )
                    if found
                    else np.nan
                )
                values.append(value)
            ax.bar(np.arange(len(tasks)) + i * width, values, width, label=method)
    for ax, title in zip(
        axes,
        (
            "total variation to the target (lower is better)",
            "answers covered (>= half their target mass)",
        ),
    ):
        ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks, fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[0].axhline(0.10, color="black", linewidth=0.8, linestyle="--")
    axes[1].axhline(0.90, color="black", linewidth=0.8, linestyle="--")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / "summary.png", dpi=110)
    plt.close(fig)
    return out_dir / "summary.md"
