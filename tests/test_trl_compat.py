"""TRL's flat GRPOConfig names on FlowHFConfig: every row of docs/coming-from-trl.md's table is applied
(the TRL call and the grouped call save the same config.yaml, or the error names the
equivalent), the table lists every name FlowHF knows, and unknown names are errors."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest
import yaml

from flowhf.config.training import FlowHFConfig
from flowhf.config.trl_names import TRL_NAMES
from flowhf.errors import ConfigError

TRL_DOC = Path(__file__).resolve().parents[1] / "docs" / "coming-from-trl.md"
SNIPPET = re.compile(r"`([^`]+)`")


def table_rows() -> list[tuple[str, str]]:
    """(TRL cell, FlowHF cell) of each row of the TRL name table in docs/coming-from-trl.md."""
    text = TRL_DOC.read_text(encoding="utf-8")
    section = text[text.index("## TRL's config names") :]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append((cells[0], cells[1]))
    return rows


def assignments(cell: str) -> dict:
    """``name=value`` snippets of a cell, values as Python literals."""
    out = {}
    for snippet in SNIPPET.findall(cell):
        key, _, value = snippet.partition("=")
        out[key.strip()] = ast.literal_eval(value.strip())
    return out


def grouped(dotted: dict) -> FlowHFConfig:
    data: dict = {}
    for key, value in dotted.items():
        group, name = key.split(".")
        data.setdefault(group, {})[name] = value
    return FlowHFConfig.from_dict(data)


def saved(config: FlowHFConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


@pytest.mark.parametrize("trl_cell,flowhf_cell", table_rows(), ids=[r[0] for r in table_rows()])
def test_every_row_of_the_readme_table(trl_cell, flowhf_cell):
    trl = assignments(trl_cell)
    if flowhf_cell.startswith("error"):
        with pytest.raises(ConfigError) as err:
            FlowHFConfig(**trl)
        said = f"{err.value} {err.value.hint}"
        for snippet in SNIPPET.findall(flowhf_cell):
            assert snippet in said, f"{trl_cell}: the error does not say {snippet!r}: {said}"
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (max_steps overriding num_train_epochs warns)
        flat = FlowHFConfig(**trl)
    expected = (
        FlowHFConfig() if flowhf_cell.startswith("nothing") else grouped(assignments(flowhf_cell))
    )
    assert saved(flat) == saved(expected)


def test_the_table_lists_every_trl_name_flowhf_knows():
    documented = {name for cell, _ in table_rows() for name in assignments(cell)}
    assert set(TRL_NAMES) <= documented, sorted(set(TRL_NAMES) - documented)


def test_trl_names_combine_and_keep_the_grouped_values():
    from flowhf.config.training import OptimArgs

    config = FlowHFConfig(
        optim=OptimArgs(warmup_steps=5),
        learning_rate=1e-5,
        num_generations=8,
        per_device_train_batch_size=16,
        output_dir="runs/x",
    )
    assert (config.optim.warmup_steps, config.optim.learning_rate) == (5, 1e-5)
    assert (config.sampling.samples_per_prompt, config.sampling.prompts_per_step) == (8, 2)
    assert (
        config.output_dir == "runs/x" and config.learning_rate == 1e-5
    )  # read back, as callbacks read args
    with pytest.warns(
        UserWarning, match="num_train_epochs=2 is overridden by max_steps=10, as in TRL"
    ):
        assert FlowHFConfig(max_steps=10, num_train_epochs=2).optim.num_train_epochs is None


def test_unknown_and_badly_typed_names_are_errors_that_say_what_to_do():
    with pytest.raises(
        ConfigError, match=r"unknown keyword 'learnig_rate' \(did you mean 'learning_rate'\?\)"
    ):
        FlowHFConfig(learnig_rate=1e-5)
    with pytest.raises(ConfigError, match=r"optim.learning_rate=-1: must be a number > 0"):
        FlowHFConfig(learning_rate=-1)
    with pytest.raises(ConfigError, match=r"sampling.samples_per_prompt='eight': expected int"):
        FlowHFConfig(num_generations="eight")
    with pytest.raises(ConfigError, match="expected OptimArgs or a dict of its keys"):
        FlowHFConfig(optim=3)
    with pytest.raises(AttributeError):
        _ = FlowHFConfig().temperature  # not one-to-one: read sampling.temperature_low/high


def test_num_train_epochs_sets_the_step_budget():
    from flowhf.training.batch import steps_for_epochs

    assert steps_for_epochs(2, rows=10, per_process=4, world=1) == 5
    assert steps_for_epochs(1, rows=10, per_process=4, world=2) == 2
    assert steps_for_epochs(0.1, rows=10, per_process=4, world=1) == 1


def test_max_prompt_length_keeps_the_end_of_a_longer_prompt():
    from flowhf.data.loading import DataError
    from flowhf.training.batch import fit_prompts

    encoded = [[1, 2, 3, 4, 5], [6, 7]]
    assert fit_prompts(encoded, ["a", "b"], 512, 8, "truncate", max_prompt_length=3) == (
        [[3, 4, 5], [6, 7]],
        1,
    )
    assert fit_prompts(encoded, ["a", "b"], None, 8, "truncate", max_prompt_length=3) == (
        [[3, 4, 5], [6, 7]],
        1,
    )
    with pytest.raises(DataError, match="has 5 tokens; sampling.max_prompt_length=3"):
        fit_prompts(encoded, ["a", "b"], 512, 8, "error", max_prompt_length=3)
