"""FlowHF beside whichever TRL is installed: `make test` runs this file (with the parity test and
the examples) twice, once in .venv (TRL 1.12.0, the `baselines` extra's pin) and once with TRL
1.16.0 first on the path (.venv-trl116/site, FLOWHF_EXPECT_TRL=1.16.0)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from importlib.metadata import distribution, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from flowhf.config.trl_names import CONVERTED, SAME_MEANING, _trl_fields
from flowhf.errors import ConfigError

trl = pytest.importorskip("trl")
ROOT = Path(__file__).resolve().parents[1]


def pinned_trl() -> str:
    """The TRL that pyproject.toml's `baselines` extra pins."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'^baselines = \["trl==([^"]+)"\]', text, re.M).group(1)


EXPECTED = os.environ.get("FLOWHF_EXPECT_TRL") or pinned_trl()


def test_the_expected_trl_is_the_one_imported():
    assert trl.__version__ == EXPECTED == version("trl")


def test_the_examples_subprocesses_import_the_same_trl(tmp_path):
    from test_examples import example_env  # (tests/ is on the path: no __init__.py)

    out = subprocess.run(
        [sys.executable, "-c", "import trl; print(trl.__version__)"],
        env=example_env(tmp_path),
        cwd=tmp_path,  # as the examples run: a relative PYTHONPATH would miss the second TRL
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == EXPECTED


def test_every_requirement_of_the_installed_trl_is_met():
    """TRL installed beside .venv (--no-deps) runs on .venv's packages: each of its requirements
    is satisfied there, so it is the environment TRL asks for."""
    unmet = []
    for line in distribution("trl").requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra's or another platform's requirement
        try:
            installed = version(req.name)
        except Exception:  # noqa: BLE001  (not installed)
            installed = None
        if installed is None or not req.specifier.contains(installed, prereleases=True):
            unmet.append(f"{req} (installed: {installed})")
    assert not unmet


def test_every_grpo_config_field_is_mapped_or_refused():
    """A field of the installed TRL's GRPOConfig is either one FlowHF maps (SAME_MEANING,
    CONVERTED) or a ConfigError that says so: never silently ignored."""
    from trl import GRPOConfig

    from flowhf.training import FlowHFConfig

    fields = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    assert _trl_fields() == set(fields)
    refused_silently = []
    for name, field in sorted(fields.items()):
        if name in SAME_MEANING or name in CONVERTED:
            continue
        value = field.default if field.default is not dataclasses.MISSING else None
        try:
            FlowHFConfig(**{name: value})
        except ConfigError:
            continue
        refused_silently.append(name)
    assert not refused_silently, f"taken without a mapping: {refused_silently}"
