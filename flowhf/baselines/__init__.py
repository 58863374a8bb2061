"""TRL baselines (SFT, GRPO, PPO) run with TRL's own trainers, under FlowHF's budget and logging.

Each runner returns a result dict and writes ``result.json``, ``metrics.jsonl`` (FlowHF's
namespaced keys), ``budget.json`` and the merged model folder ``model/`` into its output dir.
The runners import TRL when called, so ``import flowhf.baselines`` does not load TRL.

    from flowhf.baselines import Budget, run_grpo
    run_grpo("smollm2", "sentiment_prompts", "sentiment", "runs/grpo", budget=Budget(seconds=600))

From a YAML config: ``python -m flowhf.baselines configs/baselines/grpo.yaml --set budget.max_steps=2``.
"""

from flowhf.baselines.budget import Budget, BudgetCallback, BudgetExhausted, TokenCounter
from flowhf.baselines.grpo import run_grpo
from flowhf.baselines.ppo import run_ppo
from flowhf.baselines.sft import run_sft

__all__ = [
    "Budget",
    "BudgetCallback",
    "BudgetExhausted",
    "TokenCounter",
    "run_grpo",
    "run_ppo",
    "run_sft",
]
