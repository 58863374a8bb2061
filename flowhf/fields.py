"""What every config dataclass shares: `help_field` (a field with its help string, shown by
every ``--help-config``) and the loading of YAML files and ``--set key=value`` overrides.

FlowHFConfig (grouped keys), RewardModelConfig (flat keys) and the baseline configs
(flat keys, a method each) are all read through `read_yaml_mapping`, `parse_assignment` and
`build_dataclass`: one place that rejects unknown keys (naming the closest valid one) and
type-checks values against the field annotations.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml


def help_field(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with ``metadata["help"]``; a dict/list default is copied per instance."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def suggest(key: str, options) -> str:
    """`` (did you mean 'x'?)`` for the closest valid key, or nothing."""
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_yaml_mapping(path: str | os.PathLike, what: str = "config") -> dict:
    """The mapping a YAML file holds (an empty file is {}); anything else is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def parse_assignment(item: str, example: str = "key=value") -> tuple[str, Any]:
    """``key=value`` -> (key, value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {item!r}: expected key=value (e.g. --set {example})")
    return key.strip(), yaml.safe_load(raw)


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
        if base in (int, str, bool, dict, list) and isinstance(value, base):
            if not (base is int and isinstance(value, bool)):  # YAML true is not an int here
                return value
    expected = getattr(hint, "__name__", str(hint))
    raise ValueError(f"config key {key!r}: expected {expected}, got {value!r} ({type(value).__name__})")


def build_dataclass(cls, values: dict, where: str):
    """``cls(**values)`` after rejecting unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping of keys, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    checked = {}
    missing = sorted(n for n, f in fields.items() if n not in values and _required(f))
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}")
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"{where}: unknown key {key!r}{suggest(key, fields) or f'; valid keys: {sorted(fields)}'}")
        try:
            checked[key] = check_value(key, value, hints[key], fields[key].default)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    return cls(**checked)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
