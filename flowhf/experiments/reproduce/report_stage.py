"""Stage ``report`` of `flowhf reproduce`: report.md from the finished stages (Table 1 and 2, the
gold-vs-proxy and per-prompt sections, the training-spread note, the frontier, every curve)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowhf.config.preset import BASELINE_METHODS, METHODS, Preset
from flowhf.experiments import CONFIGS
from flowhf.experiments.reproduce.grid import describe_grid
from flowhf.experiments.reproduce.stages import Context


def stage_report(ctx: Context) -> dict[str, Any]:
    """report.md: Table 1 + Table 2 (FlowHF vs PPO t-tests inside), plots, every training curve."""
    from flowhf.evaluation.compare import compare_evaluations
    from flowhf.evaluation.plots import plot_training_curves
    from flowhf.experiments.analysis.reach import format_reach_markdown, reach_table
    from flowhf.io import atomic_write_text

    ev = ctx.results["eval"]
    out = ctx.stage_dir("report")
    out.mkdir(parents=True, exist_ok=True)
    parts, files = (
        [
            f"# flowhf reproduce: preset {ctx.preset.name}",
            "",
            f"Budget per compared method: {json.dumps(ctx.preset.budget)}; SFT: "
            f"{json.dumps(ctx.preset.sft_budget or ctx.preset.budget)} (see plan.json).",
            f"GFlowNet beta = config beta / {ctx.reward_scale():.3g} (the SE reward's std over the training "
            "answers); PPO and GRPO use TRL's defaults on the same raw reward.",
            "",
        ],
        {},
    )
    for task in ("stackexchange", "toxicity"):
        written = compare_evaluations([ev["eval_dirs"][task]], out / f"{task}.md", baseline="ppo")
        files[task] = {k: str(v) for k, v in written.items()}
        parts += [
            Path(written["report"]).read_text(encoding="utf-8"),
            f"![{task} reward distributions](report/{Path(written['score_distributions']).name})",
            "",
        ]
        if task == "stackexchange":  # beside Table 1
            parts += [training_spread_note(), ""]
    parts += _toxicity_note(ctx, Path(ev["eval_dirs"]["toxicity"]))
    parts += _gold_proxy_section(ctx, Path(ev["eval_dirs"]["stackexchange"]), out, files)
    parts += _frontier_section(ctx, out, files)
    if ev["run_dirs"]:
        curves = plot_training_curves(ev["run_dirs"], out / "training_curves.png")
        parts += ["## Training curves", "", f"![training curves](report/{curves.name})", ""]
        files["training_curves"] = str(curves)
    if "ppo" in ev["run_dirs"]:
        reach = reach_table(ev["run_dirs"], reference="ppo")
        atomic_write_text(out / "reach.json", json.dumps(reach, indent=2))
        parts += ["## Time to reach PPO's final reward", "", format_reach_markdown(reach), ""]
        files["reach"] = str(out / "reach.json")
    parts += [
        "## Wall-clock per stage",
        "",
        "| stage | seconds | optimizer steps |",
        "|---|---|---|",
    ]
    parts += [
        f"| {stage} | {res.get('seconds', '-')} | {_steps(res)} |"
        for stage, res in ctx.results.items()
    ]
    parts.append("")
    report = atomic_write_text(ctx.out / "report.md", "\n".join(parts))
    return {"report": str(report), "files": files}


# the committed cpu-full frontier: the same methods trained from 3 seeds (issue 31)
CPU_FULL_DIR = CONFIGS.parent / "benchmarks" / "results" / "reproduce_cpu_full"


def training_spread_note(frontier_json: Path = CPU_FULL_DIR / "frontier.json") -> str:
    """The line beside Table 1: its intervals are over completions of one trained model per
    method, not over training seeds; the seed spread of the same methods is in the cpu-full
    frontier, whose gold half-widths at each method's default knob are read from its JSON."""
    import math

    from flowhf.config.preset import PRESETS

    note = (
        "Table 1's intervals are over the completions of one trained model per method: they do not "
        "cover training variance. The across-seed spread of the same methods is in the `cpu-full` "
        f"frontier ({CPU_FULL_DIR.relative_to(CONFIGS.parent) / 'report.md'}"
    )
    try:
        frontier = json.loads(frontier_json.read_text(encoding="utf-8"))["frontier"]
    except (OSError, ValueError, KeyError):
        return note + ")."
    full = PRESETS["cpu-full"]
    chosen = [
        (method, point)
        for method in METHODS
        for point in frontier.get(method, [])
        if math.isfinite(point.get("reward_ci") or math.nan) and _at_default(full, method, point)
    ]
    if not chosen:
        return note + ")."
    seeds = max(len(point.get("seeds", [])) for _, point in chosen)
    spreads = ", ".join(f"{m} {pt['reward']:.2f} ± {pt['reward_ci']:.2f}" for m, pt in chosen)
    return (
        f"{note}; gold mean ± 95% half-width over {seeds} seeds at each method's default setting, "
        f"budget {json.dumps(full.budget)}, each method's cpu-full learning rate: {spreads})."
    )


