"""Pure training and evaluation steps, the optimizer and the initial state.

The steps are plain functions of ``(state, batch)``; the parallel transform
(``jax.jit`` over a mesh or ``jax.pmap``) is applied where they are called, in
:mod:`mgc.models.training.parallel`, as in the Flax examples.

The train state is a plain dict of pytrees (pure dicts of arrays, no Flax
objects) so that orbax writes and reads it without custom handlers::

    {"params": ..., "batch_stats": ..., "opt_state": ..., "step": int32, "rng": uint32[2]}
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mgc.models.config import ModelConfig, TrainConfig
from mgc.models.nets.cnn import ShortChunkCNN

__all__ = [
    "make_schedule",
    "make_optimizer",
    "make_graphdef",
    "init_state",
    "abstract_state",
    "train_step",
    "infer_step",
]

TrainState = dict[str, Any]


def make_schedule(config: TrainConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to ``config.lr``, then cosine decay to 1% of it at ``total_steps``."""
    total_steps = max(int(total_steps), 2)
    warmup = min(max(int(config.warmup_fraction * total_steps), 1), total_steps - 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.lr, warmup_steps=warmup, decay_steps=total_steps, end_value=config.lr * 0.01
    )


def make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """AdamW with warm-up then cosine decay, after global-norm gradient clipping."""
    schedule = make_schedule(config, total_steps)
    # Decay conv and dense kernels only: decaying BatchNorm scales and biases hurts and buys nothing.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(schedule, weight_decay=config.weight_decay, mask=decay_mask),
    )


#: TrainConfig.precision -> compute dtype of the network (parameters stay float32).
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def make_graphdef(config: ModelConfig, *, axis_name: str | None = None, precision: str = "float32") -> nnx.GraphDef:
    """The static structure of the network (no arrays are allocated).

    ``precision`` (``"float32"`` or ``"bfloat16"``) sets the compute dtype of the
    convolutions and dense layers; it is part of the structure, not of the
    parameters, so one checkpoint serves both.
    """
    dtype = COMPUTE_DTYPES[precision]
    abstract = nnx.eval_shape(lambda: ShortChunkCNN(config, axis_name=axis_name, dtype=dtype, rngs=nnx.Rngs(0)))
    graphdef, _, _ = nnx.split(abstract, nnx.Param, nnx.BatchStat)
    return graphdef


def init_state(config: ModelConfig, tx: optax.GradientTransformation, *, seed: int) -> TrainState:
    """Fresh parameters, BatchNorm statistics, optimizer state, step 0 and the RNG."""
    init_key, rng = jax.random.split(jax.random.PRNGKey(seed))
    model = ShortChunkCNN(config, rngs=nnx.Rngs(init_key))
    _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    params, batch_stats = nnx.to_pure_dict(params), nnx.to_pure_dict(batch_stats)
    return {
        "params": params,
        "batch_stats": batch_stats,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
        "rng": rng,
    }


def abstract_state(config: ModelConfig, tx: optax.GradientTransformation) -> TrainState:
    """The train state's structure, as :func:`init_state` makes it, with ``jax.ShapeDtypeStruct`` leaves.

    Only traced (``jax.eval_shape``): no random initialisation runs and nothing is compiled, so it is
    the cheap template to restore a checkpoint into.
    """
    return jax.eval_shape(lambda: init_state(config, tx, seed=0))


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a batch; pure.

    Parameters
    ----------
    state : dict
        The train state (see module docstring).
    batch : dict
        ``x`` float32 ``(batch, n_frames, n_mels)`` normalised crops and
        ``y`` float32 ``(batch, n_classes)`` target distributions (one-hot,
        or mixed by mixup).
    graphdef : nnx.GraphDef
        From :func:`make_graphdef`; built with ``axis_name`` under ``pmap`` so
        that BatchNorm averages its statistics over devices.
    tx : optax.GradientTransformation
        From :func:`make_optimizer`.
    axis_name : str or None
        The ``pmap`` axis: loss, metrics and gradients are averaged over it
        with ``lax.pmean``. ``None`` on one device and under ``jit``, where the
        batch is one global array and XLA does the reductions.

    Returns
    -------
    state : dict
        The updated state.
    metrics : dict
        ``loss`` and ``accuracy`` of the batch (global over devices), scalars.
    """
    rng, step_key = jax.random.split(state["rng"])
    dropout_key = step_key if axis_name is None else jax.random.fold_in(step_key, jax.lax.axis_index(axis_name))

    def loss_fn(params):
        model = nnx.merge(graphdef, params, state["batch_stats"])
        model.train()
        logits = model(batch["x"], dropout_key=dropout_key)
        loss = optax.softmax_cross_entropy(logits, batch["y"]).mean()
        return loss, (logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    accuracy = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(batch["y"], -1))
    if axis_name is not None:
        # Equal shards per device, so the mean of per-device means is the global mean.
        grads, loss, accuracy = jax.lax.pmean((grads, loss, accuracy), axis_name)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_state = {
        "params": optax.apply_updates(state["params"], updates),
        "batch_stats": batch_stats,
        "opt_state": opt_state,
        "step": state["step"] + 1,
        "rng": rng,
    }
    return new_state, {"loss": loss, "accuracy": accuracy}


def infer_step(
    params: Any,
    batch_stats: Any,
    x: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    multilabel: bool = False,
    layer: str = "penultimate",
) -> tuple[jax.Array, jax.Array]:
    """Class probabilities ``(batch, n_classes)`` and embeddings ``(batch, dim)``; pure.

    Probabilities are a softmax over the classes, or with ``multilabel`` one
    sigmoid per tag (for taggers such as musicnn). The embedding is the
    penultimate layer, or with ``layer="pool"`` the pooled mid-end of a network
    that has one (musicnn's :meth:`~mgc.models.nets.musicnn.Musicnn.pooled`).
    """
    model = nnx.merge(graphdef, params, batch_stats)
    model.eval()
    if layer == "pool":
        pooled = model.pooled(x)
        logits = model.out(model.dense_bn(jax.nn.relu(model.dense(model.pool_bn(pooled))))).astype(jnp.float32)
        embedding = pooled
    else:
        embedding = model.embed(x)
        logits = model.out(embedding).astype(jnp.float32)
    return (jax.nn.sigmoid(logits) if multilabel else jax.nn.softmax(logits, axis=-1)), embedding
