"""The model folder's schema (models/folder.py) and the loader's one dispatch on its recorded kind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mgc.models import Model, ModelError, load_model
from mgc.models.folder import ModelFolder
from mgc.models.kinds.head import HeadModel

SPEC = {"features": ["logmel", "mfcc"], "n_mels": 4, "n_mfcc": 2}
SPLITS = {"method": "split files", "train": ["a"], "valid": [], "test": ["b"]}


def _head_arrays(dim=12, classes=3, hidden=None, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"mean": rng.normal(size=dim), "std": rng.uniform(0.5, 2, dim)}
    width = hidden or dim
    if hidden:
        arrays.update(hidden_weights=rng.normal(size=(dim, hidden)), hidden_bias=rng.normal(size=hidden))
    arrays.update(weights=rng.normal(size=(width, classes)), bias=rng.normal(size=classes))
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def _meta(classes=3):
    return {"kind": "head", "featurizer": "stats", "head": "linear", "fine_tuned": False,
            "label_names": [f"g{i}" for i in range(classes)], "spec": SPEC, "vectors": None}  # fmt: skip


@pytest.mark.parametrize("hidden", [None, 5])
def test_a_head_written_through_the_schema_loads_as_a_model(tmp_path, hidden):
    arrays = _head_arrays(hidden=hidden)
    ModelFolder(tmp_path / "head").write_head(arrays, _meta(), splits=SPLITS, backbone=None)
    model = load_model(tmp_path / "head")
    assert isinstance(model, HeadModel) and isinstance(model, Model) and model.kind == "head"
    assert model.label_names == ["g0", "g1", "g2"] and model.embedding_dim == 12 and model.step is None
    assert model.source == str((tmp_path / "head").resolve())
    v = np.random.default_rng(1).normal(size=(4, 12))
    z = (v - arrays["mean"]) / arrays["std"]
    if hidden:
        z = np.maximum(z @ arrays["hidden_weights"] + arrays["hidden_bias"], 0)
    logits = z @ arrays["weights"] + arrays["bias"]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(model.probabilities(v), expected / expected.sum(1, keepdims=True), rtol=1e-5)
    # The fingerprint follows the weights.
    arrays["bias"] = arrays["bias"] + 1
    ModelFolder(tmp_path / "other").write_head(arrays, _meta(), splits=SPLITS, backbone=None)
    assert load_model(tmp_path / "other").fingerprint() != model.fingerprint()


def test_a_head_changes_from_one_generation_to_the_next(tmp_path):
    folder = ModelFolder(tmp_path / "head")
    folder.write_head(_head_arrays(), {**_meta(), "fine_tuned": True}, splits=SPLITS, backbone=b"not read here")
    first = folder.head_files()
    assert {p.name for p in first.values()} == {"head-1.npz", "splits-1.json", "backbone-1.npz"}
    assert first["backbone"].read_bytes() == b"not read here" and folder.read_splits() == SPLITS
    # The next generation: new files, then model.json; the previous generation's files are gone.
    folder.write_head(_head_arrays(classes=5), _meta(classes=5), splits={**SPLITS, "test": []}, backbone=None)
    assert sorted(p.name for p in folder.root.iterdir()) == ["head-2.npz", "model.json", "splits-2.json"]
    assert load_model(folder.root).label_names == [f"g{i}" for i in range(5)] and folder.read_splits()["test"] == []
    folder.model_json.write_text(json.dumps({**json.loads(folder.model_json.read_text()), "fine_tuned": True}))
    with pytest.raises(ModelError, match="fine-tuned head but its backbone file is missing"):
        load_model(folder.root)


def test_a_kill_between_files_leaves_the_previous_head(tmp_path):
    """The new generation's files are written, model.json is not yet: the folder still holds the old head."""
    folder = ModelFolder(tmp_path / "head")
    folder.write_head(_head_arrays(), _meta(), splits=SPLITS, backbone=None)
    before = load_model(folder.root).fingerprint()
    # What a run killed just before its commit leaves: generation 2's files beside generation 1's model.json.
    np.savez(folder.root / "head-2.npz", **_head_arrays(classes=5, seed=3))
    (folder.root / "splits-2.json").write_text(json.dumps({**SPLITS, "train": ["b"]}))
    model = load_model(folder.root)
    assert model.fingerprint() == before and model.label_names == ["g0", "g1", "g2"]
    assert folder.read_splits() == SPLITS
    folder.write_head(_head_arrays(seed=4), _meta(), splits=SPLITS, backbone=None)  # the next run cleans up
    assert sorted(p.name for p in folder.root.iterdir()) == ["head-2.npz", "model.json", "splits-2.json"]


