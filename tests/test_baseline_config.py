"""Baseline configs are dataclasses read like every FlowHF config: unknown keys, types and
required keys are checked, and each method's keys are exactly its runner's arguments."""

import dataclasses
import inspect

import pytest

from flowhf.config.baselines import METHOD_ARGS, check_config, load_config
from flowhf.experiments.baselines import RUNNERS


@pytest.mark.parametrize("method", sorted(METHOD_ARGS))
def test_runner_options_are_the_config_fields(tmp_path, method):
    """Each runner's keyword options are its dataclass (one place for names, defaults, help)."""
    params = inspect.signature(RUNNERS[method]).parameters
    fields = {f.name: f for f in dataclasses.fields(METHOD_ARGS[method])}
    assert set(params) - {"tokenizer", "options"} <= set(fields)
    assert all(f.metadata["help"] for f in fields.values())
    positional = [
        f"x{i}" for i, p in enumerate(params.values()) if p.kind == p.POSITIONAL_OR_KEYWORD
    ]
    with pytest.raises(TypeError, match="budgett"):  # raised before any model loads
        RUNNERS[method](*positional, budget={"max_steps": 1}, budgett={})


def test_values_are_type_checked(tmp_path):
    path = tmp_path / "grpo.yaml"
    path.write_text(
        "method: grpo\nmodel: m\nprompts_source: p\nreward_spec: sentiment\noutput_dir: o\n"
        "budget: {max_steps: 1}\n"
    )
    method, kwargs = check_config(load_config(path, ["lr=0.001", "num_generations=4"]))
    assert RUNNERS[method].__name__ == "run_grpo" and kwargs["num_generations"] == 4
    with pytest.raises(ValueError, match="num_generations='four': expected int"):
        check_config(load_config(path, ["num_generations=four"]))
    with pytest.raises(ValueError, match="did you mean 'temperature'"):
        check_config(load_config(path, ["temprature=1.0"]))
