"""Every bad input of issue 14, through the `flowhf` CLI in-process: the exit code, the one-line
message, no traceback, and the files of an earlier run unchanged. Config cases also check that
no model was loaded. The table of these cases (benchmarks/results/reliability/bad_inputs.md)
is written by this test with FLOWHF_WRITE_TABLE=1 and otherwise checked against it."""

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
import yaml

from flowhf import cli
from flowhf.config.training import FlowHFConfig

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "benchmarks" / "results" / "reliability" / "bad_inputs.md"
SMOKE = "configs/smoke.yaml"


def _write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


# (case, what the user did, argv given tmp folder + earlier run, expected exit code, message start)
CASES = [
    (
        "learning_rate=abc",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--set",
            "optim.learning_rate=abc",
            "--output-dir",
            str(run),
        ],
        2,
        "flowhf: error: --set optim.learning_rate='abc': expected float",
    ),
    (
        "logging_steps=0",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--set",
            "logging_steps=0",
            "--output-dir",
            str(run),
        ],
        2,
        "flowhf: error: --set logging.logging_steps=0: must be a number >= 1",
    ),
    (
        "max_new_tokens=0",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--set",
            "max_new_tokens=0",
            "--output-dir",
            str(run),
        ],
        2,
        "flowhf: error: --set sampling.max_new_tokens=0: must be a number >= 1",
    ),
    (
        "max_steps=-5",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--set",
            "max_steps=-5",
            "--output-dir",
            str(run),
        ],
        2,
        "flowhf: error: --set optim.max_steps=-5: must be a number >= 1",
    ),
    (
        "explore_prob=1.5 in a file",
        lambda t, run: [
            "train",
            "--config",
            _write(t / "p.yaml", "sampling:\n  explore_prob: 1.5\n"),
            "--output-dir",
            str(run),
        ],
        2,
        "flowhf: error: {t}/p.yaml, line 2: sampling.explore_prob=1.5: must be a number in [0, 1]",
    ),
    (
        "unknown enum value",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--set",
            "optim.lr_scheduler=cosin",
            "--output-dir",
            str(run),
        ],
        2,
        "flowhf: error: --set optim.lr_scheduler='cosin': must be one of constant, linear, cosine",
    ),
    (
        "YAML top level is a list",
        lambda t, run: [
            "train",
            "--config",
            _write(t / "l.yaml", "- a\n- b\n"),
            "--output-dir",
            str(run),
        ],
        2,
        "flowhf: error: {t}/l.yaml, line 1: expected a mapping of config keys",
    ),
    (
        "YAML syntax error",
        lambda t, run: [
            "train",
            "--config",
            _write(t / "s.yaml", "optim:\n  seed: [1\n"),
            "--output-dir",
            str(run),
        ],
        2,
        "flowhf: error: {t}/s.yaml, line 3: YAML syntax error",
    ),
    (
        "missing config file",
        lambda t, run: ["train", "--config", str(t / "nope.yaml"), "--output-dir", str(run)],
        2,
        "flowhf: error: config file {t}/nope.yaml does not exist",
    ),
    (
        "reward-model config value",
        lambda t, run: ["reward", "train", "--set", "batch_size=0", "--set", f"output_dir={run}"],
        2,
        "flowhf: error: --set batch_size=0: must be a number >= 1",
    ),
    (
        "occupied output folder",
        lambda t, run: ["train", "--config", SMOKE, "--output-dir", str(run)],
        2,
        "flowhf: error: {t}/earlier already holds a run (checkpoints, config.yaml, metrics.jsonl); nothing was changed",
    ),
    (
        "folder locked by a live run",
        lambda t, run: (
            _locked(run) + ["train", "--config", SMOKE, "--output-dir", str(run), "--overwrite"]
        ),
        2,
        "flowhf: error: {t}/earlier is in use by a running run (pid 1 on <host>)",
    ),
    (
        "--resume with another target",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--output-dir",
            str(run),
            "--resume",
            "--set",
            "target.beta=2",
        ],
        2,
        "flowhf: error: --resume: the config differs from the run's {t}/earlier/config.yaml in 1 key(s): target.beta: 5.0 -> 2.0",
    ),
    (
        "--resume and --overwrite",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--output-dir",
            str(run),
            "--resume",
            "--overwrite",
        ],
        2,
        "flowhf: error: --resume and --overwrite exclude each other",
    ),
    (
        "baseline into an occupied folder",
        lambda t, run: [
            "baseline",
            _write(
                t / "g.yaml",
                f"method: grpo\nmodel: tiny-random\n"
                f"prompts_source: sentiment_prompts\nreward_spec: sentiment\n"
                f"output_dir: {run}\nbudget: {{max_steps: 1}}\n",
            ),
        ],
        2,
        "flowhf: error: {t}/earlier already holds a run",
    ),
    (
        "corrupt checkpoints",
        lambda t, run: (
            _damaged_run(t / "c")
            + ["train", "--config", SMOKE, "--output-dir", str(t / "c"), "--resume", *TINY_RUN]
        ),
        2,
        "flowhf: error: no checkpoint under {t}/c/checkpoints can be restored (step-3: trainable.safetensors has 7 bytes",
    ),
    (
        "infinite reward",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--output-dir",
            str(t / "inf"),
            *TINY_RUN,
            "--set",
            "target.reward=python:tests.test_bad_inputs:infinite_reward",
        ],
        2,
        "flowhf: error: reward 'python:infinite_reward' gave a value of inf for prompt ",
    ),
    (
        "non-UTF-8 data file",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--output-dir",
            str(t / "d"),
            "--set",
            "data.dataset="
            + _write(
                t / "latin1.jsonl", '{"prompt": "ok"}\n{"prompt": "café"}\n'.encode("latin-1")
            ),
        ],
        2,
        "flowhf: error: {t}/latin1.jsonl: line 2: not UTF-8 text (byte 0xe9 at column 16)",
    ),
    (
        "empty prompt",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--output-dir",
            str(t / "d"),
            "--set",
            "data.dataset=" + _write(t / "empty.jsonl", '{"prompt": "ok"}\n{"prompt": "  "}\n'),
        ],
        2,
        "flowhf: error: {t}/empty.jsonl: row 2: empty value for key 'prompt'",
    ),
    (
        "unknown model, offline",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--output-dir",
            str(t / "m"),
            "--set",
            "model.name=someone/no-such-model",
        ],
        2,
        "flowhf: error: model 'someone/no-such-model' is not a local folder, a .gguf file or a shipped alias",
    ),
    (
        "9,000-token prompt, long_prompts=error",
        lambda t, run: [
            "train",
            "--config",
            SMOKE,
            "--output-dir",
            str(t / "l"),
            *TINY_RUN,
            "--set",
            "sampling.long_prompts=error",
            "--set",
            "data.dataset="
            + _write(t / "long.jsonl", json.dumps({"prompt": "word " * 9000}) + "\n"),
        ],
        2,
        "flowhf: error: prompt 'word word word word word word word word word word word word '... has",
    ),
    (
        "reproduce preset: max_steps=-5",
        lambda t, run: [
            "reproduce",
            "--output-dir",
            str(run),
            "--preset",
            _write(t / "preset.yaml", "base: smoke\nbudget:\n  max_steps: -5\n"),
        ],
        2,
        "flowhf: error: {t}/preset.yaml, line 3: budget.max_steps=-5: must be a number > 0",
    ),
    (
        "reproduce preset: unknown key",
        lambda t, run: [
            "reproduce",
            "--output-dir",
            str(run),
            "--preset",
            _write(t / "preset.yaml", "base: cpu\neval_nn: 3\n"),
        ],
        2,
        "flowhf: error: {t}/preset.yaml, line 2: unknown key 'eval_nn' (did you mean 'eval_n'?)",
    ),
    (
        "reproduce preset: wrong type",
        lambda t, run: [
            "reproduce",
            "--output-dir",
            str(run),
            "--preset",
            "smoke",
            "--set",
            "eval_n=many",
        ],
        2,
        "flowhf: error: --set eval_n='many': expected int, got 'many' (str); must be a number >= 1",
    ),
    (
        "eval: unknown model, offline",
        lambda t, run: [*EVAL, "--model", "someone/no-such-model", "--output-dir", str(t / "ev")],
        2,
        "flowhf: error: model 'someone/no-such-model' is not a local folder, a .gguf file or a shipped alias",
    ),
    (
        "eval: --top-k above --n",
        lambda t, run: [
            *EVAL,
            "--model",
            "tiny-random",
            "--top-k",
            "5",
            "--output-dir",
            str(t / "ev"),
        ],
        2,
        "flowhf: error: --top-k 5: must be <= --n 2 (the top K of n completions)",
    ),
    (
        "eval: unknown reward",
        lambda t, run: [
            *EVAL,
            "--model",
            "tiny-random",
            "--reward",
            "sentimnt",
            "--output-dir",
            str(t / "ev"),
        ],
        2,
        "flowhf: error: unknown reward 'sentimnt' (did you mean 'sentiment'?); valid rewards: ",
    ),
    (
        "compare: not an evaluation folder",
        lambda t, run: ["compare", str(run), "--output", str(t / "r.md")],
        2,
        "flowhf: error: {t}/earlier/metrics.json not found: {t}/earlier is not an evaluation folder",
    ),
    (
        "compare: corrupt metrics.json",
        lambda t, run: [
            "compare",
            str(Path(_write(t / "metrics.json", '{"task": ')).parent),
            "--output",
            str(t / "r.md"),
        ],
        2,
        "flowhf: error: {t}/metrics.json: not valid JSON (Expecting value: line 1 column 10 (char 9))",
    ),
    (
        "bench lm-target: bad task value",
        lambda t, run: [
            "bench",
            "lm-target",
            "--method",
            "recommended",
            "--task",
            _write(
                t / "task.yaml",
                "prompts: [q]\nanswers: {a: 1}\nother_reward: -1\nbeta: high\nmax_new_tokens: 3\n",
            ),
        ],
        2,
        "flowhf: error: {t}/task.yaml, line 4: beta must be a finite number, got 'high'",
    ),
    (
        "exact: --steps 0",
        lambda t, run: ["exact", "--steps", "0", "--json", str(t / "x.json")],
        2,
        "flowhf: error: flowhf exact: steps=0: must be a number >= 1",
    ),
]
MODEL_CASES = {
    "corrupt checkpoints",
    "infinite reward",
    "unknown model, offline",
    "9,000-token prompt, long_prompts=error",
    "eval: unknown model, offline",
}
# Cases raised before any model may load (all but those that need a model to fail).
NO_MODEL_CASES = {c[0] for c in CASES} - MODEL_CASES


