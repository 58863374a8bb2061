"""Benchmark: does the gold reward model know what the proxy does not?

Trains the proxy and gold StackExchange reward models exactly as `flowhf reproduce --preset cpu`
does (`flowhf.config.reward_model.proxy_and_gold`: the proxy on the shipped pairs, the gold on
those plus two pairs per question of kinds the proxy never sees, another seed) and reports both
models' held-out pairwise accuracy per rejected kind, with Wilson 95% intervals. A gold judge is
only worth its name if it catches the failure modes a policy finds by itself (one-word answers,
restating the question, repetition, cuts, and a non-answer preferred to a started real answer)
where the proxy does not.

Writes benchmarks/results/gold_reward/gold_reward.{json,md}. Run (about 10 minutes on 2 cores):
    .venv/bin/python benchmarks/gold_reward.py [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "gold_reward"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--mode", default="head_only", help="reward-model mode of both (as the cpu preset)"
    )
    args = parser.parse_args()
    from flowhf.config.reward_model import RewardModelConfig, proxy_and_gold
    from flowhf.experiments.analysis.gold_proxy import (
        format_reward_models_markdown,
        kind_accuracies,
    )
    from flowhf.io import atomic_write_text
    from flowhf.reward_model.train import FeatureCache, train_reward_model

    results, features = {}, FeatureCache()
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in zip(
            ("proxy", "gold"), proxy_and_gold(RewardModelConfig(mode=args.mode), tmp)
        ):
            metrics = train_reward_model(config, features)
            results[name] = {
                "metrics": metrics,
                "by_kind": kind_accuracies(metrics),
                "config": {
                    k: getattr(config, k)
                    for k in ("train_data", "extra_train_data", "seed", "mode")
                },
            }
            print(name, json.dumps(results[name]["by_kind"]))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output_dir / "gold_reward.json", json.dumps(results, indent=2))
    table = (
        format_reward_models_markdown(results["proxy"]["metrics"], results["gold"]["metrics"])
        + "\n"
    )
    atomic_write_text(args.output_dir / "gold_reward.md", table)
    print(table)


if __name__ == "__main__":
    main()