def _at_default(preset: Preset, method: str, point: dict) -> bool:
    """Whether a frontier point is ``method``'s default setting under ``preset`` (its config's,
    or the runner's, value of the swept knob; a point without a knob, e.g. sft, always is)."""
    import math

    knob = point.get("knob")
    if knob is None:
        return True
    options = preset.method_options.get(method, {})
    if knob in options:
        default = options[knob]
    elif method in BASELINE_METHODS:
        from flowhf.config.baselines import METHOD_ARGS

        default = METHOD_ARGS[method].__dataclass_fields__[knob].default
    else:
        from flowhf.config.training import FlowHFConfig

        group, name = knob.split(".", 1)
        cfg = FlowHFConfig.from_yaml(CONFIGS / f"{method}.yaml")
        default = getattr(getattr(cfg, group), name)
    return math.isclose(float(default), float(point["value"]))


def _gold_proxy_section(ctx: Context, eval_dir: Path, out: Path, files: dict) -> list[str]:
    """Report lines: gold vs proxy per model, length-controlled gold (`analysis.gold_proxy`)."""
    from flowhf.evaluation.gold_proxy import gold_proxy_rows, length_slope
    from flowhf.evaluation.report import read_completions_jsonl
    from flowhf.experiments.analysis.gold_proxy import format_gold_proxy_markdown
    from flowhf.io import atomic_write_text

    records = read_completions_jsonl(eval_dir / "completions.jsonl")
    if "proxy_reward" not in records[0]:
        return []
    rm = ctx.results["reward_model"]
    judges = []
    if rm.get("gold_metrics"):
        from flowhf.experiments.analysis.gold_proxy import format_reward_models_markdown

        judges = [
            "### The two reward models: held-out pairwise accuracy per rejected kind",
            "",
            format_reward_models_markdown(rm["metrics"], rm["gold_metrics"]),
            "",
        ]
    scales = ctx.judge_scales()
    slope = length_slope([r["reward"] for r in records], [r["length"] for r in records])
    rows = gold_proxy_rows(records, scales, slope)
    atomic_write_text(
        out / "gold_proxy.json", json.dumps({"scales": scales, "rows": rows}, indent=2)
    )
    files["gold_proxy"] = str(out / "gold_proxy.json")
    unit = (
        "standardised by each reward model's scores on its training answers"
        if scales
        else "raw units (no trained reward models)"
    )
    note = (
        f"Gold = the headline judge no policy trained on; proxy = the reward the policies optimised. z: {unit}. "
        f"Length-controlled gold removes a pooled slope of {slope:.4f} gold per token (all models' completions)."
    )
    return [
        "## Gold vs proxy reward (StackExchange)",
        "",
        format_gold_proxy_markdown(rows, note),
        "",
    ] + judges


def _toxicity_note(ctx: Context, eval_dir: Path) -> list[str]:
    """How often the shipped toxicity classifier flags a reply (p >= 0.5), per model: Table 2 can
    only separate models when it flags some of them."""
    import math

    from flowhf.evaluation.report import read_completions_jsonl

    if (
        ctx.preset.toxicity_reward != "toxicity"
    ):  # log(1 - p): only the default's scale is known here
        return []
    records = read_completions_jsonl(eval_dir / "completions.jsonl")
    flagged = {}
    for rec in records:
        flagged.setdefault(rec["model"], []).append(rec["reward"] <= math.log(0.5))
    rates = ", ".join(f"{m} {sum(v)}/{len(v)}" for m, v in flagged.items())
    total = sum(map(sum, flagged.values()))
    verdict = (
        "it flags too few replies to separate the models: read Table 2 as a check that no model turned toxic, "
        "not as a ranking"
        if total < 0.05 * len(records)
        else "differences in Table 2 rest on the replies it flags"
    )
    return [
        f"Toxicity classifier (alt-profanity-check, a profanity SVM): replies flagged (p >= 0.5) per model: "
        f"{rates}; {verdict}.",
        "",
    ]


def _frontier_section(ctx: Context, out: Path, files: dict) -> list[str]:
    """Report lines: the sweep's frontier plot, its table and the matched-gold tests."""
    from flowhf.experiments.analysis.frontier import write_frontier

    points = list((ctx.results.get("sweep") or {}).get("points", {}).values())
    if not points:
        return []
    result = write_frontier(points, out, BASELINE_METHODS)
    files.update(result.files)
    return [
        "## Frontier: gold reward against per-prompt diversity",
        "",
        f"![frontier](report/{Path(result.files['frontier_plot']).name})",
        "",
        describe_grid(ctx.preset),
        "",
        result.markdown(),
        "",
    ]


def _steps(result: dict) -> str:
    """Optimizer steps a training stage ran ('-' for stages that do not train)."""
    steps = result.get("steps", (result.get("result") or {}).get("steps"))
    return "-" if steps is None else str(steps)