def test_a_folder_of_another_kind_or_of_someone_else_is_refused_untouched(tmp_path, tone_store):
    from mgc.models import TrainConfig, train, train_head

    head = tmp_path / "head"
    ModelFolder(head).write_head(_head_arrays(), _meta(), splits=SPLITS, backbone=None)
    before = {p.name: p.read_bytes() for p in head.iterdir()}
    with pytest.raises(ModelError, match="holds a head model; train the cnn into another --out"):
        train(tone_store, head, TrainConfig(epochs=1, batch_size=4, crop_seconds=0.5))
    assert {p.name: p.read_bytes() for p in head.iterdir() if p.name != ".lock"} == before
    site = tmp_path / "site"
    site.mkdir()
    (site / "model.json").write_text('{"name": "my own thing"}')
    (site / "backbone.npz").write_bytes(b"mine")
    with pytest.raises(ModelError, match="is not empty .* and holds no mgc model"):
        train_head(tone_store, site, "musicnn-msd")  # refused before any vector is computed
    assert (site / "model.json").read_text() == '{"name": "my own thing"}' and (site / "backbone.npz").exists()
    assert not (site / "splits.json").exists()


def test_a_damaged_head_is_one_clear_error(tmp_path):
    folder = ModelFolder(tmp_path / "head")
    folder.write_head(_head_arrays(), _meta(), splits=SPLITS, backbone=None)
    head_file = folder.head_files()["head"]
    data = head_file.read_bytes()
    head_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="head-1.npz is damaged"):
        load_model(folder.root)
    head_file.unlink()
    with pytest.raises(ModelError, match="head-1.npz is missing"):
        load_model(folder.root)
    arrays = _head_arrays()
    arrays["bias"] = arrays["bias"][:2]  # two classes' biases for three labels
    folder.write_head(arrays, _meta(), splits=SPLITS, backbone=None)
    with pytest.raises(ModelError, match=r"disagreeing shapes \(bias \(2,\)\)"):
        load_model(folder.root)
    folder.write_head({"mean": arrays["mean"]}, _meta(), splits=SPLITS, backbone=None)
    with pytest.raises(ModelError, match="not a head's arrays"):
        load_model(folder.root)


def test_the_loader_dispatches_on_the_recorded_kind(tmp_path):
    folder = ModelFolder(tmp_path / "m")
    folder.write_model({"kind": "transformer"})
    with pytest.raises(ModelError, match="of kind 'transformer'"):
        load_model(folder.root)
    folder.model_json.write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a model description"):
        load_model(folder.root)
    folder.write_model({"label_names": ["a"]})  # no kind: a CNN (folders from before the field), without checkpoints
    with pytest.raises(ModelError, match="holds no trained model"):
        load_model(folder.root)
    assert ModelFolder(tmp_path / "nothing").kind() == "cnn"


def test_a_trained_cnn_records_its_kind(tone_model):
    assert json.loads((tone_model.folder / "model.json").read_text())["kind"] == "cnn"
    model = load_model(tone_model.folder, "latest")  # the checkpoint the fixture loaded
    assert model.kind == "cnn" and isinstance(model, Model)
    assert model.embedding_dim == (model.model_config.dense or model.model_config.widths[-1])
    assert model.fingerprint() == tone_model.fingerprint() and model.step == tone_model.step
