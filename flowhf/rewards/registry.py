"""`build_reward(spec)`: build any reward from a string, a dict, a list, or a callable.

String grammar (terms joined by ``+``, each optionally ``WEIGHT*``; weights are plain numbers,
negative allowed: ``sentiment + -0.5*toxicity``):

    sentiment                      VADER compound score
    toxicity | toxicity:MODE       MODE in log1m (default), neg_prob, prob
    embedding:COLUMN[@MODEL]       cosine similarity to a dataset column (default all-MiniLM-L6-v2)
    classifier:PATH_OR_ID[#LABEL]  any sequence classifier / reward model
    python:MODULE:FUNCTION         or python:path/to/file.py:FUNCTION
    stackexchange-rm               the default StackExchange reward model (trained and cached on first use)

    e.g. "0.7*sentiment + 0.3*toxicity"

Dict form: ``{type: classifier, path: ..., label: ..., weight: 0.5, normalize: running,
floor: -5.0, prefix_stride: 4}``: `type` plus the adapter's options, and the common keys
weight / normalize / floor / prefix_stride / name. `normalize` is ``running`` (or true),
``affine``, ``none`` (or false), or a dict ``{mode: running, clip: 5, momentum: 0.01}`` /
``{mode: affine, scale: 0.5, shift: -1}``. A list is the sum of its items (strings or dicts).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flowhf.errors import ConfigError
from flowhf.rewards.base import Reward
from flowhf.rewards.combine import CombinedReward
from flowhf.rewards.transform import RewardTransform, TransformedReward


def _sentiment(**kw: Any) -> Reward:
    from flowhf.rewards.sentiment import SentimentReward

    return SentimentReward(**kw)


def _toxicity(**kw: Any) -> Reward:
    from flowhf.rewards.toxicity import ToxicityReward

    return ToxicityReward(**kw)


def _embedding(**kw: Any) -> Reward:
    from flowhf.rewards.embedding import EmbeddingReward

    return EmbeddingReward(**kw)


def _classifier(**kw: Any) -> Reward:
    from flowhf.rewards.classifier import ClassifierReward

    return ClassifierReward(**kw)


def _stackexchange_rm(**kw: Any) -> Reward:
    """The default StackExchange reward model (Bradley-Terry on SmolLM2), trained on first use."""
    from flowhf.reward_model.train import default_reward_model_dir
    from flowhf.rewards.classifier import ClassifierReward

    kw.setdefault("name", "stackexchange-rm")
    return ClassifierReward(path=str(default_reward_model_dir()), **kw)


def _python(function: str | Callable[..., Any], **kw: Any) -> Reward:
    from flowhf.rewards.python_fn import python_reward

    return python_reward(function, **kw)


# name -> (builder, the string argument's keyword, whether the argument is required)
REWARD_TYPES: dict[str, tuple[Callable[..., Reward], str | None, bool]] = {
    "sentiment": (_sentiment, None, False),
    "toxicity": (_toxicity, "mode", False),
    "embedding": (_embedding, "column", True),
    "classifier": (_classifier, "path", True),
    "python": (_python, "function", True),
    "stackexchange-rm": (_stackexchange_rm, None, False),
}
_WEIGHTED = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*\*\s*(.+?)\s*$")


class SpecError(ConfigError):
    """A reward spec that does not parse (a ConfigError: one line on the CLI, before any model loads)."""

    default_hint = (
        "a reward spec is NAME[:ARG] terms joined by '+', e.g. sentiment, toxicity, classifier:PATH, "
        "python:module:function, '0.5*sentiment+0.5*toxicity' (flowhf.rewards.registry)"
    )


def available_rewards() -> list[str]:
    """Names accepted as reward types."""
    return sorted(REWARD_TYPES)


def _unknown(name: str) -> ConfigError:
    from flowhf.config.fields import suggest

    return SpecError(
        f"unknown reward {name!r}{suggest(name, REWARD_TYPES)}; valid rewards: {', '.join(available_rewards())} "
        "(see flowhf.rewards.registry for the spec grammar)"
    )


def build_reward(spec: str | dict | list | Reward | Callable[..., Any]) -> Reward:
    """Build a Reward from a spec (see the module docstring)."""
    if isinstance(spec, Reward):
        return spec
    if isinstance(spec, str):
        terms = [t for t in spec.split("+")]
        if any(not t.strip() for t in terms):
            raise SpecError(f"reward spec {spec!r} has an empty term around '+'")
        return _combine([_parse_term(t) for t in terms])
    if isinstance(spec, dict):
        return _combine([_from_dict(spec)])
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise SpecError("an empty list is not a reward spec; give at least one reward")
        parts = []
        for item in spec:
            if isinstance(item, str):
                parts.extend(_parse_term(t) for t in item.split("+"))
            elif isinstance(item, dict):
                parts.append(_from_dict(item))
            else:
                parts.append((build_reward(item), 1.0))
        return _combine(parts)
    if callable(spec):
        return _python(spec)
    raise TypeError(
        f"a reward spec must be a string, dict, list or callable, got {type(spec).__name__}"
    )


def _combine(parts: list[tuple[Reward, float]]) -> Reward:
    """A single unweighted reward stays itself; anything else becomes a CombinedReward."""
    if len(parts) == 1 and parts[0][1] == 1.0:
        return parts[0][0]
    return CombinedReward([r for r, _ in parts], [w for _, w in parts])


def _parse_term(term: str) -> tuple[Reward, float]:
    """``[WEIGHT*]NAME[:ARG]`` -> (reward, weight)."""
    weight = 1.0
    match = _WEIGHTED.match(term)
    if match:
        weight, term = float(match.group(1)), match.group(2)
    name, _, arg = term.strip().partition(":")
    name = name.strip().lower()
    if name not in REWARD_TYPES:
        raise _unknown(name)
    _, key, required = REWARD_TYPES[name]
    kwargs: dict[str, Any] = {}
    if key is None and arg:
        raise SpecError(f"reward '{name}' takes no argument, got '{name}:{arg}'")
    if required and not arg.strip():
        raise SpecError(f"reward '{name}' needs an argument: {name}:{key.upper()}")  # type: ignore[union-attr]
    if arg.strip():
        kwargs.update(_string_arg(name, key, arg.strip()))  # type: ignore[arg-type]
    return _build(name, kwargs), weight


def _string_arg(name: str, key: str, arg: str) -> dict[str, Any]:
    """Split the extras out of a term's argument (embedding @MODEL, classifier #LABEL)."""
    if name == "embedding" and "@" in arg:
        column, model = arg.split("@", 1)
        return {"column": column, "model": model}
    if name == "classifier" and "#" in arg:
        path, label = arg.rsplit("#", 1)
        return {"path": path, "label": int(label) if label.lstrip("-").isdigit() else label}
    return {key: arg}


