"""The short-chunk CNN that ``mgc train`` writes: loaded from the folder's orbax checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mgc.models.checkpoints import Checkpoints
from mgc.models.config import ModelConfig, TrainConfig
from mgc.models.data.pipeline import Normalizer
from mgc.models.data.stores import StoreTracks, split_source
from mgc.models.errors import ModelError
from mgc.models.folder import CHECKPOINT_KINDS, ModelFolder
from mgc.models.kinds.network import NetworkModel
from mgc.models.metrics import track_outputs

__all__ = ["CnnModel"]


class CnnModel(NetworkModel):
    """A trained CNN: weights, configs, labels, spec and normalisation, read from one checkpoint.

    Parameters
    ----------
    state : dict
        The checkpoint's ``params`` and ``batch_stats`` (NumPy pytrees).
    meta : dict
        The checkpoint's JSON meta (see :mod:`mgc.models.checkpoints`).
    source : str
        The model folder (absolute).
    """

    kind = "cnn"

    def __init__(self, state: dict[str, Any], meta: dict[str, Any], source: str = ""):
        from mgc.models.nets.steps import make_graphdef

        self.params, self.batch_stats = state["params"], state["batch_stats"]
        self.meta = meta
        self.source = source
        self.model_config = ModelConfig.from_dict(meta["model_config"])
        self.train_config = TrainConfig.from_dict(meta["train_config"])
        self.label_names: list[str] = list(meta["label_names"])
        self.spec: dict[str, Any] = meta["spec"]
        self.normalizer = Normalizer.from_dict(meta["normalizer"])
        self.crop_frames: int = int(meta["crop_frames"])
        self.step = (meta.get("metrics") or {}).get("step")
        self.embedding_dim = int(self.model_config.dense or self.model_config.widths[-1])
        self.graphdef = make_graphdef(self.model_config)

    @classmethod
    def load(cls, folder: ModelFolder, which: str = "best") -> CnnModel:
        """The ``which`` checkpoint (``best``, falling back to ``latest``) of ``folder``, read under its shared lock.

        Raises
        ------
        ModelError
            When the folder holds no checkpoint, or a training is writing into it.
        """
        from mgc.models.nets.steps import abstract_state, make_optimizer

        # Locked before looking for checkpoints: during a training's first epoch "being trained" is the answer.
        with folder.lock(shared=True):
            if not any(folder.has_checkpoint(kind) for kind in CHECKPOINT_KINDS):
                raise ModelError(
                    f"{folder.root} holds no trained model (no checkpoints); "
                    f"run `mgc train STORE --out {folder.root}` first"
                )
            checkpoints = Checkpoints(folder.root)
            if checkpoints.step(which) is None:
                which = "latest"
            meta = checkpoints.meta(which)
            try:
                model_config = ModelConfig.from_dict(meta["model_config"])
                train_config = TrainConfig.from_dict(meta["train_config"])
                total_steps = int(meta["total_steps"])
            except (KeyError, TypeError, ValueError) as error:
                step = checkpoints.step(which)
                raise checkpoints.damaged(which, step, f"its meta lacks or garbles {error}") from None
            tx = make_optimizer(train_config, total_steps)
            # Shapes and dtypes only: the checkpoint fills them, so nothing is initialised or compiled.
            template = abstract_state(model_config, tx)
            state, meta = checkpoints.restore(which, template)
        return cls(state, meta, source=str(Path(folder.root).resolve()))

    def store_outputs(
        self, store: Any, rows: np.ndarray, *, max_crops: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`Model.store_outputs`, reading the store a shard at a time within the training's memory limit."""
        source = split_source(StoreTracks.of(store), rows, memory_limit_mb=self.train_config.memory_limit_mb)
        probs, embeddings = track_outputs(
            self.params,
            self.batch_stats,
            self.graphdef,
            iter(source),
            normalizer=self.normalizer,
            crop_frames=self.crop_frames,
            max_crops=max_crops,
        )
        return probs, embeddings, np.ones(len(probs), bool)
