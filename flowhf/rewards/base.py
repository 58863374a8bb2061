"""The `Reward` base class shared by every adapter, and the prefix-scoring helpers.

One signature everywhere (see ARCHITECTURE.md):

    reward(prompts: list[str], completions: list[str], **columns) -> Tensor[B] float32

`columns` are extra dataset columns (lists of length B, e.g. ``reference=[...]``); an adapter
takes the ones it needs and ignores the rest, so a trainer can pass every column to every reward.

Prefix scoring (used as prefix energies by the FL / SubTB objectives):

    reward.score_prefixes(prompts, completion_ids, tokenizer, **columns) -> Tensor[B, T+1]

entry ``t`` is the reward of the completion cut after its first ``t`` tokens (t = 0 is the empty
completion), T is the longest completion, and positions after a row's length repeat that row's
final value, so column ``T`` always holds every row's full-completion reward.

Token-level rewards: a reward with ``uses_completion_ids = True`` also receives
``completion_ids`` (list of B action-id lists, EOS included when the completion ended with one),
TRL's name for the same thing. The trainer and the GRPO / PPO adapters pass it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

Columns = dict[str, Sequence[Any]]


class Reward:
    """Base class: subclasses implement `score`; `__call__` validates inputs and output.

    The default `score_prefixes` decodes every prefix with the POLICY tokenizer and scores the
    texts in batches through `__call__`. It works for any reward but costs one reward evaluation
    per prefix; adapters with a cheaper exact route (the causal classifier) override it.
    """

    name: str = "reward"
    uses_completion_ids: bool = (
        False  # True: callers pass completion_ids (see the module docstring)
    )
    allow_nonfinite: bool = (
        False  # True: NaN/±inf are returned, for a caller that floors them (the trainer)
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        prefix_stride: int = 1,
        prefix_batch_size: int = 64,
        skip_special_tokens: bool = True,
    ) -> None:
        if name is not None:
            self.name = name
        self.set_prefix_stride(prefix_stride)
        if prefix_batch_size < 1:
            raise ValueError(f"prefix_batch_size must be >= 1, got {prefix_batch_size}")
        self.prefix_batch_size = prefix_batch_size
        # Prefix texts are decoded like completions are (special tokens such as EOS dropped), so
        # the last prefix scores exactly the string the reward sees for the full completion.
        self.skip_special_tokens = skip_special_tokens

    def set_prefix_stride(self, stride: int) -> None:
        """Score every `stride`-th prefix (plus the final one) in the default prefix path.

        stride > 1 is an APPROXIMATION: prefixes between two scored ones get the value of the last
        scored prefix before them (held constant), so intermediate prefix energies lag behind the
        true ones by up to stride - 1 tokens. The final (full-completion) value is always exact.
        """
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"prefix_stride must be an integer >= 1, got {stride!r}")
        self.prefix_stride = stride

    # -- full completions -------------------------------------------------------------------

    def score(self, prompts: list[str], completions: list[str], **columns: Any) -> torch.Tensor:
        """Return one reward per completion; implemented by each adapter."""
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> torch.Tensor:
        check_batch(prompts, completions, columns, self.name)
        out = as_reward_tensor(
            self.score(list(prompts), list(completions), **columns), len(prompts), self.name
        )
        return (
            out
            if self.allow_nonfinite
            else check_finite(out, self.name, list(prompts), list(completions))
        )

    # -- prefixes ---------------------------------------------------------------------------

    def score_prefixes(
        self,
        prompts: list[str],
        completion_ids: list[list[int]],
        tokenizer: Any,
        **columns: Any,
    ) -> torch.Tensor:
        """Rewards of every prefix of every completion, [B, T+1] (see the module docstring)."""
        check_batch(prompts, completion_ids, columns, self.name)
        return score_prefixes_by_text(self, prompts, completion_ids, tokenizer, columns)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# -- validation --------------------------------------------------------------------------------


def check_batch(prompts: Sequence, completions: Sequence, columns: Columns, name: str) -> None:
    """Raise a clear error when prompts, completions and columns do not share one batch size."""
    if isinstance(prompts, str) or isinstance(completions, str):
        raise TypeError(
            f"reward '{name}': prompts and completions must be lists of strings, not a str"
        )
    if len(prompts) != len(completions):
        raise ValueError(
            f"reward '{name}': got {len(prompts)} prompts but {len(completions)} completions; "
            "pass one prompt per completion (repeat a prompt for several samples)"
        )
    for key, values in columns.items():
        if values is None:
            continue
        try:
            n = len(values)
        except TypeError:
            raise TypeError(
                f"reward '{name}': column '{key}' must be a list with one value per completion, "
                f"got {type(values).__name__}"
            ) from None
        if n != len(prompts) or isinstance(values, str):
            raise ValueError(
                f"reward '{name}': column '{key}' has {n} values but the batch has {len(prompts)} "
                "completions; pass one value per completion"
            )


def as_reward_tensor(value: Any, batch_size: int, name: str) -> torch.Tensor:
    """Convert an adapter's output to a CPU float32 tensor of shape [B], or raise."""
    try:
        if isinstance(value, torch.Tensor):
            out = value.detach().to(device="cpu", dtype=torch.float32)
        else:
            out = torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"reward '{name}' must return {batch_size} numbers, got {value!r:.200}"
        ) from exc
    if out.shape != (batch_size,):
        raise ValueError(
            f"reward '{name}' returned shape {tuple(out.shape)}, expected ({batch_size},): "
            "one float per completion"
        )
    return out


