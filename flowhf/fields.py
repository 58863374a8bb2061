"""`help_field`: a dataclass field carrying its help string (shown by every `--help-config`)."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def help_field(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with ``metadata["help"]``; a dict/list default is copied per instance."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)
