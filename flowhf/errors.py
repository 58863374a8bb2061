"""Errors a user can act on (config, run folder, checkpoint, model, reward, input file). The CLI
prints them as one line (``flowhf: error: ...``) plus a hint and exits with code 2, without a
traceback (``--debug`` or ``FLOWHF_DEBUG=1`` shows it); any other exception is an internal
error and keeps its traceback (exit 1). Each is raised where the mistake is found (and is also
a ValueError / OSError where that is what library callers catch)."""

from __future__ import annotations

import os
import sys


class UserError(Exception):
    """A mistake the user can fix; ``hint`` says what to change."""

    default_hint = "fix what the message names and run again"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint or self.default_hint


class ConfigError(UserError, ValueError):
    """A config value, key or file that cannot be used (raised before anything loads)."""

    default_hint = (
        "fix the value in the file or the --set (`flowhf train --help-config` lists every key)"
    )


class RunDirError(UserError):
    """The output folder holds another run, or is locked by a running one."""

    default_hint = (
        "use --resume to continue that run, --overwrite to replace it, or another --output-dir"
    )


class CheckpointError(UserError):
    """No checkpoint of the run folder can be restored."""

    default_hint = "rerun with --overwrite to start again, or restore the checkpoint files"


class ModelNotFound(UserError, OSError):
    """A model spec that is not a local folder, a shipped alias, or reachable on the Hub."""

    default_hint = (
        "use a local model folder, a .gguf file or a shipped alias (smollm2, tiny-random)"
    )


class RewardError(UserError, ValueError):
    """A reward returned a value the target cannot use (NaN, ±inf)."""

    default_hint = "fix the reward, or set target.nonfinite_reward=floor (with target.reward_floor) to floor such values"


class InputError(UserError, ValueError):
    """A file or folder given to a command that is not what the command reads: an evaluation
    folder without metrics.json, a corrupt JSON / JSONL file, evaluations that cannot be merged."""

    default_hint = "check the files and folders given on the command line"


def guarded(run, debug: bool = False) -> int:
    """``run()``'s exit code; a user error becomes one line + hint on stderr and exit code 2
    (its traceback with ``debug`` or FLOWHF_DEBUG=1)."""
    debug = debug or os.environ.get("FLOWHF_DEBUG", "") not in ("", "0")
    try:
        return int(run() or 0)
    except Exception as err:  # noqa: BLE001  (sorted into user errors and internal ones)
        message = user_error_message(err)
        if message is None or debug:
            raise
        print(message, file=sys.stderr)
        return 2


def user_error_message(err: BaseException) -> str | None:
    """``flowhf: error: ...`` (one line) plus a hint for an error the user can fix; None for
    an internal error. Missing files are user errors too (a path typed on the command line)."""
    if not isinstance(err, (UserError, FileNotFoundError)):
        return None
    text = " ".join(str(err).split())  # one line, whatever the message's layout
    hint = getattr(err, "hint", "") or "check the path"
    if isinstance(err, FileNotFoundError) and not isinstance(err, UserError) and err.filename:
        text = f"{err.strerror or 'not found'}: {err.filename}"
    return f"flowhf: error: {text}\nflowhf: hint: {hint} (--debug shows the traceback)"
