"""Loading a `flowhf reproduce` preset: a shipped one (`flowhf.config.preset.PRESETS`) or a YAML
file of `Preset` keys over ``base: NAME``, then ``--set`` items; every value is checked (type,
range, unknown keys, budgets key by key, the sweep grid) before anything loads, naming the file
and line.
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path

from flowhf.config.fields import (
    Overrides,
    Source,
    apply_overrides,
    build_dataclass,
    read_yaml_with_lines,
)
from flowhf.config.preset import PRESETS, Preset, StageTable, get_preset
from flowhf.errors import ConfigError
from flowhf.experiments.reproduce.grid import check_sweep


def load_preset(spec: str | os.PathLike, overrides: list[str] | tuple = ()) -> Preset:
    """The preset ``spec`` names: a shipped one (``smoke``, ``cpu``, ``paper``) or a YAML file
    of `Preset` keys over ``base: NAME`` (default smoke; a key given replaces the base's value
    whole), then ``--set key=value`` / ``--set budget.max_steps=5``. Every value is checked
    like every config (`flowhf.config.fields`: type, range, unknown keys; budgets key by key as
    `flowhf.config.budget.Budget`) before anything loads: errors name the file and line (or --set)."""
    data, source = _preset_file(spec)
    base = get_preset(data.pop("base", "smoke")) if str(spec) not in PRESETS else PRESETS[str(spec)]
    source.overridden |= apply_overrides(data, overrides, _preset_overrides(data, base))
    preset = build_dataclass(Preset, {**asdict(base), **data}, "preset", source)
    for key, cls in _checked_mappings().items():
        if getattr(preset, key) is not None:
            build_dataclass(cls, getattr(preset, key), f"preset key {key!r}", source, group=(key,))
    if preset.sweep or preset.method_options:
        check_sweep(preset)
    return preset


def _preset_file(spec: str | os.PathLike) -> tuple[dict, Source]:
    """({}, the shipped name) or a preset file's keys and their lines; ``base`` is checked here."""
    if str(spec) in PRESETS:
        return {}, Source(f"preset {spec}")
    path = Path(spec)
    if not path.exists() and path.suffix not in (".yaml", ".yml"):
        get_preset(str(spec))  # the unknown-name error
    data, source = read_yaml_with_lines(path, "preset")
    if "base" in data and data["base"] not in PRESETS:
        raise ConfigError(
            f"{source.where('base')}: base={data['base']!r}: must be one of {', '.join(sorted(PRESETS))}",
            "base names the shipped preset whose values the file's keys change",
        )
    return data, source


def _preset_overrides(data: dict, base: Preset) -> Overrides:
    """``--set key=value``; ``key.sub=value`` sets one key of a mapping (e.g. the budget),
    over the file's value or else the base preset's (copied: the shipped preset stays)."""

    def path(key: str) -> tuple[str, ...]:
        name, dot, sub = key.partition(".")
        if not dot:
            return (key,)
        current = data.get(name, getattr(base, name, None))
        if not any(f.name == name for f in fields(Preset)) or not isinstance(
            current, (dict, type(None))
        ):
            raise ConfigError(
                f"--set {key}: {name!r} is not a preset key holding a mapping",
                "mapping keys are budget, sft_budget, reward_model, per_prompt, stage_hours, stage_seconds",
            )
        return name, sub

    return Overrides(
        "budget.max_steps=5",
        path,
        lambda node, name, _item: dict(node.get(name, getattr(base, name, None)) or {}),
    )


def _checked_mappings() -> dict[str, type]:
    """Preset keys holding a mapping -> the dataclass whose fields check its keys and values."""
    from flowhf.config.budget import Budget
    from flowhf.config.evaluation import PerPromptSettings
    from flowhf.config.reward_model import RewardModelConfig

    return {
        "budget": Budget,
        "sft_budget": Budget,
        "reward_model": RewardModelConfig,
        "stage_hours": StageTable,
        "stage_seconds": StageTable,
        "per_prompt": PerPromptSettings,
    }
