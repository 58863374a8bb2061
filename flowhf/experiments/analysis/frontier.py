"""The reward-diversity frontier of a sweep, and tests at matched gold reward.

Input: the sweep's points (`flowhf.experiments.reproduce.sweep`), each a method, a knob value, a seed and its
per-prompt metrics (``reward`` = gold, ``pairwise_distance`` = per-prompt diversity, ...).

- `aggregate`: per (method, knob value), the mean and 95% Student-t interval across seeds of each
  metric (seeds are the unit of replication; the interval is nan with one seed).
- `diversity_at`: a method's per-prompt diversity at a given gold reward, read off its frontier
  by linear interpolation between the two settings whose gold brackets it (None outside its range:
  no extrapolation).
- `matched_gold_tests`: for each baseline, its best setting (highest mean gold); per seed, the
  candidate's diversity at that seed's baseline gold against the baseline's own diversity, then
  Welch's one-sided tests across seeds (diversity greater than the baseline's, greater than 1.15x
  the baseline's, and less than 1.15x: a small p there rules the target out) and the ratio of
  means. This is the issue's claim, "at the gold reward of their best setting, FlowHF's per-prompt
  diversity is >= 1.15x theirs", tested.
- `nearest_setting_test`: when that gold lies outside the candidate's curve in some seeds, the
  candidate's setting of nearest mean gold against the baseline's best, seed for seed: whether
  their golds differ (two-sided) and whether the candidate is more diverse (one-sided).
- `length_confound` / `with_length_controlled`: diversity and gold against the answers' length
  across all points, and diversity with the pooled length slope removed (shorter answers sit
  farther apart in embedding space, so shortening alone raises the diversity measure).
- `plot_frontier`: gold reward (x) against per-prompt diversity (y), and against its length-controlled
  form, one line per method with seed intervals on both axes; a method dominates where its line
  lies above and to the right.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from flowhf.evaluation.report import markdown_table

X, Y = "reward", "pairwise_distance"  # gold reward of the per-prompt samples, per-prompt diversity
TARGET_RATIO = 1.15  # the aim: FlowHF's diversity >= 1.15x the baseline's at its best gold
Y_LC = "pairwise_distance_lc"  # per-prompt diversity with the sweep's pooled length trend removed
SUMMARY_KEYS = (
    "reward",
    "proxy_reward",
    "pairwise_distance",
    Y_LC,
    "distinct_answers",
    "distinct_2",
    "eos_rate",
    "mean_length",
    "gap",
    "corr_reward_length",
    "corr_proxy_length",
)


def mean_ci(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float]:
    """Mean and half-width of the Student-t (1 - alpha) interval (nan half-width for one value)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    if arr.size == 1:
        return float(arr[0]), float("nan")
    half = sps.t.ppf(1 - alpha / 2, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size)
    return float(arr.mean()), float(half)