def _hashes(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def earlier_run(tmp_path):
    """A folder holding an earlier run's files (its config.yaml is the smoke config's; the other
    files' content only matters for the hashes)."""
    run = tmp_path / "earlier"
    (run / "checkpoints" / "step-3").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1, "time": 0, "train/loss": 1.0}\n')
    config = FlowHFConfig.from_yaml(SMOKE, [f"logging.output_dir={run}"]).to_dict()
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run / "checkpoints" / "step-3" / "trainer_state.json").write_text('{"step": 3}')
    return run


def infinite_reward(prompts, completions, **_):
    """A reward that overflows to +inf (the reward of the 'infinite reward' case)."""
    return [float("inf")] * len(prompts)


TINY_RUN = ["--set", "max_steps=3", "--set", "progress_bar=false", "--set", "histogram_every=0"]
EVAL = [
    "eval",
    "--task",
    "toxicity",
    "--reward",
    "python:flowhf.rewards.toy:letter_share",
    "--n",
    "2",
    "--top-k",
    "1",
]


def _damaged_run(folder: Path) -> list[str]:
    """A 3-step smoke run in ``folder`` whose every checkpoint is then truncated."""
    assert cli.main(["train", "--config", SMOKE, "--output-dir", str(folder), *TINY_RUN]) == 0
    for weights in (folder / "checkpoints").glob("step-*/trainable.safetensors"):
        weights.write_bytes(b"garbage")
    return []


