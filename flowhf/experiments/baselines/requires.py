"""TRL is an extra (``flowhf[baselines]``), not a core dependency: the library never imports it.

Whatever runs TRL's trainers (``flowhf baseline``, ``flowhf reproduce``, lm-target's grpo / ppo,
the runners here) checks for it first, before any model loads, and a missing TRL is one
``flowhf: error:`` line naming the extra. PPO needs TRL 1.12.0 (the extra's pin), the last
release with ``PPOTrainer``; a newer TRL beside FlowHF serves SFT and GRPO.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flowhf.errors import UserError

TRL_EXTRA = "flowhf[baselines]"
INSTALL = f"pip install '{TRL_EXTRA}'"


class MissingExtra(UserError):
    """A command needs an optional dependency that is not installed."""

    default_hint = (
        "the extra brings TRL's trainers; the core install (`pip install flowhf`) has none"
    )


def require_trl(what: str, ppo: bool = False) -> None:
    """Raise `MissingExtra` unless TRL (with its PPO trainer when ``ppo``) can be imported;
    ``what`` names what needs it. Looks the modules up without importing them."""
    spec = importlib.util.find_spec("trl")
    if spec is None:
        raise MissingExtra(f"{what} needs TRL, which is not installed: {INSTALL}")
    if ppo and not _has_ppo(spec):
        from importlib.metadata import version

        raise MissingExtra(
            f"{what} needs TRL's PPOTrainer, which TRL {version('trl')} does not have "
            f"(1.12.0 is the last TRL with it): {INSTALL}"
        )


def _has_ppo(spec) -> bool:
    """Whether the TRL package found holds ``trl/experimental/ppo`` (looked up on disk: importing
    trl.experimental warns that its APIs are unstable)."""
    return any((Path(p) / "experimental" / "ppo").is_dir() for p in spec.submodule_search_locations)
