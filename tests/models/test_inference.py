"""Batch prediction: packed batches, stores, resumable output files, a real SIGKILL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.models.conftest import kill_once_lines, linked_corpus, write_tone_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tone_model):
    return tone_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = write_tone_corpus(tmp_path_factory.mktemp("fresh") / "fresh", n_per_class=3, seconds=3.0)
    return sorted(str(p) for p in root.rglob("*.wav"))


def _probabilities(result, model):
    probs = {t["label"]: t["probability"] for t in result["top"]}
    return np.array([probs[name] for name in model.label_names])


def test_packed_batches_equal_one_file_at_a_time(model, files):
    from mgc.models import predict

    n = len(model.label_names)
    packed = predict(model, files, top_k=n, batch_size=8, workers=2)  # crops of several files share batches
    for path, result in zip(files, packed):
        alone = predict(model, [path], top_k=n, batch_size=64, workers=1)[0]
        assert result["path"] == alone["path"] == path and result["error"] is None
        np.testing.assert_allclose(_probabilities(result, model), _probabilities(alone, model), rtol=1e-5, atol=1e-6)


def test_a_store_is_predicted_track_by_track(model, tone_store):
    from mgc.engine import FeatureStore
    from mgc.models import predict

    store = FeatureStore(tone_store)
    results = predict(model, store=tone_store, top_k=len(model.label_names), batch_size=16)
    assert [r["track_id"] for r in results] == list(np.asarray(store.tracks.track_id))
    assert [r["label"] for r in results] == list(np.asarray(store.tracks.label_name))
    # The same tracks from their audio files: the store holds the same (float16) log-mel.
    paths = [r["path"] for r in results[:5]]
    from_audio = predict(model, paths, top_k=len(model.label_names), workers=1)
    for a, b in zip(results[:5], from_audio):
        np.testing.assert_allclose(_probabilities(a, model), _probabilities(b, model), rtol=1e-4, atol=1e-5)


def test_results_file_resumes_without_duplicates(model, files, tmp_path):
    from mgc.models.tasks.predict import predict_to_file

    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    inputs = [*files, str(broken)]
    for name in ("out.jsonl", "out.csv"):
        clean = predict_to_file(model, tmp_path / f"clean-{name}", inputs, workers=1, batch_size=4)
        assert clean == {"out": str(tmp_path / f"clean-{name}"), "written": 10, "skipped": 0, "failed": 1}
        whole = (tmp_path / f"clean-{name}").read_bytes()
        lines = whole.splitlines(keepends=True)
        keep = 1 + 4 if name.endswith(".csv") else 4  # header + 4 tracks
        # A run killed mid-write: whole lines, then a torn one (and the marker that makes the file mgc's).
        (tmp_path / name).write_bytes(b"".join(lines[:keep]) + lines[keep][:7])
        shutil.copy(tmp_path / f"clean-{name}.mgc.json", tmp_path / f"{name}.mgc.json")
        again = predict_to_file(model, tmp_path / name, inputs, workers=1, batch_size=4)
        assert again["skipped"] == 4 and again["written"] == 6
        assert (tmp_path / name).read_bytes() == whole
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[-1]["track_id"] == str(broken) and rows[-1]["error"].startswith("unreadable")


def test_sigkill_mid_run_then_resume_writes_every_track_once(model, files, tmp_path):
    corpus = linked_corpus(files, tmp_path / "many", 300)
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "mgc.cli", "predict", str(model.folder), str(corpus), "--out", str(out)]
    argv += ["--batch-size", "4", "--workers", "1"]
    kill_once_lines(argv, out, 8)
    assert 8 <= out.read_bytes().count(b"\n") < 300
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = [json.loads(line)["track_id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(str(p) for p in corpus.glob("*.wav"))  # each exactly once


def test_decoding_on_a_dask_cluster_gives_the_same_results(model, files, tmp_path):
    pytest.importorskip("distributed", reason="the Dask path needs the extra: pip install -e .[dask]")
    from mgc.engine import VectorStore
    from mgc.engine.cluster import dask_executor
    from mgc.models import embed, predict

    n = len(model.label_names)
    with dask_executor("local:2") as session:  # a real LocalCluster of worker processes on loopback
        on_dask = predict(model, files, top_k=n, batch_size=8, executor=session.executor)
        summary = embed(model.folder, tmp_path / "emb", files, which="latest", index="none", executor=session.executor)
    here = predict(model, files, top_k=n, batch_size=8, workers=1)
    assert [r["path"] for r in on_dask] == files and not any(r["error"] for r in on_dask)
    for a, b in zip(on_dask, here):
        np.testing.assert_allclose(_probabilities(a, model), _probabilities(b, model), rtol=1e-5, atol=1e-6)
    assert summary["written"] == len(files) and list(VectorStore(tmp_path / "emb").track_ids()) == files


def test_the_last_batch_is_sized_to_the_work_not_to_batch_size():
    """One file's few crops run in a batch of the next power of 4, never padded out to ``--batch-size``."""
    from mgc.models.inference import padded_size

    assert [padded_size(n, 256) for n in (1, 2, 4, 5, 16, 17, 100, 255, 256)] == [1, 4, 4, 16, 16, 64, 256, 256, 256]
    assert padded_size(3, 2) == 2 and padded_size(1, 1) == 1
