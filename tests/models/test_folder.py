"""The model folder's schema (models/folder.py) and the loader's one dispatch on its recorded kind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mgc.models import Model, ModelError, load_model
from mgc.models.folder import ModelFolder
from mgc.models.kinds.head import HeadModel

SPEC = {"features": ["logmel", "mfcc"], "n_mels": 4, "n_mfcc": 2}


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
    ModelFolder(tmp_path / "head").write_head(arrays, _meta(), backbone=None)
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
    ModelFolder(tmp_path / "other").write_head(arrays, _meta(), backbone=None)
    assert load_model(tmp_path / "other").fingerprint() != model.fingerprint()


def test_a_previous_runs_tuned_backbone_is_removed_and_a_missing_one_refused(tmp_path):
    folder = ModelFolder(tmp_path / "head")
    folder.write_head(_head_arrays(), {**_meta(), "fine_tuned": True}, backbone=b"not read here")
    assert folder.backbone_file.read_bytes() == b"not read here"
    folder.write_head(_head_arrays(), _meta(), backbone=None)
    assert not folder.backbone_file.exists()
    folder.model_json.write_text(json.dumps({**_meta(), "fine_tuned": True}))
    with pytest.raises(ModelError, match="fine-tuned head but its backbone.npz is missing"):
        load_model(folder.root)


def test_a_damaged_head_is_one_clear_error(tmp_path):
    folder = ModelFolder(tmp_path / "head")
    folder.write_head(_head_arrays(), _meta(), backbone=None)
    data = folder.head_file.read_bytes()
    folder.head_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="head.npz is damaged"):
        load_model(folder.root)
    folder.head_file.unlink()
    with pytest.raises(ModelError, match="head.npz is missing"):
        load_model(folder.root)
    arrays = _head_arrays()
    arrays["bias"] = arrays["bias"][:2]  # two classes' biases for three labels
    folder.write_head(arrays, _meta(), backbone=None)
    with pytest.raises(ModelError, match=r"disagreeing shapes \(bias \(2,\)\)"):
        load_model(folder.root)
    folder.write_head({"mean": arrays["mean"]}, _meta(), backbone=None)
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
    model = load_model(tone_model.folder)
    assert model.kind == "cnn" and isinstance(model, Model)
    assert model.embedding_dim == (model.model_config.dense or model.model_config.widths[-1])
    assert model.fingerprint() == tone_model.fingerprint() or model.step != tone_model.step