def _from_dict(spec: dict) -> tuple[Reward, float]:
    """``{type: ..., <adapter options>, weight, normalize, floor, prefix_stride, name}``."""
    spec = dict(spec)
    if "type" not in spec:
        raise SpecError(
            f"reward dict needs a 'type' key (one of {', '.join(available_rewards())}); got keys {sorted(spec)}"
        )
    name = str(spec.pop("type")).lower()
    if name not in REWARD_TYPES:
        raise _unknown(name)
    weight = float(spec.pop("weight", 1.0))
    transform = _transform(spec.pop("normalize", None), spec.pop("floor", None))
    reward = _build(name, spec)
    if transform is not None:
        reward = TransformedReward(reward, transform)
    return reward, weight


def _build(name: str, kwargs: dict[str, Any]) -> Reward:
    """Call the adapter's builder; turn unknown keyword arguments into a clear error."""
    builder = REWARD_TYPES[name][0]
    try:
        return builder(**kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "missing" in str(exc):
            raise TypeError(f"reward '{name}': {exc}") from exc
        raise


def _transform(normalize: Any, floor: Any) -> RewardTransform | None:
    """RewardTransform from the dict keys `normalize` and `floor` (None when both are off)."""
    options: dict[str, Any] = {}
    if normalize in (None, False, "none"):
        pass
    elif normalize is True or normalize == "running":
        options["normalize"] = "running"
    elif normalize == "affine":
        raise SpecError(
            "normalize: affine needs scale/shift: normalize: {mode: affine, scale: S, shift: B}"
        )
    elif isinstance(normalize, dict):
        options.update(normalize)
        mode = options.pop("mode", options.pop("type", None))
        options["normalize"] = mode or (
            "affine" if {"scale", "shift"} & set(options) else "running"
        )
    else:
        raise SpecError(
            f"normalize must be running, affine (as a dict), none or a dict; got {normalize!r}"
        )
    if floor is not None:
        options["floor"] = float(floor)
    if not options:
        return None
    try:
        return RewardTransform(**options)
    except TypeError as exc:
        raise TypeError(f"bad normalize options {normalize!r}: {exc}") from exc
