"""Exact-target benchmark: does a trained policy sample its target?

A tiny randomly initialised LLaMA is trained on its own samples over a small vocabulary
where every completion can be enumerated; the model's exact probability of every
completion is then compared with the normalised target (TV, KL, JSD, modes found).

    python benchmarks/exact_target.py --objective tb --logz batch --seconds 300 --seed 0 --json out.json
    python benchmarks/exact_target.py --all --seconds 300 --json benchmarks/results/exact_target.json
    python benchmarks/exact_target.py --objective subtb --target my_target.py --steps 2000 --json out.json

A target file defines VOCAB_SIZE, MAX_LEN and log_reward(tokens: list[int]) -> float (EOS
excluded); optionally N_PROMPTS > 1 with log_reward(tokens, prompt).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

from flowhf.config.fields import build_dataclass
from flowhf.experiments.enumerable.suite import ALL_RUNS, format_table, run_suite
from flowhf.experiments.enumerable.targets import SIZES, builtin_target, load_target_file
from flowhf.experiments.enumerable.train import ToyConfig
from flowhf.objectives import OBJECTIVES, logz_modes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--objective", choices=list(OBJECTIVES), default="tb")
    p.add_argument(
        "--logz", choices=list(logz_modes()), default="batch", help="log Z estimator (TB)"
    )
    p.add_argument(
        "--all", action="store_true", help="run every objective (and the reward maximiser)"
    )
    p.add_argument(
        "--alpha", type=float, default=0.0, help="weight of log p_ref (initial model) in the target"
    )
    p.add_argument("--beta", type=float, default=1.0, help="weight of the target's log_reward")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, help="wall-clock training budget per run")
    budget.add_argument("--steps", type=int, help="updates per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="default",
        help="built-in target size (vocab, max len): " + str(SIZES),
    )
    p.add_argument(
        "--prompts", type=int, default=2, help="number of prompts of the built-in target"
    )
    p.add_argument("--target", type=Path, help="a user target file replacing the built-in one")
    p.add_argument("--json", type=Path, required=True, help="where to write the results")
    for f in dataclasses.fields(ToyConfig):
        if f.name in ("objective", "logz", "alpha", "beta", "steps", "seconds", "seed"):
            continue
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(f.default),
            default=f.default,
            help=f.metadata["help"],
        )
    return p.parse_args(argv)


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = parse_args(argv)
    if args.seconds is None and args.steps is None:
        args.seconds = 300.0
    target = (
        load_target_file(args.target) if args.target else builtin_target(args.size, args.prompts)
    )
    extra = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(ToyConfig)
        if hasattr(args, f.name)
    }
    extra.update(steps=args.steps, seconds=args.seconds)
    base = build_dataclass(
        ToyConfig, extra, "flowhf exact"
    )  # ranges checked: a bad flag is one error line
    runs = ALL_RUNS if args.all else [(args.objective, args.logz)]
    print(
        f"target {target.name}: {target.n_prompts} prompt(s) x {target.space.size} completions "
        f"(vocab {target.vocab_size} + EOS, max len {target.max_len})",
        flush=True,
    )
    started = time.time()
    records = run_suite(
        target, base, runs, progress=lambda name: print(f"  training {name} ...", flush=True)
    )
    print(format_table(records))
    print(f"total {time.time() - started:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(records if args.all else records[0], indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
