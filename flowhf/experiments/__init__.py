"""What FlowHF measures about itself: the report's pipeline (`flowhf reproduce`), the exact
tasks on a real LM, the enumerable toy, the TRL baselines and the report's analyses.

The library (objectives, target, sampling, models, rewards, training, evaluation) never
imports from here; experiments import the library.
"""

from pathlib import Path

# the repository's shipped YAML configs (a source checkout: configs/ is not in the wheel)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
