"""The space of all completions over a small vocabulary, enumerated and indexed.

A completion is a string of 0..max_len symbols from {0..V-1}. Strings are indexed by
length first, then in base-V order: index = offset[L] + sum_i d_i V^(L-1-i). This lets
prefix lookups, edit neighbours and exact probabilities be plain integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class CompletionSpace:
    vocab_size: int  # V, number of content symbols (EOS excluded)
    max_len: int  # longest completion

    def __post_init__(self) -> None:
        if self.vocab_size < 2 or self.max_len < 1:
            raise ValueError("need vocab_size >= 2 and max_len >= 1")
        if self.size > 2_000_000:
            raise ValueError(
                f"{self.size} completions is too many to enumerate; lower vocab_size or max_len"
            )

    @cached_property
    def offsets(self) -> np.ndarray:
        """offsets[L] = index of the first string of length L; offsets[max_len+1] = size."""
        counts = [self.vocab_size**L for L in range(self.max_len + 1)]
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @property
    def size(self) -> int:
        return int(sum(self.vocab_size**L for L in range(self.max_len + 1)))

    @cached_property
    def lengths(self) -> np.ndarray:
        """[N] length of every string."""
        return np.repeat(np.arange(self.max_len + 1), np.diff(self.offsets)).astype(np.int64)

    @cached_property
    def values(self) -> np.ndarray:
        """[N] base-V value of every string within its length class."""
        return (np.arange(self.size) - self.offsets[self.lengths]).astype(np.int64)

    @cached_property
    def padded(self) -> np.ndarray:
        """[N, max_len] symbols, padded on the right with -1."""
        out = np.full((self.size, self.max_len), -1, dtype=np.int64)
        for L in range(1, self.max_len + 1):
            rows = slice(self.offsets[L], self.offsets[L + 1])
            v = self.values[rows]
            for i in range(L):
                out[rows, i] = (v // self.vocab_size ** (L - 1 - i)) % self.vocab_size
        return out

    def tokens(self, index: int) -> list[int]:
        row = self.padded[index]
        return [int(s) for s in row[row >= 0]]

    def index_of(self, symbols: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Index of each row of `symbols` [B, >=max(lengths)] cut at `lengths` [B]."""
        symbols = np.asarray(symbols, dtype=np.int64)
        B = symbols.shape[0]
        value = np.zeros(B, dtype=np.int64)
        for i in range(symbols.shape[1] if symbols.ndim == 2 else 0):
            active = i < lengths
            value = np.where(
                active, value * self.vocab_size + np.where(active, symbols[:, i], 0), value
            )
        return self.offsets[lengths] + value

    def prefix_indices(self, symbols: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """[B, T+1] index of every prefix (entry t: first t symbols; past L repeats the full string)."""
        B, T = symbols.shape
        out = np.zeros((B, T + 1), dtype=np.int64)
        for t in range(T + 1):
            out[:, t] = self.index_of(symbols, np.minimum(lengths, t))
        return out

    def neighbour_max(self, scores: np.ndarray) -> np.ndarray:
        """[N] max of `scores` over every string one edit away (substitute, insert, delete)."""
        V, best = self.vocab_size, np.full(self.size, -np.inf)
        for L in range(self.max_len + 1):
            rows = np.arange(self.offsets[L], self.offsets[L + 1])
            v = self.values[rows]
            for p in range(L):  # substitutions and deletions at position p
                weight = V ** (L - 1 - p)
                digit = (v // weight) % V
                for s in range(V):
                    sub = self.offsets[L] + v + (s - digit) * weight
                    best[rows] = np.maximum(best[rows], np.where(s == digit, -np.inf, scores[sub]))
                high, low = v // (weight * V), v % weight
                best[rows] = np.maximum(
                    best[rows], scores[self.offsets[L - 1] + high * weight + low]
                )
            if L < self.max_len:  # insertions at position p in 0..L
                for p in range(L + 1):
                    weight = V ** (L - p)
                    high, low = v // weight, v % weight
                    for s in range(V):
                        ins = self.offsets[L + 1] + (high * V + s) * weight + low
                        best[rows] = np.maximum(best[rows], scores[ins])
        return best


def edit_distance_to(space: CompletionSpace, target: list[int]) -> np.ndarray:
    """[N] Levenshtein distance of every string to `target`, vectorised over strings."""
    N, T = space.size, space.max_len
    m = len(target)
    symbols, lengths = space.padded, space.lengths
    # prev[j] = distance(string[:j], target[:i]) as i advances; rows vectorised.
    prev = np.tile(np.arange(T + 1), (N, 1))  # i = 0
    for i in range(1, m + 1):
        cur = np.empty_like(prev)
        cur[:, 0] = i
        for j in range(1, T + 1):
            cost = (symbols[:, j - 1] != target[i - 1]).astype(np.int64)
            cur[:, j] = np.minimum(
                np.minimum(prev[:, j] + 1, cur[:, j - 1] + 1), prev[:, j - 1] + cost
            )
        prev = cur
    return prev[np.arange(N), lengths]
