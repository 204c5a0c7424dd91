"""Orbax checkpoints of a CNN's training run (loaded back by :class:`mgc.models.kinds.cnn.CnnModel`).

The model folder's files are described in :mod:`mgc.models.folder`. Each
checkpoint has two items: ``state`` (params, BatchNorm statistics, optimizer
state, step and RNG key, as a pytree of arrays) and ``meta`` (JSON: the input
position, normalisation, label names, the store's FeatureSpec, the model and
train configs, the best validation score). Nothing is pickled.
Checkpoints are written synchronously; orbax writes each under a temporary
name and renames it when complete, so a killed run leaves the previous one intact.
A training holds the model folder's lock exclusively and a reader holds it
shared while it loads (see :mod:`mgc.models.folder`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from mgc.models.errors import ModelError
from mgc.models.folder import CHECKPOINT_KINDS, ModelFolder

__all__ = ["Checkpoints"]

# orbax logs every save at INFO through absl; the progress bar is the user's log.
logging.getLogger("absl").setLevel(logging.WARNING)


class Checkpoints:
    """The ``latest`` and ``best`` checkpoint managers of one model folder."""

    def __init__(self, model_dir: str | Path):
        folder = ModelFolder(Path(model_dir).resolve())
        options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False)
        self.managers = {
            name: ocp.CheckpointManager(folder.checkpoint_dir(name), options=options) for name in CHECKPOINT_KINDS
        }

    def step(self, which: str = "latest") -> int | None:
        return self.managers[which].latest_step()

    def save(self, which: str, state: Any, meta: dict[str, Any]) -> None:
        """Save host ``state`` (numpy pytree) and JSON ``meta`` as checkpoint ``which``."""
        manager, step = self.managers[which], int(state["step"])
        if manager.latest_step() == step:
            return
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()

    def meta(self, which: str = "latest") -> dict[str, Any]:
        manager = self.managers[which]
        step = manager.latest_step()
        if step is None:
            raise ModelError(f"no {which} checkpoint in {manager.directory}")
        return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def restore(self, which: str, template: Any) -> tuple[Any, dict[str, Any]]:
        """State shaped like ``template`` and the meta of checkpoint ``which``."""
        manager = self.managers[which]
        step = manager.latest_step()
        if step is None:
            raise ModelError(f"no {which} checkpoint in {manager.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restored = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        )
        return jax.tree.map(np.asarray, restored.state), restored.meta
