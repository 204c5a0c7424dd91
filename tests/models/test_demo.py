"""`mgc demo --quick`: the whole system end to end, and re-running into the same folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mgc.cli import app

runner = CliRunner()


def test_quick_demo_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "demo run"  # a space in the path on purpose
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["stages_seconds"]) == {"corpus", "extract", "train", "evaluate", "predict"}
    assert report["chance"] == 0.1
    # The quick run learns: with 8 crops per track seeds 0, 1, 2 score 0.8, 0.9, 0.7 on its 10 test
    # tracks (0.3, 0.2, 0.2 with one crop); at least 5x chance.
    assert report["test_accuracy"] >= 5 * report["chance"] - 1e-9, report
    _check_report_matches_files(out, report)
    assert "test accuracy" in result.output and "fresh tracks" in result.output
    for path in report["artefacts"].values():
        assert Path(path).exists(), path
    # One fresh track per genre, each predicted with a genre name.
    assert sorted(row["genre"] for row in report["fresh"]) == sorted(set(row["genre"] for row in report["fresh"]))
    assert len(report["fresh"]) == 10 and all(row["predicted"] and row["error"] is None for row in report["fresh"])
    # The network learned: the training loss fell from the first epoch to the last.
    epochs = [json.loads(line) for line in (out / "model" / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 8 and epochs[-1]["train_loss"] < epochs[0]["train_loss"]

    shards = {p.name: p.stat().st_mtime_ns for p in (out / "store").glob("shard-*.h5")}
    log = (out / "model" / "metrics.jsonl").read_text()
    again = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
    # Nothing complete was redone: the same shard files, no new training epochs.
    assert {p.name: p.stat().st_mtime_ns for p in (out / "store").glob("shard-*.h5")} == shards
    assert (out / "model" / "metrics.jsonl").read_text() == log
    assert json.loads((out / "report.json").read_text())["test_accuracy"] == report["test_accuracy"]


def test_demo_refuses_a_folder_made_with_other_settings(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text(json.dumps({"config": {"tracks_per_genre": 999}}))
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 2
    assert "other settings" in result.output


def _check_report_matches_files(out: Path, report: dict) -> None:
    """report.json agrees with the metrics, predictions, splits, corpus and fresh tracks written beside it."""
    from mgc.engine.synth import GENRES

    metrics = json.loads(Path(report["artefacts"]["metrics"]).read_text())
    confusion = np.array(metrics["confusion"])
    assert metrics["label_names"] == list(GENRES) and report["chance"] == 1 / len(GENRES)
    # 10 tracks per genre split 8/1/1: one test track per genre.
    assert metrics["support"] == [1] * 10 and confusion.sum(axis=1).tolist() == metrics["support"]
    assert metrics["n_tracks"] == confusion.sum() == 10
    assert report["test_accuracy"] == metrics["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert report["test_macro_f1"] == metrics["macro_f1"] == pytest.approx(np.mean(metrics["f1"]))

    # Every test track was predicted once, and the predictions rebuild the confusion matrix.
    rows = [json.loads(line) for line in Path(metrics["files"]["predictions"]).read_text().splitlines()]
    splits = json.loads((out / "model" / "splits.json").read_text())
    assert sorted(row["track_id"] for row in rows) == sorted(splits["test"])
    assert not set(splits["test"]) & (set(splits["train"]) | set(splits["valid"]))
    rebuilt = np.zeros_like(confusion)
    for row in rows:
        rebuilt[GENRES.index(row["true"]), GENRES.index(row["predicted"])] += 1
        assert 1 / len(GENRES) <= row["probability"] <= 1.0  # the top of a 10-class distribution
    np.testing.assert_array_equal(rebuilt, confusion)

    with open(out / "corpus" / "manifest.csv", newline="") as f:
        corpus = list(csv.DictReader(f))
    assert len(corpus) == 100 and all((out / "corpus" / row["path"]).is_file() for row in corpus)
    assert set(splits["train"]) | set(splits["valid"]) | set(splits["test"]) == {row["track_id"] for row in corpus}

    fresh = report["fresh"]
    assert report["fresh_accuracy"] == pytest.approx(np.mean([row["predicted"] == row["genre"] for row in fresh]))
    for row in fresh:
        path = Path(row["path"])
        assert path.is_file() and path.parent == out / "fresh" / row["genre"]
        assert row["predicted"] in GENRES and 1 / len(GENRES) <= row["probability"] <= 1.0
