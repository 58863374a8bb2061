"""Known multimodal targets over an enumerable completion space, and user target files.

Built-in target: for each prompt a set of mode strings with different heights h_m; the
log-reward of a string y is max_m (h_m - penalty * edit_distance(y, m)). Modes are at
edit distance >= 3 from each other, so they are separate peaks of the target.

A user target file (``--target FILE.py``) defines ``VOCAB_SIZE``, ``MAX_LEN`` and
``log_reward(tokens: list[int]) -> float`` (EOS excluded); optionally ``N_PROMPTS`` > 1
with ``log_reward(tokens, prompt)``.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowhf.errors import ConfigError
from flowhf.experiments.enumerable.space import CompletionSpace, edit_distance_to

# (vocab_size, max_len) of the built-in sizes. "long" has 87,381 completions per prompt.
SIZES = {"quick": (3, 5), "small": (3, 6), "default": (4, 6), "long": (4, 8)}

# Modes per prompt: (symbols, height). Written for V >= 3; symbols >= V are folded mod V.
_MODES = {
    0: [
        ([0, 1, 2, 3], 0.0),
        ([3, 3, 3, 3, 3], -0.5),
        ([2, 0], -1.0),
        ([1, 1, 1, 1, 1, 1, 1, 1], -1.5),
        ([3, 1, 3, 1, 2, 2], -1.0),
    ],
    1: [
        ([3, 2, 1, 0], -0.5),
        ([0, 0, 0, 0, 0], 0.0),
        ([1, 3], -1.5),
        ([2, 2, 2, 2, 2, 2, 2, 2], -1.0),
        ([0, 2, 0, 3, 3, 1], -1.0),
    ],
}
EDIT_PENALTY = 3.0


@dataclass
class EnumerableTarget:
    name: str
    vocab_size: int
    max_len: int
    n_prompts: int
    table_fn: Callable[[CompletionSpace, int], np.ndarray]  # (space, prompt) -> [N] log R

    @property
    def space(self) -> CompletionSpace:
        return CompletionSpace(self.vocab_size, self.max_len)

    def log_reward_table(self) -> np.ndarray:
        """[n_prompts, N] log R of every completion (float64)."""
        space = self.space
        table = np.stack(
            [np.asarray(self.table_fn(space, p), dtype=np.float64) for p in range(self.n_prompts)]
        )
        if not np.isfinite(table).all() and not (
            table[np.isfinite(table)].size and np.isneginf(table[~np.isfinite(table)]).all()
        ):
            raise ValueError(f"target {self.name!r}: log_reward returned NaN or +inf")
        if np.isneginf(table).all(axis=1).any():
            raise ValueError(
                f"target {self.name!r}: every completion of some prompt has log_reward -inf"
            )
        return table


def builtin_modes(vocab_size: int, max_len: int, prompt: int) -> list[tuple[list[int], float]]:
    modes = []
    for symbols, height in _MODES[prompt % 2]:
        folded = [s % vocab_size for s in symbols][:max_len]
        if folded not in [m for m, _ in modes]:
            modes.append((folded, height))
    return modes


def builtin_target(size: str = "default", n_prompts: int = 2) -> EnumerableTarget:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}: use one of {sorted(SIZES)}")
    vocab_size, max_len = SIZES[size]

    def table(space: CompletionSpace, prompt: int) -> np.ndarray:
        scores = [
            h - EDIT_PENALTY * edit_distance_to(space, m)
            for m, h in builtin_modes(vocab_size, max_len, prompt)
        ]
        return np.max(np.stack(scores), axis=0)

    return EnumerableTarget(f"builtin-{size}", vocab_size, max_len, n_prompts, table)


def load_target_file(path: str | Path) -> EnumerableTarget:
    """Load a user's target: VOCAB_SIZE, MAX_LEN, log_reward(tokens[, prompt]), optional N_PROMPTS."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"target file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"flowhf_user_target_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("VOCAB_SIZE", "MAX_LEN", "log_reward"):
        if not hasattr(module, name):
            raise ConfigError(
                f"{path}: target files must define {name} (VOCAB_SIZE, MAX_LEN, log_reward(tokens))"
            )
    n_prompts = int(getattr(module, "N_PROMPTS", 1))
    fn = module.log_reward
    takes_prompt = len(inspect.signature(fn).parameters) >= 2
    if n_prompts > 1 and not takes_prompt:
        raise ConfigError(f"{path}: N_PROMPTS={n_prompts} needs log_reward(tokens, prompt)")

    def table(space: CompletionSpace, prompt: int) -> np.ndarray:
        out = np.empty(space.size)
        for i in range(space.size):
            tokens = space.tokens(i)
            value = fn(tokens, prompt) if takes_prompt else fn(tokens)
            try:
                out[i] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{path}: log_reward({tokens}) returned {value!r}, expected a float"
                ) from None
        return out

    return EnumerableTarget(
        path.stem, int(module.VOCAB_SIZE), int(module.MAX_LEN), n_prompts, table
    )
