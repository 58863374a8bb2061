"""examples/: each script is a TRL GRPO script whose only FlowHF line is the import; each runs
on the tiny model with FlowHF and, import swapped back, with TRL's GRPOTrainer."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowhf.models.tiny import tiny_model_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
FLOWHF_IMPORT = (
    "from flowhf.training import FlowHFConfig as GRPOConfig, FlowHFTrainer as GRPOTrainer"
)
TRL_IMPORT = "from trl import GRPOConfig, GRPOTrainer"
DONE = {
    "train_resume_save_load": "resumed to step 4"
}  # what each run prints last (default: trained 2 steps)


def test_there_are_examples_for_each_case():
    assert {p.stem for p in EXAMPLES} == {
        "quickstart",
        "accuracy_reward",
        "conversational",
        "multi_reward",
        "train_resume_save_load",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_only_flowhf_line_is_the_trl_import_swap(path):
    source = path.read_text(encoding="utf-8")
    assert source.count(FLOWHF_IMPORT + "\n") == 1, (
        f"{path.name} must import exactly: {FLOWHF_IMPORT}"
    )
    tree = ast.parse(source.replace(FLOWHF_IMPORT, TRL_IMPORT))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("flowhf"), (
                f"{path.name}: from {node.module} import ..."
            )
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("flowhf") for a in node.names), (
                f"{path.name}: import flowhf..."
            )
        elif isinstance(node, ast.Name):
            assert "flowhf" not in node.id.lower(), f"{path.name} uses the name {node.id}"


def example_env(tmp_path: Path) -> dict[str, str]:
    """The environment an example runs in: the tiny model, 2 steps, and this checkout (then
    whatever PYTHONPATH holds, e.g. a second TRL) on the path."""
    return dict(
        os.environ,
        EXAMPLE_MODEL=str(tiny_model_dir()),
        EXAMPLE_MAX_STEPS="2",
        EXAMPLE_OUTPUT_DIR=str(tmp_path / "run"),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )


def run_example(script: Path, tmp_path: Path) -> str:
    env = example_env(tmp_path)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_with_flowhf(path, tmp_path):
    out = run_example(path, tmp_path)
    assert DONE.get(path.stem, "trained 2 steps") in out, out
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_with_trl_when_the_import_is_swapped_back(path, tmp_path):
    script = tmp_path / path.name
    script.write_text(
        path.read_text(encoding="utf-8").replace(FLOWHF_IMPORT, TRL_IMPORT), encoding="utf-8"
    )
    out = run_example(script, tmp_path)
    assert DONE.get(path.stem, "trained 2 steps") in out, out
