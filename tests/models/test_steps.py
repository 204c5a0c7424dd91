"""The pure train and eval steps (one device)."""

from __future__ import annotations

import functools

import jax
import numpy as np

from mgc.models.config import TrainConfig
from mgc.models.nets.steps import infer_step, init_state, make_graphdef, make_optimizer, make_schedule, train_step
from tests.models.conftest import make_batch


def test_steps_learn_a_fixed_batch_and_are_pure(model_config, rng):
    config = TrainConfig(lr=3e-2, warmup_fraction=0.1)
    tx = make_optimizer(config, total_steps=30)
    step = jax.jit(functools.partial(train_step, graphdef=make_graphdef(model_config), tx=tx))
    batch = make_batch(rng, batch=8)
    state = init_state(model_config, tx, seed=0)
    first, _ = step(state, batch)
    again, _ = step(state, batch)
    jax.tree.map(np.testing.assert_array_equal, first, again)  # same inputs, same outputs
    losses = []
    for _ in range(20):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert int(state["step"]) == 20
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.6 * losses[0]
    probs, _embedding = jax.jit(infer_step, static_argnames=("graphdef", "multilabel"))(
        state["params"], state["batch_stats"], batch["x"], graphdef=make_graphdef(model_config)
    )
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, rtol=1e-5)


def test_schedule_warms_up_then_decays():
    schedule = make_schedule(TrainConfig(lr=1e-3, warmup_fraction=0.1), total_steps=100)
    assert float(schedule(0)) == 0.0
    assert abs(float(schedule(10)) - 1e-3) < 1e-9
    assert float(schedule(99)) < 1e-4


def test_bfloat16_step_matches_float32_within_bfloat16_precision(model_config, rng):
    """Mixed precision: the same state and batch give the same step, to bfloat16's precision.

    bfloat16 keeps 8 bits of mantissa (a relative rounding of 2**-9 = 0.2 % per value); through
    two conv blocks, a dense head and sums over hundreds of terms the loss moves by well under 2 %
    and the update keeps its direction (cosine > 0.99). Parameters, optimizer state and BatchNorm
    statistics stay float32.
    """
    from mgc.models.training.parallel import make_parallel

    config = TrainConfig(lr=1e-2, warmup_fraction=0.1)
    tx = make_optimizer(config, total_steps=30)
    batch = make_batch(rng, batch=16)
    state = jax.tree.map(np.asarray, init_state(model_config, tx, seed=0))
    results = {}
    for precision in ("float32", "bfloat16"):
        runner = make_parallel("jit", model_config, tx, precision=precision, devices=jax.devices()[:1])
        new, losses = runner.put_state(state), []
        for _ in range(4):  # the first step's learning rate is 0 (warm-up): look at the fourth
            new, metrics = runner.step(new, runner.put_batch(batch))
            losses.append(float(metrics["loss"]))
        assert runner._step._cache_size() == 1  # same shapes: compiled once
        results[precision] = (runner.get_state(new), np.array(losses))
    (f32, loss32), (b16, loss16) = results["float32"], results["bfloat16"]
    np.testing.assert_allclose(loss16, loss32, rtol=0.02)
    for tree in (b16["params"], b16["batch_stats"], b16["opt_state"]):
        assert all(leaf.dtype != np.dtype("bfloat16") for leaf in jax.tree.leaves(tree) if hasattr(leaf, "dtype"))

    def moved(new):
        return np.concatenate([(a - b).ravel() for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state["params"]))])

    delta32, delta16 = moved(f32["params"]), moved(b16["params"])
    cosine = float(delta32 @ delta16 / np.linalg.norm(delta32) / np.linalg.norm(delta16))
    assert cosine > 0.99, cosine
