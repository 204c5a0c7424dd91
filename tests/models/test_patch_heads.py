"""Patch-level heads (``--level patch``): every 3 s patch a training example, a track the mean of its patches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mgc.models.folder import ModelFolder
from tests.models.conftest import write_tone_corpus

PATCHES = 4


@pytest.fixture(scope="module")
def long_store(tmp_path_factory):
    """3 classes x 6 tone tracks of 8 s with log-mel and MFCC: 3 statistics patches of 3 s each."""
    from mgc.engine import FeatureSpec, extract

    root = tmp_path_factory.mktemp("patches")
    corpus = write_tone_corpus(root / "corpus", n_per_class=6, seconds=8.0)
    spec = FeatureSpec(sr=8000, n_fft=256, hop_length=128, n_mels=16, n_mfcc=8)
    extract(corpus, root / "store", spec, workers=1)
    return root / "store"


@pytest.fixture(scope="module")
def patch_head(long_store, tmp_path_factory):
    from mgc.models.training.heads import train_head

    out = tmp_path_factory.mktemp("patch-head") / "m"
    summary = train_head(long_store, out, "stats", level="patch", patches=PATCHES, c=0.5)
    return out, summary


def test_patch_starts_cover_the_track_evenly_and_are_capped():
    from mgc.models.kinds.featurizers import patch_starts

    assert patch_starts(1000, 100, 8).tolist() == [0, 129, 257, 386, 514, 643, 771, 900]  # 10 would cover: capped
    assert patch_starts(250, 100, 8).tolist() == [0, 75, 150]
    assert patch_starts(100, 100, 8).tolist() == [0]
    assert patch_starts(30, 100, 8).tolist() == [0]  # shorter than a patch: one, of what there is


def test_stats_patches_are_the_statistics_of_each_window():
    from mgc.models.kinds.featurizers import patch_starts, stats_patches, stats_vector

    rng = np.random.default_rng(0)
    logmel, mfcc = rng.standard_normal((450, 4)), rng.standard_normal((450, 3))
    patches = stats_patches(logmel, mfcc, 200, 8)
    starts = patch_starts(450, 200, 8)
    assert patches.shape == (3, 2 * (2 * 3 + 4))
    for row, s in zip(patches, starts):
        np.testing.assert_allclose(row, stats_vector(logmel[s : s + 200], mfcc[s : s + 200]), rtol=1e-6)
    np.testing.assert_allclose(stats_patches(logmel[:50], mfcc[:50], 200, 8)[0], stats_vector(logmel[:50], mfcc[:50]))


def test_the_window_of_the_statistics_is_three_seconds_of_the_store():
    from mgc.models.kinds.featurizers import stats_window

    assert stats_window({"sr": 8000, "hop_length": 128}) == 188
    assert stats_window({"sr": 22050, "hop_length": 512}) == 129


def test_a_patch_head_is_fitted_on_the_patches_of_its_training_tracks_only(long_store, patch_head):
    sklearn = pytest.importorskip("sklearn.linear_model", reason="scikit-learn is the test oracle")
    from mgc.engine import FeatureStore, VectorStore
    from mgc.models.kinds.head import HeadModel, track_keys

    out, summary = patch_head
    head = HeadModel.load(out)
    assert (head.level, head.patches) == ("patch", PATCHES)
    meta = json.loads((out / "model.json").read_text())
    assert (meta["level"], meta["patches"]) == ("patch", PATCHES)
    store = FeatureStore(long_store)
    splits = ModelFolder(out).read_splits()
    rows = {name: np.sort(store.tracks.track_id.lookup(splits[name])) for name in ("train", "valid", "test")}
    # The cache: each track's 3 patches under KEY<TAB>i, none for a 4th.
    cache = VectorStore(out / "vectors")
    every = np.concatenate(list(rows.values()))
    keys = track_keys(store, every)
    assert sorted(cache.track_ids()) == sorted(f"{key}\t{i}" for key in keys for i in range(3))
    # Fitted: exactly the training tracks' patches, each labelled with its track's genre (sklearn on them).
    vectors, owner, available = head.store_patch_vectors(store, rows["train"])
    assert available.all() and np.bincount(owner).tolist() == [3] * len(rows["train"])
    assert summary["vectors_fitted"] == len(vectors) == 3 * len(rows["train"])
    labels = store.tracks.label[rows["train"]][owner]
    oracle = sklearn.LogisticRegression(C=0.5, max_iter=10_000, tol=1e-10).fit(head.standardise(vectors), labels)
    np.testing.assert_allclose(head.probabilities(vectors), oracle.predict_proba(head.standardise(vectors)), atol=2e-3)


def test_a_patch_head_predicts_a_track_as_the_mean_of_its_patches_everywhere(long_store, patch_head):
    from mgc.engine import FeatureStore
    from mgc.models.kinds.featurizers import store_vectors
    from mgc.models.kinds.head import HeadModel

    out, summary = patch_head
    head = HeadModel.load(out)
    store = FeatureStore(long_store)
    rows = np.arange(len(store.tracks.track_id))
    patches = dict(store_vectors(store, rows, "stats", patches=PATCHES))
    expected = np.stack([head.probabilities(patches[key]).mean(0) for key in patches])
    embedded = np.stack([head.standardise(patches[key]).mean(0) for key in patches])
    # From the store (computed), from the training's cache (evaluate's path), and from the audio files.
    stored = list(head.store_results(store, rows))
    np.testing.assert_allclose(np.stack([r.probabilities for r in stored]), expected, atol=1e-6)
    np.testing.assert_allclose(np.stack([r.embedding for r in stored]), embedded, atol=1e-5)
    probabilities, embeddings, available = head.store_outputs(store, rows)
    assert available.all()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    np.testing.assert_allclose(embeddings, embedded, atol=1e-5)
    entries = [(key[0], key[1], key[2]) for key in patches]
    from_audio = list(head.audio_results(entries[:4], workers=1))
    np.testing.assert_allclose(np.stack([r.probabilities for r in from_audio]), expected[:4], atol=1e-4)
    # A track's accuracy in the summary is per track, from those means.
    labels = store.tracks.label[rows]
    splits = ModelFolder(out).read_splits()
    valid = np.isin(store.tracks.track_id.take(rows), splits["valid"])
    assert summary["valid_accuracy"] == pytest.approx((expected[valid].argmax(1) == labels[valid]).mean())


def test_the_track_level_stays_and_a_folder_from_before_levels_is_a_track_head(long_store, tmp_path):
    from mgc.engine import FeatureStore
    from mgc.models.kinds.featurizers import store_vectors
    from mgc.models.kinds.head import HeadModel
    from mgc.models.training.heads import train_head

    summary = train_head(long_store, tmp_path / "m", "stats", level="track")
    assert (summary["level"], summary["patches"]) == ("track", None)
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text())
    assert (meta["level"], meta["patches"]) == ("track", None)
    store = FeatureStore(long_store)
    rows = np.arange(4)
    vectors = np.stack([v for _key, v in store_vectors(store, rows, "stats")])
    head = HeadModel.load(tmp_path / "m")
    before = head.store_outputs(store, rows)[0]
    np.testing.assert_allclose(before, head.probabilities(vectors), atol=1e-6)
    fingerprint = head.fingerprint()
    del meta["level"], meta["patches"]  # as a head written before levels existed
    meta_path.write_text(json.dumps(meta))
    old = HeadModel.load(tmp_path / "m")
    assert (old.level, old.patches) == ("track", None) and old.fingerprint() == fingerprint
    np.testing.assert_allclose(old.store_outputs(store, rows)[0], before)


@pytest.mark.parametrize("level, patches", [("patch", None), ("patch", 0), ("patch", "4"), ("clip", 4)])
def test_a_head_of_a_level_mgc_does_not_write_is_refused_in_one_line(long_store, patch_head, tmp_path, level, patches):
    import shutil

    from mgc.models.config import ModelError
    from mgc.models.kinds.head import HeadModel

    out = tmp_path / "m"
    shutil.copytree(patch_head[0], out)
    meta = json.loads((out / "model.json").read_text())
    (out / "model.json").write_text(json.dumps({**meta, "level": level, "patches": patches}))
    with pytest.raises(ModelError, match="level") as info:
        HeadModel.load(out)
    assert "\n" not in str(info.value)


def test_patch_and_track_heads_do_not_share_a_vector_cache(long_store, patch_head, tmp_path):
    from mgc.models.config import ModelError
    from mgc.models.training.heads import train_head

    shared = tmp_path / "shared"
    train_head(long_store, tmp_path / "a", "stats", level="patch", patches=PATCHES, vectors_dir=shared)
    with pytest.raises(ModelError, match="another featurizer"):
        train_head(long_store, tmp_path / "b", "stats", level="track", vectors_dir=shared)
    with pytest.raises(ModelError, match="another featurizer"):
        train_head(long_store, tmp_path / "c", "stats", level="patch", patches=PATCHES + 1, vectors_dir=shared)


def test_the_cli_trains_either_level_and_refuses_a_bad_one(long_store, tmp_path):
    from typer.testing import CliRunner

    from mgc.cli import app

    runner = CliRunner()
    base = ["train", str(long_store), "--model", "stats"]
    result = runner.invoke(app, [*base, "--level", "track", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "trained a track-level linear stats head" in result.output
    result = runner.invoke(app, [*base, "--patches", "2", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "p" / "model.json").read_text())["patches"] == 2
    for bad in (["--patches", "0"], ["--level", "clip"]):
        result = runner.invoke(app, [*base, *bad, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and not (tmp_path / "x").exists()
    result = runner.invoke(
        app, ["train", str(long_store), "--model", "cnn", "--level", "track", "--out", str(tmp_path / "y")]
    )
    assert result.exit_code == 2 and "--level" in result.output


def test_a_feature_constant_but_for_rounding_is_not_blown_up_to_unit_variance():
    from mgc.models.training.heads import standardisation

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    x[:, 1] = 0.75 + rng.standard_normal(40).astype(np.float32) * 5e-8  # a dead unit: rounding noise only
    x[:, 2] = 0.0
    mean, std = standardisation(x)
    assert std[1] == 1.0 and std[2] == 1.0 and std[0] == pytest.approx(x[:, 0].std())
    assert np.abs((x - mean) / std)[:, 1:].max() < 1e-6


def test_backbone_musicnn_is_the_measured_best_layer_and_its_name_is_recorded(long_store, tmp_path):
    from mgc.engine import FeatureStore, VectorStore
    from mgc.models.config import DEFAULT_BACKBONE, ModelError
    from mgc.models.kinds.head import HeadModel
    from mgc.models.training.heads import train_head

    summary = train_head(long_store, tmp_path / "m", "musicnn", patches=2)
    assert summary["featurizer"] == DEFAULT_BACKBONE == "musicnn-msd-pool"
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["featurizer"] == "musicnn-msd-pool" and meta["dim"] == 1506
    cache = VectorStore(tmp_path / "m" / "vectors")
    assert cache.dim == 1506 and len(cache) == 2 * 18  # 8 s tracks: 3 patches would cover them, capped at 2
    head = HeadModel.load(tmp_path / "m")
    probabilities, _embeddings, available = head.store_outputs(FeatureStore(long_store), np.arange(18))
    assert available.all() and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    with pytest.raises(ModelError, match="fine-tuning trains one network's penultimate layer"):
        train_head(long_store, tmp_path / "t", "musicnn", fine_tune_epochs=1)
    assert not (tmp_path / "t").exists()
