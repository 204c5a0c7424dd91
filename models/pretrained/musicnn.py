"""musicnn (Pons and Serra, 2019) in Flax NNX, with the published MSD and MTT weights.

The network, written here from the published architecture (musicnn's
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

Every BatchNorm uses epsilon 1e-3, as ``tf.compat.v1.layers`` does. Weights
come from ``musicnn_msd.npz`` / ``musicnn_mtt.npz`` beside this file, made by
``python -m mgc.models.pretrained.convert`` from the TensorFlow checkpoints in
musicnn's package (ISC licence, see ``LICENSE-musicnn.md``); they are read
with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgc.engine import SPEC_PRESETS

__all__ = [
    "MSD_TAGS",
    "MTT_TAGS",
    "MUSICNN_MODELS",
    "MUSICNN_SPEC",
    "BuiltinModel",
    "Musicnn",
    "load_musicnn",
    "musicnn_arrays",
    "weights_path",
]

HERE = Path(__file__).resolve().parent

MSD_TAGS = [
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient",
    "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening",
    "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad",
    "House", "happy",
]  # fmt: skip
MTT_TAGS = [
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano", "ambient",
    "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals", "no vocals",
    "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man",
    "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello",
    "no voice", "weird", "country", "metal", "female voice", "choral",
]  # fmt: skip

#: Built-in model name -> (weights file, tags).
MUSICNN_MODELS = {"musicnn-msd": ("musicnn_msd.npz", MSD_TAGS), "musicnn-mtt": ("musicnn_mtt.npz", MTT_TAGS)}

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

    def embed(self, x: jax.Array) -> jax.Array:
        """The penultimate layer ``(B, 200)`` of patches ``x`` ``(B, T, 96)`` (any T >= 1)."""
        frames = self._frames(x)
        # Max and mean over time, interleaved per channel as TensorFlow's flatten of (753, 2) lays them out.
        pooled = jnp.stack([frames.max(axis=1), frames.mean(axis=1)], axis=-1).reshape(x.shape[0], -1)
        return self.dense_bn(jax.nn.relu(self.dense(self.pool_bn(pooled))))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Tag logits ``(B, n_classes)``; ``jax.nn.sigmoid`` gives the tag probabilities."""
        return self.out(self.embed(x))


def musicnn_arrays(module: Musicnn) -> dict[str, np.ndarray]:
    """Every variable of ``module`` by name (``timbral_74/kernel``...), as :func:`load_musicnn` reads them."""
    flat = nnx.to_flat_state(nnx.state(module))
    return {"/".join(map(str, key)): np.asarray(variable.get_value(), np.float32) for key, variable in flat}


def weights_path(name: str) -> Path:
    """The weights file of a built-in model name (``musicnn-msd`` or ``musicnn-mtt``)."""
    if name not in MUSICNN_MODELS:
        raise KeyError(f"unknown built-in model {name!r}; choose one of {sorted(MUSICNN_MODELS)}")
    return HERE / MUSICNN_MODELS[name][0]


def load_musicnn(name: str = "musicnn-msd", path: str | Path | None = None) -> Musicnn:
    """Musicnn with its published weights, in inference mode (BatchNorm uses the stored statistics).

    Parameters
    ----------
    name : str
        ``musicnn-msd`` (Million Song Dataset, 50 tags) or ``musicnn-mtt`` (MagnaTagATune).
    path : str or Path, optional
        A weights file written by ``models.pretrained.convert`` (default: the shipped one).

    Raises
    ------
    FileNotFoundError
        When the weights file is missing (run ``python -m mgc.models.pretrained.convert``).
    """
    path = Path(path) if path is not None else weights_path(name)
    with np.load(path, allow_pickle=False) as weights:
        values = {key: np.asarray(weights[key]) for key in weights.files}
    model = Musicnn(n_classes=values["out/kernel"].shape[1], rngs=nnx.Rngs(0))
    flat = nnx.to_flat_state(nnx.state(model))
    names = {"/".join(map(str, key)): variable for key, variable in flat}
    if set(names) != set(values):
        raise ValueError(f"{path} does not hold musicnn's variables: {sorted(set(names) ^ set(values))[:5]}")
    for name, variable in names.items():
        shape = variable.get_value().shape
        if values[name].shape != shape:
            raise ValueError(f"{path}: {name} has shape {values[name].shape}, not {shape}")
        variable.set_value(jnp.asarray(values[name], jnp.float32))
    nnx.update(model, nnx.from_flat_state(flat))
    model.eval()
    return model


#: musicnn's input as an engine spec (``mgc extract --preset musicnn`` makes a store of it).
MUSICNN_SPEC = dict(SPEC_PRESETS["musicnn"])


class BuiltinModel:
    """A built-in pretrained model, usable wherever a loaded model folder is (``predict``, ``embed``, ``similar``).

    It has the attributes inference reads from :class:`models.checkpoint.TrainedModel`:
    ``params``, ``batch_stats``, ``graphdef``, ``label_names`` (the tags),
    ``spec`` (:data:`MUSICNN_SPEC`), ``normalizer`` (the identity: the network
    normalises its input itself), ``crop_frames`` (187, 3 s) and ``multilabel``
    (True: tag probabilities are sigmoids, not a softmax).

    Parameters
    ----------
    name : str
        ``musicnn-msd`` or ``musicnn-mtt``.
    path : str or Path, optional
        Weights to use instead of the shipped ones (a fine-tuned backbone's
        ``backbone.npz``, see :mod:`models.finetune`).
    """

    def __init__(self, name: str, path: str | Path | None = None) -> None:
        from mgc.models.input_pipeline import Normalizer

        module = load_musicnn(name, path)
        self.name = name
        self.graphdef, self.params, self.batch_stats = nnx.split(module, nnx.Param, nnx.BatchStat)
        self.label_names = list(MUSICNN_MODELS[name][1])
        self.spec = dict(MUSICNN_SPEC)
        self.normalizer = Normalizer(np.zeros(N_MELS, np.float32), np.ones(N_MELS, np.float32))
        self.crop_frames = PATCH_FRAMES
        self.multilabel = True
        self.embedding_dim = module.dense.out_features
        self.model_config = None
        self.meta = {"builtin": name, "metrics": {"step": None}}
