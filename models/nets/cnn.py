"""A short-chunk CNN over log-mel crops (Flax NNX).

Won et al. (2020) "Evaluation of CNN-based automatic music tagging models":
stacked 3x3 conv + BatchNorm + ReLU + 2x2 max-pool blocks over a few seconds
of log-mel, global max pooling, a dense head. Width and depth come from
:class:`~models.config.ModelConfig`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from mgc.models.config import ModelConfig

__all__ = ["ShortChunkCNN"]


class ConvBlock(nnx.Module):
    """3x3 conv, BatchNorm, ReLU, 2x2 max-pool: halves time and frequency."""

    def __init__(
        self, in_features: int, out_features: int, *, axis_name: str | None, dtype: Any = None, rngs: nnx.Rngs
    ):
        # No conv bias: the BatchNorm shift that follows makes it redundant. The conv computes in
        # ``dtype`` (bfloat16 for mixed precision); BatchNorm always in float32 (its parameters'
        # dtype), which keeps its statistics exact.
        self.conv = nnx.Conv(
            in_features,
            out_features,
            kernel_size=(3, 3),
            padding="SAME",
            use_bias=False,
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.norm = nnx.BatchNorm(out_features, momentum=0.9, axis_name=axis_name, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.norm(self.conv(x)))
        return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))


class ShortChunkCNN(nnx.Module):
    """Genre logits from a batch of normalised log-mel crops.

    Parameters
    ----------
    config : ModelConfig
        Widths, depth, head size, dropout, number of bands and classes.
    axis_name : str or None
        Name of the ``pmap`` axis over which BatchNorm averages its batch
        statistics (so that they are global, as under ``jit`` with a sharded
        batch). ``None`` for single-device and ``jit`` runs.
    dtype : jnp.dtype, optional
        Compute dtype of the convolutions and dense layers (``jnp.bfloat16`` for
        mixed precision); parameters are float32 whatever it is, BatchNorm and
        the returned logits too. ``None``: float32.
    rngs : nnx.Rngs
        Initialisation keys.

    Notes
    -----
    Call with ``x`` of shape ``(batch, n_frames, n_mels)`` float32; returns
    logits ``(batch, n_classes)``. In training mode pass ``dropout_key``.
    """

    def __init__(self, config: ModelConfig, *, axis_name: str | None = None, dtype: Any = None, rngs: nnx.Rngs):
        self.config = config
        widths = (1,) + tuple(config.widths)
        self.blocks = nnx.List(
            [
                ConvBlock(widths[i], widths[i + 1], axis_name=axis_name, dtype=dtype, rngs=rngs)
                for i in range(len(config.widths))
            ]
        )
        head_in = widths[-1]
        if config.dense > 0:
            self.hidden = nnx.Linear(head_in, config.dense, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
            head_in = config.dense
        else:
            self.hidden = None
        self.dropout = nnx.Dropout(config.dropout)
        self.out = nnx.Linear(head_in, config.n_classes, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)

    def embed(self, x: jax.Array) -> jax.Array:
        """The penultimate layer: ``(batch, dense)`` after the hidden ReLU (``(batch, widths[-1])`` without one)."""
        x = x[..., None]
        for block in self.blocks:
            x = block(x)
        # Global max over time and frequency: a genre cue anywhere in the crop counts.
        x = jnp.max(x, axis=(1, 2))
        if self.hidden is not None:
            x = nnx.relu(self.hidden(x))
        return x.astype(jnp.float32)

    def __call__(self, x: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        x = self.dropout(self.embed(x), rngs=dropout_key)
        return self.out(x).astype(jnp.float32)
