"""MetricsLogger (JSONL/CSV/TensorBoard/W&B), histograms and their plot, ProgressBar."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import types

import pytest
import torch

from flowhf.training.logging import MetricsLogger, ProgressBar, plot_histograms


def strict_jsonl(path) -> list[dict]:
    """Parse JSONL refusing NaN/Infinity tokens, as strict readers (jq, JS) do."""

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def read_csv(path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_jsonl_and_csv_with_keys_appearing_late(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(0, {"train/loss": 1.5})
        logger.log(1, {"train/loss": torch.tensor(0.5), "train/reward_mean": 2})
        logger.log(2, {"eval/diversity": 0.25})
    records = strict_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    assert records[1]["train/loss"] == 0.5 and records[1]["train/reward_mean"] == 2.0
    assert "nonfinite" not in records[0] and isinstance(records[0]["time"], float)
    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == ["step", "time", "train/loss", "train/reward_mean", "eval/diversity"]
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    assert (
        rows[0]["train/loss"] == "1.5"
        and rows[0]["train/reward_mean"] == ""
        and rows[0]["eval/diversity"] == ""
    )
    assert float(rows[1]["train/reward_mean"]) == 2.0 and float(rows[2]["eval/diversity"]) == 0.25
    assert not (tmp_path / "metrics.csv.tmp").exists() and not list(tmp_path.glob(".tmp-*"))


def test_resume_appends_and_keeps_columns(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(0, {"train/loss": 1.0, "train/log_z": 3.0})
    with MetricsLogger(tmp_path) as logger:
        logger.log(1, {"train/log_z": 2.0, "train/new": 7.0})
    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == ["step", "time", "train/loss", "train/log_z", "train/new"]
    assert [(r["train/loss"], r["train/log_z"], r["train/new"]) for r in rows] == [
        ("1.0", "3.0", ""),
        ("", "2.0", "7.0"),
    ]
    assert len(strict_jsonl(tmp_path / "metrics.jsonl")) == 2


def test_nonfinite_values_are_null_plus_listed(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(
            5,
            {
                "train/loss": float("nan"),
                "train/grad_norm": float("inf"),
                "train/x": -math.inf,
                "train/ok": 1.0,
            },
        )
    (record,) = strict_jsonl(tmp_path / "metrics.jsonl")
    assert (
        record["train/loss"] is None
        and record["train/grad_norm"] is None
        and record["train/ok"] == 1.0
    )
    assert record["nonfinite"] == {"train/loss": "nan", "train/grad_norm": "inf", "train/x": "-inf"}
    _, rows = read_csv(tmp_path / "metrics.csv")
    assert (rows[0]["train/loss"], rows[0]["train/grad_norm"], rows[0]["train/x"]) == (
        "nan",
        "inf",
        "-inf",
    )


@pytest.mark.parametrize("key", ["loss", "train/", "/loss", "train//loss", " train/loss"])
def test_unnamespaced_keys_rejected(tmp_path, key):
    with MetricsLogger(tmp_path) as logger:
        with pytest.raises(ValueError, match="not namespaced.*train/loss"):
            logger.log(0, {key: 1.0})


def test_bad_values_and_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown backend"):
        MetricsLogger(tmp_path, report_to=["jsonl", "mlflow"])
    with MetricsLogger(tmp_path) as logger:
        with pytest.raises(ValueError, match="single number"):
            logger.log(0, {"train/loss": torch.ones(2)})
        with pytest.raises(ValueError, match="expected a number"):
            logger.log(0, {"train/loss": "0.5"})
        with pytest.raises(ValueError, match="step"):
            logger.log(-1, {"train/loss": 0.5})


def test_histograms_jsonl_and_png(tmp_path):
    logger = MetricsLogger(tmp_path, histogram_every=2)
    values = torch.tensor([0.0, 1.0, 1.0, 2.0, float("nan")])
    assert not logger.log_histograms(1, {"train/token_log_pf": values})
    assert logger.log_histograms(2, {"train/token_log_pf": values}, bins=2)
    for step in (4, 6):
        assert logger.log_histograms(
            step, {"train/token_log_pf": torch.randn(100) - step, "train/log_flow": torch.randn(40)}
        )
    logger.close()
    records = strict_jsonl(tmp_path / "histograms.jsonl")
    first = records[0]
    assert (first["step"], first["name"]) == (2, "train/token_log_pf")
    # np.histogram bins: [0, 1) holds 0.0; the last bin [1, 2] is closed and holds 1, 1, 2.
    assert first["bin_edges"] == [0.0, 1.0, 2.0] and first["counts"] == [1, 3]
    assert first["count"] == 4 and first["nonfinite"] == 1
    assert [(r["step"], r["name"]) for r in records[1:]] == [
        (4, "train/token_log_pf"),
        (4, "train/log_flow"),
        (6, "train/token_log_pf"),
        (6, "train/log_flow"),
    ]
    assert sum(records[1]["counts"]) == 100 and len(records[1]["bin_edges"]) == 51
    png = plot_histograms(
        tmp_path / "histograms.jsonl", tmp_path / "plots" / "hist.png", max_steps=3
    )
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_histograms_disabled_by_default(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        assert not logger.log_histograms(0, {"train/log_flow": torch.zeros(3)})
    assert not (tmp_path / "histograms.jsonl").exists()


def test_plot_histograms_reports_bad_line(tmp_path):
    path = tmp_path / "histograms.jsonl"
    path.write_text(
        '{"step": 0, "name": "train/a", "bin_edges": [0, 1], "counts": [1]}\n{"step": 1}\n'
    )
    with pytest.raises(ValueError, match="line 2"):
        plot_histograms(path, tmp_path / "x.png")


def test_tensorboard_absent_warns_once_and_skips(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    with pytest.warns(UserWarning, match="tensorboard") as caught:
        logger = MetricsLogger(tmp_path, report_to=["jsonl", "tensorboard"], histogram_every=1)
    assert len(caught) == 1
    logger.log(0, {"train/loss": 1.0})
    assert logger.log_histograms(0, {"train/log_flow": torch.ones(3)})
    logger.close()
    assert len(strict_jsonl(tmp_path / "metrics.jsonl")) == 1
    assert not (tmp_path / "metrics.csv").exists()  # csv not requested


class FakeWriter:
    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.scalars, self.histograms, self.closed = log_dir, [], [], False
        self.purge_step = purge_step  # a resumed run drops TensorBoard events from here on

    def add_scalar(self, key, value, step):
        self.scalars.append((key, value, step))

    def add_histogram(self, key, values, step):
        self.histograms.append((key, len(values), step))

    def close(self):
        self.closed = True


def test_tensorboard_and_wandb_receive_metrics(tmp_path, monkeypatch):
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tb)
    wb = types.ModuleType("wandb")
    wb.run, wb.logged = None, []
    wb.init = lambda **kw: setattr(wb, "run", kw)
    wb.log = lambda data, step: wb.logged.append((dict(data), step))
    wb.finish = lambda: setattr(wb, "run", None)
    wb.Histogram = lambda np_histogram: ("hist", list(np_histogram[0]))
    monkeypatch.setitem(sys.modules, "wandb", wb)
    logger = MetricsLogger(
        tmp_path, report_to=["tensorboard", "wandb"], run_name="r1", histogram_every=3
    )
    writer = logger._tb
    assert writer.log_dir.endswith("tensorboard/r1") and wb.run["name"] == "r1"
    logger.log(3, {"train/loss": 0.5, "train/log_z": -1.0})
    logger.log_histograms(3, {"train/log_flow": torch.tensor([0.0, 1.0, float("inf")])}, bins=1)
    logger.close()
    assert writer.scalars == [("train/loss", 0.5, 3), ("train/log_z", -1.0, 3)]
    assert writer.histograms == [("train/log_flow", 2, 3)] and writer.closed
    assert wb.logged == [
        ({"train/loss": 0.5, "train/log_z": -1.0}, 3),
        ({"train/log_flow": ("hist", [2])}, 3),
    ]
    assert wb.run is None  # finished on close


class TtyStream(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_shows_metrics_and_resumes():
    stream = TtyStream()
    with ProgressBar(10, initial=4, file=stream) as bar:
        assert not bar.disabled and bar._bar.n == 4
        bar.update(6, {"train/loss": 0.123456, "train/reward_mean": 2.0, "train/other": 9.0})
        assert bar._bar.n == 6
        assert bar.postfix() == "loss=0.1235, reward_mean=2"
    assert "6/10" in stream.getvalue()


def test_progress_bar_disabled_when_not_tty_or_asked():
    quiet = io.StringIO()
    bar = ProgressBar(5, file=quiet)
    bar.update(3, {"train/loss": 1.0})
    bar.close()
    assert bar.disabled and quiet.getvalue() == ""
    assert ProgressBar(5, file=TtyStream(), disable=True).disabled
