"""benchmarks/fault_injection.py on the tiny model, 3 trials: SIGKILL at random moments and
inside a checkpoint save, then --resume; weights and metrics equal an uninterrupted run's."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_three_killed_and_resumed_runs_end_identical(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "fault_injection", ROOT / "benchmarks" / "fault_injection.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "faults.json"
    code = module.main(
        [
            "--trials",
            "3",
            "--steps",
            "4",
            "--max-kills",
            "1",
            "--fork",
            "--json",
            str(out),
            "--work-dir",
            str(tmp_path / "runs"),
        ]
    )
    result = json.loads(out.read_text())["single_process"]
    assert code == 0 and result["identical"] == 3, result
    kinds = [k["kind"] for t in result["per_trial"] for k in t["kills"]]
    assert "during_save" in kinds, kinds
    assert all(not t["tmp_folders_after"] for t in result["per_trial"])
