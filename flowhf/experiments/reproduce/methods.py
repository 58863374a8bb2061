"""The stages of `flowhf reproduce`, in order, and the methods each group of stages trains."""

STAGES = (
    "sft",
    "reward_model",
    "ppo",
    "grpo",
    "tb",
    "fl_kl",
    "flowhf",
    "recommended",
    "eval",
    "sweep",
    "report",
)
BASELINE_METHODS = ("ppo", "grpo")
FLOWHF_METHODS = ("tb", "fl_kl", "flowhf", "recommended")
METHODS = ("sft",) + BASELINE_METHODS + FLOWHF_METHODS  # every model that is evaluated
# FlowHF methods that only the sweep trains (configs/<name>.yaml; no stage, so `make demo` keeps its budget)
SWEEP_ONLY_METHODS = ("length_tb",)
SWEEP_METHODS = BASELINE_METHODS + FLOWHF_METHODS + SWEEP_ONLY_METHODS
