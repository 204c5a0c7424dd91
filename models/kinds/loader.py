"""Loading a model: the one place that asks which kind a folder (or a name) holds."""

from __future__ import annotations

from pathlib import Path

from mgc.models.config import CHECKPOINTS
from mgc.models.errors import ModelError
from mgc.models.folder import ModelFolder
from mgc.models.kinds.base import Model
from mgc.models.kinds.builtin import BuiltinModel, is_builtin
from mgc.models.kinds.cnn import CnnModel
from mgc.models.kinds.head import HeadModel

__all__ = ["load_model", "loaded"]

#: The folder's recorded kind -> how to load it.
_LOADERS = {"cnn": CnnModel.load, "head": lambda folder, which: HeadModel.load(folder)}


def load_model(model_dir: str | Path, which: str = CHECKPOINTS[0]) -> Model:
    """The model of a folder, or a built-in pretrained model by name.

    Parameters
    ----------
    model_dir : str or Path
        A folder written by :func:`mgc.models.train` or :func:`mgc.models.train_head`,
        or the name of a built-in pretrained model (``musicnn-msd``,
        ``musicnn-mtt``) when no folder has that name.
    which : str
        ``best`` or ``latest`` checkpoint of a CNN (other kinds have one set of weights).

    Returns
    -------
    Model
        In memory: a CNN folder's lock is held (shared) only while it is read.

    Raises
    ------
    ModelError
        When the folder holds no model, a damaged one, or one of an unknown
        kind, or a training is writing into it (wait for it to finish, or copy
        the folder).
    """
    if is_builtin(model_dir):
        return BuiltinModel(str(model_dir))
    folder = ModelFolder(Path(model_dir))
    kind = folder.kind()
    if kind not in _LOADERS:
        raise ModelError(f"{model_dir} holds a model of kind {kind!r}, which this mgc cannot load")
    return _LOADERS[kind](folder, which)


def loaded(model: Model | str | Path, which: str = CHECKPOINTS[0]) -> Model:
    """``model`` itself when it is already loaded, else :func:`load_model` of it."""
    return model if isinstance(model, Model) else load_model(model, which)
