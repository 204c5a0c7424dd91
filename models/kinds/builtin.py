"""The built-in pretrained taggers (``musicnn-msd``, ``musicnn-mtt``), usable wherever a model folder is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mgc.models.data.pipeline import Normalizer
from mgc.models.data.stores import check_spec
from mgc.models.kinds.network import NetworkModel
from mgc.models.nets.musicnn import N_MELS, PATCH_FRAMES
from mgc.models.pretrained.musicnn import MUSICNN_MODELS, MUSICNN_SPEC, load_musicnn

__all__ = ["BUILTIN_NAMES", "BuiltinModel", "is_builtin"]

#: The built-in models' names, as ``mgc predict NAME`` takes them.
BUILTIN_NAMES = tuple(MUSICNN_MODELS)


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

    #: The network's attributes, built on first use (read from the weights file into an abstractly built
    #: network, nothing initialised or compiled): a store of another spec (:meth:`check_store`) is refused
    #: before the file is read.
    NETWORK = ("graphdef", "params", "batch_stats", "embedding_dim")

    def __init__(self, name: str, path: str | Path | None = None) -> None:
        self.name = self.source = name
        self.weights_file = path
        self.label_names = list(MUSICNN_MODELS[name][1])
        self.spec = dict(MUSICNN_SPEC)
        self.normalizer = Normalizer(np.zeros(N_MELS, np.float32), np.ones(N_MELS, np.float32))
        self.crop_frames = PATCH_FRAMES
        self.step = None

    def __getattr__(self, attribute: str) -> Any:
        # Called only for attributes not set yet: the network's, on first use.
        if attribute in BuiltinModel.NETWORK and "name" in self.__dict__:
            self._build()
            return self.__dict__[attribute]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attribute!r}")

    def _build(self) -> None:
        from flax import nnx

        module = load_musicnn(self.name, self.__dict__.get("weights_file"))
        self.graphdef, self.params, self.batch_stats = nnx.split(module, nnx.Param, nnx.BatchStat)
        self.embedding_dim = module.dense.out_features

    def check_store(self, store: Any, *, where: str | None = None) -> None:
        """Raise :class:`ModelError` unless ``store`` has the musicnn spec; the message says how to make one.

        Parameters
        ----------
        store : engine.FeatureStore
        where : str, optional
            The model, as the message names it (default: "the built-in model NAME").
        """
        advice = (
            f"{self.name} needs a store with the musicnn spec: extract one with "
            "`mgc extract CORPUS STORE2 --preset musicnn`, or give audio files instead of --store."
        )
        where = where or f"the built-in model {self.name}"
        check_spec(self.spec, store.spec, where=where, store_path=getattr(store, "path", store), advice=advice)