def _locked(run: Path) -> list[str]:
    """Make ``run`` locked by pid 1 (always alive) on this host; no argv of its own."""
    import socket

    (run / ".flowhf.lock").write_text(
        json.dumps({"pid": 1, "host": socket.gethostname(), "started": 0})
    )
    return []


def _main(argv: list[str]) -> int:
    return cli.main(argv)


def _no_model(*_, **__):
    raise AssertionError("a model was loaded for a config error")


@pytest.mark.parametrize("case,argv,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, argv, code, message, tmp_path, earlier_run, capsys, monkeypatch):
    if case in NO_MODEL_CASES:
        import transformers  # patched on the class: no module keeps an unpatched reference

        monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _no_model)
    args = argv(tmp_path, earlier_run)  # may add to the earlier run (a lock), before the hashes
    capsys.readouterr()  # what preparing the case printed
    before = _hashes(earlier_run)
    assert _main(args) == code
    err = capsys.readouterr().err.replace(socket.gethostname(), "<host>")
    expected = message.format(t=tmp_path)
    assert "Traceback" not in err and "flowhf: error:" in err, err
    err = err[
        err.index("flowhf: error:") :
    ]  # (a model case may first print transformers' loading bar)
    assert err.startswith(expected), err
    assert len(err.strip().splitlines()) == 2  # the error line and its hint, nothing after
    assert _hashes(earlier_run) == before, "files of the earlier run changed"
    _record(case, err.splitlines()[0].replace(str(tmp_path), "<tmp>"), code)


def _record(case: str, line: str, code: int) -> None:
    """Write the table row (FLOWHF_WRITE_TABLE=1) or check the committed table holds it."""
    row = f"| {case} | `` {line} `` | {code} | unchanged |"  # double backticks: a message may hold one
    if os.environ.get("FLOWHF_WRITE_TABLE"):
        rows = TABLE.read_text().splitlines() if TABLE.is_file() else _HEADER
        rows = [r for r in rows if not r.startswith(f"| {case} |")] + [row]
        TABLE.write_text("\n".join(rows) + "\n")
    else:
        assert row in TABLE.read_text(), f"{TABLE} is out of date: rerun with FLOWHF_WRITE_TABLE=1"


_HEADER = [
    "# Bad inputs: message, exit code, earlier run's files",
    "",
    "Written by `FLOWHF_WRITE_TABLE=1 pytest tests/test_bad_inputs.py` (test_bad_input); every row is",
    "asserted by `make test`: exit code, this exact first line (plus one hint line, no traceback), and the",
    "SHA-256 of every file of an earlier run in the output folder unchanged. Config rows also assert that",
    "no model was loaded. `<tmp>` is the test's temporary folder.",
    "",
    "| case | message (first line) | exit code | files of earlier runs |",
    "|---|---|---|---|",
]
