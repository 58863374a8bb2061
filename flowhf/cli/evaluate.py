"""``flowhf eval`` and ``flowhf compare`` sub-commands (registered by flowhf/cli/main.py).

    flowhf eval --model PATH_OR_ID [--model ...] --task {stackexchange,toxicity} \
        [--reward SPEC] --n 200 --top-k 20 --output-dir DIR
    flowhf compare DIR [DIR ...] --output report.md [--baseline NAME]

A mistake in the flags or inputs (a value out of range, a missing or corrupt file, an unknown
model or reward) is a `flowhf.errors.UserError`, raised before any model loads where it can be:
the CLI prints it as one line (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from flowhf.config.evaluation import EvalArgs, GenerationSettings, PerPromptSettings
from flowhf.config.fields import AT_LEAST_ONE
from flowhf.errors import ConfigError
from flowhf.evaluation.tasks import DEFAULT_REWARDS, TASKS

_GEN_DEFAULT = GenerationSettings()
# The generation flags: (flag, GenerationSettings field, type); the flag's dest is its name.
_GEN_FLAGS = (
    ("--temperature", "temperature", float),
    ("--top-p", "top_p", float),
    ("--sampling-top-k", "top_k", int),
    ("--repetition-penalty", "repetition_penalty", float),
    ("--max-new-tokens", "max_new_tokens", int),
    ("--batch-size", "batch_size", int),
)

_PP_DEFAULT = PerPromptSettings()
# Per-prompt diversity's flags: (flag, PerPromptSettings field, type); --per-prompt turns it on.
_PP_FLAGS = (
    ("--per-prompt-k", "k", int),
    ("--per-prompt-temperature", "temperature", float),
    ("--per-prompt-threshold", "threshold", float),
)


def _help(config: type, name: str) -> str:
    """A config field's help (one place for it), escaped for argparse."""
    meta = next(f for f in dataclasses.fields(config) if f.name == name).metadata
    return meta["help"].replace("%", "%%")


def _run_dir(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--run-dir expects NAME=DIR, got {text!r}")
    return name, path


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``flowhf eval``; the handler is ``args.func(args)``."""
    p = subparsers.add_parser(
        "eval",
        help="Evaluate models: reward stats, top-K diversity / novelty, CIs, report.md",
        description="Generate n completions per model, score them and write the report's tables.",
    )
    _add_input_flags(p)
    for flag, name, kind in _GEN_FLAGS:
        default = getattr(_GEN_DEFAULT, name)
        p.add_argument(flag, type=kind, default=default, help=_help(GenerationSettings, name))
    p.add_argument("--greedy", action="store_true", help="Greedy decoding instead of sampling.")
    p.add_argument(
        "--no-chat-template", action="store_true", help="Feed raw prompts, no chat template."
    )
    _add_measure_flags(p)
    p.set_defaults(func=run_eval)
    return p


def _add_input_flags(p: argparse.ArgumentParser) -> None:
    """What is evaluated: models, task, reward, n / K, prompts, D0, the output folder."""
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="PATH_OR_ID",
        help="Model folder, .gguf, alias or Hub id; repeat for several models.",
    )
    p.add_argument("--task", choices=TASKS, required=True, help="Which of the report's tasks.")
    p.add_argument(
        "--reward",
        default=None,
        metavar="SPEC",
        help="Reward spec for flowhf.rewards.build_reward (toxicity default: 'toxicity').",
    )
    p.add_argument("--n", type=int, default=200, help=_help(EvalArgs, "n"))
    p.add_argument("--top-k", type=int, default=20, help=_help(EvalArgs, "k"))
    p.add_argument("--output-dir", required=True, type=Path, help=_help(EvalArgs, "output_dir"))
    p.add_argument(
        "--prompts",
        default=None,
        metavar="FILE",
        help="Prompt file (.txt one per line, .jsonl/.json/.csv/.parquet) or data spec.",
    )
    p.add_argument("--prompt-column", default="prompt", help="Column holding the prompt text.")
    p.add_argument(
        "--reference-completions",
        default=None,
        metavar="FILE",
        help="Training completions D0 for novelty (stackexchange default: train response_j).",
    )
    p.add_argument(
        "--reference-column",
        default=None,
        help="Column of D0 texts (default 'completion'; 'response_j' for stackexchange).",
    )


def _add_measure_flags(p: argparse.ArgumentParser) -> None:
    """How it is measured: seed, baseline, reference model, embeddings, bootstrap, run dirs."""
    p.add_argument("--seed", type=int, default=0, help=_help(EvalArgs, "seed"))
    p.add_argument("--baseline", default=None, metavar="NAME", help=_help(EvalArgs, "baseline"))
    p.add_argument(
        "--reference-model",
        default=None,
        metavar="PATH_OR_ID",
        help="Reference policy for a per-token KL of each model's samples.",
    )
    p.add_argument(
        "--embedding-model",
        default=None,
        metavar="NAME",
        help="sentence-transformers model (default: shipped all-MiniLM-L6-v2, offline).",
    )
    p.add_argument(
        "--embedding-batch-size", type=int, default=64, help="Texts per embedding batch."
    )
    p.add_argument("--n-boot", type=int, default=1000, help=_help(EvalArgs, "n_boot"))
    p.add_argument(
        "--per-prompt",
        type=int,
        default=None,
        metavar="N_PROMPTS",
        help="Also measure per-prompt diversity (distinct answers among K samples of each of "
        "N_PROMPTS prompts; metrics pp_*, per_prompt.jsonl). "
        + _help(PerPromptSettings, "n_prompts"),
    )
    for flag, name, kind in _PP_FLAGS:
        default = getattr(_PP_DEFAULT, name)
        p.add_argument(flag, type=kind, default=default, help=_help(PerPromptSettings, name))
    p.add_argument(
        "--run-dir",
        action="append",
        type=_run_dir,
        default=[],
        metavar="NAME=DIR",
        help="Training run dir (with metrics.jsonl) for training_curves.png; repeatable.",
    )


def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``flowhf compare``; the handler is ``args.func(args)``."""
    p = subparsers.add_parser(
        "compare",
        help="Merge several `flowhf eval` output dirs into one report.md",
        description="Merge metrics.json / completions.jsonl of several evaluations.",
    )
    p.add_argument("dirs", nargs="+", type=Path, help="Output dirs of `flowhf eval`.")
    p.add_argument("--output", type=Path, default=Path("report.md"), help="Merged markdown report.")
    p.add_argument(
        "--baseline", default=None, metavar="NAME", help="Model the others are t-tested against."
    )
    p.set_defaults(func=run_compare)
    return p


def generation_from_args(args: argparse.Namespace) -> GenerationSettings:
    values = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name, _ in _GEN_FLAGS}
    return GenerationSettings(
        **values, do_sample=not args.greedy, use_chat_template=not args.no_chat_template
    )


