"""Train, evaluate and predict through the CLI on a small store made by the engine from generated audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mgc.cli import app
from tests.models.conftest import N_CLASSES, small_spec, write_tone_corpus

runner = CliRunner()
# Two examples per device a step on the 4 (faked) devices: each device's part of the batch is mixed up
# within itself (see TrainStream), which one example a device would not allow.
TRAIN_ARGS = [
    "--epochs",
    "8",
    "--crops-per-track",
    "2",
    "--batch-size",
    "8",
    "--crop-seconds",
    "0.5",
    "--lr",
    "0.01",
    "--widths",
    "4,8",
]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def model_dir(tone_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    result = invoke("train", tone_store, "--out", out, *TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_model_folder(model_dir, tone_store):
    from mgc.engine import FeatureStore

    store = FeatureStore(tone_store)
    rows = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    assert all(np.isfinite(r["train_loss"]) and r["val_accuracy"] is not None for r in rows)
    model = json.loads((model_dir / "model.json").read_text())
    assert model["spec"] == store.spec.to_dict() and model["label_names"] == store.label_names
    assert len(model["normalizer"]["mean"]) == 16
    splits = json.loads((model_dir / "splits.json").read_text())
    ids = [set(splits[s]) for s in ("train", "valid", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(store.tracks.track_id)
    for which in ("best", "latest"):
        assert any(p.name.isdigit() for p in (model_dir / "checkpoints" / which).iterdir())


def test_train_refuses_to_overwrite_and_resume_checks_settings(model_dir, tone_store):
    result = invoke("train", tone_store, "--out", model_dir)
    assert result.exit_code == 2 and "--resume" in result.output
    result = invoke("train", tone_store, "--out", model_dir, "--resume", "--epochs", "9")
    assert result.exit_code == 2 and "epochs: saved 8 vs given 9" in result.output
    result = invoke("train", tone_store, "--out", model_dir, "--resume")  # already complete: nothing to do
    assert result.exit_code == 0, result.output


def test_evaluate_prints_tables_and_writes_files(model_dir, tone_store, tmp_path):
    result = invoke("evaluate", model_dir, tone_store, "--split", "all", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n_tracks"] == 24 and np.sum(metrics["confusion"]) == 24
    # Three pure tones an octave apart: far above chance (1/3) after 8 short epochs.
    assert metrics["accuracy"] >= 0.6, metrics["confusion"]
    assert len(metrics["precision"]) == len(metrics["recall"]) == 3
    for key in ("confusion_png", "curves_png"):
        assert open(metrics["files"][key], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    table = invoke("evaluate", model_dir, tone_store)  # the saved test split, printed as tables
    assert table.exit_code == 0 and "confusion matrix" in table.output and "macro-F1" in table.output


def test_predict_skips_unreadable_files_and_continues(model_dir, tmp_path):
    from mgc import models

    write_tone_corpus(tmp_path / "fresh", n_per_class=1, seconds=1.5)
    (tmp_path / "fresh" / "broken.wav").write_text("this is not audio")
    result = invoke("predict", model_dir, tmp_path / "fresh", tmp_path / "missing.wav", "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in results}
    assert by_name["broken.wav"]["error"] and by_name["missing.wav"]["error"]
    good = [r for r in results if not r["error"]]
    assert len(good) == 3 and all(len(r["top"]) == 2 for r in good)
    # The top 2 are, in order, the two most probable genres of the whole distribution (top_k = every class).
    full = {r["path"]: r["top"] for r in models.predict(model_dir, [r["path"] for r in good], top_k=N_CLASSES)}
    for r in good:
        probabilities = [t["probability"] for t in r["top"]]
        assert probabilities == sorted(probabilities, reverse=True) and all(0.0 <= p <= 1.0 for p in probabilities)
        assert [t["label"] for t in r["top"]] == [t["label"] for t in full[r["path"]][:2]]
        np.testing.assert_allclose(probabilities, [t["probability"] for t in full[r["path"]][:2]], rtol=1e-6)
        assert sum(t["probability"] for t in full[r["path"]]) == pytest.approx(1.0, abs=1e-5)
    text = invoke("predict", model_dir, tmp_path / "fresh" / "broken.wav", tmp_path / "fresh" / "tone1")
    assert text.exit_code == 0 and "skipped" in text.output and "tone1.00000.wav" in text.output
    assert invoke("predict", model_dir, tmp_path / "fresh" / "broken.wav").exit_code == 1


def test_one_file_failing_in_an_unexpected_way_never_aborts_a_batch(model_dir, tmp_path, monkeypatch):
    import mgc.engine.batch  # noqa: F401
    from mgc import engine, models

    fresh = write_tone_corpus(tmp_path / "fresh", n_per_class=1, seconds=1.5)
    files = sorted(fresh.rglob("*.wav"))
    boom = files[1]
    # A real unexpected error: a path holding a NUL byte makes the OS layer raise ValueError.
    nul = str(fresh / "bad\x00name.wav")
    compute_features = engine.batch.compute_features

    def failing_for_one_file(path, *args, **kwargs):
        if str(path) == str(boom):
            raise RuntimeError("decoder exploded")
        return compute_features(path, *args, **kwargs)

    # In this process (workers=1), where the patch applies.
    monkeypatch.setattr(engine.batch, "compute_features", failing_for_one_file)
    inputs = [files[0], boom, nul, files[2], tmp_path / "missing.wav"]
    results = models.predict(model_dir, inputs, top_k=2, workers=1)
    assert [r["path"] for r in results] == [str(files[0]), str(boom), nul, str(files[2]), str(tmp_path / "missing.wav")]
    assert [len(r["top"]) for r in results] == [2, 0, 0, 2, 0]
    assert results[0]["error"] is None and results[3]["error"] is None
    assert results[1]["error"].startswith("internal: ") and "RuntimeError: decoder exploded" in results[1]["error"]
    assert results[2]["error"]  # whatever the engine calls it, the file is reported and skipped
    assert results[4]["error"].startswith("missing: ")

    def interrupted(path, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.batch, "compute_features", interrupted)
    with pytest.raises(KeyboardInterrupt):  # the user's Ctrl-C still stops the batch
        models.predict(model_dir, files, workers=1)


def test_a_second_evaluation_into_the_same_folder_fails_at_once(model_dir, tone_store, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from mgc import models
    from mgc.models.config import ModelError

    repo = Path(__file__).resolve().parents[2]
    hold = "import sys, time\nfrom mgc.models.folder import output_folder_lock\n"
    hold += "with output_folder_lock(sys.argv[1], 'evaluation'):\n"
    hold += "    print('locked', flush=True)\n    time.sleep(120)\n"
    out = tmp_path / "eval"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(out)],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ModelError, match=rf"another evaluation \(pid {holder.pid}\) is writing into"):
            models.evaluate(model_dir, tone_store, split="all", out_dir=out)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(out)) == [".lock"]
    with pytest.raises(ModelError, match="a folder of its own"):
        models.evaluate(model_dir, tone_store, split="all", out_dir=model_dir)


def test_python_predict_api(model_dir, tmp_path):
    from mgc import models

    fresh = write_tone_corpus(tmp_path / "fresh", n_per_class=1, seconds=1.5)
    results = models.predict(model_dir, [fresh / "tone0" / "tone0.00000.wav", fresh / "tone2"], top_k=3)
    assert [len(r["top"]) for r in results] == [3, 3]
    assert [t["probability"] for t in results[0]["top"]] == sorted(
        (t["probability"] for t in results[0]["top"]), reverse=True
    )
    label_names = json.loads((model_dir / "model.json").read_text())["label_names"]
    for result in results:
        # top_k = every class: a probability distribution over the model's labels, each listed once.
        probabilities = [t["probability"] for t in result["top"]]
        assert sorted(t["label"] for t in result["top"]) == sorted(label_names)
        assert all(0.0 <= p <= 1.0 for p in probabilities)
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    # Alone, the file runs in a smaller batch: the same label, the probability within float32 rounding.
    alone = models.predict(model_dir, [fresh / "tone2"], top_k=1)[0]["top"][0]
    assert alone["label"] == results[1]["top"][0]["label"]
    assert alone["probability"] == pytest.approx(results[1]["top"][0]["probability"], rel=1e-5)


def test_a_store_with_another_spec_is_a_clear_error(model_dir, tmp_path):
    import dataclasses

    from mgc import engine

    corpus = write_tone_corpus(tmp_path / "corpus", n_per_class=2, seconds=1.0)
    other = tmp_path / "other-store"
    engine.extract(corpus, other, dataclasses.replace(small_spec(), hop_length=64), workers=1)
    result = invoke("evaluate", model_dir, other, "--split", "all")
    assert result.exit_code == 2 and "different FeatureSpec" in result.output and "hop_length" in result.output
    result = invoke("train", other, "--out", model_dir, "--resume")
    assert result.exit_code == 2 and "different FeatureSpec" in result.output


def test_pmap_path_trains_end_to_end_with_split_files(tone_store, tmp_path):
    from mgc.engine import FeatureStore

    ids = sorted(FeatureStore(tone_store).tracks.track_id)
    # GTZAN-style lists: ids with the .wav extension; 4 tracks are in no list and are left out.
    lists = {"train": ids[:16], "valid": ids[16:18], "test": ids[18:20]}
    args = []
    for name, chosen in lists.items():
        (tmp_path / f"{name}_filtered.txt").write_text("".join(f"{i}\n" for i in chosen))
        args += ["--split-file", f"{name}={tmp_path / f'{name}_filtered.txt'}"]
    result = invoke(
        "train",
        tone_store,
        "--out",
        tmp_path / "m",
        "--parallel",
        "pmap",
        "--epochs",
        "1",
        "--crops-per-track",
        "1",
        "--batch-size",
        "4",
        "--crop-seconds",
        "0.5",
        "--widths",
        "4,8",
        "--json",
        *args,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["parallel"] == "pmap" and summary["devices"] == 4 and summary["steps"] == 4
    splits = json.loads((tmp_path / "m" / "splits.json").read_text())
    assert splits["method"] == "split files" and {k: sorted(splits[k]) for k in lists} == lists
    assert invoke("train", tone_store, "--out", tmp_path / "n", "--split-file", "train").exit_code == 2


def test_missing_model_is_a_clear_error(tone_store, tmp_path):
    result = invoke("evaluate", tmp_path / "nothing", tone_store)
    assert result.exit_code == 2 and "does not exist; train one with" in result.output


def test_store_streams_shard_by_shard_when_it_does_not_fit(tone_store):
    from mgc.models.config import TrainConfig
    from mgc.models.data.pipeline import Normalizer, TrainStream
    from mgc.models.data.stores import StoreTracks, split_source

    tracks = StoreTracks.of(tone_store)
    rows = np.arange(len(tracks.columns["track_id"]))
    streamed = split_source(tracks, rows, memory_limit_mb=0)
    in_memory = split_source(tracks, rows, memory_limit_mb=100)
    assert in_memory.in_memory and not streamed.in_memory
    assert len(np.unique(streamed.blocks)) == len(np.unique(tracks.columns["shard"])) > 1
    for i in (0, 7, 23):
        np.testing.assert_array_equal(streamed[i], tracks.store.read(i))
        np.testing.assert_array_equal(in_memory[i], streamed[i])
    normalizer = Normalizer.fit(lambda: iter(streamed))
    config = TrainConfig(batch_size=4, memory_limit_mb=0.01)
    stream = TrainStream(tracks.store, rows, tracks.columns["label"], 3, normalizer, 32, config)
    windows = stream.windows(0)
    assert len(windows) > 1 and sorted(np.concatenate(windows).tolist()) == rows.tolist()
    shard = np.asarray(tracks.columns["shard"])
    owner = {int(s): k for k, w in enumerate(windows) for s in shard[w]}
    assert all(owner[int(shard[p])] == k for k, w in enumerate(windows) for p in w)  # shards are never split


def test_manifest_split_and_artist_columns_reach_the_splits(tmp_path):
    from mgc import engine
    from mgc.models.data.splits import make_splits

    corpus = write_tone_corpus(tmp_path / "corpus", n_per_class=4, seconds=0.5)
    files = sorted(corpus.rglob("*.wav"))
    lines = ["path,label,split,artist"]
    for i, f in enumerate(files):
        lines.append(f"{f.relative_to(corpus)},{f.parent.name},{'test' if i % 4 == 0 else 'train'},band{i // 2}")
    (corpus / "manifest.csv").write_text("\n".join(lines) + "\n")
    engine.extract(corpus / "manifest.csv", tmp_path / "store", small_spec(), workers=1)
    store = engine.FeatureStore(tmp_path / "store")
    splits = make_splits(store.tracks, seed=0)
    assert splits["method"] == "manifest split column"
    assert len(splits["test"]) == 3 and len(splits["train"]) == 9 and not splits["valid"]


def test_predict_real_compressed_recordings(model_dir, shared_audio):
    from mgc import models

    files = [shared_audio / "sorohanro_-_solo-trumpet-06.ogg", shared_audio / "sorohanro_-_solo-trumpet-06.hq.ogg"]
    mono, stereo = models.predict(model_dir, files, top_k=3)
    assert mono["error"] is None and stereo["error"] is None
    # The same music at 22.05 kHz mono and 44.1 kHz stereo, resampled to the model's rate: close predictions.
    p_mono = {t["label"]: t["probability"] for t in mono["top"]}
    p_stereo = {t["label"]: t["probability"] for t in stereo["top"]}
    assert max(abs(p_mono[k] - p_stereo[k]) for k in p_mono) < 0.15
