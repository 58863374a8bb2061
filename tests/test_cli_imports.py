"""The CLI answers `--help`, `train --help-config` and `reproduce --dry-run` without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import contextlib, io, json, sys
from flowhf.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
heavy = [name for name in ("torch", "transformers", "peft", "trl") if name in sys.modules]
print(json.dumps({"code": code, "heavy": heavy, "chars": len(out.getvalue())}))
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["train", "--help-config"], ["reproduce", "--dry-run", "--output-dir", "OUT"]],
    ids=["help", "help-config", "reproduce-dry-run"],
)
def test_cli_answers_without_importing_torch(argv, tmp_path):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0 and result["chars"] > 100
    assert result["heavy"] == []
    assert not (tmp_path / "out").exists()  # the dry run writes nothing
