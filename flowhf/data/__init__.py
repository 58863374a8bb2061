"""Data loading: shipped JSONL files, local files and `datasets` specs, validated row by row."""

from flowhf.data.loading import (
    DataError,
    load_preference_pairs,
    load_prompts,
    load_rows,
    shipped_path,
)

__all__ = ["DataError", "load_preference_pairs", "load_prompts", "load_rows", "shipped_path"]
