"""Embedding stores and similarity search: the penultimate layer, resume after SIGKILL, exact and approximate search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.models.conftest import kill_once_lines, linked_corpus, write_tone_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tone_model):
    return tone_model


@pytest.fixture(scope="module")
def embedded(model, tone_store, tmp_path_factory):
    from mgc.models import embed

    out = tmp_path_factory.mktemp("embedded") / "emb"
    summary = embed(model.folder, out, store=tone_store, dtype="float32", which="latest", shard_tracks=5, index="none")
    return out, summary


def test_embeddings_are_the_normalised_mean_penultimate_layer(model, tone_store, embedded):
    import jax
    from flax import nnx

    from mgc.engine import FeatureStore
    from mgc.models.data.pipeline import eval_crops
    from mgc.models.nets.steps import make_graphdef
    from mgc.models.tasks.embed import EmbeddingStore

    out, summary = embedded
    store = FeatureStore(tone_store)
    emb = EmbeddingStore(out)
    assert summary["written"] == len(store) == len(emb) and summary["failed"] == 0
    assert [s["tracks"] for s in emb.shards] == [5, 5, 5, 5, 4]  # 24 tracks, 5 per shard
    assert list(emb.track_ids()) == list(np.asarray(store.tracks.track_id))
    network = nnx.merge(make_graphdef(model.model_config), model.params, model.batch_stats)
    network.eval()
    for row in (0, 7, 23):
        crops = eval_crops(model.normalizer(store.read(row)), model.crop_frames)
        mean = np.asarray(jax.jit(network.embed)(crops)).mean(axis=0)
        expected = mean / np.linalg.norm(mean)
        np.testing.assert_allclose(emb.vectors([row])[0], expected, rtol=1e-4, atol=1e-5)
    info = emb.info([23, 0])
    assert list(info["track_id"]) == [store.tracks.track_id[23], store.tracks.track_id[0]]
    assert list(info["label"]) == [store.tracks.label_name[23], store.tracks.label_name[0]]
    # Readable with plain h5py, as the README documents.
    with h5py.File(out / "shard-00000.h5", "r") as h5:
        assert h5["embedding"].shape == (5, emb.dim) and h5["embedding"].dtype == np.float32
        assert h5["track_id"].asstr()[0] == store.tracks.track_id[0]
        np.testing.assert_allclose(np.linalg.norm(h5["embedding"][()], axis=1), 1.0, rtol=1e-5)


def test_similar_by_track_id_and_by_audio_file(model, embedded):
    from mgc.models.tasks.embed import EmbeddingStore
    from mgc.models.tasks.similar import similar

    out, _ = embedded
    emb = EmbeddingStore(out)
    ids = list(emb.track_ids())
    info = emb.info([3])
    results = similar(out, [ids[3], info["path"][0]], k=5)
    by_id, by_audio = results
    assert by_id["kind"] == "track" and by_audio["kind"] == "audio" and by_audio["error"] is None
    assert ids[3] not in [r["track_id"] for r in by_id["results"]] and len(by_id["results"]) == 5
    assert [r["score"] for r in by_id["results"]] == sorted((r["score"] for r in by_id["results"]), reverse=True)
    # The audio file of track 3 is track 3 itself (the store holds the same float16 log-mel).
    assert by_audio["results"][0]["track_id"] == ids[3]
    assert by_audio["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(Exception, match="neither a track id"):
        similar(out, ["no-such-track"], k=5)


def test_failures_are_recorded_and_a_resume_skips_them(model, tmp_path):
    from mgc.models import embed
    from mgc.models.tasks.embed import EmbeddingStore

    corpus = write_tone_corpus(tmp_path / "c", n_per_class=2, seconds=2.0)
    broken = corpus / "tone0" / "broken.wav"
    broken.write_text("not audio")
    out = tmp_path / "emb"
    first = embed(model.folder, out, [corpus], which="latest", workers=1, shard_tracks=4, index="none")
    assert first["written"] == 6 and first["failed"] == 1
    emb = EmbeddingStore(out)
    [failure] = emb.failures()
    assert failure["path"] == str(broken) and failure["error"].startswith("unreadable")
    again = embed(model.folder, out, [corpus], which="latest", workers=1, shard_tracks=4, index="none")
    assert again == {**again, "written": 0, "failed": 0, "skipped": 7, "vectors": 6}
    assert len(EmbeddingStore(out).shards) == len(emb.shards)
    # Another dtype (or model) into the same folder is refused, not mixed in.
    with pytest.raises(Exception, match="another model or dtype"):
        embed(model.folder, out, [corpus], which="latest", workers=1, dtype="float32", index="none")


def test_sigkill_mid_run_then_resume_embeds_every_track_once(model, tmp_path):
    from mgc.models.tasks.embed import EmbeddingStore

    files = sorted(write_tone_corpus(tmp_path / "src", n_per_class=2, seconds=3.0).rglob("*.wav"))
    corpus = linked_corpus(files, tmp_path / "many", 240)
    out = tmp_path / "emb"
    argv = [sys.executable, "-m", "mgc.cli", "embed", str(model.folder), str(corpus), "--out", str(out)]
    argv += ["--batch-size", "4", "--workers", "1", "--shard-tracks", "8", "--checkpoint", "latest"]
    log = out / "shards.jsonl"
    kill_once_lines(argv, log, 2)
    assert 2 <= log.read_bytes().count(b"\n") < 30
    done = subprocess.run(argv + ["--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["skipped"] >= 16 and summary["written"] + summary["skipped"] == 240
    emb = EmbeddingStore(out)
    assert sorted(emb.track_ids()) == sorted(str(p) for p in corpus.glob("*.wav"))  # each exactly once
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # Hard links of one file are separate tracks with the same vector.
    rows = emb.rows([str(corpus / "t0000.wav"), str(corpus / f"t{len(files):04d}.wav")])
    a, b = emb.vectors(rows)
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_cli_embed_similar_and_evaluate(model, tone_store, tmp_path):
    from typer.testing import CliRunner

    from mgc.cli import app
    from mgc.models import EmbeddingStore

    runner = CliRunner()
    out = tmp_path / "emb"
    result = runner.invoke(
        app, ["embed", str(model.folder), "--store", str(tone_store), "--out", str(out), "--index", "ann"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "index-usearch.bin").is_file() and (out / "index.json").is_file()
    ids = list(EmbeddingStore(out).track_ids())
    result = runner.invoke(app, ["similar", str(out), ids[0], "--k", "3", "--json"])
    assert result.exit_code == 0, result.output
    [hits] = json.loads(result.stdout)
    assert len(hits["results"]) == 3 and hits["query"] == ids[0]
    result = runner.invoke(app, ["similar", str(out), "--precision", "--k", "3", "--json"])
    assert result.exit_code == 0, result.output
    precision = json.loads(result.stdout)["precision"]
    # The same number written out in NumPy: each track's 3 nearest others by cosine, the share with its label.
    emb = EmbeddingStore(out)
    vectors = emb.vectors(np.arange(len(emb))).astype(np.float64)
    labels = np.asarray(emb.info(np.arange(len(emb)))["label"])
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    nearest = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    expected = float((labels[nearest] == labels[:, None]).mean())
    assert precision == pytest.approx(expected, abs=1e-9)
    argv = ["evaluate", str(model.folder), str(tone_store), "--split", "all", "--json", "--k", "3"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    neighbours = json.loads(result.stdout)["genre_precision_at_k"]
    assert neighbours["k"] == 3 and neighbours["queries"] == 24
    # From the float32 embeddings in memory: the neighbours of a float32 store (float16 rounding may break ties).
    out32 = tmp_path / "emb32"
    result = runner.invoke(
        app, ["embed", str(model.folder), "--store", str(tone_store), "--out", str(out32), "--dtype", "float32"]
    )
    assert result.exit_code == 0, result.output
    emb32 = EmbeddingStore(out32)
    vectors = emb32.vectors(np.arange(len(emb32))).astype(np.float64)
    labels = np.asarray(emb32.info(np.arange(len(emb32)))["label"])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    nearest = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    assert neighbours["precision"] == pytest.approx(float((labels[nearest] == labels[:, None]).mean()), abs=1e-9)
