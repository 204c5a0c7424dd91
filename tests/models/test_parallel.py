"""One step of each data-parallel path equals one device on the same global batch."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mgc.models.config import tiny_model_config
from mgc.models.nets.steps import init_state, make_optimizer
from mgc.models.training.parallel import make_parallel
from tests.models.conftest import make_batch

pytestmark = pytest.mark.skipif(jax.local_device_count() < 4, reason="needs 4 (faked) CPU devices")


def _run(kind, devices, config, train_config, batch, steps=2):
    tx = make_optimizer(train_config, total_steps=10)
    runner = make_parallel(kind, config, tx, devices=devices, batch_size=batch["x"].shape[0])
    state = runner.put_state(init_state(config, tx, seed=0))
    losses = []
    for _ in range(steps):
        state, metrics = runner.step(state, runner.put_batch(batch))
        losses.append(float(metrics["loss"]))
    return losses, runner.get_state(state)


@pytest.mark.parametrize("kind", ["jit", "pmap"])
def test_four_devices_match_one_device(kind, rng, train_config):
    # No dropout: under pmap each device draws its own mask, which one device cannot reproduce.
    config = tiny_model_config(n_mels=16, n_classes=3, dropout=0.0)
    batch = make_batch(rng, batch=8)
    ref_losses, ref_state = _run("jit", jax.devices()[:1], config, train_config, batch)
    losses, state = _run(kind, jax.devices()[:4], config, train_config, batch)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-6)
    for name in ("params", "batch_stats", "opt_state"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), state[name], ref_state[name])
    assert int(state["step"]) == 2
    np.testing.assert_array_equal(state["rng"], ref_state["rng"])


def test_jit_matches_one_device_with_dropout(rng, train_config):
    # Partitionable threefry: the sharded dropout mask equals the one-device mask.
    config = tiny_model_config(n_mels=16, n_classes=3, dropout=0.5)
    batch = make_batch(rng, batch=8)
    ref_losses, ref_state = _run("jit", jax.devices()[:1], config, train_config, batch)
    losses, state = _run("jit", jax.devices()[:4], config, train_config, batch)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), state["params"], ref_state["params"]
    )


def test_batch_not_divisible_by_devices_is_a_clear_error(model_config, train_config):
    from mgc.models.config import ModelError

    tx = make_optimizer(train_config, total_steps=10)
    with pytest.raises(ModelError, match="multiple"):
        make_parallel("jit", model_config, tx, devices=jax.devices()[:4], batch_size=6)
