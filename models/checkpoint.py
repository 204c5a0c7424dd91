"""Orbax checkpoints of a training run, and loading a trained model back.

The model folder's files are described in :mod:`models.layout`. Each
checkpoint has two items: ``state`` (params, BatchNorm statistics, optimizer
state, step and RNG key, as a pytree of arrays) and ``meta`` (JSON: the input
position, normalisation, label names, the store's FeatureSpec, the model and
train configs, the best validation score). Nothing is pickled.
Checkpoints are written synchronously; orbax writes each under a temporary
name and renames it when complete, so a killed run leaves the previous one intact.
A training holds the model folder's lock exclusively and :func:`load_model`
holds it shared while it reads (see :mod:`models.layout`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from mgc.engine import describe_differences, differences
from mgc.models.config import ModelConfig, ModelError, TrainConfig
from mgc.models.input_pipeline import Normalizer
from mgc.models.layout import CHECKPOINT_KINDS, ModelFolder

__all__ = ["Checkpoints", "TrainedModel", "load_model", "check_spec"]

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


def check_spec(saved: dict[str, Any], store_spec: Any, *, where: str, store_path: str | Path) -> None:
    """Raise :class:`ModelError` unless the store's FeatureSpec equals the one a model was trained on."""
    changed = differences(saved, store_spec.to_dict())
    if changed:
        raise ModelError(
            f"{where} was made with a different FeatureSpec than the store {store_path}: "
            + describe_differences(changed, "model", "store")
            + ". Extract the store again with the model's spec, or train a new model (without --resume) on this store."
        )


class TrainedModel:
    """A model read back from a model folder: weights, configs, labels, spec and normalisation."""

    def __init__(self, state: dict[str, Any], meta: dict[str, Any]):
        self.params, self.batch_stats = state["params"], state["batch_stats"]
        self.meta = meta
        self.model_config = ModelConfig.from_dict(meta["model_config"])
        self.train_config = TrainConfig.from_dict(meta["train_config"])
        self.label_names: list[str] = list(meta["label_names"])
        self.spec: dict[str, Any] = meta["spec"]
        self.normalizer = Normalizer.from_dict(meta["normalizer"])
        self.crop_frames: int = int(meta["crop_frames"])


def _builtin(model_dir: str | Path):
    """The built-in pretrained model named ``model_dir`` (``musicnn-msd``...), unless a folder has that name."""
    from mgc.models.pretrained.musicnn import MUSICNN_MODELS, BuiltinModel

    if str(model_dir) in MUSICNN_MODELS and not Path(model_dir).exists():
        return BuiltinModel(str(model_dir))
    return None


def load_model(model_dir: str | Path, which: str = "best") -> TrainedModel:
    """Load the ``best`` (falling back to ``latest``) checkpoint of ``model_dir``.

    Parameters
    ----------
    model_dir : str or Path
        A folder written by :func:`models.train`, or the name of a built-in
        pretrained model (``musicnn-msd``, ``musicnn-mtt``: see
        :mod:`models.pretrained.musicnn`) when no folder has that name.
    which : str
        ``best`` or ``latest`` (ignored for a built-in model).

    Returns
    -------
    TrainedModel or models.pretrained.musicnn.BuiltinModel
        In memory: the folder's lock is held (shared) only while it is read.

    Raises
    ------
    ModelError
        When the folder holds no checkpoint, or a training is writing into it
        (orbax deletes a checkpoint when it saves the next one; wait for the
        training to finish, or copy the folder).
    """
    from mgc.models.steps import init_state, make_optimizer

    builtin = _builtin(model_dir)
    if builtin is not None:
        return builtin
    from mgc.models.heads import HeadModel, is_head

    if is_head(model_dir):
        return HeadModel.load(model_dir)
    model_dir = Path(model_dir)
    folder = ModelFolder(model_dir)
    # Locked before looking for checkpoints: during a training's first epoch "being trained" is the answer.
    with folder.lock(shared=True):
        if not any(folder.has_checkpoint(kind) for kind in CHECKPOINT_KINDS):
            raise ModelError(
                f"{model_dir} holds no trained model (no checkpoints); run `mgc train STORE --out {model_dir}` first"
            )
        checkpoints = Checkpoints(model_dir)
        if checkpoints.step(which) is None:
            which = "latest"
        meta = checkpoints.meta(which)
        model_config = ModelConfig.from_dict(meta["model_config"])
        train_config = TrainConfig.from_dict(meta["train_config"])
        tx = make_optimizer(train_config, meta["total_steps"])
        template = jax.tree.map(np.asarray, init_state(model_config, tx, seed=0))
        state, meta = checkpoints.restore(which, template)
    return TrainedModel(state, meta)
