"""Flags several commands share: ``--set KEY=VALUE`` and the run-folder choice
(``--resume`` / ``--overwrite``, `flowhf.run_dir`)."""

from __future__ import annotations

import argparse


def add_set_flag(parser: argparse.ArgumentParser, help: str, dest: str = "set") -> None:
    """``--set KEY=VALUE``, repeatable; the items land in ``args.<dest>`` (a list)."""
    parser.add_argument(
        "--set", dest=dest, action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_run_dir_flags(
    parser: argparse.ArgumentParser, overwrite: str, resume: str | None = None
) -> None:
    """``--overwrite`` (and ``--resume`` when given its help): what to do with a run already
    in the output folder."""
    if resume is not None:
        parser.add_argument("--resume", action="store_true", help=resume)
    parser.add_argument("--overwrite", action="store_true", help=overwrite)
