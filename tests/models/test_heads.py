"""Heads on one vector per track: the stats model against scikit-learn, and a frozen musicnn backbone."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mgc.models.folder import ModelFolder
from tests.models.conftest import write_tone_corpus


@pytest.fixture(scope="module")
def stats_store(tmp_path_factory):
    """3 classes x 8 tone tracks with log-mel and MFCC (the stats model needs both)."""
    from mgc.engine import FeatureSpec, extract

    root = tmp_path_factory.mktemp("heads")
    corpus = write_tone_corpus(root / "corpus")
    spec = FeatureSpec(sr=8000, n_fft=256, hop_length=128, n_mels=16, n_mfcc=8)
    extract(corpus, root / "store", spec, workers=1)
    return root / "store"


def test_stats_vector_is_means_and_spreads():
    from mgc.models.kinds.featurizers import stats_vector

    rng = np.random.default_rng(0)
    logmel, mfcc = rng.standard_normal((50, 4)), rng.standard_normal((50, 3))
    v = stats_vector(logmel, mfcc)
    delta = mfcc[1:] - mfcc[:-1]
    expected = [mfcc.mean(0), mfcc.std(0), delta.mean(0), delta.std(0), logmel.mean(0), logmel.std(0)]
    np.testing.assert_allclose(v, np.concatenate(expected), rtol=1e-6)
    assert stats_vector(logmel[:1], mfcc[:1])[6:9].tolist() == [0, 0, 0]  # one frame: no differences


def test_the_stats_model_equals_scikit_learns_logistic_regression(stats_store, tmp_path):
    sklearn = pytest.importorskip("sklearn.linear_model", reason="scikit-learn is the test oracle")
    from mgc.engine import FeatureStore
    from mgc.models.kinds.head import HeadModel
    from mgc.models.training.heads import train_head

    summary = train_head(stats_store, tmp_path / "m", "stats", level="track", c=0.5)
    head = HeadModel.load(tmp_path / "m")
    store = FeatureStore(stats_store)
    splits = ModelFolder(tmp_path / "m").read_splits()
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
    from mgc.engine import FeatureStore
    from mgc.models import evaluate, predict
    from mgc.models.training.heads import train_head

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
    from mgc.engine import FeatureStore
    from mgc.models import embed, similar
    from mgc.models.kinds.head import HeadModel
    from mgc.models.training.heads import train_head

    train_head(stats_store, tmp_path / "m", "stats")
    summary = embed(tmp_path / "m", tmp_path / "emb", store=stats_store, dtype="float32", index="none")
    assert summary["written"] == 24
    store, head = FeatureStore(stats_store), HeadModel.load(tmp_path / "m")
    expected = head.standardise(head.store_vectors(store, np.arange(3))[0])
    from mgc.engine import VectorStore

    got = VectorStore(tmp_path / "emb").vectors([0, 1, 2])
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    [hits] = similar(tmp_path / "emb", [store.tracks.path[0]], k=1)  # an audio query, through the head's featurizer
    assert hits["kind"] == "audio" and hits["results"][0]["track_id"] == store.tracks.track_id[0]
    assert hits["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_a_backbone_head_caches_its_vectors(stats_store, tmp_path):
    from mgc.engine import VectorStore
    from mgc.models import evaluate
    from mgc.models.training.heads import train_head

    first = train_head(stats_store, tmp_path / "m", "musicnn-msd")
    cache = VectorStore(tmp_path / "m" / "vectors")
    assert len(cache) == 24 and cache.dim == 200
    again = train_head(stats_store, tmp_path / "m", "musicnn-msd")
    assert len(VectorStore(tmp_path / "m" / "vectors").shards) == len(cache.shards)  # nothing recomputed
    assert again["valid_accuracy"] == first["valid_accuracy"]
    metrics = evaluate(tmp_path / "m", stats_store, split="all")
    assert metrics["accuracy"] >= 0.9


def test_the_stats_model_refuses_a_store_without_mfcc(tone_store, tmp_path):
    from mgc.models.config import ModelError
    from mgc.models.training.heads import train_head

    with pytest.raises(ModelError, match="needs a store with both logmel and mfcc"):
        train_head(tone_store, tmp_path / "m", "stats")


def test_an_mlp_head_learns_what_a_linear_one_cannot():
    from mgc.models.nets.heads import head_logits

    # XOR of two signs: no line separates the classes; one hidden layer does.
    from mgc.models.training.fit import fit_linear, fit_mlp

    # XOR of two signs: no line separates the classes; one hidden layer does.
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    x = x[np.abs(x).min(1) > 0.1]
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    weights, bias, _ = fit_linear(x, y, 2, 1.0, 500)
    linear = (head_logits({"weights": weights, "bias": bias}, x).argmax(1) == y).mean()
    params, steps = fit_mlp(x, y, 2, 100.0, 32, valid=(x[:50], y[:50]))
    mlp = (head_logits(params, x).argmax(1) == y).mean()
    assert linear < 0.7 and mlp > 0.95, (linear, mlp)
    assert params["hidden_weights"].shape == (2, 32) and params["weights"].shape == (32, 2) and steps >= 500


def test_an_mlp_stats_model_trains_evaluates_predicts_and_embeds_through_the_cli(stats_store, tmp_path):
    from typer.testing import CliRunner

    from mgc.cli import app
    from mgc.engine import FeatureStore, VectorStore
    from mgc.models.kinds.head import HeadModel

    runner = CliRunner()
    out = tmp_path / "m"
    args = ["train", str(stats_store), "--model", "stats", "--head", "mlp", "--hidden", "16", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"trained a patch-level \([0-9,]+ patches\) mlp stats head", result.output), result.output
    assert "Adam steps" in result.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["head"] == "mlp" and meta["hidden"] == 16 and meta["fine_tuned"] is False
    head = HeadModel.load(out)
    assert head.hidden_weights.shape == (head.embedding_dim, 16)
    # The probabilities are the documented formula, written out here in NumPy.
    store = FeatureStore(stats_store)
    vectors, available = head.store_vectors(store, np.arange(len(store)))
    assert available.all()
    hidden = np.maximum(head.standardise(vectors) @ head.hidden_weights + head.hidden_bias, 0)
    logits = hidden @ head.weights + head.bias
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(head.probabilities(vectors), expected / expected.sum(1, keepdims=True), atol=1e-5)
    result = runner.invoke(app, ["evaluate", str(out), str(stats_store), "--split", "all", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] >= 0.9
    result = runner.invoke(app, ["predict", str(out), str(store.tracks.path[0]), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["top"][0]["label"] == store.tracks.label_name[0]
    args = ["embed", str(out), "--store", str(stats_store), "--out", str(tmp_path / "e"), "--index", "none"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(VectorStore(tmp_path / "e")) == 24


def test_fine_tuning_trains_the_backbone_but_not_its_statistics(stats_store, tmp_path):
    from mgc.engine import FeatureStore
    from mgc.models.kinds.head import HeadModel
    from mgc.models.pretrained.musicnn import weights_path
    from mgc.models.training.finetune import fine_tune
    from mgc.models.training.heads import train_head

    train_head(stats_store, tmp_path / "m", "musicnn-msd")
    head = HeadModel.load(tmp_path / "m")
    store = FeatureStore(stats_store)
    # A third of the tracks, all three tones, one batch of 8 an epoch: the training steps are most of the
    # test's time (about 3 s each for 16 patches on 2 cores).
    rows = np.arange(len(store))[::3]
    # No validation rows: the last pass is kept, so what is saved is what was trained.
    tuned = fine_tune(store, head, rows, rows[:0], epochs=2, lr=1e-5, batch_size=8)
    assert tuned["best_epoch"] == 2 and tuned["steps"] == 2 and len(tuned["history"]) == 3
    assert 0 < tuned["step_seconds"] < tuned["seconds"]
    assert tuned["train_accuracy"] >= 0.9  # three tones stay apart
    import io

    with np.load(io.BytesIO(tuned["backbone"]), allow_pickle=False) as new, np.load(weights_path("musicnn-msd")) as old:
        assert set(new.files) == set(old.files)
        moved = {k for k in old.files if not np.array_equal(new[k], old[k])}
    assert {"timbral_74/kernel", "mid_3/kernel", "dense/kernel", "dense_bn/scale"} <= moved
    frozen = {k for k in moved if k.endswith(("/mean", "/var")) or k.startswith("input_bn/")}
    assert not frozen, frozen  # BatchNorm statistics and the input BatchNorm stay as published
    assert "out/kernel" not in moved  # the tag layer is not part of the classifier
    assert not np.allclose(tuned["params"]["weights"], head.weights)


def test_a_fine_tuned_head_is_a_model_folder_that_uses_its_backbone(stats_store, tmp_path):
    from typer.testing import CliRunner

    from mgc.cli import app
    from mgc.engine import FeatureStore, VectorStore
    from mgc.models import embed, predict
    from mgc.models.kinds.featurizers import backbone_vectors
    from mgc.models.kinds.head import HeadModel

    runner = CliRunner()
    out = tmp_path / "m"
    store = FeatureStore(stats_store)
    ids = list(store.tracks.track_id)
    # No validation tracks: the last pass is kept, so the saved backbone is the tuned one.
    (tmp_path / "train.txt").write_text("\n".join(ids[:18]))
    (tmp_path / "test.txt").write_text("\n".join(ids[18:]))
    args = ["train", str(stats_store), "--backbone", "musicnn-msd", "--out", str(out), "--json"]
    args += ["--split-file", f"train={tmp_path / 'train.txt'}", "--split-file", f"test={tmp_path / 'test.txt'}"]
    result = runner.invoke(app, args + ["--fine-tune", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["fine_tune"]["steps"] >= 1 and [h["epoch"] for h in summary["fine_tune"]["history"]] == [0, 1]
    assert summary["fine_tune"]["best_epoch"] == 1
    head = HeadModel.load(out)
    assert head.backbone == out / "backbone-1.npz" and json.loads((out / "model.json").read_text())["fine_tuned"]
    path = store.tracks.path[0]
    # Prediction reads the folder's backbone: the same probabilities as its vector computed by hand,
    # which differs from the shipped backbone's.
    [(_key, vector)] = list(backbone_vectors([("t", path, "")], "musicnn-msd", backbone=head.backbone))
    [(_key, frozen)] = list(backbone_vectors([("t", path, "")], "musicnn-msd"))
    assert np.abs(vector - frozen).max() > 1e-4
    [result] = predict(out, [path], top_k=3)
    top = result["top"][0]
    assert top["probability"] == pytest.approx(head.probabilities(vector[None])[0].max(), abs=1e-5)
    embed(out, tmp_path / "e", [path], dtype="float32", index="none")
    [stored] = VectorStore(tmp_path / "e").vectors([0])

    def unit(v):
        z = head.standardise(v)
        return z / np.linalg.norm(z)

    np.testing.assert_allclose(stored, unit(vector), atol=1e-5)
    assert np.abs(stored - unit(frozen)).max() > 1e-4
    tuned_print = head.fingerprint()
    result = runner.invoke(app, ["evaluate", str(out), str(stats_store), "--split", "all", "--json"])
    assert result.exit_code == 0, result.output
    # Training again without --fine-tune leaves a frozen head: no stale backbone file, another fingerprint.
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not list(out.glob("backbone*")) and HeadModel.load(out).backbone is None
    assert HeadModel.load(out).fingerprint() != tuned_print


def test_fine_tuning_is_refused_without_a_backbone(stats_store, tmp_path):
    from typer.testing import CliRunner

    from mgc.cli import app
    from mgc.models.config import ModelError
    from mgc.models.training.heads import train_head

    with pytest.raises(ModelError, match="fine-tuning needs a backbone"):
        train_head(stats_store, tmp_path / "m", "stats", fine_tune_epochs=1)
    result = CliRunner().invoke(app, ["train", str(stats_store), "--out", str(tmp_path / "c"), "--fine-tune", "2"])
    assert result.exit_code != 0 and "head-only options (--model stats and --backbone heads)" in result.output


def test_fine_tuning_refuses_more_patches_than_its_memory_limit_before_reading(stats_store, tmp_path):
    from mgc.engine import FeatureStore
    from mgc.models.config import ModelError
    from mgc.models.kinds.head import HeadModel
    from mgc.models.training.finetune import fine_tune
    from mgc.models.training.heads import train_head

    train_head(stats_store, tmp_path / "m", "musicnn-msd")
    store = FeatureStore(stats_store)
    rows = np.arange(len(store))
    # 24 tracks of 2 s: one 36 KB patch each, 0.8 MB in all.
    with pytest.raises(ModelError, match=r"24 training and validation tracks in memory: 1 MB, over the limit of 0"):
        fine_tune(store, HeadModel.load(tmp_path / "m"), rows[:20], rows[20:], epochs=1, memory_limit_mb=0.5)


def test_a_backbone_head_on_a_musicnn_store_reads_no_audio(tmp_path):
    from mgc.engine import SPEC_PRESETS, FeatureSpec, FeatureStore, VectorStore, extract
    from mgc.models import evaluate
    from mgc.models.kinds.featurizers import backbone_vectors
    from mgc.models.training.heads import train_head

    corpus = write_tone_corpus(tmp_path / "corpus", n_per_class=4)
    extract(corpus, tmp_path / "store", FeatureSpec.from_dict(SPEC_PRESETS["musicnn"]), workers=1)
    store = FeatureStore(tmp_path / "store")
    keys = [(store.tracks.track_id[i], store.tracks.path[i], "") for i in range(len(store))]
    from_audio = {key[0]: vector for key, vector in backbone_vectors(keys, "musicnn-msd", workers=1)}
    corpus.rename(tmp_path / "gone")  # from here on, every audio read would fail
    summary = train_head(store, tmp_path / "m", "musicnn-msd", fine_tune_epochs=1)
    assert summary["train_accuracy"] is not None and summary["fine_tune"]["steps"] >= 1
    cache = VectorStore(tmp_path / "m" / "vectors")
    assert len(cache) == len(store) and not len(cache.failures())
    for key, vector in zip(cache.track_ids(), cache.vectors(np.arange(len(cache)))):
        np.testing.assert_allclose(vector, from_audio[key.split("\t")[0]], atol=1e-4)  # track id, path, size, mtime
    metrics = evaluate(tmp_path / "m", store, split="all")  # the tuned backbone, on the store's log-mel
    assert metrics["n_tracks"] == 12


def test_heads_share_a_vector_cache_and_refuse_another_featurizers(stats_store, tmp_path):
    from mgc.engine import VectorStore
    from mgc.models import evaluate
    from mgc.models.config import ModelError
    from mgc.models.kinds.head import HeadModel
    from mgc.models.training.heads import train_head

    shared = tmp_path / "shared-vectors"
    train_head(stats_store, tmp_path / "linear", "musicnn-msd", vectors_dir=shared)
    shards = VectorStore(shared).shards
    assert len(VectorStore(shared)) == 24 and not (tmp_path / "linear" / "vectors").exists()
    train_head(stats_store, tmp_path / "mlp", "musicnn-msd", head="mlp", vectors_dir=shared)
    assert VectorStore(shared).shards == shards  # nothing computed again
    assert HeadModel.load(tmp_path / "mlp").vectors_dir == shared.resolve()
    assert evaluate(tmp_path / "mlp", stats_store, split="all")["n_tracks"] == 24
    with pytest.raises(ModelError, match="holds vectors of another featurizer or feature spec than stats"):
        train_head(stats_store, tmp_path / "stats", "stats", vectors_dir=shared)


def test_a_model_folder_retrained_with_another_featurizer_replaces_its_own_cache(stats_store, tmp_path):
    from mgc.engine import VectorStore
    from mgc.models.training.heads import train_head

    train_head(stats_store, tmp_path / "m", "stats")
    assert VectorStore(tmp_path / "m" / "vectors").dim == 2 * (2 * 8 + 16)  # n_mfcc 8, n_mels 16
    train_head(stats_store, tmp_path / "m", "musicnn-msd")
    assert VectorStore(tmp_path / "m" / "vectors").dim == 200 and len(VectorStore(tmp_path / "m" / "vectors")) == 24
