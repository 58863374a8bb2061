"""One function per `flowhf reproduce` stage; each returns the JSON result written to DONE.

A stage reads the results of earlier stages from ``ctx.results`` (the SFT model folder, the
SE reward spec) so every method starts from the same SFT model with the same reward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowhf.config.preset import BASELINE_METHODS, METHODS, Preset
from flowhf.experiments import CONFIGS
from flowhf.experiments.reproduce.grid import describe_grid


@dataclass
class Context:
    """What every stage sees: the preset, the output dir, earlier results, the --resume flag."""

    preset: Preset
    out: Path
    results: dict[str, dict] = field(default_factory=dict)
    resume: bool = False

    def stage_dir(self, stage: str) -> Path:
        return self.out / stage

    def model_dir(self, method: str) -> str:
        """Folder of the trained model of ``method`` (evaluated in the eval stage)."""
        return str(self.results[method]["model_dir"])

    def se_reward(self) -> str:
        return str(self.results["reward_model"]["reward"])

    def gold_reward(self) -> str:
        """The evaluation's headline judge (the SE reward itself when the preset has no gold)."""
        return str(self.results["reward_model"].get("gold_reward") or self.se_reward())

    def reward_scale(self) -> float:
        """Std of the SE reward over the training answers (1.0 when the preset gives the reward)."""
        return float(self.results["reward_model"].get("score_std") or 1.0)

    def judge_scales(self) -> dict[str, tuple[float, float]]:
        """{"gold": (mean, std), "proxy": (mean, std)} of each trained reward model's scores over its
        training answers (the z-units of `flowhf.evaluation.gold_proxy`); empty for given rewards."""
        rm = self.results["reward_model"]
        return {
            name: (rm[f"{prefix}score_mean"], rm[f"{prefix}score_std"])
            for name, prefix in (("gold", "gold_"), ("proxy", ""))
            if rm.get(f"{prefix}score_std")
        }


def _lora(p: Preset) -> dict | None:
    return {} if p.lora else None


