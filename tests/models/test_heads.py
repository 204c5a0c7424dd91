"""Heads on one vector per track: the stats model against scikit-learn, and a frozen musicnn backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.models.conftest import write_tone_corpus


@pytest.fixture(scope="module")
def stats_store(tmp_path_factory):
    """3 classes x 8 tone tracks with log-mel and MFCC (the stats model needs both)."""
    from engine import FeatureSpec, extract

    root = tmp_path_factory.mktemp("heads")
    corpus = write_tone_corpus(root / "corpus")
    spec = FeatureSpec(sr=8000, n_fft=256, hop_length=128, n_mels=16, n_mfcc=8)
    extract(corpus, root / "store", spec, workers=1)
    return root / "store"


def test_stats_vector_is_means_and_spreads():
    from models.heads import stats_vector

    rng = np.random.default_rng(0)
    logmel, mfcc = rng.standard_normal((50, 4)), rng.standard_normal((50, 3))
    v = stats_vector(logmel, mfcc)
    delta = mfcc[1:] - mfcc[:-1]
    expected = [mfcc.mean(0), mfcc.std(0), delta.mean(0), delta.std(0), logmel.mean(0), logmel.std(0)]
    np.testing.assert_allclose(v, np.concatenate(expected), rtol=1e-6)
    assert stats_vector(logmel[:1], mfcc[:1])[6:9].tolist() == [0, 0, 0]  # one frame: no differences


def test_the_stats_model_equals_scikit_learns_logistic_regression(stats_store, tmp_path):
    sklearn = pytest.importorskip("sklearn.linear_model", reason="scikit-learn is the test oracle")
    from engine import FeatureStore
    from models.heads import HeadModel, train_head

    summary = train_head(stats_store, tmp_path / "m", "stats", c=0.5)
    head = HeadModel.load(tmp_path / "m")
    store = FeatureStore(stats_store)
    splits = json.loads((tmp_path / "m" / "splits.json").read_text())
    rows = {name: np.sort(store.tracks.track_id.lookup(splits[name])) for name in ("train", "valid", "test")}
    x = {name: head.store_vectors(store, r)[0] for name, r in rows.items()}
    y = {name: store.tracks.label[r] for name, r in rows.items()}
    oracle = sklearn.LogisticRegression(C=0.5, max_iter=10_000, tol=1e-10)
    oracle.fit(head.standardise(x["train"]), y["train"])
    for name in ("train", "valid", "test"):
        ours = head.probabilities(x[name])
        np.testing.assert_allclose(ours, oracle.predict_proba(head.standardise(x[name])), atol=2e-3)
    accuracy = (head.probabilities(x["valid"]).argmax(1) == y["valid"]).mean()
    assert summary["valid_accuracy"] == pytest.approx(accuracy)
    assert summary["iterations"] < 500 and summary["seconds"] < 60


def test_a_stats_model_evaluates_and_predicts_through_the_usual_commands(stats_store, tmp_path):
    from engine import FeatureStore
    from models import evaluate, predict
    from models.heads import train_head

    train_head(stats_store, tmp_path / "m", "stats")
    metrics = evaluate(tmp_path / "m", stats_store, split="all")
    assert metrics["n_tracks"] == 24 and metrics["accuracy"] >= 0.9  # three well-separated tones
    assert metrics["genre_precision_at_k"]["k"] == 10
    store = FeatureStore(stats_store)
    from_store = predict(tmp_path / "m", store=stats_store, top_k=3)
    paths = [r["path"] for r in from_store[:4]]
    from_audio = predict(tmp_path / "m", paths, top_k=3, workers=1)
    assert [r["track_id"] for r in from_store] == list(np.asarray(store.tracks.track_id))
    for a, b in zip(from_store[:4], from_audio):
        assert a["error"] is None and b["error"] is None
        pa = {t["label"]: t["probability"] for t in a["top"]}
        pb = {t["label"]: t["probability"] for t in b["top"]}
        assert pa.keys() == pb.keys()
        for label in pa:  # the store holds float16 log-mel; audio is rounded the same way
            assert pa[label] == pytest.approx(pb[label], abs=1e-4)


def test_a_stats_model_embeds_and_searches(stats_store, tmp_path):
    from engine import FeatureStore
    from models import embed, similar
    from models.heads import HeadModel, train_head

    train_head(stats_store, tmp_path / "m", "stats")
    summary = embed(tmp_path / "m", tmp_path / "emb", store=stats_store, dtype="float32", index="none")
    assert summary["written"] == 24
    store, head = FeatureStore(stats_store), HeadModel.load(tmp_path / "m")
    expected = head.standardise(head.store_vectors(store, np.arange(3))[0])
    from engine import VectorStore

    got = VectorStore(tmp_path / "emb").vectors([0, 1, 2])
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    [hits] = similar(tmp_path / "emb", [store.tracks.path[0]], k=1)  # an audio query, through the head's featurizer
    assert hits["kind"] == "audio" and hits["results"][0]["track_id"] == store.tracks.track_id[0]
    assert hits["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_a_backbone_head_caches_its_vectors(stats_store, tmp_path):
    from engine import VectorStore
    from models import evaluate
    from models.heads import train_head

    first = train_head(stats_store, tmp_path / "m", "musicnn-msd")
    cache = VectorStore(tmp_path / "m" / "vectors")
    assert len(cache) == 24 and cache.dim == 200
    again = train_head(stats_store, tmp_path / "m", "musicnn-msd")
    assert len(VectorStore(tmp_path / "m" / "vectors").shards) == len(cache.shards)  # nothing recomputed
    assert again["valid_accuracy"] == first["valid_accuracy"]
    metrics = evaluate(tmp_path / "m", stats_store, split="all")
    assert metrics["accuracy"] >= 0.9


def test_the_stats_model_refuses_a_store_without_mfcc(tone_store, tmp_path):
    from models.config import ModelError
    from models.heads import train_head

    with pytest.raises(ModelError, match="needs a store with both logmel and mfcc"):
        train_head(tone_store, tmp_path / "m", "stats")
