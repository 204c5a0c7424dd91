"""`mgc demo --quick`: the whole system end to end, and re-running into the same folder."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_quick_demo_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "demo run"  # a space in the path on purpose
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["stages_seconds"]) == {"corpus", "extract", "train", "evaluate", "predict"}
    assert 0.0 <= report["test_accuracy"] <= 1.0 and report["chance"] == 0.1
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