def method_budget(p: Preset) -> dict:
    """The one budget every compared method gets. A completions budget is also given as the
    step count it equals (every method scores batch_size completions a step: FlowHF's group,
    GRPO's generations, PPO's rollout batch), so TRL knows its horizon and every bar is honest."""
    budget = dict(p.budget)
    if budget.get("completions") and not budget.get("max_steps"):
        budget["max_steps"] = -(-budget["completions"] // p.batch_size)
    return budget


def stage_sft(ctx: Context) -> dict[str, Any]:
    from flowhf.experiments.baselines import run_sft

    p = ctx.preset
    res = run_sft(
        p.policy,
        p.sft_data,
        ctx.stage_dir("sft"),
        budget=p.sft_budget or method_budget(p),
        lora=_lora(p),
        batch_size=p.batch_size,
        limit=p.sft_limit,
    )
    return {"model_dir": str(ctx.stage_dir("sft") / "model"), "result": res}


def stage_reward_model(ctx: Context) -> dict[str, Any]:
    """Train the proxy SE reward model the policies optimise and its gold judge
    (`flowhf.config.reward_model.proxy_and_gold`), or record the preset's given reward specs."""
    p = ctx.preset
    if p.se_reward is not None:
        return {
            "reward": p.se_reward,
            "gold_reward": p.gold_reward or p.se_reward,
            "trained": False,
            "score_std": None,
        }
    from flowhf.config.reward_model import proxy_and_gold
    from flowhf.reward_model.train import FeatureCache, RewardModelConfig, train_reward_model

    proxy, gold = proxy_and_gold(RewardModelConfig(**p.reward_model), ctx.stage_dir("reward_model"))
    features = FeatureCache()  # head_only: the gold's texts include every one of the proxy's
    metrics = train_reward_model(proxy, features)
    result = {
        "reward": f"classifier:{proxy.output_dir}",
        "trained": True,
        "metrics": metrics,
        "score_mean": metrics["train/score_mean"],
        "score_std": metrics["train/score_std"],
    }
    if p.gold_reward is not None:
        return {**result, "gold_reward": p.gold_reward}
    gold_metrics = train_reward_model(gold, features)
    return {
        **result,
        "gold_reward": f"classifier:{gold.output_dir}",
        "gold_metrics": gold_metrics,
        "gold_score_mean": gold_metrics["train/score_mean"],
        "gold_score_std": gold_metrics["train/score_std"],
    }


def train_baseline(
    ctx: Context, method: str, out: Path, extra: dict | None = None
) -> dict[str, Any]:
    """TRL's PPO or GRPO from the SFT model into ``out``: the preset's shared settings, then its
    ``method_options[method]``, then ``extra`` (a sweep point's knob and seed)."""
    from flowhf.experiments.baselines import run_grpo, run_ppo

    p = ctx.preset
    size = {"batch_size": p.batch_size} if method == "ppo" else {"num_generations": p.batch_size}
    options = {
        "budget": method_budget(p),
        "lora": _lora(p),
        "max_completion_length": p.max_new_tokens,
        **size,
        **p.method_options.get(method, {}),
        **(extra or {}),
    }
    runner = run_ppo if method == "ppo" else run_grpo
    res = runner(ctx.model_dir("sft"), p.train_prompts, ctx.se_reward(), out, **options)
    return {"model_dir": str(out / "model"), "run_dir": str(out), "result": res}


def stage_ppo(ctx: Context) -> dict[str, Any]:
    return train_baseline(ctx, "ppo", ctx.stage_dir("ppo"))


def stage_grpo(ctx: Context) -> dict[str, Any]:
    return train_baseline(ctx, "grpo", ctx.stage_dir("grpo"))


def flowhf_overrides(ctx: Context, method: str, out: Path | None = None) -> list[str]:
    """--set overrides turning configs/<method>.yaml into this preset's run (same budget for all),
    then the preset's ``method_options[method]`` (``key: value`` config overrides)."""
    p = ctx.preset
    budget = method_budget(p)
    sets = [
        f"model.name={ctx.model_dir('sft')}",
        f"model.lora={str(p.lora).lower()}",
        f"target.reward={ctx.se_reward()}",
        # beta reads as nats of log R per std of the reward over the TRAINING answers (chosen and
        # rejected), so one config means the same target for VADER (std ~0.5) or a reward
        # model's logit (std ~3); nothing is fitted to the evaluation prompts.
        f"target.reward_scale={ctx.reward_scale()!r}",
        f"data.dataset={p.train_prompts}",
        "data.prompt_column=question",  # StackExchange layout (shipped and lvwerra/stack-exchange-paired)
        f"sampling.max_new_tokens={p.max_new_tokens}",
        "sampling.prompts_per_step=1",
        f"sampling.samples_per_prompt={p.batch_size}",
        f"optim.max_steps={budget.get('max_steps') or 10**9}",
        f"logging.output_dir={out or ctx.stage_dir(method)}",
        "logging.progress_bar=false",
    ]
    if budget.get("seconds"):
        sets.append(f"optim.max_seconds={budget['seconds']}")
    if budget.get("completions"):
        sets.append(f"optim.max_completions={budget['completions']}")
    if p.name == "smoke":
        sets.append("model.autocast_bf16=false")
    return sets + [f"{key}={value}" for key, value in p.method_options.get(method, {}).items()]


def train_flowhf(
    ctx: Context, method: str, out: Path, extra: list[str] = (), resume: bool = False
) -> dict[str, Any]:
    """FlowHFTrainer with configs/<method>.yaml from the SFT model into ``out`` (``extra``: more
    --set overrides, e.g. a sweep point's knob and seed; ``resume``: continue its checkpoints)."""
    from flowhf.config.training import FlowHFConfig
    from flowhf.training.trainer import FlowHFTrainer

    cfg = FlowHFConfig.from_yaml(
        CONFIGS / f"{method}.yaml", flowhf_overrides(ctx, method, out) + list(extra)
    )
    trainer = FlowHFTrainer(args=cfg)
    last = trainer.train(resume=resume)
    return {
        "model_dir": str(out),
        "run_dir": str(out),
        "steps": trainer.state.global_step,
        "last_metrics": {k: float(v) for k, v in last.items() if isinstance(v, (int, float))},
    }


def flowhf_stage(method: str):
    def stage(ctx: Context) -> dict[str, Any]:
        return train_flowhf(ctx, method, ctx.stage_dir(method), resume=ctx.resume)

    stage.__name__ = f"stage_{method}"
    stage.__doc__ = f"FlowHFTrainer with configs/{method}.yaml, started from the SFT model."
    return stage


def stage_eval(ctx: Context) -> dict[str, Any]:
    """Evaluate every method on StackExchange test (gold reward, proxy beside it, per-prompt diversity)
    and on the toxicity probes (toxicity reward)."""
    from flowhf.config.evaluation import EvalArgs, GenerationSettings, PerPromptSettings
    from flowhf.evaluation.embeddings import Embedder
    from flowhf.evaluation.runner import EvalInputs, evaluate_models
    from flowhf.evaluation.tasks import spread, task_inputs
    from flowhf.rewards import build_reward

    p = ctx.preset
    models = {m: ctx.model_dir(m) for m in METHODS}
    run_dirs = {m: ctx.results[m]["run_dir"] for m in METHODS if "run_dir" in ctx.results[m]}
    gen = GenerationSettings(
        max_new_tokens=p.eval_max_new_tokens,
        temperature=p.eval_temperature,
        batch_size=max(1, min(16, p.eval_n)),
    )
    embedder = Embedder()
    # StackExchange: the gold judges (headline), the proxy the policies trained on scores the same text
    gold, proxy = ctx.gold_reward(), ctx.se_reward()
    judges = {"proxy": build_reward(proxy)} if gold != proxy else {}
    per_prompt = PerPromptSettings(**p.per_prompt) if p.per_prompt is not None else None
    out = {}
    for task, source, reward, se in (
        ("stackexchange", p.eval_prompts, gold, True),
        ("toxicity", p.toxicity_prompts, p.toxicity_reward, False),
    ):
        inputs = spread(
            task_inputs(task, prompts_source=source), p.eval_n
        )  # every topic, not the first ones
        directory = ctx.stage_dir("eval") / task
        evaluate_models(
            list(models.items()),
            EvalInputs(
                inputs.prompts,
                build_reward(reward),
                inputs.reference_completions,
                inputs.reward_columns,
                judges=judges if se else {},
                metadata={
                    "reward": reward,
                    "proxy_reward": proxy if se else None,
                    "preset": p.name,
                },
            ),
            EvalArgs(
                directory,
                n=p.eval_n,
                k=p.eval_k,
                seed=0,
                n_boot=p.n_boot,
                task=task,
                baseline="ppo",
                generation=gen,
                per_prompt=per_prompt if se else None,
            ),
            embedder,
        )
        out[task] = str(directory)
    return {"eval_dirs": out, "run_dirs": run_dirs}


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
