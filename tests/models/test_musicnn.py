"""The musicnn port against outputs of the original TensorFlow model.

``tests/models/data/musicnn_reference.npz`` was made once, in a throwaway
environment with TensorFlow 2.21 (tf.compat.v1, legacy Keras layers) and
musicnn 0.1.0's own code, from the five recordings of ``../shared/audio``
(see ``tests/models/data/README.md``). It holds musicnn's input patches
(its librosa front-end), its tag probabilities, logits, penultimate layer and
pools, and the first 10 s of recording 0 at 16 kHz with its spectrogram.

Tolerances: the network is float32 in both; XLA and TensorFlow sum the
convolutions (up to 7 x 561 = 3,927 terms) in different orders, which moves
values by a few float32 ulps of their magnitude. Measured: logits within 3e-5
(they reach 12), probabilities within 4e-6, the penultimate layer within 1e-5,
the max pool within 5e-4 (it reaches about 100). The tests allow about 3x that.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"
MODELS = {"musicnn-msd": "MSD_musicnn", "musicnn-mtt": "MTT_musicnn"}


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_port_equals_the_original_on_its_own_input(name, reference):
    from mgc.models.pretrained.musicnn import MUSICNN_MODELS, load_musicnn

    key = MODELS[name]
    model = load_musicnn(name)
    assert list(reference[f"{key.split('_')[0]}_labels"]) == MUSICNN_MODELS[name][1]
    for i in range(len(reference["files"])):
        x = reference[f"x/{i}"]
        logits = np.asarray(model(x))
        frames = np.asarray(model._frames(x))
        np.testing.assert_allclose(logits, reference[f"{key}/{i}/logits"], atol=1e-4)
        np.testing.assert_allclose(jax.nn.sigmoid(logits), reference[f"{key}/{i}/probabilities"], atol=1e-5)
        np.testing.assert_allclose(model.embed(x), reference[f"{key}/{i}/penultimate"], atol=5e-5)
        np.testing.assert_allclose(frames.mean(axis=1), reference[f"{key}/{i}/mean_pool"], rtol=1e-5, atol=5e-5)
        np.testing.assert_allclose(frames.max(axis=1), reference[f"{key}/{i}/max_pool"], rtol=1e-5, atol=2e-3)


def test_the_front_end_equals_musicnns_on_the_same_samples(reference):
    """engine's log10_1p spec on the reference's 16 kHz samples gives musicnn's spectrogram."""
    from mgc.engine import FeatureSpec
    from mgc.engine.features import features_from_blocks
    from mgc.models.pretrained.musicnn import MUSICNN_SPEC

    spec = FeatureSpec.from_dict(MUSICNN_SPEC)
    audio = reference["audio_16k_0"]
    ours = features_from_blocks([audio], spec)[0]["logmel"]
    theirs = reference["spectrogram_0"]
    # librosa pads the end of the 10 s cut with zeros too: compare the frames both have.
    n = min(len(ours), len(theirs))
    assert n >= len(theirs) - 1
    # The mel power is rounded to float16 before the log in both; a float32 difference at a rounding
    # boundary moves one value by one float16 step, about 4e-4 after the log.
    difference = np.abs(ours[:n] - theirs[:n])
    assert difference.max() < 2e-3 and np.mean(difference > 1e-5) < 0.01


def test_tags_of_the_real_recordings_from_their_files(reference, shared_audio):
    """The whole path: decoding and resampling by the engine, our front-end, our network."""
    from mgc.engine import FeatureSpec, compute_features
    from mgc.models.pretrained.musicnn import MUSICNN_SPEC, load_musicnn

    spec = FeatureSpec.from_dict(MUSICNN_SPEC)
    model = load_musicnn("musicnn-msd")
    for i, name in enumerate(reference["files"]):
        logmel = compute_features(str(shared_audio / name), spec)["logmel"]
        n = len(reference[f"x/{i}"])
        patches = np.stack([logmel[k * 187 : (k + 1) * 187] for k in range(n)])
        ours = np.asarray(jax.nn.sigmoid(model(patches)))
        theirs = reference[f"MSD_musicnn/{i}/probabilities"]
        # Resamplers (soxr in both, through different front doors) differ slightly; tags agree closely.
        np.testing.assert_allclose(ours, theirs, atol=0.02)
        assert np.argmax(ours.mean(0)) == np.argmax(theirs.mean(0))


