"""The short-chunk CNN and its configs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgc.models.config import ModelConfig, ModelError, TrainConfig, tiny_model_config
from mgc.models.nets.cnn import ShortChunkCNN


def test_logits_shape_and_depth(model_config):
    model = ShortChunkCNN(model_config, rngs=nnx.Rngs(0))
    model.eval()
    assert model(jnp.zeros((5, 32, 16))).shape == (5, 3)
    assert len(model.blocks) == len(model_config.widths)


def test_any_crop_length_gives_the_same_output_shape(model_config):
    model = ShortChunkCNN(model_config, rngs=nnx.Rngs(0))
    model.eval()
    assert model(jnp.zeros((2, 17, 16))).shape == model(jnp.zeros((2, 64, 16))).shape == (2, 3)


def test_dropout_only_in_training_mode():
    model = ShortChunkCNN(tiny_model_config(dropout=0.5), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 32, 16))
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))
    model.train()
    a = model(x, dropout_key=jax.random.PRNGKey(2))
    b = model(x, dropout_key=jax.random.PRNGKey(3))
    assert not np.allclose(a, b)


def test_configs_round_trip_through_dicts():
    config = ModelConfig(n_mels=64, n_classes=6, widths=(8, 16, 32), dense=0, dropout=0.1)
    assert ModelConfig.from_dict(config.to_dict()) == config
    train_config = TrainConfig(epochs=3, parallel="pmap", mixup_alpha=0.0, crops_per_track=1)
    assert TrainConfig.from_dict(train_config.to_dict()) == train_config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_mels = 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: ModelConfig(n_mels=8, widths=(4, 4, 4, 4)),
        lambda: ModelConfig(n_classes=1),
        lambda: TrainConfig(parallel="vmap"),
        lambda: TrainConfig(val_fraction=0.6, test_fraction=0.5),
        lambda: ModelConfig.from_dict({"n_mels": 16, "colour": "red"}),
    ],
)
def test_bad_settings_are_clear_errors(make):
    with pytest.raises(ModelError):
        make()
