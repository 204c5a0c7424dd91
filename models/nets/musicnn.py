"""musicnn (Pons and Serra, 2019) in Flax NNX, written from the published architecture.

The network (musicnn's
``models.py``: ``build_musicnn`` with a "7774timbraltemporal" front-end, a dense
mid-end and a global-pool back-end):

- **input**: a 3 s patch of 187 frames x 96 mel bands of 16 kHz audio
  (n_fft 512, hop 256), ``log10(1 + 10000 * mel power)``; batch-normalised.
- **front-end**: two timbral convolutions over 7 frames x 38 and x 67 bands
  (204 filters each, time padded by 3 on each side) and three temporal
  convolutions of 128, 64 and 32 frames x 1 band (51 filters each, "same"
  padding); each is ReLU, then BatchNorm, then a max over frequency: 561
  channels per frame.
- **mid-end**: three 7-frame convolutions of 64 filters (ReLU, BatchNorm), the
  second and third with residual connections; the front-end and the three
  outputs are concatenated: 753 channels per frame.
- **back-end**: max and mean over time, interleaved (1,506 values),
  BatchNorm, a dense layer of 200 (ReLU, BatchNorm: the *penultimate* layer,
  the embedding mgc uses), and a dense layer of 50 tags (sigmoid).

Every BatchNorm uses epsilon 1e-3, as ``tf.compat.v1.layers`` does. The
published weights and their loading are :mod:`mgc.models.pretrained.musicnn`'s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["N_MELS", "PATCH_FRAMES", "Musicnn"]

N_MELS = 96
PATCH_FRAMES = 187
_EPS = 1e-3


def _bn(n: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(n, epsilon=_EPS, momentum=0.99, rngs=rngs)


class Musicnn(nnx.Module):
    """musicnn for 96-band patches.

    Parameters
    ----------
    n_classes : int
        Tags of the output layer (50 for both published models).
    midend : int
        Filters of the mid-end convolutions (64 published).
    backend : int
        Units of the penultimate layer (200 published).
    rngs : nnx.Rngs
        For the initial weights (replaced by :func:`load_musicnn`).
    """

    def __init__(self, n_classes: int = 50, midend: int = 64, backend: int = 200, *, rngs: nnx.Rngs) -> None:
        timbral, temporal = int(1.6 * 128), int(1.6 * 32)
        self.input_bn = _bn(1, rngs)
        self.timbral_74 = nnx.Conv(1, timbral, (7, int(0.4 * N_MELS)), padding="VALID", rngs=rngs)
        self.timbral_74_bn = _bn(timbral, rngs)
        self.timbral_77 = nnx.Conv(1, timbral, (7, int(0.7 * N_MELS)), padding="VALID", rngs=rngs)
        self.timbral_77_bn = _bn(timbral, rngs)
        self.temporal_128 = nnx.Conv(1, temporal, (128, 1), padding="SAME", rngs=rngs)
        self.temporal_128_bn = _bn(temporal, rngs)
        self.temporal_64 = nnx.Conv(1, temporal, (64, 1), padding="SAME", rngs=rngs)
        self.temporal_64_bn = _bn(temporal, rngs)
        self.temporal_32 = nnx.Conv(1, temporal, (32, 1), padding="SAME", rngs=rngs)
        self.temporal_32_bn = _bn(temporal, rngs)
        front = 2 * timbral + 3 * temporal  # 561
        self.mid_1 = nnx.Conv(1, midend, (7, front), padding="VALID", rngs=rngs)
        self.mid_1_bn = _bn(midend, rngs)
        self.mid_2 = nnx.Conv(1, midend, (7, midend), padding="VALID", rngs=rngs)
        self.mid_2_bn = _bn(midend, rngs)
        self.mid_3 = nnx.Conv(1, midend, (7, midend), padding="VALID", rngs=rngs)
        self.mid_3_bn = _bn(midend, rngs)
        pooled = 2 * (front + 3 * midend)  # 1,506
        self.pool_bn = _bn(pooled, rngs)
        self.dense = nnx.Linear(pooled, backend, rngs=rngs)
        self.dense_bn = _bn(backend, rngs)
        self.out = nnx.Linear(backend, n_classes, rngs=rngs)

    @staticmethod
    def _branch(conv: nnx.Conv, bn: nnx.BatchNorm, x: jax.Array) -> jax.Array:
        """Conv, ReLU, BatchNorm, then the max over the frequency axis: ``(B, T, C)``."""
        return bn(jax.nn.relu(conv(x))).max(axis=2)

    def _frames(self, x: jax.Array) -> jax.Array:
        """Per-frame features ``(B, T, 753)`` of log-mel patches ``x`` ``(B, T, 96)``."""
        h = self.input_bn(x[..., None])
        padded = jnp.pad(h, ((0, 0), (3, 3), (0, 0), (0, 0)))
        front = jnp.concatenate(
            [
                self._branch(self.timbral_74, self.timbral_74_bn, padded),
                self._branch(self.timbral_77, self.timbral_77_bn, padded),
                self._branch(self.temporal_128, self.temporal_128_bn, h),
                self._branch(self.temporal_64, self.temporal_64_bn, h),
                self._branch(self.temporal_32, self.temporal_32_bn, h),
            ],
            axis=-1,
        )

        def mid(conv: nnx.Conv, bn: nnx.BatchNorm, y: jax.Array) -> jax.Array:
            # A 7-frame convolution across all channels. The published layer is 2-D with the channels as the
            # image's width and a kernel as wide; it is computed as the 1-D convolution it equals, whose
            # input gradient XLA's CPU backend computes 3,700 times faster (26 s against 7 ms for 16 patches).
            kernel = conv.kernel.get_value()
            y = jax.lax.conv_general_dilated(
                y, kernel.reshape(kernel.shape[0], kernel.shape[1], kernel.shape[3]), (1,), [(3, 3)],
                dimension_numbers=("NWC", "WIO", "NWC"),
            )  # fmt: skip
            return bn(jax.nn.relu(y + conv.bias.get_value()[None, None, :]))

        c1 = mid(self.mid_1, self.mid_1_bn, front)
        c2 = mid(self.mid_2, self.mid_2_bn, c1) + c1
        c3 = mid(self.mid_3, self.mid_3_bn, c2) + c2
        return jnp.concatenate([front, c1, c2, c3], axis=-1)

    def pooled(self, x: jax.Array) -> jax.Array:
        """The pooled mid-end ``(B, 1506)`` of patches ``x`` ``(B, T, 96)``: max and mean over time, interleaved.

        ``pooled[:, 0::2]`` is musicnn's ``max_pool`` and ``pooled[:, 1::2]`` its
        ``mean_pool`` (753 channels each), the layers its extractor exposes
        beside the penultimate one.
        """
        frames = self._frames(x)
        # Max and mean over time, interleaved per channel as TensorFlow's flatten of (753, 2) lays them out.
        return jnp.stack([frames.max(axis=1), frames.mean(axis=1)], axis=-1).reshape(x.shape[0], -1)

    def embed(self, x: jax.Array) -> jax.Array:
        """The penultimate layer ``(B, 200)`` of patches ``x`` ``(B, T, 96)`` (any T >= 1)."""
        return self.dense_bn(jax.nn.relu(self.dense(self.pool_bn(self.pooled(x)))))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Tag logits ``(B, n_classes)``; ``jax.nn.sigmoid`` gives the tag probabilities."""
        return self.out(self.embed(x))
