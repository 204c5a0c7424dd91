"""Loading a model: the one place that asks which kind a folder (or a name) holds."""

from __future__ import annotations

import difflib
from pathlib import Path

from mgc.models.config import CHECKPOINTS
from mgc.models.errors import ModelError
from mgc.models.folder import ModelFolder
from mgc.models.kinds.base import Model
from mgc.models.kinds.builtin import BUILTIN_NAMES, BuiltinModel, is_builtin
from mgc.models.kinds.cnn import CnnModel
from mgc.models.kinds.head import HeadModel

__all__ = ["check_model_path", "load_model", "loaded"]

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
        When the path does not exist or is a file, the folder holds no model,
        a damaged one, or one of an unknown kind, or a training is writing
        into it (wait for it to finish, or copy the folder).
    """
    if is_builtin(model_dir):
        return BuiltinModel(str(model_dir))
    check_model_path(model_dir)
    folder = ModelFolder(Path(model_dir))
    kind = folder.kind()
    if kind not in _LOADERS:
        raise ModelError(f"{model_dir} holds a model of kind {kind!r}, which this mgc cannot load")
    return _LOADERS[kind](folder, which)


def check_model_path(model_dir: str | Path) -> None:
    """Refuse a model path that does not exist or is a file, in one line that says what to use instead.

    A missing name that looks like a built-in model's (``musicnn-xyz``) lists the built-in models; any
    other missing path says how to train one and names the built-in models too.

    Raises
    ------
    ModelError
    """
    path = Path(model_dir)
    names = ", ".join(BUILTIN_NAMES)
    if path.is_dir():
        return
    if path.exists():
        raise ModelError(
            f"{model_dir} is a file, not a model folder (a folder made by `mgc train`); "
            f"give a model folder, or a built-in model: {names}"
        )
    name = str(model_dir)
    family = {n.split("-")[0] for n in BUILTIN_NAMES}
    looks_builtin = len(path.parts) == 1 and (
        name.lower().split("-")[0] in family or difflib.get_close_matches(name.lower(), BUILTIN_NAMES, cutoff=0.75)
    )
    if looks_builtin:
        raise ModelError(f"unknown built-in model {name}; the built-in models are {names}")
    raise ModelError(
        f"model {name} does not exist; train one with `mgc train STORE --out {name}`, or use a built-in model: {names}"
    )


def loaded(model: Model | str | Path, which: str = CHECKPOINTS[0]) -> Model:
    """``model`` itself when it is already loaded, else :func:`load_model` of it."""
    return model if isinstance(model, Model) else load_model(model, which)
