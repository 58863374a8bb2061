"""The sweep's grid: each method's knob x its values x seeds (`Preset.sweep`), checked when
the preset loads, and the report's one line describing it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flowhf.config.baselines import baseline_options
from flowhf.config.fields import suggest
from flowhf.config.preset import BASELINE_METHODS, SWEEP_METHODS, Preset
from flowhf.config.training import FlowHFConfig
from flowhf.errors import ConfigError
from flowhf.experiments import CONFIGS


@dataclass(frozen=True)
class SweepPoint:
    method: str
    knob: str | None  # None: the SFT start
    value: Any
    seed: int

    @property
    def name(self) -> str:
        return (
            f"{self.method}__seed{self.seed}"
            if self.knob is None
            else f"{self.method}__{self.knob}={self.value}__seed{self.seed}"
        )


def sweep_points(preset: Preset) -> list[SweepPoint]:
    """Every point, seed-major: for each seed the SFT start, then each method's grid."""
    points = []
    for seed in preset.sweep_seeds:
        points.append(SweepPoint("sft", None, None, seed))
        for method, grid in preset.sweep.items():
            ((knob, values),) = grid.items()
            points += [SweepPoint(method, knob, value, seed) for value in values]
    return points if preset.sweep else []


def describe_grid(preset: Preset) -> str:
    """The report's one line on what was swept: knobs, seeds, per-method options, budget, judging."""
    knobs = ", ".join(
        f"{m}: {k} in {v}" for m, grid in preset.sweep.items() for k, v in grid.items()
    )
    return (
        f"Grid: {knobs}; seeds {preset.sweep_seeds}; per-method options {json.dumps(preset.method_options)}; "
        f"budget per point {json.dumps(preset.budget)}; per-prompt evaluation {json.dumps(preset.per_prompt)}."
    )


def check_sweep(preset: Preset) -> None:
    """Methods known, one knob per method with a non-empty list of values, knobs that exist
    (checked like the method's own config), method_options likewise; errors say the fix."""
    methods = SWEEP_METHODS
    for key in ("sweep", "method_options"):
        for method in getattr(preset, key):
            if method not in methods:
                raise ConfigError(
                    f"preset key {key}: unknown method {method!r}{suggest(method, methods)}",
                    f"methods are {', '.join(methods)}",
                )
    for method, grid in preset.sweep.items():
        if not isinstance(grid, dict) or len(grid) != 1:
            raise ConfigError(
                f"preset key sweep.{method}: give exactly one knob and its values, got {grid!r}",
                "e.g. sweep: {ppo: {kl_coef: [0.01, 0.05, 0.2]}}",
            )
        ((knob, values),) = grid.items()
        if not isinstance(values, list) or not values or len(set(map(str, values))) != len(values):
            raise ConfigError(
                f"preset key sweep.{method}.{knob}: expected a list of distinct values, got {values!r}"
            )
    if preset.sweep and preset.per_prompt is None:
        raise ConfigError(
            "preset key sweep: the frontier is measured per prompt, but per_prompt is null",
            "set per_prompt (e.g. {n_prompts: 32, k: 8}) or leave sweep empty",
        )
    for method in sorted(set(preset.sweep) | set(preset.method_options)):
        first_value = {knob: values[0] for knob, values in preset.sweep.get(method, {}).items()}
        options = {**preset.method_options.get(method, {}), **first_value}
        if method in BASELINE_METHODS:  # the runner's own keys; those that fix fairness are refused
            baseline_options(method, tuple(f"{k}={v}" for k, v in options.items()))
        else:
            FlowHFConfig.from_yaml(
                CONFIGS / f"{method}.yaml", [f"{k}={v}" for k, v in options.items()]
            )
