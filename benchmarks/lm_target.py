"""Exact distribution matching on SmolLM2-135M: FlowHF objectives vs TRL GRPO / PPO.

    python benchmarks/lm_target.py --task benchmarks/lm_tasks/numbers_uniform.yaml --method recommended \
        --seconds 600 --seed 0 --json benchmarks/results/lm_target/numbers.json
    python benchmarks/lm_target.py --task benchmarks/lm_tasks/numbers_uniform.yaml --all --seconds 600

Same as `flowhf bench lm-target ...`; see flowhf/cli/bench.py.
"""

import sys

from flowhf.cli.bench import main
from flowhf.errors import guarded

if (
    __name__ == "__main__"
):  # user errors: one line `flowhf: error: ...`, exit 2 (as `flowhf bench lm-target`)
    sys.exit(guarded(main))
