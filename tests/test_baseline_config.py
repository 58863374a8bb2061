"""Baseline configs are dataclasses read like every FlowHF config: unknown keys, types and
required keys are checked, and each method's keys are exactly its runner's arguments."""

import dataclasses
import inspect

import pytest

from flowhf.baselines.config import METHOD_ARGS, check_config, load_config, runners


@pytest.mark.parametrize("method", sorted(METHOD_ARGS))
def test_config_fields_are_the_runner_arguments(method):
    params = inspect.signature(runners()[method]).parameters
    fields = {f.name: f for f in dataclasses.fields(METHOD_ARGS[method])}
    assert set(params) - {"tokenizer"} == set(fields)  # a tokenizer object never comes from YAML
    for name, f in fields.items():
        default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        assert params[name].default == default, name
        assert f.metadata["help"]


def test_values_are_type_checked(tmp_path):
    path = tmp_path / "grpo.yaml"
    path.write_text("method: grpo\nmodel: m\nprompts_source: p\nreward_spec: sentiment\noutput_dir: o\n"
                    "budget: {max_steps: 1}\n")
    runner, kwargs = check_config(load_config(path, ["lr=0.001", "num_generations=4"]))
    assert runner.__name__ == "run_grpo" and kwargs["num_generations"] == 4
    with pytest.raises(ValueError, match="config key 'num_generations': expected int"):
        check_config(load_config(path, ["num_generations=four"]))
    with pytest.raises(ValueError, match="did you mean 'temperature'"):
        check_config(load_config(path, ["temprature=1.0"]))
