"""Run several objectives on one enumerable target and tabulate how exactly each matches it."""

from __future__ import annotations

from dataclasses import asdict, replace

from flowhf.experiments.enumerable.targets import EnumerableTarget
from flowhf.experiments.enumerable.train import ToyConfig, ToyResult, run_toy
from flowhf.objectives import get_objective

# (objective, logz) pairs of `--all`: every GFlowNet objective and the reward maximiser.
ALL_RUNS = [
    ("tb", "batch"),
    ("tb", "scalar"),
    ("tb", "prompt"),
    ("fl", "batch"),
    ("db", "batch"),
    ("subtb", "batch"),
    ("pg", "batch"),
]

SUMMARY_KEYS = (
    "objective",
    "logz",
    "alpha",
    "steps",
    "seconds",
    "tv",
    "kl_target_model",
    "jsd",
    "modes_found",
    "modes_total",
    "log_z_final",
    "log_z_true",
    "diverged",
)


def result_record(result: ToyResult) -> dict:
    """The JSON record of one run: the summary keys first, then the curves and per-prompt rows."""
    cfg = result.config
    logz = get_objective(cfg["objective"]).logz_label(ToyConfig(**cfg).objective_args())
    record = {
        "objective": cfg["objective"],
        "logz": logz,
        "alpha": cfg["alpha"],
        "target": result.target,
    }
    record.update({k: v for k, v in asdict(result).items() if k not in ("config", "target")})
    record["config"] = cfg
    return record


def run_suite(
    target: EnumerableTarget, base: ToyConfig, runs: list[tuple[str, str]], progress=None
) -> list[dict]:
    records = []
    for name, mode in runs:
        config = replace(base, objective=name, logz=mode)
        if progress:
            progress(f"{name}/{mode if get_objective(name).logz_modes else '-'}")
        records.append(result_record(run_toy(target, config)))
    return records


def format_table(records: list[dict]) -> str:
    header = f"{'objective':<10}{'log Z':<8}{'alpha':>6}{'steps':>8}{'sec':>7}{'TV':>8}{'KL(p*||q)':>11}{'JSD':>8}{'modes':>8}{'logZ fit':>10}{'logZ true':>10}"
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(
            f"{r['objective']:<10}{r['logz']:<8}{r['alpha']:>6.2g}{r['steps']:>8}{r['seconds']:>7.0f}{r['tv']:>8.4f}"
            f"{r['kl_target_model']:>11.4f}{r['jsd']:>8.4f}{str(r['modes_found']) + '/' + str(r['modes_total']):>8}"
            f"{r['log_z_final']:>10.3f}{r['log_z_true']:>10.3f}"
            + ("  DIVERGED" if r.get("diverged") else "")
        )
    return "\n".join(lines)
