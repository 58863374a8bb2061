"""`make demo`: the main job on the embedded default (SmolLM2-135M-Instruct + shipped prompts).

Trains `configs/recommended.yaml` (SubTB, KL-regularised target, sentiment reward) for a
fixed wall-clock budget, then prints the before/after summary and where the curves are.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flowhf.experiments import CONFIGS


def recommended_config_path() -> Path:
    here = CONFIGS / "recommended.yaml"
    if here.is_file():
        return here
    return Path(str(resources.files("flowhf") / "configs" / "recommended.yaml"))


def run_demo(quick: bool = False, output_dir: str = "runs/demo") -> int:
    from flowhf.config.training import FlowHFConfig
    from flowhf.training.summary import write_run_summary
    from flowhf.training.trainer import FlowHFTrainer

    output_dir = _free_folder(
        output_dir
    )  # one run per folder: a second demo never touches the first
    overrides = [f"logging.output_dir={output_dir}"]
    if quick:
        overrides += ["optim.max_seconds=120"]
    config = FlowHFConfig.from_yaml(recommended_config_path(), overrides)
    print(
        f"[flowhf demo] training {config.model.name} with {config.objective.objective} on {config.data.dataset} "
        f"(reward {config.target.reward}, alpha {config.target.alpha}, beta {config.target.beta}); "
        f"budget {config.optim.max_seconds or 'n/a'} s / {config.optim.max_steps} steps -> {output_dir}"
    )
    FlowHFTrainer(args=config).train()
    print(write_run_summary(output_dir))
    return 0


def _free_folder(folder: str) -> str:
    """``folder``, or ``folder-2``, ``folder-3``, ... : the first that holds no run."""
    from flowhf.run_dir import run_entries

    candidate, n = folder, 1
    while run_entries(candidate):
        n += 1
        candidate = f"{folder}-{n}"
    return candidate
