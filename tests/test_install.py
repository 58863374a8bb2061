"""The core install leaves TRL out (pyproject's `baselines` extra brings it): the library never
imports TRL, and whatever runs TRL's trainers stops first with one error naming the extra."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from flowhf.experiments.baselines.requires import INSTALL, MissingExtra, require_trl

ROOT = Path(__file__).resolve().parents[1]
# Where `import trl` may appear: the baseline runners, and one guarded look-up of GRPOConfig's
# field names (flowhf.config.trl_names._trl_fields, which tolerates ImportError).
TRL_IMPORTERS = ("flowhf/experiments/baselines/", "flowhf/config/trl_names.py")
# Run a command of the flowhf CLI as if TRL were not installed (a None entry blocks the import).
WITHOUT_TRL = "import sys; sys.modules['trl'] = None; from flowhf.cli import main; sys.exit(main(sys.argv[1:]))"


def without_trl(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONWARNINGS="ignore",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TRL, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_trl_is_an_extra_not_a_core_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("trl")]
    assert project["optional-dependencies"]["baselines"] == ["trl==1.12.0"]


def test_only_the_baselines_import_trl():
    found = []
    for path in sorted((ROOT / "flowhf").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "trl" or n.startswith("trl.") for n in names):
                found.append(str(path.relative_to(ROOT)))
    assert found and all(f.startswith(TRL_IMPORTERS) for f in found), found


def test_the_library_trains_without_trl(tmp_path):
    out = tmp_path / "smoke"
    done = without_trl(
        "train", "--config", "configs/smoke.yaml", "--output-dir", str(out),
        "--set", "optim.max_steps=2", "--set", "logging.progress_bar=false",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "metrics.jsonl").is_file()


def test_trl_names_are_still_checked_without_trl():
    code = (
        "import sys; sys.modules['trl'] = None\n"
        "from flowhf.errors import ConfigError\n"
        "from flowhf.training import FlowHFConfig\n"
        "assert FlowHFConfig(num_generations=2).sampling.samples_per_prompt == 2\n"
        "try:\n    FlowHFConfig(num_generationz=2)\nexcept ConfigError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "unknown keyword 'num_generationz'" in done.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "--preset", "smoke"],
        ["reproduce", "--preset", "smoke", "--only", "grpo"],
        ["baseline", "configs/baselines/grpo.yaml"],
    ],
    ids=["reproduce", "reproduce-grpo", "baseline"],
)
def test_a_trl_command_without_trl_is_one_error_naming_the_extra(tmp_path, argv):
    out = tmp_path / "out"
    flag = ["--output-dir", str(out)] if argv[0] == "reproduce" else ["--set", f"output_dir={out}"]
    done = without_trl(*argv, *flag)
    assert done.returncode == 2, done.stderr[-3000:]
    error, hint = done.stderr.strip().splitlines()
    assert error.startswith("flowhf: error: ") and error.endswith(INSTALL), error
    assert hint.startswith("flowhf: hint: ")
    assert not out.exists()  # nothing written, nothing loaded


def test_only_trl_stages_need_trl_and_a_dry_run_needs_none(tmp_path, monkeypatch):
    from flowhf.experiments.reproduce.reproduce import require_trl_for

    done = without_trl("reproduce", "--preset", "smoke", "--dry-run", "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stages:" in done.stdout
    monkeypatch.setitem(sys.modules, "trl", None)
    require_trl_for(["tb", "fl", "eval", "report"])  # FlowHF's stages: no TRL needed
    with pytest.raises(MissingExtra, match=r"stages ppo\)"):
        require_trl_for(["ppo", "eval"])


def fake_trl(root: Path, with_ppo: bool) -> Path:
    """A `trl` package (and its dist-info) with or without trl/experimental/ppo."""
    package = root / "trl"
    (package / "experimental" / ("ppo" if with_ppo else "gkd")).mkdir(parents=True)
    (package / "__init__.py").write_text("__version__ = '9.9.0'\n")
    (root / "trl-9.9.0.dist-info").mkdir()
    (root / "trl-9.9.0.dist-info" / "METADATA").write_text("Name: trl\nVersion: 9.9.0\n")
    return root


@pytest.mark.parametrize("with_ppo", [True, False])
def test_ppo_needs_a_trl_that_has_it(tmp_path, monkeypatch, with_ppo):
    monkeypatch.syspath_prepend(str(fake_trl(tmp_path, with_ppo)))
    monkeypatch.delitem(sys.modules, "trl", raising=False)
    require_trl("x")  # TRL is there
    if with_ppo:
        require_trl("x", ppo=True)
    else:
        with pytest.raises(MissingExtra, match=r"PPOTrainer, which TRL 9\.9\.0 does not have"):
            require_trl("x", ppo=True)
    monkeypatch.setitem(sys.modules, "trl", None)
    with pytest.raises(MissingExtra, match="needs TRL, which is not installed"):
        require_trl("flowhf baseline (grpo)")
