"""TRL baselines (SFT, GRPO, PPO) run with TRL's own trainers, under FlowHF's budget and logging.

Each runner returns a result dict and writes ``result.json``, ``metrics.jsonl`` (FlowHF's
namespaced keys), ``budget.json`` and the merged model folder ``model/`` into its output dir.
The runners import TRL when called, so ``import flowhf.experiments.baselines`` does not load TRL.

    from flowhf.experiments.baselines import Budget, run_grpo
    run_grpo("smollm2", "sentiment_prompts", "sentiment", "runs/grpo", budget=Budget(seconds=600))

From a YAML config: ``flowhf baseline configs/baselines/grpo.yaml --set budget.max_steps=2``.
"""

from flowhf.config.baselines import check_config, load_config
from flowhf.experiments.baselines.budget import (
    Budget,
    BudgetCallback,
    BudgetExhausted,
    TokenCounter,
)
from flowhf.experiments.baselines.grpo import run_grpo
from flowhf.experiments.baselines.ppo import run_ppo
from flowhf.experiments.baselines.requires import require_trl
from flowhf.experiments.baselines.sft import run_sft

__all__ = [
    "Budget",
    "BudgetCallback",
    "BudgetExhausted",
    "TokenCounter",
    "run_grpo",
    "run_ppo",
    "run_sft",
]


RUNNERS = {"sft": run_sft, "grpo": run_grpo, "ppo": run_ppo}


def run_config(path, overrides=()) -> dict:
    """Run the baseline described by the YAML file at ``path`` (``--set`` style ``overrides``);
    returns its result dict. The config, then TRL's presence, is checked before TRL loads."""
    method, kwargs = check_config(load_config(path, overrides))
    require_trl(f"flowhf baseline ({method})", ppo=method == "ppo")
    return RUNNERS[method](**kwargs)
