"""Files FlowHF writes and reads: every write is atomic, every read error names the line.

Writes. A file is written to a temporary sibling ``.tmp-<pid>-<name>`` and renamed over its
target (`atomic_path`, `atomic_write_text`); a folder is built in a temporary sibling
``.tmp-<name>-*`` renamed into place (`atomic_folder`), or, for a folder that holds other
files (a run folder), its new entries are renamed in one by one (`atomic_files`). A reader,
or a rerun after a kill, sees the old file or the whole new one, never half of it. A folder
several processes may ask for at once (a converted model in the cache) is built once, under
a file lock (`build_folder_once`, `file_lock`).

Reads. YAML with the line of every key (`read_yaml_with_lines`, `read_yaml_mapping`) and
JSONL with line numbers (`iter_jsonl`, `read_jsonl`): a bad file is a user error naming the
file and the line.

Light on purpose: no torch; nothing from FlowHF but `flowhf.errors`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from flowhf.errors import ConfigError, InputError

try:  # POSIX file locks; elsewhere concurrent builds are tolerated by the atomic rename
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

logger = logging.getLogger(__name__)


# --- atomic files and folders ---------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` (same suffix, so writers that read the format from it,
    e.g. matplotlib or numpy, still can) to write; renamed over ``path`` when the block
    succeeds, deleted when it fails."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary sibling and rename it over ``path``: a reader (or a rerun
    after a kill) sees the old file or the whole new one, never half of it."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """A new temporary folder beside ``target`` to write into; when the block succeeds it
    replaces ``target`` (whatever was there) in one rename, otherwise it is deleted."""
    target = Path(target)
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


# --- locks ----------------------------------------------------------------------------------


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


# --- YAML with line numbers -----------------------------------------------------------------


def read_yaml_mapping(path: str | os.PathLike, what: str = "config") -> dict:
    """The mapping a YAML file holds (an empty file is {}); anything else is an error."""
    return read_yaml_with_lines(path, what)[0]


def read_yaml_with_lines(
    path: str | os.PathLike, what: str = "config"
) -> tuple[dict, dict[tuple, int]]:
    """The mapping a YAML file holds and the 1-based line of every key, keyed by its path
    (``("budget", "max_steps")``; a list item by its index as a string). A missing file, bad
    syntax, non-UTF-8 bytes or a top level that is not a mapping are `ConfigError`s naming
    the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{what} file {path} does not exist", "check the path (shipped configs are in configs/)"
        )
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start})", "save the file as UTF-8"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{path}{line}: YAML syntax error: {getattr(err, 'problem', None) or err}",
            "fix the YAML syntax (indentation, ':' after keys, quotes)",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}, line 1: expected a mapping of {what} keys (key: value), got a {type(data).__name__}",
            "the top level of a config file is `key: value` lines",
        )
    return data, _key_lines(node)


def _key_lines(node, prefix: tuple = ()) -> dict[tuple, int]:
    """(key, subkey, ...) -> 1-based line of every key of a composed YAML mapping; an item
    of a list is keyed by its index as a string (("prompts", "0", "answers"))."""
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*prefix, str(i))] = item.start_mark.line + 1
            lines.update(_key_lines(item, (*prefix, str(i))))
    return lines


# --- JSONL with line numbers ----------------------------------------------------------------

_JSONL_HINT = "the file was cut or edited: fix or delete that line, or rerun what wrote it"


def _bad_jsonl_line(path: Path, line_no: int, err: json.JSONDecodeError) -> Exception:
    return InputError(f"{path}, line {line_no}: not valid JSON ({err})", _JSONL_HINT)


def iter_jsonl(
    path: str | os.PathLike,
    bad_line: Callable[[Path, int, json.JSONDecodeError], Exception] = _bad_jsonl_line,
) -> Iterator[tuple[int, Any]]:
    """(1-based line number, value) of each non-blank line of a JSONL file; a line that is not
    JSON raises ``bad_line(path, line_no, err)`` (by default an `InputError` naming the file
    and the line)."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise bad_line(path, line_no, err) from None
            yield line_no, value


def read_jsonl(path: str | os.PathLike, required: tuple[str, ...] = ()) -> list[dict]:
    """Objects of a JSONL file (blank lines skipped), each with the ``required`` keys; a bad
    line is an error naming the file and the line."""
    rows = []
    for line_no, row in iter_jsonl(path):
        if not isinstance(row, dict) or any(key not in row for key in required):
            raise InputError(
                f"{Path(path)}, line {line_no}: expected a JSON object with keys {list(required)}",
                _JSONL_HINT,
            )
        rows.append(row)
    return rows
