"""The sweep's points and checks, and the frontier: seed intervals, interpolation at matched gold,
the matched-gold test and the plot, against hand-computed values."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from scipy import stats as sps

from flowhf.config.preset import get_preset
from flowhf.errors import ConfigError
from flowhf.experiments.analysis.frontier import (
    aggregate,
    diversity_at,
    format_frontier_markdown,
    length_confound,
    matched_gold_tests,
    mean_ci,
    plot_frontier,
    with_length_controlled,
    write_frontier,
)
from flowhf.experiments.reproduce.grid import SweepPoint, check_sweep, sweep_points
from flowhf.experiments.reproduce.sweep import check_start


def test_mean_ci_by_hand():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)
    assert mean_ci([5.0])[0] == 5.0 and math.isnan(mean_ci([5.0])[1])


def test_diversity_at_interpolates_inside_and_refuses_outside():
    curve = [(1.0, 0.5), (3.0, 0.1), (2.0, 0.3)]  # unsorted on purpose
    assert diversity_at(curve, 1.5) == pytest.approx(0.4)
    assert diversity_at(curve, 3.0) == pytest.approx(0.1)
    assert diversity_at(curve, 3.5) is None and diversity_at(curve, 0.5) is None


def point(method, value, seed, gold, div, knob="k"):
    return {
        "method": method,
        "knob": knob,
        "value": value,
        "seed": seed,
        "metrics": {"reward": gold, "pairwise_distance": div},
    }


def test_matched_gold_test_reads_the_candidate_at_the_baselines_best_gold():
    points = [
        point("ppo", v, s, gold, div)
        for s in (0, 1)
        for v, gold, div in ((0.1, 1.0, 0.20), (0.01, 2.0 + 0.1 * s, 0.10))
    ]
    points += [
        point("recommended", b, s, gold, div)
        for s in (0, 1)
        for b, gold, div in ((2, 1.5, 0.40), (8, 2.5, 0.20 + 0.02 * s), (32, 3.0, 0.05))
    ]
    frontier = aggregate(points)
    assert [s["value"] for s in frontier["recommended"]] == [2, 8, 32]
    assert frontier["ppo"][0]["reward"] == pytest.approx(2.05)  # sorted by value: 0.01 first
    (test,) = matched_gold_tests(frontier, "recommended", ["ppo", "grpo"])  # grpo absent: skipped
    assert test["baseline_setting"] == "k=0.01" and test["seeds_matched"] == 2
    # seed 0: gold 2.0 lies between (1.5, 0.40) and (2.5, 0.20) -> 0.30; seed 1: gold 2.1 between
    # (1.5, 0.40) and (2.5, 0.22) -> 0.40 - 0.18 * 0.6 = 0.292
    assert test["candidate_diversity"] == pytest.approx((0.30 + 0.292) / 2)
    assert test["ratio"] == pytest.approx(((0.30 + 0.292) / 2) / 0.10) and test["p"] < 0.05
    reference = sps.ttest_ind(
        [0.30, 0.292], [0.115, 0.115], equal_var=False, alternative="greater"
    ).pvalue
    assert (
        test["p_target"] == pytest.approx(reference) and test["p_target"] > test["p"]
    )  # 1.15x is the harder bar
    assert test["p_below_target"] == pytest.approx(1 - reference)  # the same bar, the other side
    below = sps.ttest_ind([0.20, 0.22], [0.115, 0.115], equal_var=False, alternative="less").pvalue
    assert (
        test["nearest_p_below_target"] == pytest.approx(below) and below > 0.9
    )  # far above the bar: not ruled out
    # nearest mean gold to ppo's 2.05: recommended k=2 (1.5) is 0.55 away, k=8 (2.5) 0.45: k=8
    assert test["nearest_setting"] == "k=8" and test["nearest_seeds"] == 2
    assert test["nearest_gold"] == pytest.approx(2.5) and test[
        "nearest_diversity"
    ] == pytest.approx(0.21)
    gold_p = sps.ttest_ind([2.5, 2.5], [2.0, 2.1], equal_var=False).pvalue
    assert test["nearest_p_gold"] == pytest.approx(gold_p)
    text = format_frontier_markdown(frontier, [test])
    assert (
        "| recommended | k=8 | 2 |" in text
        and "ratio 2.96" in text
        and "(k=8, its nearest gold)" in text
    )


def test_length_confound_removes_the_pooled_length_slope_by_hand(tmp_path):
    # diversity = 1.0 - 0.01 * tokens exactly, gold = 0.1 * tokens: slope -0.01, |corr| = 1; at the
    # mean length (20 tokens) every point's length-controlled diversity is 1.0 - 0.2 = 0.8
    points = [
        {
            "method": "m",
            "knob": "k",
            "value": v,
            "seed": 0,
            "metrics": {"reward": 0.1 * n, "pairwise_distance": 1.0 - 0.01 * n, "mean_length": n},
        }
        for v, n in ((1, 10.0), (2, 20.0), (3, 30.0))
    ]
    confound = length_confound(points)
    assert confound["slope_diversity_per_token"] == pytest.approx(-0.01) and confound[
        "mean_tokens"
    ] == pytest.approx(20.0)
    assert confound["corr_diversity_tokens"] == pytest.approx(-1.0) and confound[
        "corr_gold_tokens"
    ] == pytest.approx(1.0)
    controlled = with_length_controlled(points, confound)
    assert [p["metrics"]["pairwise_distance_lc"] for p in controlled] == pytest.approx(
        [0.8, 0.8, 0.8]
    )
    assert "pairwise_distance_lc" not in points[0]["metrics"]  # copies, the input untouched
    text = format_frontier_markdown(aggregate(controlled), [], confound)
    assert (
        "corr(diversity, tokens) = -1.00" in text
        and "| m | k=1 | 1 | 1.000 | n/a | 0.900 | 0.800 |" in text
    )
    assert length_confound(points[:2]) == {}  # too few points to fit
    written = write_frontier(
        points, tmp_path, ["ppo"]
    )  # the callers' path: one result, the confound reused
    assert written.confound == confound and written.markdown() == text
    assert json.loads((tmp_path / "frontier.json").read_text())["length_confound"] == confound
    assert Path(written.files["frontier_plot"]).exists()


def test_plot_frontier_writes_a_png(tmp_path):
    points = [
        point("sft", None, 0, 0.5, 0.3, knob=None),
        point("ppo", 0.1, 0, 1.0, 0.2),
        point("ppo", 0.2, 0, 0.8, 0.25),
    ]
    path = plot_frontier(aggregate(points), tmp_path / "frontier.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_sweep_points_are_seed_major_with_the_start_first():
    preset = replace(
        get_preset("smoke"),
        sweep={"ppo": {"kl_coef": [0.1, 0.2]}, "recommended": {"target.beta": [4]}},
        sweep_seeds=[0, 1],
    )
    names = [p.name for p in sweep_points(preset)]
    assert names == [
        "sft__seed0",
        "ppo__kl_coef=0.1__seed0",
        "ppo__kl_coef=0.2__seed0",
        "recommended__target.beta=4__seed0",
        "sft__seed1",
        "ppo__kl_coef=0.1__seed1",
        "ppo__kl_coef=0.2__seed1",
        "recommended__target.beta=4__seed1",
    ]
    assert SweepPoint("sft", None, None, 3).name == "sft__seed3"
    assert sweep_points(replace(preset, sweep={})) == []


@pytest.mark.parametrize(
    "sweep,options,message",
    [
        ({"ppoo": {"kl_coef": [0.1]}}, {}, "did you mean 'ppo'"),
        ({"ppo": {"kl_coef": [0.1], "lr": [1e-4]}}, {}, "exactly one knob"),
        ({"ppo": {"kl_coef": []}}, {}, "list of distinct values"),
        ({"ppo": {"kl_coeff": [0.1]}}, {}, "kl_coef"),
        ({}, {"grpo": {"bta": 0.1}}, "beta"),
        ({}, {"ppo": {"max_completion_length": 64}}, "every method gets the same"),
        ({"recommended": {"target.betta": [1]}}, {}, "beta"),
    ],
)
def test_check_sweep_names_the_bad_key(sweep, options, message):
    with pytest.raises(ConfigError, match=message):
        check_sweep(replace(get_preset("smoke"), sweep=sweep, method_options=options))


def test_check_start_refuses_points_from_other_start_models(tmp_path):
    start = {"sft": "aa", "proxy": "bb", "gold": "cc"}
    same = {"name": "p", "start": dict(start)}
    assert check_start(same, start, tmp_path / "result.json") is same
    assert check_start({"name": "old"}, start, tmp_path / "result.json") == {
        "name": "old"
    }  # predates the record
    with pytest.raises(ConfigError, match=r"other start models \(gold differ\)") as err:
        check_start(
            {"name": "p", "start": {**start, "gold": "dd"}}, start, tmp_path / "result.json"
        )
    assert "delete the point" in err.value.hint
