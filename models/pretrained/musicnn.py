"""musicnn's published MSD and MTT weights (Pons and Serra, 2019), their tags, and loading them into the network.

The network is :class:`mgc.models.nets.musicnn.Musicnn` (its docstring describes the
architecture); its input is :data:`MUSICNN_SPEC` (``mgc extract --preset musicnn``).
Weights come from ``musicnn_msd.npz`` / ``musicnn_mtt.npz`` beside this file, made by
``python -m mgc.models.pretrained.convert`` from the TensorFlow checkpoints in
musicnn's package (ISC licence, see ``LICENSE-musicnn.md``); they are read
with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgc.engine import SPEC_PRESETS
from mgc.models.nets.musicnn import Musicnn

__all__ = [
    "MSD_TAGS",
    "MTT_TAGS",
    "MUSICNN_MODELS",
    "MUSICNN_SPEC",
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
        A weights file written by ``mgc.models.pretrained.convert`` (default: the shipped one).

    Raises
    ------
    FileNotFoundError
        When the weights file is missing (run ``python -m mgc.models.pretrained.convert``).
    """
    path = Path(path) if path is not None else weights_path(name)
    with np.load(path, allow_pickle=False) as weights:
        values = {key: np.asarray(weights[key]) for key in weights.files}
    if "out/kernel" not in values or np.ndim(values["out/kernel"]) != 2:
        raise ValueError(f"{path} does not hold musicnn's variables: it has no 2-D out/kernel")
    # The structure only (shapes, no arrays): no random initialisation, nothing compiled; the file fills it.
    abstract = nnx.eval_shape(lambda: Musicnn(n_classes=values["out/kernel"].shape[1], rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = nnx.to_flat_state(state)
    names = {"/".join(map(str, key)): variable for key, variable in flat}
    if set(names) != set(values):
        raise ValueError(f"{path} does not hold musicnn's variables: {sorted(set(names) ^ set(values))[:5]}")
    for name, variable in names.items():
        shape = variable.get_value().shape
        if values[name].shape != shape:
            raise ValueError(f"{path}: {name} has shape {values[name].shape}, not {shape}")
        variable.set_value(jnp.asarray(values[name], jnp.float32))
    model = nnx.merge(graphdef, nnx.from_flat_state(flat))
    model.eval()
    return model


#: musicnn's input as an engine spec (``mgc extract --preset musicnn`` makes a store of it).
MUSICNN_SPEC = dict(SPEC_PRESETS["musicnn"])
