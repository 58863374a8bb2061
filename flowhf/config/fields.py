"""What every config dataclass shares: `help_field` (a field with its help string, shown by
every ``--help-config``) and the loading of YAML files and ``--set key=value`` overrides.

FlowHFConfig (grouped keys), RewardModelConfig (flat keys) and the baseline configs
(flat keys, a method each) are all read through `flowhf.io`, `apply_overrides` (the one
``--set`` applier, `Overrides` saying how a config's keys nest) and `build_dataclass`: one place that rejects unknown keys (naming the closest valid one) and
type-checks values against the field annotations, then against the field's ``allowed`` range
or choices. Errors are `ConfigError`s naming the file and line of the key (or the ``--set``
that gave it), the bad value and what is allowed, raised before any model loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowhf import io
from flowhf.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Allowed numbers: finite, between optional bounds (open or closed)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def ok(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        low = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return low and (
            self.high is None or (value < self.high if self.high_open else value <= self.high)
        )

    def __str__(self) -> str:
        if self.high is None:
            return (
                f"a number {'>' if self.low_open else '>='} {self.low:g}"
                if self.low is not None
                else "a finite number"
            )
        return f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class OneOf:
    """Allowed values: one of a fixed set (for a list field: each item)."""

    values: tuple

    def ok(self, value: Any) -> bool:
        items = value if isinstance(value, list) else [value]
        return all(v in self.values for v in items)

    def __str__(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
PROBABILITY = Range(0, 1)


def help_field(default: Any, help: str, allowed: Range | OneOf | None = None, **kw: Any) -> Any:
    """A dataclass field with ``metadata["help"]`` (and ``["allowed"]``, checked on load);
    a dict/list default is copied per instance."""
    meta = {"help": help, "allowed": allowed}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


class Source:
    """Where config values came from, for errors: a YAML file (each key's line) and the
    dotted keys that ``--set`` gave."""

    def __init__(self, path: str | os.PathLike | None = None, lines: dict | None = None) -> None:
        self.path, self.lines, self.overridden = path, lines or {}, set()

    def where(self, *keys: str) -> str:
        dotted = ".".join(keys)
        if dotted in self.overridden:
            return f"--set {dotted}"
        for n in range(len(keys), 0, -1):  # the key's own line, else its group's
            if keys[:n] in self.lines:
                return f"{self.path}, line {self.lines[keys[:n]]}"
        return str(self.path or "config")


def suggest(key: str, options) -> str:
    """`` (did you mean 'x'?)`` for the closest valid key, or nothing."""
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_yaml_source(path: str | os.PathLike, what: str = "config") -> tuple[dict, Source]:
    """The mapping a YAML file holds and its `Source` (the line of every key, for errors);
    a bad file is a `ConfigError` naming the file and line (`flowhf.io.read_yaml_with_lines`)."""
    data, lines = io.read_yaml_with_lines(path, what)
    return data, Source(Path(path), lines)


def parse_assignment(item: str, example: str = "key=value") -> tuple[str, Any]:
    """``key=value`` -> (key, value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value (e.g. --set {example})")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(
            f"--set {item!r}: the value is not valid YAML", "quote it, e.g. --set key='a: b'"
        ) from None


def _dotted(key: str) -> tuple[str, ...]:
    return tuple(key.split("."))


def _mapping_below(node: dict, part: str, item: str) -> dict:
    """The mapping at ``node[part]`` (a new one when absent or null); anything else is an error."""
    child = node.get(part)
    if child is None:
        return {}
    if not isinstance(child, dict):
        raise ConfigError(f"override {item!r}: {part!r} is {child!r}, not a mapping")
    return child


@dataclass(frozen=True)
class Overrides:
    """How one config's ``--set key=value`` items land in its YAML mapping (`apply_overrides`):
    ``path`` turns the key into the keys to descend and the one to set (checking them), and
    ``child(mapping, key, item)`` is the mapping to descend into (created when absent)."""

    example: str  # shown when an item is not key=value
    path: Callable[[str], tuple[str, ...]] = _dotted
    child: Callable[[dict, str, str], dict] = _mapping_below


NESTED = Overrides("budget.max_steps=2")  # ``a.b.c=value`` at any depth
FLAT = Overrides("epochs=3", path=lambda key: (key,))  # one level: the key is set as given


def apply_overrides(data: dict, items: Iterable[str], how: Overrides = NESTED) -> set[str]:
    """Apply ``key=value`` items (values parsed as YAML) to ``data`` in place, as ``how`` maps
    their keys; returns the dotted keys set (errors then name the ``--set``, not the file).
    The one override applier of every config (FlowHF, reward model, presets, baselines)."""
    done = set()
    for item in items:
        key, value = parse_assignment(item, how.example)
        *parents, last = how.path(key)
        node = data
        for part in parents:
            node[part] = how.child(node, part, item)
            node = node[part]
        node[last] = value
        done.add(".".join((*parents, last)))
    return done


def read_with_overrides(
    path: str | os.PathLike | None, overrides: Iterable[str], how: Overrides, what: str = "config"
) -> tuple[dict, Source]:
    """A config file's mapping (none: {}) with the ``--set`` items applied, and its `Source`
    (each key's line, and which keys the ``--set`` gave): what every config loader starts from."""
    data, source = read_yaml_source(path, what) if path is not None else ({}, Source("--set"))
    source.overridden |= apply_overrides(data, overrides, how)
    return data, source


def check_value(key: str, value: Any, hint: Any, default: Any = dataclasses.MISSING) -> Any:
    """``value`` if it fits the annotation ``hint`` (ints accepted for floats, None where the
    default is None); otherwise an error naming the key and the expected type."""
    if value is None and default is None:
        return None
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = typing.get_args(hint) if union else (hint,)
    for kind in allowed:
        base = typing.get_origin(kind) or kind
        if kind is Any:
            return value
        if value is None and kind is type(None):
            return None
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str) and _is_number(value):
            return float(value)  # YAML reads 1e-4 (no dot) as a string
        if base in (int, str, bool, dict, list) and isinstance(value, base):
            if not (base is int and isinstance(value, bool)):  # YAML true is not an int here
                return value
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(
        f"config key {key!r}: expected {expected}, got {value!r} ({type(value).__name__})"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_allowed(key: str, value: Any, f: dataclasses.Field) -> Any:
    """``value`` if it is in the field's allowed range or choices (None passes: it means unset)."""
    allowed = f.metadata.get("allowed")
    if allowed is None or value is None or allowed.ok(value):
        return value
    raise ConfigError(f"config key {key!r}: must be {allowed}")


def build_dataclass(cls, values: dict, where: str, source: Source | None = None, group: tuple = ()):
    """``cls(**values)`` after rejecting unknown keys and values of the wrong type or range.
    Errors name ``where`` or, given ``source``, the file and line (or ``--set``) of the key."""
    locate = (lambda *k: source.where(*group, *k)) if source else (lambda *k: where)
    if not isinstance(values, dict):
        raise ConfigError(
            f"{locate()}: {where}: expected a mapping of keys, got {type(values).__name__}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    checked = {}
    missing = sorted(n for n, f in fields.items() if n not in values and _required(f))
    if missing:
        raise ConfigError(f"{locate()}: missing required key(s) {missing}")
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"{locate(key)}: unknown key {'.'.join((*group, key))!r}"
                f"{suggest(key, fields) or f'; valid keys: {sorted(fields)}'}"
            )
        try:
            checked[key] = check_allowed(
                key, check_value(key, value, hints[key], fields[key].default), fields[key]
            )
        except ValueError as err:
            raise ConfigError(
                _bad_value(locate(key), ".".join((*group, key)), value, err, fields[key])
            ) from None
    try:
        return cls(**checked)
    except (ValueError, TypeError) as err:  # a __post_init__ check across keys
        raise ConfigError(f"{locate()}: {err}") from None


def _bad_value(where: str, dotted: str, value: Any, err: Exception, f: dataclasses.Field) -> str:
    """``FILE, line N: key='bad': expected ...`` (or ``--set key='bad': ...``)."""
    detail = str(err).split(": ", 1)[-1]
    allowed = f.metadata.get("allowed")
    if allowed is not None and "must be" not in detail:
        detail += f"; must be {allowed}"
    head = (
        f"--set {dotted}={value!r}" if where.startswith("--set") else f"{where}: {dotted}={value!r}"
    )
    return f"{head}: {detail}"


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
