"""Per-prompt replay buffer of high-reward trajectories.

GFlowNet objectives are off-policy: a trajectory sampled earlier (or by another policy) is
valid training data as long as its log-probs are recomputed under the current policy and its
target log R is known. Replaying the best trajectories found so far for a prompt keeps rare
high-reward modes in the training signal (Shen et al. 2023; Hu et al. 2024 replay the same way).

Design:
- Items are keyed per prompt (the prompt text) and de-duplicated by their token tuple:
  re-adding a stored sequence overwrites its reward, target log R and EOS flag, keeping one copy.
- Over capacity, the lowest-reward item of that prompt is evicted (ties: the oldest one).
- Sampling uses the buffer's own `random.Random`, so the trainer's RNG stream is untouched and a
  restored buffer continues the exact same draw sequence.
- `state_dict()` holds only JSON types (no pickle), so it can be saved as JSON in a checkpoint.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

STATE_VERSION = 1


@dataclass(frozen=True)
class ReplayItem:
    """One stored trajectory. Immutable so callers cannot corrupt the buffer through it."""

    token_ids: tuple[int, ...]  # action tokens, including the final EOS when ended_with_eos
    ended_with_eos: bool
    reward: float  # raw reward r(x, y): used for priorities and eviction
    log_reward: float  # target log R(y|x) when the item was (last) inserted
    # sum of the reference's log-probs of the actions, so log R can be recomputed under a
    # changed beta (None: not recorded, e.g. a checkpoint from before this field)
    ref_log_prob: float | None = None


def _check_finite(name: str, value: float, prompt: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"ReplayBuffer.add: {name} must be finite, got {value} for prompt {prompt[:60]!r}; "
            "filter non-finite rewards before adding them to the buffer."
        )
    return value


class ReplayBuffer:
    """Stores up to `capacity_per_prompt` distinct trajectories per prompt.

    Args:
        capacity_per_prompt: items kept per prompt; the lowest-reward ones are evicted.
        prioritized: sample with probability proportional to exp((r - max r) / priority_temperature)
            within each prompt; uniformly otherwise.
        priority_temperature: > 0; small values concentrate draws on the best items.
        seed: seed of the buffer's private RNG.
        with_replacement: always draw i.i.d. with replacement. Without it, a prompt with a few
            high-priority items and n larger than their count fills the rest of its n slots
            with low-priority ones (all of its distinct items are drawn before any repeats).
    """

    def __init__(
        self,
        capacity_per_prompt: int,
        prioritized: bool = True,
        priority_temperature: float = 1.0,
        seed: int = 0,
        with_replacement: bool = False,
    ) -> None:
        if not isinstance(capacity_per_prompt, int) or capacity_per_prompt < 1:
            raise ValueError(
                f"capacity_per_prompt must be an int >= 1, got {capacity_per_prompt!r}"
            )
        if not (priority_temperature > 0 and math.isfinite(priority_temperature)):
            raise ValueError(
                f"priority_temperature must be a finite number > 0, got {priority_temperature!r}"
            )
        self.capacity_per_prompt = capacity_per_prompt
        self.prioritized = bool(prioritized)
        self.priority_temperature = float(priority_temperature)
        self.with_replacement = bool(with_replacement)
        self._rng = random.Random(seed)
        # prompt -> {token tuple -> item}; dicts keep insertion order, which breaks eviction ties.
        self._store: dict[str, dict[tuple[int, ...], ReplayItem]] = {}

    # ------------------------------------------------------------------ inspection
    def __len__(self) -> int:
        return sum(len(items) for items in self._store.values())

    def size(self, prompt: str) -> int:
        """Number of items stored for `prompt` (0 if never seen)."""
        return len(self._store.get(prompt, {}))

    def prompts(self) -> list[str]:
        """Prompts with at least one stored item, in first-insertion order."""
        return list(self._store)

    def items(self, prompt: str) -> list[ReplayItem]:
        """The items stored for `prompt`, oldest first (empty if never seen)."""
        return list(self._store.get(prompt, {}).values())

    # ------------------------------------------------------------------ insertion
    def add(
        self,
        prompt: str,
        token_ids: Sequence[int],
        ended_with_eos: bool,
        reward: float,
        log_reward: float,
        ref_log_prob: float | None = None,
    ) -> bool:
        """Insert (or refresh) one trajectory. Returns True if it is stored after eviction."""
        if not isinstance(prompt, str):
            raise TypeError(
                f"ReplayBuffer.add: prompt key must be the prompt text (str), got {type(prompt).__name__}"
            )
        key = tuple(int(t) for t in token_ids)
        if not key:
            raise ValueError(
                f"ReplayBuffer.add: empty completion for prompt {prompt[:60]!r}; a trajectory needs >= 1 action"
            )
        if min(key) < 0:
            raise ValueError(
                f"ReplayBuffer.add: negative token id in {list(key)[:20]}; pass unpadded action ids only"
            )
        item = ReplayItem(
            token_ids=key,
            ended_with_eos=bool(ended_with_eos),
            reward=_check_finite("reward", reward, prompt),
            log_reward=_check_finite("log_reward", log_reward, prompt),
            ref_log_prob=None
            if ref_log_prob is None
            else _check_finite("ref_log_prob", ref_log_prob, prompt),
        )
        bucket = self._store.setdefault(prompt, {})
        bucket[key] = item  # existing key: value replaced in place, insertion position kept
        if len(bucket) > self.capacity_per_prompt:
            # min() returns the first minimum in insertion order, i.e. the oldest on ties.
            worst = min(bucket, key=lambda k: bucket[k].reward)
            del bucket[worst]
        return key in bucket

    def add_batch(
        self,
        prompts: Sequence[str],
        token_ids: Sequence[Sequence[int]],
        ended_with_eos: Sequence[bool],
        rewards: Sequence[float],
        log_rewards: Sequence[float],
    ) -> int:
        """`add` for parallel lists (tensors work: they are iterated). Returns how many were kept."""
        columns = [
            list(prompts),
            list(token_ids),
            list(ended_with_eos),
            list(rewards),
            list(log_rewards),
        ]
        lengths = [len(c) for c in columns]
        if len(set(lengths)) != 1:
            raise ValueError(
                "ReplayBuffer.add_batch: prompts, token_ids, ended_with_eos, rewards, log_rewards "
                f"must have equal lengths, got {lengths}"
            )
        return sum(self.add(p, t, bool(e), float(r), float(lr)) for p, t, e, r, lr in zip(*columns))

    # ------------------------------------------------------------------ sampling
    def _weights(self, items: list[ReplayItem]) -> list[float]:
        """Priorities exp((r - max r) / T); the max shift keeps the largest weight at 1 (no overflow)."""
        if not self.prioritized:
            return [1.0] * len(items)
        top = max(item.reward for item in items)
        return [math.exp((item.reward - top) / self.priority_temperature) for item in items]

    def _draw(self, items: list[ReplayItem], n: int) -> list[ReplayItem]:
        """n draws from one prompt's items.

        With n <= len(items): without replacement (sequential draws, each proportional to the
        priorities of the items not yet drawn; weights are recomputed against the remaining max so
        they never all underflow to 0). With n > len(items): n i.i.d. draws WITH replacement, so
        each draw follows the priority distribution exactly (duplicates are then expected).
        """
        if n > len(items) or self.with_replacement:
            return self._rng.choices(items, weights=self._weights(items), k=n)
        if not self.prioritized:
            return self._rng.sample(items, n)
        remaining = list(items)
        chosen = []
        for _ in range(n):
            idx = self._rng.choices(range(len(remaining)), weights=self._weights(remaining), k=1)[0]
            chosen.append(remaining.pop(idx))
        return chosen

    def sample(
        self, prompt_keys: Sequence[str], n_per_prompt: int | Sequence[int]
    ) -> list[list[ReplayItem]]:
        """Draw `n_per_prompt` items for each prompt (one list per prompt, in prompt_keys order).

        `n_per_prompt` is one count for all prompts or one count per prompt. A prompt with no
        stored items (check `size(prompt)` first) raises KeyError rather than silently returning
        fewer trajectories than asked for.
        """
        keys = list(prompt_keys)
        counts = (
            [n_per_prompt] * len(keys)
            if isinstance(n_per_prompt, int)
            else [int(n) for n in n_per_prompt]
        )
        if len(counts) != len(keys):
            raise ValueError(
                f"ReplayBuffer.sample: {len(keys)} prompts but {len(counts)} counts in n_per_prompt"
            )
        out = []
        for prompt, n in zip(keys, counts):
            if n < 0:
                raise ValueError(
                    f"ReplayBuffer.sample: negative count {n} for prompt {prompt[:60]!r}"
                )
            if n == 0:
                out.append([])
                continue
            items = self.items(prompt)
            if not items:
                raise KeyError(
                    f"ReplayBuffer.sample: no trajectories stored for prompt {prompt[:60]!r}; "
                    "check buffer.size(prompt) > 0 before sampling it"
                )
            out.append(self._draw(items, n))
        return out

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """JSON-serialisable state: settings, items (oldest first per prompt) and the RNG state."""
        version, internal, gauss_next = self._rng.getstate()
        return {
            "version": STATE_VERSION,
            "capacity_per_prompt": self.capacity_per_prompt,
            "prioritized": self.prioritized,
            "priority_temperature": self.priority_temperature,
            "rng_state": [version, list(internal), gauss_next],
            "items": {
                prompt: [
                    {
                        "token_ids": list(item.token_ids),
                        "ended_with_eos": item.ended_with_eos,
                        "reward": item.reward,
                        "log_reward": item.log_reward,
                        "ref_log_prob": item.ref_log_prob,
                    }
                    for item in bucket.values()
                ]
                for prompt, bucket in self._store.items()
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore items and RNG state from `state_dict()` output (e.g. after json.load).

        Settings come from the constructor (the run's config); a mismatch with the saved settings
        warns, and a smaller capacity evicts the lowest-reward items as `add` would.
        """
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            got = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"ReplayBuffer.load_state_dict: expected a state dict with version {STATE_VERSION}, got {got!r}"
            )
        for key in ("rng_state", "items"):
            if key not in state:
                raise ValueError(
                    f"ReplayBuffer.load_state_dict: state is missing the {key!r} entry"
                )
        changed = [
            f"{name}: saved {state.get(name)!r}, now {getattr(self, name)!r}"
            for name in ("capacity_per_prompt", "prioritized", "priority_temperature")
            if state.get(name) != getattr(self, name)
        ]
        if changed:
            warnings.warn(
                "ReplayBuffer settings differ from the checkpoint; using the current ones ("
                + "; ".join(changed)
                + ")",
                stacklevel=2,
            )
        self._store = {}
        for prompt, rows in state["items"].items():
            for i, row in enumerate(rows):
                try:
                    self.add(
                        prompt,
                        row["token_ids"],
                        row["ended_with_eos"],
                        row["reward"],
                        row["log_reward"],
                        row.get("ref_log_prob"),
                    )
                except (KeyError, TypeError) as err:
                    raise ValueError(
                        f"ReplayBuffer.load_state_dict: malformed item {i} of prompt {prompt[:60]!r}: {err!r}"
                    ) from err
        version, internal, gauss_next = state["rng_state"]
        self._rng.setstate((version, tuple(internal), gauss_next))