def check_finite(
    values: torch.Tensor, name: str, prompts: list[str], completions: list[str]
) -> torch.Tensor:
    """``values`` if all finite; else the one rule for NaN and ±inf rewards: an error naming the
    reward, the prompt and the completion (the trainer's target.nonfinite_reward=floor is the
    way to accept them)."""
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    if bad:
        from flowhf.errors import RewardError

        i = bad[0]
        raise RewardError(
            f"reward {name!r} gave a value of {values[i].item()} for prompt {prompts[i][:80]!r} and completion "
            f"{completions[i][:80]!r} ({len(bad)} non-finite in the batch); NaN and ±inf rewards are errors by default"
        )
    return values


# -- prefix helpers ----------------------------------------------------------------------------


def prefix_positions(length: int, stride: int) -> list[int]:
    """Prefix lengths to score: 0, stride, 2*stride, ... and always the full length."""
    positions = list(range(0, length + 1, stride))
    if positions[-1] != length:
        positions.append(length)
    return positions


def hold_values(length: int, positions: list[int], values: Sequence[float]) -> torch.Tensor:
    """Expand values scored at `positions` to all prefixes 0..length, holding the last value."""
    out = torch.empty(length + 1, dtype=torch.float32)
    bounds = positions[1:] + [length + 1]
    for start, end, value in zip(positions, bounds, values):
        out[start:end] = float(value)
    return out


def pad_prefix_rows(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack per-row prefix values (row b has L_b + 1 entries) into [B, T+1].

    Positions after a row's length repeat that row's final value (the padding rule), so the
    last column holds every row's full-completion reward.
    """
    if not rows:
        return torch.zeros(0, 1, dtype=torch.float32)
    width = max(int(r.numel()) for r in rows)
    out = torch.empty(len(rows), width, dtype=torch.float32)
    for b, row in enumerate(rows):
        n = int(row.numel())
        out[b, :n] = row.to(torch.float32)
        out[b, n:] = row[-1]
    return out


def take_rows(columns: Columns, rows: Sequence[int]) -> dict[str, list]:
    """Columns restricted (and repeated) to the given row indices, for re-batched calls."""
    return {k: (None if v is None else [v[r] for r in rows]) for k, v in columns.items()}


def score_prefixes_by_text(
    reward: Reward,
    prompts: Sequence[str],
    completion_ids: Sequence[Sequence[int]],
    tokenizer: Any,
    columns: Columns,
) -> torch.Tensor:
    """Default prefix path: decode prefixes with the policy tokenizer, score texts in batches.

    Identical prefix texts within a row (byte-level tokens that decode to nothing, special
    tokens skipped on decoding) are scored once.
    """
    if tokenizer is None or not hasattr(tokenizer, "decode"):
        raise TypeError(
            f"reward '{reward.name}': score_prefixes needs the policy tokenizer (to decode prefixes), "
            f"got {type(tokenizer).__name__}"
        )
    stride = reward.prefix_stride
    queries: list[tuple[int, str]] = []  # (row, prefix text), unique within a row
    row_plans: list[tuple[list[int], list[int]]] = []  # (positions, query index per position)
    for b, ids in enumerate(completion_ids):
        ids = [int(i) for i in ids]
        positions = prefix_positions(len(ids), stride)
        seen: dict[str, int] = {}
        slots = []
        for t in positions:
            text = tokenizer.decode(ids[:t], skip_special_tokens=reward.skip_special_tokens)
            if text not in seen:
                seen[text] = len(queries)
                queries.append((b, text))
            slots.append(seen[text])
        row_plans.append((positions, slots))

    values = torch.empty(len(queries), dtype=torch.float32)
    step = reward.prefix_batch_size
    for start in range(0, len(queries), step):
        chunk = queries[start : start + step]
        rows = [b for b, _ in chunk]
        values[start : start + len(chunk)] = reward(
            [prompts[b] for b in rows], [text for _, text in chunk], **take_rows(columns, rows)
        )

    out_rows = []
    for (positions, slots), ids in zip(row_plans, completion_ids):
        out_rows.append(hold_values(len(ids), positions, values[slots].tolist()))
    return pad_prefix_rows(out_rows)