def aggregate(points: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{method: [setting, ...]} sorted by knob value; a setting holds the knob, its value, the
    seeds, and for each metric its mean and 95% half-width across seeds."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for point in points:
        groups.setdefault((point["method"], str(point["value"])), []).append(point)
    out: dict[str, list[dict[str, Any]]] = {}
    for (method, _), members in groups.items():
        setting = {
            "knob": members[0]["knob"],
            "value": members[0]["value"],
            "seeds": sorted(m["seed"] for m in members),
        }
        for key in SUMMARY_KEYS:
            values = [m["metrics"].get(key) for m in members if m["metrics"].get(key) is not None]
            if values:
                setting[key], setting[f"{key}_ci"] = mean_ci(values)
        setting["per_seed"] = {
            m["seed"]: {k: m["metrics"].get(k) for k in (X, Y, Y_LC)} for m in members
        }
        out.setdefault(method, []).append(setting)
    for settings in out.values():
        settings.sort(key=lambda s: float(s["value"]) if _number(s["value"]) else str(s["value"]))
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def diversity_at(curve: Sequence[tuple[float, float]], gold: float) -> float | None:
    """y at x = ``gold`` on the piecewise-linear curve through (x, y) points (sorted by x);
    None when ``gold`` lies outside the curve's x range."""
    pts = sorted((x, y) for x, y in curve if math.isfinite(x) and math.isfinite(y))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= gold <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (gold - x0) / (x1 - x0)
    if len(pts) == 1 and pts[0][0] == gold:
        return pts[0][1]
    return None


def matched_gold_tests(
    frontier: Mapping[str, Sequence[Mapping[str, Any]]], candidate: str, baselines: Sequence[str]
) -> list[dict[str, Any]]:
    """The candidate's per-prompt diversity against each baseline's at the gold reward of the
    baseline's best setting, seed by seed (see the module docstring)."""
    tests = []
    for base in baselines:
        if base not in frontier or candidate not in frontier:
            continue
        best = max(frontier[base], key=lambda s: s.get(X, -math.inf))
        ours, theirs = [], []
        for seed, at in best["per_seed"].items():
            curve = [
                (s["per_seed"][seed][X], s["per_seed"][seed][Y])
                for s in frontier[candidate]
                if seed in s["per_seed"]
            ]
            value = diversity_at(curve, at[X])
            if value is not None:
                ours.append(value)
                theirs.append(at[Y])
        test = {
            "candidate": candidate,
            "baseline": base,
            "baseline_setting": f"{best['knob']}={best['value']}",
            "baseline_gold": best.get(X),
            "seeds_matched": len(ours),
            "seeds": len(best["per_seed"]),
        }
        if ours:
            test.update(
                candidate_diversity=float(np.mean(ours)),
                baseline_diversity=float(np.mean(theirs)),
                ratio=float(np.mean(ours) / np.mean(theirs))
                if np.mean(theirs) > 0
                else float("nan"),
            )
        test.update(nearest_setting_test(frontier[candidate], best))
        if len(ours) >= 2:
            res = sps.ttest_ind(ours, theirs, equal_var=False, alternative="greater")
            test.update(
                t=float(res.statistic), p=float(res.pvalue), **_target_tests(ours, theirs, "p")
            )
        tests.append(test)
    return tests


def nearest_setting_test(
    candidate: Sequence[Mapping[str, Any]], best: Mapping[str, Any]
) -> dict[str, Any]:
    """The candidate's setting whose mean gold is nearest the baseline's best, against that best,
    seed for seed: gold (Welch, two-sided: are the two golds told apart?) and per-prompt diversity
    (Welch, one-sided greater). The view that still compares when the baseline's gold lies just
    outside the candidate's curve, as long as the golds are not told apart."""
    near = min(candidate, key=lambda s: abs(s.get(X, math.inf) - best.get(X, math.inf)))
    seeds = sorted(set(near["per_seed"]) & set(best["per_seed"]))
    out = {"nearest_setting": f"{near['knob']}={near['value']}", "nearest_seeds": len(seeds)}
    if len(seeds) >= 2:
        for key, side, name in (
            (X, "two-sided", "gold"),
            (Y, "greater", "diversity"),
            (Y_LC, "greater", "diversity_lc"),
        ):
            if any(
                near["per_seed"][s].get(key) is None or best["per_seed"][s].get(key) is None
                for s in seeds
            ):
                continue
            ours = [near["per_seed"][s][key] for s in seeds]
            theirs = [best["per_seed"][s][key] for s in seeds]
            res = sps.ttest_ind(ours, theirs, equal_var=False, alternative=side)
            out.update(
                {
                    f"nearest_{name}": float(np.mean(ours)),
                    f"nearest_baseline_{name}": float(np.mean(theirs)),
                    f"nearest_p_{name}": float(res.pvalue),
                }
            )
            if key == Y:
                out.update(_target_tests(ours, theirs, "nearest_p"))
    return out


def _target_tests(ours: Sequence[float], theirs: Sequence[float], prefix: str) -> dict[str, float]:
    """Welch one-sided tests of the candidate's diversity against TARGET_RATIO x the baseline's,
    both ways: ``_target`` (above the bar: the claim) and ``_below_target`` (below it: a small p
    rules the bar out, so a null result is not mistaken for too few seeds)."""
    above = float(
        sps.ttest_ind(
            ours, [TARGET_RATIO * v for v in theirs], equal_var=False, alternative="greater"
        ).pvalue
    )
    return {
        f"{prefix}_target": above,
        f"{prefix}_below_target": 1.0 - above,
    }  # one t statistic, its two tails


def length_confound(points: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Across the sweep's points: how per-prompt diversity and gold move with the answers' length,
    and the pooled least-squares slope of diversity on mean tokens. Shorter answers are farther
    apart in embedding space, so a method that shortens its answers gains diversity by length
    alone; the slope lets `with_length_controlled` take that trend out."""
    rows = [
        p["metrics"]
        for p in points
        if all(_finite(p["metrics"].get(k)) for k in (X, Y, "mean_length"))
    ]
    if len(rows) < 3:
        return {}
    length, div, gold = (
        np.array([r[k] for r in rows], dtype=np.float64) for k in ("mean_length", Y, X)
    )
    if length.std() == 0:
        return {}
    slope = float(np.polyfit(length, div, 1)[0])
    return {
        "points": len(rows),
        "slope_diversity_per_token": slope,
        "mean_tokens": float(length.mean()),
        "corr_diversity_tokens": float(np.corrcoef(div, length)[0, 1]),
        "corr_gold_tokens": float(np.corrcoef(gold, length)[0, 1])
        if gold.std() > 0
        else float("nan"),
    }


def with_length_controlled(
    points: Sequence[Mapping[str, Any]], confound: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Copies of ``points`` whose metrics add ``pairwise_distance_lc``: diversity at the sweep's
    mean length, diversity - slope * (tokens - mean tokens) (unchanged points when no slope)."""
    if not confound:
        return [dict(p) for p in points]
    out = []
    for p in points:
        m = dict(p["metrics"])
        if _finite(m.get(Y)) and _finite(m.get("mean_length")):
            m[Y_LC] = m[Y] - confound["slope_diversity_per_token"] * (
                m["mean_length"] - confound["mean_tokens"]
            )
        out.append({**p, "metrics": m})
    return out


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


@dataclass(frozen=True)
class FrontierResult:
    """What `write_frontier` computed and wrote: one object, so callers reuse it, not recompute it."""

    frontier: dict  # method -> settings, aggregated across seeds (`aggregate`)
    tests: list[dict]  # `matched_gold_tests` of every candidate against every baseline
    confound: dict[str, float]  # `length_confound` over all points
    files: dict[str, str]  # {"frontier": frontier.json, "frontier_plot": frontier.png}

    def markdown(self) -> str:
        return format_frontier_markdown(self.frontier, self.tests, self.confound)


def write_frontier(
    points: Sequence[Mapping[str, Any]], out: str | os.PathLike, baselines: Sequence[str]
) -> FrontierResult:
    """Aggregate the sweep's points, test every other method (the SFT start aside) against each
    of ``baselines`` at matched gold, write ``frontier.json`` and ``frontier.png`` into ``out``."""
    from flowhf.io import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    confound = length_confound(points)
    frontier = aggregate(with_length_controlled(points, confound))
    present = [m for m in baselines if m in frontier]
    tests = [
        t
        for m in frontier
        if m not in present + ["sft"]
        for t in matched_gold_tests(frontier, m, present)
    ]
    atomic_write_text(
        out / "frontier.json",
        json.dumps(
            {"frontier": frontier, "tests": tests, "length_confound": confound},
            indent=2,
            default=str,
        ),
    )
    plot = plot_frontier(frontier, out / "frontier.png")
    return FrontierResult(
        frontier,
        tests,
        confound,
        {"frontier": str(out / "frontier.json"), "frontier_plot": str(plot)},
    )


def format_frontier_markdown(
    frontier: Mapping[str, Sequence[Mapping[str, Any]]],
    tests: Sequence[Mapping[str, Any]],
    confound: Mapping[str, float] | None = None,
) -> str:
    cols = [
        ("reward", "Gold"),
        ("proxy_reward", "Proxy"),
        ("pairwise_distance", "Per-prompt diversity"),
        (Y_LC, "Diversity, length-controlled"),
        ("distinct_answers", "Distinct answers"),
        ("mean_length", "Generated tokens"),
        ("eos_rate", "EOS rate"),
        ("gap", "Proxy - gold (z)"),
        ("corr_reward_length", "corr(gold, length)"),
        ("corr_proxy_length", "corr(proxy, length)"),
    ]
    lines = markdown_table(
        ["Method", "Setting", "Seeds", *(t for _, t in cols)],
        (
            [
                method,
                "start" if s["knob"] is None else f"{s['knob']}={s['value']}",
                str(len(s["seeds"])),
                *(_pm(s.get(key), s.get(f"{key}_ci")) for key, _ in cols),
            ]
            for method, settings in frontier.items()
            for s in settings
        ),
    )
    lines += [
        "",
        "Cells: mean ± 95% Student-t half-width across seeds. Gap and correlations are over each run's "
        "completions (k per prompt), the gap in z-units of each reward model's training scores.",
    ]
    if confound:
        lines.append(
            f"Length: across all {confound['points']} points, corr(diversity, tokens) = "
            f"{confound['corr_diversity_tokens']:.2f} and corr(gold, tokens) = {confound['corr_gold_tokens']:.2f}; "
            f"length-controlled diversity removes the pooled slope {confound['slope_diversity_per_token']:.4f} "
            f"per token (diversity at {confound['mean_tokens']:.1f} tokens)."
        )
    for t in tests:
        if "nearest_p_gold" in t:
            lines.append(_nearest_line(t))
        if "ratio" not in t:
            lines.append(
                f"- {t['candidate']} vs {t['baseline']} ({t['baseline_setting']}, gold {t['baseline_gold']:.3f}): "
                f"that gold lies outside the candidate's range of gold in every seed (no extrapolation); no matched comparison."
            )
            continue
        p = (
            f", Welch one-sided p = {t['p']:.3g} (ratio > 1), {t['p_target']:.3g} (ratio > {TARGET_RATIO}), "
            f"{t['p_below_target']:.3g} (ratio < {TARGET_RATIO})"
            if "p" in t
            else " (one seed matched: no test)"
        )
        lines.append(
            f"- {t['candidate']} vs {t['baseline']} at the gold of its best setting ({t['baseline_setting']}, "
            f"{t['baseline_gold']:.3f}): per-prompt diversity {t['candidate_diversity']:.3f} vs "
            f"{t['baseline_diversity']:.3f}, ratio {t['ratio']:.2f} over {t['seeds_matched']}/{t['seeds']} seeds{p}."
        )
    return "\n".join(lines)


def _nearest_line(t: Mapping[str, Any]) -> str:
    return (
        f"- {t['candidate']} ({t['nearest_setting']}, its nearest gold) vs {t['baseline']} ({t['baseline_setting']}) over "
        f"{t['nearest_seeds']} seeds: gold {t['nearest_gold']:.3f} vs {t['nearest_baseline_gold']:.3f} (Welch two-sided "
        f"p = {t['nearest_p_gold']:.3g}), per-prompt diversity {t['nearest_diversity']:.3f} vs "
        f"{t['nearest_baseline_diversity']:.3f}, ratio {t['nearest_diversity'] / t['nearest_baseline_diversity']:.2f} "
        f"(Welch one-sided p = {t['nearest_p_diversity']:.3g}; below {TARGET_RATIO}x: p = {t['nearest_p_below_target']:.3g})"
        + (
            f"; length-controlled {t['nearest_diversity_lc']:.3f} vs {t['nearest_baseline_diversity_lc']:.3f} "
            f"(p = {t['nearest_p_diversity_lc']:.3g})."
            if "nearest_p_diversity_lc" in t
            else "."
        )
    )


def _pm(value: Any, half: Any) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.3f}" + (f" ± {half:.3f}" if half is not None and math.isfinite(half) else "")


def plot_frontier(
    frontier: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike
) -> Path:
    """frontier.png: gold reward (x) against per-prompt diversity (y), one line per method; a second
    panel with the length-controlled diversity when the points carry it. The axes frame the means
    (error bars of two or three seeds can be wide, and would otherwise shrink every line to a dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowhf.io import atomic_path

    panels = [(Y, "per-prompt diversity (mean pairwise embedding distance)")]
    if any(Y_LC in s for settings in frontier.values() for s in settings):
        panels.append((Y_LC, "per-prompt diversity, length-controlled"))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (ykey, ylabel) in zip(axes[0], panels):
        _draw_frontier(ax, frontier, ykey)
        ax.set_xlabel("gold reward (per-prompt samples, mean over prompts)")
        ax.set_ylabel(ylabel)
    fig.suptitle(
        "Reward-diversity frontier: mean ± 95% CI across seeds (bars clipped at the frame); labels: knob value"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _draw_frontier(ax: Any, frontier: Mapping[str, Sequence[Mapping[str, Any]]], ykey: str) -> None:
    means_x, means_y = [], []
    for method, settings in frontier.items():
        pts = sorted(
            (s for s in settings if _finite(s.get(X)) and _finite(s.get(ykey))), key=lambda s: s[X]
        )
        xs, ys = [s[X] for s in pts], [s[ykey] for s in pts]
        means_x += xs
        means_y += ys
        xerr = [s[f"{X}_ci"] if _finite(s.get(f"{X}_ci")) else 0 for s in pts]
        yerr = [s[f"{ykey}_ci"] if _finite(s.get(f"{ykey}_ci")) else 0 for s in pts]
        style = (
            {"marker": "*", "markersize": 14, "linestyle": "none"}
            if method == "sft"
            else {"marker": "o"}
        )
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, label=method, capsize=3, elinewidth=0.8, **style)
        for s in pts:
            if s["knob"] is not None:
                ax.annotate(
                    f"{s['value']}",
                    (s[X], s[ykey]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
    if means_x:
        ax.set_xlim(*_padded(means_x))
        ax.set_ylim(*_padded(means_y))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _padded(values: Sequence[float], share: float = 0.15) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = share * (high - low) or 0.05 * (abs(high) or 1.0)
    return low - pad, high + pad