def test_predict_embed_and_similar_take_the_built_in_name(reference, shared_audio, tmp_path):
    from mgc.engine import VectorStore
    from mgc.models import embed, predict, similar

    files = [str(shared_audio / name) for name in reference["files"]]
    results = predict("musicnn-msd", files, top_k=3, workers=1)
    assert [r["error"] for r in results] == [None] * 5
    assert results[4]["top"][0]["label"] == "jazz"  # the solo trumpet, as the original says (0.88)
    summary = embed("musicnn-msd", tmp_path / "emb", files, workers=1, index="none")
    store = VectorStore(tmp_path / "emb")
    assert summary["written"] == 5 and store.dim == 200 and store.meta["model"]["dir"] == "musicnn-msd"
    copy = tmp_path / "copy.ogg"
    copy.write_bytes(Path(files[0]).read_bytes())
    by_id, by_audio = similar(tmp_path / "emb", [files[0], str(copy)], k=2)  # a plain file's track id is its path
    assert by_id["kind"] == "track" and files[0] not in [r["track_id"] for r in by_id["results"]]
    assert by_audio["kind"] == "audio" and by_audio["results"][0]["track_id"] == files[0]
    assert by_audio["results"][0]["score"] == pytest.approx(1, abs=1e-3)


def test_a_musicnn_preset_store_predicts_as_the_audio_does(tmp_path):
    from typer.testing import CliRunner

    from mgc.cli import app
    from mgc.engine import FeatureStore
    from mgc.models import predict
    from tests.models.conftest import write_tone_corpus

    corpus = write_tone_corpus(tmp_path / "corpus", n_per_class=1, seconds=4.0)
    result = CliRunner().invoke(app, ["extract", str(corpus), str(tmp_path / "store"), "--preset", "musicnn"])
    assert result.exit_code == 0, result.output
    store = FeatureStore(tmp_path / "store")
    assert store.spec.log_scale == "log10_1p" and store.spec.sr == 16000 and store.spec.n_mels == 96
    from_store = predict("musicnn-msd", store=tmp_path / "store", top_k=50)
    from_audio = predict("musicnn-msd", [r["path"] for r in from_store], top_k=50, workers=1)
    for a, b in zip(from_store, from_audio):
        pa = {t["label"]: t["probability"] for t in a["top"]}
        pb = {t["label"]: t["probability"] for t in b["top"]}
        assert max(abs(pa[k] - pb[k]) for k in pa) < 1e-5  # float32 log-mel in both


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_pooled_mid_end_equals_the_originals_max_and_mean_pools(name, reference):
    """The ``-pool`` featurizers' layer: ``pooled[:, 0::2]`` is musicnn's max_pool, ``[:, 1::2]`` its mean_pool."""
    from mgc.models.pretrained.musicnn import load_musicnn

    key = MODELS[name]
    model = load_musicnn(name)
    for i in range(len(reference["files"])):
        pooled = np.asarray(model.pooled(reference[f"x/{i}"]))
        assert pooled.shape[1] == 1506
        np.testing.assert_allclose(pooled[:, 0::2], reference[f"{key}/{i}/max_pool"], rtol=1e-5, atol=2e-3)
        np.testing.assert_allclose(pooled[:, 1::2], reference[f"{key}/{i}/mean_pool"], rtol=1e-5, atol=5e-5)


def test_each_featurizer_layer_per_patch_and_per_track(reference):
    """Patch vectors are the network's layer on each crop; the track vector is their mean; joined names join."""
    from mgc.models.kinds.builtin import BuiltinModel
    from mgc.models.kinds.featurizers import _backbone_results, vector_dim
    from mgc.models.pretrained.musicnn import load_musicnn

    # Two of the reference's tracks as log-mel, each cut into its patches back to back.
    items = [(f"t{i}", np.concatenate(list(reference[f"x/{i}"]))) for i in (0, 4)]
    msd, mtt = load_musicnn("musicnn-msd"), load_musicnn("musicnn-mtt")
    for featurizer, layers in (
        ("musicnn-msd", [msd.embed]),
        ("musicnn-mtt-pool", [mtt.pooled]),
        ("musicnn-msd+mtt", [msd.embed, mtt.embed]),
    ):
        patches = dict(_backbone_results(featurizer, items, backbone=None, patches=16))
        tracks = dict(_backbone_results(featurizer, items, backbone=None, patches=None))
        for key, logmel in items:
            crops = logmel.reshape(-1, 187, 96)
            expected = np.concatenate([np.asarray(layer(crops)) for layer in layers], axis=-1)
            assert patches[key].shape == expected.shape and expected.shape[1] == vector_dim(featurizer, {})
            np.testing.assert_allclose(patches[key], expected, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(tracks[key], expected.mean(0), rtol=1e-4, atol=1e-4)
    # Capped: at most `patches` crops, evenly spaced.
    few = dict(_backbone_results("musicnn-msd", items, backbone=None, patches=2))
    assert few["t0"].shape == (2, 200)
    assert BuiltinModel("musicnn-msd").crop_frames == 187
