"""The objectives the trainer knows, by name: one line per objective file.

``register_objective(spec)`` adds one at run time (a test registers DB with another
penalty this way); nothing else in the code base lists objective names.
"""

from __future__ import annotations

from flowhf.objectives import db, fl, pg, subtb, tb
from flowhf.objectives.spec import LogZMode, ObjectiveSpec

OBJECTIVES: dict[str, ObjectiveSpec] = {}


def register_objective(spec: ObjectiveSpec, replace: bool = False) -> ObjectiveSpec:
    """Make ``spec`` selectable as ``objective.objective=<spec.name>``."""
    if spec.name in OBJECTIVES and not replace:
        raise ValueError(
            f"objective {spec.name!r} is already registered (pass replace=True to override it)"
        )
    OBJECTIVES[spec.name] = spec
    return spec


def unregister_objective(name: str) -> None:
    OBJECTIVES.pop(name, None)


def get_objective(name: str) -> ObjectiveSpec:
    """The spec of objective ``name``; an unknown name is an error listing the known ones."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective.objective={name!r}: use {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def logz_modes() -> dict[str, LogZMode]:
    """Every log Z estimator some objective accepts, by name (the valid ``objective.logz``)."""
    return {name: mode for spec in OBJECTIVES.values() for name, mode in spec.logz_modes.items()}


for _spec in (tb.SPEC, fl.SPEC, db.SPEC, subtb.SPEC, pg.SPEC):
    register_objective(_spec)