def build_reward_from_spec(spec: str) -> Any:
    try:
        from flowhf.rewards import build_reward
    except ImportError as err:
        raise ImportError(
            f"flowhf.rewards.build_reward is unavailable ({err}); cannot build reward {spec!r}"
        ) from err
    return build_reward(spec)


def per_prompt_from_args(args: argparse.Namespace) -> PerPromptSettings | None:
    """The per-prompt diversity settings (None without --per-prompt), checked."""
    if args.per_prompt is None:
        return None
    values = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name, _ in _PP_FLAGS}
    try:
        return PerPromptSettings(n_prompts=args.per_prompt, **values)
    except ValueError as err:  # its own range checks (the message names the setting)
        raise ConfigError(
            f"flowhf eval: {err}", "fix the --per-prompt flag it names (flowhf eval --help)"
        ) from None


def check_eval_args(args: argparse.Namespace) -> GenerationSettings:
    """The flags' values, checked before any model loads (user errors naming the flag); returns
    the generation settings."""
    for flag, value in (
        ("--n", args.n),
        ("--top-k", args.top_k),
        ("--n-boot", args.n_boot),
        ("--embedding-batch-size", args.embedding_batch_size),
    ):
        if not AT_LEAST_ONE.ok(value):
            raise ConfigError(
                f"{flag} {value}: must be {AT_LEAST_ONE}", f"give {flag} a positive whole number"
            )
    if args.top_k > args.n:
        raise ConfigError(
            f"--top-k {args.top_k}: must be <= --n {args.n} (the top K of n completions)",
            "lower --top-k or raise --n",
        )
    for name, folder in args.run_dir:
        if not (Path(folder) / "metrics.jsonl").is_file():
            raise ConfigError(
                f"--run-dir {name}={folder}: no metrics.jsonl there",
                "give the folder of a FlowHF or baseline training run (it holds metrics.jsonl)",
            )
    try:
        return generation_from_args(args)
    except ValueError as err:  # GenerationSettings' own range checks (messages name the setting)
        raise ConfigError(
            f"flowhf eval: {err}", "fix the generation flag it names (flowhf eval --help)"
        ) from None


def run_eval(args: argparse.Namespace) -> int:
    from flowhf.evaluation.embeddings import Embedder
    from flowhf.evaluation.runner import EvalInputs, evaluate_models
    from flowhf.evaluation.tasks import task_inputs

    spec = args.reward or DEFAULT_REWARDS.get(args.task)
    if spec is None:
        raise ConfigError(
            f"--reward is required for task {args.task!r}",
            "e.g. --reward classifier:PATH_TO_REWARD_MODEL",
        )
    generation = check_eval_args(args)
    per_prompt = per_prompt_from_args(args)
    inputs = task_inputs(
        args.task,
        args.prompts,
        args.reference_completions,
        args.prompt_column,
        args.reference_column,
    )
    reward = build_reward_from_spec(spec)  # a bad spec is an error before any policy loads
    evaluate_models(
        args.model,
        EvalInputs(
            inputs.prompts,
            reward,
            inputs.reference_completions,
            inputs.reward_columns,
            metadata={
                "reward": spec,
                "prompt_source": inputs.prompt_source,
                "reference_source": inputs.reference_source,
            },
        ),
        EvalArgs(
            args.output_dir,
            n=args.n,
            k=args.top_k,
            seed=args.seed,
            n_boot=args.n_boot,
            task=args.task,
            baseline=args.baseline,
            run_dirs=dict(args.run_dir),
            generation=generation,
            per_prompt=per_prompt,
        ),
        Embedder(args.embedding_model, batch_size=args.embedding_batch_size),
        args.reference_model,
    )
    print((args.output_dir / "report.md").read_text(encoding="utf-8"))
    print(f"outputs written to {args.output_dir}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from flowhf.evaluation.compare import compare_evaluations

    paths = compare_evaluations(args.dirs, args.output, baseline=args.baseline)
    print(Path(paths["report"]).read_text(encoding="utf-8"))
    print(f"report: {paths['report']}\nfigure: {paths['score_distributions']}")
    return 0
