"""The pure train and eval steps (one device)."""

from __future__ import annotations

import functools

import jax
import numpy as np

from models.config import TrainConfig
from models.steps import eval_step, init_state, make_graphdef, make_optimizer, make_schedule, train_step
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
    probs = jax.jit(eval_step, static_argnames="graphdef")(
        state["params"], state["batch_stats"], batch["x"], graphdef=make_graphdef(model_config)
    )
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, rtol=1e-5)


def test_schedule_warms_up_then_decays():
    schedule = make_schedule(TrainConfig(lr=1e-3, warmup_fraction=0.1), total_steps=100)
    assert float(schedule(0)) == 0.0
    assert abs(float(schedule(10)) - 1e-3) < 1e-9
    assert float(schedule(99)) < 1e-4
