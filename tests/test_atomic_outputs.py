"""Final outputs appear whole or not at all: model folders, reports, metrics and figures are
written under a temporary name and renamed (flowhf.io: atomic_folder / atomic_files,
atomic_path); a cached model is built once even when two processes ask at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowhf.io import atomic_files, atomic_path, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def _listing(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_atomic_files_replaces_only_what_it_writes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("log\n")  # the run's other files stay
    (run / "weights.bin").write_text("old")
    with atomic_files(run, last=("marker.json",)) as tmp:
        assert tmp.parent == run and tmp.name.startswith(".tmp-save-")
        (tmp / "marker.json").write_text("{}")
        (tmp / "weights.bin").write_text("new")
        (tmp / "tokenizer").mkdir()
        (tmp / "tokenizer" / "vocab.txt").write_text("a b")
    assert _listing(run) == {
        "marker.json": b"{}",
        "metrics.jsonl": b"log\n",
        "tokenizer/vocab.txt": b"a b",
        "weights.bin": b"new",
    }


def test_atomic_files_failed_block_leaves_the_folder_as_it_was(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "weights.bin").write_text("old")
    before = _listing(run)
    with pytest.raises(RuntimeError, match="killed"), atomic_files(run) as tmp:
        (tmp / "weights.bin").write_text("half")
        raise RuntimeError("killed mid-save")
    assert _listing(run) == before and not list(run.glob(".tmp-*"))


def test_atomic_path_keeps_the_suffix_and_cleans_up(tmp_path):
    target = tmp_path / "curves.png"
    with atomic_path(target) as tmp:
        assert (
            tmp.suffix == ".png" and tmp.parent == tmp_path
        )  # matplotlib reads the format from it
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"ha")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"png" and sorted(p.name for p in tmp_path.iterdir()) == [
        "curves.png"
    ]
    atomic_write_text(tmp_path / "report.md", "# r\n")
    assert (tmp_path / "report.md").read_text() == "# r\n"


def test_save_policy_killed_mid_save_leaves_no_half_model(tmp_path, monkeypatch):
    """A run folder whose final save fails keeps what it had: no adapter without its heads."""
    from flowhf.models import saved_run
    from flowhf.models.loading import load_policy
    from flowhf.models.lora import LoraSettings

    bundle = load_policy("tiny-random", lora=LoraSettings(r=2))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("log\n")

    def killed(*_, **__):
        raise RuntimeError("killed while writing the heads")

    monkeypatch.setattr(saved_run, "save_heads", killed)
    with pytest.raises(RuntimeError, match="killed"):
        saved_run.save_policy(bundle, run)
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]
    monkeypatch.undo()
    saved_run.save_policy(bundle, run)
    assert (run / "adapter_model.safetensors").is_file() and (
        run / saved_run.HEADS_CONFIG
    ).is_file()
    assert not list(run.glob(".tmp-*"))


def test_merged_model_folder_appears_whole(tmp_path):
    """The baselines' model/ folder: a failed save leaves none, a good one leaves no temp folder."""
    from flowhf.experiments.baselines.common import save_merged_model
    from flowhf.models.loading import load_causal_lm

    model, tokenizer = load_causal_lm("tiny-random")

    class Broken:
        def save_pretrained(self, path):
            (Path(path) / "tokenizer.json").write_text("{")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_merged_model(model, Broken(), tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    save_merged_model(model, tokenizer, tmp_path / "model")
    assert (tmp_path / "model" / "config.json").is_file() and [
        p.name for p in tmp_path.iterdir()
    ] == ["model"]


_BUILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import flowhf.models.tiny as tiny

    signals, role = Path(sys.argv[1]), sys.argv[2]
    real = tiny.tiny_tokenizer

    def counted(*args, **kwargs):  # runs inside the build, under the cache lock
        with open(signals / "builds", "a") as fh:
            fh.write(role + "\\n")
        while role == "first" and not (signals / "second-started").exists():
            time.sleep(0.05)  # hold the lock until the second process asks for the model
        return real(*args, **kwargs)

    tiny.tiny_tokenizer = counted
    if role == "second":
        while not (signals / "builds").exists():
            time.sleep(0.05)  # the first process is building (and holds the lock)
        (signals / "second-started").touch()
    print(tiny.tiny_model_dir())
""")


def test_tiny_model_built_once_by_two_processes(tmp_path):
    """As under `torchrun --nproc_per_node 2` on an empty cache: the second process waits for
    the first one's build (flowhf.io.build_folder_once) and reuses its folder."""
    cache, signals = tmp_path / "cache", tmp_path / "signals"
    signals.mkdir()
    env = {
        **os.environ,
        "FLOWHF_CACHE_DIR": str(cache),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BUILD, str(signals), role],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("first", "second")
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    paths = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert paths == {str(cache / "tiny-random-llama")}
    assert (signals / "builds").read_text() == "first\n"  # one build; the second process reused it
    assert sorted(p.name for p in cache.iterdir()) == [
        ".tiny-random-llama.lock",
        "tiny-random-llama",
    ]
    assert (cache / "tiny-random-llama" / "config.json").is_file()
