"""The built-in pretrained taggers (``musicnn-msd``, ``musicnn-mtt``), usable wherever a model folder is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mgc.models.data.pipeline import Normalizer
from mgc.models.kinds.network import NetworkModel
from mgc.models.nets.musicnn import N_MELS, PATCH_FRAMES
from mgc.models.pretrained.musicnn import MUSICNN_MODELS, MUSICNN_SPEC, load_musicnn

__all__ = ["BuiltinModel", "is_builtin"]


def is_builtin(name: str | Path) -> bool:
    """Whether ``name`` is a built-in model's name and no folder of that name exists."""
    return str(name) in MUSICNN_MODELS and not Path(name).exists()


class BuiltinModel(NetworkModel):
    """musicnn with its published weights (or a fine-tuned backbone's), in inference mode.

    ``label_names`` are the tags, ``spec`` is :data:`MUSICNN_SPEC`, the
    normaliser is the identity (the network normalises its input itself),
    crops are 187 frames (3 s) and the probabilities are tag sigmoids.

    Parameters
    ----------
    name : str
        ``musicnn-msd`` or ``musicnn-mtt``.
    path : str or Path, optional
        Weights to use instead of the shipped ones (a fine-tuned backbone's
        ``backbone.npz``, see :mod:`mgc.models.training.finetune`).
    """

    kind = "builtin"
    multilabel = True

    def __init__(self, name: str, path: str | Path | None = None) -> None:
        from flax import nnx

        module = load_musicnn(name, path)
        self.name = self.source = name
        self.graphdef, self.params, self.batch_stats = nnx.split(module, nnx.Param, nnx.BatchStat)
        self.label_names = list(MUSICNN_MODELS[name][1])
        self.spec = dict(MUSICNN_SPEC)
        self.normalizer = Normalizer(np.zeros(N_MELS, np.float32), np.ones(N_MELS, np.float32))
        self.crop_frames = PATCH_FRAMES
        self.embedding_dim = module.dense.out_features
        self.step = None
