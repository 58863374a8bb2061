"""Reward from a user Python function, given as ``module:function`` or ``path/to/file.py:function``.

The function is called as ``fn(prompts=[...], completions=[...], **columns)`` (keywords, the way
TRL calls reward functions, so TRL reward functions work unchanged) and must return B numbers
(list, tuple, numpy array or tensor). Anything else raises an error naming the function.
If the loaded object is already a `Reward` it is used as is (keeping its own `score_prefixes`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from flowhf.errors import ConfigError, UserError
from flowhf.rewards.base import Reward, as_reward_tensor


class RewardNotImportable(UserError, ModuleNotFoundError):
    """``python:MODULE:fn`` names a module that cannot be imported (a user error: one CLI line)."""

    default_hint = "make sure the module is on PYTHONPATH, or give a file path ending in .py (python:path/to/file.py:fn)"


class RewardNotFound(UserError, AttributeError):
    """``python:module:FN`` names an attribute the module does not have."""

    default_hint = "check the function name after the last ':' of the python: reward spec"


def load_object(spec: str) -> Any:
    """Import ``module:attr`` or ``file.py:attr`` (attr may be dotted, e.g. ``Class.method``)."""
    if ":" not in spec:
        raise ConfigError(
            f"python reward spec must be 'module:function' or 'path/to/file.py:function', got {spec!r}"
        )
    target, attr = spec.rsplit(":", 1)
    if not target or not attr:
        raise ConfigError(f"python reward spec {spec!r} has an empty module or function name")
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(target)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise RewardNotImportable(
                f"python reward: cannot import module '{target}' ({exc})"
            ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RewardNotFound(f"python reward: '{target}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    return obj


def _import_file(path: str) -> Any:
    """Import a .py file by path under a private module name."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"python reward: file not found: {path}")
    name = "flowhf_user_reward_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"python reward: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # lets dataclasses / pickling inside the user file resolve
    spec.loader.exec_module(module)
    return module


class PythonReward(Reward):
    """Wrap a plain callable ``fn(prompts=..., completions=..., **columns) -> B floats``."""

    def __init__(self, fn: Callable[..., Any], **base_kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"python reward: {fn!r} is not callable")
        base_kwargs.setdefault("name", getattr(fn, "__name__", type(fn).__name__))
        super().__init__(**base_kwargs)
        self.fn = fn

    def score(self, prompts: list[str], completions: list[str], **columns: Any) -> torch.Tensor:
        out = self.fn(prompts=prompts, completions=completions, **columns)
        if isinstance(out, (list, tuple)) and any(
            v is None or isinstance(v, (str, bytes)) for v in out
        ):
            raise TypeError(
                f"python reward '{self.name}' must return {len(completions)} numbers; got non-numbers "
                f"(e.g. {next(v for v in out if v is None or isinstance(v, (str, bytes)))!r})"
            )
        return as_reward_tensor(out, len(completions), self.name)


def python_reward(spec: str | Callable[..., Any], **base_kwargs: Any) -> Reward:
    """A Reward from a spec string or a callable; Reward instances are returned unchanged."""
    obj = load_object(spec) if isinstance(spec, str) else spec
    if isinstance(obj, Reward):
        return obj
    if isinstance(spec, str):
        base_kwargs.setdefault("name", f"python:{spec.rsplit(':', 1)[1]}")
    return PythonReward(obj, **base_kwargs)
